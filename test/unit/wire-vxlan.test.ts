// VXLAN encapsulation as seed 003 shows it (98-byte ping frame -> 148 bytes on the wire), decapsulation back to
// the same bytes for any inner frame and outer header, and the flow-hashed UDP source port that ECMP relies on.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { bytesToMac } from '../../src/base/ip.js';
import {
  DEFAULT_SOURCE_PORT_RANGE,
  WireError,
  arpFrame,
  decapsulate,
  describeFrame,
  dissect,
  encapsulate,
  flowSourcePort,
  formatIPv6,
  icmpEchoFrame,
  udpFrame,
  type VxlanOuter,
} from '../../src/wire/index.js';

// The pods and hosts of seed 003.
const seedInner = icmpEchoFrame({ srcMac: 'd2:ba:c1:db:b3:77', dstMac: '0e:f0:b5:8c:28:f5', srcIp: '10.244.0.3', dstIp: '10.244.1.3', id: 16640, seq: 3 });
const seedOuter: VxlanOuter = { srcMac: '52:54:00:9c:09:d7', dstMac: 'fe:ee:8f:bf:86:99', srcIp: '10.0.4.2', dstIp: '10.0.4.14', vni: 1 };

test('seed 003: a 98-byte ICMP frame becomes a 148-byte VXLAN frame to port 8472 with flags [I] and VNI 1', () => {
  assert.equal(seedInner.length, 98);
  const frame = encapsulate(seedInner, seedOuter);
  assert.equal(frame.length, 148);
  assert.equal(frame.readUInt16BE(12), 0x0800); // outer EtherType IPv4
  assert.equal(frame[14], 0x45);
  assert.equal(frame.readUInt16BE(16), 134); // IPv4 total length: 20 + 8 + 8 + 98
  assert.equal(frame[23], 17); // UDP
  assert.equal(frame.readUInt16BE(36), 8472); // flannel's port
  assert.equal(frame.readUInt16BE(38), 114); // UDP length
  assert.equal(frame.readUInt16BE(40), 0); // noudpcsum, like flannel.1
  assert.deepEqual([...frame.subarray(42, 50)], [0x08, 0, 0, 0, 0, 0, 1, 0]);
  assert.deepEqual(frame.subarray(50), seedInner);

  const d = dissect(frame);
  const text = describeFrame(d, { number: 1, sec: 0, nsec: 157412000, capturedLength: 148, originalLength: 148 });
  const [outerLine, innerLine] = text.split('\n');
  const port = d.udp!.srcPort;
  assert.ok(
    outerLine!.endsWith(
      `52:54:00:9c:09:d7 > fe:ee:8f:bf:86:99, ethertype IPv4 (0x0800), length 148: 10.0.4.2.${port} > 10.0.4.14.8472: VXLAN, flags [I] (0x08), vni 1`,
    ),
    outerLine,
  );
  // The inner line is word for word the one tcpdump printed on flannel.1 in seed 003.
  assert.equal(
    innerLine!.trim(),
    'd2:ba:c1:db:b3:77 > 0e:f0:b5:8c:28:f5, ethertype IPv4 (0x0800), length 98: 10.244.0.3 > 10.244.1.3: ICMP echo request, id 16640, seq 3, length 64',
  );
});

test('Calico form: VNI 4096 to port 4789, with a UDP checksum on request', () => {
  const frame = encapsulate(seedInner, { ...seedOuter, vni: 4096, dstPort: 4789, udpChecksum: true });
  const { outer, vxlan, inner } = decapsulate(frame);
  assert.equal(vxlan.vni, 4096);
  assert.equal(outer.udp.dstPort, 4789);
  assert.equal(outer.udp.checksumStatus(outer.ip), 'good');
  assert.deepEqual(inner, seedInner);
  // Default (flannel): no UDP checksum, which over IPv4 reads as "none".
  const flannel = decapsulate(encapsulate(seedInner, seedOuter));
  assert.equal(flannel.outer.udp.checksumStatus(flannel.outer.ip), 'none');
});

