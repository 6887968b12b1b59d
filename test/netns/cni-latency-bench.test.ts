// Smoke run of bench/cni-latency (quick: 8 pods per side): the result has the shape the benchmark report reads, the
// benchmark itself checked that both hosts were empty after the DELs, and it leaves no namespace behind. No timing
// is asserted.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { run } from '../../bench/cni-latency.js';
import { listNetns } from '../../src/netns/netns.js';
import { requireRoot } from '../helpers/netns.js';

requireRoot();

test('cni-latency benchmark, quick: result shape, both sides verified, nothing left behind', async () => {
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
    for (const side of [r.tulle, r.reference]) {
      assert.ok(side.p50 > 0 && side.p99 >= side.p50 && side.mean > 0, `${c}: ${JSON.stringify(side)}`);
    }
    assert.ok(Math.abs(r.ratio - r.tulle.p50 / r.reference.p50) < 0.01 * r.ratio + 0.01, `${c} ratio ${r.ratio}`);
    assert.equal(r.goal, 2);
    assert.equal(r.met, r.ratio <= 2);
  }
  assert.equal(result.met, result.results.ADD.met && result.results.DEL.met);
  assert.ok(result.nodeStartup.p50 > 0 && result.nodeStartup.p99 >= result.nodeStartup.p50);
  assert.match(result.goal, /within 2x/);
  assert.deepEqual(listNetns(prefix), [], 'the benchmark removed its namespaces');
});
