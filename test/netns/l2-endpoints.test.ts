/**
 * Flood "none" on the real kernel, in fresh namespaces: the L2 device made with proxy + nolearning, the endpoint
 * reconciler writing only differences (writes counted) and only tulle's kind of entries on its own device, and
 * the dataplane: two namespace "hosts" on a veth underlay, pods on a bridge each, entries programmed from store
 * records; the pods ping each other and a capture of the underlay, decoded with `tulle decode`, holds no
 * broadcast or multicast frame at all: no ARP crossed. Last, the agent's side (EndpointSync) following the store.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { waitFor } from '../../src/base/retry.js';
import { execIn } from '../../src/netns/netns.js';
import { NetlinkClient, type NetlinkOp } from '../../src/netlink/index.js';
import { EndpointDeviceError, EndpointReconciler, ensureEndpointDevice, L2_NONE_VXLAN_ATTRS, type EndpointKernel } from '../../src/overlay/l2-endpoints.js';
import { openRegistry } from '../../src/store/open.js';
import { admitEndpoints, listEndpoints, publishEndpoint, withdrawEndpoint } from '../../src/subnet/endpoints.js';
import { EndpointSync } from '../../src/agent/l2-endpoints.js';
import { startCapture, stopCapture } from '../helpers/capture.js';
import { bridgeJson, freshNetns, ip, ipJson, requireRoot } from '../helpers/netns.js';

requireRoot();

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const DEV = 'vxlan120';
const VNI = 120;
const PORT = 4789;

/** A NetlinkClient whose batch writes are counted: what "writes only the difference" is measured by. */
function counting(nl: NetlinkClient): { kernel: EndpointKernel; writes: NetlinkOp[] } {
  const writes: NetlinkOp[] = [];
  const kernel: EndpointKernel = {
    getLink: (n) => nl.getLink(n),
    setVxlanLearning: (n, l) => nl.setVxlanLearning(n, l),
    listFdb: (f) => nl.listFdb(f),
    listNeighbors: (f) => nl.listNeighbors(f),
    batch: (ops) => {
      writes.push(...ops);
      return nl.batch(ops);
    },
  };
  return { kernel, writes };
}

/** tulle's L2 layout in a host namespace whose `eth0` holds `address`: bridge tl120, vxlan120 (L2_NONE_VXLAN_ATTRS) its port. */
async function l2Device(nl: NetlinkClient, address: string): Promise<void> {
  await nl.createBridge({ name: 'tl120', up: true });
  await nl.createVxlan({ name: DEV, vni: VNI, local: address, dev: 'eth0', port: PORT, ...L2_NONE_VXLAN_ATTRS, up: true });
  await nl.setLink(DEV, { master: 'tl120' });
}

async function openIn(t: Parameters<typeof freshNetns>[0], ns: string): Promise<NetlinkClient> {
  const nl = await NetlinkClient.open({ netns: ns });
  t.after(() => nl.close());
  return nl;
}

