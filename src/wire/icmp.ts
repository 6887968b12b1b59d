/**
 * ICMP (RFC 792) and ICMPv6 (RFC 4443). Every message has type, code and checksum; the next four bytes are
 * read as identifier and sequence number, which is what they are for echo request/reply (ping). ICMPv6's
 * checksum also covers the IPv6 pseudo-header; ICMPv4's covers the message only.
 */
import { checksumHolds, internetChecksum, pseudoHeaderSum6, type ChecksumStatus } from './checksum.js';
import { needBytes } from './errors.js';
import { IPPROTO_ICMPV6, type Ipv6View } from './ipv6.js';
import { pseudoHeaderSum, type IpPair } from './udp.js';
import { checkBytes, checkInt } from './validate.js';

export const ICMP_ECHO_REPLY = 0;
export const ICMP_ECHO_REQUEST = 8;
export const ICMPV6_ECHO_REQUEST = 128;
export const ICMPV6_ECHO_REPLY = 129;
export const ICMP_HEADER_LENGTH = 8;

export interface IcmpHeader {
  type: number;
  code: number;
  /** Echo identifier (bytes 4-5 of the message). */
  id: number;
  /** Echo sequence number (bytes 6-7). */
  seq: number;
}

export class IcmpView {
  readonly type: number;
  readonly code: number;
  readonly payloadOffset: number;

  /**
   * @param version 4 for ICMP, 6 for ICMPv6
   * @param truncated the capture holds only part of the message, so the checksum cannot be verified
   */
  constructor(
    readonly buf: Buffer,
    readonly offset: number,
    readonly end: number,
    readonly version: 4 | 6,
    readonly truncated = false,
  ) {
    needBytes(version === 4 ? 'icmp' : 'icmpv6', offset, end, ICMP_HEADER_LENGTH, 'an ICMP header');
    this.type = buf[offset]!;
    this.code = buf[offset + 1]!;
    this.payloadOffset = offset + ICMP_HEADER_LENGTH;
  }

  get checksum(): number {
    return (this.buf[this.offset + 2]! << 8) | this.buf[this.offset + 3]!;
  }
  get id(): number {
    return (this.buf[this.offset + 4]! << 8) | this.buf[this.offset + 5]!;
  }
  get seq(): number {
    return (this.buf[this.offset + 6]! << 8) | this.buf[this.offset + 7]!;
  }
  get isEcho(): boolean {
    return this.version === 4
      ? this.type === ICMP_ECHO_REQUEST || this.type === ICMP_ECHO_REPLY
      : this.type === ICMPV6_ECHO_REQUEST || this.type === ICMPV6_ECHO_REPLY;
  }
  /** Length of the whole ICMP message (header + data) in the buffer. */
  get length(): number {
    return this.end - this.offset;
  }
  get payload(): Buffer {
    return this.buf.subarray(this.payloadOffset, this.end);
  }

  /** ICMPv6 needs the IPv6 packet for its pseudo-header; ICMPv4 ignores `ip`. */
  checksumStatus(ip?: Ipv6View): ChecksumStatus {
    if (this.truncated || ip?.truncated) return 'unverified';
    if (this.version === 4) return checksumHolds(this.buf, this.offset, this.end) ? 'good' : 'bad';
    if (!ip) return 'unverified';
    const pseudo = pseudoHeaderSum6(ip.buf, ip.srcOffset, ip.buf, ip.dstOffset, IPPROTO_ICMPV6, this.length);
    return checksumHolds(this.buf, this.offset, this.end, pseudo) ? 'good' : 'bad';
  }

  header(): IcmpHeader {
    return { type: this.type, code: this.code, id: this.id, seq: this.seq };
  }
}

export function decodeIcmp(buf: Buffer, offset = 0, end = buf.length, version: 4 | 6 = 4, truncated = false): IcmpView {
  return new IcmpView(buf, offset, end, version, truncated);
}

function writeIcmpHeader(h: IcmpHeader, data: Uint8Array): Buffer {
  checkBytes('data', data);
  const out = Buffer.allocUnsafe(ICMP_HEADER_LENGTH + data.length);
  out[0] = checkInt('type', h.type, 0, 255);
  out[1] = checkInt('code', h.code, 0, 255);
  out.writeUInt16BE(0, 2);
  out.writeUInt16BE(checkInt('id', h.id, 0, 0xffff), 4);
  out.writeUInt16BE(checkInt('seq', h.seq, 0, 0xffff), 6);
  out.set(data, ICMP_HEADER_LENGTH);
  return out;
}

/** An ICMPv4 message with its checksum (or `checksum` as given, to break it on purpose). */
export function buildIcmp(h: IcmpHeader, data: Uint8Array, options: { checksum?: number } = {}): Buffer {
  const out = writeIcmpHeader(h, data);
  out.writeUInt16BE(options.checksum === undefined ? internetChecksum(out, 0, out.length) : checkInt('checksum', options.checksum, 0, 0xffff), 2);
  return out;
}

/** An ICMPv6 message; its checksum covers the IPv6 pseudo-header of `ip`. */
export function buildIcmpv6(h: IcmpHeader, data: Uint8Array, ip: IpPair, options: { checksum?: number } = {}): Buffer {
  const out = writeIcmpHeader(h, data);
  const sum =
    options.checksum === undefined
      ? internetChecksum(out, 0, out.length, pseudoHeaderSum(ip, IPPROTO_ICMPV6, out.length))
      : checkInt('checksum', options.checksum, 0, 0xffff);
  out.writeUInt16BE(sum, 2);
  return out;
}

/**
 * The 56 data bytes Linux ping sends by default: an 8-byte timestamp then bytes 0x10, 0x11, ... — so a built
 * echo request is 98 bytes on the wire, like the one in seed 003.
 */
export function pingData(length = 56, timestampMs = 0): Buffer {
  const out = Buffer.alloc(length);
  if (length >= 8) {
    out.writeUInt32LE(Math.floor(timestampMs / 1000) >>> 0, 0);
    out.writeUInt32LE(((timestampMs % 1000) * 1000) >>> 0, 4);
  }
  for (let i = 8; i < length; i++) out[i] = (i + 8) & 0xff;
  return out;
}
