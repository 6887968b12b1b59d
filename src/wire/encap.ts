/**
 * VXLAN encapsulation as a VTEP does it (seed 003): the inner Ethernet frame gets an 8-byte VXLAN header, a UDP
 * header to the VXLAN port from a flow-hashed source port, an outer IP header between the two hosts and an outer
 * Ethernet header between the two underlay interfaces: 14 + 20 + 8 + 8 = 50 bytes over IPv4 (70 over IPv6),
 * so a 98-byte ping frame becomes 148 bytes on the wire.
 */
import { InvalidValueError } from '../base/errors.js';
import { parseIP } from './address.js';
import { WireError } from './errors.js';
import { ETHERTYPE_IPV4, ETHERTYPE_IPV6, EthernetView, ethernetHeaderLength, writeEthernet, type VlanTag } from './ethernet.js';
import { DEFAULT_SOURCE_PORT_RANGE, flowSourcePort, type PortRange } from './flowhash.js';
import { IPPROTO_UDP, IPV4_MIN_HEADER_LENGTH, Ipv4View, writeIpv4 } from './ipv4.js';
import { IPV6_HEADER_LENGTH, Ipv6View, writeIpv6 } from './ipv6.js';
import { UDP_HEADER_LENGTH, UdpView, fillUdpChecksum, pseudoHeaderSum } from './udp.js';
import { checkBytes, checkInt } from './validate.js';
import { VXLAN_HEADER_LENGTH, VXLAN_PORT_IANA, VXLAN_PORT_LINUX, VxlanView, writeVxlan, type GroupPolicy } from './vxlan.js';

export interface VxlanOuter {
  /** Underlay MACs: the sending host's interface and the next hop's (the peer host on one L2 segment). */
  srcMac: string;
  dstMac: string;
  vlans?: VlanTag[];
  /** Underlay addresses (the VTEPs' `local` addresses); both IPv4 or both IPv6. */
  srcIp: string;
  dstIp: string;
  vni: number;
  gbp?: GroupPolicy;
  /** Default 8472, flannel's (Calico and RFC 7348 use 4789). */
  dstPort?: number;
  /** Default: flowSourcePort(inner, portRange). */
  srcPort?: number;
  /** Source port range for the flow hash; default 32768-60999, as a kernel VTEP with `srcport 0 0`. */
  portRange?: PortRange;
  /** Default 64. */
  ttl?: number;
  tos?: number;
  /** IPv4 identification; default 0. */
  ipId?: number;
  /** IPv4 DF bit; default false, like a kernel VTEP without `df set`. */
  dontFragment?: boolean;
  /**
   * Compute the UDP checksum. Default false over IPv4 (flannel's VTEP is `noudpcsum`: zero means none);
   * over IPv6 a checksum is always computed (RFC 8200).
   */
  udpChecksum?: boolean;
  /** IPv6 flow label; default 0. */
  flowLabel?: number;
}

