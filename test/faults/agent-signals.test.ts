/**
 * Fault: SIGTERM or SIGINT at any moment of the agent's life — at every start-up step it logs, and at random
 * delays after it was started. Expected: the agent is gone within 1 s with exit code 0 each time, and the next
 * agent on that host starts and gets ready (nothing left holding its health port, its lease or its VTEP in a
 * half state).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../../src/base/exec.js';
import { waitFor } from '../../src/base/retry.js';
import { TULLE_BIN } from '../../src/lab/index.js';
import { underlay } from '../helpers/agent.js';
import { freshNetns, requireRoot } from '../helpers/netns.js';

/** The lines the agent logs on its way to ready, in order (each one a moment to be stopped at). */
const STAGES = ['agent starting', 'waiting for the network config', 'network config', 'underlay', 'lease acquired', 'VTEP ', 'traffic rules', 'ready'];

function startAgent(ns: string, args: string[]) {
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, TULLE_BIN, 'agent', ...args], {
    env: { ...process.env, TULLE_LOG_FORMAT: 'json' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  child.stderr.on('data', (d) => (log += d));
  const exited = new Promise<{ code: number | null; by: string | null; at: number }>((resolve) =>
    child.on('exit', (code, by) => resolve({ code, by, at: performance.now() })),
  );
  return {
    child,
    log: () => log,
    exited,
    /** Send the signal; resolves with the exit code and how long the exit took. */
    async signal(name: 'SIGTERM' | 'SIGINT') {
      const sent = performance.now();
      child.kill(name);
      const { code, by, at } = await exited;
      return { code, by, ms: Math.max(0, at - sent) };
    },
  };
}

test('SIGTERM or SIGINT at every start-up step and at random moments: the agent is gone within 1 s, and the next one starts', async (t) => {
  requireRoot();
  const ns = await freshNetns(t, 'sig');
  await underlay(ns, 'eth0', '192.0.2.11/24');
  const dir = mkdtempSync(join(tmpdir(), 'tulle-sig-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const store = `sqlite:${join(dir, 'store.db')}`;
  const args = ['--store', store, '--subnet-file', join(dir, 'subnet.env'), '--state-dir', join(dir, 'state'), '--cni-socket', join(dir, 'cni.sock')];
  const writeConfig = () => run([process.execPath, TULLE_BIN, 'config', 'put', '--store', store, '-'], { input: '{"Network":"10.244.0.0/16"}' });
  // The store starts without a config, so that the wait for it is a moment to be stopped at too.
  await run([process.execPath, TULLE_BIN, 'config', 'put', '--store', store, '--prefix', '/other', '-'], { input: '{"Network":"10.9.0.0/16"}' });

  const figures: string[] = [];
  let worst = 0;
  const stopAndCheck = async (agent: ReturnType<typeof startAgent>, moment: string, signal: 'SIGTERM' | 'SIGINT') => {
    const { code, by, ms } = await agent.signal(signal);
    worst = Math.max(worst, ms);
    figures.push(`${moment}: ${Math.round(ms)} ms`);
    // Before Node has installed the agent's handlers the signal's default action ends it, which is as good.
    assert.ok(code === 0 || by === signal, `${moment}: exit code 0 (or ended by the signal itself) after ${signal}, got ${code ?? by}\n${agent.log()}`);
    assert.ok(ms < 1000, `${moment}: gone within 1 s after ${signal} (took ${Math.round(ms)} ms)\n${agent.log()}`);
    // Ended because every handle was closed, not by the last-resort exit.
    assert.doesNotMatch(agent.log(), /still running a second after the stop signal/, moment);
  };

  let configured = false;
  for (const [i, stage] of STAGES.entries()) {
    const agent = startAgent(ns, args);
    await waitFor(() => agent.log().includes(`"msg":"${stage}`), 20_000, `the agent to log "${stage}"`);
    if (stage === 'waiting for the network config' && !configured) {
      await stopAndCheck(agent, `while ${stage}`, 'SIGTERM');
      await writeConfig();
      configured = true;
      continue;
    }
    await stopAndCheck(agent, `at "${stage}"`, i % 2 ? 'SIGINT' : 'SIGTERM');
  }

  // Random moments, including the very start (before the signal handlers exist) and the middle of a step.
  const delays = [0, 5, 15, 30, 50, 80, 120, 180, 260, 400];
  for (const d of delays) {
    const agent = startAgent(ns, args);
    await new Promise((r) => setTimeout(r, d + Math.random() * 10));
    await stopAndCheck(agent, `after ${d} ms`, 'SIGTERM');
  }

  // The next agent on this host starts, takes the same lease and port, and is ready.
  const last = startAgent(ns, args);
  await waitFor(() => last.log().includes('"msg":"ready"'), 20_000, 'the next agent to be ready');
  assert.doesNotMatch(last.log(), /EADDRINUSE|internal error/);
  await stopAndCheck(last, 'ready again', 'SIGTERM');
  t.diagnostic(`${figures.length} stops, slowest exit ${Math.round(worst)} ms: ${figures.join(', ')}`);
});
