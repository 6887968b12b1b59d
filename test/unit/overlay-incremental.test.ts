/**
 * The incremental path: after the first (full) run, a lease change becomes exactly the kernel writes of that peer
 * (counted on the kernel stand-in), with no dump, none for unchanged peers; admission is still decided over all
 * leases; a full run (periodic, drift) dumps again and repairs what the incremental path cannot see.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createLogger, silentLogger } from '../../src/base/log.js';
import { Reconciler } from '../../src/overlay/reconciler.js';
import type { Lease } from '../../src/subnet/lease.js';
import type { LeaseEvent } from '../../src/subnet/watcher.js';
import { peerLease, hostContext } from '../helpers/leases.js';
import { kernelStandIn } from '../helpers/kernel-stand-in.js';

const ctx = hostContext('10.244.0.0/24', '02:00:00:ff:ff:01');

const hex = (n: number) => n.toString(16).padStart(2, '0');
/** Peer i (1..255*200): subnet 10.244.<i>.0/24 for i < 256, else inside a /12 network; MAC and IP derived from i. */
function peer(i: number, over: { ip?: string; mac?: string } = {}): Lease {
  return peerLease(`10.244.${i}.0/24`, over.ip ?? `198.51.100.${i}`, over.mac ?? `02:00:00:00:${hex(i >> 8)}:${hex(i & 255)}`, 100 + i);
}

async function programmed(leases: Lease[]) {
  const k = kernelStandIn(undefined, 0);
  const r = new Reconciler(k.nl, ctx, silentLogger);
  r.setLeases(leases);
  const first = await r.reconcile('start');
  assert.equal(first.writes, leases.length * 3, 'the first run programs every peer');
  return { k, r, dumps: k.dumps(), ops: k.ops().length };
}

const ev = (type: LeaseEvent['type'], lease: Lease): LeaseEvent => ({ type, lease });

test('an added lease: three writes (neighbour, FDB, route), no dump, nothing for the other peers', async () => {
  const { k, r, dumps, ops } = await programmed([peer(2), peer(3), peer(4)]);
  r.updateLeases([ev('added', peer(5))]);
  const result = await r.reconcile('leases', 'incremental');
  assert.deepEqual(k.ops().slice(ops), ['replaceNeighbor 10.244.5.0', 'replaceFdb 02:00:00:00:00:05', 'addRoute 10.244.5.0/24']);
  assert.equal(result.writes, 3);
  assert.equal(result.programmed, 4);
  assert.equal(k.dumps(), dumps, 'no dump');
  r.close();
});

test('a changed VTEP MAC: the neighbour is replaced and the FDB entry moves; the route stays', async () => {
  const { k, r, dumps, ops } = await programmed([peer(2), peer(3)]);
  r.updateLeases([ev('changed', peer(3, { mac: '02:00:00:00:aa:03' }))]);
  await r.reconcile('leases', 'incremental');
  assert.deepEqual(k.ops().slice(ops), ['deleteFdb 02:00:00:00:00:03', 'replaceNeighbor 10.244.3.0', 'replaceFdb 02:00:00:00:aa:03']);
  assert.equal(k.neigh.get('10.244.3.0')?.mac, '02:00:00:00:aa:03');
  assert.deepEqual([...k.fdb.keys()].sort(), ['02:00:00:00:00:02 198.51.100.2', '02:00:00:00:aa:03 198.51.100.3']);
  assert.equal(k.dumps(), dumps);
  r.close();
});

test('a changed public IP: only the FDB entry is rewritten', async () => {
  const { k, r, ops } = await programmed([peer(2), peer(3)]);
  r.updateLeases([ev('changed', peer(2, { ip: '203.0.113.2' }))]);
  const result = await r.reconcile('leases', 'incremental');
  assert.deepEqual(k.ops().slice(ops), ['deleteFdb 02:00:00:00:00:02', 'replaceFdb 02:00:00:00:00:02']);
  assert.equal(result.writes, 2);
  assert.deepEqual([...k.fdb.keys()].sort(), ['02:00:00:00:00:02 203.0.113.2', '02:00:00:00:00:03 198.51.100.3']);
  r.close();
});

