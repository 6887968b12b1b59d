/**
 * The lab's state file: `<labs dir>/<lab>/state.json` (labs dir `/run/tulle/labs`, or `$TULLE_LAB_DIR`). It
 * holds the topology, every namespace the lab made, and every process started for it, and it is written BEFORE
 * each resource is created (intent first): after a crash at any point, the file names everything `lab down`
 * must remove. The lab's directory also holds its other files (store, subnet.env per host, logs).
 *
 * Writes are whole-file and atomic (write a temporary file, rename it over), and synchronous, so two updates
 * from one process never interleave. One process writes a lab's state at a time (the one running `lab up`, and
 * whatever it starts from its hooks).
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { TulleError } from '../base/errors.js';
import { validateLabName } from './names.js';
import type { LabTopology } from './topology.js';
import type { LabOverlay } from './cluster.js';

export const DEFAULT_LABS_DIR = '/run/tulle/labs';
export const STATE_FILE = 'state.json';
const STATE_VERSION = 1;

export type LabStatus = 'creating' | 'ready' | 'deleting';

/** A process started for the lab (an agent, a test's helper); `lab down` ends it. */
export interface LabProcess {
  pid: number;
  /** What it is, e.g. `agent`. */
  role: string;
  /** The host it serves (`h1`), or null for lab-wide processes. */
  host: string | null;
  registeredAt: string;
}

export interface LabState extends LabTopology {
  version: number;
  status: LabStatus;
  createdAt: string;
  /** The lab's files directory (this state file, and later the store, subnet.env per host, logs). */
  dir: string;
  /** Every namespace this lab created or was about to create. */
  namespaces: string[];
  processes: LabProcess[];
  /** Store, agents and pod mode; absent for a bare (underlay-only) lab. */
  overlay?: LabOverlay;
}

export class LabNotFoundError extends TulleError {
  constructor(name: string) {
    super('TLE_LAB_NOT_FOUND', `lab ${JSON.stringify(name)} does not exist (see 'tulle lab list')`);
  }
}

export class LabStateError extends TulleError {
  constructor(file: string, why: string, cause?: unknown) {
    super('TLE_LAB_STATE', `lab state file ${file} ${why}`, { cause });
  }
}

/** Where labs keep their directories: `options.root`, else `$TULLE_LAB_DIR`, else /run/tulle/labs. */
export function labsRoot(root?: string): string {
  return resolve(root ?? (process.env.TULLE_LAB_DIR || DEFAULT_LABS_DIR));
}

export function labDir(name: string, root?: string): string {
  return join(labsRoot(root), validateLabName(name));
}

export function stateFilePath(name: string, root?: string): string {
  return join(labDir(name, root), STATE_FILE);
}

export function newLabState(topology: LabTopology, dir: string): LabState {
  return { version: STATE_VERSION, status: 'creating', createdAt: new Date().toISOString(), dir, ...topology, namespaces: [], processes: [] };
}

/** The lab's state, or undefined when it has no state file. Throws LabStateError for an unreadable file. */
export function readLabState(name: string, root?: string): LabState | undefined {
  const file = stateFilePath(name, root);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new LabStateError(file, `cannot be read: ${(err as Error).message}`, err);
  }
  let state: LabState;
  try {
    state = JSON.parse(text) as LabState;
  } catch (err) {
    throw new LabStateError(file, 'is not valid JSON', err);
  }
  if (
    state === null ||
    typeof state !== 'object' ||
    state.version !== STATE_VERSION ||
    state.name !== name ||
    !Array.isArray(state.namespaces) ||
    !Array.isArray(state.processes)
  ) {
    throw new LabStateError(file, `is not a version ${STATE_VERSION} state of lab ${JSON.stringify(name)}`);
  }
  return state;
}

/** The lab's state; throws LabNotFoundError when the lab has no state file. */
export function loadLabState(name: string, options: { root?: string } = {}): LabState {
  const state = readLabState(name, options.root);
  if (!state) throw new LabNotFoundError(name);
  return state;
}

/** Write the whole state atomically (temporary file + rename), creating the lab directory if needed. */
export function writeLabState(state: LabState): void {
  mkdirSync(state.dir, { recursive: true });
  const file = join(state.dir, STATE_FILE);
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(state, null, 2) + '\n');
  renameSync(tmp, file);
}

/** Read, change and write back the lab's state in one synchronous step; returns the new state. */
export function updateLabState(name: string, change: (state: LabState) => void, options: { root?: string } = {}): LabState {
  const state = loadLabState(name, options);
  change(state);
  writeLabState(state);
  return state;
}

/**
 * Record a process started for the lab, so `lab down` ends it (only while it still lives in one of the lab's
 * namespaces, so a PID reused by an unrelated process is never signalled). Call it right after spawning.
 */
export function registerLabProcess(name: string, process_: { pid: number; role: string; host?: string | null }, options: { root?: string } = {}): LabState {
  if (!Number.isInteger(process_.pid) || process_.pid <= 1) throw new TypeError(`registerLabProcess: pid ${process_.pid} is not a process id`);
  return updateLabState(
    name,
    (s) => {
      s.processes = s.processes.filter((p) => p.pid !== process_.pid);
      s.processes.push({ pid: process_.pid, role: process_.role, host: process_.host ?? null, registeredAt: new Date().toISOString() });
    },
    options,
  );
}

/** Forget a process (it exited, or its owner stopped it). */
export function unregisterLabProcess(name: string, pid: number, options: { root?: string } = {}): LabState {
  return updateLabState(name, (s) => void (s.processes = s.processes.filter((p) => p.pid !== pid)), options);
}

/** A host's files: its agent's state dir, subnet.env and log (`<lab dir>/<host>/`). */
export function hostDir(state: Pick<LabState, 'dir'>, host: string): string {
  return join(state.dir, host);
}

export function subnetFileOf(state: Pick<LabState, 'dir'>, host: string): string {
  return join(hostDir(state, host), 'subnet.env');
}

export function agentLogOf(state: Pick<LabState, 'dir'>, host: string): string {
  return join(hostDir(state, host), 'agent.log');
}

/** Where to look on each host of a lab with an overlay: what a user points a runtime's config or `tail -f` at. */
export interface LabHostFiles {
  host: string;
  subnetFile: string;
  agentLog: string;
  /** The store URL as this host reaches it. */
  store: string;
}

export function labHostFiles(state: LabState): LabHostFiles[] {
  const o = state.overlay;
  return o ? state.hosts.map((h) => ({ host: h.name, subnetFile: subnetFileOf(state, h.name), agentLog: agentLogOf(state, h.name), store: o.store })) : [];
}

/** The topology part of the state: what `lab up --json` prints. */
export function labTopology(state: LabState): LabTopology & { dir: string; overlay: LabOverlay | null; hostFiles: LabHostFiles[] } {
  const { name, underlay, dir, segments, hosts, switches, router, pods } = state;
  return { name, underlay, dir, segments, hosts, switches, router, pods, overlay: state.overlay ?? null, hostFiles: labHostFiles(state) };
}
