/**
 * A real `tulle agent` process inside a test's namespace: the namespace with an SQLite store holding a network
 * config, an underlay veth, and the agent run to completion or started and stopped by PID.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from '../../src/base/exec.js';
import { freshNetns } from './netns.js';

export const TULLE = fileURLToPath(new URL('../../../bin/tulle', import.meta.url));

export interface Host {
  ns: string;
  dir: string;
  store: string;
  args: string[];
}

/** A namespace, a temp dir, and an SQLite store holding a network config. */
export async function host(t: { after(fn: () => unknown): void }, label: string, config = '{"Network":"10.244.0.0/16"}'): Promise<Host> {
  const ns = await freshNetns(t, label);
  const dir = mkdtempSync(join(tmpdir(), 'tulle-agent-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const store = `sqlite:${join(dir, 'store.db')}`;
  await run([process.execPath, TULLE, 'config', 'put', '--store', store], { input: config });
  return {
    ns,
    dir,
    store,
    args: ['--store', store, '--subnet-file', join(dir, 'subnet.env'), '--state-dir', join(dir, 'state'), '--cni-socket', join(dir, 'cni.sock')],
  };
}

export { underlay } from './netns.js';

/** Run the agent to completion (it must exit by itself within the timeout). */
export function agentExits(h: Host, extra: string[] = [], timeoutMs = 20_000) {
  return run(['ip', 'netns', 'exec', h.ns, process.execPath, TULLE, 'agent', ...h.args, ...extra], {
    allowFailure: true,
    timeoutMs,
    env: { ...process.env, TULLE_LOG_FORMAT: 'json' },
  });
}

/** Start the agent; the caller stops it with stop() (SIGTERM, by PID). */
export function agentRuns(h: Host, extra: string[] = []) {
  const child = spawn('ip', ['netns', 'exec', h.ns, process.execPath, TULLE, 'agent', ...h.args, ...extra], {
    env: { ...process.env, TULLE_LOG_FORMAT: 'json' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  child.stderr.on('data', (d) => (log += d));
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  return {
    log: () => log,
    async stop() {
      child.kill('SIGTERM');
      return exited;
    },
  };
}

export function lastLine(stderr: string): string {
  return stderr.trim().split('\n').pop()!;
}

export async function noVtep(ns: string): Promise<boolean> {
  return (await run(['ip', '-n', ns, 'link', 'show', 'flannel.1'], { allowFailure: true })).status !== 0;
}
