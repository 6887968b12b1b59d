// Every layer of the codec round-trips: decode(build(header, payload)) gives back the header and the payload,
// for any valid header (property-based with fast-check). Checksums come out right and are caught when wrong.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { bytesToMac } from '../../src/base/ip.js';
import { InvalidValueError } from '../../src/base/errors.js';
import {
  WireError,
  buildArp,
  buildEthernet,
  buildIcmp,
  buildIcmpv6,
  buildIpv4,
  buildIpv6,
  buildUdp,
  buildVxlan,
  decodeArp,
  decodeEthernet,
  decodeIcmp,
  decodeIpv4,
  decodeIpv6,
  decodeUdp,
  decodeVxlan,
  formatIPv6,
  parseIPv6,
  dissect,
  icmpEchoFrame,
  udpFrame,
  describeFrame,
  internetChecksum,
  type EthernetHeader,
  type Ipv4Header,
  type Ipv6Header,
} from '../../src/wire/index.js';

const RUNS = { numRuns: 300 };
/** fast-check builds records without a prototype; the decoders return ordinary objects. Copy deeply (Buffers as they are). */
function plain<T>(x: T): T {
  if (Array.isArray(x)) return x.map(plain) as T;
  if (x && typeof x === 'object' && !(x instanceof Uint8Array)) return Object.fromEntries(Object.entries(x).map(([k, v]) => [k, plain(v)])) as T;
  return x;
}
function record<T extends Record<string, fc.Arbitrary<unknown>>>(fields: T): fc.Arbitrary<{ [K in keyof T]: T[K] extends fc.Arbitrary<infer U> ? U : never }> {
  return fc.record(fields).map(plain) as never;
}
const mac = fc.uint8Array({ minLength: 6, maxLength: 6 }).map((b) => bytesToMac(b));
const ipv4 = fc.ipV4();
/** IPv6 text in the canonical form the decoder prints (fc's generator also makes non-canonical spellings). */
const ipv6 = fc.uint8Array({ minLength: 16, maxLength: 16 }).map((b) => formatIPv6(b));
const payload = fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b));
const u16 = fc.integer({ min: 0, max: 0xffff });

const vlanTag = record({
  tpid: fc.constantFrom(0x8100, 0x88a8),
  pcp: fc.integer({ min: 0, max: 7 }),
  dei: fc.boolean(),
  vid: fc.integer({ min: 0, max: 4095 }),
});
const etherType = fc.integer({ min: 0, max: 0xffff }).filter((t) => t !== 0x8100 && t !== 0x88a8);
const ethernetHeader: fc.Arbitrary<EthernetHeader> = record({ dst: mac, src: mac, vlans: fc.array(vlanTag, { maxLength: 3 }), etherType }).map((h) =>
  h.vlans.length ? h : { dst: h.dst, src: h.src, etherType: h.etherType },
);

test('Ethernet (with 0-3 VLAN tags) round-trips', () => {
  fc.assert(
    fc.property(ethernetHeader, payload, (h, p) => {
      const v = decodeEthernet(buildEthernet(h, p));
      assert.deepEqual(v.header(), h);
      assert.deepEqual(v.payload, p);
      assert.equal(v.payloadOffset, 14 + 4 * (h.vlans?.length ?? 0));
    }),
    RUNS,
  );
});

test('ARP (Ethernet/IPv4) round-trips', () => {
  const arp = record({ op: u16, senderMac: mac, senderIp: ipv4, targetMac: mac, targetIp: ipv4 });
  fc.assert(
    fc.property(arp, (h) => {
      const v = decodeArp(buildArp(h));
      assert.ok(v.isEthernetIPv4);
      assert.deepEqual(v.header(), h);
    }),
    RUNS,
  );
});

const ipv4Header: fc.Arbitrary<Ipv4Header> = record({
  tos: fc.integer({ min: 0, max: 255 }),
  id: u16,
  dontFragment: fc.boolean(),
  moreFragments: fc.boolean(),
  fragmentOffset: fc.integer({ min: 0, max: 0x1fff }),
  ttl: fc.integer({ min: 0, max: 255 }),
  protocol: fc.integer({ min: 0, max: 255 }),
  src: ipv4,
  dst: ipv4,
  options: fc.integer({ min: 0, max: 10 }).chain((words) => fc.uint8Array({ minLength: words * 4, maxLength: words * 4 })),
}).map(({ options, ...h }) => (options.length ? { ...h, options: Buffer.from(options) } : h));

