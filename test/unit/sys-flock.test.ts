/**
 * flock() through the native binding, as tulle-cni uses it on host-local's lock file: exclusive locks exclude
 * each other across open file descriptions, a blocking lock waits (off the event loop) until released, and
 * errors carry the errno name.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { LockError, flock, tryFlock } from '../../src/sys/flock.js';
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
  // The holder is another process (util-linux flock(1), as host-local's plugin processes would be) that keeps the
  // lock until it is killed. Were flock() to wait on the loop's own thread, it would return only once the holder
  // gave up (after 60 s) and `granted` would already be true below: a failure, not a hang.
  const file = lockFile(t);
  // Its own process group, so ending it by its PID also ends the sleep it runs.
  const holder = spawn('flock', ['--exclusive', file, 'sh', '-c', 'echo held; exec sleep 60'], { stdio: ['ignore', 'pipe', 'inherit'], detached: true });
  const end = (): void => {
    try {
      process.kill(-holder.pid!, 'SIGKILL');
    } catch {
      /* already gone */
    }
  };
  t.after(end);
  await new Promise<void>((resolve, reject) => {
    holder.stdout.once('data', () => resolve());
    holder.once('exit', (code) => reject(new Error(`flock(1) ended (${code}) before taking the lock`)));
  });
  const b = openSync(file, 'r');
  t.after(() => closeSync(b));
  assert.equal(tryFlock(b, 'exclusive'), false, 'the other process holds the lock');
  let granted = false;
  const waiting = flock(b, 'exclusive').then(() => (granted = true));
  await sleep(50); // a timer fires while b waits
  assert.equal(granted, false, 'timers run while the lock is still held elsewhere');
  end(); // the holder's lock goes with its processes
  await waiting;
  assert.equal(granted, true);
  const c = openSync(file, 'r');
  t.after(() => closeSync(c));
  assert.equal(tryFlock(c, 'shared'), false, 'b holds the lock now');
});

test('errors name the errno; bad arguments are refused before the system call', async () => {
  await assert.rejects(
    flock(987654, 'exclusive'),
    (e: unknown) =>
      e instanceof LockError && e.errno === 'EBADF' && e.code === 'TLE_LOCK' && /flock fd 987654 exclusive: EBADF \(Bad file descriptor\)/.test(e.message),
  );
  assert.throws(() => tryFlock(-1, 'exclusive'), InvalidValueError);
  await assert.rejects(flock(0, 'sideways' as never), InvalidValueError);
});
