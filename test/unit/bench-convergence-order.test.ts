// The convergence benchmark's guard comparison: the order its joins run in, and the options it refuses before
// building a lab. The figures themselves come from a lab (test/e2e/bench-quick.test.ts runs it at quick size).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { abbaOrder, run } from '../../bench/convergence.js';

test('joins alternate the guard in ABBA blocks: as many on as off, and as many restarts into each setting (±1)', () => {
  assert.deepEqual(abbaOrder(2), [true, false, false, true]);
  assert.deepEqual(abbaOrder(6), [true, false, false, true, true, false, false, true, true, false, false, true]);
  assert.deepEqual(abbaOrder(4, 2), [true, true, false, false, false, false, true, true]);
  assert.deepEqual(abbaOrder(6, 3), [true, true, true, false, false, false, false, false, false, true, true, true]);
  for (const inARow of [1, 2, 3]) {
    for (let k = inARow; k <= 9 * inARow; k += inARow) {
      const order = abbaOrder(k, inARow);
      assert.equal(order.length, 2 * k);
      assert.equal(order.filter(Boolean).length, k, `k=${k}, ${inARow} in a row: joins with the guard`);
      // A start (the lab's, or a restart with the other setting) is followed by an unmeasured warm-up join.
      const starts = { on: 0, off: 0 };
      order.forEach((g, i) => {
        if (i === 0 || g !== order[i - 1]) starts[g ? 'on' : 'off']++;
      });
      assert.ok(Math.abs(starts.on - starts.off) <= 1, `k=${k}: starts ${JSON.stringify(starts)}`);
      // Joins in runs of inARow: as many restarts as the order of k / inARow joins has.
      const restarts = (o: boolean[]) => o.filter((g, i) => i > 0 && g !== o[i - 1]).length;
      assert.equal(restarts(order), restarts(abbaOrder(k / inARow)), `k=${k}, ${inARow} in a row: restarts`);
      // Never more than two slots in a row with one setting: a slow drift in the machine's load hits both alike.
      assert.ok(!order.some((g, i) => i >= 2 * inARow && order.slice(i - 2 * inARow, i + 1).every((x) => x === g)), `k=${k}: ${order.join(',')}`);
    }
  }
});

test('hostile sizes and join counts are refused by name before any lab is built', async () => {
  for (const joinsPerSetting of [0, -1, 1.5, Number.NaN]) {
    await assert.rejects(run({ quick: true, joinsPerSetting }), new RegExp(`^Error: joinsPerSetting: ${joinsPerSetting} is not a positive integer`));
  }
  for (const joinsInARow of [0, -2, 0.5]) {
    await assert.rejects(run({ quick: true, joinsInARow }), new RegExp(`^Error: joinsInARow: ${joinsInARow} is not a positive integer`));
  }
  await assert.rejects(run({ quick: true, joinsPerSetting: 5, joinsInARow: 2 }), /^Error: joinsPerSetting: 5 is not a multiple of joinsInARow \(2\)/);
  for (const n of [1, 0, 2.5]) {
    await assert.rejects(run({ quick: true, sizes: [n] }), new RegExp(`^Error: sizes: ${n} is not a lab size`));
  }
});