test('IPv4 (options, flags, fragment offset) round-trips with a valid header checksum', () => {
  fc.assert(
    fc.property(ipv4Header, payload, (h, p) => {
      const v = decodeIpv4(buildIpv4(h, p));
      assert.deepEqual(v.header(), h);
      assert.deepEqual(v.payload, p);
      assert.equal(v.checksumValid, true);
      assert.equal(v.isFragment, h.moreFragments || h.fragmentOffset !== 0);
    }),
    RUNS,
  );
});

test('IPv4 header checksum: a changed byte or a forced checksum is detected', () => {
  const h: Ipv4Header = {
    tos: 0,
    id: 1,
    dontFragment: true,
    moreFragments: false,
    fragmentOffset: 0,
    ttl: 64,
    protocol: 17,
    src: '192.0.2.1',
    dst: '192.0.2.2',
  };
  const good = buildIpv4(h, Buffer.alloc(8));
  // The well-known example: checksum over this header is fixed by the fields above.
  assert.equal(decodeIpv4(good).checksumValid, true);
  for (let i = 1; i < 20; i++) {
    if (i === 2 || i === 3 || i === 10 || i === 11) continue; // total length and the checksum itself
    const bad = Buffer.from(good);
    bad[i]! ^= 0x01;
    assert.equal(decodeIpv4(bad, 0, bad.length, false).checksumValid, false, `byte ${i} flipped`);
  }
  assert.equal(decodeIpv4(buildIpv4(h, Buffer.alloc(8), { checksum: 0x1234 })).checksum, 0x1234);
  assert.equal(decodeIpv4(buildIpv4(h, Buffer.alloc(8), { checksum: 0x1234 })).checksumValid, false);
});

test('IPv6 round-trips, and extension headers are walked to the upper layer', () => {
  const h6: fc.Arbitrary<Ipv6Header> = record({
    trafficClass: fc.integer({ min: 0, max: 255 }),
    flowLabel: fc.integer({ min: 0, max: 0xfffff }),
    nextHeader: fc.constantFrom(17, 58, 6, 59),
    hopLimit: fc.integer({ min: 0, max: 255 }),
    src: ipv6,
    dst: ipv6,
  });
  fc.assert(
    fc.property(h6, payload, (h, p) => {
      const v = decodeIpv6(buildIpv6(h, p));
      assert.deepEqual(v.header(), h);
      assert.deepEqual(v.payload, p);
      assert.equal(v.protocol, h.nextHeader);
    }),
    RUNS,
  );
  // hop-by-hop (8 bytes) -> destination options (16 bytes) -> UDP
  const ext = Buffer.concat([Buffer.from([60, 0, 1, 4, 0, 0, 0, 0]), Buffer.from([17, 1, ...new Array(14).fill(0)]), Buffer.from([0, 1, 0, 2, 0, 8, 0, 0])]);
  const v = decodeIpv6(buildIpv6({ trafficClass: 0, flowLabel: 0, nextHeader: 0, hopLimit: 1, src: 'fe80::1', dst: 'ff02::16' }, ext));
  assert.equal(v.protocol, 17);
  assert.deepEqual(v.extensionHeaders, [0, 60]);
  assert.equal(v.payloadOffset, 40 + 24);
  // A non-first fragment stops the walk: its payload is not a whole upper-layer packet.
  const frag = Buffer.concat([Buffer.from([17, 0, 0x05, 0x39, 0, 0, 0, 1]), Buffer.alloc(16)]);
  const f = decodeIpv6(buildIpv6({ trafficClass: 0, flowLabel: 0, nextHeader: 44, hopLimit: 64, src: '2001:db8::1', dst: '2001:db8::2' }, frag));
  assert.equal(f.isFragment, true);
});

test('IPv6 text: parse and RFC 5952 format agree with node:net on random addresses', () => {
  fc.assert(
    fc.property(fc.ipV6(), (text) => {
      const bytes = parseIPv6(text);
      const canonical = formatIPv6(bytes);
      assert.deepEqual(parseIPv6(canonical), bytes);
      assert.equal(formatIPv6(parseIPv6(canonical)), canonical);
    }),
    RUNS,
  );
  assert.equal(formatIPv6(parseIPv6('2001:0db8:0000:0000:0001:0000:0000:0001')), '2001:db8::1:0:0:1');
  assert.equal(formatIPv6(parseIPv6('::ffff:192.0.2.1')), '::ffff:192.0.2.1');
  assert.equal(formatIPv6(parseIPv6('fe80::')), 'fe80::');
  assert.equal(formatIPv6(parseIPv6('2001:db8:0:1:1:1:1:1')), '2001:db8:0:1:1:1:1:1');
});