/** Wrap `innerFrame` (a whole Ethernet frame) in VXLAN/UDP/IP/Ethernet; returns the frame as it goes on the wire. */
export function encapsulate(innerFrame: Uint8Array, outer: VxlanOuter): Buffer {
  checkBytes('innerFrame', innerFrame);
  const src = parseIP(outer.srcIp, 'srcIp');
  const dst = parseIP(outer.dstIp, 'dstIp');
  if (src.family !== dst.family) throw new InvalidValueError('dstIp', outer.dstIp, `is not of the same family as srcIp ${outer.srcIp}`);
  const v6 = src.family === 6;
  const dstPort = checkInt('dstPort', outer.dstPort ?? VXLAN_PORT_LINUX, 1, 65535);
  const srcPort =
    outer.srcPort === undefined ? flowSourcePort(innerFrame, outer.portRange ?? DEFAULT_SOURCE_PORT_RANGE) : checkInt('srcPort', outer.srcPort, 1, 65535);

  const udpLength = UDP_HEADER_LENGTH + VXLAN_HEADER_LENGTH + innerFrame.length;
  const ipHeaderLength = v6 ? IPV6_HEADER_LENGTH : IPV4_MIN_HEADER_LENGTH;
  const ethHeaderLength = ethernetHeaderLength(outer);
  const out = Buffer.allocUnsafe(ethHeaderLength + ipHeaderLength + udpLength);

  const ipOffset = writeEthernet(out, 0, { dst: outer.dstMac, src: outer.srcMac, vlans: outer.vlans ?? [], etherType: v6 ? ETHERTYPE_IPV6 : ETHERTYPE_IPV4 });
  const udpOffset = v6
    ? writeIpv6(
        out,
        ipOffset,
        {
          trafficClass: outer.tos ?? 0,
          flowLabel: outer.flowLabel ?? 0,
          nextHeader: IPPROTO_UDP,
          hopLimit: outer.ttl ?? 64,
          src: outer.srcIp,
          dst: outer.dstIp,
        },
        udpLength,
      )
    : writeIpv4(
        out,
        ipOffset,
        {
          tos: outer.tos ?? 0,
          id: outer.ipId ?? 0,
          dontFragment: outer.dontFragment ?? false,
          moreFragments: false,
          fragmentOffset: 0,
          ttl: outer.ttl ?? 64,
          protocol: IPPROTO_UDP,
          src: outer.srcIp,
          dst: outer.dstIp,
        },
        udpLength,
      );
  out.writeUInt16BE(srcPort, udpOffset);
  out.writeUInt16BE(dstPort, udpOffset + 2);
  out.writeUInt16BE(udpLength, udpOffset + 4);
  out.writeUInt16BE(0, udpOffset + 6);
  const innerOffset = writeVxlan(out, udpOffset + UDP_HEADER_LENGTH, { vni: outer.vni, ...(outer.gbp ? { gbp: outer.gbp } : {}) });
  out.set(innerFrame, innerOffset);
  if (v6 || outer.udpChecksum) fillUdpChecksum(out, udpOffset, udpLength, pseudoHeaderSum({ src: outer.srcIp, dst: outer.dstIp }, IPPROTO_UDP, udpLength));
  return out;
}

/** The VXLAN ports tulle recognises without being told: 4789 (IANA, Calico) and 8472 (Linux, flannel). */
export const DEFAULT_VXLAN_PORTS: ReadonlySet<number> = new Set([VXLAN_PORT_IANA, VXLAN_PORT_LINUX]);

export interface Decapsulated {
  outer: { eth: EthernetView; ip: Ipv4View | Ipv6View; udp: UdpView };
  vxlan: VxlanView;
  /** The inner Ethernet frame: a view into `frame`, not a copy. */
  inner: Buffer;
}

/**
 * Take a VXLAN frame apart. Throws WireError: TLE_WIRE_UNSUPPORTED when the frame is well-formed but not
 * VXLAN (not IP/UDP, or a UDP port that is not in `ports`), TLE_WIRE_TRUNCATED / _MALFORMED when a header is
 * broken.
 */
export function decapsulate(frame: Buffer, options: { ports?: ReadonlySet<number> } = {}): Decapsulated {
  const ports = options.ports ?? DEFAULT_VXLAN_PORTS;
  const eth = new EthernetView(frame, 0, frame.length);
  let ip: Ipv4View | Ipv6View;
  if (eth.etherType === ETHERTYPE_IPV4) ip = new Ipv4View(frame, eth.payloadOffset, frame.length);
  else if (eth.etherType === ETHERTYPE_IPV6) ip = new Ipv6View(frame, eth.payloadOffset, frame.length);
  else throw new WireError('TLE_WIRE_UNSUPPORTED', 'ethernet', 12, `EtherType 0x${eth.etherType.toString(16).padStart(4, '0')} is not IPv4 or IPv6`);
  if (ip.isFragment)
    throw new WireError('TLE_WIRE_UNSUPPORTED', ip instanceof Ipv4View ? 'ipv4' : 'ipv6', ip.offset, 'a fragment cannot be decapsulated on its own');
  if (ip.protocol !== IPPROTO_UDP)
    throw new WireError('TLE_WIRE_UNSUPPORTED', ip instanceof Ipv4View ? 'ipv4' : 'ipv6', ip.offset, `protocol ${ip.protocol} is not UDP`);
  const udp = new UdpView(frame, ip.payloadOffset, ip.payloadEnd);
  if (!ports.has(udp.dstPort))
    throw new WireError('TLE_WIRE_UNSUPPORTED', 'udp', udp.offset + 2, `destination port ${udp.dstPort} is not a VXLAN port (${[...ports].join(', ')})`);
  const vxlan = new VxlanView(frame, udp.payloadOffset, udp.payloadEnd);
  return { outer: { eth, ip, udp }, vxlan, inner: vxlan.payload };
}
