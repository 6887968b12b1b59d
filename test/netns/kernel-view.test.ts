/**
 * The compact kernel view (overlay/kernel-view.ts over netlink/scan.ts) read from a real kernel, against what
 * iproute2 shows of the same namespace: tulle's entries mixed with everything a host may also hold — IPv6
 * * neighbours and routes, neighbours in other states or on other devices, FDB entries with a VNI,
 * several remotes for one MAC, other protocols' routes, blackhole and multipath routes, another table, a route
 * on another device — and a dump large enough to span many datagrams.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bridgeJson, ip, ipJson, requireRoot, vtepHost } from '../helpers/netns.js';
import { run } from '../../src/base/exec.js';
import { formatIPv4, formatMacNumber, parseCidr4 } from '../../src/base/ip.js';
import { NetlinkError } from '../../src/netlink/index.js';
import { encodeDumpRoutes } from '../../src/netlink/route.js';
import { native } from '../../src/sys/native.js';
import { readKernelView, KernelView } from '../../src/overlay/kernel-view.js';
import { diffOverlay } from '../../src/overlay/diff.js';
import { fdbOf, neighborOf, planPeers, routeOf } from '../../src/overlay/plan.js';

requireRoot();

const PROTO = 84;

/** The view as sorted text, to compare with iproute2's. */
function viewText(v: KernelView): { neighbors: string[]; fdb: string[]; routes: string[]; foreign: string[] } {
  return {
    neighbors: [...v.neighbors].map(([ip, mac]) => `${formatIPv4(ip)} ${formatMacNumber(mac)}`).sort(),
    fdb: [...[...v.fdb].map(([mac, dst]) => ({ mac, dst })), ...v.extraFdb].map((f) => `${formatMacNumber(f.mac)} ${formatIPv4(f.dst)}`).sort(),
    routes: [...v.routes.values()]
      .map((r) => `${formatIPv4(r.dst)}/${r.prefix} via ${formatIPv4(r.via)} dev ${v.deviceName(r.oif)}${r.onlink ? ' onlink' : ''}`)
      .sort(),
    foreign: v.foreignRoutes.map((c) => `${formatIPv4(c.network)}/${c.prefix}`).sort(),
  };
}

