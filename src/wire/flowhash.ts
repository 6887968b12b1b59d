/**
 * The outer UDP source port of a VXLAN packet, derived from a hash of the inner flow (seed 003, "ECMP"):
 * routers between the hosts spread traffic over equal-cost paths by hashing the outer 5-tuple, in which only the
 * source port varies, so one inner flow must keep one port (no reordering) and different flows must spread.
 * The Linux VTEP does the same (udp_flow_src_port): hash the inner flow, scale the hash into the port range.
 *
 * The flow is the inner IPv4/IPv6 addresses, protocol and — for TCP, UDP, SCTP and UDP-Lite — the ports, or
 * the echo identifier for ICMP/ICMPv6 echo (so separate pings spread too). A frame that is not IP, or cannot be
 * read as such, hashes its MAC addresses and EtherType, as the kernel falls back to.
 */
import { InvalidValueError } from '../base/errors.js';
import { ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_QINQ, ETHERTYPE_VLAN } from './ethernet.js';
import { checkInt } from './validate.js';

export interface PortRange {
  /** Lowest port, inclusive. */
  min: number;
  /** Highest port, inclusive. */
  max: number;
}

/** Linux's default ip_local_port_range, which a VTEP with `srcport 0 0` (flannel, Calico) uses. */
export const DEFAULT_SOURCE_PORT_RANGE: Readonly<PortRange> = Object.freeze({ min: 32768, max: 60999 });

const PORTS_PROTOCOLS = new Set([6, 17, 132, 136]); // TCP, UDP, SCTP, UDP-Lite

/** 32-bit multiply-rotate mixing (MurmurHash3's), fed one 32-bit word at a time. */
function mix(h: number, k: number): number {
  k = Math.imul(k, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, 0x1b873593);
  h ^= k;
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

function finish(h: number, length: number): number {
  h ^= length;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

function word(b: Uint8Array, o: number): number {
  return (b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!;
}

/** Hash of the inner frame's flow, as an unsigned 32-bit number. Never throws: unreadable frames hash their first bytes. */
export function flowHash(frame: Uint8Array, seed = 0): number {
  const end = frame.length;
  if (end < 14) {
    let h = seed;
    for (let i = 0; i < end; i++) h = mix(h, frame[i]!);
    return finish(h, end);
  }
  let o = 12;
  let type = (frame[o]! << 8) | frame[o + 1]!;
  for (let tags = 0; (type === ETHERTYPE_VLAN || type === ETHERTYPE_QINQ) && tags < 8 && o + 6 <= end; tags++) {
    o += 4;
    type = (frame[o]! << 8) | frame[o + 1]!;
  }
  o += 2;
  let h = seed;
  let l4 = -1;
  let proto: number;
  if (type === ETHERTYPE_IPV4 && o + 20 <= end && frame[o]! >>> 4 === 4) {
    const hl = (frame[o]! & 15) * 4;
    proto = frame[o + 9]!;
    h = mix(mix(mix(h, word(frame, o + 12)), word(frame, o + 16)), proto);
    const fragmented = (((frame[o + 6]! & 0x3f) << 8) | frame[o + 7]!) !== 0;
    if (!fragmented && hl >= 20) l4 = o + hl;
  } else if (type === ETHERTYPE_IPV6 && o + 40 <= end && frame[o]! >>> 4 === 6) {
    proto = frame[o + 6]!;
    for (let i = 8; i < 40; i += 4) h = mix(h, word(frame, o + i));
    h = mix(h, proto);
    l4 = o + 40; // extension headers are rare on pod traffic; with one present the addresses alone decide
  } else {
    // Not IP: the kernel's fallback hashes the Ethernet addresses and the protocol.
    for (let i = 0; i < 12; i += 4) h = mix(h, word(frame, i));
    return finish(mix(h, type), 14);
  }
  if (l4 >= 0 && l4 + 8 <= end) {
    if (PORTS_PROTOCOLS.has(proto)) h = mix(h, word(frame, l4));
    else if (proto === 1 && (frame[l4] === 8 || frame[l4] === 0)) h = mix(h, (frame[l4 + 4]! << 8) | frame[l4 + 5]!);
    else if (proto === 58 && (frame[l4] === 128 || frame[l4] === 129)) h = mix(h, (frame[l4 + 4]! << 8) | frame[l4 + 5]!);
  }
  return finish(h, 40);
}

export function checkPortRange(range: PortRange, field = 'portRange'): PortRange {
  checkInt(`${field}.min`, range.min, 1, 65535);
  checkInt(`${field}.max`, range.max, 1, 65535);
  if (range.min > range.max) throw new InvalidValueError(field, `${range.min}-${range.max}`, 'must have min <= max');
  return range;
}

/**
 * The outer UDP source port for `innerFrame`: its flow hash scaled into `range` (inclusive), the way the
 * kernel scales (hash * span) >> 32 so every port of the range is equally likely.
 */
export function flowSourcePort(innerFrame: Uint8Array, range: PortRange = DEFAULT_SOURCE_PORT_RANGE, seed = 0): number {
  checkPortRange(range);
  const span = range.max - range.min + 1;
  return range.min + Math.floor((flowHash(innerFrame, seed) * span) / 0x100000000);
}
