/**
 * A fixed corpus of captures for `tulle decode`'s golden test: every layer and branch the printers have (VXLAN
 * inside VXLAN, GBP, VLAN/QinQ, 802.3, ARP of every kind, IPv4/IPv6 fragments and extension headers, TCP, other
 * protocols, every checksum verdict, captures cut at the snap length, Linux cooked and raw-IP link types) and a
 * few hundred frames broken on purpose by a seeded generator. The bytes are committed (test/fixtures/decode/) with
 * the output the printers gave for them, so a change of output shows up as a diff, byte for byte.
 */
import { buildIpv4, buildIpv6, ipv4Defaults, ipv6Defaults } from '../../src/wire/index.js';
import { arpFrame, buildEthernet, encapsulate, encodePcap, icmpEchoFrame, udpFrame, type PcapInputRecord } from '../../src/wire/index.js';

const hostA = { srcMac: '52:54:00:00:00:0a', dstMac: '52:54:00:00:00:0b', srcIp: '192.0.2.11', dstIp: '192.0.2.12' };
const hostB = { srcMac: '52:54:00:00:00:0b', dstMac: '52:54:00:00:00:0a', srcIp: '192.0.2.12', dstIp: '192.0.2.11' };
const hostV6 = { srcMac: hostA.srcMac, dstMac: hostA.dstMac, srcIp: '2001:db8::11', dstIp: '2001:db8::12' };
const podA = { srcMac: 'c6:d2:32:6f:8f:44', dstMac: '0e:f0:b5:8c:28:f5', srcIp: '10.244.1.2', dstIp: '10.244.2.3' };
const podB = { srcMac: '0e:f0:b5:8c:28:f5', dstMac: 'c6:d2:32:6f:8f:44', srcIp: '10.244.2.3', dstIp: '10.244.1.2' };
const podV6 = { srcMac: podA.srcMac, dstMac: podA.dstMac, srcIp: 'fd00:10:244:1::2', dstIp: 'fd00:10:244:2::3' };