test('a changed lease whose entries stay the same (a renewal, extra fields) writes nothing', async () => {
  const { k, r, ops } = await programmed([peer(2), peer(3)]);
  r.updateLeases([ev('changed', { ...peer(2), revision: 999, extra: { note: 'x' } })]);
  const result = await r.reconcile('leases', 'incremental');
  assert.equal(result.writes, 0);
  assert.equal(k.ops().length, ops);
  r.close();
});

test('a removed lease: route, neighbour and FDB entry deleted in that order, the other peers untouched', async () => {
  const { k, r, dumps, ops } = await programmed([peer(2), peer(3), peer(4)]);
  r.updateLeases([ev('removed', peer(3))]);
  const result = await r.reconcile('leases', 'incremental');
  assert.deepEqual(k.ops().slice(ops), ['deleteRoute 10.244.3.0/24', 'deleteNeighbor 10.244.3.0', 'deleteFdb 02:00:00:00:00:03']);
  assert.equal(result.programmed, 2);
  assert.deepEqual([...k.routes.keys()].sort(), ['10.244.2.0/24', '10.244.4.0/24']);
  assert.equal(k.dumps(), dumps);
  r.close();
});

test('a burst of 1000 changes while a run is busy is coalesced into one run with exactly the writes it needs', async () => {
  // 200 programmed peers; then 1000 lease events in 10 batches: 50 peers added, 40 with a new MAC, 30 with a new
  // public IP, 20 removed, and 860 events that change nothing the kernel holds (renewals, and the same values again).
  const initial = Array.from({ length: 200 }, (_, i) => peer(i + 1));
  const k = kernelStandIn(undefined, 5);
  const r = new Reconciler(k.nl, ctx, silentLogger);
  r.setLeases(initial);
  await r.reconcile('start');
  const before = k.ops().length;
  const batchesBefore = k.batches.length;
  const events: LeaseEvent[] = [];
  for (let i = 201; i <= 250; i++) events.push(ev('added', peer(i)));
  for (let i = 1; i <= 40; i++) events.push(ev('changed', peer(i, { mac: `02:00:00:01:00:${hex(i)}` })));
  for (let i = 41; i <= 70; i++) events.push(ev('changed', peer(i, { ip: `203.0.113.${i}` })));
  for (let i = 71; i <= 90; i++) events.push(ev('removed', peer(i)));
  for (let n = 0; events.length < 1000; n++) events.push(ev('changed', { ...peer(91 + (n % 110)), revision: 10_000 + n }));
  assert.equal(events.length, 1000);

  const blocker = r.reconcile('leases', 'incremental'); // nothing to do, but it holds the run while the burst arrives
  const runs: Array<Promise<unknown>> = [];
  for (let b = 0; b < 10; b++) {
    r.updateLeases(events.slice(b * 100, (b + 1) * 100));
    runs.push(r.reconcile('leases', 'incremental'));
  }
  await blocker;
  const results = await Promise.all(runs);
  assert.ok(
    results.every((x) => x === results[0]),
    'the ten requests share one run',
  );
  const ops = k.ops().slice(before);
  const count = (prefix: string) => ops.filter((o) => o.startsWith(prefix)).length;
  // added: 3 each; new MAC: delete old FDB + neighbour + new FDB; new IP: delete old FDB + new FDB; removed: 3 each.
  assert.equal(ops.length, 50 * 3 + 40 * 3 + 30 * 2 + 20 * 3, ops.slice(0, 10).join(', '));
  assert.equal(count('addRoute'), 50);
  assert.equal(count('deleteRoute'), 20);
  assert.equal(count('replaceNeighbor'), 50 + 40);
  assert.equal(count('deleteNeighbor'), 20);
  assert.equal(count('replaceFdb'), 50 + 40 + 30);
  assert.equal(count('deleteFdb'), 40 + 30 + 20);
  for (let i = 91; i <= 200; i++)
    assert.ok(!ops.some((o) => o.endsWith(` 10.244.${i}.0`) || o.endsWith(` 10.244.${i}.0/24`)), `nothing written for unchanged peer ${i}`);
  assert.ok(k.batches.length - batchesBefore <= 3, 'one run: removals and peer writes, at most two batches (the blocker wrote none)');
  assert.equal(k.routes.size, 230);
  assert.equal(k.neigh.size, 230);
  assert.equal(k.fdb.size, 230);
  r.close();
});

