// The convergence benchmark's guard comparison: the order its joins run in, and the options it refuses before
// building a lab. The figures themselves come from a lab (test/e2e/bench-quick.test.ts runs it at quick size).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { abbaOrder, run } from '../../bench/convergence.js';

test('joins alternate the guard in ABBA blocks: as many on as off, and as many restarts into each setting (±1)', () => {
  assert.deepEqual(abbaOrder(2), [true, false, false, true]);
  assert.deepEqual(abbaOrder(6), [true, false, false, true, true, false, false, true, true, false, false, true]);
  for (let k = 1; k <= 9; k++) {
    const order = abbaOrder(k);
    assert.equal(order.length, 2 * k);
    assert.equal(order.filter(Boolean).length, k, `k=${k}: joins with the guard`);
    // A start (the lab's, or a restart with the other setting) is followed by an unmeasured warm-up join.
    const starts = { on: 0, off: 0 };
    order.forEach((g, i) => {
      if (i === 0 || g !== order[i - 1]) starts[g ? 'on' : 'off']++;
    });
    assert.ok(Math.abs(starts.on - starts.off) <= 1, `k=${k}: starts ${JSON.stringify(starts)}`);
    // Never more than two joins in a row with one setting: a slow drift in the machine's load hits both alike.
    assert.ok(!order.some((g, i) => i >= 2 && g === order[i - 1] && g === order[i - 2]), `k=${k}: ${order.join(',')}`);
  }
});

test('hostile sizes and join counts are refused by name before any lab is built', async () => {
  for (const joinsPerSetting of [0, -1, 1.5, Number.NaN]) {
    await assert.rejects(run({ quick: true, joinsPerSetting }), new RegExp(`^Error: joinsPerSetting: ${joinsPerSetting} is not a positive integer`));
  }
  for (const n of [1, 0, 2.5]) {
    await assert.rejects(run({ quick: true, sizes: [n] }), new RegExp(`^Error: sizes: ${n} is not a lab size`));
  }
});
