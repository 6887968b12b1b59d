/**
 * The Registry: the small key-value interface every store implements (SQLite file, etcd v3, in-memory). It is
 * etcd's data model cut down to what the subnet registry needs: string keys and values, a store-wide revision
 * that every write increases, per-key expiry (an etcd lease; no expiry = a permanent key such as the config
 * or a reservation), create-if-absent and compare-and-swap, and a watch that replays every change after a
 * revision or says it cannot (compaction), after which the caller lists again.
 *
 * Keys and values are identical in every store (flannel's layout, see keys.ts), so the lease logic in
 * src/subnet is written once.
 */
import { TulleError } from '../base/errors.js';

export interface StoredValue {
  key: string;
  value: string;
  /**
   * Revision of the write that created the key (etcd's create_revision), where the store reports it (reads and
   * writes; watch events do not carry it). Renewals keep it, so it orders keys by age, and a write whose
   * createRevision equals its modRevision created the key.
   */
  createRevision?: number;
  /** Revision of the write that produced this value (etcd's mod_revision). */
  modRevision: number;
  /** When the key expires, in ms since the epoch; null for a key without TTL. */
  expiresAt: number | null;
}

export interface ListResult {
  items: StoredValue[];
  /** The store revision the listing reflects; watch from here to see every later change. */
  revision: number;
}

export type WatchEvent =
  | { type: 'put'; key: string; value: string; modRevision: number; expiresAt: number | null }
  /** A key deleted, revoked or expired. */
  | { type: 'delete'; key: string; modRevision: number };

export interface WatchHandlers {
  /** Changes in revision order; `revision` is the newest revision the watch has seen. */
  events(events: WatchEvent[], revision: number): void;
  /**
   * The changes after the watch's revision are no longer kept (etcd compaction, SQLite change log trimmed).
   * The watch has ended: list again and watch from the listing's revision.
   */
  lost(reason: string): void;
  /** The store could not be reached; the watch keeps retrying by itself and continues where it stopped. */
  error(err: Error): void;
}

export interface WatchHandle {
  close(): Promise<void>;
}

export interface WriteOptions {
  /** Expire the key after this many seconds; omitted = the key never expires. */
  ttlSeconds?: number;
}

export interface Registry {
  /** The store URL, safe to print (no password). */
  readonly url: string;
  get(key: string): Promise<StoredValue | undefined>;
  /** Every live key starting with `prefix`, sorted by key. */
  list(prefix: string): Promise<ListResult>;
  /** Write unconditionally. */
  put(key: string, value: string, options?: WriteOptions): Promise<StoredValue>;
  /** Write only if the key does not exist (etcd: transaction on Version == 0); undefined when it exists. */
  create(key: string, value: string, options?: WriteOptions): Promise<StoredValue | undefined>;
  /** Write only if the key still holds the write `expectedModRevision`; undefined when it changed or is gone. */
  update(key: string, value: string, expectedModRevision: number, options?: WriteOptions): Promise<StoredValue | undefined>;
  /** Delete (only if still at `expectedModRevision`, when given); false when nothing was deleted. */
  delete(key: string, expectedModRevision?: number): Promise<boolean>;
  /** Watch keys starting with `prefix`, delivering every change after `afterRevision`. */
  watch(prefix: string, afterRevision: number, handlers: WatchHandlers): WatchHandle;
  /** Discard the history before `revision` (etcd compaction); watches from older revisions then get `lost`. */
  compact(revision: number): Promise<void>;
  close(): Promise<void>;
}

/** Milliseconds since the epoch; injectable so that tests can make time pass for expiry. */
export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

/** The store could not be reached (etcd down, SQLite file locked for too long): retry later. */
export class StoreUnavailableError extends TulleError {
  constructor(url: string, detail: string, cause?: unknown) {
    super('TLE_STORE_UNAVAILABLE', `store unreachable: ${url}: ${detail}`, { cause });
  }
}

/** The store answered but refused or failed the request (permission denied, corrupt file, ...). */
export class StoreError extends TulleError {
  constructor(url: string, detail: string, cause?: unknown) {
    super('TLE_STORE', `store error: ${url}: ${detail}`, { cause });
  }
}

export function isStoreUnavailable(err: unknown): boolean {
  return err instanceof StoreUnavailableError;
}
