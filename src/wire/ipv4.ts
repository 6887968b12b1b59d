/**
 * IPv4 (RFC 791): header with options, header checksum, fragments recognised (a fragment's payload is not
 * decoded further: only the first one holds the next header, and not the whole of it).
 */
import { InvalidValueError } from '../base/errors.js';
import { formatIPv4, parseIPv4, readIPv4, writeIPv4 } from './address.js';
import { checksumHolds, internetChecksum } from './checksum.js';
import { WireError, needBytes } from './errors.js';
import { checkBytes, checkInt } from './validate.js';

export const IPV4_MIN_HEADER_LENGTH = 20;
export const IPPROTO_ICMP = 1;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;

export interface Ipv4Header {
  /** Type of service byte (DSCP << 2 | ECN). */
  tos: number;
  id: number;
  dontFragment: boolean;
  moreFragments: boolean;
  /** In 8-byte units, as on the wire. */
  fragmentOffset: number;
  ttl: number;
  protocol: number;
  src: string;
  dst: string;
  /** Raw options, a multiple of 4 bytes, at most 40. Omitted when there are none. */
  options?: Buffer;
}

export class Ipv4View {
  readonly headerLength: number;
  readonly totalLength: number;
  readonly protocol: number;
  readonly payloadOffset: number;
  /** End of the IP packet in the buffer: the total length, or the end of the captured bytes when cut short. */
  readonly payloadEnd: number;
  /** The capture holds fewer bytes than the total length says (snap length), so checksums above IP cannot be verified. */
  readonly truncated: boolean;
  /** Part of a fragmented datagram (MF set or a fragment offset): its payload is not a whole upper-layer packet. */
  readonly isFragment: boolean;

  /**
   * @param complete the buffer holds the whole frame as sent; a total length past its end is then an error.
   *   When false (a capture cut at the snap length), decoding continues with what is there.
   */
  constructor(
    readonly buf: Buffer,
    readonly offset: number,
    end: number,
    complete = true,
  ) {
    needBytes('ipv4', offset, end, IPV4_MIN_HEADER_LENGTH, 'an IPv4 header');
    const vihl = buf[offset]!;
    if (vihl >>> 4 !== 4) throw new WireError('TLE_WIRE_MALFORMED', 'ipv4', offset, `version ${vihl >>> 4} is not 4`);
    const hl = (vihl & 15) * 4;
    if (hl < IPV4_MIN_HEADER_LENGTH) throw new WireError('TLE_WIRE_MALFORMED', 'ipv4', offset, `header length ${hl} is below 20 (IHL ${vihl & 15} < 5)`);
    needBytes('ipv4', offset, end, hl, `an IPv4 header with options (IHL ${vihl & 15})`);
    const total = (buf[offset + 2]! << 8) | buf[offset + 3]!;
    if (total < hl) throw new WireError('TLE_WIRE_MALFORMED', 'ipv4', offset + 2, `total length ${total} is shorter than the header (${hl})`);
    let payloadEnd = offset + total;
    let truncated = false;
    if (payloadEnd > end) {
      if (complete)
        throw new WireError('TLE_WIRE_MALFORMED', 'ipv4', offset + 2, `total length ${total} is past the end of the frame (${end - offset} bytes left)`);
      payloadEnd = end;
      truncated = true;
    }
    this.headerLength = hl;
    this.totalLength = total;
    this.protocol = buf[offset + 9]!;
    this.payloadOffset = offset + hl;
    this.payloadEnd = payloadEnd;
    this.truncated = truncated;
    // MF is bit 0x20 of byte 6; the offset is the low 13 bits of bytes 6-7. (DF, 0x40, does not matter here.)
    this.isFragment = ((buf[offset + 6]! & 0x3f) | buf[offset + 7]!) !== 0;
  }

  get tos(): number {
    return this.buf[this.offset + 1]!;
  }
  get id(): number {
    return (this.buf[this.offset + 4]! << 8) | this.buf[this.offset + 5]!;
  }
  /** The three flag bits: 0x4 reserved, 0x2 don't fragment, 0x1 more fragments. */
  get flags(): number {
    return this.buf[this.offset + 6]! >>> 5;
  }
  get dontFragment(): boolean {
    return (this.flags & 2) !== 0;
  }
  get moreFragments(): boolean {
    return (this.flags & 1) !== 0;
  }
  get fragmentOffset(): number {
    return ((this.buf[this.offset + 6]! & 0x1f) << 8) | this.buf[this.offset + 7]!;
  }
  get ttl(): number {
    return this.buf[this.offset + 8]!;
  }
  get checksum(): number {
    return (this.buf[this.offset + 10]! << 8) | this.buf[this.offset + 11]!;
  }
  get checksumValid(): boolean {
    return checksumHolds(this.buf, this.offset, this.offset + this.headerLength);
  }
  get srcNumber(): number {
    return readIPv4(this.buf, this.offset + 12);
  }
  get dstNumber(): number {
    return readIPv4(this.buf, this.offset + 16);
  }
  get src(): string {
    return formatIPv4(this.srcNumber);
  }
  get dst(): string {
    return formatIPv4(this.dstNumber);
  }
  get options(): Buffer {
    return this.buf.subarray(this.offset + IPV4_MIN_HEADER_LENGTH, this.payloadOffset);
  }
  get payload(): Buffer {
    return this.buf.subarray(this.payloadOffset, this.payloadEnd);
  }

