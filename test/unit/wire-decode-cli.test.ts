// `tulle decode` as a user runs it: tcpdump-like lines and a summary, JSON Lines, --port, --vni, stdin, and a broken
// file decoded up to the bad spot followed by one clear line on stderr and exit code 1.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { arpFrame, encapsulate, encodePcap, icmpEchoFrame, udpFrame } from '../../src/wire/index.js';

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

function tulle(args: string[], input?: Buffer): { stdout: string; stderr: string; status: number | null } {
  const r = spawnSync(process.execPath, [MAIN, ...args], { input, encoding: 'utf8', maxBuffer: 64 << 20 });
  return { stdout: r.stdout, stderr: r.stderr, status: r.status };
}

const hostA = { srcMac: '52:54:00:00:00:0a', dstMac: '52:54:00:00:00:0b', srcIp: '192.0.2.11', dstIp: '192.0.2.12' };
const hostB = { srcMac: '52:54:00:00:00:0b', dstMac: '52:54:00:00:00:0a', srcIp: '192.0.2.12', dstIp: '192.0.2.11' };
const podA = { srcMac: 'c6:d2:32:6f:8f:44', dstMac: '0e:f0:b5:8c:28:f5', srcIp: '10.244.1.2', dstIp: '10.244.2.3' };
const podB = { srcMac: '0e:f0:b5:8c:28:f5', dstMac: 'c6:d2:32:6f:8f:44', srcIp: '10.244.2.3', dstIp: '10.244.1.2' };

function sampleFrames(): Buffer[] {
  const malformed = Buffer.from(udpFrame({ ...hostA, srcPort: 1, dstPort: 2, payload: Buffer.alloc(10) }));
  malformed.writeUInt16BE(1500, 16); // IPv4 total length past the end of the frame
  return [
    encapsulate(icmpEchoFrame({ ...podA, id: 7, seq: 1 }), { ...hostA, vni: 1 }),
    encapsulate(icmpEchoFrame({ ...podB, id: 7, seq: 1, reply: true }), { ...hostB, vni: 1 }),
    encapsulate(arpFrame({ op: 1, senderMac: podA.srcMac, senderIp: '10.244.1.0', targetMac: '00:00:00:00:00:00', targetIp: '10.244.2.0' }), {
      ...hostA,
      vni: 1,
      vlans: [{ tpid: 0x8100, pcp: 0, dei: false, vid: 100 }],
    }),
    arpFrame({ op: 1, senderMac: hostA.srcMac, senderIp: hostA.srcIp, targetMac: '00:00:00:00:00:00', targetIp: hostA.dstIp }),
    encapsulate(udpFrame({ ...podA, srcPort: 40000, dstPort: 53, payload: Buffer.from('query') }), { ...hostA, vni: 42, dstPort: 9000 }),
    malformed,
    encapsulate(icmpEchoFrame({ srcMac: podA.srcMac, dstMac: podA.dstMac, srcIp: 'fd00:10:244:1::2', dstIp: 'fd00:10:244:2::3', id: 9, seq: 4 }), {
      srcMac: hostA.srcMac,
      dstMac: hostA.dstMac,
      srcIp: '2001:db8::11',
      dstIp: '2001:db8::12',
      vni: 4096,
      dstPort: 4789,
    }),
  ];
}

function writeSample(dir: string): string {
  const path = join(dir, 'sample.pcap');
  writeFileSync(path, encodePcap(sampleFrames().map((data, i) => ({ data, time: { sec: 1_700_000_000 + i, nsec: 157_412_000 } }))));
  return path;
}

