/**
 * Tearing a lab down: end its processes, delete its namespaces, remove its directory. What to remove comes from
 * the state file AND from the namespace name prefix `tulle-<lab>-`, so it works after a crash mid-way through
 * `lab up`, after a lost state file, or twice in a row (idempotent).
 *
 * Processes: a recorded PID is signalled only while it still lives in one of the lab's namespaces (asked with
 * `ip netns pids`), so a PID the kernel has since given to an unrelated process is never hit. Any other process
 * still inside a lab namespace ends too: it would keep the namespace (and its veths) alive after `ip netns del`.
 */
import { existsSync, rmSync } from 'node:fs';
import { TulleError } from '../base/errors.js';
import { silentLogger, type Logger } from '../base/log.js';
import { sleep } from '../base/retry.js';
import { deleteNetns, listNetns, netnsExists, netnsPids } from '../netns/netns.js';
import { labPrefix } from './names.js';
import { labDir, LabStateError, readLabState, writeLabState, type LabState } from './state.js';
import { topologyNamespaces } from './topology.js';

export interface LabDownOptions {
  /** Labs directory (default `$TULLE_LAB_DIR` or /run/tulle/labs). */
  root?: string;
  /** How long processes get between SIGTERM and SIGKILL. */
  graceMs?: number;
  logger?: Logger;
}

export interface LabDownResult {
  name: string;
  /** Whether there was anything of the lab to remove. */
  existed: boolean;
  /** Namespaces deleted. */
  namespaces: string[];
  /** PIDs signalled. */
  stopped: number[];
  /** Recorded PIDs left alone because they no longer live in a lab namespace. */
  ignored: number[];
}

export class LabTeardownError extends TulleError {
  constructor(name: string, leftovers: string[]) {
    super('TLE_LAB_TEARDOWN', `lab ${JSON.stringify(name)} could not be removed completely; still present: ${leftovers.join(', ')}`);
  }
}

const DEFAULT_GRACE_MS = 3000;
const KILL_WAIT_MS = 3000;
const POLL_MS = 25;
const ROUNDS = 3;
const RECHECK_MS = 100;

/** Remove everything of lab `name`. Resolves with what was removed; `existed: false` when there was nothing. */
export async function labDown(name: string, options: LabDownOptions = {}): Promise<LabDownResult> {
  const prefix = labPrefix(name);
  const log = options.logger ?? silentLogger;
  const dir = labDir(name, options.root);

  let state: LabState | undefined;
  try {
    state = readLabState(name, options.root);
  } catch (err) {
    if (!(err instanceof LabStateError)) throw err;
    log.warn('lab state file unreadable; removing the lab by its namespace prefix', { lab: name, error: err });
  }
  if (state && state.status !== 'deleting') {
    state.status = 'deleting';
    writeLabState(state);
  }

  const recorded = state ? [...state.namespaces, ...topologyNamespaces(state)] : [];
  const namespaces = [...new Set([...recorded, ...listNetns(prefix)])].filter((ns) => ns.startsWith(prefix) && netnsExists(ns)).sort();
  const hadDir = existsSync(dir);

  const recordedPids = state?.processes.map((p) => p.pid) ?? [];
  const removed = new Set<string>();
  const stopped = new Set<number>();
  let ignored: number[] = [];
  let pending = namespaces;
  // A crashed `lab up` may leave `ip netns add` commands in flight that finish after the first pass: look again.
  for (let round = 0; pending.length > 0 && round < ROUNDS; round++) {
    if (round > 0) await sleep(RECHECK_MS);
    const r = await stopProcesses(pending, recordedPids, options.graceMs ?? DEFAULT_GRACE_MS, log);
    r.stopped.forEach((pid) => stopped.add(pid));
    if (round === 0) ignored = r.ignored;
    await Promise.all(pending.map((ns) => deleteNetns(ns)));
    pending.forEach((ns) => removed.add(ns));
    pending = listNetns(prefix);
  }
  rmSync(dir, { recursive: true, force: true });

  const leftovers = [...listNetns(prefix), ...(existsSync(dir) ? [dir] : [])];
  if (leftovers.length) throw new LabTeardownError(name, leftovers);
  const existed = Boolean(state) || hadDir || removed.size > 0;
  if (existed) log.info('lab removed', { lab: name, namespaces: removed.size, stopped: stopped.size });
  return { name, existed, namespaces: [...removed].sort(), stopped: [...stopped].sort((a, b) => a - b), ignored };
}

/** PIDs of every process living in one of `namespaces` (`ip netns pids NS` for each), never our own. */
async function pidsIn(namespaces: readonly string[]): Promise<Set<number>> {
  const lists = await Promise.all(namespaces.map((ns) => netnsPids(ns)));
  return new Set(lists.flat().filter((pid) => pid !== process.pid));
}

/** SIGTERM every process in the namespaces, SIGKILL those still there after `graceMs`. */
async function stopProcesses(
  namespaces: readonly string[],
  recorded: readonly number[],
  graceMs: number,
  log: Logger,
): Promise<{ stopped: number[]; ignored: number[] }> {
  const present = await pidsIn(namespaces);
  const ignored = recorded.filter((pid) => !present.has(pid));
  for (const pid of ignored) log.debug('recorded process is no longer in the lab; left alone', { pid });
  if (present.size === 0) return { stopped: [], ignored };

  const stopped = new Set(present);
  signalAll([...present], 'SIGTERM');
  let left = await waitUntilGone(namespaces, graceMs);
  for (const pid of left) stopped.add(pid);
  if (left.size > 0) {
    log.warn('processes did not stop after SIGTERM; killing them', { pids: [...left], graceMs });
    signalAll([...left], 'SIGKILL');
    left = await waitUntilGone(namespaces, KILL_WAIT_MS);
    if (left.size > 0) log.warn('processes still alive after SIGKILL', { pids: [...left] });
  }
  return { stopped: [...stopped].sort((a, b) => a - b), ignored };
}

function signalAll(pids: readonly number[], signal: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
    }
  }
}

async function waitUntilGone(namespaces: readonly string[], timeoutMs: number): Promise<Set<number>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left = await pidsIn(namespaces);
    if (left.size === 0 || Date.now() >= deadline) return left;
    await sleep(POLL_MS);
  }
}