test('admission is decided over all leases: a younger lease with a taken MAC is rejected, and admitted once the older one leaves', async () => {
  const { k, r, ops } = await programmed([peer(2), peer(3)]);
  const clash = peerLease('10.244.9.0/24', '198.51.100.9', '02:00:00:00:00:02', 500);
  const rejected: string[] = [];
  const r2 = new Reconciler(k.nl, ctx, silentLogger, {
    onAdmission: (a) => rejected.splice(0, rejected.length, ...a.rejected.map((x) => `${x.subnet} ${x.reason}`)),
  });
  r.close();
  // The same kernel, a reconciler that learned it in a full run.
  r2.setLeases([peer(2), peer(3)]);
  await r2.reconcile('start');
  const after = k.ops().length;
  assert.equal(after, ops, 'a right kernel: the full run writes nothing');
  r2.updateLeases([ev('added', clash)]);
  await r2.reconcile('leases', 'incremental');
  assert.deepEqual(rejected, ['10.244.9.0/24 duplicate-vtep-mac']);
  assert.equal(k.ops().length, after, 'nothing written for the rejected lease');
  r2.updateLeases([ev('removed', peer(2))]);
  await r2.reconcile('leases', 'incremental');
  assert.deepEqual(rejected, []);
  assert.deepEqual(k.ops().slice(after), [
    'deleteRoute 10.244.2.0/24',
    'deleteNeighbor 10.244.2.0',
    'deleteFdb 02:00:00:00:00:02',
    'replaceNeighbor 10.244.9.0',
    'replaceFdb 02:00:00:00:00:02',
    'addRoute 10.244.9.0/24',
  ]);
  r2.close();
});

test('a foreign route seen as a kernel event keeps a later lease for its subnet out, without a dump', async () => {
  const { k, r, dumps } = await programmed([peer(2)]);
  assert.equal(r.routeExpected(false, k.routeRecord({ dst: '10.244.7.128/25', dev: 'eth0', protocol: 4, table: 254 })), true, 'no peer there yet: not drift');
  r.updateLeases([ev('added', peer(7))]);
  await r.reconcile('leases', 'incremental');
  assert.equal(r.lastAdmission.rejected[0]?.reason, 'foreign-route');
  assert.ok(!k.routes.has('10.244.7.0/24'));
  assert.equal(k.dumps(), dumps);
  r.routeExpected(true, k.routeRecord({ dst: '10.244.7.128/25', dev: 'eth0', protocol: 4, table: 254 }));
  await r.reconcile('leases', 'incremental');
  assert.ok(k.routes.has('10.244.7.0/24'), 'admitted once the foreign route is gone');
  r.close();
});

test("a full run after someone deleted an entry behind the agent's back dumps and repairs it; an incremental run would not", async () => {
  const { k, r, dumps } = await programmed([peer(2), peer(3)]);
  k.neigh.delete('10.244.3.0');
  assert.equal((await r.reconcile('leases', 'incremental')).writes, 0);
  const full = await r.reconcile('drift');
  assert.equal(full.writes, 1);
  assert.equal(k.dumps(), dumps + 3);
  assert.equal(k.neigh.get('10.244.3.0')?.mac, '02:00:00:00:00:03');
  r.close();
});

test('a full request coalesced with incremental ones makes the shared run full', async () => {
  const { k, r, dumps } = await programmed([peer(2)]);
  const busy = r.reconcile('leases', 'incremental');
  const a = r.reconcile('leases', 'incremental');
  const b = r.reconcile('periodic');
  assert.equal(a, b);
  await busy;
  await b;
  assert.equal(k.dumps(), dumps + 3, 'one dump, by the shared run');
  r.close();
});

