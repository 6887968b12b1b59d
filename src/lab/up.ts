/**
 * Building a lab: a list of steps run in order, each doing its part for all hosts at once. Before anything is
 * created the lab directory is claimed (an exclusive mkdir: two `lab up` of one name cannot both win) and the
 * whole plan is written to the state file; each namespace is recorded before it is created. If any step fails
 * or the caller aborts, everything made so far is removed again (`labDown`), so a lab is either complete or
 * absent.
 *
 * Callers extend a lab by appending steps (`afterUnderlay`: the cluster's agents and pods, the demo's checks): they
 * run once every host has its underlay address, and get a context to record processes and create more namespaces
 * the same intent-first way.
 */
import { mkdirSync, existsSync } from 'node:fs';
import { InvalidValueError, MissingRequirementError, TulleError, describeError } from '../base/errors.js';
import { silentLogger, type Logger } from '../base/log.js';
import { createNetns, listNetns } from '../netns/netns.js';
import { labDown } from './down.js';
import { DEFAULT_LAB_NAME, labPrefix, validateLabName } from './names.js';
import { labDir, labsRoot, loadLabState, newLabState, registerLabProcess, updateLabState, writeLabState, type LabState } from './state.js';
import { planTopology, topologyNamespaces, validateHostCount, validateUnderlay, type Underlay } from './topology.js';
import { addAddress, addBridge, addDefaultRoute, addVethPair, attachToBridge, enableForwarding, setLinkUp } from './underlay.js';

export const DEFAULT_HOSTS = 3;
export const DEFAULT_UNDERLAY: Underlay = 'switch';
/** How many iproute2 commands run at once: enough to hide process start-up, few enough for 2 cores. */
const CONCURRENCY = 8;

export interface LabStepContext {
  readonly name: string;
  /** The lab's files directory. */
  readonly dir: string;
  readonly logger: Logger;
  readonly signal: AbortSignal | undefined;
  /** The current state, read from the state file. */
  state(): LabState;
  /** Change the state file (read-change-write in one step). */
  update(change: (state: LabState) => void): LabState;
  /** Record a process started for the lab so `lab down` ends it. */
  registerProcess(process: { pid: number; role: string; host?: string | null }): void;
  /** Record, then create, namespaces (each `tulle-<lab>-...`, with lo up). */
  createNamespaces(namespaces: readonly string[]): Promise<void>;
}

export interface LabStep {
  title: string;
  run(ctx: LabStepContext): Promise<void>;
}

export interface LabProgress {
  lab: string;
  step: string;
  /** 1-based number of this step. */
  index: number;
  total: number;
  phase: 'start' | 'done';
  /** Duration of the step, on `done`. */
  ms?: number;
}

export interface LabUpOptions {
  name?: string;
  /** Number of hosts, 1..128. */
  nodes?: number;
  /** An `Underlay` ('switch' or 'routed'); any other text is refused with a message naming it. */
  underlay?: string;
  /** Labs directory (default `$TULLE_LAB_DIR` or /run/tulle/labs). */
  root?: string;
  logger?: Logger;
  onProgress?: (progress: LabProgress) => void;
  /** Steps run after every host has its underlay address (agents, pods, checks). */
  afterUnderlay?: readonly LabStep[];
  /** Abort to stop between steps; what was built is removed again. */
  signal?: AbortSignal;
  /** Grace period for processes when undoing a failed `up`. */
  graceMs?: number;
}

export class LabExistsError extends TulleError {
  constructor(name: string, evidence: string) {
    super('TLE_LAB_EXISTS', `lab ${JSON.stringify(name)} already exists (${evidence}); remove it first: tulle lab down --name ${name}`);
  }
}

export class LabUndoError extends TulleError {
  constructor(name: string, failure: unknown, undoFailure: unknown) {
    super(
      'TLE_LAB_UNDO_FAILED',
      `lab ${JSON.stringify(name)} failed (${describeError(failure)}) and removing what was built failed too (${describeError(undoFailure)}); run: tulle lab down --name ${name}`,
      {
        cause: failure,
      },
    );
  }
}

