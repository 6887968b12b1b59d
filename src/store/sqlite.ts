/**
 * The embedded store: one SQLite file that several processes on one machine share (the lab runs one agent per
 * network namespace, all on the same file). Every write is an IMMEDIATE transaction in WAL mode with a busy
 * timeout, so writers queue instead of failing, and readers never block writers.
 *
 * The data model copies etcd's: a store-wide revision increased by every write, keys carrying their
 * mod_revision and an optional expiry, and a change log (`events`) from which watches replay everything after a
 * revision. Expired keys are invisible to reads at once and are deleted, with a logged delete event, by the
 * next writer or watcher that notices them. The change log is trimmed to its last `keepEvents` entries; a
 * watch that fell further behind is told it lost its place, as etcd does after compaction.
 *
 * A watch looks at `PRAGMA data_version` (changes when another connection commits) plus a counter of this
 * process's own writes: nothing is read while nothing changed. It looks at once when the kernel says the file
 * or its WAL was written (inotify, through fs.watch on the file's directory), at the next lease expiry, and
 * otherwise every second as a safety net (every 100 ms where inotify is not available; a caller's `pollIntervalMs`
 * in both cases: the convergence benchmark's stopwatch polls every 2 ms), so fifty idle agents sharing one file
 * cost next to nothing and a change is seen within milliseconds.
 *
 * `memory:` stores are this same code on an in-memory database, shared by name inside one process.
 */
