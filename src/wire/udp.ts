/**
 * UDP (RFC 768): 8-byte header; the checksum covers a pseudo-header of the IP addresses, so it is checked and
 * computed together with the IP layer below. Over IPv4 a zero checksum means "none computed" — what flannel's
 * VTEP sends (`noudpcsum`); over IPv6 it is not allowed.
 */
import { InvalidValueError } from '../base/errors.js';
import { parseIP } from './address.js';
import { checksumHolds, fold16, pseudoHeaderSum4, pseudoHeaderSum6, sum16, type ChecksumStatus } from './checksum.js';
import { WireError, needBytes } from './errors.js';
import type { Ipv4View } from './ipv4.js';
import { IPPROTO_UDP } from './ipv4.js';
import type { Ipv6View } from './ipv6.js';
import { checkBytes, checkInt } from './validate.js';

export const UDP_HEADER_LENGTH = 8;

export interface UdpHeader {
  srcPort: number;
  dstPort: number;
}

/** The addresses the pseudo-header holds (either family, both the same). */
export interface IpPair {
  src: string;
  dst: string;
}

export class UdpView {
  readonly srcPort: number;
  readonly dstPort: number;
  /** The UDP length field (header + data). */
  readonly length: number;
  readonly payloadOffset: number;
  readonly payloadEnd: number;
  readonly truncated: boolean;

  constructor(
    readonly buf: Buffer,
    readonly offset: number,
    end: number,
    complete = true,
  ) {
    needBytes('udp', offset, end, UDP_HEADER_LENGTH, 'a UDP header');
    this.srcPort = (buf[offset]! << 8) | buf[offset + 1]!;
    this.dstPort = (buf[offset + 2]! << 8) | buf[offset + 3]!;
    const len = (buf[offset + 4]! << 8) | buf[offset + 5]!;
    if (len < UDP_HEADER_LENGTH) throw new WireError('TLE_WIRE_MALFORMED', 'udp', offset + 4, `length ${len} is shorter than the UDP header (8)`);
    let payloadEnd = offset + len;
    let truncated = false;
    if (payloadEnd > end) {
      if (complete) throw new WireError('TLE_WIRE_MALFORMED', 'udp', offset + 4, `length ${len} is past the end of the IP payload (${end - offset} bytes)`);
      payloadEnd = end;
      truncated = true;
    }
    this.length = len;
    this.payloadOffset = offset + UDP_HEADER_LENGTH;
    this.payloadEnd = payloadEnd;
    this.truncated = truncated;
  }

  get checksum(): number {
    return (this.buf[this.offset + 6]! << 8) | this.buf[this.offset + 7]!;
  }

  get payload(): Buffer {
    return this.buf.subarray(this.payloadOffset, this.payloadEnd);
  }

  /** Check the checksum against the pseudo-header of the IP packet that carries this datagram. */
  checksumStatus(ip: Ipv4View | Ipv6View): ChecksumStatus {
    const stored = this.checksum;
    if (stored === 0 && 'srcNumber' in ip) return 'none';
    if (stored === 0) return 'bad'; // RFC 8200 8.1: a zero UDP checksum over IPv6 is to be discarded
    if (this.truncated || ip.truncated) return 'unverified';
    const pseudo =
      'srcNumber' in ip
        ? pseudoHeaderSum4(ip.srcNumber, ip.dstNumber, IPPROTO_UDP, this.length)
        : pseudoHeaderSum6(ip.buf, ip.srcOffset, ip.buf, ip.dstOffset, IPPROTO_UDP, this.length);
    return checksumHolds(this.buf, this.offset, this.offset + this.length, pseudo) ? 'good' : 'bad';
  }

  header(): UdpHeader {
    return { srcPort: this.srcPort, dstPort: this.dstPort };
  }
}

export function decodeUdp(buf: Buffer, offset = 0, end = buf.length, complete = true): UdpView {
  return new UdpView(buf, offset, end, complete);
}

/** Pseudo-header sum for `protocol` carried between `ip.src` and `ip.dst` with `length` bytes. */
export function pseudoHeaderSum(ip: IpPair, protocol: number, length: number): number {
  const src = parseIP(ip.src, 'ip.src');
  const dst = parseIP(ip.dst, 'ip.dst');
  if (src.family === 4 && dst.family === 4) return pseudoHeaderSum4(src.v4, dst.v4, protocol, length);
  if (src.family === 6 && dst.family === 6) return pseudoHeaderSum6(src.v6, 0, dst.v6, 0, protocol, length);
  throw new InvalidValueError('ip', `${ip.src} -> ${ip.dst}`, 'must be two addresses of the same family');
}

export interface UdpWriteOptions {
  /**
   * `compute` (default): the right checksum; `zero`: none (IPv4 only, as flannel's `noudpcsum` VTEP sends);
   * a number: store exactly that (to build a broken datagram on purpose).
   */
  checksum?: 'compute' | 'zero' | number;
}

/**
 * Fill in the checksum of a UDP datagram already written at out[offset, offset + length) with a zero checksum
 * field. A computed zero is sent as 0xffff (zero means "none").
 */
export function fillUdpChecksum(out: Buffer, offset: number, length: number, pseudoSum: number): void {
  const sum = ~fold16(sum16(out, offset, offset + length, pseudoSum)) & 0xffff;
  out.writeUInt16BE(sum === 0 ? 0xffff : sum, offset + 6);
}

/** A UDP datagram: header + payload, checksum per `options` (the pseudo-header needs `ip`). */
export function buildUdp(h: UdpHeader, payload: Uint8Array, ip: IpPair, options: UdpWriteOptions = {}): Buffer {
  checkBytes('payload', payload);
  const length = UDP_HEADER_LENGTH + payload.length;
  if (length > 0xffff) throw new InvalidValueError('payload', `${payload.length} bytes`, 'makes the UDP datagram longer than 65535 bytes');
  const out = Buffer.allocUnsafe(length);
  out.writeUInt16BE(checkInt('srcPort', h.srcPort, 0, 0xffff), 0);
  out.writeUInt16BE(checkInt('dstPort', h.dstPort, 0, 0xffff), 2);
  out.writeUInt16BE(length, 4);
  out.writeUInt16BE(0, 6);
  out.set(payload, UDP_HEADER_LENGTH);
  const mode = options.checksum ?? 'compute';
  const v6 = ip.src.includes(':');
  if (mode === 'compute') fillUdpChecksum(out, 0, length, pseudoHeaderSum(ip, IPPROTO_UDP, length));
  else if (mode === 'zero') {
    if (v6) throw new InvalidValueError('checksum', 'zero', 'is not allowed for UDP over IPv6 (RFC 8200)');
  } else out.writeUInt16BE(checkInt('checksum', mode, 0, 0xffff), 6);
  return out;
}
