import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Coalescer } from '../../src/base/coalesce.js';

/** A job whose runs end when the test says so. */
function gatedJob() {
  const gates: Array<(v: number) => void> = [];
  return {
    job: () => new Promise<number>((resolve) => gates.push(resolve)),
    release: (i: number, v: number) => gates[i]!(v),
    get runs() {
      return gates.length;
    },
  };
}

test('requests made during a run share exactly one follow-up run; a failed run does not block the next', async () => {
  const c = new Coalescer<number>();
  const g = gatedJob();
  const first = c.run(g.job);
  const during = [c.run(g.job), c.run(g.job), c.run(g.job)];
  assert.equal(g.runs, 1, 'the follow-up waits for the run in progress');
  assert.ok(
    during.every((p) => p === during[0]),
    'every request meanwhile gets the same promise',
  );
  g.release(0, 1);
  assert.equal(await first, 1);
  await new Promise((r) => setImmediate(r));
  assert.equal(g.runs, 2, 'exactly one more run');
  g.release(1, 2);
  assert.deepEqual(await Promise.all(during), [2, 2, 2]);

  let fail = true;
  const failing = c.run(async () => {
    if (fail) throw new Error('refused');
    return 0;
  });
  const after = c.run(async () => 3);
  fail = false;
  await assert.rejects(failing, /refused/);
  assert.equal(await after, 3, 'the run after a failure still happens');
});
