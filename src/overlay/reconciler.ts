/**
 * Keeps the kernel equal to the plan. Two kinds of run:
 *  - full (at start, on the periodic resync, after drift, an event overflow or a retry): reads what the kernel
 *    holds (one dump each of the main table's routes, the VTEP's neighbours and its FDB), admits the peer leases
 *    (admission.ts: routes tulle does not own are part of the test), diffs the plan of the admitted peers against
 *    the kernel, and writes only the difference, pipelined in one batch;
 *  - incremental (a lease changed): no dump. Admission is still decided over all leases (so a conflict resolves
 *    the same way as in a full run), against the foreign routes of the last dump kept current by kernel events;
 *    only the peers whose plan differs from what was programmed are diffed, against their previous plan, so one
 *    lease change costs the writes of that peer alone. Anything else touching tulle's entries shows up as a
 *    kernel announcement that routeExpected()/neighborExpected() call drift, and drift brings a full run. A peer whose writes fail part-way is rolled back, so no peer is ever left half-programmed, and is
 * retried with capped exponential backoff — logged once per distinct failure, not once per attempt.
 *
 * Ownership: a route is tulle's when it carries tulle's route protocol; a new route is written with `ip route
 * add` (never over a route someone else made), only a route of tulle's with other attributes is replaced.
 * Neighbour and FDB entries live on tulle's own VTEP.
 *
 * Runs are serialised and coalesced: asking for a reconcile while one runs schedules exactly one more.
 */
import { Coalescer } from '../base/coalesce.js';
import type { Cidr4 } from '../base/ip.js';
import { cidrContainsCidr, cidrsOverlap, maskOf } from '../base/ip.js';
import type { Fields, Logger } from '../base/log.js';
import type { EntryEncoder, NeighborRecord, NetlinkClient, NetlinkError, RouteRecord } from '../netlink/index.js';
import type { Lease } from '../subnet/lease.js';
import { AdmissionMemo, admitLeases, admittedChange, type AdmissionContext, type AdmissionResult, type AdmittedChange } from './admission.js';
import { describeWrite, diffOverlay, peerWrites, rollbackWrites, type KernelWrite } from './diff.js';
import { KernelView, readKernelView, type KernelReader } from './kernel-view.js';
import { fdbOf, neighborOf, planMatches, planPeer, routeKey, routeOf, type PeerLease, type PeerPlan, type PlanContext } from './plan.js';

export interface ReconcileResult {
  writes: number;
  failed: number;
  /** Peers fully programmed after this run. */
  programmed: number;
  durationMs: number;
}

export interface ReconcilerHooks {
  /** The writes of one run that the kernel accepted, counted by kind and op (one call per run, not per write). */
  onWrites?(counts: ReadonlyMap<WriteName, number>): void;
  onFailure?(w: KernelWrite, err: Error): void;
  onResult?(r: ReconcileResult, reason: string): void;
  /** Every run's admission (the agent logs and counts the rejections that are new). */
  onAdmission?(a: AdmissionResult): void;
  /**
   * Before any entry is written, when the admitted peers changed (the VXLAN guard lets them in before their first
   * packet): all of them, and what changed since the last call — undefined at the first, when only the whole is known.
   * What it returns goes into the run's "reconciled" log line (one line per run, also when it wrote no entry).
   */
  beforeProgram?(admitted: AdmissionResult['admitted'], change: AdmittedChange | undefined): Promise<Fields | undefined>;
}

/** What the reconciler needs of the kernel: the three dumps of a KernelView and a batch of writes. */
export type KernelAccess = KernelReader & Pick<NetlinkClient, 'writeEntries'>;

/** What admission needs besides the leases and the kernel's routes. */
export type AdmissionSettings = Omit<AdmissionContext, 'foreignRoutes' | 'ownSubnet'>;

export interface ReconcilerContext extends PlanContext {
  admission: AdmissionSettings;
}

const AF_BRIDGE = 7;
const NUD_PERMANENT = 0x80;

