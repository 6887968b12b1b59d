/**
 * Which frames `tulle decode` shows: a test on the dissected fields, run before anything is formatted, so a
 * person looking for one flow in a large capture pays for decoding every frame but for printing only that flow.
 *
 * - vni: the frame carries this VNI at any VXLAN level (tshark: `vxlan.vni == N`).
 * - host: the outer IP header's source or destination — the underlay hosts; or, for an ARP frame on the underlay,
 *   its sender or target address (tshark: `ip.addr#1 == X`, `ipv6.addr#1 == X`, `arp.src.proto_ipv4 == X` ...).
 * - innerHost: the same for the frame inside VXLAN (the innermost one when VXLAN is nested): the pods.
 * - proto: what the innermost frame carries: icmp (ICMP or ICMPv6), tcp, udp or arp. The UDP that carries VXLAN
 *   does not count: `--proto udp` finds pods' UDP traffic, not every VXLAN frame.
 * Every condition given must hold.
 */
import { InvalidValueError } from '../base/errors.js';
import { parseIP } from './address.js';
import type { Dissection } from './dissect.js';
import { IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP } from './ipv4.js';
import { IPPROTO_ICMPV6 } from './ipv6.js';

export const FILTER_PROTOCOLS = ['icmp', 'tcp', 'udp', 'arp'] as const;
export type FilterProtocol = (typeof FILTER_PROTOCOLS)[number];

export interface FrameFilterOptions {
  vni?: number;
  /** IPv4 or IPv6 text. */
  host?: string;
  innerHost?: string;
  proto?: FilterProtocol;
}

/** An address to match, in the form the wire holds it. */
type Address = { v4: number; v6: undefined } | { v4: undefined; v6: Buffer };

/** Values in messages are cut: a hostile argument must not flood the terminal. */
function clip(text: string, max = 64): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

function parseAddress(field: string, text: string): Address {
  try {
    const a = parseIP(text, field);
    return a.family === 4 ? { v4: a.v4, v6: undefined } : { v4: undefined, v6: a.v6 };
  } catch {
    throw new InvalidValueError(field, clip(String(text)), 'is not an IPv4 or IPv6 address (like 192.0.2.11 or 2001:db8::11)');
  }
}

function sameV6(buf: Buffer, offset: number, want: Buffer): boolean {
  for (let i = 0; i < 16; i++) if (buf[offset + i] !== want[i]) return false;
  return true;
}

/** Does this frame (one level, not the frames inside it) carry `a` as an IP source or destination, or in ARP? */
function hasAddress(d: Dissection, a: Address): boolean {
  if (a.v4 !== undefined) {
    if (d.ipv4) return d.ipv4.srcNumber === a.v4 || d.ipv4.dstNumber === a.v4;
    if (d.arp?.isEthernetIPv4) return d.arp.senderIpNumber === a.v4 || d.arp.targetIpNumber === a.v4;
    return false;
  }
  const v6 = d.ipv6;
  return v6 !== undefined && (sameV6(d.buf, v6.srcOffset, a.v6) || sameV6(d.buf, v6.dstOffset, a.v6));
}

function carriesProtocol(d: Dissection, proto: FilterProtocol): boolean {
  if (proto === 'arp') return d.arp !== undefined;
  const ip = d.ip;
  if (!ip || ip.isFragment) return false;
  switch (proto) {
    case 'icmp':
      return ip.protocol === (d.ipv4 ? IPPROTO_ICMP : IPPROTO_ICMPV6);
    case 'tcp':
      return ip.protocol === IPPROTO_TCP;
    case 'udp':
      return ip.protocol === IPPROTO_UDP;
  }
}

export type FrameFilter = (d: Dissection) => boolean;

/** The test for these options, or undefined when none is given (every frame is shown). Throws on a bad address. */
export function frameFilter(options: FrameFilterOptions): FrameFilter | undefined {
  const { vni, proto } = options;
  const host = options.host === undefined ? undefined : parseAddress('--host', options.host);
  const innerHost = options.innerHost === undefined ? undefined : parseAddress('--inner-host', options.innerHost);
  if (proto !== undefined && !(FILTER_PROTOCOLS as readonly string[]).includes(proto)) {
    throw new InvalidValueError('--proto', clip(String(proto)), `is not one of ${FILTER_PROTOCOLS.join(', ')}`);
  }
  if (vni === undefined && host === undefined && innerHost === undefined && proto === undefined) return undefined;
  return (d) => {
    if (host !== undefined && !hasAddress(d, host)) return false;
    if (vni !== undefined) {
      let found = false;
      for (let x: Dissection | undefined = d; x && !found; x = x.inner) found = x.vxlan?.vni === vni;
      if (!found) return false;
    }
    if (innerHost !== undefined || proto !== undefined) {
      const inner = d.innermost;
      if (innerHost !== undefined && (inner === d || !hasAddress(inner, innerHost))) return false;
      if (proto !== undefined && !carriesProtocol(inner, proto)) return false;
    }
    return true;
  };
}
