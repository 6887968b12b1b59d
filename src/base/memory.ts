/**
 * The agent's memory policy after bulk work: one full garbage collection once a run that touched thousands of
 * kernel entries is over.
 *
 * Why: programming or dumping thousands of entries allocates tens of MB within a few hundred ms. While that
 * happens V8 sees most young objects survive, grows its young generation up to 2 x 16 MB and promotes garbage into
 * old space, and it keeps all of it committed until its memory reducer happens to run (after seconds, or not at
 * all while timers keep the process busy): measured, an agent holding 5000 peers sat at 112 MB RSS for about
 * 11 MB of live heap, and each remove-all/add-all added more. One full collection right after the bulk run leaves
 * only the live objects, so the pages the garbage occupied are freed and the next bulk run reuses them.
 *
 * Never per event: runs add up the entries they touched, and only once `minEntries` are reached is a collection
 * due. It then waits until `quietMs` passed without another run (a burst of runs costs one collection), but no
 * longer than `maxWaitMs` (a steady trickle of small runs must not postpone it forever), and two collections are
 * at least `minIntervalMs` apart. A collection takes 32-41 ms in an agent holding 5000 peers.
 */
import { Session } from 'node:inspector';

export interface BulkGcOptions {
  /** Entries (written, deleted or dumped) the runs since the last collection must add up to. */
  minEntries?: number;
  /** How long no further run must follow before the collection runs. */
  quietMs?: number;
  /** The longest a due collection waits for quiet. */
  maxWaitMs?: number;
  /** The least time between two collections. */
  minIntervalMs?: number;
  /** The collection itself (default: forcedGc()). */
  collect?: () => unknown;
  /** Milliseconds clock (tests pass a fake one). */
  now?: () => number;
}

export const BULK_GC_DEFAULTS = { minEntries: 1000, quietMs: 100, maxWaitMs: 1000, minIntervalMs: 500 } as const;

type Policy = Required<Pick<BulkGcOptions, 'minEntries' | 'quietMs' | 'maxWaitMs' | 'minIntervalMs'>>;

/** What the runs since the last collection did: entries touched, and since when a collection is due. */
export interface BulkGcState {
  entries: number;
  dueSince: number | undefined;
  lastAt: number;
}

/**
 * When the next collection runs (ms clock), or undefined when none is due: the decision alone, for the tests.
 * `now` is the time of the run just noted.
 */
export function nextCollectionAt(state: BulkGcState, now: number, policy: Policy): number | undefined {
  if (state.entries < policy.minEntries || state.dueSince === undefined) return undefined;
  return Math.max(state.lastAt + policy.minIntervalMs, Math.min(now + policy.quietMs, state.dueSince + policy.maxWaitMs));
}

/**
 * A full garbage collection that also gives memory back: V8's "low memory" collection (mark-compact with memory
 * reduction, repeated while it frees more; the young generation shrinks back to its initial size, fragmented old
 * pages are compacted and the empty ones unmapped). Node reaches it through the in-process inspector's
 * `HeapProfiler.collectGarbage` (no port is opened, nothing else is enabled). `global.gc()` (--expose-gc) is no
 * substitute: measured, it frees the garbage but keeps the grown young generation and the old pages committed
 * (an agent holding 5000 peers stayed at 108 MB RSS with it, 2 x 16 MB of young generation included).
 */
export async function forcedGc(): Promise<void> {
  const session = new Session();
  session.connect();
  try {
    await new Promise<void>((resolve, reject) => session.post('HeapProfiler.collectGarbage', (err) => (err ? reject(err) : resolve())));
  } finally {
    // Not inside post's callback: disconnecting from there deadlocks the process (measured on Node 20).
    session.disconnect();
  }
}

/** Collects once after bulk work (see the module comment): `noteRun` after every run, `close` on shutdown. */
export class BulkGc {
  private readonly policy: Policy;
  private readonly collect: () => unknown;
  private readonly now: () => number;
  private readonly state: BulkGcState = { entries: 0, dueSince: undefined, lastAt: -Infinity };
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  /** Collections started so far. */
  collections = 0;

  constructor(options: BulkGcOptions = {}) {
    this.policy = {
      minEntries: options.minEntries ?? BULK_GC_DEFAULTS.minEntries,
      quietMs: options.quietMs ?? BULK_GC_DEFAULTS.quietMs,
      maxWaitMs: options.maxWaitMs ?? BULK_GC_DEFAULTS.maxWaitMs,
      minIntervalMs: options.minIntervalMs ?? BULK_GC_DEFAULTS.minIntervalMs,
    };
    this.collect = options.collect ?? forcedGc;
    this.now = options.now ?? Date.now;
  }

  /** A run touched `entries` kernel entries; returns whether a collection is scheduled. */
  noteRun(entries: number): boolean {
    if (this.closed || !(entries > 0)) return this.timer !== undefined;
    const now = this.now();
    this.state.entries += entries;
    if (this.state.entries >= this.policy.minEntries) this.state.dueSince ??= now;
    const at = nextCollectionAt(this.state, now, this.policy);
    if (at === undefined) return false;
    clearTimeout(this.timer);
    // unref: a pending collection never keeps a stopping process alive.
    this.timer = setTimeout(() => this.run(), Math.max(0, at - now)).unref();
    return true;
  }

  /** Cancel a pending collection. */
  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private run(): void {
    this.timer = undefined;
    if (this.closed) return;
    Object.assign(this.state, { entries: 0, dueSince: undefined, lastAt: this.now() });
    this.collections++;
    // A failed collection changes nothing the agent relies on; the next bulk work tries again.
    void Promise.resolve()
      .then(this.collect)
      .catch(() => {});
  }
}