test('a peer that fails incrementally is rolled back and left out until its backoff has passed', async (t) => {
  let clock = 1_000_000;
  let refuse = true;
  const k = kernelStandIn((o) => refuse && o.op === 'addRoute' && o.args.dst === '10.244.5.0/24', 0);
  const r = new Reconciler(k.nl, ctx, silentLogger, {}, () => clock);
  t.after(() => r.close()); // its retry timer, also when an assertion fails
  r.setLeases([peer(2)]);
  await r.reconcile('start');
  r.updateLeases([ev('added', peer(5))]);
  const failed = await r.reconcile('leases', 'incremental');
  assert.deepEqual([failed.failed, failed.programmed], [1, 1]);
  assert.ok(!k.neigh.has('10.244.5.0') && ![...k.fdb.keys()].some((x) => x.startsWith('02:00:00:00:00:05')), 'rolled back');
  r.updateLeases([ev('added', peer(6))]);
  await r.reconcile('leases', 'incremental');
  assert.equal(k.ops().filter((o) => o === 'addRoute 10.244.5.0/24').length, 1, 'not retried inside its backoff');
  refuse = false;
  clock += 1000;
  const ok = await r.reconcile('leases', 'incremental');
  assert.equal(ok.programmed, 3);
  assert.ok(k.routes.has('10.244.5.0/24'));
  r.close();
});

test('a changed peer whose new entries fail is rolled back; its retry is a full run, which sees the route it left and completes it', async (t) => {
  let clock = 1_000_000;
  let refuse = true;
  const k = kernelStandIn((o) => refuse && o.op === 'replaceFdb' && o.args.mac === '02:00:00:00:bb:03', 0);
  const r = new Reconciler(k.nl, ctx, silentLogger, {}, () => clock);
  t.after(() => r.close()); // its retry timer, also when an assertion fails
  r.setLeases([peer(2), peer(3)]);
  await r.reconcile('start');
  const dumps = k.dumps();
  r.updateLeases([ev('changed', peer(3, { mac: '02:00:00:00:bb:03' }))]);
  const failed = await r.reconcile('leases', 'incremental');
  assert.deepEqual([failed.failed, failed.programmed], [1, 1]);
  assert.ok(k.routes.has('10.244.3.0/24') && !k.neigh.has('10.244.3.0'), 'the route stays, the new neighbour was rolled back');
  refuse = false;
  clock += 1000;
  const ok = await r.reconcile('leases', 'incremental');
  assert.equal(k.dumps(), dumps + 3, 'the retry read the kernel');
  assert.equal(ok.failed, 0);
  assert.equal(ok.programmed, 2);
  assert.equal(k.neigh.get('10.244.3.0')?.mac, '02:00:00:00:bb:03');
  assert.ok(k.fdb.has('02:00:00:00:bb:03 198.51.100.3'));
  assert.equal(k.ops().filter((o) => o === 'addRoute 10.244.3.0/24').length, 1, 'added once at start, never over itself');
  r.close();
});

test("DirectRouting: the announcement of a direct route added incrementally is the agent's own write, not drift", async () => {
  const k = kernelStandIn(undefined, 0);
  const r = new Reconciler(k.nl, { ...ctx, directRouting: true }, silentLogger);
  r.setLeases([peer(2)]); // behind a router: VXLAN, so no route of tulle's uses the underlay yet
  await r.reconcile('start');
  r.updateLeases([ev('added', peerLease('10.244.9.0/24', '192.0.2.20', '02:00:00:00:00:09', 109))]); // on the underlay's segment
  await r.reconcile('leases', 'incremental');
  const route = k.routes.get('10.244.9.0/24')!;
  assert.deepEqual([route.via, route.dev], ['192.0.2.20', 'eth0']);
  assert.equal(r.routeExpected(false, k.routeRecord(route)), true, "the underlay's index was read with the kernel view");
  assert.equal(r.routeExpected(false, k.routeRecord({ ...route, via: '192.0.2.21' })), false, 'rewritten by someone else');
  r.close();
});

