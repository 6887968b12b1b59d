/**
 * One captured frame taken apart layer by layer, as far as it goes: Ethernet (or raw IP / Linux cooked
 * capture), ARP, IPv4/IPv6, UDP, ICMP/ICMPv6 and — on a VXLAN port — VXLAN and the inner frame, dissected the
 * same way. Each layer is a view over the captured buffer (no copies). A broken layer ends the dissection with
 * `error` set; the layers before it stay, so a malformed frame is still shown as far as it could be read.
 */
import { ArpView } from './arp.js';
import { DEFAULT_VXLAN_PORTS } from './encap.js';
import { WireError, type WireErrorCode } from './errors.js';
import { ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, EthernetView } from './ethernet.js';
import { IcmpView } from './icmp.js';
import { IPPROTO_ICMP, IPPROTO_UDP, Ipv4View } from './ipv4.js';
import { IPPROTO_ICMPV6, Ipv6View } from './ipv6.js';
import { UdpView } from './udp.js';
import { VxlanView } from './vxlan.js';

/** pcap link types (www.tcpdump.org/linktypes.html) the dissector reads. */
export const LINKTYPE_ETHERNET = 1;
export const LINKTYPE_RAW = 101;
export const LINKTYPE_LINUX_SLL = 113;
export const LINKTYPE_IPV4 = 228;
export const LINKTYPE_IPV6 = 229;
export const LINKTYPE_LINUX_SLL2 = 276;

/** VXLAN inside VXLAN is legal; more levels than this is a hostile frame. */
const MAX_NESTING = 4;

export interface DissectOptions {
  /** UDP destination ports decoded as VXLAN; default 4789 and 8472. */
  vxlanPorts?: ReadonlySet<number>;
  /** pcap link type of the frame; default Ethernet. */
  linkType?: number;
  /**
   * The buffer holds the whole frame as it was sent (captured length = original length). Default true; then a
   * length field past the end is an error. When false (a capture cut at its snap length) the layers are read
   * as far as the bytes go and checksums above the cut are `unverified`.
   */
  complete?: boolean;
}

export class Dissection {
  eth: EthernetView | undefined = undefined;
  arp: ArpView | undefined = undefined;
  ipv4: Ipv4View | undefined = undefined;
  ipv6: Ipv6View | undefined = undefined;
  udp: UdpView | undefined = undefined;
  icmp: IcmpView | undefined = undefined;
  vxlan: VxlanView | undefined = undefined;
  /** The frame inside VXLAN. */
  inner: Dissection | undefined = undefined;
  /** The first layer that could not be read; the layers before it are set. */
  error: WireError | undefined = undefined;

  constructor(
    readonly buf: Buffer,
    readonly offset: number,
    readonly end: number,
    readonly linkType: number,
  ) {}

  get ip(): Ipv4View | Ipv6View | undefined {
    return this.ipv4 ?? this.ipv6;
  }

  /** The innermost dissection (this one when not VXLAN). */
  get innermost(): Dissection {
    return this.inner ? this.inner.innermost : this;
  }

  /** True when this frame or any frame inside it has an error. */
  get malformed(): boolean {
    return this.error !== undefined || (this.inner?.malformed ?? false);
  }
}

/** Dissect buf[offset, end); never throws for any bytes (a broken layer sets `error`). */
export function dissect(buf: Buffer, offset = 0, end = buf.length, options: DissectOptions = {}): Dissection {
  return dissectAt(buf, offset, end, options.linkType ?? LINKTYPE_ETHERNET, options.vxlanPorts ?? DEFAULT_VXLAN_PORTS, options.complete ?? true, 0, offset);
}

/** `frameStart`: where the outermost frame begins in `buf`; error offsets are made relative to it. */
function dissectAt(
  buf: Buffer,
  offset: number,
  end: number,
  linkType: number,
  ports: ReadonlySet<number>,
  complete: boolean,
  depth: number,
  frameStart: number,
): Dissection {
  const d = new Dissection(buf, offset, end, linkType);
  try {
    let netOffset: number;
    let netType: number;
    switch (linkType) {
      case LINKTYPE_ETHERNET: {
        const eth = (d.eth = new EthernetView(buf, offset, end));
        netOffset = eth.payloadOffset;
        netType = eth.etherType;
        break;
      }
      case LINKTYPE_RAW:
      case LINKTYPE_IPV4:
      case LINKTYPE_IPV6:
        if (offset >= end) throw new WireError('TLE_WIRE_TRUNCATED', 'ip', offset, 'the frame is empty');
        netOffset = offset;
        netType = buf[offset]! >>> 4 === 6 ? ETHERTYPE_IPV6 : ETHERTYPE_IPV4;
        break;
      case LINKTYPE_LINUX_SLL:
        if (end - offset < 16)
          throw new WireError('TLE_WIRE_TRUNCATED', 'linux-sll', offset, `a cooked-capture header needs 16 bytes but only ${end - offset} are left`);
        netOffset = offset + 16;
        netType = (buf[offset + 14]! << 8) | buf[offset + 15]!;
        break;
      case LINKTYPE_LINUX_SLL2:
        if (end - offset < 20)
          throw new WireError('TLE_WIRE_TRUNCATED', 'linux-sll2', offset, `a cooked-capture header needs 20 bytes but only ${end - offset} are left`);
        netOffset = offset + 20;
        netType = (buf[offset]! << 8) | buf[offset + 1]!;
        break;
      default:
        throw new WireError('TLE_WIRE_UNSUPPORTED', 'link', offset, `link type ${linkType} is not one tulle decodes (Ethernet, raw IP, Linux cooked)`);
    }
    if (netType === ETHERTYPE_ARP) {
      d.arp = new ArpView(buf, netOffset, end);
      return d;
    }
    let ip: Ipv4View | Ipv6View;
    if (netType === ETHERTYPE_IPV4) ip = d.ipv4 = new Ipv4View(buf, netOffset, end, complete);
    else if (netType === ETHERTYPE_IPV6) ip = d.ipv6 = new Ipv6View(buf, netOffset, end, complete);
    else return d;
    if (ip.isFragment) return d;
    const proto = ip.protocol;
    if (proto === IPPROTO_UDP) {
      const udp = (d.udp = new UdpView(buf, ip.payloadOffset, ip.payloadEnd, complete && !ip.truncated));
      if (ports.has(udp.dstPort)) {
        const vx = (d.vxlan = new VxlanView(buf, udp.payloadOffset, udp.payloadEnd));
        if (depth + 1 >= MAX_NESTING) throw new WireError('TLE_WIRE_MALFORMED', 'vxlan', vx.offset, `VXLAN nested more than ${MAX_NESTING - 1} deep`);
        d.inner = dissectAt(buf, vx.payloadOffset, udp.payloadEnd, LINKTYPE_ETHERNET, ports, complete && !udp.truncated, depth + 1, frameStart);
      }
    } else if (proto === IPPROTO_ICMP && d.ipv4) {
      d.icmp = new IcmpView(buf, ip.payloadOffset, ip.payloadEnd, 4, ip.truncated);
    } else if (proto === IPPROTO_ICMPV6 && d.ipv6) {
      d.icmp = new IcmpView(buf, ip.payloadOffset, ip.payloadEnd, 6, ip.truncated);
    }
  } catch (err) {
    if (!(err instanceof WireError)) throw err;
    d.error = frameStart === 0 ? err : new WireError(err.code as WireErrorCode, err.layer, err.offset - frameStart, err.reason);
  }
  return d;
}
