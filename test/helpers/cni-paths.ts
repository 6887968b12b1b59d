/**
 * The two ways a runtime's call reaches tulle-cni, for running the CNI tests against both:
 *   resident  the compiled shim, forwarding to a CNI server running in the test's host namespace
 *   fallback  the same shim with no server to talk to, so it execs the Node plugin (bin/tulle-cni)
 * TULLE_TEST_CNI_PATHS=resident (or fallback) narrows a run to one of them.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export type CniPath = 'resident' | 'fallback';

/** build/Release/tulle-cni-shim (this file runs from dist/test/helpers/). */
export const SHIM = fileURLToPath(new URL('../../../build/Release/tulle-cni-shim', import.meta.url));
const SERVER_MAIN = fileURLToPath(new URL('./cni-server-main.js', import.meta.url));

export const CNI_PATHS: CniPath[] = (process.env.TULLE_TEST_CNI_PATHS?.split(',') as CniPath[] | undefined) ?? ['resident', 'fallback'];

/** What to add to a cniInvoke for one path: the executable and its environment. */
export interface CniRoute {
  plugin: string;
  env: Record<string, string>;
}

export interface CniServerProcess {
  pid: number;
  socket: string;
  /** The server's log lines so far (JSON). */
  log(): string[];
  /** SIGKILL: the agent dying mid-run. */
  kill(): Promise<void>;
}

/** Start a CNI server inside namespace `ns` on `o.socket` or a socket in a fresh temporary directory; stopped after `t`. */
export async function startCniServer(
  t: { after(fn: () => unknown): void },
  ns: string,
  o: { readTimeoutMs?: number; socket?: string; hooksFile?: string } = {},
): Promise<CniServerProcess> {
  if (!existsSync(SHIM)) throw new Error(`${SHIM} is missing: build it with npm ci (or node-gyp rebuild)`);
  const dir = mkdtempSync(join(tmpdir(), 'tulle-cni-sock-'));
  const socket = o.socket ?? join(dir, 'cni.sock');
  const child = spawn(
    'ip',
    [
      'netns',
      'exec',
      ns,
      process.execPath,
      SERVER_MAIN,
      socket,
      ...(o.readTimeoutMs || o.hooksFile ? [String(o.readTimeoutMs ?? 0)] : []),
      ...(o.hooksFile ? [o.hooksFile] : []),
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const lines: string[] = [];
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
    const parts = stderr.split('\n');
    stderr = parts.pop()!;
    lines.push(...parts);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout.setEncoding('utf8').on('data', (d: string) => d.includes('ready') && resolve());
    child.once('exit', (code) => reject(new Error(`CNI server exited (${code}) before it was ready: ${lines.join('\n')}${stderr}`)));
  });
  return {
    pid: child.pid!,
    socket,
    log: () => [...lines],
    kill: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
    },
  };
}

/** The route for `path` in host namespace `ns` (resident: starts the server there). */
export async function cniRoute(t: { after(fn: () => unknown): void }, ns: string, path: CniPath): Promise<CniRoute> {
  if (path === 'fallback') return { plugin: SHIM, env: { TULLE_CNI_SOCKET: '/nonexistent/tulle-test/cni.sock' } };
  const server = await startCniServer(t, ns);
  return { plugin: SHIM, env: { TULLE_CNI_SOCKET: server.socket } };
}

/** The addresses the plugin's IPAM holds for network "tulle" under a CNI data dir (one file per address), sorted. */
export function ipamFiles(host: { dataDir: string }): string[] {
  const dir = join(host.dataDir, 'tulle');
  return existsSync(dir)
    ? readdirSync(dir)
        .filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f))
        .sort()
    : [];
}