/** Retry schedule of a peer whose writes the kernel refused. */
const RETRY_INITIAL_MS = 1000;
const RETRY_MAX_MS = 60_000;

/**
 * The hook's names of a write's kind and op, made once: a name built per write (a template string) would cost a
 * string and its hash for each of thousands of writes.
 */
type WriteName = `${KernelWrite['kind']} ${KernelWrite['op']}`;
const WRITE_NAMES: Readonly<Record<KernelWrite['kind'], Readonly<Record<KernelWrite['op'], WriteName>>>> = {
  neighbor: { add: 'neighbor add', replace: 'neighbor replace', delete: 'neighbor delete' },
  fdb: { add: 'fdb add', replace: 'fdb replace', delete: 'fdb delete' },
  route: { add: 'route add', replace: 'route replace', delete: 'route delete' },
};

interface Failing {
  attempts: number;
  retryAt: number;
  message: string;
}

/**
 * Write `w` as the kernel gets it (netlink/packed.ts): from its numbers, its device by index. A device the kernel
 * view does not know goes as index 0, which the client fails with ENODEV without sending (a route found in the
 * kernel under a device the view could not name keeps the index it was found with).
 */
function encodeWrite(w: KernelWrite, to: EntryEncoder, devices: ReadonlyMap<string, number>): void {
  const n = w.numbers;
  switch (w.kind) {
    case 'neighbor':
      return to.neighbor(w.op, devices.get(w.entry.dev) ?? 0, n.neighborIp, n.mac);
    case 'fdb':
      return to.fdb(w.op, devices.get(w.entry.dev) ?? 0, n.mac, n.fdbDst);
    case 'route':
      // By name first: the view an incremental run diffs against (KernelView.of) numbers its devices itself.
      return to.route(w.op, Math.floor(n.route / 64), n.route % 64, n.via, devices.get(w.entry.dev) ?? n.oif ?? 0, w.entry.onlink, w.entry.protocol);
  }
}

function sameCidrs(a: readonly Cidr4[], b: readonly Cidr4[]): boolean {
  return a.length === b.length && a.every((x, i) => x.network === b[i]!.network && x.prefix === b[i]!.prefix);
}

/** What a run writes: the removals first, then the peers' writes, batch by batch. */
interface RunWrites {
  removals: KernelWrite[];
  /** Per peer subnet, its writes; a batch may be made only when the one before has been sent. */
  batches: Iterable<ReadonlyMap<string, KernelWrite[]>>;
}

/** New peers per batch of writes: about as many as the client packs into one send (netlink/client.ts). */
const NEW_PEERS_PER_BATCH = 256;

/** The writes of new peers (no earlier plan), diffed against `was` one batch of peers at a time. */
function* newPeerBatches(changed: readonly PeerPlan[], was: KernelView): Generator<ReadonlyMap<string, KernelWrite[]>> {
  for (let i = 0; i < changed.length; i += NEW_PEERS_PER_BATCH) yield peerWrites(changed.slice(i, i + NEW_PEERS_PER_BATCH), was).peers;
}

/** How a reconcile request is run: `full` dumps the kernel; `incremental` trusts the programmed plans. */
export type ReconcileMode = 'full' | 'incremental';

