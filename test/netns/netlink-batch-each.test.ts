/**
 * batchEach and the pool-thread sends under it, and announcements as records, in fresh namespaces: thousands of
 * ops in many chunks land in order (a later chunk's replace wins over an earlier chunk's add), a bad op or a
 * missing device fails alone, a socket closed with chunks still queued fails them instead of hanging, and a
 * subscription with `records` hands over exactly what iproute2 wrote, as numbers. writeEntries (packed writes,
 * answered only when they fail) lands the same entries and reports each failure at its own write.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bridgeJson, ip, ipJson, requireRoot, vtepHost } from '../helpers/netns.js';
import { run } from '../../src/base/exec.js';
import { ipv4Number, macNumber } from '../../src/base/ip.js';
import { NetlinkClient, NetlinkError, type EntryEncoder, type NeighborRecord, type NetlinkOp, type RouteRecord } from '../../src/netlink/index.js';
import { NetlinkSocket } from '../../src/netlink/socket.js';
import { encodeDumpNeighbors, encodeReplaceNeighbor } from '../../src/netlink/neigh.js';
import { encodeDumpRoutes, encodeReplaceRoute } from '../../src/netlink/route.js';
import { scanRouteRecords } from '../../src/netlink/scan.js';
import { NLM_F_ACK } from '../../src/netlink/constants.js';
import { waitFor } from '../../src/base/retry.js';
import { InvalidValueError } from '../../src/base/errors.js';

requireRoot();

const mac = (i: number) => `02:5c:00:00:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`;
const subnet = (i: number) => `10.${1 + (i >> 8)}.${i & 255}`;

test('batchEach: 2400 peers (7200 ops, several chunks sent from the pool) land in order; bad ops fail alone', async (t) => {
  const { ns, nl } = await vtepHost(t, 'beach');
  const n = 2400;
  const ops: NetlinkOp[] = [];
  for (let i = 0; i < n; i++) {
    ops.push({ op: 'replaceNeighbor', args: { dev: 'flannel.1', ip: `${subnet(i)}.0`, mac: mac(i) } });
    ops.push({ op: 'replaceFdb', args: { dev: 'flannel.1', mac: mac(i), dst: `198.51.100.${(i % 250) + 1}` } });
    ops.push({ op: 'addRoute', args: { dst: `${subnet(i)}.0/24`, via: `${subnet(i)}.0`, dev: 'flannel.1', onlink: true } });
  }
  // In the last chunk: peer 0's route again, now replaced with another gateway (must come after its add).
  ops.push({ op: 'replaceRoute', args: { dst: `${subnet(0)}.0/24`, via: `${subnet(0)}.9`, dev: 'flannel.1', onlink: true } });
  ops.splice(1500, 0, { op: 'replaceNeighbor', args: { dev: 'flannel.1', ip: 'not-an-ip', mac: mac(1) } });
  ops.splice(3000, 0, { op: 'replaceRoute', args: { dst: '10.250.0.0/24', via: '10.250.0.0', dev: 'flannel.9', onlink: true } });
  const results = await nl.batchEach(ops);
  assert.equal(results.length, ops.length);
  const failures = results.map((r, i) => (r.ok ? undefined : [i, r.error])).filter((x): x is [number, NetlinkError] => x !== undefined);
  assert.deepEqual(
    failures.map(([i, e]) => [i, e.errno]),
    [
      [1500, 'EINVAL'],
      [3000, 'ENODEV'],
    ],
  );
  assert.match(failures[0]![1].message, /neighbor ip.*not-an-ip/);
  const routes: Array<{ dst: string; gateway: string }> = await ipJson(ns, 'route', 'show', 'dev', 'flannel.1');
  assert.equal(routes.length, n);
  assert.equal(routes.find((r) => r.dst === `${subnet(0)}.0/24`)?.gateway, `${subnet(0)}.9`, 'the later replace won');
  assert.equal((await ipJson<unknown[]>(ns, 'neigh', 'show', 'dev', 'flannel.1', 'nud', 'permanent')).length, n);
  assert.equal((await bridgeJson<unknown[]>(ns, 'fdb', 'show', 'dev', 'flannel.1')).filter((f: any) => f.dst).length, n);
});

test('a socket closed while chunks wait on the pool: every request fails with EBADF at once, nothing hangs', async (t) => {
  const { ns } = await vtepHost(t, 'bclose');
  const index = Number((await ipJson<Array<{ ifindex: number }>>(ns, 'link', 'show', 'flannel.1'))[0]!.ifindex);
  const socket = NetlinkSocket.open({ nsPath: `/run/netns/${ns}` });
  const requests = Array.from({ length: 5000 }, (_, i) => encodeReplaceNeighbor({ dev: 'flannel.1', ip: `${subnet(i)}.0`, mac: mac(i) }, index));
  const pending = socket.sendAll(requests, NLM_F_ACK); // five chunks, queued for the pool thread at once
  socket.close();
  const results = await pending;
  assert.equal(results.length, requests.length);
  assert.ok(results.every((r) => r instanceof NetlinkError && r.errno === 'EBADF'));
  // The namespace's netlink is fine afterwards: a new client writes and reads.
  const nl = await NetlinkClient.open({ netns: ns });
  t.after(() => nl.close());
  assert.ok((await nl.batchEach([{ op: 'replaceNeighbor', args: { dev: 'flannel.1', ip: '10.99.0.1', mac: mac(1) } }]))[0]!.ok);
  // A client closed while batchEach still looks its devices up: the call fails with EBADF, not "no such device".
  const closing = await NetlinkClient.open({ netns: ns });
  const call = closing.batchEach([{ op: 'replaceNeighbor', args: { dev: 'flannel.1', ip: '10.99.0.2', mac: mac(2) } }]);
  closing.close();
  await assert.rejects(call, (e: unknown) => e instanceof NetlinkError && e.errno === 'EBADF');
});

test('subscribe with records: routes, neighbours and FDB entries arrive as the numbers iproute2 wrote, deletions too', async (t) => {
  const { ns, nl } = await vtepHost(t, 'brec');
  const routes: Array<[boolean, RouteRecord]> = [];
  const neighbors: Array<[boolean, NeighborRecord]> = [];
  const links: string[] = [];
  const sub = await nl.subscribe(['link', 'route', 'neighbor'], (e) => e.kind === 'link' && links.push(e.link.name), {
    records: { route: (d, r) => routes.push([d, { ...r }]), neighbor: (d, n) => neighbors.push([d, { ...n }]) },
  });
  t.after(() => sub.close());
  const index = Number((await ipJson<Array<{ ifindex: number }>>(ns, 'link', 'show', 'flannel.1'))[0]!.ifindex);
  await ip(ns, 'neigh', 'add', '10.244.2.0', 'lladdr', '0e:f0:b5:8c:28:f5', 'dev', 'flannel.1', 'nud', 'permanent');
  await run(['bridge', '-n', ns, 'fdb', 'add', '0e:f0:b5:8c:28:f5', 'dev', 'flannel.1', 'dst', '198.51.100.12', 'self', 'permanent']);
  await ip(ns, 'route', 'add', '10.244.2.0/24', 'via', '10.244.2.0', 'dev', 'flannel.1', 'onlink', 'proto', '84');
  await ip(ns, 'route', 'del', '10.244.2.0/24', 'via', '10.244.2.0', 'dev', 'flannel.1');
  await ip(ns, 'link', 'set', 'flannel.1', 'mtu', '1400');
  await waitFor(async () => routes.some(([d]) => d) && links.includes('flannel.1'), 10_000, 'the announcements');
  const added = routes.find(([d, r]) => !d && r.dstLen === 24 && r.dst === ipv4Number('10.244.2.0'))?.[1];
  assert.deepEqual(added && { ...added, table: added.table }, {
    family: 4,
    dst: ipv4Number('10.244.2.0'),
    dstLen: 24,
    table: 254,
    protocol: 84,
    type: 1,
    onlink: true,
    via: ipv4Number('10.244.2.0'),
    oif: index,
  });
  assert.ok(
    routes.some(([d, r]) => d && r.dst === ipv4Number('10.244.2.0') && r.protocol === 84),
    'the deletion',
  );
  const neighbor = neighbors.find(([d, n]) => !d && n.family === 2)?.[1];
  assert.deepEqual(
    neighbor && { family: neighbor.family, ifindex: neighbor.ifindex, permanent: (neighbor.state & 0x80) !== 0, ip: neighbor.ip, mac: neighbor.mac },
    {
      family: 2,
      ifindex: index,
      permanent: true,
      ip: ipv4Number('10.244.2.0'),
      mac: macNumber('0e:f0:b5:8c:28:f5'),
    },
  );
  const fdb = neighbors.find(([d, n]) => !d && n.family === 7 && n.ip === ipv4Number('198.51.100.12'))?.[1];
  assert.equal(fdb?.mac, macNumber('0e:f0:b5:8c:28:f5'));
  assert.equal(fdb?.ifindex, index);
});

test('a dump asked for while chunks are still queued for the pool thread comes after them and never fails the socket (a dump of messages, a dump read into records)', async (t) => {
  const { ns } = await vtepHost(t, 'bdump');
  const index = Number((await ipJson<Array<{ ifindex: number }>>(ns, 'link', 'show', 'flannel.1'))[0]!.ifindex);
  const socket = NetlinkSocket.open({ nsPath: `/run/netns/${ns}` });
  t.after(() => socket.close());
  // 20 rounds: 2000 route writes queued for the pool, then at once a dump of the main table. Sent from the pool
  // thread, the dump's first part would race this thread's recv() in the kernel (EINVAL on the socket); sent before
  // the queue drained, it would miss routes.
  for (let round = 0; round < 40; round++) {
    const writes = Array.from({ length: 2000 }, (_, i) =>
      encodeReplaceRoute({ dst: `10.${100 + round}.${i >> 8}.${i & 255}/32`, dev: 'flannel.1', protocol: 84 }, index),
    );
    const written = socket.sendAll(writes, NLM_F_ACK);
    // A small dump (done in its first part: the racy kind), then the main table.
    const small = socket.dump(encodeDumpNeighbors(index, 'flannel.1'));
    const dumped = socket.dumpRecords(encodeDumpRoutes({ table: 254 }, undefined), 'route', 254);
    const [answers, { records }] = await Promise.all([written, dumped, small]);
    assert.ok(
      answers.every((a) => !(a instanceof NetlinkError)),
      `round ${round}: every write acknowledged`,
    );
    let ours = 0;
    scanRouteRecords(records, { route: (r) => void (r.protocol === 84 && ours++) });
    assert.equal(ours, 2000 * (round + 1), `round ${round}: the dump saw every route written before it`);
  }
});

test('writeEntries: 2400 peers as numbers (7200 packed writes, answered only on failure) land; failures come back one by one', async (t) => {
  const { ns, nl } = await vtepHost(t, 'bpack');
  const vtep = Number((await ipJson<Array<{ ifindex: number }>>(ns, 'link', 'show', 'flannel.1'))[0]!.ifindex);
  const n = 2400;
  type W = (to: EntryEncoder) => void;
  const writes: Array<[string, W]> = [];
  for (let i = 0; i < n; i++) {
    const gw = ipv4Number(`${subnet(i)}.0`);
    const m = macNumber(mac(i));
    const dst = ipv4Number(`198.51.100.${(i % 250) + 1}`);
    writes.push([`neigh ${i}`, (to) => to.neighbor('replace', vtep, gw, m)]);
    writes.push([`fdb ${i}`, (to) => to.fdb('replace', vtep, m, dst)]);
    writes.push([`route ${i}`, (to) => to.route('add', gw, 24, gw, vtep, true, 84)]);
  }
  const gw5 = ipv4Number(`${subnet(5)}.0`);
  // Failures in the middle of a chunk, at the end of one (its last message, the one always answered) and last of all.
  writes.splice(1000, 0, ['route 5 again', (to) => to.route('add', gw5, 24, gw5, vtep, true, 84)]); // EEXIST
  writes.splice(2000, 0, ['unknown device', (to) => to.neighbor('replace', 0, gw5, 1)]); // ENODEV, never sent
  writes.splice(3000, 0, ['bad number', (to) => to.fdb('replace', vtep, -1, 1)]); // EINVAL, never sent
  const lastOfChunk = 256 * 5 - 1;
  writes.splice(lastOfChunk, 0, ['missing neighbour', (to) => to.neighbor('delete', vtep, ipv4Number('10.254.0.1'), NaN)]); // ENOENT
  writes.push(['missing route', (to) => to.route('delete', ipv4Number('10.254.1.0'), 24, ipv4Number('10.254.1.0'), vtep, true, 84)]); // ESRCH
  const results = await nl.writeEntries(
    writes.length,
    (k, to) => writes[k]![1](to),
    (k) => writes[k]![0],
  );
  assert.equal(results.length, writes.length);
  const failures = results.flatMap((e, k) => (e ? [[writes[k]![0], e.errno, e.message.startsWith(writes[k]![0])]] : []));
  assert.deepEqual(
    failures.sort(),
    [
      ['bad number', 'EINVAL', true],
      ['missing neighbour', 'ENOENT', true],
      ['missing route', 'ESRCH', true],
      ['route 5 again', 'EEXIST', true],
      ['unknown device', 'ENODEV', true],
    ].sort(),
  );
  const routes: Array<{ dst: string; gateway: string; flags: string[]; protocol: string }> = await ipJson(ns, 'route', 'show', 'dev', 'flannel.1');
  assert.equal(routes.length, n);
  assert.deepEqual(
    routes.find((r) => r.dst === `${subnet(7)}.0/24`),
    { type: 'unicast', dst: `${subnet(7)}.0/24`, gateway: `${subnet(7)}.0`, protocol: '84', scope: 'global', flags: ['onlink'] },
  );
  const neigh: Array<{ dst: string; lladdr: string; state: string[] }> = await ipJson(ns, 'neigh', 'show', 'dev', 'flannel.1', 'nud', 'permanent');
  assert.equal(neigh.length, n);
  assert.equal(neigh.find((x) => x.dst === `${subnet(9)}.0`)?.lladdr, mac(9));
  const fdb = (await bridgeJson<Array<{ mac: string; dst?: string }>>(ns, 'fdb', 'show', 'dev', 'flannel.1')).filter((f) => f.dst);
  assert.equal(fdb.length, n);
  assert.equal(fdb.find((f) => f.mac === mac(11))?.dst, '198.51.100.12');
});

test('writeEntries on a client closed while its chunks wait on the pool: the call resolves, the writes not done fail with EBADF', async (t) => {
  const { ns } = await vtepHost(t, 'bpclose');
  const vtep = Number((await ipJson<Array<{ ifindex: number }>>(ns, 'link', 'show', 'flannel.1'))[0]!.ifindex);
  const nl = await NetlinkClient.open({ netns: ns });
  const pending = nl.writeEntries(
    6000,
    (k, to) => to.neighbor('replace', vtep, ipv4Number(`${subnet(k)}.0`), k + 1),
    (k) => `neigh ${k}`,
  );
  nl.close();
  const results = await pending;
  assert.equal(results.length, 6000);
  for (const e of results) if (e) assert.equal(e.errno, 'EBADF');
  assert.ok(results.some((e) => e?.errno === 'EBADF'));
});

test("ignoreAnnouncementsOf: the kernel keeps back the announcements of one client's route and neighbour writes; everyone else's still come", async (t) => {
  const { ns, nl } = await vtepHost(t, 'bign');
  const vtep = Number((await ipJson<Array<{ ifindex: number }>>(ns, 'link', 'show', 'flannel.1'))[0]!.ifindex);
  const port = nl.portId();
  assert.ok(Number.isInteger(port) && port > 0, `a port id: ${port}`);
  type Seen = Array<{ deleted: boolean; kind: 'route' | 'neighbor' | 'fdb'; ip: number; dstLen?: number }>;
  const listen = async (filtered: boolean) => {
    const seen: Seen = [];
    const sub = await nl.subscribe(['route', 'neighbor'], () => {}, {
      records: {
        route: (deleted, r) => void (r.table === 254 && seen.push({ deleted, kind: 'route', ip: r.dst, dstLen: r.dstLen })),
        neighbor: (deleted, n) => void seen.push({ deleted, kind: n.family === 7 ? 'fdb' : 'neighbor', ip: n.ip }),
      },
      ...(filtered ? { ignoreAnnouncementsOf: port } : {}),
    });
    t.after(() => sub.close());
    return seen;
  };
  const plain = await listen(false);
  const filtered = await listen(true);

  // The client's own writes (a neighbour, an FDB entry, a route), then iproute2's: a neighbour and a route of its
  // own, and the deletion of the client's route (drift, which must be heard).
  const own = ipv4Number('10.244.3.0');
  const remote = ipv4Number('198.51.100.13');
  const ownMac = macNumber('0e:f0:b5:8c:28:03');
  const results = await nl.writeEntries(
    3,
    (k, to) =>
      [() => to.neighbor('replace', vtep, own, ownMac), () => to.fdb('replace', vtep, ownMac, remote), () => to.route('add', own, 24, own, vtep, true, 84)][
        k
      ]!(),
    (k) => `own write ${k}`,
  );
  assert.deepEqual(results, [undefined, undefined, undefined]);
  const other = ipv4Number('10.244.4.0');
  await ip(ns, 'neigh', 'add', '10.244.4.0', 'lladdr', '0e:f0:b5:8c:28:04', 'dev', 'flannel.1', 'nud', 'permanent');
  await ip(ns, 'route', 'add', '10.244.4.0/24', 'via', '10.244.4.0', 'dev', 'flannel.1', 'onlink', 'proto', '84');
  await ip(ns, 'route', 'del', '10.244.3.0/24', 'dev', 'flannel.1');
  // A socket gets its announcements in order: once the last change is in, everything before it is too.
  const lastIn = (seen: Seen) => seen.some((e) => e.deleted && e.kind === 'route' && e.ip === own);
  await waitFor(() => lastIn(plain) && lastIn(filtered), 10_000, 'the deletion of the route on both subscriptions');

  const summary = (seen: Seen) =>
    seen
      .filter((e) => e.ip === own || e.ip === other || e.ip === remote)
      .map((e) => `${e.deleted ? 'del' : 'new'} ${e.kind} ${e.ip === own ? 'own' : e.ip === other ? 'other' : 'remote'}`);
  assert.deepEqual(summary(plain), ['new neighbor own', 'new fdb remote', 'new route own', 'new neighbor other', 'new route other', 'del route own']);
  // The FDB announcement of a VXLAN device carries port id 0 (vxlan_fdb_notify), so it still comes.
  assert.deepEqual(summary(filtered), ['new fdb remote', 'new neighbor other', 'new route other', 'del route own']);
});

test('ignoreAnnouncementsOf refuses port id 0 (the kernel) and what is no port id, naming the value', async (t) => {
  const { ns } = await vtepHost(t, 'bigz');
  const socket = NetlinkSocket.open({ nsPath: `/run/netns/${ns}`, groups: [] });
  t.after(() => socket.close());
  for (const bad of [0, -1, 1.5, 2 ** 32, Number.NaN])
    assert.throws(
      () => socket.ignoreAnnouncementsOf(bad),
      (e: unknown) => e instanceof InvalidValueError && e.field === 'ignoreAnnouncementsOf' && Object.is(e.value, bad) && e.message.includes('port id'),
    );
  socket.close();
  assert.throws(
    () => socket.ignoreAnnouncementsOf(5),
    (e: unknown) => e instanceof NetlinkError && e.errno === 'EBADF',
  );
});
