// The frame filters of `tulle decode` (--vni, --host, --inner-host, --proto) on hand-made frames, and what a careless
// or hostile argument gets: a clear error naming the option, the value (cut when long) and the rule, exit code 2.
// Their agreement with Wireshark's display filters on real kernel traffic is in test/netns/wire-decode-filters.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { arpFrame, describeFrame, dissect, encapsulate, encodePcap, frameFilter, frameToJson, icmpEchoFrame, udpFrame } from '../../src/wire/index.js';

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

const hostA = { srcMac: '52:54:00:00:00:0a', dstMac: '52:54:00:00:00:0b', srcIp: '192.0.2.11', dstIp: '192.0.2.12' };
const hostV6 = { ...hostA, srcIp: '2001:db8::11', dstIp: '2001:db8::12' };
const pod = { srcMac: 'c6:d2:32:6f:8f:44', dstMac: '0e:f0:b5:8c:28:f5', srcIp: '10.244.1.2', dstIp: '10.244.2.3' };

const FRAMES = {
  ping: encapsulate(icmpEchoFrame({ ...pod, id: 1, seq: 1 }), { ...hostA, vni: 1 }),
  podUdp: encapsulate(udpFrame({ ...pod, srcPort: 4000, dstPort: 53, payload: Buffer.from('q') }), { ...hostA, vni: 42 }),
  podArp: encapsulate(arpFrame({ op: 1, senderMac: pod.srcMac, senderIp: '10.244.1.0', targetMac: '00:00:00:00:00:00', targetIp: '10.244.2.0' }), {
    ...hostA,
    vni: 1,
  }),
  v6Underlay: encapsulate(icmpEchoFrame({ ...pod, srcIp: 'fd00::2', dstIp: 'fd00::3', id: 2, seq: 2 }), { ...hostV6, vni: 7, dstPort: 4789 }),
  nested: encapsulate(encapsulate(icmpEchoFrame({ ...pod, srcIp: '10.9.9.9', id: 3, seq: 3 }), { ...hostA, srcIp: '198.51.100.1', vni: 5 }), {
    ...hostA,
    vni: 6,
  }),
  underlayArp: arpFrame({ op: 1, senderMac: hostA.srcMac, senderIp: hostA.srcIp, targetMac: '00:00:00:00:00:00', targetIp: hostA.dstIp }),
  underlayUdp: udpFrame({ ...hostA, srcPort: 5353, dstPort: 5353, payload: Buffer.alloc(4) }),
};
type Name = keyof typeof FRAMES;

function matching(options: Parameters<typeof frameFilter>[0]): Name[] {
  const f = frameFilter(options)!;
  return (Object.keys(FRAMES) as Name[]).filter((k) => f(dissect(FRAMES[k])));
}

test('no option: no filter at all (every frame is shown, nothing is tested per frame)', () => {
  assert.equal(frameFilter({}), undefined);
});

test('--vni at any level, --host outside, --inner-host inside (the innermost), --proto of the innermost frame', () => {
  assert.deepEqual(matching({ vni: 1 }), ['ping', 'podArp']);
  assert.deepEqual(matching({ vni: 5 }), ['nested']);
  assert.deepEqual(matching({ host: '192.0.2.12' }), ['ping', 'podUdp', 'podArp', 'nested', 'underlayArp', 'underlayUdp']);
  assert.deepEqual(matching({ host: '2001:db8::12' }), ['v6Underlay']);
  assert.deepEqual(matching({ host: '10.244.1.2' }), []);
  assert.deepEqual(matching({ innerHost: '10.244.1.2' }), ['ping', 'podUdp']);
  assert.deepEqual(matching({ innerHost: '10.244.2.0' }), ['podArp']);
  assert.deepEqual(matching({ innerHost: 'fd00::3' }), ['v6Underlay']);
  assert.deepEqual(matching({ innerHost: '10.9.9.9' }), ['nested']);
  assert.deepEqual(matching({ innerHost: '198.51.100.1' }), [], 'the middle level of a nested frame is neither outer nor innermost');
  assert.deepEqual(matching({ innerHost: '192.0.2.11' }), [], 'a frame without VXLAN has no inner host');
  assert.deepEqual(matching({ proto: 'icmp' }), ['ping', 'v6Underlay', 'nested']);
  assert.deepEqual(matching({ proto: 'udp' }), ['podUdp', 'underlayUdp'], 'the UDP that carries VXLAN does not count');
  assert.deepEqual(matching({ proto: 'arp' }), ['podArp', 'underlayArp']);
  assert.deepEqual(matching({ proto: 'tcp' }), []);
  assert.deepEqual(matching({ vni: 1, innerHost: '10.244.1.2', proto: 'icmp' }), ['ping']);
  assert.deepEqual(matching({ host: '192.0.2.11', proto: 'arp' }), ['podArp', 'underlayArp']);
});