/** Build lab `options.name` and resolve with its state once every step has run. */
export async function labUp(options: LabUpOptions = {}): Promise<LabState> {
  const name = validateLabName(options.name ?? DEFAULT_LAB_NAME, 'name');
  const nodes = validateHostCount(options.nodes ?? DEFAULT_HOSTS, 'nodes');
  const underlay = validateUnderlay(options.underlay ?? DEFAULT_UNDERLAY, 'underlay');
  const root = labsRoot(options.root);
  const log = options.logger ?? silentLogger;
  if (process.getuid?.() !== 0) throw new MissingRequirementError('root privileges', 'a lab creates network namespaces; run as root (sudo)');
  options.signal?.throwIfAborted();

  const topology = planTopology(name, nodes, underlay);
  const dir = claimLabDir(name, root);
  writeLabState(newLabState(topology, dir));

  const ctx: LabStepContext = {
    name,
    dir,
    logger: log,
    signal: options.signal,
    state: () => loadLabState(name, { root }),
    update: (change) => updateLabState(name, change, { root }),
    registerProcess: (p) => void registerLabProcess(name, p, { root }),
    createNamespaces: async (namespaces) => {
      // only names with the lab's prefix: `lab down` finds (and deletes) nothing else
      const foreign = namespaces.filter((ns) => !ns.startsWith(labPrefix(name)));
      if (foreign.length) throw new InvalidValueError('namespace', foreign[0], `is not a namespace of lab ${name} (must start with ${labPrefix(name)})`);
      updateLabState(name, (s) => void (s.namespaces = [...new Set([...s.namespaces, ...namespaces])]), { root });
      // The first `ip netns add` on a machine turns /run/netns into a mount point; two doing that at once could
      // stack mounts and hide each other's namespaces, so one goes first, the rest in parallel.
      const [first, ...rest] = namespaces;
      if (first !== undefined) await createNetns(first);
      await eachLimited(rest, (ns) => createNetns(ns));
    },
  };
  const steps = [...underlaySteps(), ...(options.afterUnderlay ?? [])];
  try {
    for (const [i, step] of steps.entries()) {
      options.signal?.throwIfAborted();
      const progress = { lab: name, step: step.title, index: i + 1, total: steps.length };
      options.onProgress?.({ ...progress, phase: 'start' });
      const started = Date.now();
      await step.run(ctx);
      options.onProgress?.({ ...progress, phase: 'done', ms: Date.now() - started });
      log.debug('lab step done', { lab: name, step: step.title, ms: Date.now() - started });
    }
    options.signal?.throwIfAborted();
    return ctx.update((s) => void (s.status = 'ready'));
  } catch (err) {
    log.warn('lab up failed; removing what was built', { lab: name, error: err });
    try {
      await labDown(name, { root, logger: log, ...(options.graceMs !== undefined ? { graceMs: options.graceMs } : {}) });
    } catch (undoErr) {
      throw new LabUndoError(name, err, undoErr);
    }
    throw err;
  }
}

/**
 * Make the lab's directory, failing if the lab exists in any form: a directory or namespaces with its prefix
 * (leftovers of a crash count: they must be removed with `lab down` first). mkdir without `recursive` is
 * atomic, so of two concurrent `lab up` with one name exactly one proceeds.
 */
function claimLabDir(name: string, root: string): string {
  const dir = labDir(name, root);
  const leftovers = listNetns(labPrefix(name));
  if (leftovers.length) throw new LabExistsError(name, `namespaces ${leftovers.join(', ')}`);
  if (existsSync(dir)) throw new LabExistsError(name, `directory ${dir}`);
  mkdirSync(root, { recursive: true });
  try {
    mkdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new LabExistsError(name, `directory ${dir}`);
    throw err;
  }
  return dir;
}

/** The steps that build the underlay from the planned topology. */
function underlaySteps(): LabStep[] {
  return [
    {
      title: 'create namespaces',
      run: async (ctx) => ctx.createNamespaces(topologyNamespaces(ctx.state())),
    },
    {
      title: 'create switches',
      run: async (ctx) => void (await eachLimited(ctx.state().switches, (sw) => addBridge(sw.namespace, sw.bridge))),
    },
    {
      title: 'wire hosts and router to the switches',
      run: async (ctx) => {
        const s = ctx.state();
        const switchOf = (segment: number) => s.switches.find((sw) => sw.segment === segment)!;
        const links = [
          ...s.hosts.map((h) => ({ namespace: h.namespace, name: h.interface, port: h.switchPort, sw: switchOf(h.segment) })),
          ...(s.router?.interfaces ?? []).map((r) => ({ namespace: s.router!.namespace, name: r.interface, port: r.switchPort, sw: switchOf(r.segment) })),
        ];
        await eachLimited(links, async (l) => {
          await addVethPair({ namespace: l.namespace, name: l.name }, { namespace: l.sw.namespace, name: l.port });
          await Promise.all([attachToBridge(l.sw.namespace, l.port, l.sw.bridge), setLinkUp(l.namespace, l.name)]);
        });
      },
    },
    {
      title: 'address hosts and router',
      run: async (ctx) => {
        const s = ctx.state();
        const ends = [
          ...s.hosts.map((h) => ({ namespace: h.namespace, name: h.interface, address: h.address, prefixLength: h.prefixLength, gateway: h.gateway })),
          ...(s.router?.interfaces ?? []).map((r) => ({
            namespace: s.router!.namespace,
            name: r.interface,
            address: r.address,
            prefixLength: r.prefixLength,
            gateway: null,
          })),
        ];
        await eachLimited(ends, async (e) => {
          await addAddress(e.namespace, e.name, e.address, e.prefixLength);
          if (e.gateway) await addDefaultRoute(e.namespace, e.gateway, e.name);
        });
      },
    },
    {
      title: 'turn on forwarding',
      run: async (ctx) => {
        const s = ctx.state();
        await eachLimited([...s.hosts.map((h) => h.namespace), ...(s.router ? [s.router.namespace] : [])], enableForwarding);
      },
    },
  ];
}

/** Run `fn` over `items`, at most CONCURRENCY at a time; rejects with the first failure once all have settled. */
async function eachLimited<T>(items: readonly T[], fn: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  const failures: unknown[] = [];
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++]!;
      try {
        await fn(item);
      } catch (err) {
        failures.push(err);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, items.length) }, worker));
  if (failures.length) throw failures[0];
}