/** Deterministic PRNG (mulberry32): the corpus is the same on every machine. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function ipPacketFrame(l2: { srcMac: string; dstMac: string }, src: string, dst: string, protocol: number, payload: Buffer, patch?: (h: any) => void): Buffer {
  const v6 = src.includes(':');
  const h: any = v6 ? ipv6Defaults(src, dst, protocol) : ipv4Defaults(src, dst, protocol, 7);
  patch?.(h);
  const packet = v6 ? buildIpv6(h, payload) : buildIpv4(h, payload);
  return buildEthernet({ src: l2.srcMac, dst: l2.dstMac, etherType: v6 ? 0x86dd : 0x0800 }, packet);
}

function tcpSegment(srcPort: number, dstPort: number, data: number): Buffer {
  const b = Buffer.alloc(20 + data);
  b.writeUInt16BE(srcPort, 0);
  b.writeUInt16BE(dstPort, 2);
  b[12] = 0x50;
  b[13] = 0x18;
  return b;
}

function icmpMessage(type: number, code: number, length = 36): Buffer {
  const b = Buffer.alloc(length);
  b[0] = type;
  b[1] = code;
  return b;
}

/** Well-formed frames of every kind the printers tell apart. */
function handMade(): Buffer[] {
  const f: Buffer[] = [];
  const ping = icmpEchoFrame({ ...podA, id: 7, seq: 1 });
  f.push(encapsulate(ping, { ...hostA, vni: 1 }));
  f.push(encapsulate(icmpEchoFrame({ ...podB, id: 7, seq: 1, reply: true }), { ...hostB, vni: 1 }));
  f.push(encapsulate(icmpEchoFrame({ ...podB, id: 7, seq: 2, reply: true }), { ...hostB, vni: 4096, dstPort: 4789, udpChecksum: true }));
  f.push(
    encapsulate(arpFrame({ op: 1, senderMac: podA.srcMac, senderIp: '10.244.1.0', targetMac: '00:00:00:00:00:00', targetIp: '10.244.2.0' }), {
      ...hostA,
      vni: 1,
      vlans: [{ tpid: 0x8100, pcp: 0, dei: false, vid: 100 }],
    }),
  );
  f.push(
    encapsulate(arpFrame({ op: 2, senderMac: podB.srcMac, senderIp: '10.244.2.0', targetMac: podA.srcMac, targetIp: '10.244.1.0' }), {
      ...hostB,
      vni: 1,
      vlans: [
        { tpid: 0x88a8, pcp: 5, dei: true, vid: 20 },
        { tpid: 0x8100, pcp: 1, dei: false, vid: 4095 },
      ],
    }),
  );
  f.push(arpFrame({ op: 1, senderMac: hostA.srcMac, senderIp: hostA.srcIp, targetMac: '00:00:00:00:00:00', targetIp: hostA.dstIp }));
  f.push(arpFrame({ op: 2, senderMac: hostB.srcMac, senderIp: hostB.srcIp, targetMac: hostA.srcMac, targetIp: hostA.srcIp }));
  f.push(arpFrame({ op: 3, senderMac: hostB.srcMac, senderIp: hostB.srcIp, targetMac: hostA.srcMac, targetIp: hostA.srcIp }));
  const oddArp = arpFrame({ op: 1, senderMac: hostA.srcMac, senderIp: hostA.srcIp, targetMac: '00:00:00:00:00:00', targetIp: hostA.dstIp });
  oddArp.writeUInt16BE(6, 14); // hardware type IEEE 802
  f.push(oddArp);
  f.push(encapsulate(udpFrame({ ...podA, srcPort: 40000, dstPort: 53, payload: Buffer.from('query') }), { ...hostA, vni: 42, dstPort: 9000 }));
  f.push(
    encapsulate(udpFrame({ ...podA, srcPort: 40001, dstPort: 53, payload: Buffer.from('dns?') }), {
      ...hostA,
      vni: 77,
      dstPort: 4789,
      gbp: { policyId: 300, dontLearn: true, policyApplied: true },
    }),
  );
  f.push(encapsulate(icmpEchoFrame({ ...podV6, id: 9, seq: 4 }), { ...hostV6, vni: 4096, dstPort: 4789 }));
  f.push(encapsulate(icmpEchoFrame({ ...podV6, srcIp: podV6.dstIp, dstIp: podV6.srcIp, id: 9, seq: 4, reply: true }), { ...hostV6, vni: 16777215 }));
  f.push(encapsulate(encapsulate(ping, { ...hostA, vni: 5 }), { ...hostB, vni: 6 })); // VXLAN in VXLAN
  let deep = ping;
  for (let i = 0; i < 5; i++) deep = encapsulate(deep, { ...hostA, vni: 100 + i }); // nested too deep
  f.push(deep);
  // TCP, in and out of VXLAN, IPv4 and IPv6; a TCP header too short to hold its ports.
  f.push(encapsulate(ipPacketFrame(podA, podA.srcIp, podA.dstIp, 6, tcpSegment(43210, 80, 100)), { ...hostA, vni: 1 }));
  f.push(ipPacketFrame(hostA, hostA.srcIp, hostA.dstIp, 6, tcpSegment(22, 51000, 0)));
  f.push(ipPacketFrame(hostV6, hostV6.srcIp, hostV6.dstIp, 6, tcpSegment(443, 51001, 10)));
  f.push(ipPacketFrame(hostA, hostA.srcIp, hostA.dstIp, 6, Buffer.alloc(3)));
  // Other IP protocols, named and not.
  f.push(ipPacketFrame(hostA, hostA.srcIp, hostA.dstIp, 47, Buffer.alloc(24)));
  f.push(ipPacketFrame(hostA, hostA.srcIp, hostA.dstIp, 200, Buffer.alloc(5)));
  f.push(ipPacketFrame(hostV6, hostV6.srcIp, hostV6.dstIp, 132, Buffer.alloc(12)));
  // ICMP of other types and codes.
  for (const [type, code] of [
    [3, 1],
    [3, 0],
    [11, 0],
    [5, 1],
    [12, 0],
    [42, 3],
    [13, 0],
  ] as const) {
    f.push(encapsulate(ipPacketFrame(podA, podA.srcIp, podA.dstIp, 1, icmpMessage(type, code)), { ...hostA, vni: 1 }));
  }
  for (const type of [1, 2, 3, 4, 133, 134, 135, 136, 200]) f.push(ipPacketFrame(hostV6, hostV6.srcIp, hostV6.dstIp, 58, icmpMessage(type, 0, 24)));
  // Fragments: IPv4 first (MF) and later ones, IPv6 with a Fragment header; a Hop-by-Hop header.
  f.push(
    ipPacketFrame(hostA, hostA.srcIp, hostA.dstIp, 17, Buffer.alloc(40), (h) => {
      h.moreFragments = true;
    }),
  );
  f.push(
    ipPacketFrame(hostA, hostA.srcIp, hostA.dstIp, 1, Buffer.alloc(40), (h) => {
      h.fragmentOffset = 185;
    }),
  );
  f.push(
    ipPacketFrame(hostA, hostA.srcIp, hostA.dstIp, 99, Buffer.alloc(40), (h) => {
      h.fragmentOffset = 3;
      h.moreFragments = true;
    }),
  );
  const frag6 = Buffer.alloc(8 + 16);
  frag6[0] = 17;
  frag6.writeUInt16BE((100 << 3) | 1, 2);
  f.push(ipPacketFrame(hostV6, hostV6.srcIp, hostV6.dstIp, 44, frag6));
  const hbh = Buffer.concat([Buffer.from([58, 0, 1, 4, 0, 0, 0, 0]), icmpMessage(128, 0, 16)]);
  f.push(ipPacketFrame(hostV6, hostV6.srcIp, hostV6.dstIp, 0, hbh));
  // Link layer: 802.3 length, LLDP, an unknown EtherType, an unknown one under a VLAN tag.
  f.push(buildEthernet({ src: hostA.srcMac, dst: '01:80:c2:00:00:00', etherType: 38 }, Buffer.from([0x42, 0x42, 0x03, 0, 0, 0, 0, 0])));
  f.push(buildEthernet({ src: hostA.srcMac, dst: '01:80:c2:00:00:0e', etherType: 0x88cc }, Buffer.alloc(30)));
  f.push(buildEthernet({ src: hostA.srcMac, dst: hostA.dstMac, etherType: 0x1234 }, Buffer.alloc(30)));
  f.push(buildEthernet({ src: hostA.srcMac, dst: hostA.dstMac, vlans: [{ tpid: 0x8100, pcp: 7, dei: false, vid: 1 }], etherType: 0x9000 }, Buffer.alloc(30)));
  // Plain UDP, and UDP on a VXLAN port that carries no Ethernet frame.
  f.push(udpFrame({ ...hostA, srcPort: 5353, dstPort: 5353, payload: Buffer.alloc(30, 1) }));
  f.push(udpFrame({ ...hostA, srcPort: 1234, dstPort: 8472, payload: Buffer.alloc(6) }));
  // Every checksum verdict.
  const badOuterIp = encapsulate(ping, { ...hostA, vni: 1 });
  badOuterIp[24]! ^= 0xff;
  f.push(badOuterIp);
  const badUdp = encapsulate(ping, { ...hostA, vni: 1, udpChecksum: true });
  badUdp.writeUInt16BE(badUdp.readUInt16BE(40) ^ 0x0101, 40);
  f.push(badUdp);
  const badInnerIcmp = Buffer.from(ping);
  badInnerIcmp[badInnerIcmp.length - 1]! ^= 0x55;
  f.push(encapsulate(badInnerIcmp, { ...hostA, vni: 1, udpChecksum: true }));
  const badInnerIp = Buffer.from(ping);
  badInnerIp[24]! ^= 0x10;
  f.push(encapsulate(badInnerIp, { ...hostA, vni: 1 }));
  const zeroUdp6 = encapsulate(ping, { ...hostV6, vni: 3 });
  zeroUdp6.writeUInt16BE(0, 14 + 40 + 6);
  f.push(zeroUdp6);
  // VXLAN header oddities: the I flag clear, reserved bits set.
  const noI = encapsulate(ping, { ...hostA, vni: 8 });
  noI[42] = 0x00;
  f.push(noI);
  const reserved = encapsulate(ping, { ...hostA, vni: 8 });
  reserved[43] = 0x12;
  reserved[49] = 0x01;
  f.push(reserved);
  return f;
}

