// Wireshark agrees: captures written by tulle are read by tshark and by `tulle decode --json`, and the two give the
// same outer and inner addresses, ports, VNI, VXLAN flags, ICMP fields and checksum verdicts on every frame —
// including frames broken on purpose. The pcapng reader is checked on files Wireshark's own editcap writes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { run } from '../../src/base/exec.js';
import { bytesToMac } from '../../src/base/ip.js';
import { arpFrame, encapsulate, encodePcap, formatIPv6, icmpEchoFrame, udpFrame, type VxlanOuter } from '../../src/wire/index.js';
import { compareFields, jsonFields, tsharkFields } from '../helpers/tshark.js';

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const PORTS = [4789, 8472, 9000];

function tulleJson(path: string): Array<Record<string, any>> {
  const r = spawnSync(process.execPath, [MAIN, 'decode', '--json', '--port', '9000', path], { encoding: 'utf8', maxBuffer: 64 << 20 });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
}

async function assertAgree(path: string, expectedFrames: number): Promise<void> {
  const [ts, tu] = [await tsharkFields(path, PORTS), tulleJson(path)];
  assert.equal(ts.length, expectedFrames, 'tshark frame count');
  assert.equal(tu.length, expectedFrames, 'tulle frame count');
  const diffs = ts.flatMap((fields, i) => compareFields(i + 1, fields, jsonFields(tu[i]!)));
  assert.deepEqual(diffs, [], diffs.slice(0, 20).join('\n'));
}

const hostA = { srcMac: '52:54:00:9c:09:d7', dstMac: 'fe:ee:8f:bf:86:99', srcIp: '10.0.4.2', dstIp: '10.0.4.14' };
const pods = { srcMac: 'd2:ba:c1:db:b3:77', dstMac: '0e:f0:b5:8c:28:f5', srcIp: '10.244.0.3', dstIp: '10.244.1.3' };

/** Hand-picked frames: every layer, every checksum verdict. */
function handPicked(): Buffer[] {
  const ping = icmpEchoFrame({ ...pods, id: 16640, seq: 3 });
  const frames: Buffer[] = [];
  frames.push(encapsulate(ping, { ...hostA, vni: 1 })); // flannel: 8472, no UDP checksum
  frames.push(
    encapsulate(icmpEchoFrame({ ...pods, srcIp: pods.dstIp, dstIp: pods.srcIp, id: 16640, seq: 3, reply: true }), {
      ...hostA,
      vni: 4096,
      dstPort: 4789,
      udpChecksum: true,
    }),
  ); // Calico
  const badOuterIp = encapsulate(ping, { ...hostA, vni: 1 });
  badOuterIp[24]! ^= 0xff;
  frames.push(badOuterIp);
  const badUdp = encapsulate(ping, { ...hostA, vni: 1, udpChecksum: true });
  badUdp.writeUInt16BE(badUdp.readUInt16BE(40) ^ 0x0101, 40);
  frames.push(badUdp);
  const badInnerIcmp = Buffer.from(ping);
  badInnerIcmp[badInnerIcmp.length - 1]! ^= 0x55;
  frames.push(encapsulate(badInnerIcmp, { ...hostA, vni: 1, udpChecksum: true }));
  const badInnerIp = Buffer.from(ping);
  badInnerIp[24]! ^= 0x10;
  frames.push(encapsulate(badInnerIp, { ...hostA, vni: 1 }));
  frames.push(
    encapsulate(arpFrame({ op: 1, senderMac: pods.srcMac, senderIp: '10.244.0.0', targetMac: '00:00:00:00:00:00', targetIp: '10.244.1.0' }), {
      ...hostA,
      vni: 1,
      vlans: [{ tpid: 0x8100, pcp: 3, dei: false, vid: 100 }],
    }),
  );
  frames.push(
    encapsulate(udpFrame({ ...pods, srcPort: 40000, dstPort: 53, payload: Buffer.from('dns?') }), {
      ...hostA,
      vni: 77,
      dstPort: 9000,
      gbp: { policyId: 300, dontLearn: true, policyApplied: true },
    }),
  );
  const v6 = { srcMac: hostA.srcMac, dstMac: hostA.dstMac, srcIp: '2001:db8::2', dstIp: '2001:db8::14' };
  frames.push(encapsulate(icmpEchoFrame({ ...pods, srcIp: 'fd00::3', dstIp: 'fd00::1:3', id: 9, seq: 1 }), { ...v6, vni: 5 }));
  frames.push(arpFrame({ op: 2, senderMac: hostA.srcMac, senderIp: hostA.srcIp, targetMac: hostA.dstMac, targetIp: hostA.dstIp }));
  frames.push(icmpEchoFrame({ ...hostA, id: 1, seq: 1 }));
  frames.push(udpFrame({ ...hostA, srcPort: 5353, dstPort: 5353, payload: Buffer.alloc(30, 1) }));
  return frames;
}

