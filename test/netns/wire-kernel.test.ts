// Against the kernel: a VXLAN frame built by tulle's codec, sent as a UDP datagram from a Node socket in one
// namespace to a kernel VTEP (vxlan id 42, dstport 4789) in another, is decapsulated and answered — the kernel
// asks for our MAC by ARP over VXLAN, we answer with a codec-built ARP reply, and the inner ICMP echo gets its
// reply. The underlay capture (tcpdump) decodes with `tulle decode` to the expected fields, the kernel's own
// encapsulated reply is byte for byte what `encapsulate` builds from the same fields, and tshark agrees.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitFor } from '../../src/base/retry.js';
import { execIn } from '../../src/netns/netns.js';
import { decapsulate, encapsulate, readCaptureSync } from '../../src/wire/index.js';
import { compareFields, jsonFields, tsharkFields } from '../helpers/tshark.js';
import { startCapture, stopCapture } from '../helpers/capture.js';
import { bridgeJson, freshNetns, ip, ipJson, requireRoot } from '../helpers/netns.js';

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const WIRE = new URL('../../src/wire/index.js', import.meta.url).href;

const VTEP_UNDERLAY = '192.0.2.1';
const PEER_UNDERLAY = '192.0.2.2';
const VTEP_OVERLAY = '10.10.0.1';
const PEER_OVERLAY = '10.10.0.2';
const PEER_MAC = '02:00:0a:0a:00:02';
const VNI = 42;
const PORT = 4789;
const ECHO_ID = 0x7475; // "tu"
const ECHO_SEQ = 3;

/**
 * The peer, run inside its namespace by `ip netns exec PEER node`: a UDP socket on the VXLAN port that speaks
 * VXLAN with the codec. It sends one echo request, answers the kernel's ARP request for its overlay address, and
 * prints the echo reply it gets back as JSON.
 */
const PEER_SCRIPT = `
import dgram from 'node:dgram';
const w = await import(process.env.WIRE);
const cfg = JSON.parse(process.env.PEER);
const sock = dgram.createSocket('udp4');
await new Promise((resolve, reject) => { sock.once('error', reject); sock.bind(cfg.port, cfg.peerIp, resolve); });
const request = w.icmpEchoFrame({ srcMac: cfg.peerMac, dstMac: cfg.vtepMac, srcIp: cfg.peerOverlay, dstIp: cfg.vtepOverlay, id: cfg.id, seq: cfg.seq });
const send = (inner) => sock.send(w.buildVxlan({ vni: cfg.vni }, inner), cfg.port, cfg.vtepIp);
const log = { arpAnswered: 0 };
const timer = setTimeout(() => { console.log(JSON.stringify({ error: 'no echo reply within 15 s', ...log })); process.exit(1); }, 15000);
sock.on('message', (msg, from) => {
  const vx = w.decodeVxlan(msg);
  const d = w.dissect(msg, vx.payloadOffset, msg.length);
  if (d.error) return;
  if (d.arp && d.arp.op === 1 && d.arp.targetIp === cfg.peerOverlay) {
    log.arpAnswered++;
    send(w.arpFrame({ op: 2, senderMac: cfg.peerMac, senderIp: cfg.peerOverlay, targetMac: d.arp.senderMac, targetIp: d.arp.senderIp }));
  } else if (d.icmp && d.icmp.type === 0 && d.icmp.id === cfg.id && d.icmp.seq === cfg.seq) {
    clearTimeout(timer);
    console.log(JSON.stringify({ vni: vx.vni, from: from.address, fromPort: from.port, innerSrcMac: d.eth.src, innerDstMac: d.eth.dst,
      innerSrc: d.ipv4.src, innerDst: d.ipv4.dst, icmpChecksum: d.icmp.checksumStatus(), payloadSame: d.icmp.payload.equals(w.pingData()), ...log }));
    sock.close();
  }
});
send(request);
`;

