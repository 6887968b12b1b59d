/**
 * A dissected frame in words and as JSON. The text reads like `tcpdump -nn -e` (seed 003): outer MACs, IPs and
 * ports, `VXLAN, flags [I] (0x08), vni 1`, then the inner frame on an indented line. The JSON object holds the
 * same fields by name, one object per frame, for jq and for the comparison with tshark.
 */
import { ARP_REPLY, ARP_REQUEST } from './arp.js';
import type { ChecksumStatus } from './checksum.js';
import type { Dissection } from './dissect.js';
import { ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_QINQ, ETHERTYPE_VLAN } from './ethernet.js';
import type { IcmpView } from './icmp.js';
import { IPPROTO_TCP } from './ipv4.js';

/** Where and when a frame was captured (what the capture record adds to the bytes). */
export interface FrameMeta {
  /** 1-based, as tcpdump -# and tshark number frames. */
  number: number;
  sec: number;
  nsec: number;
  capturedLength: number;
  originalLength: number;
}

const ETHERTYPE_NAMES: Record<number, string> = {
  [ETHERTYPE_IPV4]: 'IPv4',
  [ETHERTYPE_ARP]: 'ARP',
  [ETHERTYPE_IPV6]: 'IPv6',
  [ETHERTYPE_VLAN]: '802.1Q',
  [ETHERTYPE_QINQ]: '802.1Q-QinQ',
  0x88cc: 'LLDP',
};

const PROTOCOL_NAMES: Record<number, string> = { 1: 'ICMP', 2: 'IGMP', 6: 'TCP', 17: 'UDP', 47: 'GRE', 50: 'ESP', 58: 'ICMPv6', 132: 'SCTP' };

const ICMP_TYPES: Record<number, string> = { 0: 'echo reply', 3: 'destination unreachable', 5: 'redirect', 8: 'echo request', 11: 'time exceeded', 12: 'parameter problem' };
const ICMPV6_TYPES: Record<number, string> = {
  1: 'destination unreachable',
  2: 'packet too big',
  3: 'time exceeded',
  4: 'parameter problem',
  128: 'echo request',
  129: 'echo reply',
  133: 'router solicitation',
  134: 'router advertisement',
  135: 'neighbor solicitation',
  136: 'neighbor advertisement',
};

function hex(n: number, digits: number): string {
  return `0x${n.toString(16).padStart(digits, '0')}`;
}

function etherTypeText(t: number): string {
  return `ethertype ${ETHERTYPE_NAMES[t] ?? 'Unknown'} (${hex(t, 4)})`;
}

/** The protocol a frame carries at its top, for the summary: ICMP, UDP, ARP, TCP, ... */
export function topProtocol(d: Dissection): string {
  if (d.arp) return 'ARP';
  const ip = d.ip;
  if (ip) {
    if (ip.isFragment) return `${d.ipv4 ? 'IPv4' : 'IPv6'} fragment`;
    return PROTOCOL_NAMES[ip.protocol] ?? `ip-proto-${ip.protocol}`;
  }
  if (d.eth) return d.eth.isLengthField ? '802.3' : (ETHERTYPE_NAMES[d.eth.etherType] ?? `ethertype ${hex(d.eth.etherType, 4)}`);
  return 'unknown';
}

/** Frames of a capture mostly share their second: format it once. */
let cachedSec = NaN;
let cachedIso = '';

function secondText(sec: number): string {
  if (sec !== cachedSec) {
    cachedSec = sec;
    cachedIso = new Date(sec * 1000).toISOString().slice(0, 19);
  }
  return cachedIso;
}

function timeOfDay(sec: number, nsec: number): string {
  return `${secondText(sec).slice(11)}.${String(Math.floor(nsec / 1000)).padStart(6, '0')}`;
}

function isoTime(sec: number, nsec: number): string {
  return `${secondText(sec)}.${String(nsec).padStart(9, '0')}Z`;
}

function icmpText(icmp: IcmpView, length: number): string {
  const names = icmp.version === 4 ? ICMP_TYPES : ICMPV6_TYPES;
  const label = icmp.version === 4 ? 'ICMP' : 'ICMP6,';
  const name = names[icmp.type] ?? `type ${icmp.type}`;
  const echo = icmp.isEcho ? `, id ${icmp.id}, seq ${icmp.seq}` : icmp.code ? `, code ${icmp.code}` : '';
  return `${label} ${name}${echo}, length ${length}`;
}

function checksumNote(what: string, status: ChecksumStatus, value: number): string {
  return status === 'bad' ? ` [bad ${what} cksum ${hex(value, 4)}]` : '';
}

/** One frame (and, for VXLAN, its inner frame on the next, indented line), tcpdump style. */
export function describeFrame(d: Dissection, meta: FrameMeta): string {
  const head = `${String(meta.number).padStart(5)}  ${timeOfDay(meta.sec, meta.nsec)} `;
  const cut = meta.capturedLength < meta.originalLength ? ` [captured ${meta.capturedLength} of ${meta.originalLength} bytes]` : '';
  return head + describeLayers(d, meta.originalLength, '         ') + cut;
}