export class Reconciler {
  /** The peer leases as the store has them, by key. */
  private leases = new Map<string, Lease>();
  /** Has a full run read the kernel yet (only then can an incremental run trust the programmed plans)? */
  private synced = false;
  private wantFull = false;
  /** Destinations of the routes tulle does not own inside the overlay network: from the last dump, then events. */
  private foreign: Cidr4[] = [];
  private readonly runs = new Coalescer<ReconcileResult>();
  private readonly failing = new Map<string, Failing>();
  private retryTimer: NodeJS.Timeout | undefined;
  private closed = false;
  /**
   * The plans programmed (or being programmed), by subnet — a route's key is its subnet — and their neighbour
   * and FDB entries by key: what kernel events are compared with, and the base of an incremental run.
   */
  private plans = new Map<string, PeerPlan>();
  /** The same as numbers, as kernel announcements come (netlink/scan.ts): route key -> plan, IP -> MAC, MAC -> remote. */
  private readonly plannedRoutes = new Map<number, PeerPlan>();
  private readonly plannedNeighbors = new Map<number, number>();
  private readonly plannedFdb = new Map<number, number>();
  /** Device name -> index, from the last kernel read (the VTEP's, and the devices of tulle's routes). */
  private devices: ReadonlyMap<string, number> = new Map();
  private readonly network: Cidr4;
  private admission: AdmissionResult = { admitted: [], rejected: [] };
  /** Bumped by every lease change: a run decides admission again only when the leases or the foreign routes changed. */
  private leasesVersion = 0;
  private admittedFor: { version: number; foreign: readonly Cidr4[] } | undefined;
  /** Each lease's own checks, kept while the lease object stays the same (foreign routes are looked up per run). */
  private readonly admissionMemo = new AdmissionMemo();

  constructor(
    private readonly nl: KernelAccess,
    private readonly ctx: ReconcilerContext,
    private readonly log: Logger,
    private readonly hooks: ReconcilerHooks = {},
    private readonly now: () => number = Date.now,
  ) {
    this.network = ctx.admission.network;
  }

  /** The peer leases as the store has them (admission is decided at the next run, against the kernel's routes). */
  setLeases(leases: Iterable<Lease>): void {
    this.leases = new Map([...leases].map((l) => [l.key, l]));
    this.leasesVersion++;
  }

  /** Apply a batch of the lease watcher's events (the next incremental run writes what they change). */
  updateLeases(events: Iterable<{ type: 'added' | 'changed' | 'removed'; lease: Lease }>): void {
    for (const { type, lease } of events) {
      if (type === 'removed') this.leases.delete(lease.key);
      else this.leases.set(lease.key, lease);
    }
    this.leasesVersion++;
  }

  /** The last run's admission: the peers programmed and the leases rejected with their reasons. */
  get lastAdmission(): AdmissionResult {
    return this.admission;
  }

  /**
   * Reconcile now, or right after the run in progress (several requests meanwhile share one run, which is full
   * when any of them asked for full). The first run is always full.
   */
  reconcile(reason: string, mode: ReconcileMode = 'full'): Promise<ReconcileResult> {
    if (mode === 'full') this.wantFull = true;
    return this.runs.run(() => this.runOnce(reason));
  }

  /** Stop the retry timer; runs already started finish. */
  close(): void {
    this.closed = true;
    clearTimeout(this.retryTimer);
  }

  /** What the kernel holds that tulle may own (see KernelView), and the routes it does not own. */
  readKernel(): Promise<KernelView> {
    return readKernelView(this.nl, { ...this.ctx, alsoName: this.ctx.directRouting ? this.ctx.underlay : undefined });
  }

  /**
   * Does this route announcement (numbers, see netlink/scan.ts) leave tulle's routes as the last run planned
   * them? Announcements of the agent's own writes do; false means drift — a route of tulle's deleted or rewritten
   * by someone else, a foreign route appearing in (or leaving) a peer's subnet: reconcile.
   */
  routeExpected(deleted: boolean, r: RouteRecord): boolean {
    if (r.table !== 254 || r.family !== 4 || r.dstLen === 0) return true;
    const dst: Cidr4 = { network: (r.dst & maskOf(r.dstLen)) >>> 0, prefix: r.dstLen };
    const planned = this.plannedRoutes.get(routeKey(dst.network, dst.prefix));
    if (r.protocol !== this.ctx.routeProtocol) {
      // Someone else's route: it matters only when it lands in (or leaves) a peer's subnet.
      if (!cidrsOverlap(dst, this.network)) return true;
      // Keep the foreign routes current for incremental admission (a lease arriving later is judged by them).
      this.foreign = this.foreign.filter((f) => f.network !== dst.network || f.prefix !== dst.prefix);
      if (!deleted) this.foreign.push(dst);
      if (deleted) return !this.admission.rejected.some((x) => x.reason === 'foreign-route');
      return planned === undefined && ![...this.plannedRoutes.keys()].some((k) => cidrContainsCidr({ network: Math.floor(k / 64), prefix: k % 64 }, dst));
    }
    if (deleted) return !planned;
    return planned !== undefined && planned.numbers.via === r.via && this.devices.get(planned.routeDev) === r.oif && planned.onlink === r.onlink;
  }

