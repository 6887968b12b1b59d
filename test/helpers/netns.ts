/**
 * Fresh network namespaces for one test: unique names (`t-<pid>-<random>-<label>`) so parallel runs never
 * collide, removed after the test whether it passed or failed.
 */
import { randomBytes } from 'node:crypto';
import type { TestContext } from 'node:test';
import { createNetns, deleteNetns, deleteNetnsSync } from '../../src/netns/netns.js';
import { run, runJson } from '../../src/base/exec.js';

const created = new Set<string>();
process.on('exit', () => {
  for (const name of created) deleteNetnsSync(name);
});

export function uniqueName(label: string): string {
  return `t-${process.pid}-${randomBytes(3).toString('hex')}-${label}`.slice(0, 60);
}

/** A new namespace with `lo` up, deleted when the test (or suite) `t` ends. */
export async function freshNetns(t: Pick<TestContext, 'after'> | { after(fn: () => unknown): void }, label = 'ns'): Promise<string> {
  const name = uniqueName(label);
  await createNetns(name);
  created.add(name);
  t.after(async () => {
    await deleteNetns(name);
    created.delete(name);
  });
  return name;
}

/** `ip -n NS -d -j ARGS...` parsed. */
export function ipJson<T = any>(ns: string, ...args: string[]): Promise<T> {
  return runJson<T>(['ip', '-n', ns, '-d', '-j', ...args]);
}

/** `bridge -n NS -j ARGS...` parsed. */
export function bridgeJson<T = any>(ns: string, ...args: string[]): Promise<T> {
  return runJson<T>(['bridge', '-n', ns, '-j', ...args]);
}

/** `ip -n NS ARGS...` (throws on failure). */
export async function ip(ns: string, ...args: string[]): Promise<string> {
  return (await run(['ip', '-n', ns, ...args])).stdout;
}

/** Fail clearly (not skip) when the suite is not run as root. */
export function requireRoot(): void {
  if (process.getuid?.() !== 0) throw new Error('this test creates network namespaces and needs root: run it as root (sudo npm test)');
}