  header(): Ipv4Header {
    const h: Ipv4Header = {
      tos: this.tos,
      id: this.id,
      dontFragment: this.dontFragment,
      moreFragments: this.moreFragments,
      fragmentOffset: this.fragmentOffset,
      ttl: this.ttl,
      protocol: this.protocol,
      src: this.src,
      dst: this.dst,
    };
    if (this.headerLength > IPV4_MIN_HEADER_LENGTH) h.options = Buffer.from(this.options);
    return h;
  }
}

export function decodeIpv4(buf: Buffer, offset = 0, end = buf.length, complete = true): Ipv4View {
  return new Ipv4View(buf, offset, end, complete);
}

export function ipv4HeaderLength(h: Pick<Ipv4Header, 'options'>): number {
  return IPV4_MIN_HEADER_LENGTH + (h.options?.length ?? 0);
}

export interface Ipv4WriteOptions {
  /** Store this checksum instead of the right one (to build a broken packet on purpose). */
  checksum?: number;
}

/** Write the header at `offset` for a payload of `payloadLength` bytes; returns the payload offset. */
export function writeIpv4(out: Buffer, offset: number, h: Ipv4Header, payloadLength: number, options: Ipv4WriteOptions = {}): number {
  const opts = h.options ?? Buffer.alloc(0);
  checkBytes('options', opts);
  if (opts.length % 4 !== 0 || opts.length > 40) throw new InvalidValueError('options', `${opts.length} bytes`, 'must be a multiple of 4 bytes, at most 40');
  const hl = IPV4_MIN_HEADER_LENGTH + opts.length;
  const total = hl + payloadLength;
  if (total > 0xffff) throw new InvalidValueError('payload', `${payloadLength} bytes`, `makes the IPv4 packet longer than 65535 bytes`);
  out[offset] = 0x40 | (hl / 4);
  out[offset + 1] = checkInt('tos', h.tos, 0, 255);
  out.writeUInt16BE(total, offset + 2);
  out.writeUInt16BE(checkInt('id', h.id, 0, 0xffff), offset + 4);
  const frag = checkInt('fragmentOffset', h.fragmentOffset, 0, 0x1fff);
  out.writeUInt16BE((h.dontFragment ? 0x4000 : 0) | (h.moreFragments ? 0x2000 : 0) | frag, offset + 6);
  out[offset + 8] = checkInt('ttl', h.ttl, 0, 255);
  out[offset + 9] = checkInt('protocol', h.protocol, 0, 255);
  out.writeUInt16BE(0, offset + 10);
  writeIPv4(out, offset + 12, parseIPv4(h.src, 'src'));
  writeIPv4(out, offset + 16, parseIPv4(h.dst, 'dst'));
  out.set(opts, offset + IPV4_MIN_HEADER_LENGTH);
  const sum = options.checksum === undefined ? internetChecksum(out, offset, offset + hl) : checkInt('checksum', options.checksum, 0, 0xffff);
  out.writeUInt16BE(sum, offset + 10);
  return offset + hl;
}

/** An IPv4 packet: header (checksum filled in) + payload. */
export function buildIpv4(h: Ipv4Header, payload: Uint8Array, options: Ipv4WriteOptions = {}): Buffer {
  checkBytes('payload', payload);
  const hl = ipv4HeaderLength(h);
  const out = Buffer.allocUnsafe(hl + payload.length);
  writeIpv4(out, 0, h, payload.length, options);
  out.set(payload, hl);
  return out;
}

/** Defaults for a packet a host sends: TTL 64, DF set (Linux sets it on UDP/ICMP when PMTU discovery is on). */
export function ipv4Defaults(src: string, dst: string, protocol: number, id = 0): Ipv4Header {
  return { tos: 0, id, dontFragment: true, moreFragments: false, fragmentOffset: 0, ttl: 64, protocol, src, dst };
}