test('kernel VTEP answers a codec-built VXLAN ping; the captured exchange decodes as expected and as tshark reads it', { timeout: 120_000 }, async (t) => {
  requireRoot();
  const vtep = await freshNetns(t, 'vtep');
  const peer = await freshNetns(t, 'peer');
  const dir = mkdtempSync(join(tmpdir(), 'tulle-wire-kernel-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));

  // No IPv6 chatter (router solicitations, MLD) on the underlay: the capture holds only this exchange.
  for (const ns of [vtep, peer]) await execIn(ns, ['sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
  await ip(vtep, 'link', 'add', 'veth0', 'type', 'veth', 'peer', 'name', 'veth1', 'netns', peer);
  await ip(vtep, 'addr', 'add', `${VTEP_UNDERLAY}/24`, 'dev', 'veth0');
  await ip(peer, 'addr', 'add', `${PEER_UNDERLAY}/24`, 'dev', 'veth1');
  await ip(vtep, 'link', 'set', 'veth0', 'up');
  await ip(peer, 'link', 'set', 'veth1', 'up');
  // The kernel VTEP: ip link add vx0 type vxlan id 42 dstport 4789 local 192.0.2.1 dev veth0 noudpcsum
  // noudpcsum as flannel.1 in seed 003: a veth offloads UDP checksums (the packet crosses it with the checksum
  // unfinished), so with udpcsum a capture on it shows a checksum both tulle and tshark rightly call bad.
  await ip(vtep, 'link', 'add', 'vx0', 'type', 'vxlan', 'id', String(VNI), 'dstport', String(PORT), 'local', VTEP_UNDERLAY, 'dev', 'veth0', 'noudpcsum');
  await ip(vtep, 'addr', 'add', `${VTEP_OVERLAY}/24`, 'dev', 'vx0');
  await ip(vtep, 'link', 'set', 'vx0', 'up');
  // Broadcast and unknown unicast (the ARP request for our address) go to the peer: bridge fdb append 00:00:00:00:00:00 dev vx0 dst 192.0.2.2
  const fdbAdd = spawnSync('bridge', ['-n', vtep, 'fdb', 'append', '00:00:00:00:00:00', 'dev', 'vx0', 'dst', PEER_UNDERLAY], { encoding: 'utf8' });
  assert.equal(fdbAdd.status, 0, fdbAdd.stderr);
  const [vx] = await ipJson<Array<{ address: string; linkinfo: { info_kind: string; info_data: { id: number; port: number } } }>>(vtep, 'link', 'show', 'vx0');
  assert.equal(vx!.linkinfo.info_kind, 'vxlan');
  assert.equal(vx!.linkinfo.info_data.id, VNI);
  assert.equal(vx!.linkinfo.info_data.port, PORT);
  const vtepMac = vx!.address;
  const [veth0] = await ipJson<Array<{ address: string }>>(vtep, 'link', 'show', 'veth0');
  const [veth1] = await ipJson<Array<{ address: string }>>(peer, 'link', 'show', 'veth1');

  const pcap = join(dir, 'underlay.pcap');
  const tcpdump = await startCapture(peer, 'veth1', pcap);
  t.after(() => stopCapture(tcpdump));

  const cfg = {
    port: PORT,
    peerIp: PEER_UNDERLAY,
    vtepIp: VTEP_UNDERLAY,
    peerMac: PEER_MAC,
    vtepMac,
    peerOverlay: PEER_OVERLAY,
    vtepOverlay: VTEP_OVERLAY,
    vni: VNI,
    id: ECHO_ID,
    seq: ECHO_SEQ,
  };
  const peerRun = spawn('ip', ['netns', 'exec', peer, process.execPath, '--input-type=module', '-e', PEER_SCRIPT], {
    env: { ...process.env, WIRE, PEER: JSON.stringify(cfg) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.after(() => {
    if (peerRun.exitCode === null) peerRun.kill('SIGKILL');
  });
  let out = '';
  let err = '';
  peerRun.stdout.on('data', (d: Buffer) => (out += d.toString()));
  peerRun.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const code = await new Promise((resolve) => peerRun.once('exit', resolve));
  assert.equal(code, 0, `peer failed: ${out} ${err}`);

  // The inner ICMP got its reply, through VXLAN, from the kernel's VTEP.
  const got = JSON.parse(out.trim());
  assert.equal(got.vni, VNI);
  assert.equal(got.from, VTEP_UNDERLAY);
  assert.ok(got.fromPort >= 32768 && got.fromPort <= 60999, `kernel source port ${got.fromPort} in its flow-hash range`);
  assert.equal(got.innerSrcMac, vtepMac);
  assert.equal(got.innerDstMac, PEER_MAC);
  assert.equal(got.innerSrc, VTEP_OVERLAY);
  assert.equal(got.innerDst, PEER_OVERLAY);
  assert.equal(got.icmpChecksum, 'good');
  assert.equal(got.payloadSame, true, 'the echo reply carries the request data back');
  assert.ok(got.arpAnswered >= 1, 'the kernel asked for our MAC by ARP over VXLAN');
  // Kernel state, read with iproute2: the VTEP learned our inner MAC behind our underlay address.
  const fdb = await bridgeJson<Array<{ mac: string; dst?: string }>>(vtep, 'fdb', 'show', 'dev', 'vx0');
  assert.ok(
    fdb.some((e) => e.mac === PEER_MAC && e.dst === PEER_UNDERLAY),
    JSON.stringify(fdb),
  );

  // The exchange is four VXLAN frames (request, ARP request, ARP reply, echo reply) plus the underlay's own ARP;
  // wait until tcpdump has written them before stopping it.
  await waitFor(
    () => {
      try {
        return [...readCaptureSync(readFileSync(pcap))].filter((rec) => rec.data.length > 42).length >= 4;
      } catch {
        return false; // still being written
      }
    },
    10_000,
    'tcpdump to write the VXLAN exchange',
  );
  await stopCapture(tcpdump);

  // tulle decode on the capture: every frame of the exchange, with the expected fields.
  const r = spawnSync(process.execPath, [MAIN, 'decode', '--json', pcap], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const frames = r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  const vxlanFrames = frames.filter((f) => f.vxlan);
  const ourRequest = vxlanFrames.find((f) => f.ip.src === PEER_UNDERLAY && f.inner.icmp?.type === 8);
  const kernelArp = vxlanFrames.find((f) => f.ip.src === VTEP_UNDERLAY && f.inner.arp?.op === 1);
  const ourArpReply = vxlanFrames.find((f) => f.ip.src === PEER_UNDERLAY && f.inner.arp?.op === 2);
  const kernelReply = vxlanFrames.find((f) => f.ip.src === VTEP_UNDERLAY && f.inner.icmp?.type === 0);
  assert.ok(ourRequest && kernelArp && ourArpReply && kernelReply, r.stdout);
  assert.equal(ourRequest.inner.icmp.id, ECHO_ID);
  assert.equal(kernelArp.inner.arp.targetIp, PEER_OVERLAY);
  assert.equal(kernelArp.inner.eth.dst, 'ff:ff:ff:ff:ff:ff');
  assert.equal(kernelArp.udp.dstPort, PORT);

  assert.equal(kernelReply.length, 148, 'a 98-byte ping frame plus 50 bytes of VXLAN over IPv4');
  assert.deepEqual(kernelReply.eth, { src: veth0!.address, dst: veth1!.address, type: 0x0800 });
  assert.equal(kernelReply.ip.dst, PEER_UNDERLAY);
  assert.equal(kernelReply.ip.checksumStatus, 'good');
  assert.equal(kernelReply.udp.dstPort, PORT);
  assert.equal(kernelReply.udp.srcPort, got.fromPort);
  assert.equal(kernelReply.udp.checksum, 0);
  assert.equal(kernelReply.udp.checksumStatus, 'none');
  assert.deepEqual(kernelReply.vxlan, { flags: 0x08, vni: VNI });
  assert.deepEqual(kernelReply.inner.eth, { src: vtepMac, dst: PEER_MAC, type: 0x0800 });
  assert.equal(kernelReply.inner.ip.src, VTEP_OVERLAY);
  assert.equal(kernelReply.inner.ip.dst, PEER_OVERLAY);
  assert.equal(kernelReply.inner.ip.checksumStatus, 'good');
  assert.deepEqual(kernelReply.inner.icmp, { type: 0, code: 0, id: ECHO_ID, seq: ECHO_SEQ, checksum: kernelReply.inner.icmp.checksum, checksumStatus: 'good' });

  // encapsulate() builds exactly the kernel's frame from the same fields; our own request left the peer intact.
  const raw = [...readCaptureSync(readFileSync(pcap))].map((rec) => Buffer.from(rec.data));
  const kernelFrame = raw[kernelReply.frame - 1]!;
  const k = decapsulate(kernelFrame);
  const ip4 = k.outer.ip as { tos: number; id: number; dontFragment: boolean; ttl: number };
  const rebuilt = encapsulate(k.inner, {
    srcMac: k.outer.eth.src,
    dstMac: k.outer.eth.dst,
    srcIp: k.outer.ip.src,
    dstIp: k.outer.ip.dst,
    vni: VNI,
    dstPort: PORT,
    srcPort: k.outer.udp.srcPort,
    ttl: ip4.ttl,
    tos: ip4.tos,
    ipId: ip4.id,
    dontFragment: ip4.dontFragment,
    udpChecksum: k.outer.udp.checksum !== 0,
  });
  assert.deepEqual(rebuilt, kernelFrame);
  const sentInner = decapsulate(raw[ourRequest.frame - 1]!).inner;
  assert.equal(sentInner.length, 98);
  assert.equal(sentInner.subarray(0, 6).toString('hex'), vtepMac.replaceAll(':', ''));

  // tshark reads the kernel's capture the same way, frame by frame.
  const ts = await tsharkFields(pcap, [PORT]);
  assert.equal(ts.length, frames.length);
  const diffs = ts.flatMap((fields, i) => compareFields(i + 1, fields, jsonFields(frames[i])));
  assert.deepEqual(diffs, []);
});
