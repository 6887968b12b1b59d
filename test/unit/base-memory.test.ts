import { test, mock } from 'node:test';
import assert from 'node:assert/strict';
import { getHeapSpaceStatistics } from 'node:v8';
import { BulkGc, BULK_GC_DEFAULTS, forcedGc, nextCollectionAt, type BulkGcState } from '../../src/base/memory.js';

const policy = { minEntries: 1000, quietMs: 100, maxWaitMs: 1000, minIntervalMs: 1000 };

test('nextCollectionAt: none below the threshold; after quiet, no later than maxWait, never within minInterval', () => {
  const s = (entries: number, dueSince: number | undefined, lastAt = -Infinity): BulkGcState => ({ entries, dueSince, lastAt });
  assert.equal(nextCollectionAt(s(999, undefined), 5000, policy), undefined, 'below minEntries: nothing due');
  assert.equal(nextCollectionAt(s(1000, 5000), 5000, policy), 5100, 'due: after quietMs');
  assert.equal(nextCollectionAt(s(3000, 5000), 5950, policy), 6000, 'runs keep coming: no later than dueSince + maxWaitMs');
  assert.equal(nextCollectionAt(s(3000, 5000), 9000, policy), 6000, 'overdue: at once (a time in the past)');
  assert.equal(nextCollectionAt(s(1000, 5000, 4500), 5000, policy), 5500, 'the last collection was 500 ms ago: at lastAt + minIntervalMs');
});

test('BulkGc: small runs add up; a burst of bulk runs costs one collection; close cancels a pending one', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'] });
  const collect = mock.fn();
  const gc = new BulkGc({ ...policy, collect, now: () => Date.now() });
  for (let i = 0; i < 9; i++) assert.equal(gc.noteRun(100), false, 'runs of 100 entries: not yet 1000 in all');
  assert.equal(gc.noteRun(0), false);
  assert.equal(gc.noteRun(100), true, 'the tenth run of 100 makes 1000: due');
  t.mock.timers.tick(99);
  assert.equal(collect.mock.callCount(), 0, 'waits quietMs');
  // A burst: a bulk run every 50 ms postpones it, but no longer than maxWaitMs after it became due.
  for (let i = 0; i < 30; i++) {
    gc.noteRun(3000);
    t.mock.timers.tick(50);
  }
  return new Promise<void>((resolve) =>
    setImmediate(() => {
      assert.equal(collect.mock.callCount(), 1, 'one collection within maxWaitMs of the burst start');
      assert.equal(gc.collections, 1);
      // Right after a collection: the next one waits for minIntervalMs.
      gc.noteRun(5000);
      t.mock.timers.tick(policy.quietMs);
      assert.equal(collect.mock.callCount(), 1, 'not within minIntervalMs of the last one');
      gc.close();
      t.mock.timers.tick(10 * policy.minIntervalMs);
      assert.equal(collect.mock.callCount(), 1, 'closed: the pending collection never runs');
      assert.equal(gc.noteRun(10_000), false, 'closed: nothing is scheduled any more');
      resolve();
    }),
  );
});

test('BulkGc: hostile entry counts (NaN, negative, Infinity) neither crash nor schedule by themselves', () => {
  const collect = mock.fn();
  const gc = new BulkGc({ ...policy, collect });
  try {
    assert.equal(gc.noteRun(NaN), false);
    assert.equal(gc.noteRun(-5000), false);
    assert.equal(gc.noteRun(Infinity), true, 'Infinity is more than enough entries');
  } finally {
    gc.close();
  }
  assert.equal(collect.mock.callCount(), 0);
  assert.ok(BULK_GC_DEFAULTS.minEntries >= 1000, 'the default threshold is bulk work, not a single peer');
});

test('forcedGc shrinks a grown young generation and leaves the process running (twice in a row)', async () => {
  const young = () => getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')!.space_size;
  // Grow the young generation the way bulk work does: many young objects that survive a few scavenges.
  const keep: unknown[] = [];
  for (let i = 0; i < 300_000; i++) {
    const o = { a: `x${i}`, b: [i, i + 1] };
    if (i % 10 === 0) keep.push(o);
  }
  const before = young();
  await forcedGc();
  await forcedGc();
  const after = young();
  assert.ok(after < before, `young generation ${before} -> ${after} bytes`);
  // Disconnecting the inspector session from inside its callback used to deadlock: the loop must still turn.
  await new Promise((resolve) => setTimeout(resolve, 10));
  assert.ok(keep.length > 0);
});