test('the compact view holds exactly the entries iproute2 shows as tulle-owned, amid everything else a host holds', async (t) => {
  const { ns, nl } = await vtepHost(t, 'kview');
  await ip(ns, 'link', 'add', 'other0', 'type', 'veth', 'peer', 'name', 'other1');
  await ip(ns, 'link', 'set', 'other0', 'up');
  await ip(ns, 'addr', 'add', '172.31.0.1/24', 'dev', 'other0');
  // tulle-shaped entries: 300 peers, enough for several dump datagrams.
  const dir = mkdtempSync(join(tmpdir(), 'tulle-kview-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  let batch = '';
  let fdb = '';
  for (let i = 0; i < 300; i++) {
    const mac = `02:5c:00:00:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`;
    batch += `neigh replace 10.${1 + (i >> 8)}.${i & 255}.0 lladdr ${mac} dev flannel.1 nud permanent\n`;
    batch += `route replace 10.${1 + (i >> 8)}.${i & 255}.0/24 via 10.${1 + (i >> 8)}.${i & 255}.0 dev flannel.1 onlink proto ${PROTO}\n`;
    fdb += `fdb replace ${mac} dev flannel.1 dst 198.51.100.${(i % 250) + 1} self permanent\n`;
  }
  writeFileSync(join(dir, 'ip.batch'), batch);
  writeFileSync(join(dir, 'fdb.batch'), fdb);
  await run(['ip', '-n', ns, '-batch', join(dir, 'ip.batch')]);
  await run(['bridge', '-n', ns, '-batch', join(dir, 'fdb.batch')]);
  // Everything else.
  await ip(ns, 'neigh', 'add', '10.9.0.1', 'lladdr', '0e:00:00:00:00:01', 'dev', 'flannel.1', 'nud', 'reachable'); // not permanent
  await ip(ns, 'neigh', 'add', 'fd00::1', 'lladdr', '0e:00:00:00:00:02', 'dev', 'flannel.1', 'nud', 'permanent'); // IPv6
  await ip(ns, 'neigh', 'add', '172.31.0.9', 'lladdr', '0e:00:00:00:00:03', 'dev', 'other0', 'nud', 'permanent'); // another device
  await run(['bridge', '-n', ns, 'fdb', 'append', '00:00:00:00:00:00', 'dev', 'flannel.1', 'dst', '192.0.2.50', 'self', 'permanent']);
  await run(['bridge', '-n', ns, 'fdb', 'append', '00:00:00:00:00:00', 'dev', 'flannel.1', 'dst', '192.0.2.51', 'self', 'permanent']); // two remotes, one MAC
  await run(['bridge', '-n', ns, 'fdb', 'add', '0e:00:00:00:00:04', 'dev', 'flannel.1', 'dst', '192.0.2.52', 'vni', '77', 'self', 'permanent']);
  await ip(ns, 'route', 'add', '10.200.0.0/16', 'via', '172.31.0.2', 'dev', 'other0', 'proto', 'static'); // foreign
  await ip(ns, 'route', 'add', 'blackhole', '10.201.0.0/24'); // foreign, no device
  await ip(ns, 'route', 'add', '10.202.0.0/24', 'nexthop', 'via', '172.31.0.2', 'dev', 'other0', 'nexthop', 'via', '172.31.0.3', 'dev', 'other0'); // multipath
  await ip(ns, 'route', 'add', '10.203.0.0/24', 'via', '172.31.0.2', 'dev', 'other0', 'proto', String(PROTO)); // tulle's protocol, another device
  await ip(ns, 'route', 'add', '10.204.0.0/24', 'via', '172.31.0.2', 'dev', 'other0', 'table', '100', 'proto', String(PROTO)); // another table
  await ip(ns, '-6', 'route', 'add', 'fd00:1::/64', 'dev', 'flannel.1', 'proto', String(PROTO)); // IPv6
  // Every byte of an address counts (the dump's numbers are exact, not rounded): a host route via an odd gateway.
  await ip(ns, 'route', 'add', '10.205.3.7/32', 'via', '10.205.255.129', 'dev', 'flannel.1', 'onlink', 'proto', String(PROTO));

  const view = await readKernelView(nl, { vtep: 'flannel.1', routeProtocol: PROTO });
  const got = viewText(view);

  const neigh: Array<{ dst: string; lladdr?: string; state: string[] }> = await ipJson(ns, '-4', 'neigh', 'show', 'dev', 'flannel.1', 'nud', 'permanent');
  const bridge: Array<{ mac: string; dst?: string }> = await bridgeJson(ns, 'fdb', 'show', 'dev', 'flannel.1');
  const main: Array<{ dst: string; gateway?: string; dev?: string; protocol: string; flags: string[] }> = await ipJson(
    ns,
    '-4',
    'route',
    'show',
    'table',
    'main',
  );
  assert.deepEqual(
    got.neighbors,
    neigh
      .filter((n) => n.lladdr)
      .map((n) => `${n.dst} ${n.lladdr}`)
      .sort(),
  );
  assert.deepEqual(
    got.fdb,
    bridge
      .filter((f) => f.dst?.includes('.'))
      .map((f) => `${f.mac} ${f.dst}`)
      .sort(),
  );
  const ours = main.filter((r) => r.protocol === String(PROTO) && r.gateway && r.dev);
  const cidr = (dst: string): string => (dst.includes('/') ? dst : `${dst}/32`); // iproute2 prints a host route bare
  assert.deepEqual(got.routes, ours.map((r) => `${cidr(r.dst)} via ${r.gateway} dev ${r.dev}${r.flags.includes('onlink') ? ' onlink' : ''}`).sort());
  const foreign = main.filter((r) => r.protocol !== String(PROTO) && r.dst !== 'default').map((r) => cidr(r.dst));
  assert.deepEqual(got.foreign, foreign.sort());
  assert.equal(got.routes.length, 302, '300 peers, the route on other0 and the host route');
  assert.ok(got.routes.includes('10.205.3.7/32 via 10.205.255.129 dev flannel.1 onlink'), 'a host route via an odd gateway, to the last bit');
  assert.ok(got.routes.includes('10.203.0.0/24 via 172.31.0.2 dev other0'), 'a route on another device is named');
  assert.equal(got.neighbors.length, 300);
  assert.equal(got.fdb.length, 303, "300 peers, the all-zero MAC's two remotes (one of them an extra) and the entry with a VNI");
  assert.equal(view.extraFdb.length, 1);
});

test('a full diff of 300 peers against the kernel that holds them writes nothing; against a kernel missing one peer, only that peer', async (t) => {
  const { ns, nl } = await vtepHost(t, 'kdiff');
  const ctx = {
    vtep: 'flannel.1',
    underlay: 'eth0',
    underlayNetworks: [parseCidr4('192.0.2.0/24')],
    directRouting: false,
    ownSubnet: '10.250.0.0/24',
    routeProtocol: PROTO,
  };
  const leases = Array.from({ length: 300 }, (_, i) => ({
    subnet: `10.${1 + (i >> 8)}.${i & 255}.0/24`,
    publicIP: `198.51.100.${(i % 250) + 1}`,
    vtepMac: `02:5C:00:00:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`,
  }));
  const plans = planPeers(ctx, leases);
  const ops = [...plans.values()].flatMap((p) => [
    { op: 'replaceNeighbor' as const, args: { dev: 'flannel.1', ip: neighborOf(p)!.ip, mac: neighborOf(p)!.mac } },
    { op: 'replaceFdb' as const, args: { dev: 'flannel.1', mac: fdbOf(p)!.mac, dst: fdbOf(p)!.dst } },
    { op: 'addRoute' as const, args: routeOf(p) },
  ]);
  assert.ok((await nl.batch(ops)).every((r) => r.ok));
  let d = diffOverlay(plans, await readKernelView(nl, ctx));
  assert.deepEqual([d.removals.length, d.peers.size], [0, 0]);

  await ip(ns, 'neigh', 'del', '10.1.7.0', 'dev', 'flannel.1');
  await ip(ns, 'route', 'replace', '10.1.9.0/24', 'via', '10.1.9.0', 'dev', 'flannel.1', 'onlink', 'proto', String(PROTO), 'metric', '0', 'mtu', '1400');
  await run(['bridge', '-n', ns, 'fdb', 'replace', fdbOf(plans.get('10.1.8.0/24')!)!.mac, 'dev', 'flannel.1', 'dst', '203.0.113.99', 'self', 'permanent']);
  d = diffOverlay(plans, await readKernelView(nl, ctx));
  assert.deepEqual(
    [...d.peers].map(([subnet, ws]) => `${subnet}: ${ws.map((w) => `${w.op} ${w.kind}`).join(', ')}`),
    ['10.1.7.0/24: replace neighbor', '10.1.8.0/24: replace fdb'],
    'the peer whose neighbour went and the one whose FDB remote changed; a route with an extra mtu is still the same route',
  );
  assert.deepEqual(
    d.removals.map((w) => `${w.op} ${w.kind} ${w.kind === 'fdb' ? `${w.entry.mac} ${w.entry.dst}` : ''}`.trim()),
    [`delete fdb ${fdbOf(plans.get('10.1.8.0/24')!)!.mac} 203.0.113.99`],
  );
});

test("a dump reads the namespace its client's socket lives in, even once that namespace's name means another; a closed client's dump fails with EBADF", async (t) => {
  const { ns, nl } = await vtepHost(t, 'kvns');
  await ip(ns, 'route', 'add', '10.7.1.0/24', 'via', '10.7.1.0', 'dev', 'flannel.1', 'onlink', 'proto', String(PROTO));
  const before = viewText(await readKernelView(nl, { vtep: 'flannel.1', routeProtocol: PROTO })).routes;
  assert.deepEqual(before, ['10.7.1.0/24 via 10.7.1.0 dev flannel.1 onlink']);
  // The name goes (the namespace lives on: the client's socket holds it) and comes back for a new namespace, which
  // the test's clean-up deletes by that name.
  await run(['ip', 'netns', 'del', ns]);
  await run(['ip', 'netns', 'add', ns]);
  await ip(ns, 'link', 'add', 'flannel.1', 'type', 'bridge');
  await ip(ns, 'link', 'set', 'flannel.1', 'up');
  await ip(ns, 'route', 'add', '10.8.1.0/24', 'dev', 'flannel.1', 'proto', String(PROTO));
  assert.deepEqual(viewText(await readKernelView(nl, { vtep: 'flannel.1', routeProtocol: PROTO })).routes, before);
  nl.close();
  await assert.rejects(readKernelView(nl, { vtep: 'flannel.1', routeProtocol: PROTO }), (e: unknown) => e instanceof NetlinkError && e.errno === 'EBADF');
});

test('a VTEP that is not there fails the read in the words of iproute2, or holds nothing when it may be missing; a hostile name is refused before any dump', async (t) => {
  const { nl } = await vtepHost(t, 'kvmiss');
  await assert.rejects(
    readKernelView(nl, { vtep: 'nosuch0', routeProtocol: PROTO }),
    (e: unknown) => e instanceof NetlinkError && e.errno === 'ENODEV' && /^(neigh|fdb) show dev nosuch0: .*Cannot find device "nosuch0"/.test(e.message),
  );
  const empty = await readKernelView(nl, { vtep: 'nosuch0', routeProtocol: PROTO, vtepMayBeMissing: true });
  assert.deepEqual([empty.neighbors.size, empty.fdb.size, empty.deviceIndex('nosuch0')], [0, 0, -1]);
  for (const hostile of ['a'.repeat(16), 'eth0/../x', '']) {
    await assert.rejects(
      readKernelView(nl, { vtep: hostile, routeProtocol: PROTO }),
      (e: unknown) => e instanceof Error && e.name === 'InvalidValueError',
      hostile,
    );
  }
});

test('the binding refuses a dump asked for with hostile arguments, naming what it expected, before any work is queued', async (t) => {
  const { ns } = await vtepHost(t, 'kvargs');
  const handle = native().open(`/run/netns/${ns}`, 0, [], 0, 0, { extAck: false, capAck: false, strict: true });
  t.after(() => native().close(handle));
  const routes = encodeDumpRoutes({ table: 254 }, undefined).message;
  const cases: Array<[string, () => Promise<unknown>, RegExp]> = [
    ['another kind', () => native().dumpRecords(handle, routes, 7 as 0, 254), /a route or neighbour dump request expected/],
    ['a request shorter than a header', () => native().dumpRecords(handle, Buffer.alloc(8), 0, 254), /a route or neighbour dump request expected/],
    ['a device name too long', () => native().dumpRecords(handle, routes, 1, 0, 'x'.repeat(16), 20), /a device name and the offset/],
    ['an index offset past the request', () => native().dumpRecords(handle, routes, 1, 0, 'flannel.1', routes.length - 2), /a device name and the offset/],
    ['a protocol out of range', () => native().dumpRecords(handle, routes, 0, 254, undefined, undefined, 300), /a route protocol \(0\.\.255\)/],
    ['a protocol split of a neighbour dump', () => native().dumpRecords(handle, routes, 1, 0, undefined, undefined, 84), /a route protocol \(0\.\.255\)/],
  ];
  for (const [name, call, message] of cases) assert.throws(() => void call(), message, name);
  // And a well-formed one still works on the same socket.
  const { records } = await native().dumpRecords(handle, routes, 0, 254, undefined, undefined, PROTO);
  assert.ok(records instanceof Float64Array);
});
