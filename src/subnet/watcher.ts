/**
 * The LeaseWatcher: the leases of the other hosts as a stream of batches of events, for the agent that
 * programs one route + neighbour + FDB entry per peer.
 *
 *  - The first batch is the current snapshot: one `added` per lease (an empty batch when there are none, so
 *    the consumer knows the snapshot is complete). Given `resumeFrom` (a state the caller already holds), the
 *    first batch is the difference between that state and now instead.
 *  - Then every change, from the snapshot's revision on: `added`, `changed` (what the host publishes changed:
 *    public IP, VTEP MAC, ...; a renewal alone is no event) and `removed` (deleted, revoked or expired), each
 *    with the full Lease.
 *  - When the store cannot replay the changes any more (etcd compaction, SQLite log trimmed), a fresh
 *    snapshot is taken and diffed against what the watcher had, giving the same kinds of events (flannel's
 *    LeaseWatcher.Reset).
 *  - A malformed value written by someone else is logged and skipped; what was known before stays.
 *  - Store errors go to `onStoreError` (to count them) and are retried forever: the consumer keeps its data
 *    plane as it is meanwhile.
 */
import { silentLogger, type Logger } from '../base/log.js';
import { Backoff } from '../base/retry.js';
import { DEFAULT_PREFIX, normalizePrefix, parseSubnetKey, subnetsPrefix } from '../store/keys.js';
import { isStoreUnavailable, type Registry, type StoredValue, type WatchEvent, type WatchHandle } from '../store/registry.js';
import type { StoreOutage } from '../store/outage.js';
import { retryWhileUnavailable } from '../store/retry.js';
import { decodeLease, MalformedLeaseError, sameLeaseAttrs, type Lease } from './lease.js';

export type LeaseEventType = 'added' | 'changed' | 'removed';

export interface LeaseEvent {
  type: LeaseEventType;
  lease: Lease;
}

export interface LeaseWatcherOptions {
  prefix?: string;
  logger?: Logger;
  /** Leave this subnet (the host's own, e.g. "10.244.1.0/24") out of the events. */
  excludeSubnet?: string;
  /** Continue from a state the caller already holds: the first batch is then the difference to now. */
  resumeFrom?: { leases: readonly Lease[]; revision: number };
  /** Called with every store error (the watcher retries by itself). */
  onStoreError?: (err: Error) => void;
  /** Report the store's unavailability here instead of one line per retry. */
  outage?: StoreOutage;
}

export class LeaseWatcher implements AsyncIterable<LeaseEvent[]> {
  private readonly prefix: string;
  private readonly logger: Logger;
  private readonly exclude: string | undefined;
  private readonly onStoreError: (err: Error) => void;
  private readonly outage: StoreOutage | undefined;
  /** Keys whose value cannot be read, with the reason (for listings; their last good lease stays known). */
  private readonly unreadable = new Map<string, string>();
  private readonly abort = new AbortController();
  /** What the watcher believes the store holds, by key (including the excluded subnet). */
  private known = new Map<string, Lease>();
  private revision = 0;
  private handle: WatchHandle | undefined;
  private readonly queue: LeaseEvent[][] = [];
  private waiting: ((batch: IteratorResult<LeaseEvent[]>) => void) | undefined;
  private closed = false;
  private restarting = false;
  /** Counts listings; only the newest one's result is used. */
  private generation = 0;
  private snapshotDelivered = false;
  /** Resolves when the first batch has been produced. */
  readonly ready: Promise<void>;

  constructor(
    private readonly registry: Registry,
    options: LeaseWatcherOptions = {},
  ) {
    this.prefix = normalizePrefix(options.prefix ?? DEFAULT_PREFIX, 'prefix');
    this.logger = (options.logger ?? silentLogger).child({ component: 'lease-watch' });
    this.exclude = options.excludeSubnet;
    this.onStoreError = options.onStoreError ?? (() => {});
    this.outage = options.outage;
    if (options.resumeFrom) {
      for (const lease of options.resumeFrom.leases) this.known.set(lease.key, lease);
      this.revision = options.resumeFrom.revision;
      this.snapshotDelivered = true;
      this.ready = Promise.resolve();
      this.startWatch();
    } else {
      this.ready = this.resync();
    }
  }

  /** The leases the watcher currently knows (peers and, if not excluded, the host's own). */
  get leases(): Lease[] {
    return [...this.known.values()];
  }

  /** Keys that hold a value that is not a lease tulle can read, with the reason; logged once per value. */
  get malformed(): ReadonlyMap<string, string> {
    return this.unreadable;
  }

  /** The store revision the known leases reflect. */
  get currentRevision(): number {
    return this.revision;
  }

  /** The next batch of events; undefined once closed. */
  async next(): Promise<LeaseEvent[] | undefined> {
    const r = await this.nextResult();
    return r.done ? undefined : r.value;
  }

  [Symbol.asyncIterator](): AsyncIterator<LeaseEvent[]> {
    return {
      next: () => this.nextResult(),
      return: async () => {
        await this.close();
        return { done: true, value: undefined };
      },
    };
  }

