// Smoke run of bench/cni-latency (quick: 8 pods per side): the result has the shape the benchmark report reads, the
// benchmark itself checked that every host was empty after the DELs and that the CNI server answered the resident
// calls, and it leaves no namespace behind. No timing is asserted.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { run } from '../../bench/cni-latency.js';
import { listNetns } from '../../src/netns/netns.js';
import { requireRoot } from '../helpers/netns.js';

requireRoot();

test('cni-latency benchmark, quick: result shape, all three sides verified, nothing left behind', async () => {
  const prefix = `t-bench-${process.pid}-`;
  const result = await run({ quick: true });
  assert.equal(result.name, 'cni-latency');
  assert.ok(!Number.isNaN(Date.parse(result.date)));
  assert.ok(result.machine.cores >= 1 && result.machine.kernel.length > 0 && result.machine.node.startsWith('v'));
  assert.equal(result.quick, true);
  assert.equal(result.sizes.pods, 7, 'one untimed warm-up pod of 8');
  assert.equal(result.verified, true);
  for (const c of ['ADD', 'DEL'] as const) {
    const r = result.results[c];
    for (const side of [r.tulle, r.fallback, r.reference]) {
      assert.ok(side.p50 > 0 && side.p99 >= side.p50 && side.mean > 0 && side.samples === 7, `${c}: ${JSON.stringify(side)}`);
    }
    assert.ok(Math.abs(r.ratio - r.tulle.p50 / r.reference.p50) < 0.01 * r.ratio + 0.01, `${c} ratio ${r.ratio}`);
    assert.ok(Math.abs(r.fallbackRatio - r.fallback.p50 / r.reference.p50) < 0.01 * r.fallbackRatio + 0.01, `${c} fallback ratio ${r.fallbackRatio}`);
    assert.deepEqual([r.goal, r.goalP99, r.fallbackGoal], [1, 2, 2]);
    assert.equal(r.met, r.tulle.p50 <= r.reference.p50 && r.tulle.p99 <= 2 * r.reference.p99);
  }
  const s = result.results.STATUS;
  assert.ok(s.tulle.p50 > 0 && s.fallback.p50 > 0 && s.tulle.samples === 7);
  assert.equal(s.met, s.tulle.p50 <= 5);
  assert.equal(result.met, result.results.ADD.met && result.results.DEL.met && s.met);
  assert.ok(result.nodeStartup.p50 > 0 && result.nodeStartup.p99 >= result.nodeStartup.p50);
  assert.ok(result.execFloor.p50 > 0 && result.execFloor.samples === 7);
  assert.match(result.goal, /ratio <= 1/);
  assert.deepEqual(listNetns(prefix), [], 'the benchmark removed its namespaces');
});
