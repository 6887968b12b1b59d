/**
 * The reconciler's bookkeeping over a recording stand-in for the netlink client (the kernel paths themselves
 * are covered by the netns and e2e tests): partial failures roll a peer back, a clean kernel costs no writes,
 * and requests made while a run is in progress share one follow-up run.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { silentLogger } from '../../src/base/log.js';
import { parseCidr4 } from '../../src/base/ip.js';
import { Reconciler } from '../../src/overlay/reconciler.js';
import type { NetlinkClient, NetlinkOp } from '../../src/netlink/index.js';
import { NetlinkError } from '../../src/netlink/index.js';

const ctx = { vtep: 'flannel.1', underlay: 'eth0', underlayNetworks: [parseCidr4('192.0.2.0/24')], directRouting: false, ownSubnet: '10.244.1.0/24', routeProtocol: 84 };

/** Holds routes/neighbours/FDB in memory; fails any op the `fail` predicate picks. */
function kernelStandIn(fail: (op: NetlinkOp) => boolean = () => false) {
  const routes = new Map<string, any>();
  const neigh = new Map<string, any>();
  const fdb = new Map<string, any>();
  const batches: NetlinkOp[][] = [];
  let dumps = 0;
  const nl = {
    async listRoutes() { dumps++; return [...routes.values()]; },
    async listNeighbors() { dumps++; return [...neigh.values()]; },
    async listFdb() { dumps++; return [...fdb.values()]; },
    async batch(ops: NetlinkOp[]) {
      batches.push(ops);
      await new Promise((r) => setTimeout(r, 5));
      return ops.map((o) => {
        if (fail(o)) return { ok: false as const, error: new NetlinkError(o.op, 22) }; // EINVAL
        const a = o.args as any;
        if (o.op === 'replaceRoute') routes.set(a.dst, { ...a, table: 254 });
        if (o.op === 'deleteRoute') routes.delete(a.dst);
        if (o.op === 'replaceNeighbor') neigh.set(a.ip, { ...a, state: 'permanent' });
        if (o.op === 'deleteNeighbor') neigh.delete(a.ip);
        if (o.op === 'replaceFdb') fdb.set(`${a.mac} ${a.dst}`, a);
        if (o.op === 'deleteFdb') fdb.delete(`${a.mac} ${a.dst}`);
        return { ok: true as const };
      });
    },
  };
  return { nl: nl as unknown as NetlinkClient, routes, neigh, fdb, batches, dumps: () => dumps };
}

const peers = [
  { subnet: '10.244.2.0/24', publicIP: '192.0.2.12', vtepMac: '02:00:00:00:00:02' },
  { subnet: '10.244.3.0/24', publicIP: '192.0.2.13', vtepMac: '02:00:00:00:00:03' },
];

test('a peer whose route write fails is rolled back; the other peer stays programmed', async () => {
  const k = kernelStandIn((op) => op.op === 'replaceRoute' && (op.args as any).dst === '10.244.3.0/24');
  const r = new Reconciler(k.nl, ctx, silentLogger);
  r.setPeers(peers);
  const result = await r.reconcile('test');
  assert.deepEqual([result.failed, result.programmed], [1, 1]);
  assert.deepEqual([...k.routes.keys()], ['10.244.2.0/24']);
  assert.deepEqual([...k.neigh.keys()], ['10.244.2.0'], 'the failed peer\'s neighbour was removed again');
  assert.deepEqual([...k.fdb.keys()], ['02:00:00:00:00:02 192.0.2.12'], 'the failed peer\'s FDB entry was removed again');
  assert.deepEqual(k.batches.at(-1)!.map((o) => o.op), ['deleteFdb', 'deleteNeighbor'], 'rollback undoes FDB, then neighbour');
});

test('a second run over a right kernel reads once and writes nothing', async () => {
  const k = kernelStandIn();
  const r = new Reconciler(k.nl, ctx, silentLogger);
  r.setPeers(peers);
  assert.equal((await r.reconcile('first')).writes, 6);
  const batchesBefore = k.batches.length;
  const again = await r.reconcile('again');
  assert.deepEqual([again.writes, again.failed, again.programmed], [0, 0, 2]);
  assert.equal(k.batches.length, batchesBefore, 'no batch sent');
});

test('requests during a run coalesce into one follow-up run that sees the newest peers', async () => {
  const k = kernelStandIn();
  const r = new Reconciler(k.nl, ctx, silentLogger);
  r.setPeers(peers.slice(0, 1));
  const first = r.reconcile('a');
  r.setPeers(peers);
  const second = r.reconcile('b');
  const third = r.reconcile('c');
  assert.equal(second, third, 'one follow-up run for both requests');
  await first;
  const done = await second;
  assert.equal(done.programmed, 2);
  assert.equal(k.dumps(), 6, 'two runs, three dumps each');
});
