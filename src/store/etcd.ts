/**
 * The etcd v3 store, through the etcd3 client (gRPC). It writes exactly what flanneld writes: a key with TTL is
 * attached to its own etcd lease (granted per write, the previous one revoked), "create" is a transaction on
 * Version == 0, compare-and-swap a transaction on ModRevision, and a watch starts from a revision.
 *
 * When etcd is away, requests fail with StoreUnavailableError (the callers retry with backoff), and the watch
 * reconnects with capped exponential backoff (reporting each loss to its `error` handler; the caller says so in
 * the log), then resumes from the revision after the last one it received. A watch that asks for a compacted revision
 * is cancelled by etcd and reported as `lost`.
 */
import { readFileSync } from 'node:fs';
import { CompareResult, CompareTarget, Etcd3, isRecoverableError, type IKeyValue, type IOptions, type IWatchResponse, type Watcher } from 'etcd3';
import { InvalidValueError } from '../base/errors.js';
import { silentLogger, type Logger } from '../base/log.js';
import { Backoff, sleep } from '../base/retry.js';
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

export interface EtcdTlsOptions {
  /** CA certificate that signed etcd's server certificate (PEM file). */
  caFile?: string;
  /** Client certificate and its key (PEM files), for etcd's --client-cert-auth. */
  certFile?: string;
  keyFile?: string;
}

export interface EtcdRegistryOptions {
  tls?: EtcdTlsOptions;
  auth?: { username: string; password: string };
  logger?: Logger;
  clock?: Clock;
  /** Deadline of every request. */
  requestTimeoutMs?: number;
  /** First and longest wait between watch reconnection attempts. */
  reconnectInitialMs?: number;
  reconnectMaxMs?: number;
}

export function openEtcdRegistry(endpoints: readonly string[], options: EtcdRegistryOptions = {}): EtcdRegistry {
  const url = `etcd://${endpoints.join(',')}`;
  const credentials = readTls(options.tls ?? {});
  const scheme = credentials ? 'https' : 'http';
  return new EtcdRegistry(
    url,
    endpoints.map((e) => `${scheme}://${e}`),
    credentials,
    options,
  );
}

