/**
 * A dissected frame in words and as JSON. The text reads like `tcpdump -nn -e` (seed 003): outer MACs, IPs and
 * ports, `VXLAN, flags [I] (0x08), vni 1`, then the inner frame on an indented line. The JSON object holds the
 * same fields by name, one object per frame, for jq and for the comparison with tshark.
 */
import type { Dissection } from './dissect.js';
import { ByteSink, etherTypeName, protocolName, secondText, writeFrameText, type FrameMeta } from './format.js';

export type { FrameMeta };

/** The protocol a frame carries at its top, for the summary: ICMP, UDP, ARP, TCP, ... */
export function topProtocol(d: Dissection): string {
  if (d.arp) return 'ARP';
  const ip = d.ip;
  if (ip) {
    if (ip.isFragment) return `${d.ipv4 ? 'IPv4' : 'IPv6'} fragment`;
    return protocolName(ip.protocol);
  }
  if (d.eth) return d.eth.isLengthField ? '802.3' : etherTypeName(d.eth.etherType);
  return 'unknown';
}

function isoTime(sec: number, nsec: number): string {
  return `${secondText(sec)}.${String(nsec).padStart(9, '0')}Z`;
}

/** One frame (and, for VXLAN, its inner frame on the next, indented line), tcpdump style. */
export function describeFrame(d: Dissection, meta: FrameMeta): string {
  const sink = new ByteSink(512);
  writeFrameText(sink, d, meta);
  return sink.take().toString('utf8');
}

/** The frame as a plain object (JSON Lines output). Field names are stable; absent layers are absent keys. */
export function frameToJson(d: Dissection, meta: FrameMeta): Record<string, unknown> {
  return {
    frame: meta.number,
    time: isoTime(meta.sec, meta.nsec),
    length: meta.originalLength,
    captured: meta.capturedLength,
    ...layersToJson(d),
  };
}

function layersToJson(d: Dissection): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  if (d.eth) {
    const eth: Record<string, unknown> = { src: d.eth.src, dst: d.eth.dst, type: d.eth.etherType };
    if (d.eth.vlanCount) eth.vlans = d.eth.vlans;
    o.eth = eth;
  }
  if (d.arp) {
    o.arp = d.arp.isEthernetIPv4
      ? { op: d.arp.op, senderMac: d.arp.senderMac, senderIp: d.arp.senderIp, targetMac: d.arp.targetMac, targetIp: d.arp.targetIp }
      : { op: d.arp.op, hardwareType: d.arp.hardwareType, protocolType: d.arp.protocolType };
  }
  if (d.ipv4) {
    const ip = d.ipv4;
    o.ip = {
      version: 4,
      src: ip.src,
      dst: ip.dst,
      protocol: ip.protocol,
      ttl: ip.ttl,
      id: ip.id,
      tos: ip.tos,
      length: ip.totalLength,
      df: ip.dontFragment,
      mf: ip.moreFragments,
      fragmentOffset: ip.fragmentOffset,
      checksum: ip.checksum,
      checksumStatus: ip.checksumValid ? 'good' : 'bad',
    };
  } else if (d.ipv6) {
    const ip = d.ipv6;
    o.ip = {
      version: 6,
      src: ip.src,
      dst: ip.dst,
      protocol: ip.protocol,
      hopLimit: ip.hopLimit,
      trafficClass: ip.trafficClass,
      flowLabel: ip.flowLabel,
      length: ip.payloadLength,
      ...(ip.extensionHeaders.length ? { extensionHeaders: ip.extensionHeaders } : {}),
      ...(ip.isFragment ? { fragment: true } : {}),
    };
  }
  if (d.udp) {
    o.udp = { srcPort: d.udp.srcPort, dstPort: d.udp.dstPort, length: d.udp.length, checksum: d.udp.checksum, checksumStatus: d.udp.checksumStatus(d.ip!) };
  }
  if (d.icmp) {
    const i = d.icmp;
    o[i.version === 4 ? 'icmp' : 'icmpv6'] = {
      type: i.type,
      code: i.code,
      ...(i.isEcho ? { id: i.id, seq: i.seq } : {}),
      checksum: i.checksum,
      checksumStatus: i.checksumStatus(d.ipv6),
    };
  }
  if (d.vxlan) {
    const v = d.vxlan;
    o.vxlan = {
      flags: v.flags,
      vni: v.vni,
      ...(v.gFlag ? { gbp: { policyId: v.policyId, dontLearn: v.dontLearn, policyApplied: v.policyApplied } } : {}),
      ...(v.reservedBitsSet ? { reservedBitsSet: true } : {}),
    };
  }
  if (d.inner) o.inner = layersToJson(d.inner);
  if (d.error) o.error = { code: d.error.code, layer: d.error.layer, offset: d.error.offset, reason: d.error.reason };
  return o;
}

/** Counts for the summary under the frame list. */
export class DecodeSummary {
  frames = 0;
  malformed = 0;
  vxlanFrames = 0;
  readonly perVni = new Map<number, number>();
  readonly innerProtocols = new Map<string, number>();
  readonly otherProtocols = new Map<string, number>();

  add(d: Dissection): void {
    this.frames++;
    if (d.malformed) this.malformed++;
    if (d.vxlan) {
      this.vxlanFrames++;
      const vni = d.vxlan.vni;
      this.perVni.set(vni, (this.perVni.get(vni) ?? 0) + 1);
      if (d.inner) bump(this.innerProtocols, topProtocol(d.innermost));
    } else {
      bump(this.otherProtocols, topProtocol(d));
    }
  }

  toJSON(): Record<string, unknown> {
    return {
      frames: this.frames,
      malformed: this.malformed,
      vxlanFrames: this.vxlanFrames,
      perVni: Object.fromEntries([...this.perVni].sort((a, b) => a[0] - b[0])),
      innerProtocols: Object.fromEntries(sorted(this.innerProtocols)),
      otherProtocols: Object.fromEntries(sorted(this.otherProtocols)),
    };
  }

  format(): string {
    const list = (m: Map<string, number>): string =>
      sorted(m)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ') || '-';
    const vnis = [...this.perVni]
      .sort((a, b) => a[0] - b[0])
      .map(([k, v]) => `vni ${k}: ${v}`)
      .join(', ');
    return [
      `frames           ${this.frames}`,
      `malformed        ${this.malformed}`,
      `vxlan frames     ${this.vxlanFrames}${vnis ? `  (${vnis})` : ''}`,
      `inner protocols  ${list(this.innerProtocols)}`,
      `other frames     ${this.frames - this.vxlanFrames}${this.otherProtocols.size ? `  (${list(this.otherProtocols)})` : ''}`,
    ].join('\n');
  }
}

function bump(m: Map<string, number>, key: string): void {
  m.set(key, (m.get(key) ?? 0) + 1);
}

function sorted(m: Map<string, number>): Array<[string, number]> {
  return [...m].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
}