const mac = fc.uint8Array({ minLength: 6, maxLength: 6 }).map((b) => bytesToMac(Uint8Array.from(b, (x, i) => (i === 0 ? x & 0xfe : x)))); // unicast
const v6 = fc.uint8Array({ minLength: 16, maxLength: 16 }).map((b) => formatIPv6(Uint8Array.from(b, (x, i) => (i === 0 ? 0x20 : x))));
const v4 = fc.tuple(fc.integer({ min: 1, max: 223 }), fc.nat(255), fc.nat(255), fc.integer({ min: 1, max: 254 })).map((p) => p.join('.'));

/** Random VXLAN frames: addresses, ports, VNIs, inner protocols; reproducible (fixed seed). */
function randomFrames(n: number): Buffer[] {
  const arb = fc.record({
    outerV6: fc.boolean(),
    o4: fc.tuple(v4, v4),
    o6: fc.tuple(v6, v6),
    macs: fc.tuple(mac, mac, mac, mac),
    vni: fc.integer({ min: 0, max: 0xffffff }),
    port: fc.constantFrom(...PORTS),
    csum: fc.boolean(),
    inner: fc.constantFrom('icmp', 'udp', 'arp', 'icmp6'),
    i4: fc.tuple(v4, v4),
    i6: fc.tuple(v6, v6),
    id: fc.nat(0xffff),
    seq: fc.nat(0xffff),
    data: fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b)),
  });
  return fc.sample(arb, { numRuns: n, seed: 20261121 }).map((r) => {
    const l2 = { srcMac: r.macs[2], dstMac: r.macs[3] };
    const inner =
      r.inner === 'icmp'
        ? icmpEchoFrame({ ...l2, srcIp: r.i4[0], dstIp: r.i4[1], id: r.id, seq: r.seq, data: r.data })
        : r.inner === 'icmp6'
          ? icmpEchoFrame({ ...l2, srcIp: r.i6[0], dstIp: r.i6[1], id: r.id, seq: r.seq, data: r.data })
          : r.inner === 'udp'
            ? udpFrame({
                ...l2,
                srcIp: r.i4[0],
                dstIp: r.i4[1],
                srcPort: r.id || 1,
                dstPort: r.seq === 4789 || r.seq === 8472 || r.seq === 9000 ? 80 : r.seq || 1,
                payload: r.data,
              })
            : arpFrame({ op: 1, senderMac: l2.srcMac, senderIp: r.i4[0], targetMac: '00:00:00:00:00:00', targetIp: r.i4[1] });
    const outer: VxlanOuter = {
      srcMac: r.macs[0],
      dstMac: r.macs[1],
      srcIp: r.outerV6 ? r.o6[0] : r.o4[0],
      dstIp: r.outerV6 ? r.o6[1] : r.o4[1],
      vni: r.vni,
      dstPort: r.port,
      udpChecksum: r.csum,
    };
    return encapsulate(inner, outer);
  });
}

test('tshark and tulle decode agree field by field on hand-picked and random VXLAN frames', { timeout: 300_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tulle-tshark-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const frames = [...handPicked(), ...randomFrames(300)];
  const path = join(dir, 'tulle.pcap');
  writeFileSync(path, encodePcap(frames.map((data, i) => ({ data, time: { sec: 1_700_000_000 + i, nsec: 1000 * i } }))));
  await assertAgree(path, frames.length);

  // The broken frames really are broken in tshark's eyes too (so agreement is not agreement on "all good").
  const ts = await tsharkFields(path, PORTS);
  assert.deepEqual(ts[2]!['ip.checksum.status'], ['0', '1']); // bad outer IP header checksum
  assert.deepEqual(ts[3]!['udp.checksum.status'], ['0']);
  assert.deepEqual(ts[4]!['icmp.checksum.status'], ['0']);
  assert.deepEqual(ts[5]!['ip.checksum.status'], ['1', '0']); // bad inner IP header checksum
  assert.deepEqual(ts[0]!['udp.checksum.status'], ['3']); // zero: not present
  assert.deepEqual(ts[7]!['vxlan.gbp'], ['300']);
});

