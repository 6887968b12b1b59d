/**
 * The lab's liveness check: a process that exited but was not reaped yet (a zombie) accepts signal 0 like a live
 * one, so `kill -0` alone would count it as running (an agent that died would look alive to `lab status` and to the
 * wait for convergence).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { waitFor } from '../../src/base/retry.js';
import { isAlive } from '../../src/lab/cluster.js';

test('an exited but unreaped process is not alive; a running one is; a PID that is gone is not', async (t) => {
  // sh starts a short-lived child, prints its PID, then becomes `sleep`, which never reaps it: a zombie.
  const parent = spawn('sh', ['-c', 'sleep 0.05 & echo $!; exec sleep 30'], { stdio: ['ignore', 'pipe', 'ignore'] });
  t.after(() => parent.kill('SIGKILL'));
  const pid = Number(await new Promise<string>((resolve) => parent.stdout.once('data', (d) => resolve(String(d).trim()))));
  await waitFor(() => /^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8')), 10_000, 'the child to become a zombie');
  assert.doesNotThrow(() => process.kill(pid, 0), 'signal 0 still reaches a zombie');
  assert.equal(isAlive(pid), false, 'a zombie is not alive');
  assert.equal(isAlive(parent.pid!), true, 'the running parent is');
  parent.kill('SIGKILL');
  await new Promise((r) => parent.once('exit', r));
  await waitFor(() => !isAlive(parent.pid!), 10_000, 'the killed parent to be gone');
});
