/**
 * Whole frames as a pod or host sends them, for tests, the lab and the trace tools: a ping, a UDP datagram,
 * an ARP request or reply. The address family follows the IP addresses given.
 */
import { ARP_REQUEST, buildArp } from './arp.js';
import { ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, buildEthernet, type VlanTag } from './ethernet.js';
import { ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, ICMPV6_ECHO_REPLY, ICMPV6_ECHO_REQUEST, buildIcmp, buildIcmpv6, pingData } from './icmp.js';
import { IPPROTO_ICMP, IPPROTO_UDP, buildIpv4, ipv4Defaults } from './ipv4.js';
import { IPPROTO_ICMPV6, buildIpv6, ipv6Defaults } from './ipv6.js';
import { buildUdp, type UdpWriteOptions } from './udp.js';

export const BROADCAST_MAC = 'ff:ff:ff:ff:ff:ff';

export interface L2L3 {
  srcMac: string;
  dstMac: string;
  vlans?: VlanTag[];
  srcIp: string;
  dstIp: string;
  /** TTL / hop limit; default 64. */
  ttl?: number;
  /** IPv4 identification; default 0. */
  ipId?: number;
}

function ipFrame(o: L2L3, protocol: number, l4: (ip: { src: string; dst: string }) => Buffer): Buffer {
  const ip = { src: o.srcIp, dst: o.dstIp };
  const v6 = o.srcIp.includes(':');
  const packet = v6
    ? buildIpv6({ ...ipv6Defaults(o.srcIp, o.dstIp, protocol), hopLimit: o.ttl ?? 64 }, l4(ip))
    : buildIpv4({ ...ipv4Defaults(o.srcIp, o.dstIp, protocol, o.ipId ?? 0), ttl: o.ttl ?? 64 }, l4(ip));
  return buildEthernet({ dst: o.dstMac, src: o.srcMac, vlans: o.vlans ?? [], etherType: v6 ? ETHERTYPE_IPV6 : ETHERTYPE_IPV4 }, packet);
}

export interface EchoFrameOptions extends L2L3 {
  id: number;
  seq: number;
  /** Echo reply instead of request. */
  reply?: boolean;
  /** Default: the 56 bytes Linux ping sends, so an IPv4 frame is 98 bytes. */
  data?: Uint8Array;
}

/** An ICMP (or ICMPv6) echo request/reply frame — `ping`'s packet. */
export function icmpEchoFrame(o: EchoFrameOptions): Buffer {
  const data = o.data ?? pingData();
  const v6 = o.srcIp.includes(':');
  if (v6) {
    const type = o.reply ? ICMPV6_ECHO_REPLY : ICMPV6_ECHO_REQUEST;
    return ipFrame(o, IPPROTO_ICMPV6, (ip) => buildIcmpv6({ type, code: 0, id: o.id, seq: o.seq }, data, ip));
  }
  const type = o.reply ? ICMP_ECHO_REPLY : ICMP_ECHO_REQUEST;
  return ipFrame(o, IPPROTO_ICMP, () => buildIcmp({ type, code: 0, id: o.id, seq: o.seq }, data));
}

export interface UdpFrameOptions extends L2L3 {
  srcPort: number;
  dstPort: number;
  payload: Uint8Array;
  checksum?: UdpWriteOptions['checksum'];
}

export function udpFrame(o: UdpFrameOptions): Buffer {
  return ipFrame(o, IPPROTO_UDP, (ip) => buildUdp({ srcPort: o.srcPort, dstPort: o.dstPort }, o.payload, ip, { checksum: o.checksum ?? 'compute' }));
}

export interface ArpFrameOptions {
  op: number;
  senderMac: string;
  senderIp: string;
  /** 00:00:00:00:00:00 in a request. */
  targetMac: string;
  targetIp: string;
  /** Default: broadcast for a request, the target for a reply. */
  dstMac?: string;
  vlans?: VlanTag[];
}

/** An ARP frame (42 bytes, unpadded): "who has targetIp? tell senderIp", or the answer. */
export function arpFrame(o: ArpFrameOptions): Buffer {
  const dst = o.dstMac ?? (o.op === ARP_REQUEST ? BROADCAST_MAC : o.targetMac);
  return buildEthernet({ dst, src: o.senderMac, vlans: o.vlans ?? [], etherType: ETHERTYPE_ARP }, buildArp(o));
}