test('tshark reads tulle pcaps in every variant (big-endian, nanoseconds) with the same times and fields', { timeout: 120_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tulle-tshark-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const frames = handPicked();
  const records = frames.map((data, i) => ({ data, time: { sec: 1_700_000_000 + i, nsec: 123_456_789 } }));
  for (const variant of [{ bigEndian: true }, { nanosecond: true }, { bigEndian: true, nanosecond: true }]) {
    const path = join(dir, `v-${JSON.stringify(variant).replace(/\W/g, '')}.pcap`);
    writeFileSync(path, encodePcap(records, variant));
    await assertAgree(path, frames.length);
    const { stdout } = await run(['tshark', '-r', path, '-T', 'fields', '-e', 'frame.time_epoch']);
    const times = stdout.trim().split('\n');
    const frac = variant.nanosecond ? '123456789' : '123456000';
    assert.deepEqual(
      times,
      records.map((r) => `${r.time.sec}.${frac}`),
    );
    const tulleTimes = tulleJson(path).map((f) => f.time);
    assert.deepEqual(
      tulleTimes,
      records.map((r) => `${new Date(r.time.sec * 1000).toISOString().slice(0, 19)}.${frac}Z`),
    );
  }
});

/** The same packets under another link layer: Linux cooked capture v1/v2 (tcpdump -i any) or raw IP. */
function relink(frame: Buffer, linkType: 101 | 113 | 276): Buffer | undefined {
  const etherType = frame.readUInt16BE(12);
  if (etherType === 0x8100) return undefined; // keep to untagged frames
  const packet = frame.subarray(14);
  if (linkType === 101) return etherType === 0x0800 || etherType === 0x86dd ? packet : undefined;
  const mac = Buffer.concat([frame.subarray(6, 12), Buffer.alloc(2)]);
  if (linkType === 113) {
    const h = Buffer.alloc(16);
    h.writeUInt16BE(0, 0); // sent to us
    h.writeUInt16BE(1, 2); // ARPHRD_ETHER
    h.writeUInt16BE(6, 4);
    mac.copy(h, 6);
    h.writeUInt16BE(etherType, 14);
    return Buffer.concat([h, packet]);
  }
  const h = Buffer.alloc(20);
  h.writeUInt16BE(etherType, 0);
  h.writeUInt32BE(2, 4); // interface index
  h.writeUInt16BE(1, 8);
  h[10] = 0;
  h[11] = 6;
  mac.copy(h, 12);
  return Buffer.concat([h, packet]);
}

test('raw IP and Linux cooked captures (tcpdump -i any) decode as tshark reads them', { timeout: 120_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tulle-tshark-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  for (const linkType of [101, 113, 276] as const) {
    const frames = [...handPicked(), ...randomFrames(40)].map((f) => relink(f, linkType)).filter((f): f is Buffer => f !== undefined);
    const path = join(dir, `link-${linkType}.pcap`);
    writeFileSync(
      path,
      encodePcap(
        frames.map((data, i) => ({ data, time: { sec: 1_700_000_000 + i, nsec: 0 } })),
        { linkType },
      ),
    );
    await assertAgree(path, frames.length);
    const decoded = tulleJson(path);
    assert.ok(
      decoded.every((f) => f.eth === undefined && f.error === undefined),
      `link type ${linkType}: no outer Ethernet, no errors`,
    );
    assert.ok(decoded.filter((f) => f.vxlan).length >= 40, `link type ${linkType}: VXLAN found under the cooked header`);
  }
});

test('pcapng written by Wireshark (editcap) decodes exactly like the pcap it came from, micro- and nanosecond', { timeout: 120_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tulle-tshark-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const frames = [...handPicked(), ...randomFrames(50)];
  for (const nanosecond of [false, true]) {
    // editcap keeps the input's precision: a nanosecond pcap becomes a pcapng with if_tsresol 9.
    const pcap = join(dir, `in-${nanosecond}.pcap`);
    writeFileSync(
      pcap,
      encodePcap(
        frames.map((data, i) => ({ data, time: { sec: 1_700_000_000 + i, nsec: 987_654_321 } })),
        { nanosecond },
      ),
    );
    const ng = join(dir, `out-${nanosecond}.pcapng`);
    const r = spawnSync('editcap', ['-F', 'pcapng', pcap, ng], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const fromNg = tulleJson(ng);
    assert.deepEqual(fromNg, tulleJson(pcap));
    assert.equal(fromNg[0]!.time, `2023-11-14T22:13:20.${nanosecond ? '987654321' : '987654000'}Z`);
    await assertAgree(ng, frames.length);
  }
});