test('UDP round-trips over IPv4 and IPv6; its checksum covers the pseudo-header', () => {
  const ports = record({ srcPort: u16, dstPort: u16 });
  fc.assert(
    fc.property(ports, payload, ipv4, ipv4, (h, p, src, dst) => {
      const dgram = buildUdp(h, p, { src, dst });
      const ip = decodeIpv4(buildIpv4({ tos: 0, id: 0, dontFragment: false, moreFragments: false, fragmentOffset: 0, ttl: 64, protocol: 17, src, dst }, dgram));
      const v = decodeUdp(ip.buf, ip.payloadOffset, ip.payloadEnd);
      assert.deepEqual(v.header(), h);
      assert.deepEqual(v.payload, p);
      assert.equal(v.checksumStatus(ip), 'good');
    }),
    RUNS,
  );
  fc.assert(
    fc.property(ports, payload, ipv6, ipv6, (h, p, src, dst) => {
      const ip = decodeIpv6(buildIpv6({ trafficClass: 0, flowLabel: 0, nextHeader: 17, hopLimit: 64, src, dst }, buildUdp(h, p, { src, dst })));
      const v = decodeUdp(ip.buf, ip.payloadOffset, ip.payloadEnd);
      assert.deepEqual(v.header(), h);
      assert.equal(v.checksumStatus(ip), 'good');
    }),
    RUNS,
  );
  // The same datagram seen between other addresses fails: the pseudo-header is part of the sum.
  const dgram = buildUdp({ srcPort: 1, dstPort: 2 }, Buffer.from('hello'), { src: '192.0.2.1', dst: '192.0.2.2' });
  const elsewhere = decodeIpv4(
    buildIpv4(
      { tos: 0, id: 0, dontFragment: false, moreFragments: false, fragmentOffset: 0, ttl: 64, protocol: 17, src: '192.0.2.1', dst: '192.0.2.3' },
      dgram,
    ),
  );
  assert.equal(decodeUdp(elsewhere.buf, elsewhere.payloadOffset, elsewhere.payloadEnd).checksumStatus(elsewhere), 'bad');
  // Zero means "none" over IPv4, and is refused over IPv6.
  const zero = buildUdp({ srcPort: 1, dstPort: 2 }, Buffer.from('x'), { src: '192.0.2.1', dst: '192.0.2.2' }, { checksum: 'zero' });
  assert.equal(zero.readUInt16BE(6), 0);
  const zip = decodeIpv4(
    buildIpv4({ tos: 0, id: 0, dontFragment: false, moreFragments: false, fragmentOffset: 0, ttl: 64, protocol: 17, src: '192.0.2.1', dst: '192.0.2.2' }, zero),
  );
  assert.equal(decodeUdp(zip.buf, zip.payloadOffset, zip.payloadEnd).checksumStatus(zip), 'none');
  assert.throws(() => buildUdp({ srcPort: 1, dstPort: 2 }, Buffer.alloc(1), { src: 'fd00::1', dst: 'fd00::2' }, { checksum: 'zero' }), InvalidValueError);
});

test('ICMP and ICMPv6 echo round-trip with good checksums; a flipped bit makes them bad', () => {
  const echo = record({ type: fc.constantFrom(0, 8), code: fc.constant(0), id: u16, seq: u16 });
  fc.assert(
    fc.property(echo, payload, (h, p) => {
      const msg = buildIcmp(h, p);
      const v = decodeIcmp(msg, 0, msg.length, 4);
      assert.deepEqual(v.header(), h);
      assert.deepEqual(v.payload, p);
      assert.equal(v.checksumStatus(), 'good');
      msg[msg.length - 1]! ^= 0x80;
      assert.equal(decodeIcmp(msg, 0, msg.length, 4).checksumStatus(), 'bad');
    }),
    RUNS,
  );
  const echo6 = record({ type: fc.constantFrom(128, 129), code: fc.constant(0), id: u16, seq: u16 });
  fc.assert(
    fc.property(echo6, payload, ipv6, ipv6, (h, p, src, dst) => {
      const ip = decodeIpv6(buildIpv6({ trafficClass: 0, flowLabel: 0, nextHeader: 58, hopLimit: 64, src, dst }, buildIcmpv6(h, p, { src, dst })));
      const v = decodeIcmp(ip.buf, ip.payloadOffset, ip.payloadEnd, 6);
      assert.deepEqual(v.header(), h);
      assert.equal(v.checksumStatus(ip), 'good');
    }),
    RUNS,
  );
});

