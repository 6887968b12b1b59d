/**
 * The reconciler against the real kernel (a fresh namespace with flannel.1), read back with iproute2: the first
 * run programs every peer; an incremental run right after a lease change leaves exactly the entries the leases
 * say — a departed peer's route, neighbour and FDB entry gone, a new MAC in place — before it returns, with
 * no help from a later full run; and a full run after it finds nothing to do.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { silentLogger } from '../../src/base/log.js';
import { Reconciler } from '../../src/overlay/reconciler.js';
import { bridgeJson, ipJson, requireRoot, vtepHost } from '../helpers/netns.js';
import { hostContext, peerLease } from '../helpers/leases.js';

requireRoot();

const peer = (i: number, mac = `02:00:00:00:00:${i.toString(16).padStart(2, '0')}`) => peerLease(`10.244.${i}.0/24`, `198.51.100.${i}`, mac, 100 + i);

/** What iproute2 shows of tulle's entries on flannel.1, as sorted lines. */
async function kernelEntries(ns: string): Promise<string[]> {
  const routes = await ipJson<Array<{ dst: string; gateway: string; flags: string[]; protocol: string }>>(ns, 'route', 'show', 'dev', 'flannel.1');
  const neigh = await ipJson<Array<{ dst: string; lladdr: string; state: string[] }>>(ns, 'neigh', 'show', 'dev', 'flannel.1');
  const fdb = await bridgeJson<Array<{ mac: string; dst?: string; state?: string; flags?: string[] }>>(ns, 'fdb', 'show', 'dev', 'flannel.1');
  return [
    ...routes.map((r) => `route ${r.dst} via ${r.gateway} ${r.flags.join(',')} proto ${r.protocol}`),
    ...neigh.map((n) => `neigh ${n.dst} ${n.lladdr} ${n.state.join(',')}`),
    ...fdb.filter((f) => f.dst).map((f) => `fdb ${f.mac} ${f.dst} ${f.state} ${(f.flags ?? []).join(',')}`),
  ].sort();
}

const entriesOf = (i: number, mac = `02:00:00:00:00:${i.toString(16).padStart(2, '0')}`) => [
  `route 10.244.${i}.0/24 via 10.244.${i}.0 onlink proto 84`,
  `neigh 10.244.${i}.0 ${mac} PERMANENT`,
  `fdb ${mac} 198.51.100.${i} permanent self`,
];

test('incremental runs leave exactly what the leases say in the kernel, before they return; a full run then writes nothing', async (t) => {
  const { ns, nl } = await vtepHost(t, 'rkern');
  const r = new Reconciler(nl, hostContext('10.244.1.0/24'), silentLogger);
  t.after(() => r.close());
  r.setLeases([peer(2), peer(3), peer(4)]);
  assert.equal((await r.reconcile('start')).writes, 9);
  assert.deepEqual(await kernelEntries(ns), [...entriesOf(2), ...entriesOf(3), ...entriesOf(4)].sort());

  r.updateLeases([
    { type: 'removed', lease: peer(2) },
    { type: 'changed', lease: peer(3, '02:00:00:00:aa:03') },
    { type: 'added', lease: peer(5) },
  ]);
  const incremental = await r.reconcile('leases', 'incremental');
  // Peer 2: route, neighbour and FDB entry deleted; peer 3: old FDB entry deleted, neighbour and FDB replaced; peer 5: three.
  assert.equal(incremental.writes, 3 + 3 + 3);
  assert.equal(incremental.failed, 0);
  assert.deepEqual(await kernelEntries(ns), [...entriesOf(3, '02:00:00:00:aa:03'), ...entriesOf(4), ...entriesOf(5)].sort());

  const full = await r.reconcile('periodic');
  assert.equal(full.writes, 0);
  assert.equal(full.programmed, 3);
});