const mac = fc.uint8Array({ minLength: 6, maxLength: 6 }).map((b) => bytesToMac(b));
const ipv6 = fc.uint8Array({ minLength: 16, maxLength: 16 }).map((b) => formatIPv6(b));
const outerArb = fc
  .record({
    srcMac: mac,
    dstMac: mac,
    v6: fc.boolean(),
    a4: fc.tuple(fc.ipV4(), fc.ipV4()),
    a6: fc.tuple(ipv6, ipv6),
    vni: fc.integer({ min: 0, max: 0xffffff }),
    gbp: fc.option(fc.record({ policyId: fc.integer({ min: 0, max: 0xffff }), dontLearn: fc.boolean(), policyApplied: fc.boolean() }), { nil: undefined }),
    dstPort: fc.constantFrom(4789, 8472),
    vid: fc.option(fc.integer({ min: 0, max: 4095 }), { nil: undefined }),
    ttl: fc.integer({ min: 1, max: 255 }),
    udpChecksum: fc.boolean(),
  })
  .map((r): VxlanOuter => ({
    srcMac: r.srcMac,
    dstMac: r.dstMac,
    srcIp: r.v6 ? r.a6[0] : r.a4[0],
    dstIp: r.v6 ? r.a6[1] : r.a4[1],
    vni: r.vni,
    dstPort: r.dstPort,
    ttl: r.ttl,
    udpChecksum: r.udpChecksum,
    ...(r.gbp ? { gbp: { ...r.gbp } } : {}),
    ...(r.vid !== undefined ? { vlans: [{ tpid: 0x8100, pcp: 0, dei: false, vid: r.vid }] } : {}),
  }));

test('decapsulate(encapsulate(inner, outer)) gives back the inner frame and the outer fields, IPv4 and IPv6', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 1500 }), outerArb, (innerBytes, outer) => {
      const inner = Buffer.from(innerBytes);
      const frame = encapsulate(inner, outer);
      const v6 = outer.srcIp.includes(':');
      assert.equal(frame.length, inner.length + (v6 ? 70 : 50) + (outer.vlans ? 4 : 0));
      const r = decapsulate(frame);
      assert.deepEqual(r.inner, inner);
      assert.equal(r.inner.buffer, frame.buffer, 'the inner frame is a view, not a copy');
      assert.equal(r.outer.eth.src, outer.srcMac);
      assert.equal(r.outer.eth.dst, outer.dstMac);
      assert.equal(r.outer.eth.vlanCount, outer.vlans ? 1 : 0);
      assert.equal(r.outer.ip.src, outer.srcIp);
      assert.equal(r.outer.ip.dst, outer.dstIp);
      assert.equal(r.outer.udp.dstPort, outer.dstPort);
      assert.equal(r.outer.udp.srcPort, flowSourcePort(inner));
      assert.deepEqual(r.vxlan.header(), { vni: outer.vni, ...(outer.gbp ? { gbp: outer.gbp } : {}) });
      assert.equal(r.outer.udp.checksumStatus(r.outer.ip), v6 || outer.udpChecksum ? 'good' : 'none');
      if (!v6) assert.equal((r.outer.ip as { checksumValid: boolean }).checksumValid, true);
    }),
    { numRuns: 300 },
  );
});

test('decapsulate refuses what is not VXLAN with TLE_WIRE_UNSUPPORTED, and takes extra ports when told', () => {
  const plainUdp = udpFrame({
    srcMac: '02:00:00:00:00:01',
    dstMac: '02:00:00:00:00:02',
    srcIp: '192.0.2.1',
    dstIp: '192.0.2.2',
    srcPort: 5000,
    dstPort: 53,
    payload: Buffer.alloc(20),
  });
  assert.throws(
    () => decapsulate(plainUdp),
    (e: unknown) => e instanceof WireError && e.code === 'TLE_WIRE_UNSUPPORTED' && /destination port 53 is not a VXLAN port \(4789, 8472\)/.test(e.message),
  );
  assert.throws(
    () => decapsulate(seedInner),
    (e: unknown) => e instanceof WireError && e.code === 'TLE_WIRE_UNSUPPORTED' && /protocol 1 is not UDP/.test(e.message),
  );
  const onCustomPort = encapsulate(seedInner, { ...seedOuter, dstPort: 9999 });
  assert.throws(() => decapsulate(onCustomPort), WireError);
  assert.equal(decapsulate(onCustomPort, { ports: new Set([9999]) }).vxlan.vni, 1);
  const truncated = encapsulate(seedInner, seedOuter).subarray(0, 45);
  assert.throws(
    () => decapsulate(truncated),
    (e: unknown) => e instanceof WireError && e.code === 'TLE_WIRE_MALFORMED',
  );
});

const pod = (i: number): string => `10.244.${(i >> 8) & 255}.${i & 255}`;