test('human output: tcpdump-like lines for outer and inner frames, then the summary', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tulle-decode-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const r = tulle(['decode', writeSample(dir)]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, '');
  const lines = r.stdout.split('\n');
  const frame = (n: number): string => lines.find((l) => l.startsWith(String(n).padStart(5) + '  '))!;
  const next = (n: number): string => lines[lines.indexOf(frame(n)) + 1]!.trim();
  assert.match(
    frame(1),
    /^ {4}1 {2}22:13:20\.157412 52:54:00:00:00:0a > 52:54:00:00:00:0b, ethertype IPv4 \(0x0800\), length 148: 192\.0\.2\.11\.\d+ > 192\.0\.2\.12\.8472: VXLAN, flags \[I\] \(0x08\), vni 1$/,
  );
  assert.equal(
    next(1),
    'c6:d2:32:6f:8f:44 > 0e:f0:b5:8c:28:f5, ethertype IPv4 (0x0800), length 98: 10.244.1.2 > 10.244.2.3: ICMP echo request, id 7, seq 1, length 64',
  );
  assert.equal(
    next(2),
    '0e:f0:b5:8c:28:f5 > c6:d2:32:6f:8f:44, ethertype IPv4 (0x0800), length 98: 10.244.2.3 > 10.244.1.2: ICMP echo reply, id 7, seq 1, length 64',
  );
  assert.match(frame(3), /ethertype 802\.1Q \(0x8100\), length 96: vlan 100, p 0, ethertype IPv4 \(0x0800\), 192\.0\.2\.11\.\d+ > 192\.0\.2\.12\.8472: VXLAN/);
  assert.equal(next(3), 'c6:d2:32:6f:8f:44 > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 42: ARP, Request who-has 10.244.2.0 tell 10.244.1.0, length 28');
  assert.match(frame(4), /ARP, Request who-has 192\.0\.2\.12 tell 192\.0\.2\.11, length 28$/);
  assert.match(frame(5), /192\.0\.2\.11\.\d+ > 192\.0\.2\.12\.9000: UDP, length 55$/); // not a VXLAN port unless told
  assert.match(frame(6), /\[malformed: ipv4 at offset 16: total length 1500 is past the end of the frame \(38 bytes left\)\]$/);
  assert.match(frame(7), /2001:db8::11\.\d+ > 2001:db8::12\.4789: VXLAN, flags \[I\] \(0x08\), vni 4096$/);
  assert.equal(
    next(7),
    'c6:d2:32:6f:8f:44 > 0e:f0:b5:8c:28:f5, ethertype IPv6 (0x86dd), length 118: fd00:10:244:1::2 > fd00:10:244:2::3: ICMP6, echo request, id 9, seq 4, length 64',
  );
  const summary = r.stdout.slice(r.stdout.indexOf('\nframes'));
  assert.match(summary, /^frames +7$/m);
  assert.match(summary, /^malformed +1$/m);
  assert.match(summary, /^vxlan frames +4 {2}\(vni 1: 3, vni 4096: 1\)$/m);
  assert.match(summary, /^inner protocols +ICMP 2, ARP 1, ICMPv6 1$/m);
  // The malformed frame counts as IPv4: its IP header was found, but could not be read.
  assert.match(summary, /^other frames +3 {2}\(ARP 1, IPv4 1, UDP 1\)$/m);
});

