/**
 * Named network namespaces, exactly as iproute2 keeps them: a bind-mounted file under /run/netns/<name>, so
 * that `ip netns list`, `ip netns exec` and every other tool sees the same ones. Creating and deleting goes
 * through `ip netns add|del` (it does the unshare + bind mount that a Node thread cannot do safely); running a
 * program inside one goes through `ip netns exec`, which also remounts /sys for that namespace.
 */
import { existsSync, readdirSync } from 'node:fs';
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { TulleError } from '../base/errors.js';
import { run, runSync, type RunOptions, type RunResult } from '../base/exec.js';

export const NETNS_DIR = '/run/netns';

export class NetnsError extends TulleError {
  constructor(message: string, cause?: unknown) {
    super('TLE_NETNS', message, { cause });
  }
}

/** Linux limits a namespace name only by the file name; we keep to what iproute2 accepts and log files read well. */
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

export function assertNetnsName(name: string): void {
  if (!NAME_RE.test(name)) throw new NetnsError(`network namespace name ${JSON.stringify(name)} is invalid (letters, digits, '_', '.', '-'; at most 63)`);
}

export function netnsPath(name: string): string {
  assertNetnsName(name);
  return `${NETNS_DIR}/${name}`;
}

export function netnsExists(name: string): boolean {
  return existsSync(netnsPath(name));
}

/** `ip netns add NAME`, then `ip link set lo up` inside it (a namespace without lo cannot even ping itself). */
export async function createNetns(name: string): Promise<string> {
  assertNetnsName(name);
  if (netnsExists(name)) throw new NetnsError(`network namespace ${name} already exists`);
  await run(['ip', 'netns', 'add', name]);
  await run(['ip', '-n', name, 'link', 'set', 'lo', 'up']);
  return netnsPath(name);
}

/** `ip netns del NAME`; a namespace that is already gone is not an error (deletion is idempotent). */
export async function deleteNetns(name: string): Promise<void> {
  assertNetnsName(name);
  if (!netnsExists(name)) return;
  const r = await run(['ip', 'netns', 'del', name], { allowFailure: true });
  if (r.status !== 0 && netnsExists(name)) throw new NetnsError(`ip netns del ${name}: ${r.stderr.trim()}`);
}

/** Synchronous delete for exit handlers. */
export function deleteNetnsSync(name: string): void {
  if (!NAME_RE.test(name) || !existsSync(`${NETNS_DIR}/${name}`)) return;
  runSync(['ip', 'netns', 'del', name], { allowFailure: true });
}

/** Names of all named namespaces, optionally only those starting with `prefix`. */
export function listNetns(prefix = ''): string[] {
  if (!existsSync(NETNS_DIR)) return [];
  return readdirSync(NETNS_DIR)
    .filter((n) => n.startsWith(prefix))
    .sort();
}

/** `ip netns exec NAME ARGV...` to completion. */
export function execIn(name: string, argv: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  assertNetnsName(name);
  return run(['ip', 'netns', 'exec', name, ...argv], options);
}

/** Start a long-running program inside a namespace (`ip netns exec NAME ARGV...`); the caller owns the child. */
export function spawnIn(name: string, argv: readonly string[], options: SpawnOptions = {}): ChildProcess {
  assertNetnsName(name);
  return spawn('ip', ['netns', 'exec', name, ...argv], options);
}

/** PIDs of processes whose network namespace is `name` (what `ip netns pids NAME` prints). */
export async function netnsPids(name: string): Promise<number[]> {
  if (!netnsExists(name)) return [];
  const r = await run(['ip', 'netns', 'pids', name], { allowFailure: true });
  return r.stdout.split(/\s+/).filter(Boolean).map(Number);
}
