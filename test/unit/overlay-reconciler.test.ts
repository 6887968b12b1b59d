/**
 * The reconciler's bookkeeping over a recording stand-in for its kernel interface (test/helpers/kernel-stand-in.ts;
 * the kernel paths themselves are covered by the netns and e2e tests): partial failures roll a peer back, a clean kernel costs no writes,
 * and requests made while a run is in progress share one follow-up run.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { silentLogger } from '../../src/base/log.js';
import { Reconciler } from '../../src/overlay/reconciler.js';
import type { AdmissionResult } from '../../src/overlay/admission.js';
import type { Logger } from '../../src/base/log.js';
import type { Neighbor, NetlinkEvent } from '../../src/netlink/index.js';
import { peerLease, hostContext } from '../helpers/leases.js';
import { kernelStandIn, opTarget } from '../helpers/kernel-stand-in.js';

const ctx = hostContext('10.244.1.0/24');

const peers = [peerLease('10.244.2.0/24', '192.0.2.12', '02:00:00:00:00:02', 10), peerLease('10.244.3.0/24', '192.0.2.13', '02:00:00:00:00:03', 11)];

test('a peer whose route write fails is rolled back; the other peer stays programmed', async () => {
  const k = kernelStandIn((op) => op.op === 'addRoute' && opTarget(op) === '10.244.3.0/24');
  const r = new Reconciler(k.nl, ctx, silentLogger);
  r.setLeases(peers);
  const result = await r.reconcile('test');
  assert.deepEqual([result.failed, result.programmed], [1, 1]);
  assert.deepEqual([...k.routes.keys()], ['10.244.2.0/24']);
  assert.deepEqual([...k.neigh.keys()], ['10.244.2.0'], "the failed peer's neighbour was removed again");
  assert.deepEqual([...k.fdb.keys()], ['02:00:00:00:00:02 192.0.2.12'], "the failed peer's FDB entry was removed again");
  assert.deepEqual(
    k.batches.at(-1)!.map((o) => o.op),
    ['deleteFdb', 'deleteNeighbor'],
    'rollback undoes FDB, then neighbour',
  );
  r.close();
});

test('a second run over a right kernel reads once and writes nothing', async () => {
  const k = kernelStandIn();
  const r = new Reconciler(k.nl, ctx, silentLogger);
  r.setLeases(peers);
  assert.equal((await r.reconcile('first')).writes, 6);
  const batchesBefore = k.batches.length;
  const again = await r.reconcile('again');
  assert.deepEqual([again.writes, again.failed, again.programmed], [0, 0, 2]);
  assert.equal(k.batches.length, batchesBefore, 'no batch sent');
});

test('requests during a run coalesce into one follow-up run that sees the newest peers', async () => {
  const k = kernelStandIn();
  const r = new Reconciler(k.nl, ctx, silentLogger);
  r.setLeases(peers.slice(0, 1));
  const first = r.reconcile('a');
  r.setLeases(peers);
  const second = r.reconcile('b');
  const third = r.reconcile('c');
  assert.equal(second, third, 'one follow-up run for both requests');
  await first;
  const done = await second;
  assert.equal(done.programmed, 2);
  assert.equal(k.dumps(), 6, 'two runs, three dumps each');
});

/** A logger that keeps what it is told, for counting lines. */
function recordingLogger() {
  const lines: Array<{ level: string; msg: string; fields?: Record<string, unknown> }> = [];
  const at = (level: string) => (msg: string, fields?: Record<string, unknown>) => void lines.push({ level, msg, ...(fields ? { fields } : {}) });
  const logger: Logger = { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'), child: () => logger };
  return { logger, lines };
}

test('a peer the kernel keeps refusing is retried with growing backoff and logged once per distinct error', async () => {
  let refuse = true;
  const k = kernelStandIn((op) => refuse && op.op === 'addRoute' && opTarget(op) === '10.244.3.0/24');
  let clock = 1_000_000;
  const { logger, lines } = recordingLogger();
  const r = new Reconciler(k.nl, ctx, logger, {}, () => clock);
  r.setLeases(peers);
  await r.reconcile('first');
  const routeAdds = () => k.batches.flat().filter((o) => o.op === 'addRoute' && opTarget(o) === '10.244.3.0/24').length;
  assert.equal(routeAdds(), 1);
  // Drift and lease events inside the backoff window do not retry the failing peer (no retry storm) ...
  for (let i = 0; i < 5; i++) await r.reconcile('drift');
  assert.equal(routeAdds(), 1, 'no retry before the backoff has passed');
  // ... once it has passed, the next run tries again; the same error is not logged again.
  clock += 1000;
  await r.reconcile('retry');
  assert.equal(routeAdds(), 2);
  clock += 1999;
  await r.reconcile('drift');
  assert.equal(routeAdds(), 2, 'the second wait is twice as long');
  clock += 1;
  await r.reconcile('retry');
  assert.equal(routeAdds(), 3);
  assert.equal(lines.filter((l) => l.msg.includes('refused')).length, 1, 'one line for one distinct failure');
  refuse = false;
  clock += 4000;
  const ok = await r.reconcile('retry');
  assert.equal(ok.programmed, 2);
  assert.ok(k.routes.has('10.244.3.0/24'));
  assert.ok(lines.some((l) => l.msg === 'peer programmed after earlier failures'));
  r.close();
});

test("a route someone else made is never overwritten: a lease over it is rejected, and only tulle's own route is replaced", async () => {
  const k = kernelStandIn();
  // A foreign (proto static) route to one peer's subnet, and a stale route of tulle's to the other with a wrong gateway.
  k.routes.set('10.244.2.0/24', { dst: '10.244.2.0/24', via: '192.0.2.99', dev: 'eth0', protocol: 4, table: 254 });
  k.routes.set('10.244.3.0/24', { dst: '10.244.3.0/24', via: '10.244.9.0', dev: 'flannel.1', onlink: true, protocol: 84, table: 254 });
  const rejected: string[] = [];
  const r = new Reconciler(k.nl, ctx, silentLogger, { onAdmission: (a) => rejected.push(...a.rejected.map((x) => `${x.subnet} ${x.reason}`)) });
  r.setLeases(peers);
  const result = await r.reconcile('first');
  assert.deepEqual(rejected, ['10.244.2.0/24 foreign-route']);
  assert.deepEqual(
    k.routes.get('10.244.2.0/24'),
    { dst: '10.244.2.0/24', via: '192.0.2.99', dev: 'eth0', protocol: 4, table: 254 },
    'the foreign route is untouched',
  );
  const ops = k.ops();
  assert.ok(ops.includes('replaceRoute 10.244.3.0/24'), ops.join(', '));
  assert.ok(
    !ops.some((o) => o.endsWith('10.244.2.0/24') || o.endsWith('10.244.2.0') || o.endsWith('02:00:00:00:00:02')),
    'nothing written for the rejected peer',
  );
  assert.equal(result.programmed, 1);
  r.close();
});

test('admission is decided again only when the leases or the foreign routes changed; a resync of the same leases reuses it', async () => {
  const k = kernelStandIn();
  const seen: AdmissionResult[] = [];
  const r = new Reconciler(k.nl, ctx, silentLogger, { onAdmission: (a) => seen.push(a) });
  r.setLeases(peers);
  await r.reconcile('first');
  await r.reconcile('periodic');
  assert.equal(seen.length, 2);
  assert.equal(seen[1], seen[0], 'same leases, same routes: the same admission');
  r.updateLeases([{ type: 'removed', lease: peers[0]! }]);
  await r.reconcile('leases', 'incremental');
  assert.notEqual(seen[2], seen[1], 'a lease left');
  assert.deepEqual(
    seen[2]!.admitted.map((p) => p.subnet),
    peers.slice(1).map((p) => p.subnet),
  );
  // A route of someone else's appears in a peer's subnet: the next run rejects that peer.
  k.routes.set('10.244.3.0/24', { dst: '10.244.3.0/24', via: '192.0.2.99', dev: 'eth0', protocol: 4, table: 254 });
  await r.reconcile('periodic');
  assert.deepEqual(
    seen[3]!.rejected.map((x) => `${x.subnet} ${x.reason}`),
    ['10.244.3.0/24 foreign-route'],
  );
  r.close();
});

test('a route that appears between the dump and the write makes `ip route add` fail: the peer is rolled back, not overwritten', async () => {
  const k = kernelStandIn();
  const r = new Reconciler(k.nl, ctx, silentLogger);
  r.setLeases(peers.slice(0, 1));
  const routeRecords = k.nl.routeRecords;
  k.nl.routeRecords = async (table, protocol) => {
    const records = await routeRecords(table, protocol);
    k.routes.set('10.244.2.0/24', { dst: '10.244.2.0/24', dev: 'eth9', protocol: 3, table: 254 }); // someone is faster
    return records;
  };
  const result = await r.reconcile('first');
  assert.deepEqual([result.failed, result.programmed], [1, 0]);
  assert.equal(k.routes.get('10.244.2.0/24')?.dev, 'eth9', 'their route stays');
  assert.equal(k.neigh.size + k.fdb.size, 0, 'the peer was rolled back');
  r.close();
});

test('kernel events: the announcements of the plan are expected; a rewrite, a deletion or a foreign route in a peer subnet is drift', async () => {
  const k = kernelStandIn();
  const r = new Reconciler(k.nl, ctx, silentLogger);
  r.setLeases(peers);
  await r.reconcile('first');
  const route = { dst: '10.244.2.0/24', via: '10.244.2.0', dev: 'flannel.1', onlink: true, protocol: 84, table: 254 };
  const expected = (e: NetlinkEvent) =>
    e.kind === 'route'
      ? r.routeExpected(e.action === 'del', k.routeRecord(e.route))
      : e.kind === 'neighbor'
        ? r.neighborExpected(e.action === 'del', k.neighborRecord(e.neighbor))
        : e.kind === 'fdb'
          ? r.neighborExpected(e.action === 'del', k.fdbRecord(e.fdb))
          : true;
  assert.equal(expected({ kind: 'route', action: 'new', route }), true, 'own route write');
  assert.equal(expected({ kind: 'route', action: 'new', route: { ...route, via: '10.244.7.0' } }), false, 'rewritten in place');
  assert.equal(expected({ kind: 'route', action: 'del', route }), false, 'deleted');
  assert.equal(
    expected({ kind: 'route', action: 'new', route: { dst: '10.244.2.128/25', dev: 'eth0', protocol: 4, table: 254 } }),
    false,
    'a foreign route inside a peer subnet',
  );
  assert.equal(
    expected({ kind: 'route', action: 'new', route: { dst: '10.244.1.5', dev: 'veth1', protocol: 3, table: 254 } }),
    true,
    'a pod route in the own subnet',
  );
  assert.equal(
    expected({ kind: 'route', action: 'new', route: { dst: '198.51.100.0/24', dev: 'eth0', protocol: 2, table: 254 } }),
    true,
    'outside the network',
  );
  const neighbor: Neighbor = { dev: 'flannel.1', ip: '10.244.2.0', mac: '02:00:00:00:00:02', state: 'permanent' };
  assert.equal(expected({ kind: 'neighbor', action: 'new', neighbor }), true);
  assert.equal(expected({ kind: 'neighbor', action: 'new', neighbor: { ...neighbor, mac: '02:00:00:00:00:99' } }), false);
  assert.equal(expected({ kind: 'neighbor', action: 'del', neighbor }), false);
  assert.equal(expected({ kind: 'neighbor', action: 'new', neighbor: { ...neighbor, dev: 'eth0' } }), true, 'not on the VTEP');
  const fdb = { dev: 'flannel.1', mac: '02:00:00:00:00:02', dst: '192.0.2.12' };
  assert.equal(expected({ kind: 'fdb', action: 'new', fdb }), true);
  assert.equal(expected({ kind: 'fdb', action: 'new', fdb: { ...fdb, dst: '192.0.2.66' } }), false, 'FDB pointed at another host');
  assert.equal(expected({ kind: 'fdb', action: 'del', fdb }), false);
  assert.equal(expected({ kind: 'fdb', action: 'del', fdb: { ...fdb, dst: '192.0.2.66' } }), true, 'removal of an unwanted entry');
  r.close();
});