test('hostile filter values: the option, the value (cut when long) and the rule; exit 2, nothing on stdout', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tulle-decode-filter-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const pcap = join(dir, 'f.pcap');
  writeFileSync(pcap, encodePcap(Object.values(FRAMES).map((data) => ({ data, time: { sec: 1_700_000_000, nsec: 0 } }))));
  const run = (args: string[]) => spawnSync(process.execPath, [MAIN, 'decode', ...args, pcap], { encoding: 'utf8' });
  const cases: Array<[string[], RegExp]> = [
    [
      ['--host', '999.1.1.1'],
      /^tulle: tulle decode: --host: "999\.1\.1\.1" is not an IPv4 or IPv6 address \(like 192\.0\.2\.11 or 2001:db8::11\) \[TLE_USAGE\]$/,
    ],
    [['--host', ''], /--host: "" is not an IPv4 or IPv6 address/],
    [['--inner-host', '10.244.1.0/24'], /--inner-host: "10\.244\.1\.0\/24" is not an IPv4 or IPv6 address/],
    [['--inner-host', 'fe80::1%eth0'], /--inner-host: "fe80::1%eth0" is not an IPv4 or IPv6 address/],
    [['--host', '1.2.3.4; rm -rf /'], /--host: "1\.2\.3\.4; rm -rf \/" is not/],
    [['--host', `${'9'.repeat(5000)}`], /--host: "9{63}…" is not an IPv4 or IPv6 address/],
    [['--proto', 'sctp'], /--proto: "sctp" is not one of icmp, tcp, udp, arp/],
    [['--proto', 'ICMP'], /--proto: "ICMP" is not one of icmp, tcp, udp, arp/],
    [['--vni', '-1'], /--vni/],
    [['--vni', '0x10'], /--vni/],
    [['--host'], /missing FILE/], // the path became --host's value
  ];
  for (const [args, message] of cases) {
    const r = run(args);
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.equal(r.stdout, '', args.join(' '));
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr.trim(), message);
    assert.ok(r.stderr.length < 300, `${args.join(' ')}: message of ${r.stderr.length} bytes`);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  }
  // A filter that matches nothing is not an error: an empty list and a summary of zero frames.
  const none = run(['--inner-host', '203.0.113.9']);
  assert.equal(none.status, 0, none.stderr);
  assert.match(none.stdout, /^\nframes +0\n/);
  const text = run(['--vni', '42']);
  assert.equal(text.status, 0, text.stderr);
  assert.match(text.stdout, /^ {4}2 {2}.*vni 42\n.*UDP, length 1\n\nframes +1\n/);
  assert.ok(readFileSync(pcap).length > 0);
});

test('a capture time past the range of dates (a hostile pcapng timestamp) prints as @seconds instead of failing', () => {
  const d = dissect(FRAMES.ping);
  for (const sec of [1e17, 2 ** 64, -1e16]) {
    const meta = { number: 1, sec, nsec: 5000, capturedLength: 148, originalLength: 148 };
    assert.match(describeFrame(d, meta), new RegExp(`^ {4}1 {2}@${String(sec).replace('+', '\\+')}\\.000005 `));
    assert.equal(frameToJson(d, meta).time, `@${sec}.000005000Z`);
  }
});