test('--json: one object per frame with every layer; --port adds a VXLAN port; --vni filters', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tulle-decode-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = writeSample(dir);
  const r = tulle(['decode', '--json', path]);
  assert.equal(r.status, 0, r.stderr);
  const frames = r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  assert.equal(frames.length, 7);
  assert.deepEqual(
    frames.map((f) => f.frame),
    [1, 2, 3, 4, 5, 6, 7],
  );
  const [f1, , f3, f4, f5, f6, f7] = frames;
  assert.equal(f1.time, '2023-11-14T22:13:20.157412000Z');
  assert.equal(f1.length, 148);
  assert.deepEqual(f1.eth, { src: '52:54:00:00:00:0a', dst: '52:54:00:00:00:0b', type: 0x0800 });
  assert.equal(f1.ip.checksumStatus, 'good');
  assert.equal(f1.udp.dstPort, 8472);
  assert.equal(f1.udp.checksumStatus, 'none');
  assert.deepEqual(f1.vxlan, { flags: 8, vni: 1 });
  assert.deepEqual(f1.inner.ip.src, '10.244.1.2');
  assert.deepEqual(f1.inner.icmp, { type: 8, code: 0, id: 7, seq: 1, checksum: f1.inner.icmp.checksum, checksumStatus: 'good' });
  assert.deepEqual(f3.eth.vlans, [{ tpid: 0x8100, pcp: 0, dei: false, vid: 100 }]);
  assert.equal(f3.inner.arp.targetIp, '10.244.2.0');
  assert.equal(f4.arp.op, 1);
  assert.equal(f5.vxlan, undefined);
  assert.deepEqual(f6.error, {
    code: 'TLE_WIRE_MALFORMED',
    layer: 'ipv4',
    offset: 16,
    reason: 'total length 1500 is past the end of the frame (38 bytes left)',
  });
  assert.equal(f7.ip.version, 6);
  assert.equal(f7.inner.icmpv6.checksumStatus, 'good');

  const withPort = tulle(['decode', '--json', '--port', '9000', path])
    .stdout.trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  assert.equal(withPort[4].vxlan.vni, 42);
  assert.equal(withPort[4].inner.udp.dstPort, 53);
  const only1 = tulle(['decode', '--json', '--vni', '1', path])
    .stdout.trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  assert.deepEqual(
    only1.map((f) => f.frame),
    [1, 2, 3],
  );
  const human42 = tulle(['decode', '--port', '9000', '--vni', '42', path]);
  assert.match(human42.stdout, /^vxlan frames +1 {2}\(vni 42: 1\)$/m);
  assert.match(human42.stdout, /^inner protocols +UDP 1$/m);
});

test('stdin: "tulle decode -" reads a capture from a pipe', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tulle-decode-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = writeSample(dir);
  const fromFile = tulle(['decode', '--json', path]);
  const fromPipe = tulle(['decode', '--json', '-'], readFileSync(path));
  assert.equal(fromPipe.status, 0, fromPipe.stderr);
  assert.equal(fromPipe.stdout, fromFile.stdout);
});

test('a broken file: frames before the bad spot are shown, then one line names the offset and reason; exit 1', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tulle-decode-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const whole = readFileSync(writeSample(dir));
  const cutPath = join(dir, 'cut.pcap');
  writeFileSync(cutPath, whole.subarray(0, whole.length - 20)); // the last record loses 20 bytes
  const r = tulle(['decode', cutPath]);
  assert.equal(r.status, 1);
  assert.match(r.stdout, /^frames +6$/m);
  const errLines = r.stderr.trim().split('\n');
  assert.equal(errLines.length, 1, r.stderr);
  const lastOffset = whole.length - 16 - 188;
  assert.equal(
    errLines[0],
    `tulle decode: ${cutPath}: offset ${lastOffset}: record 6 says 188 bytes captured but the file ends 168 bytes after its header [TLE_PCAP_TRUNCATED]`,
  );

  const jsonCut = tulle(['decode', '--json', cutPath]);
  assert.equal(jsonCut.status, 1);
  assert.equal(jsonCut.stdout.trim().split('\n').length, 6);

  const notCapture = join(dir, 'notes.txt');
  writeFileSync(notCapture, 'hello, this is text\n');
  const bad = tulle(['decode', notCapture]);
  assert.equal(bad.status, 1);
  assert.equal(bad.stdout, '');
  assert.equal(bad.stderr, `tulle decode: ${notCapture}: offset 0: not a pcap or pcapng file: it starts with 68 65 6c 6c [TLE_PCAP_BAD_MAGIC]\n`);
  const missing = tulle(['decode', join(dir, 'nope.pcap')]);
  assert.equal(missing.status, 1);
  assert.equal(missing.stderr, `tulle decode: ${join(dir, 'nope.pcap')}: no such file [TLE_CAPTURE_UNREADABLE]\n`);
  const usage = tulle(['decode', '--vni', '16777216', notCapture]);
  assert.equal(usage.status, 2);
  assert.match(usage.stderr, /--vni: 16777216 is out of range \(must be 0\.\.16777215\)/);
});
