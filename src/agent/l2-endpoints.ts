/**
 * The agent's part of Flood "none", in one object the agent starts once its L2 device exists:
 *
 *   1. prune this host's stale records (addresses its CNI IPAM directory no longer holds);
 *   2. check the device (proxy on, learning off: ensureEndpointDevice);
 *   3. watch `<prefix>/endpoints/`, and on every snapshot or lease change run admission against the admitted
 *      leases and reconcile the device's FDB and neighbour entries.
 *
 * Runs are serialised and coalesced (a change during a run causes exactly one more run); a run the kernel
 * refused is retried after a pause, and the store is retried by the watcher, so the data plane stays as it is
 * while either is away.
 */
import { describeError } from '../base/errors.js';
import { silentLogger, type Logger } from '../base/log.js';
import { EndpointReconciler, ensureEndpointDevice, type EndpointKernel } from '../overlay/l2-endpoints.js';
import type { Registry } from '../store/registry.js';
import { admitEndpoints, EndpointWatcher, type EndpointLease, type EndpointRejection, type EndpointSnapshot } from '../subnet/endpoints.js';
import { pruneStaleEndpoints } from '../subnet/pod-endpoints.js';

export interface EndpointSyncOptions {
  registry: Registry;
  /** The L2 network's store prefix, e.g. "/tulle.io/l2". */
  prefix: string;
  nl: EndpointKernel;
  /** The L2 device, `vxlan<VNI>`. */
  device: string;
  /** This host's lease PublicIP. */
  ownPublicIP: string;
  /** The admitted leases, this host's own among them (read at every run). */
  leases: () => readonly EndpointLease[];
  /** The CNI's IPAM directory for this network; records of this host for addresses not in it are deleted at start. */
  ipamDir?: string;
  logger?: Logger;
  /** Pause before a run the kernel refused is tried again. */
  retryMs?: number;
  /** Aborting it closes the sync, also while start() still waits for a store that does not answer. */
  signal?: AbortSignal;
}

export class EndpointSync {
  private readonly log: Logger;
  private readonly reconciler: EndpointReconciler;
  private watcher: EndpointWatcher | undefined;
  private snapshot: EndpointSnapshot | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private closed = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private lastRejected: EndpointRejection[] = [];
  private reported = new Map<string, string>();
  /** Completed runs (for status and tests). */
  runs = 0;

  private constructor(private readonly o: EndpointSyncOptions) {
    this.log = (o.logger ?? silentLogger).child({ component: 'l2-endpoints' });
    this.reconciler = new EndpointReconciler(o.nl, o.device, this.log);
  }

  /** Prune, check the device, start watching; resolves after the first run. Throws EndpointDeviceError for an unfit device. */
  static async start(o: EndpointSyncOptions): Promise<EndpointSync> {
    const sync = new EndpointSync(o);
    o.signal?.throwIfAborted();
    o.signal?.addEventListener('abort', () => void sync.close(), { once: true });
    if (o.ipamDir !== undefined) {
      try {
        const removed = await pruneStaleEndpoints(o.registry, o.prefix, o.ownPublicIP, o.ipamDir);
        if (removed.length) sync.log.info('removed records of pods this host no longer has', { keys: removed });
      } catch (err) {
        // Stale records only send frames for gone pods here (where they are dropped): not worth failing the start.
        sync.log.warn('could not remove records of pods this host no longer has; the next start tries again', {
          ipamDir: o.ipamDir,
          error: describeError(err),
        });
      }
    }
    for (const change of await ensureEndpointDevice(o.nl, o.device)) sync.log.info('changed the L2 device', { command: change });
    if (sync.closed) return sync;
    sync.watcher = new EndpointWatcher(
      o.registry,
      o.prefix,
      (s) => {
        sync.snapshot = s;
        sync.changed();
      },
      { logger: o.logger },
    );
    await sync.watcher.ready;
    await sync.running;
    return sync;
  }

  /** Records not believed at the last run (malformed ones included), with the reasons. */
  get rejected(): readonly EndpointRejection[] {
    return this.lastRejected;
  }

  /** The admitted leases changed (a host came or went): run again. */
  changed(): void {
    if (this.closed) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.loop().finally(() => (this.running = undefined));
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retryTimer);
    await this.watcher?.close();
    await this.running;
  }

  /** Each record not believed is logged once (again when the reason changes); one believed again, once more. */
  private reportRejections(): void {
    const now = new Map(this.lastRejected.map((r) => [r.key, `${r.reason}: ${r.detail}`]));
    for (const [key, words] of now) if (this.reported.get(key) !== words) this.log.warn('not programming an endpoint record', { key, why: words });
    for (const key of this.reported.keys()) if (!now.has(key)) this.log.info('an endpoint record not believed before is gone or believed now', { key });
    this.reported = now;
  }

  private async loop(): Promise<void> {
    do {
      this.again = false;
      const snap = this.snapshot;
      if (!snap) return;
      const { accepted, rejected } = admitEndpoints(snap.records, this.o.leases(), this.o.ownPublicIP);
      this.lastRejected = [...snap.malformed, ...rejected];
      this.reportRejections();
      try {
        await this.reconciler.reconcile(accepted, this.o.ownPublicIP);
      } catch (err) {
        this.log.warn('endpoint entries not all written; trying again', { error: describeError(err) });
        clearTimeout(this.retryTimer);
        this.retryTimer = setTimeout(() => this.changed(), this.o.retryMs ?? 1000);
      }
      this.runs++;
    } while (this.again && !this.closed);
  }
}
