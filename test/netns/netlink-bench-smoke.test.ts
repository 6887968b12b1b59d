/**
 * Smoke run of bench/netlink-program (quick sizes): the result has the shape the benchmark report reads, and the
 * kernel state both sides built is right, entry for entry, as iproute2 reads it. No timing is asserted.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bridgeJson, ipJson, requireRoot } from '../helpers/netns.js';
import { run, type Peer } from '../../bench/netlink-program.js';
import { TULLE_ROUTE_PROTOCOL } from '../../src/netlink/index.js';

requireRoot();

test('netlink-program benchmark, quick: result shape and the kernel state of both sides', async () => {
  const inspected: string[] = [];
  const inspect = async (ns: string, side: 'tulle' | 'iproute2', peers: Peer[]): Promise<void> => {
    const [neigh, fdb, routes] = await Promise.all([
      ipJson(ns, 'neigh', 'show', 'dev', 'flannel.1'),
      bridgeJson(ns, 'fdb', 'show', 'dev', 'flannel.1'),
      ipJson(ns, 'route', 'show', 'dev', 'flannel.1'),
    ]);
    const expectNeigh = peers.map((p) => `${p.vtepIP} ${p.mac} PERMANENT`).sort();
    const expectFdb = peers.map((p) => `${p.mac} ${p.publicIP} self permanent`).sort();
    const expectRoutes = peers.map((p) => `${p.subnet} via ${p.vtepIP} proto ${TULLE_ROUTE_PROTOCOL} onlink`).sort();
    assert.deepEqual(neigh.map((n: any) => `${n.dst} ${n.lladdr} ${n.state.join(',')}`).sort(), expectNeigh, `${side} neighbours`);
    assert.deepEqual(fdb.map((f: any) => `${f.mac} ${f.dst} ${f.flags.join(',')} ${f.state}`).sort(), expectFdb, `${side} FDB`);
    assert.deepEqual(routes.map((r: any) => `${r.dst} via ${r.gateway} proto ${r.protocol} ${r.flags.join(',')}`).sort(), expectRoutes, `${side} routes`);
    inspected.push(`${side}:${peers.length}`);
  };
  const result = await run({ quick: true, inspect });
  assert.equal(result.name, 'netlink-program');
  assert.ok(!Number.isNaN(Date.parse(result.date)));
  assert.ok(result.machine.cores >= 1 && result.machine.kernel.length > 0 && result.machine.node.startsWith('v'));
  assert.equal(result.quick, true);
  assert.equal(result.verified, true);
  assert.deepEqual(
    result.results.map((r) => r.size),
    result.sizes,
  );
  for (const r of result.results) {
    assert.ok(r.tulleMs > 0 && r.iprouteMs > 0);
    // ratio comes from the unrounded medians; the ms fields are rounded to 0.1 ms, which moves their quotient by up
    // to (0.05 / tulleMs + 0.05 / iprouteMs) of itself (a lot for a quick run's few milliseconds); ratio has 3 decimals
    const rounding = (r.tulleMs / r.iprouteMs) * (0.05 / r.tulleMs + 0.05 / r.iprouteMs) * 1.01 + 0.0005;
    assert.ok(Math.abs(r.ratio - r.tulleMs / r.iprouteMs) <= rounding, `ratio ${r.ratio} vs ${r.tulleMs}/${r.iprouteMs}`);
    assert.equal(r.goal, 1);
    assert.equal(r.met, r.ratio <= r.goal);
  }
  assert.deepEqual(inspected.sort(), result.sizes.flatMap((n) => [`iproute2:${n}`, `tulle:${n}`]).sort());
});