  /** The same for a neighbour or FDB announcement (family AF_BRIDGE): only the VTEP's entries are tulle's. */
  neighborExpected(deleted: boolean, n: NeighborRecord): boolean {
    if (n.ifindex !== this.devices.get(this.ctx.vtep)) return true;
    if (n.family === AF_BRIDGE) {
      if (n.ip !== n.ip) return true; // no IPv4 remote: not an entry tulle writes
      const dst = this.plannedFdb.get(n.mac);
      return deleted ? dst !== n.ip : dst === n.ip;
    }
    const mac = this.plannedNeighbors.get(n.ip);
    if (deleted || (n.state & 0xff) !== NUD_PERMANENT) return mac === undefined;
    return mac !== undefined && mac === n.mac;
  }

  private learn(p: PeerPlan): void {
    this.plans.set(p.subnet, p);
    const n = p.numbers;
    this.plannedRoutes.set(n.route, p);
    if (p.direct) return;
    this.plannedNeighbors.set(n.neighborIp, n.mac);
    this.plannedFdb.set(n.mac, n.fdbDst);
  }

  private forget(p: PeerPlan): void {
    if (this.plans.get(p.subnet) !== p) return;
    this.plans.delete(p.subnet);
    const n = p.numbers;
    this.plannedRoutes.delete(n.route);
    if (p.direct) return;
    if (this.plannedNeighbors.get(n.neighborIp) === n.mac) this.plannedNeighbors.delete(n.neighborIp);
    if (this.plannedFdb.get(n.mac) === n.fdbDst) this.plannedFdb.delete(n.mac);
  }

  /**
   * Bring the plans up to the admitted leases: only the leases whose plan would change are planned again (an
   * unchanged peer costs one map lookup), departed peers are looked for only when some planned subnet is no
   * longer due. Returns the new plans, and the plans they replaced or that left.
   */
  private updatePlans(due: readonly PeerLease[]): { changed: PeerPlan[]; before: PeerPlan[] } {
    // Admitted peers name distinct subnets, so these are lists (diffOverlay takes a list or a map).
    const changed: PeerPlan[] = [];
    const before: PeerPlan[] = [];
    let stillPlanned = 0;
    for (const lease of due) {
      if (lease.subnet === this.ctx.ownSubnet) continue;
      const old = this.plans.get(lease.subnet);
      if (old) stillPlanned++;
      if (old && planMatches(old, lease)) continue;
      if (old) before.push(old);
      changed.push(planPeer(this.ctx, lease));
    }
    if (stillPlanned < this.plans.size) {
      const keep = new Set(due.map((l) => l.subnet));
      for (const p of this.plans.values()) if (!keep.has(p.subnet)) before.push(p);
    }
    for (const p of before) this.forget(p);
    for (const p of changed) this.learn(p);
    return { changed, before };
  }

  /**
   * Full run: the plans of every admitted peer against the kernel as dumped. When the kernel holds exactly what
   * is planned (the usual resync, and a restart with nothing changed) that is found from the dumps alone, with
   * no diff.
   */
  private planFull(due: readonly PeerLease[], view: KernelView): RunWrites {
    this.updatePlans(due);
    if (view.holdsExactly({ routes: this.plannedRoutes, neighbors: this.plannedNeighbors, fdb: this.plannedFdb })) return { removals: [], batches: [] };
    const diff = diffOverlay(this.plans, view);
    return { removals: diff.removals, batches: [diff.peers] };
  }

