/**
 * IPv6 (RFC 8200): the 40-byte base header; extension headers are walked over to find the upper-layer
 * protocol. A fragment (other than a whole datagram) stops there, as for IPv4.
 */
import { formatIPv6, parseIPv6 } from './address.js';
import { WireError, needBytes } from './errors.js';
import { checkBytes, checkInt } from './validate.js';

export const IPV6_HEADER_LENGTH = 40;
export const IPPROTO_ICMPV6 = 58;
export const IPPROTO_NONE = 59;

const HOP_BY_HOP = 0;
const ROUTING = 43;
const FRAGMENT = 44;
const AUTH = 51;
const DEST_OPTS = 60;
const MOBILITY = 135;
const HIP = 139;
const SHIM6 = 140;
/** Bound on the chain so a hostile packet cannot make the walk long. */
const MAX_EXTENSION_HEADERS = 16;

export interface Ipv6Header {
  trafficClass: number;
  flowLabel: number;
  /** The protocol right after the base header (an extension header or the upper layer). */
  nextHeader: number;
  hopLimit: number;
  src: string;
  dst: string;
}

export class Ipv6View {
  readonly payloadLength: number;
  readonly nextHeader: number;
  /** The protocol after all extension headers (e.g. 17 UDP, 58 ICMPv6). */
  readonly protocol: number;
  /** Offset of the upper-layer header. */
  readonly payloadOffset: number;
  readonly payloadEnd: number;
  readonly truncated: boolean;
  /** The packet is a fragment of a larger datagram (a Fragment header with offset or M flag). */
  readonly isFragment: boolean;
  /** Types of the extension headers walked over, in order. */
  readonly extensionHeaders: readonly number[];

  constructor(
    readonly buf: Buffer,
    readonly offset: number,
    end: number,
    complete = true,
  ) {
    needBytes('ipv6', offset, end, IPV6_HEADER_LENGTH, 'an IPv6 header');
    const version = buf[offset]! >>> 4;
    if (version !== 6) throw new WireError('TLE_WIRE_MALFORMED', 'ipv6', offset, `version ${version} is not 6`);
    const plen = (buf[offset + 4]! << 8) | buf[offset + 5]!;
    let payloadEnd = offset + IPV6_HEADER_LENGTH + plen;
    let truncated = false;
    if (payloadEnd > end) {
      if (complete)
        throw new WireError(
          'TLE_WIRE_MALFORMED',
          'ipv6',
          offset + 4,
          `payload length ${plen} is past the end of the frame (${end - offset - IPV6_HEADER_LENGTH} bytes left)`,
        );
      payloadEnd = end;
      truncated = true;
    }
    this.payloadLength = plen;
    this.nextHeader = buf[offset + 6]!;
    this.payloadEnd = payloadEnd;
    this.truncated = truncated;

    let next = this.nextHeader;
    let o = offset + IPV6_HEADER_LENGTH;
    let fragment = false;
    const walked: number[] = [];
    while (isExtensionHeader(next)) {
      if (walked.length >= MAX_EXTENSION_HEADERS) throw new WireError('TLE_WIRE_MALFORMED', 'ipv6', o, `more than ${MAX_EXTENSION_HEADERS} extension headers`);
      needBytes('ipv6', o, payloadEnd, 8, `extension header ${next}`);
      let len: number;
      if (next === FRAGMENT) {
        len = 8;
        const offsetAndFlags = (buf[o + 2]! << 8) | buf[o + 3]!;
        if ((offsetAndFlags & 0xfff8) !== 0 || (offsetAndFlags & 1) !== 0) fragment = true;
      } else if (next === AUTH) {
        len = (buf[o + 1]! + 2) * 4;
      } else {
        len = (buf[o + 1]! + 1) * 8;
      }
      needBytes('ipv6', o, payloadEnd, len, `extension header ${next}`);
      walked.push(next);
      next = buf[o]!;
      o += len;
      if (fragment) break;
    }
    this.protocol = next;
    this.payloadOffset = o;
    this.isFragment = fragment;
    this.extensionHeaders = walked;
  }

  get trafficClass(): number {
    return ((this.buf[this.offset]! & 0x0f) << 4) | (this.buf[this.offset + 1]! >>> 4);
  }
  get flowLabel(): number {
    return ((this.buf[this.offset + 1]! & 0x0f) << 16) | (this.buf[this.offset + 2]! << 8) | this.buf[this.offset + 3]!;
  }
  get hopLimit(): number {
    return this.buf[this.offset + 7]!;
  }
  /** Offset of the 16-byte source address (for checksums without copying). */
  get srcOffset(): number {
    return this.offset + 8;
  }
  get dstOffset(): number {
    return this.offset + 24;
  }
  get src(): string {
    return formatIPv6(this.buf, this.srcOffset);
  }
  get dst(): string {
    return formatIPv6(this.buf, this.dstOffset);
  }
  get payload(): Buffer {
    return this.buf.subarray(this.payloadOffset, this.payloadEnd);
  }

  header(): Ipv6Header {
    return { trafficClass: this.trafficClass, flowLabel: this.flowLabel, nextHeader: this.nextHeader, hopLimit: this.hopLimit, src: this.src, dst: this.dst };
  }
}

function isExtensionHeader(n: number): boolean {
  return n === HOP_BY_HOP || n === ROUTING || n === FRAGMENT || n === AUTH || n === DEST_OPTS || n === MOBILITY || n === HIP || n === SHIM6;
}

export function decodeIpv6(buf: Buffer, offset = 0, end = buf.length, complete = true): Ipv6View {
  return new Ipv6View(buf, offset, end, complete);
}

/** Write the base header at `offset` for `payloadLength` bytes after it (extension headers included); returns the payload offset. */
export function writeIpv6(out: Buffer, offset: number, h: Ipv6Header, payloadLength: number): number {
  const tc = checkInt('trafficClass', h.trafficClass, 0, 255);
  const fl = checkInt('flowLabel', h.flowLabel, 0, 0xfffff);
  checkInt('payload length', payloadLength, 0, 0xffff);
  out.writeUInt32BE(((6 << 28) | (tc << 20) | fl) >>> 0, offset);
  out.writeUInt16BE(payloadLength, offset + 4);
  out[offset + 6] = checkInt('nextHeader', h.nextHeader, 0, 255);
  out[offset + 7] = checkInt('hopLimit', h.hopLimit, 0, 255);
  parseIPv6(h.src, 'src').copy(out, offset + 8);
  parseIPv6(h.dst, 'dst').copy(out, offset + 24);
  return offset + IPV6_HEADER_LENGTH;
}

export function buildIpv6(h: Ipv6Header, payload: Uint8Array): Buffer {
  checkBytes('payload', payload);
  const out = Buffer.allocUnsafe(IPV6_HEADER_LENGTH + payload.length);
  writeIpv6(out, 0, h, payload.length);
  out.set(payload, IPV6_HEADER_LENGTH);
  return out;
}

export function ipv6Defaults(src: string, dst: string, nextHeader: number): Ipv6Header {
  return { trafficClass: 0, flowLabel: 0, nextHeader, hopLimit: 64, src, dst };
}