/** Broken on purpose: bytes flipped in the headers, frames cut short (while the capture says they are whole). */
function mutated(bases: readonly Buffer[], perBase: number, seed: number): Buffer[] {
  const rnd = prng(seed);
  const out: Buffer[] = [];
  for (const base of bases) {
    for (let i = 0; i < perBase; i++) {
      const f = Buffer.from(base);
      if (rnd() < 0.3) {
        out.push(f.subarray(0, Math.floor(rnd() * f.length)));
        continue;
      }
      const flips = 1 + Math.floor(rnd() * 3);
      for (let k = 0; k < flips; k++) f[Math.floor(rnd() * Math.min(f.length, 110))] = Math.floor(rnd() * 256);
      out.push(f);
    }
  }
  return out;
}

/** Capture times that cross seconds, minutes and midnight, with every sub-second width. */
function times(n: number): Array<{ sec: number; nsec: number }> {
  const rnd = prng(99);
  const out: Array<{ sec: number; nsec: number }> = [];
  let sec = 1_700_006_398; // 23:59:58 UTC
  for (let i = 0; i < n; i++) {
    if (rnd() < 0.2) sec += 1 + Math.floor(rnd() * 90);
    const pick = rnd();
    const usec = pick < 0.2 ? 0 : pick < 0.4 ? Math.floor(rnd() * 10) : Math.floor(rnd() * 1_000_000);
    out.push({ sec, nsec: usec * 1000 });
  }
  return out;
}