  /**
   * Incremental run: only the peers whose plan changed (added, rewritten, gone), diffed against their previous
   * plans, which stand for what the kernel holds of them.
   */
  private planChanges(due: readonly PeerLease[]): RunWrites {
    const { changed, before } = this.updatePlans(due);
    const was = KernelView.of(this.ctx.vtep, this.ctx.routeProtocol, {
      routes: before.map(routeOf),
      neighbors: before.flatMap((p) => neighborOf(p) ?? []),
      fdb: before.flatMap((p) => fdbOf(p) ?? []),
    });
    if (before.length) {
      const diff = diffOverlay(changed, was);
      return { removals: diff.removals, batches: [diff.peers] };
    }
    // Only new peers (a host joining; every peer at once when the store comes back or the agent first programs a
    // big cluster): nothing to remove, and each batch is diffed only when its turn comes.
    return { removals: [], batches: newPeerBatches(changed, was) };
  }

  private async runOnce(reason: string): Promise<ReconcileResult> {
    const started = performance.now();
    // A peer due for a retry may have left entries the plans do not show (a rollback restores nothing it replaced): full.
    const retryDue = [...this.failing.values()].some((f) => f.retryAt <= this.now());
    const full = this.wantFull || !this.synced || retryDue;
    this.wantFull = false;
    const view = full ? await this.readKernel() : undefined;
    if (view) {
      const foreign = view.foreignRoutes.filter((f) => cidrsOverlap(f, this.network));
      // The same array when nothing changed: the admission memo keys on it.
      if (!sameCidrs(foreign, this.foreign)) this.foreign = foreign;
      this.devices = view.devices();
    }
    const before = this.admittedFor;
    // null: the admitted peers are the same objects as at the last run.
    let change: AdmittedChange | undefined | null = null;
    if (!before || before.version !== this.leasesVersion || !sameCidrs(before.foreign, this.foreign)) {
      const previous = this.admission.admitted;
      this.admission = admitLeases(
        { ...this.ctx.admission, ownSubnet: this.ctx.ownSubnet, foreignRoutes: this.foreign },
        this.leases.values(),
        this.admissionMemo,
      );
      this.admittedFor = { version: this.leasesVersion, foreign: this.foreign };
      change = before ? admittedChange(previous, this.admission.admitted) : undefined;
    }
    this.hooks.onAdmission?.(this.admission);
    const notes =
      change === undefined || (change && (change.added.length || change.removed.length))
        ? await this.hooks.beforeProgram?.(this.admission.admitted, change)
        : undefined;
    const now = this.now();
    const due = this.failing.size ? this.admission.admitted.filter((p) => (this.failing.get(p.subnet)?.retryAt ?? 0) <= now) : this.admission.admitted;
    const run = view ? this.planFull(due, view) : this.planChanges(due);
    this.synced = true;

    let writes = 0;
    let failed = 0;
    // Pipelined writes (netlink/packed.ts): the kernel works through one chunk on a pool thread (see
    // netlink/socket.ts) while this thread packs the next; only failures and each chunk's last write are answered.
    const written = new Map<WriteName, number>();
    const apply = async (list: KernelWrite[]) => {
      const results = await this.write(list);
      return results.map((error, i): string | undefined => {
        const w = list[i]!;
        if (!error) {
          writes++;
          const what = WRITE_NAMES[w.kind][w.op];
          written.set(what, (written.get(what) ?? 0) + 1);
          return undefined;
        }
        if (w.op === 'delete' && (error.errno === 'ENOENT' || error.errno === 'ESRCH')) return undefined;
        failed++;
        this.hooks.onFailure?.(w, error);
        return error.message; // it starts with the command, in iproute2's words (describeWrite)
      });
    };

    const removalErrors = (await apply(run.removals)).filter(Boolean);
    if (removalErrors.length) this.log.warn('could not remove stale entries', { errors: removalErrors.slice(0, 5), count: removalErrors.length });
    // One list of every peer's writes; the writes of peer p (subnets[p]) are all[ends[p - 1] .. ends[p]). Each batch
    // is sent as soon as it is made, without waiting for the one before: the kernel works through it on a pool
    // thread while this thread makes the next.
    const all: KernelWrite[] = [];
    const ends: number[] = [];
    const subnets: string[] = [];
    const sent: Array<Promise<Array<string | undefined>>> = [];
    for (const peers of run.batches) {
      const first = all.length;
      for (const [subnet, ws] of peers) {
        for (const w of ws) all.push(w);
        ends.push(all.length);
        subnets.push(subnet);
      }
      if (all.length > first) sent.push(apply(all.slice(first)));
    }
    const errors = (await Promise.all(sent)).flat();
    // Roll back any peer with a failed write: its earlier successful writes are undone.
    const rollback: KernelWrite[] = [];
    const broken = new Map<string, string>();
    let p = 0;
    for (const subnet of subnets) {
      const start = p === 0 ? 0 : ends[p - 1]!;
      const end = ends[p++]!;
      let error: string | undefined;
      for (let i = start; i < end && !error; i++) error = errors[i];
      if (error) {
        broken.set(subnet, error);
        rollback.push(...rollbackWrites(all.slice(start, end).filter((_, i) => !errors[start + i])));
      } else {
        this.recovered(subnet);
      }
    }
    // A rolled-back peer is not in the kernel: it leaves the plans, so the next incremental run starts it afresh.
    for (const subnet of broken.keys()) {
      const p = this.plans.get(subnet);
      if (p) this.forget(p);
    }
    if (rollback.length) await this.write(rollback);
    for (const [subnet, error] of broken) this.failed(subnet, error);
    if (this.failing.size) {
      const admitted = new Set(this.admission.admitted.map((p) => p.subnet));
      for (const subnet of this.failing.keys()) if (!admitted.has(subnet)) this.failing.delete(subnet);
    }
    this.scheduleRetry();

    if (written.size) this.hooks.onWrites?.(written);
    const result: ReconcileResult = { writes, failed, programmed: this.plans.size, durationMs: performance.now() - started };
    if (writes || failed || notes) this.log.info('reconciled', { reason, full, ...result, durationMs: Math.round(result.durationMs * 10) / 10, ...notes });
    this.hooks.onResult?.(result, reason);
    return result;
  }