/** A host namespace alone: underlay `eth0` (a veth whose peer stays inside) and the L2 device. */
async function l2Host(t: Parameters<typeof freshNetns>[0], label: string, address: string): Promise<{ ns: string; nl: NetlinkClient }> {
  const ns = await freshNetns(t, label);
  const nl = await openIn(t, ns);
  await ip(ns, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0p');
  await ip(ns, 'addr', 'add', `${address}/24`, 'dev', 'eth0');
  await ip(ns, 'link', 'set', 'eth0', 'up');
  await ip(ns, 'link', 'set', 'eth0p', 'up');
  await l2Device(nl, address);
  return { ns, nl };
}

const fdbOf = async (ns: string, dev = DEV) =>
  (await bridgeJson(ns, 'fdb', 'show', 'dev', dev))
    .map((e: any) => `${e.mac} ${e.dst ?? '-'} ${(e.flags ?? []).join(',')} ${e.state ?? ''} ${e.master ?? ''}`.trim())
    .sort();
const neighOf = async (ns: string) =>
  (await ipJson(ns, 'neigh', 'show', 'dev', DEV)).map((n: any) => `${n.dst} ${n.lladdr ?? '-'} ${n.state.join(',')}`).sort();

test('the device: created with proxy and nolearning as iproute2 reads it; a device without proxy is refused by name, learning is switched off', async (t) => {
  const { ns, nl } = await l2Host(t, 'l2dev', '192.0.2.11');
  const [link] = await ipJson(ns, 'link', 'show', DEV);
  assert.equal(link.linkinfo.info_data.proxy, true);
  assert.equal(link.linkinfo.info_data.learning, false);
  assert.equal(link.master, 'tl120');
  assert.equal((await nl.getLink(DEV))?.vxlan?.proxy, true);
  assert.deepEqual(await ensureEndpointDevice(nl, DEV), []);

  await ip(ns, 'link', 'add', 'vxlan121', 'type', 'vxlan', 'id', '121', 'dstport', '4789', 'proxy', 'learning');
  assert.deepEqual(await ensureEndpointDevice(nl, 'vxlan121'), ['ip link set dev vxlan121 type vxlan nolearning']);
  assert.equal((await ipJson(ns, 'link', 'show', 'vxlan121'))[0].linkinfo.info_data.learning, false);

  await ip(ns, 'link', 'add', 'vxlan122', 'type', 'vxlan', 'id', '122', 'dstport', '4789', 'nolearning');
  await assert.rejects(ensureEndpointDevice(nl, 'vxlan122'), (e: unknown) => e instanceof EndpointDeviceError && /^vxlan122: has proxy off/.test(e.message));
  assert.equal((await ipJson(ns, 'link', 'show', 'vxlan122'))[0].linkinfo.info_data.proxy, undefined, 'the refused device is left as it was');
  await assert.rejects(ensureEndpointDevice(nl, 'tl120'), /tl120: is a bridge device, not a vxlan device/);
});

test('the reconciler: 2 writes per new endpoint, 0 for an unchanged set, 2 deletes per removed one, foreign entries untouched', async (t) => {
  const { ns, nl } = await l2Host(t, 'l2rec', '192.0.2.11');
  // What is not the reconciler's: a flood entry, a learned-looking (dynamic) entry, a neighbour that is not
  // permanent, and another vxlan device's endpoint-like entries.
  await ip(ns, 'link', 'add', 'vxlan7', 'type', 'vxlan', 'id', '7', 'dstport', '4789', 'nolearning');
  await run(['bridge', '-n', ns, 'fdb', 'append', '00:00:00:00:00:00', 'dev', DEV, 'dst', '198.51.100.99', 'self', 'permanent']);
  await run(['bridge', '-n', ns, 'fdb', 'add', '0a:00:00:00:00:c1', 'dev', DEV, 'dst', '198.51.100.98', 'self', 'dynamic']);
  await run(['bridge', '-n', ns, 'fdb', 'add', '0a:00:00:00:00:c2', 'dev', 'vxlan7', 'dst', '198.51.100.97', 'self', 'permanent']);
  await ip(ns, 'neigh', 'replace', '10.17.0.99', 'lladdr', '0a:00:00:00:00:c3', 'dev', DEV, 'nud', 'stale');
  await ip(ns, 'neigh', 'replace', '10.17.0.98', 'lladdr', '0a:00:00:00:00:c4', 'dev', 'vxlan7', 'nud', 'permanent');
  const foreignFdb = (await fdbOf(ns)).filter((e: string) => !e.startsWith('0a:00:00:00:00:0'));
  const foreign7 = [await fdbOf(ns, 'vxlan7'), await ipJson(ns, 'neigh', 'show', 'dev', 'vxlan7')];

  const { kernel, writes } = counting(nl);
  const rec = new EndpointReconciler(kernel, DEV);
  const own = { ip: '10.17.0.18', mac: '0a:00:00:00:00:01', publicIP: '192.0.2.11' };
  const a = { ip: '10.17.0.34', mac: '0a:00:00:00:00:02', publicIP: '192.0.2.12' };
  const b = { ip: '10.17.0.50', mac: '0a:00:00:00:00:03', publicIP: '192.0.2.13' };
  const c = { ip: '10.17.0.51', mac: '0a:00:00:00:00:04', publicIP: '192.0.2.13' };

  assert.equal((await rec.reconcile([own, a, b], '192.0.2.11')).writes.length, 4);
  assert.equal(writes.length, 4);
  const ours = async () => (await fdbOf(ns)).filter((e: string) => e.startsWith('0a:00:00:00:00:0'));
  assert.deepEqual(await ours(), ['0a:00:00:00:00:02 192.0.2.12 self permanent', '0a:00:00:00:00:03 192.0.2.13 self permanent']);
  assert.deepEqual(
    (await neighOf(ns)).filter((n: string) => n.endsWith('PERMANENT')),
    ['10.17.0.34 0a:00:00:00:00:02 PERMANENT', '10.17.0.50 0a:00:00:00:00:03 PERMANENT'],
  );

  writes.length = 0;
  assert.equal((await rec.reconcile([own, a, b], '192.0.2.11')).writes.length, 0);
  assert.equal(writes.length, 0, 'an unchanged set writes nothing');

  await rec.reconcile([own, a, b, c], '192.0.2.11');
  assert.deepEqual(
    writes.map((w) => w.op),
    ['replaceFdb', 'replaceNeighbor'],
    'one endpoint added: exactly its 2 writes',
  );
  assert.ok((await ours()).includes('0a:00:00:00:00:04 192.0.2.13 self permanent'));

  writes.length = 0;
  await rec.reconcile([own, b, c], '192.0.2.11');
  assert.deepEqual(
    writes.map((w) => w.op),
    ['deleteNeighbor', 'deleteFdb'],
    'one endpoint removed: its 2 deletes',
  );
  assert.deepEqual(await ours(), ['0a:00:00:00:00:03 192.0.2.13 self permanent', '0a:00:00:00:00:04 192.0.2.13 self permanent']);
  assert.deepEqual(
    (await neighOf(ns)).filter((n: string) => n.endsWith('PERMANENT')),
    ['10.17.0.50 0a:00:00:00:00:03 PERMANENT', '10.17.0.51 0a:00:00:00:00:04 PERMANENT'],
  );

  writes.length = 0;
  await rec.reconcile([{ ...b, publicIP: '192.0.2.14' }, c], '192.0.2.11');
  assert.deepEqual(
    writes.map((w) => w.op),
    ['replaceFdb'],
    'a pod whose host changed: its FDB entry only',
  );
  assert.ok((await ours()).includes('0a:00:00:00:00:03 192.0.2.14 self permanent'));

  await rec.reconcile([], '192.0.2.11');
  assert.deepEqual(await ours(), []);
  assert.deepEqual(
    (await fdbOf(ns)).filter((e: string) => !e.startsWith('0a:00:00:00:00:0')),
    foreignFdb,
    'flood, dynamic and bridge entries untouched',
  );
  assert.ok((await neighOf(ns)).includes('10.17.0.99 0a:00:00:00:00:c3 STALE'));
  assert.deepEqual([await fdbOf(ns, 'vxlan7'), await ipJson(ns, 'neigh', 'show', 'dev', 'vxlan7')], foreign7, "another device's entries untouched");
});

async function run(argv: string[]): Promise<void> {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${argv.join(' ')}: ${r.stderr}`);
}

/** A pod namespace on `host`'s bridge: eth0 with `cidr` and `mac`, IPv6 left on (its multicast must not cross either). */
async function pod(
  t: Parameters<typeof freshNetns>[0],
  host: { ns: string; nl: NetlinkClient },
  label: string,
  cidr: string,
  mac: string,
): Promise<{ ns: string }> {
  const ns = await freshNetns(t, label);
  const hostEnd = `v${label}`.slice(0, 15);
  await host.nl.createVeth({ name: hostEnd, peerName: 'eth0', peerNetns: ns, peerMac: mac, mtu: 1450 });
  await host.nl.setLink(hostEnd, { master: 'tl120', up: true });
  await ip(ns, 'addr', 'add', cidr, 'dev', 'eth0');
  await ip(ns, 'link', 'set', 'eth0', 'up');
  return { ns };
}

test(
  'dataplane: pods on two hosts ping each other from store records alone; the underlay carries no broadcast or multicast frame',
  { timeout: 120_000 },
  async (t) => {
    const A = { ns: await freshNetns(t, 'l2a'), addr: '192.0.2.11' };
    const B = { ns: await freshNetns(t, 'l2b'), addr: '192.0.2.12' };
    // The hosts' own IPv6 (router solicitations, MLD) would put multicast on the underlay; it is not what is measured.
    for (const h of [A, B]) await execIn(h.ns, ['sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
    const nlA = await openIn(t, A.ns);
    const nlB = await openIn(t, B.ns);
    await nlA.createVeth({ name: 'eth0', peerName: 'eth0', peerNetns: B.ns });
    const macs: Record<string, string> = {};
    for (const [h, nl] of [
      [A, nlA],
      [B, nlB],
    ] as const) {
      await ip(h.ns, 'addr', 'add', `${h.addr}/24`, 'dev', 'eth0');
      await ip(h.ns, 'link', 'set', 'eth0', 'up');
      macs[h.addr] = (await nl.getLink('eth0'))!.mac!;
      await l2Device(nl, h.addr);
    }
    // The underlay's own ARP is a broadcast too: the hosts know each other's MAC beforehand.
    await ip(A.ns, 'neigh', 'replace', B.addr, 'lladdr', macs[B.addr]!, 'dev', 'eth0', 'nud', 'permanent');
    await ip(B.ns, 'neigh', 'replace', A.addr, 'lladdr', macs[A.addr]!, 'dev', 'eth0', 'nud', 'permanent');

    const podA = await pod(t, { ns: A.ns, nl: nlA }, 'pa', '10.17.0.18/24', '0a:58:0a:11:00:12');
    const podB = await pod(t, { ns: B.ns, nl: nlB }, 'pb', '10.17.0.34/24', '0a:58:0a:11:00:22');

    // Before any entry: pod A's ARP request is swallowed by the proxy device (no neighbour for it) and nothing floods.
    await assert.rejects(execIn(podA.ns, ['ping', '-c', '1', '-W', '1', '10.17.0.34']));

    // What the CNI publishes and the agent reads: records in the store, believed against the hosts' leases.
    const store = await openRegistry(`memory:l2none-${randomBytes(4).toString('hex')}`);
    t.after(() => store.close());
    await publishEndpoint(store, '/tulle.io/l2', { ip: '10.17.0.18', mac: '0a:58:0a:11:00:12', publicIP: A.addr });
    await publishEndpoint(store, '/tulle.io/l2', { ip: '10.17.0.34', mac: '0a:58:0a:11:00:22', publicIP: B.addr });
    await publishEndpoint(store, '/tulle.io/l2', { ip: '10.17.0.35', mac: '0a:58:0a:11:00:12', publicIP: B.addr }); // a newer record stealing pod A's MAC
    const leases = [
      { subnet: '10.17.0.16/28', publicIP: A.addr },
      { subnet: '10.17.0.32/28', publicIP: B.addr },
    ];
    const { records } = await listEndpoints(store, '/tulle.io/l2');
    for (const [h, nl] of [
      [A, nlA],
      [B, nlB],
    ] as const) {
      const { accepted, rejected } = admitEndpoints(records, leases, h.addr);
      assert.deepEqual(
        rejected.map((r) => r.reason),
        ['duplicate-mac'],
      );
      assert.equal((await new EndpointReconciler(nl, DEV).reconcile(accepted, h.addr)).writes.length, 2);
    }
    assert.deepEqual(await fdbOf(A.ns).then((f: string[]) => f.filter((e) => e.includes('self'))), ['0a:58:0a:11:00:22 192.0.2.12 self permanent']);
    assert.deepEqual(await neighOf(A.ns), ['10.17.0.34 0a:58:0a:11:00:22 PERMANENT']);
    assert.ok(!(await fdbOf(A.ns)).some((e: string) => e.startsWith('00:00:00:00:00:00')), 'no all-zero flood entry');
    assert.deepEqual(await fdbOf(B.ns).then((f: string[]) => f.filter((e) => e.includes('self'))), ['0a:58:0a:11:00:12 192.0.2.11 self permanent']);

    const dir = mkdtempSync(join(tmpdir(), 'tulle-l2none-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const pcap = join(dir, 'underlay.pcap');
    const tcpdump = await startCapture(A.ns, 'eth0', pcap);
    t.after(() => stopCapture(tcpdump));
    // Neither pod has ever seen the other: each ping starts with an ARP request, which must be answered on its own host.
    await execIn(podA.ns, ['ping', '-c', '3', '-i', '0.2', '-W', '5', '10.17.0.34']);
    await execIn(podB.ns, ['ping', '-c', '3', '-i', '0.2', '-W', '5', '10.17.0.18']);
    await execIn(podA.ns, ['ping', '-c', '2', '-s', '1422', '-M', 'do', '-W', '5', '10.17.0.34']); // a full-size frame: 1450 MTU inside
    assert.equal((await ipJson(podA.ns, 'neigh', 'show', '10.17.0.34'))[0].lladdr, '0a:58:0a:11:00:22', "pod A learned pod B's MAC by ARP");
    const echoes = () => {
      const r = spawnSync(process.execPath, [MAIN, 'decode', '--json', pcap], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      return r.stdout
        .trim()
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l));
    };
    await waitFor(() => statSync(pcap).size > 0 && echoes().filter((f) => f.inner?.icmp).length >= 16, 10_000, 'tcpdump to write the 16 echo frames');
    await stopCapture(tcpdump);
    const frames = echoes();
    const isGroup = (mac: string | undefined) => mac !== undefined && (parseInt(mac.slice(0, 2), 16) & 1) === 1;
    const flooded = frames.filter((f) => isGroup(f.eth?.dst) || isGroup(f.inner?.eth?.dst) || f.inner?.arp || f.arp);
    assert.deepEqual(flooded, [], 'no broadcast, multicast or ARP frame on the underlay');
    const inner = frames.filter((f) => f.vxlan);
    assert.equal(inner.length, frames.length, 'everything on the underlay is VXLAN');
    assert.ok(inner.every((f) => f.vxlan.vni === VNI && f.udp.dstPort === PORT));
    assert.deepEqual([...new Set(inner.map((f) => `${f.inner.ip.src}>${f.inner.ip.dst} ${f.inner.icmp.type}`))].sort(), [
      '10.17.0.18>10.17.0.34 0',
      '10.17.0.18>10.17.0.34 8',
      '10.17.0.34>10.17.0.18 0',
      '10.17.0.34>10.17.0.18 8',
    ]);
    assert.ok(
      inner.some((f) => f.length === 1450 + 14 + 50),
      'the full-size frame (1450-byte packet) crossed in one piece: 1514 bytes on the wire',
    );
  },
);

test('the agent side: stale own records pruned at start, then records and lease changes followed on the device', async (t) => {
  const { ns, nl } = await l2Host(t, 'l2sync', '192.0.2.11');
  const store = await openRegistry(`memory:l2sync-${randomBytes(4).toString('hex')}`, { pollIntervalMs: 10 });
  t.after(() => store.close());
  const prefix = '/tulle.io/l2';
  const ipamDir = mkdtempSync(join(tmpdir(), 'tulle-l2none-ipam-'));
  t.after(() => rmSync(ipamDir, { recursive: true, force: true }));
  writeFileSync(join(ipamDir, '10.17.0.18'), 'c1\r\neth0');
  await publishEndpoint(store, prefix, { ip: '10.17.0.18', mac: '0a:00:00:00:00:01', publicIP: '192.0.2.11' });
  await publishEndpoint(store, prefix, { ip: '10.17.0.19', mac: '0a:00:00:00:00:09', publicIP: '192.0.2.11' }); // its pod is gone
  await publishEndpoint(store, prefix, { ip: '10.17.0.34', mac: '0a:00:00:00:00:02', publicIP: '192.0.2.12' });
  let leases = [
    { subnet: '10.17.0.16/28', publicIP: '192.0.2.11' },
    { subnet: '10.17.0.32/28', publicIP: '192.0.2.12' },
    { subnet: '10.17.0.48/28', publicIP: '192.0.2.13' },
  ];
  const sync = await EndpointSync.start({ registry: store, prefix, nl, device: DEV, ownPublicIP: '192.0.2.11', leases: () => leases, ipamDir });
  t.after(() => sync.close());
  assert.equal(await store.get(`${prefix}/endpoints/10.17.0.19`), undefined, 'the stale record of this host was removed');
  assert.ok(await store.get(`${prefix}/endpoints/10.17.0.18`), 'a held address keeps its record');
  const ours = async () => (await fdbOf(ns)).filter((e: string) => e.includes(' self '));
  assert.deepEqual(await ours(), ['0a:00:00:00:00:02 192.0.2.12 self permanent'], 'programmed by the first run');

  await publishEndpoint(store, prefix, { ip: '10.17.0.50', mac: '0a:00:00:00:00:03', publicIP: '192.0.2.13' });
  await store.put(`${prefix}/endpoints/10.17.0.51`, '{"IP":"10.17.0.51","MAC":"ff:ff:ff:ff:ff:ff","PublicIP":"192.0.2.13"}');
  await publishEndpoint(store, prefix, { ip: '10.17.0.52', mac: '0a:00:00:00:00:04', publicIP: '192.0.2.12' }); // not in 192.0.2.12's slice
  await waitFor(async () => (await ours()).length === 2, 10_000, 'the new remote pod on the device');
  await waitFor(() => sync.rejected.length === 2, 10_000, 'the hostile records reported');
  assert.deepEqual(sync.rejected.map((r) => r.reason).sort(), ['malformed', 'no-lease']);
  assert.deepEqual(await neighOf(ns), ['10.17.0.34 0a:00:00:00:00:02 PERMANENT', '10.17.0.50 0a:00:00:00:00:03 PERMANENT']);

  await withdrawEndpoint(store, prefix, '10.17.0.34', '0a:00:00:00:00:02');
  await waitFor(async () => (await neighOf(ns)).join() === '10.17.0.50 0a:00:00:00:00:03 PERMANENT', 10_000, 'the withdrawn pod gone');
  leases = leases.filter((l) => l.publicIP !== '192.0.2.13');
  sync.changed();
  await waitFor(async () => (await ours()).length === 0 && (await neighOf(ns)).length === 0, 10_000, 'the entries of a host whose lease left');
});