function readTls(tls: EtcdTlsOptions): IOptions['credentials'] {
  const read = (field: string, path: string | undefined): Buffer | undefined => {
    if (!path) return undefined;
    try {
      return readFileSync(path);
    } catch (err) {
      throw new InvalidValueError(field, path, `cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
  };
  const ca = read('--etcd-cafile', tls.caFile);
  const cert = read('--etcd-certfile', tls.certFile);
  const key = read('--etcd-keyfile', tls.keyFile);
  if (Boolean(cert) !== Boolean(key)) {
    throw new InvalidValueError(
      cert ? '--etcd-keyfile' : '--etcd-certfile',
      undefined,
      'is required together with the other (a client certificate needs its key)',
    );
  }
  if (!ca && !cert) return undefined;
  // gRPC verifies the server against the system CAs when no CA file is given.
  return { rootCertificate: ca ?? (undefined as unknown as Buffer), ...(cert ? { certChain: cert, privateKey: key! } : {}) };
}

export class EtcdRegistry implements Registry {
  private readonly client: Etcd3;
  private readonly logger: Logger;
  private readonly clock: Clock;
  private readonly reconnectInitialMs: number;
  private readonly reconnectMaxMs: number;
  private closed = false;

  constructor(
    readonly url: string,
    hosts: string[],
    credentials: IOptions['credentials'],
    options: EtcdRegistryOptions,
  ) {
    this.logger = options.logger ?? silentLogger;
    this.clock = options.clock ?? systemClock;
    this.reconnectInitialMs = options.reconnectInitialMs ?? 200;
    this.reconnectMaxMs = options.reconnectMaxMs ?? 5000;
    const timeout = options.requestTimeoutMs ?? 5000;
    this.client = new Etcd3({
      hosts,
      ...(credentials ? { credentials } : {}),
      ...(options.auth ? { auth: options.auth } : {}),
      dialTimeout: timeout,
      defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + timeout }),
      // gRPC's own reconnect backoff grows to 2 minutes by default: after an outage, tulle would stay away
      // from a recovered etcd for that long.
      grpcOptions: { 'grpc.initial_reconnect_backoff_ms': this.reconnectInitialMs, 'grpc.max_reconnect_backoff_ms': this.reconnectMaxMs },
    });
  }

  async get(key: string): Promise<StoredValue | undefined> {
    const res = await this.call('get', () => this.client.kv.range({ key: Buffer.from(key) }));
    const kv = res.kvs[0];
    return kv ? this.toStored(kv) : undefined;
  }

  async list(prefix: string): Promise<ListResult> {
    const res = await this.call('list', () => this.client.kv.range({ key: Buffer.from(prefix), range_end: Buffer.from(prefixEnd(prefix)) }));
    const items = await Promise.all(res.kvs.map((kv) => this.toStored(kv)));
    const now = this.clock.now();
    // A key whose etcd lease just ran out is about to be deleted by etcd: already invisible here.
    return { items: items.filter((i) => i.expiresAt === null || i.expiresAt > now), revision: Number(res.header.revision) };
  }

  async put(key: string, value: string, options: WriteOptions = {}): Promise<StoredValue> {
    const lease = await this.grant(options.ttlSeconds);
    const res = await this.call('put', () => this.client.kv.put({ key: Buffer.from(key), value: Buffer.from(value), lease: lease.id, prev_kv: true })).catch(
      async (err) => {
        await this.revoke(lease.id);
        throw err;
      },
    );
    await this.revoke(res.prev_kv?.lease, lease.id);
    const revision = Number(res.header.revision);
    return { key, value, createRevision: res.prev_kv ? Number(res.prev_kv.create_revision) : revision, modRevision: revision, expiresAt: lease.expiresAt };
  }

  async create(key: string, value: string, options: WriteOptions = {}): Promise<StoredValue | undefined> {
    return this.conditionalPut(key, value, { target: CompareTarget.Version, version: 0 }, options);
  }

  async update(key: string, value: string, expectedModRevision: number, options: WriteOptions = {}): Promise<StoredValue | undefined> {
    return this.conditionalPut(key, value, { target: CompareTarget.Mod, mod_revision: expectedModRevision }, options);
  }

  async delete(key: string, expectedModRevision?: number): Promise<boolean> {
    const k = Buffer.from(key);
    const res = await this.call('delete', () =>
      this.client.kv.txn({
        compare:
          expectedModRevision === undefined ? [] : [{ key: k, result: CompareResult.Equal, target: CompareTarget.Mod, mod_revision: expectedModRevision }],
        success: [{ request_delete_range: { key: k, prev_kv: true } }],
        failure: [],
      }),
    );
    const prev = res.succeeded ? res.responses[0]?.response_delete_range?.prev_kvs?.[0] : undefined;
    if (!prev) return false;
    await this.revoke(prev.lease);
    return true;
  }

  async compact(revision: number): Promise<void> {
    await this.call('compact', () => this.client.kv.compact({ revision, physical: true }));
  }

  /**
   * The client's own watch reconnect is not used: its stream reports one failure twice ('error', then 'end'),
   * each scheduling a reconnect, so while etcd is away the attempts double every round (a log and memory storm
   * within a minute). Instead, a watcher that loses its stream is dropped at once, which leaves the client idle,
   * and a new one is made after tulle's own capped backoff, from the revision after the last one received.
   */
  watch(prefix: string, afterRevision: number, handlers: WatchHandlers): WatchHandle {
    let ended = false;
    let received = afterRevision;
    let current: Watcher | undefined;
    let retry: NodeJS.Timeout | undefined;
    const backoff = new Backoff({ initialMs: this.reconnectInitialMs, maxMs: this.reconnectMaxMs });
    // Responses are turned into events one after another (each put needs its lease's TTL from etcd), so
    // delivery keeps etcd's order.
    let queue: Promise<void> = Promise.resolve();
    const open = (): void => {
      if (ended) return;
      const watcher = this.client
        .watch()
        .prefix(prefix)
        .startRevision(String(received + 1))
        .watcher();
      current = watcher;
      watcher.on('data', (res: IWatchResponse) => {
        if (current !== watcher) return;
        received = Math.max(received, Number(res.header.revision));
        if (res.events.length === 0) return;
        queue = queue.then(async () => {
          const events = await this.withRetry(
            'read lease TTL',
            () => Promise.all(res.events.map((e) => this.toEvent(e.type, e.kv))),
            () => ended,
          );
          if (!ended && events) handlers.events(events, Number(res.header.revision));
        });
      });
      watcher.on('connected', () => {
        if (current === watcher) backoff.reset();
      });
      watcher.on('disconnected', (err: Error) => {
        if (ended || current !== watcher) return;
        current = undefined;
        void watcher.cancel().catch(() => {}); // not connected: only detaches it, leaving the client idle
        const delay = backoff.next();
        const wrapped = this.wrap(err, 'watch');
        this.logger.debug(`watch stream lost, reconnecting in ${delay} ms`, {
          store: this.url,
          watch: prefix,
          fromRevision: received + 1,
          error: wrapped.message,
        });
        handlers.error(wrapped);
        retry = setTimeout(open, delay);
      });
      // etcd cancels a watch whose start revision was compacted away (or that it cannot serve any more).
      // The client has already dropped a cancelled watcher: cancelling it again would confuse its stream.
      watcher.on('error', (err: Error) => {
        if (ended || current !== watcher) return;
        current = undefined;
        ended = true;
        handlers.lost(`etcd cancelled the watch from revision ${received + 1} (${err.message.trim() || 'compacted'})`);
      });
    };
    open();
    return {
      close: async () => {
        ended = true;
        clearTimeout(retry);
        const watcher = current;
        current = undefined;
        // Cancelling waits for etcd's answer; when etcd is away there is none, so do not wait long for it.
        if (watcher)
          await atMost(
            250,
            watcher.cancel().catch(() => {}),
          );
      },
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.client.close();
  }

  private async conditionalPut(
    key: string,
    value: string,
    compare: { target: CompareTarget; version?: number; mod_revision?: number },
    options: WriteOptions,
  ): Promise<StoredValue | undefined> {
    const k = Buffer.from(key);
    const lease = await this.grant(options.ttlSeconds);
    let res;
    try {
      res = await this.call('transaction', () =>
        this.client.kv.txn({
          compare: [{ key: k, result: CompareResult.Equal, ...compare }],
          success: [{ request_put: { key: k, value: Buffer.from(value), lease: lease.id, prev_kv: true } }],
          failure: [],
        }),
      );
    } catch (err) {
      await this.revoke(lease.id);
      throw err;
    }
    if (!res.succeeded) {
      await this.revoke(lease.id);
      return undefined;
    }
    const prev = res.responses[0]?.response_put?.prev_kv;
    await this.revoke(prev?.lease, lease.id);
    const revision = Number(res.header.revision);
    return { key, value, createRevision: prev ? Number(prev.create_revision) : revision, modRevision: revision, expiresAt: lease.expiresAt };
  }

  /** A fresh etcd lease for one key (flannel's habit: one lease per subnet key); "0" = no TTL. */
  private async grant(ttlSeconds: number | undefined): Promise<{ id: string; expiresAt: number | null }> {
    if (ttlSeconds === undefined) return { id: '0', expiresAt: null };
    const res = await this.call('lease grant', () => this.client.leaseClient.leaseGrant({ TTL: Math.max(1, Math.ceil(ttlSeconds)) }));
    return { id: res.ID, expiresAt: this.clock.now() + Number(res.TTL) * 1000 };
  }

  /** Drop a key's previous etcd lease once the key has moved to a new one. Best effort: it expires anyway. */
  private async revoke(id: string | undefined, unless?: string): Promise<void> {
    if (!id || id === '0' || id === unless) return;
    try {
      await this.client.leaseClient.leaseRevoke({ ID: id });
    } catch (err) {
      this.logger.debug('could not revoke an old etcd lease (it will expire by itself)', { store: this.url, lease: id, error: err });
    }
  }

  private async expiresAt(leaseId: string): Promise<number | null> {
    if (!leaseId || leaseId === '0') return null;
    const res = await this.call('lease TTL', () => this.client.leaseClient.leaseTimeToLive({ ID: leaseId }));
    const ttl = Number(res.TTL);
    return this.clock.now() + Math.max(0, ttl) * 1000;
  }

  private async toStored(kv: IKeyValue): Promise<StoredValue> {
    return {
      key: kv.key.toString(),
      value: kv.value.toString(),
      createRevision: Number(kv.create_revision),
      modRevision: Number(kv.mod_revision),
      expiresAt: await this.expiresAt(kv.lease),
    };
  }

  private async toEvent(type: 'Put' | 'Delete', kv: IKeyValue): Promise<WatchEvent> {
    if (type === 'Delete') return { type: 'delete', key: kv.key.toString(), modRevision: Number(kv.mod_revision) };
    return { type: 'put', ...(await this.toStored(kv)) };
  }

  /** Retry a read that must succeed for the watch to go on, until it does or the watch ends. */
  private async withRetry<T>(what: string, fn: () => Promise<T>, stop: () => boolean): Promise<T | undefined> {
    const backoff = new Backoff({ initialMs: 200, maxMs: 5000 });
    for (;;) {
      try {
        return await fn();
      } catch (err) {
        if (stop()) return undefined;
        const delay = backoff.next();
        const error = this.wrap(err, what);
        const message = error instanceof StoreUnavailableError ? `store unreachable, retrying in ${delay} ms` : `${what} failed, retrying in ${delay} ms`;
        this.logger.debug(message, { store: this.url, error: error.message });
        await sleep(delay);
      }
    }
  }

  private async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    if (this.closed) throw new StoreError(this.url, 'the registry is closed');
    try {
      return await fn();
    } catch (err) {
      throw this.wrap(err, what);
    }
  }

  private wrap(err: unknown, what: string): Error {
    if (err instanceof StoreError || err instanceof StoreUnavailableError) return err;
    const e = err instanceof Error ? err : new Error(String(err));
    const unavailable =
      isRecoverableError(e) ||
      ['BrokenCircuitError', 'GRPCDeadlineExceededError', 'EtcdWatchStreamEnded', 'GRPCCancelledError'].includes(e.constructor.name) ||
      /ECONNREFUSED|No connection|UNAVAILABLE/i.test(e.message);
    const detail = `${what}: ${plainEtcdMessage(e)}`;
    return unavailable ? new StoreUnavailableError(this.url, detail, e) : new StoreError(this.url, detail, e);
  }
}

/**
 * The client's and gRPC's words for "etcd is away" in plain words: a user reads "etcd did not answer", not
 * "Breaker is open" or "14 UNAVAILABLE: No connection established. Last error: null. Resolution note: ".
 */
export function plainEtcdMessage(e: Error): string {
  const name = e.constructor.name;
  if (name === 'BrokenCircuitError' || /breaker is open/i.test(e.message)) {
    return 'etcd did not answer the last attempts, so the client waits a moment before trying again (is etcd running, and reachable from this host?)';
  }
  if (name === 'GRPCDeadlineExceededError' || /DEADLINE_EXCEEDED/.test(e.message)) return 'etcd did not answer in time';
  if (/ECONNREFUSED|No connection established/i.test(e.message))
    return 'no etcd answers at this address (connection refused: is etcd running, and is its client port open?)';
  if (/EHOSTUNREACH|ENETUNREACH/.test(e.message)) return 'etcd cannot be reached from this host (no route to it)';
  // gRPC appends notes that say nothing here ("Last error: null.", "Resolution note: ").
  return e.message
    .split('\n')[0]!
    .replace(/\s*Resolution note:.*$/, '')
    .replace(/\s*Last error: null\.?/, '')
    .replace(/^\d+ [A-Z_]+: /, '')
    .replace(/\.$/, '');
}

/** Wait for `promise`, but no longer than `ms` (and leave no timer behind). */
async function atMost(ms: number, promise: Promise<unknown>): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([promise, new Promise((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}