test('beforeProgram: all admitted peers at the first run, then only what changed, and no call when admission is unchanged', async () => {
  const k = kernelStandIn(undefined, 0);
  const calls: string[] = [];
  const names = (ps: readonly { subnet: string }[]) => ps.map((p) => p.subnet).join(',');
  const lines: string[] = [];
  const log = createLogger({}, { format: 'json', write: (line) => lines.push(line) });
  const r = new Reconciler(k.nl, ctx, log, {
    beforeProgram: async (admitted, change) => {
      calls.push(change ? `+${names(change.added)} -${names(change.removed)}` : `all ${names(admitted)}`);
      return { note: calls.length };
    },
  });
  r.setLeases([peer(2), peer(3)]);
  await r.reconcile('start');
  assert.deepEqual(calls, ['all 10.244.2.0/24,10.244.3.0/24']);
  await r.reconcile('periodic');
  assert.equal(calls.length, 1, 'nothing changed: no call');
  r.updateLeases([ev('added', peer(4))]);
  await r.reconcile('leases', 'incremental');
  r.updateLeases([ev('removed', peer(2))]);
  await r.reconcile('leases', 'incremental');
  r.updateLeases([ev('changed', peer(3, { ip: '198.51.100.33' }))]);
  await r.reconcile('leases', 'incremental');
  // A renewal (a new lease object, same entries) is a change of admitted peer too: the guard counts it out and in.
  r.updateLeases([ev('changed', peer(4))]);
  await r.reconcile('leases', 'incremental');
  // A lease the admission rejects changes nothing admitted.
  r.updateLeases([ev('added', peerLease('10.244.9.0/24', '198.51.100.9', '02:00:00:00:00:03', 500))]);
  await r.reconcile('leases', 'incremental');
  assert.deepEqual(calls.slice(1), ['+10.244.4.0/24 -', '+ -10.244.2.0/24', '+10.244.3.0/24 -10.244.3.0/24', '+10.244.4.0/24 -10.244.4.0/24']);
  // What the hook returns is in its run's "reconciled" line, also for the renewal, which wrote nothing.
  const reconciled = lines.map((l) => JSON.parse(l) as { msg: string; note?: number; writes: number }).filter((l) => l.msg === 'reconciled');
  assert.deepEqual(
    reconciled.map((l) => [l.note, l.writes]),
    [
      [1, 6],
      [2, 3],
      [3, 3],
      [4, 2],
      [5, 0],
    ],
  );
  r.close();
});

test('many new peers at once: their writes go out batch after batch without waiting for each other; a refused write rolls back its peer alone', async (t) => {
  // A /12 of /24s: room for 700 peers.
  const wide = { ...ctx, admission: { ...ctx.admission, network: { network: ((10 << 24) | (240 << 16)) >>> 0, prefix: 12 } } };
  const lease = (i: number) =>
    peerLease(`10.${240 + (i >> 8)}.${i & 255}.0/24`, `198.51.${100 + (i >> 8)}.${1 + (i & 127)}`, `02:00:00:00:${hex(i >> 8)}:${hex(i & 255)}`, 100 + i);
  const refused = '10.242.100.0/24'; // peer 612, in the third batch of 256
  const k = kernelStandIn((o) => o.op === 'addRoute' && o.args.dst === refused, 5);
  let inFlight = 0;
  let mostInFlight = 0;
  const writeEntries = k.nl.writeEntries.bind(k.nl);
  k.nl.writeEntries = async (...args) => {
    mostInFlight = Math.max(mostInFlight, ++inFlight);
    try {
      return await writeEntries(...args);
    } finally {
      inFlight--;
    }
  };
  const r = new Reconciler(k.nl, wide, silentLogger);
  t.after(() => r.close()); // also when an assertion fails: the refused peer's retry timer must not hold the test
  r.setLeases([]);
  await r.reconcile('start');
  r.updateLeases(Array.from({ length: 700 }, (_, i) => ev('added', lease(i + 1))));
  const result = await r.reconcile('leases', 'incremental');
  assert.equal(mostInFlight, 3, 'three batches (256 + 256 + 188 peers) were in flight at once');
  assert.equal(result.failed, 1);
  assert.equal(result.writes, 700 * 3 - 1, 'every write but the refused route');
  assert.equal(result.programmed, 699);
  assert.equal(k.routes.size, 699);
  assert.equal(k.neigh.size, 699);
  assert.equal(k.fdb.size, 699);
  assert.ok(!k.routes.has(refused) && !k.neigh.has('10.242.100.0'), 'the refused peer is rolled back');
  assert.ok(k.routes.has('10.242.99.0/24') && k.routes.has('10.242.101.0/24'), 'its neighbours in the batch stay');
});