test('VXLAN header round-trips: 24-bit VNI, I flag, and the GBP extension', () => {
  const gbp = record({ policyId: u16, dontLearn: fc.boolean(), policyApplied: fc.boolean() });
  const hdr = record({ vni: fc.integer({ min: 0, max: 0xffffff }), gbp: fc.option(gbp, { nil: undefined }) }).map(
    (h): { vni: number; gbp?: { policyId: number; dontLearn: boolean; policyApplied: boolean } } => (h.gbp ? h : { vni: h.vni }),
  );
  fc.assert(
    fc.property(hdr, payload, (h, p) => {
      const v = decodeVxlan(buildVxlan(h, p));
      assert.deepEqual(v.header(), h);
      assert.deepEqual(v.payload, p);
      assert.equal(v.iFlag, true);
      assert.equal(v.gFlag, h.gbp !== undefined);
      assert.equal(v.reservedBitsSet, false);
    }),
    RUNS,
  );
  // RFC 7348 layout, byte by byte: flags 0x08, 3 reserved, VNI, 1 reserved.
  assert.deepEqual([...buildVxlan({ vni: 0x123456 }, Buffer.alloc(0))], [0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0]);
  assert.deepEqual(
    [...buildVxlan({ vni: 1, gbp: { policyId: 0x0102, dontLearn: true, policyApplied: true } }, Buffer.alloc(0))],
    [0x88, 0x48, 0x01, 0x02, 0, 0, 1, 0],
  );
  const odd = Buffer.from([0x0c, 0, 0, 1, 0, 0, 42, 0]);
  assert.equal(decodeVxlan(odd).reservedBitsSet, true);
  assert.equal(decodeVxlan(odd).vni, 42);
});

test('builders reject out-of-range fields, naming the field', () => {
  const cases: Array<[() => unknown, RegExp]> = [
    [() => buildVxlan({ vni: 0x1000000 }, Buffer.alloc(0)), /^vni: 16777216 is out of range/],
    [() => buildEthernet({ dst: 'nope', src: '02:00:00:00:00:01', etherType: 0x800 }, Buffer.alloc(0)), /^mac: "nope"/],
    [() => buildEthernet({ dst: '02:00:00:00:00:02', src: '02:00:00:00:00:01', etherType: 0x8100 }, Buffer.alloc(0)), /^etherType: 33024 is a VLAN tag type/],
    [
      () =>
        buildIpv4(
          { tos: 0, id: 0, dontFragment: false, moreFragments: false, fragmentOffset: 0, ttl: 300, protocol: 1, src: '10.0.0.1', dst: '10.0.0.2' },
          Buffer.alloc(0),
        ),
      /^ttl: 300 is out of range/,
    ],
    [
      () =>
        buildIpv4(
          {
            tos: 0,
            id: 0,
            dontFragment: false,
            moreFragments: false,
            fragmentOffset: 0,
            ttl: 1,
            protocol: 1,
            src: '10.0.0.1',
            dst: '10.0.0.2',
            options: Buffer.alloc(3),
          },
          Buffer.alloc(0),
        ),
      /^options: "3 bytes" must be a multiple of 4/,
    ],
    [() => buildUdp({ srcPort: 70000, dstPort: 1 }, Buffer.alloc(0), { src: '10.0.0.1', dst: '10.0.0.2' }), /^srcPort: 70000 is out of range/],
    [
      () => buildIpv6({ trafficClass: 0, flowLabel: 0, nextHeader: 17, hopLimit: 1, src: '10.0.0.1', dst: '::1' }, Buffer.alloc(0)),
      /^src: "10.0.0.1" is not an IPv6 address/,
    ],
  ];
  for (const [fn, re] of cases) assert.throws(fn, (e: unknown) => e instanceof InvalidValueError && re.test(e.message), re.source);
});