function describeLayers(d: Dissection, wireLength: number, indent: string): string {
  let s = '';
  if (d.eth) {
    const eth = d.eth;
    s += `${eth.src} > ${eth.dst}, `;
    if (eth.vlanCount) {
      s += `${etherTypeText((d.buf[eth.offset + 12]! << 8) | d.buf[eth.offset + 13]!)}, length ${wireLength}: `;
      for (const tag of eth.vlans) s += `vlan ${tag.vid}, p ${tag.pcp}${tag.dei ? ', DEI' : ''}, `;
      s += `${etherTypeText(eth.etherType)}, `;
    } else if (eth.isLengthField) {
      s += `802.3, length ${wireLength}: LLC, length ${eth.etherType}`;
    } else {
      s += `${etherTypeText(eth.etherType)}, length ${wireLength}: `;
    }
  }
  if (d.arp) {
    const arp = d.arp;
    if (!arp.isEthernetIPv4) s += `ARP, hardware type ${arp.hardwareType}, op ${arp.op}`;
    else if (arp.op === ARP_REQUEST) s += `ARP, Request who-has ${arp.targetIp} tell ${arp.senderIp}, length ${arp.end - arp.offset}`;
    else if (arp.op === ARP_REPLY) s += `ARP, Reply ${arp.senderIp} is-at ${arp.senderMac}, length ${arp.end - arp.offset}`;
    else s += `ARP, op ${arp.op} ${arp.senderIp} (${arp.senderMac}) > ${arp.targetIp}, length ${arp.end - arp.offset}`;
  }
  const ip = d.ip;
  if (ip) {
    const ipNote = d.ipv4 ? checksumNote('ip', d.ipv4.checksumValid ? 'good' : 'bad', d.ipv4.checksum) : '';
    if (ip.isFragment) {
      const frag = d.ipv4 ? ` (frag id ${d.ipv4.id}, offset ${d.ipv4.fragmentOffset * 8}${d.ipv4.moreFragments ? ', more' : ''})` : ' (fragment)';
      s += `${ip.src} > ${ip.dst}: ${PROTOCOL_NAMES[ip.protocol] ?? `ip-proto-${ip.protocol}`} fragment${frag}${ipNote}`;
    } else if (d.udp) {
      const udp = d.udp;
      s += `${ip.src}.${udp.srcPort} > ${ip.dst}.${udp.dstPort}: `;
      const udpNote = checksumNote('udp', udp.checksumStatus(ip), udp.checksum);
      if (d.vxlan) {
        const vx = d.vxlan;
        const flags = [vx.gFlag ? 'G' : '', vx.iFlag ? 'I' : ''].filter(Boolean).join(',');
        s += `VXLAN${vx.gFlag ? '-GBP' : ''}, flags [${flags}] (${hex(vx.flags, 2)}),${vx.gFlag ? ` policy ${vx.policyId},` : ''} vni ${vx.vni}${ipNote}${udpNote}`;
        if (d.inner) s += `\n${indent}${describeLayers(d.inner, d.inner.end - d.inner.offset, indent + '    ')}`;
        return s + errorNote(d);
      }
      s += `UDP, length ${udp.length - 8}${ipNote}${udpNote}`;
    } else if (d.icmp) {
      s += `${ip.src} > ${ip.dst}: ${icmpText(d.icmp, d.icmp.length)}${ipNote}${checksumNote('icmp', d.icmp.checksumStatus(d.ipv6), d.icmp.checksum)}`;
    } else if (ip.protocol === IPPROTO_TCP && ip.payloadEnd - ip.payloadOffset >= 4) {
      const b = d.buf;
      const o = ip.payloadOffset;
      s += `${ip.src}.${(b[o]! << 8) | b[o + 1]!} > ${ip.dst}.${(b[o + 2]! << 8) | b[o + 3]!}: TCP, length ${ip.payloadEnd - o}${ipNote}`;
    } else {
      s += `${ip.src} > ${ip.dst}: ${PROTOCOL_NAMES[ip.protocol] ?? `ip-proto-${ip.protocol}`}, length ${ip.payloadEnd - ip.payloadOffset}${ipNote}`;
    }
  }
  return s + errorNote(d);
}

function errorNote(d: Dissection): string {
  return d.error ? ` [malformed: ${d.error.message}]` : '';
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
    o[i.version === 4 ? 'icmp' : 'icmpv6'] = { type: i.type, code: i.code, ...(i.isEcho ? { id: i.id, seq: i.seq } : {}), checksum: i.checksum, checksumStatus: i.checksumStatus(d.ipv6) };
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
    const list = (m: Map<string, number>): string => sorted(m).map(([k, v]) => `${k} ${v}`).join(', ') || '-';
    const vnis = [...this.perVni].sort((a, b) => a[0] - b[0]).map(([k, v]) => `vni ${k}: ${v}`).join(', ');
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