  /**
   * Drop the current watch and list again now (the difference to what is known comes as one batch), instead of
   * waiting for the store client's reconnect or for a listing that is backing off after a long outage: used when
   * the store is known to be back. A listing already under way is superseded (its result is dropped).
   */
  restart(): void {
    if (this.closed || this.restarting) return;
    const handle = this.handle;
    this.handle = undefined;
    this.restarting = true;
    void (async () => {
      await handle?.close();
      await this.resync();
    })().finally(() => (this.restarting = false));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.abort.abort(new Error('lease watcher closed'));
    const handle = this.handle;
    this.handle = undefined;
    await handle?.close();
    this.waiting?.({ done: true, value: undefined });
    this.waiting = undefined;
  }

  private nextResult(): Promise<IteratorResult<LeaseEvent[]>> {
    const batch = this.queue.shift();
    if (batch) return Promise.resolve({ done: false, value: batch });
    if (this.closed) return Promise.resolve({ done: true, value: undefined });
    return new Promise((resolve) => (this.waiting = resolve));
  }

  private push(batch: LeaseEvent[]): void {
    if (this.closed) return;
    if (this.waiting) {
      const w = this.waiting;
      this.waiting = undefined;
      w({ done: false, value: batch });
    } else {
      this.queue.push(batch);
    }
  }

  /**
   * List the leases and turn the listing into events against what is known, then watch from there. Only the
   * newest listing counts: an older one still retrying when a newer one started ends without effect.
   */
  private async resync(): Promise<void> {
    const generation = ++this.generation;
    let listing;
    try {
      listing = await retryWhileUnavailable('list leases', () => this.registry.list(subnetsPrefix(this.prefix)), {
        logger: this.logger,
        signal: this.abort.signal,
        onError: this.onStoreError,
        ...(this.outage ? { outage: this.outage } : {}),
        retryAll: true,
        backoff: new Backoff({ initialMs: 250, maxMs: 5000 }),
      });
    } catch {
      return; // closed while waiting for the store
    }
    if (this.closed || generation !== this.generation) return;
    const fresh = new Map<string, Lease>();
    for (const key of [...this.unreadable.keys()]) if (!listing.items.some((i) => i.key === key)) this.unreadable.delete(key);
    for (const item of listing.items) {
      const lease = this.decode(item);
      const keep = lease ?? this.known.get(item.key); // malformed: keep what we knew
      if (keep) fresh.set(item.key, keep);
    }
    const batch: LeaseEvent[] = [];
    for (const [key, lease] of fresh) {
      const before = this.known.get(key);
      if (!before) this.emit(batch, 'added', lease);
      else if (!sameLeaseAttrs(before, lease)) this.emit(batch, 'changed', lease);
    }
    for (const [key, lease] of this.known) if (!fresh.has(key)) this.emit(batch, 'removed', lease);
    this.known = fresh;
    this.revision = listing.revision;
    // The first batch is the snapshot, even an empty one: the consumer learns that it is complete.
    if (!this.snapshotDelivered || batch.length) this.push(batch);
    this.snapshotDelivered = true;
    this.startWatch();
  }

  private startWatch(): void {
    if (this.closed) return;
    this.handle = this.registry.watch(subnetsPrefix(this.prefix), this.revision, {
      events: (events, revision) => {
        this.outage?.succeeded();
        this.apply(events, revision);
      },
      lost: (reason) => {
        this.handle = undefined;
        this.logger.warn('the lease watch fell behind; resyncing from a fresh snapshot', { reason, revision: this.revision });
        void this.resync();
      },
      error: (err) => {
        this.onStoreError(err);
        if (isStoreUnavailable(err)) this.outage?.failed('watch leases', err);
      },
    });
  }

  private apply(events: WatchEvent[], revision: number): void {
    if (this.closed) return;
    const batch: LeaseEvent[] = [];
    for (const event of events) {
      const before = this.known.get(event.key);
      if (event.type === 'delete') {
        this.unreadable.delete(event.key);
        if (!before) continue;
        this.known.delete(event.key);
        this.emit(batch, 'removed', before);
        continue;
      }
      const decoded = this.decode(event);
      if (!decoded) continue;
      // Watch events do not say when a key was created: a key seen before keeps its age; a new one is as old as
      // this write.
      const lease = before ? { ...decoded, created: before.created } : decoded;
      this.known.set(event.key, lease);
      if (!before) this.emit(batch, 'added', lease);
      else if (!sameLeaseAttrs(before, lease)) this.emit(batch, 'changed', lease);
    }
    this.revision = revision;
    if (batch.length) this.push(batch);
  }

  private emit(batch: LeaseEvent[], type: LeaseEventType, lease: Lease): void {
    if (lease.subnet !== this.exclude) batch.push({ type, lease });
  }

  private decode(stored: StoredValue): Lease | undefined {
    const key = stored.key;
    const parsedKey = parseSubnetKey(this.prefix, key);
    if (!parsedKey) {
      this.logger.debug('ignoring a key that is not a subnet lease', { key });
      return undefined;
    }
    try {
      const lease = decodeLease(this.prefix, stored, parsedKey);
      this.unreadable.delete(key);
      return lease;
    } catch (err) {
      if (!(err instanceof MalformedLeaseError)) throw err;
      if (this.unreadable.get(key) !== err.message) this.logger.warn('skipping a malformed lease', { key, reason: err.message });
      this.unreadable.set(key, err.message);
      return undefined;
    }
  }
}