  /** Send the writes, all pipelined (netlink/packed.ts); one result per write: undefined, or why the kernel refused it. */
  private write(list: readonly KernelWrite[]): Promise<Array<NetlinkError | undefined>> {
    if (list.length === 0) return Promise.resolve([]);
    const devices = this.devices;
    return this.nl.writeEntries(
      list.length,
      (k, to) => encodeWrite(list[k]!, to, devices),
      (k) => describeWrite(list[k]!),
    );
  }

  /** A peer's writes failed: back off before trying it again, and say so once per distinct error. */
  private failed(subnet: string, message: string): void {
    const before = this.failing.get(subnet);
    const attempts = (before?.attempts ?? 0) + 1;
    const delay = Math.min(RETRY_MAX_MS, RETRY_INITIAL_MS * 2 ** (attempts - 1));
    this.failing.set(subnet, { attempts, retryAt: this.now() + delay, message });
    if (before?.message !== message)
      this.log.warn("the kernel refused a peer's entries; rolled it back, retrying with backoff", { peer: subnet, error: message, retryInMs: delay });
  }

  private recovered(subnet: string): void {
    const before = this.failing.get(subnet);
    if (!before) return;
    this.failing.delete(subnet);
    this.log.info('peer programmed after earlier failures', { peer: subnet, attempts: before.attempts });
  }

  private scheduleRetry(): void {
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    if (this.closed || this.failing.size === 0) return;
    const next = Math.min(...[...this.failing.values()].map((f) => f.retryAt));
    this.retryTimer = setTimeout(() => void this.reconcile('retry').catch(() => {}), Math.max(0, next - this.now()));
  }
}