export interface CorpusFile {
  /** File name under test/fixtures/decode/. */
  name: string;
  bytes: Buffer;
  /** Extra VXLAN ports the golden output was made with. */
  ports: number[];
}

/** The corpus files, built from scratch (the golden test checks that the committed ones are these). */
export function decodeCorpus(): CorpusFile[] {
  const hand = handMade();
  const frames = [...hand, ...mutated(hand.slice(0, 16), 14, 7)];
  const t = times(frames.length);
  const ether: PcapInputRecord[] = frames.map((data, i) => ({ data, time: t[i]! }));
  // Cut at a snap length: the capture says how long the frame was.
  for (const [i, cut] of [
    [0, 60],
    [2, 96],
    [11, 80],
    [15, 120],
    [1, 14],
  ] as const)
    ether.push({ data: hand[i]!.subarray(0, cut), time: t[i]!, originalLength: hand[i]!.length });
  const sll = hand.slice(0, 12).map((frame, i) => {
    const head = Buffer.alloc(16);
    head.writeUInt16BE(i % 5, 0);
    head.writeUInt16BE(1, 2);
    head.writeUInt16BE(6, 4);
    frame.copy(head, 6, 6, 12);
    return { data: Buffer.concat([head, frame.subarray(14)]), time: t[i]! };
  });
  const raw = hand.slice(0, 12).map((frame, i) => ({ data: frame.subarray(14), time: t[i]! }));
  return [
    { name: 'corpus-ethernet.pcap', bytes: encodePcap(ether), ports: [9000] },
    {
      name: 'corpus-ethernet-nanosecond.pcap',
      bytes: encodePcap(
        ether.slice(0, 40).map((r, i) => ({ ...r, time: { sec: r.time!.sec, nsec: r.time!.nsec + ((i * 7919) % 1000) } })),
        { nanosecond: true, bigEndian: true },
      ),
      ports: [],
    },
    { name: 'corpus-linux-sll.pcap', bytes: encodePcap(sll, { linkType: 113 }), ports: [9000] },
    { name: 'corpus-raw-ip.pcap', bytes: encodePcap(raw, { linkType: 101 }), ports: [] },
  ];
}