test('decoders give typed errors naming layer, offset and reason', () => {
  const frame = icmpEchoFrame({ srcMac: '02:00:00:00:00:01', dstMac: '02:00:00:00:00:02', srcIp: '10.0.0.1', dstIp: '10.0.0.2', id: 1, seq: 1 });
  const expectError = (buf: Buffer, code: string, layer: string, offset: number, reason: RegExp): void => {
    const d = dissect(buf);
    assert.ok(d.error instanceof WireError, 'an error is reported');
    assert.equal(d.error.code, code);
    assert.equal(d.error.layer, layer);
    assert.equal(d.error.offset, offset);
    assert.match(d.error.reason, reason);
    assert.match(d.error.message, new RegExp(`^${layer} at offset ${offset}: `));
  };
  expectError(frame.subarray(0, 10), 'TLE_WIRE_TRUNCATED', 'ethernet', 0, /needs 14 bytes but only 10/);
  expectError(frame.subarray(0, 30), 'TLE_WIRE_TRUNCATED', 'ipv4', 14, /needs 20 bytes but only 16/);
  const badVersion = Buffer.from(frame);
  badVersion[14] = 0x55;
  expectError(badVersion, 'TLE_WIRE_MALFORMED', 'ipv4', 14, /version 5 is not 4/);
  const badIhl = Buffer.from(frame);
  badIhl[14] = 0x44;
  expectError(badIhl, 'TLE_WIRE_MALFORMED', 'ipv4', 14, /header length 16 is below 20/);
  const longTotal = Buffer.from(frame);
  longTotal.writeUInt16BE(1500, 16);
  expectError(longTotal, 'TLE_WIRE_MALFORMED', 'ipv4', 16, /total length 1500 is past the end of the frame \(84 bytes left\)/);
  // The layers before the broken one are still there.
  const d = dissect(frame.subarray(0, 30));
  assert.equal(d.eth?.src, '02:00:00:00:00:01');
});

test('views read through pooled Buffers: a frame at any byteOffset of a larger ArrayBuffer decodes the same', () => {
  const frame = icmpEchoFrame({ srcMac: '02:00:00:00:00:01', dstMac: '02:00:00:00:00:02', srcIp: '10.0.0.1', dstIp: '10.0.0.2', id: 77, seq: 5 });
  for (const shift of [1, 3, 7, 100]) {
    const pool = new ArrayBuffer(frame.length + 200);
    const view = Buffer.from(pool, shift, frame.length);
    frame.copy(view);
    new Uint8Array(pool, 0, shift).fill(0xee); // garbage before the frame must never be read
    const d = dissect(view);
    assert.equal(view.byteOffset, shift);
    assert.equal(d.error, undefined);
    assert.equal(d.eth!.src, '02:00:00:00:00:01');
    assert.equal(d.ipv4!.src, '10.0.0.1');
    assert.equal(d.ipv4!.checksumValid, true);
    assert.equal(d.icmp!.id, 77);
    assert.equal(d.icmp!.checksumStatus(), 'good');
    // Zero copy: the payload view shares the pool's memory.
    assert.equal(d.icmp!.payload.buffer, pool);
  }
  // Node's own pool: small Buffers are slices of one 8 KiB ArrayBuffer.
  const pooled = Buffer.from(frame.toString('latin1'), 'latin1');
  assert.equal(dissect(pooled).icmp!.seq, 5);
});

test('IPv4 fragments are recognised and not decoded past IP; the text says which fragment', () => {
  const whole = udpFrame({
    srcMac: '02:00:00:00:00:01',
    dstMac: '02:00:00:00:00:02',
    srcIp: '10.0.0.1',
    dstIp: '10.0.0.2',
    srcPort: 1,
    dstPort: 8472,
    payload: Buffer.alloc(40),
  });
  const first = Buffer.from(whole);
  first.writeUInt16BE(0x2000 | 0, 20); // MF, offset 0
  first.writeUInt16BE(0, 24);
  first.writeUInt16BE(internetChecksum(first, 14, 34), 24);
  const later = Buffer.from(whole);
  later.writeUInt16BE(185, 20); // offset 185 * 8 = 1480, last fragment
  later.writeUInt16BE(0, 24);
  later.writeUInt16BE(internetChecksum(later, 14, 34), 24);
  for (const [frame, note] of [
    [first, 'offset 0, more'],
    [later, 'offset 1480'],
  ] as const) {
    const d = dissect(frame);
    assert.equal(d.error, undefined);
    assert.equal(d.ipv4!.isFragment, true);
    assert.equal(d.ipv4!.checksumValid, true);
    assert.equal(d.udp, undefined, 'a fragment is not decoded as UDP (nor as VXLAN)');
    const text = describeFrame(d, { number: 1, sec: 0, nsec: 0, capturedLength: frame.length, originalLength: frame.length });
    assert.match(text, new RegExp(`10\\.0\\.0\\.1 > 10\\.0\\.0\\.2: UDP fragment \\(frag id 0, ${note}\\)$`));
  }
});