test('flow-hashed source port: one flow keeps one port, whatever its sequence numbers and payloads', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 0xffff }),
      fc.integer({ min: 0, max: 0xffff }),
      fc.integer({ min: 0, max: 0xffff }),
      fc.uint8Array({ maxLength: 100 }),
      (id, seqA, seqB, data) => {
        const a = icmpEchoFrame({ srcMac: '02:00:00:00:00:01', dstMac: '02:00:00:00:00:02', srcIp: '10.244.1.2', dstIp: '10.244.2.3', id, seq: seqA });
        const b = icmpEchoFrame({ srcMac: '02:00:00:00:00:01', dstMac: '02:00:00:00:00:02', srcIp: '10.244.1.2', dstIp: '10.244.2.3', id, seq: seqB, data });
        assert.equal(flowSourcePort(a), flowSourcePort(b));
        const u1 = udpFrame({
          srcMac: '02:00:00:00:00:01',
          dstMac: '02:00:00:00:00:02',
          srcIp: '10.244.1.2',
          dstIp: '10.244.2.3',
          srcPort: id,
          dstPort: 53,
          payload: Buffer.from(data),
          ipId: seqA,
        });
        const u2 = udpFrame({
          srcMac: '02:00:00:00:00:01',
          dstMac: '02:00:00:00:00:02',
          srcIp: '10.244.1.2',
          dstIp: '10.244.2.3',
          srcPort: id,
          dstPort: 53,
          payload: Buffer.alloc(7),
          ipId: seqB,
        });
        assert.equal(flowSourcePort(u1), flowSourcePort(u2));
      },
    ),
    { numRuns: 200 },
  );
});

test('flow-hashed source port: different flows spread evenly over the port range', () => {
  const flows = 4096;
  const ports: number[] = [];
  for (let i = 0; i < flows; i++) {
    // Flows differ in one field at a time, as pod traffic does: client port, then address.
    const frame = udpFrame({
      srcMac: '02:00:00:00:00:01',
      dstMac: '02:00:00:00:00:02',
      srcIp: pod(i % 64),
      dstIp: '10.244.9.9',
      srcPort: 40000 + Math.floor(i / 64),
      dstPort: 80,
      payload: Buffer.alloc(10),
    });
    ports.push(flowSourcePort(frame));
  }
  const { min, max } = DEFAULT_SOURCE_PORT_RANGE;
  assert.ok(ports.every((p) => p >= min && p <= max));
  // 4096 flows into 28232 ports: about 270 collisions expected by chance; far more would mean a weak hash.
  assert.ok(new Set(ports).size > 3700, `${new Set(ports).size} distinct ports`);
  const buckets = new Array<number>(16).fill(0);
  for (const p of ports) buckets[Math.floor(((p - min) * 16) / (max - min + 1))]!++;
  for (const b of buckets) assert.ok(b > 256 * 0.7 && b < 256 * 1.3, `bucket counts ${buckets.join(',')}`);
  // Separate pings between the same two pods (different echo ids) spread too.
  const pings = new Set<number>();
  for (let id = 0; id < 256; id++)
    pings.add(
      flowSourcePort(icmpEchoFrame({ srcMac: '02:00:00:00:00:01', dstMac: '02:00:00:00:00:02', srcIp: '10.244.1.2', dstIp: '10.244.2.3', id, seq: 1 })),
    );
  assert.ok(pings.size > 240, `${pings.size} ports for 256 pings`);
});

test('flow-hashed source port: stays in any configured range; non-IP frames hash their MACs', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 65535 }), fc.integer({ min: 0, max: 2000 }), fc.uint8Array({ maxLength: 200 }), (lo, width, bytes) => {
      const range = { min: lo, max: Math.min(65535, lo + width) };
      const p = flowSourcePort(Buffer.from(bytes), range);
      assert.ok(p >= range.min && p <= range.max);
    }),
  );
  const arp = (sender: string): Buffer =>
    arpFrame({ op: 1, senderMac: sender, senderIp: '10.244.0.0', targetMac: '00:00:00:00:00:00', targetIp: '10.244.1.0' });
  assert.equal(flowSourcePort(arp('02:00:00:00:00:01')), flowSourcePort(arp('02:00:00:00:00:01')));
  assert.notEqual(flowSourcePort(arp('02:00:00:00:00:01')), flowSourcePort(arp('02:00:00:00:00:03')));
  assert.throws(() => flowSourcePort(seedInner, { min: 5000, max: 4000 }), /portRange: "5000-4000" must have min <= max/);
  // encapsulate uses the hash unless told a port.
  assert.equal(decapsulate(encapsulate(seedInner, { ...seedOuter, portRange: { min: 1000, max: 1000 } })).outer.udp.srcPort, 1000);
  assert.equal(decapsulate(encapsulate(seedInner, { ...seedOuter, srcPort: 51891 })).outer.udp.srcPort, 51891);
});
