/**
 * flock() through the native binding, as tulle-cni uses it on host-local's lock file: exclusive locks exclude
 * each other across open file descriptions, a blocking lock waits (off the event loop) until released, and
 * errors carry the errno name.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { LockError, flock, tryFlock } from '../../src/netlink/index.js';
import { InvalidValueError } from '../../src/base/errors.js';

function lockFile(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'tulle-flock-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'lock');
  writeFileSync(file, '');
  return file;
}

test('an exclusive lock excludes another holder until unlocked; shared locks coexist', async (t) => {
  const file = lockFile(t);
  const a = openSync(file, 'r');
  const b = openSync(file, 'r');
  t.after(() => {
    closeSync(a);
    closeSync(b);
  });
  await flock(a, 'exclusive');
  assert.equal(tryFlock(b, 'exclusive'), false);
  assert.equal(tryFlock(b, 'shared'), false);
  await flock(a, 'unlock');
  assert.equal(tryFlock(b, 'shared'), true);
  assert.equal(tryFlock(a, 'shared'), true);
  assert.equal(tryFlock(a, 'exclusive'), false, 'b still holds a shared lock');
});

test('a blocking lock waits for the holder without blocking the event loop', async (t) => {
  const file = lockFile(t);
  const a = openSync(file, 'r');
  const b = openSync(file, 'r');
  t.after(() => {
    closeSync(a);
    closeSync(b);
  });
  assert.equal(tryFlock(a, 'exclusive'), true);
  let granted = false;
  const waiting = flock(b, 'exclusive').then(() => (granted = true));
  let ticks = 0;
  for (let i = 0; i < 5; i++) {
    await sleep(10); // timers keep firing: the loop is free while b waits
    ticks++;
  }
  assert.equal(ticks, 5);
  assert.equal(granted, false);
  await flock(a, 'unlock');
  await waiting;
  assert.equal(granted, true);
  assert.equal(tryFlock(a, 'exclusive'), false);
});

test('errors name the errno; bad arguments are refused before the system call', async () => {
  await assert.rejects(flock(987654, 'exclusive'), (e: unknown) => e instanceof LockError && e.errno === 'EBADF' && e.code === 'TULLE_LOCK' && /flock fd 987654 exclusive: EBADF \(Bad file descriptor\)/.test(e.message));
  assert.throws(() => tryFlock(-1, 'exclusive'), InvalidValueError);
  await assert.rejects(flock(0, 'sideways' as never), InvalidValueError);
});