import { existsSync, mkdirSync, watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import Database from 'better-sqlite3';
import { silentLogger, type Logger } from '../base/log.js';
import {
  StoreError,
  StoreUnavailableError,
  systemClock,
  type Clock,
  type ListResult,
  type Registry,
  type StoredValue,
  type WatchEvent,
  type WatchHandle,
  type WatchHandlers,
  type WriteOptions,
} from './registry.js';
import { prefixEnd } from './keys.js';

export interface SqliteRegistryOptions {
  clock?: Clock;
  logger?: Logger;
  /**
   * How often a watch looks for changes, with or without file notifications. Default: every 100 ms without
   * them, every second (WATCHED_POLL_MS) while notifications wake the watch.
   */
  pollIntervalMs?: number;
  /** How long a write waits for another process's transaction before giving up. */
  busyTimeoutMs?: number;
  /** Change-log entries kept for watches that fall behind. */
  keepEvents?: number;
  /** Create the file (and its directory) when missing; false: a missing file is an error. Default true. */
  create?: boolean;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS kv (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL,
  create_revision INTEGER NOT NULL,
  mod_revision INTEGER NOT NULL,
  version INTEGER NOT NULL,
  expires_at INTEGER            -- ms since the epoch; NULL = never expires (the config, a reservation)
);
CREATE INDEX IF NOT EXISTS kv_expires_at ON kv(expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS events (
  revision INTEGER PRIMARY KEY,
  key TEXT NOT NULL,
  type TEXT NOT NULL CHECK (type IN ('put', 'delete')),
  value TEXT,
  expires_at INTEGER
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (name, value) VALUES ('revision', 0), ('compact_revision', 0), ('schema_version', 1);
`;

/** One open database; `memory:` stores share one by name, and this counts the writes made through it. */
interface Backend {
  db: Database.Database;
  localWrites: number;
  refs: number;
  name?: string;
  /** The database file, for change notifications; absent for memory: stores. */
  path?: string;
}

const memoryBackends = new Map<string, Backend>();

/** The safety-net poll of a watch that inotify wakes at every write of the file (see nextPollDelay). */
const WATCHED_POLL_MS = 1000;
/**
 * Looks after a file notification that found no change yet, in ms after the one before. The notification comes
 * with the writer's last write() to the WAL, but a reader sees the commit only once the writer has updated the
 * WAL index, which lives in shared memory and announces nothing: a look made in between sees the old version, and
 * without these the change would wait for the next poll.
 */
const FOLLOW_UP_MS = [1, 5, 20, 100];

export function openSqliteRegistry(path: string, options: SqliteRegistryOptions = {}): SqliteRegistry {
  const url = `sqlite:${path}`;
  const create = options.create ?? true;
  if (!create && !existsSync(path)) {
    throw new StoreError(url, `${path} does not exist (write the network config first: tulle config put --store ${url})`);
  }
  // One missing directory level is made (the default /var/lib/tulle on a new host); a deeper missing tree is
  // almost always a typo in the path, and creating it would hide that.
  const dir = dirname(path);
  if (create && !existsSync(dir)) {
    if (!existsSync(dirname(dir)))
      throw new StoreError(url, `the directory ${dirname(dir)} does not exist (is the path right? tulle creates at most the file's own directory)`);
    mkdirSync(dir);
  }
  let db: Database.Database;
  try {
    db = new Database(path, { timeout: options.busyTimeoutMs ?? 5000, fileMustExist: !create });
  } catch (err) {
    throw new StoreError(url, `cannot open ${path}: ${(err as Error).message}`, err);
  }
  try {
    // Switching to WAL needs a moment of exclusive access; with many processes opening a new file at once
    // the busy handler does not cover it, so retry briefly.
    retryBusy(() => db.pragma('journal_mode = WAL'));
    db.pragma('synchronous = NORMAL');
    retryBusy(() => db.transaction(() => db.exec(SCHEMA)).immediate());
  } catch (err) {
    db.close();
    throw wrapSqliteError(url, err);
  }
  return new SqliteRegistry({ db, localWrites: 0, refs: 1, path }, url, options);
}

/** An in-memory store; `memory:NAME` opened twice in one process is the same store, `memory:` is always new. */
export function openMemoryRegistry(name: string, options: SqliteRegistryOptions = {}): SqliteRegistry {
  let backend = name ? memoryBackends.get(name) : undefined;
  if (backend) {
    backend.refs++;
  } else {
    const db = new Database(':memory:');
    db.exec(SCHEMA);
    backend = { db, localWrites: 0, refs: 1, ...(name ? { name } : {}) };
    if (name) memoryBackends.set(name, backend);
  }
  return new SqliteRegistry(backend, `memory:${name}`, options);
}

function retryBusy<T>(fn: () => T): T {
  for (let attempt = 0; ; attempt++) {
    try {
      return fn();
    } catch (err) {
      if ((err as { code?: string }).code !== 'SQLITE_BUSY' || attempt >= 50) throw err;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20 + Math.random() * 30);
    }
  }
}

function wrapSqliteError(url: string, err: unknown): Error {
  const code = (err as { code?: string }).code ?? '';
  const message = err instanceof Error ? err.message : String(err);
  if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED')
    return new StoreUnavailableError(url, `the database stayed locked by another process (${message})`, err);
  if (code.startsWith('SQLITE_')) return new StoreError(url, `${message} (${code})`, err);
  return err instanceof Error ? err : new Error(message);
}

interface Subscription {
  prefix: string;
  end: string;
  after: number;
  handlers: WatchHandlers;
}

interface KvRow {
  key: string;
  value: string;
  create_revision: number;
  mod_revision: number;
  expires_at: number | null;
}

interface EventRow {
  revision: number;
  key: string;
  type: 'put' | 'delete';
  value: string | null;
  expires_at: number | null;
}

export class SqliteRegistry implements Registry {
  readonly url: string;
  private readonly db: Database.Database;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly pollIntervalMs: number;
  /** The poll while file notifications wake the watch: the caller's interval, or WATCHED_POLL_MS. */
  private readonly watchedPollMs: number;
  private readonly keepEvents: number;
  private readonly stmt;
  private subscriptions: Subscription[] = [];
  private timer: NodeJS.Timeout | undefined;
  private fileWatcher: FSWatcher | undefined;
  private seenDataVersion = -1;
  private seenLocalWrites = -1;
  private nextExpiry: number | null = null;
  /** Looks still due after a file notification that showed no change yet (FOLLOW_UP_MS). */
  private followUps = 0;
  private closed = false;

  constructor(
    private readonly backend: Backend,
    url: string,
    options: SqliteRegistryOptions,
  ) {
    this.url = url;
    this.db = backend.db;
    this.clock = options.clock ?? systemClock;
    this.logger = options.logger ?? silentLogger;
    this.pollIntervalMs = options.pollIntervalMs ?? 100;
    this.watchedPollMs = options.pollIntervalMs ?? WATCHED_POLL_MS;
    this.keepEvents = options.keepEvents ?? 10_000;
    const db = this.db;
    this.stmt = {
      get: db.prepare<[string, number], KvRow>(
        'SELECT key, value, create_revision, mod_revision, expires_at FROM kv WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)',
      ),
      list: db.prepare<[string, string, number], KvRow>(
        'SELECT key, value, create_revision, mod_revision, expires_at FROM kv WHERE key >= ? AND key < ? AND (expires_at IS NULL OR expires_at > ?) ORDER BY key',
      ),
      modRevision: db.prepare<[string], { mod_revision: number }>('SELECT mod_revision FROM kv WHERE key = ?'),
      meta: db.prepare<[string], { value: number }>('SELECT value FROM meta WHERE name = ?'),
      setMeta: db.prepare<[number, string]>('UPDATE meta SET value = ? WHERE name = ?'),
      nextRevision: db.prepare<[], { value: number }>("UPDATE meta SET value = value + 1 WHERE name = 'revision' RETURNING value"),
      upsert: db.prepare<[string, string, number, number, number | null], { create_revision: number }>(
        `INSERT INTO kv (key, value, create_revision, mod_revision, version, expires_at) VALUES (?, ?, ?, ?, 1, ?)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, mod_revision = excluded.mod_revision,
           version = version + 1, expires_at = excluded.expires_at
         RETURNING create_revision`,
      ),
      deleteKey: db.prepare<[string]>('DELETE FROM kv WHERE key = ?'),
      expired: db.prepare<[number], { key: string }>('SELECT key FROM kv WHERE expires_at IS NOT NULL AND expires_at <= ? ORDER BY key'),
      minExpiry: db.prepare<[], { at: number | null }>('SELECT MIN(expires_at) AS at FROM kv WHERE expires_at IS NOT NULL'),
      logEvent: db.prepare<[number, string, string, string | null, number | null]>(
        'INSERT INTO events (revision, key, type, value, expires_at) VALUES (?, ?, ?, ?, ?)',
      ),
      eventsAfter: db.prepare<[number, number, string, string], EventRow>(
        'SELECT revision, key, type, value, expires_at FROM events WHERE revision > ? AND revision <= ? AND key >= ? AND key < ? ORDER BY revision',
      ),
      trimEvents: db.prepare<[number]>('DELETE FROM events WHERE revision < ?'),
      // Prepared once: the poll runs often and must cost next to nothing while nothing changes.
      dataVersion: db.prepare<[], number>('PRAGMA data_version').pluck(),
    };
  }

  async get(key: string): Promise<StoredValue | undefined> {
    const row = this.guard(() => this.stmt.get.get(key, this.clock.now()));
    return row && toStored(row);
  }

  async list(prefix: string): Promise<ListResult> {
    return this.guard(() =>
      // A read transaction: the rows and the revision come from one snapshot.
      this.db.transaction(() => {
        const revision = this.meta('revision');
        const items = this.stmt.list.all(prefix, prefixEnd(prefix), this.clock.now()).map(toStored);
        return { items, revision };
      })(),
    );
  }

  async put(key: string, value: string, options: WriteOptions = {}): Promise<StoredValue> {
    return this.write((now) => this.store(key, value, now, options));
  }

  async create(key: string, value: string, options: WriteOptions = {}): Promise<StoredValue | undefined> {
    // Expired keys were purged at the start of this transaction, so an expired lease does not block creation.
    return this.write((now) => (this.stmt.modRevision.get(key) ? undefined : this.store(key, value, now, options)));
  }

  async update(key: string, value: string, expectedModRevision: number, options: WriteOptions = {}): Promise<StoredValue | undefined> {
    return this.write((now) => (this.stmt.modRevision.get(key)?.mod_revision === expectedModRevision ? this.store(key, value, now, options) : undefined));
  }

  async delete(key: string, expectedModRevision?: number): Promise<boolean> {
    return this.write(() => {
      const current = this.stmt.modRevision.get(key);
      if (!current || (expectedModRevision !== undefined && current.mod_revision !== expectedModRevision)) return false;
      this.remove(key);
      return true;
    });
  }

  async compact(revision: number): Promise<void> {
    this.write(() => {
      const upTo = Math.min(revision, this.meta('revision'));
      if (upTo > this.meta('compact_revision')) this.trimBefore(upTo);
    });
  }

  watch(prefix: string, afterRevision: number, handlers: WatchHandlers): WatchHandle {
    if (this.closed) throw new StoreError(this.url, 'the registry is closed');
    const sub: Subscription = { prefix, end: prefixEnd(prefix), after: afterRevision, handlers };
    this.subscriptions.push(sub);
    this.watchFile();
    // A new watch may already be behind: look at once rather than waiting for the next change.
    this.seenDataVersion = -1;
    this.schedule(0);
    return {
      close: async () => {
        this.subscriptions = this.subscriptions.filter((s) => s !== sub);
        if (this.subscriptions.length === 0) this.unwatchFile();
      },
    };
  }

  /** Wake the watch when the database or its WAL is written by any process (inotify on the directory). */
  private watchFile(): void {
    const path = this.backend.path;
    if (this.fileWatcher || !path) return;
    const names = new Set([basename(path), `${basename(path)}-wal`]);
    try {
      this.fileWatcher = watch(dirname(path), { persistent: false }, (_event, file) => {
        if (file === null || names.has(String(file))) {
          this.followUps = FOLLOW_UP_MS.length;
          this.schedule(0);
        }
      });
      this.fileWatcher.on('error', () => this.unwatchFile()); // the poll goes on without it
    } catch (err) {
      this.logger.debug('no change notifications for the store file; polling only', { store: this.url, error: err });
    }
  }

  private unwatchFile(): void {
    this.fileWatcher?.close();
    this.fileWatcher = undefined;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.subscriptions = [];
    this.unwatchFile();
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (--this.backend.refs === 0) {
      if (this.backend.name) memoryBackends.delete(this.backend.name);
      this.db.close();
    }
  }

  /** Write `key` at a new revision and log the change. Runs inside a write transaction. */
  private store(key: string, value: string, now: number, options: WriteOptions): StoredValue {
    const revision = this.nextRevision();
    const expiresAt = options.ttlSeconds === undefined ? null : now + options.ttlSeconds * 1000;
    const { create_revision: createRevision } = this.stmt.upsert.get(key, value, revision, revision, expiresAt)!;
    this.stmt.logEvent.run(revision, key, 'put', value, expiresAt);
    return { key, value, createRevision, modRevision: revision, expiresAt };
  }

  private remove(key: string): void {
    const revision = this.nextRevision();
    this.stmt.deleteKey.run(key);
    this.stmt.logEvent.run(revision, key, 'delete', null, null);
  }

  private nextRevision(): number {
    return this.stmt.nextRevision.get()!.value;
  }

  private meta(name: 'revision' | 'compact_revision'): number {
    return this.stmt.meta.get(name)!.value;
  }

  /** Drop change-log entries before `revision`: watches needing them get `lost`. */
  private trimBefore(revision: number): void {
    this.stmt.trimEvents.run(revision);
    this.stmt.setMeta.run(revision, 'compact_revision');
  }

  /**
   * Run `fn` in an IMMEDIATE transaction (the write lock is taken up front, so two processes never both read
   * "absent" and then both insert). Expired keys are deleted first, each with a delete event, and the change
   * log is trimmed now and then.
   */
  private write<T>(fn: (now: number) => T): T {
    return this.guard(() => {
      const result = this.db
        .transaction(() => {
          const now = this.clock.now();
          for (const { key } of this.stmt.expired.all(now)) this.remove(key);
          const value = fn(now);
          const revision = this.meta('revision');
          if (revision % 100 === 0 && revision - this.keepEvents > this.meta('compact_revision')) this.trimBefore(revision - this.keepEvents);
          return value;
        })
        .immediate();
      this.backend.localWrites++;
      return result;
    });
  }

  private guard<T>(fn: () => T): T {
    if (this.closed) throw new StoreError(this.url, 'the registry is closed');
    try {
      return fn();
    } catch (err) {
      throw wrapSqliteError(this.url, err);
    }
  }

  private schedule(delay: number): void {
    if (this.closed || this.subscriptions.length === 0) return;
    if (this.timer) {
      if (delay > 0) return;
      clearTimeout(this.timer);
    }
    this.timer = setTimeout(() => this.poll(), delay);
  }

  private poll(): void {
    this.timer = undefined;
    if (this.closed || this.subscriptions.length === 0) return;
    try {
      if (this.nextExpiry !== null && this.clock.now() >= this.nextExpiry) this.write(() => undefined);
      const dataVersion = this.stmt.dataVersion.get()!;
      const localWrites = this.backend.localWrites;
      if (dataVersion !== this.seenDataVersion || localWrites !== this.seenLocalWrites) {
        this.seenDataVersion = dataVersion;
        this.seenLocalWrites = localWrites;
        this.followUps = 0;
        this.deliver();
      }
    } catch (err) {
      const wrapped = wrapSqliteError(this.url, err);
      this.logger.warn('store watch poll failed, retrying', { store: this.url, error: wrapped });
      for (const sub of this.subscriptions) safeCall(() => sub.handlers.error(wrapped), this.logger);
    }
    this.schedule(this.followUps > 0 ? FOLLOW_UP_MS[FOLLOW_UP_MS.length - this.followUps--]! : this.nextPollDelay());
  }

  /**
   * When the safety-net poll looks next: every pollIntervalMs, or every watchedPollMs while inotify wakes the
   * watch at every write anyway (each wake-up costs an idle agent CPU, and the lab runs a hundred agents on one
   * machine); and never later than the next lease expiry, which no write announces.
   */
  private nextPollDelay(): number {
    const every = this.fileWatcher ? this.watchedPollMs : this.pollIntervalMs;
    if (this.nextExpiry === null) return every;
    // Not sooner than every 10 ms: a purge that keeps failing (a busy database) must not spin.
    return Math.min(every, Math.max(Math.min(every, 10), this.nextExpiry - this.clock.now()));
  }

  /** Hand every subscription the changes after its revision, read from one snapshot. */
  private deliver(): void {
    type Delivery = { sub: Subscription } & ({ events: WatchEvent[]; revision: number } | { lost: string });
    const deliveries = this.db.transaction((): Delivery[] => {
      const revision = this.meta('revision');
      const compactRevision = this.meta('compact_revision');
      const nextExpiry = this.stmt.minExpiry.get()?.at ?? null;
      this.nextExpiry = nextExpiry;
      const out: Delivery[] = [];
      for (const sub of this.subscriptions) {
        if (sub.after >= revision) continue;
        if (sub.after + 1 < compactRevision) {
          out.push({ sub, lost: `the change log no longer holds revision ${sub.after + 1} (it starts at ${compactRevision})` });
          continue;
        }
        const events = this.stmt.eventsAfter.all(sub.after, revision, sub.prefix, sub.end).map(toEvent);
        sub.after = revision;
        if (events.length) out.push({ sub, events, revision });
      }
      return out;
    })();
    for (const d of deliveries) {
      if ('lost' in d) {
        this.subscriptions = this.subscriptions.filter((s) => s !== d.sub);
        safeCall(() => d.sub.handlers.lost(d.lost), this.logger);
      } else {
        safeCall(() => d.sub.handlers.events(d.events, d.revision), this.logger);
      }
    }
  }
}

function safeCall(fn: () => void, logger: Logger): void {
  try {
    fn();
  } catch (err) {
    logger.error('store watch handler failed', { error: err });
  }
}

function toStored(row: KvRow): StoredValue {
  return { key: row.key, value: row.value, createRevision: row.create_revision, modRevision: row.mod_revision, expiresAt: row.expires_at };
}

function toEvent(row: EventRow): WatchEvent {
  return row.type === 'put'
    ? { type: 'put', key: row.key, value: row.value ?? '', modRevision: row.revision, expiresAt: row.expires_at }
    : { type: 'delete', key: row.key, modRevision: row.revision };
}
