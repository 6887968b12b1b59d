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
 *    kernel event that isExpected() calls drift, and drift brings a full run. A peer whose writes fail part-way is rolled back, so no peer is ever left half-programmed, and is
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
import { cidrContainsCidr, cidrsOverlap, parseCidr4 } from '../base/ip.js';
import type { Logger } from '../base/log.js';
import type { NetlinkClient, NetlinkEvent, NetlinkOp } from '../netlink/index.js';
import type { Lease } from '../subnet/lease.js';
import { admitLeases, type AdmissionContext, type AdmissionResult } from './admission.js';
import { describeWrite, diffOverlay, rollbackWrites, type KernelWrite, type OverlayDiff } from './diff.js';
import { KernelView, readKernelView, type KernelReader } from './kernel-view.js';
import { planPeer, planPeers, type PeerLease, type PeerPlan, type PlanContext } from './plan.js';

export interface ReconcileResult {
  writes: number;
  failed: number;
  /** Peers fully programmed after this run. */
  programmed: number;
  durationMs: number;
}

export interface ReconcilerHooks {
  onWrite?(w: KernelWrite): void;
  onFailure?(w: KernelWrite, err: Error): void;
  onResult?(r: ReconcileResult, reason: string): void;
  /** Every run's admission (the agent logs and counts the rejections that are new). */
  onAdmission?(a: AdmissionResult): void;
  /** Before any entry is written: the admitted peers (the VXLAN guard lets them in before their first packet). */
  beforeProgram?(admitted: AdmissionResult['admitted']): Promise<void>;
}

/** What the reconciler needs of the kernel: the three dumps of a KernelView and a batch of writes. */
export type KernelAccess = KernelReader & Pick<NetlinkClient, 'batch'>;

/** What admission needs besides the leases and the kernel's routes. */
export type AdmissionSettings = Omit<AdmissionContext, 'foreignRoutes' | 'ownSubnet'>;

export interface ReconcilerContext extends PlanContext {
  admission: AdmissionSettings;
}

/** Retry schedule of a peer whose writes the kernel refused. */
const RETRY_INITIAL_MS = 1000;
const RETRY_MAX_MS = 60_000;
/** Writes per batch: as many as the netlink socket sends in one chunk. */
const WRITE_SLICE = 1024;

interface Failing {
  attempts: number;
  retryAt: number;
  message: string;
}

export function toNetlinkOp(w: KernelWrite): NetlinkOp {
  switch (w.kind) {
    case 'neighbor':
      return w.op === 'delete'
        ? { op: 'deleteNeighbor', args: { dev: w.entry.dev, ip: w.entry.ip } }
        : { op: 'replaceNeighbor', args: { dev: w.entry.dev, ip: w.entry.ip, mac: w.entry.mac, state: 'permanent' } };
    case 'fdb':
      return {
        op: w.op === 'delete' ? 'deleteFdb' : 'replaceFdb',
        args: { dev: w.entry.dev, mac: w.entry.mac, dst: w.entry.dst, self: true, permanent: true },
      };
    case 'route': {
      const r = { dst: w.entry.dst, via: w.entry.via, dev: w.entry.dev, onlink: w.entry.onlink, protocol: w.entry.protocol };
      return { op: w.op === 'add' ? 'addRoute' : w.op === 'replace' ? 'replaceRoute' : 'deleteRoute', args: r };
    }
  }
}

/** How a reconcile request is run: `full` dumps the kernel; `incremental` trusts the programmed plans. */
export type ReconcileMode = 'full' | 'incremental';

const sameRoute = (a: PeerPlan['route'], b: PeerPlan['route']): boolean =>
  a.via === b.via && a.dev === b.dev && a.onlink === b.onlink && a.protocol === b.protocol;

/** Do two plans of one subnet ask for the same kernel entries? */
function samePlan(a: PeerPlan, b: PeerPlan): boolean {
  return (
    sameRoute(a.route, b.route) &&
    a.neighbor?.mac === b.neighbor?.mac &&
    a.neighbor?.ip === b.neighbor?.ip &&
    a.fdb?.mac === b.fdb?.mac &&
    a.fdb?.dst === b.fdb?.dst
  );
}

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
  private readonly plannedNeighbors = new Map<string, string>();
  private readonly plannedFdb = new Map<string, string>();
  private readonly network: Cidr4;
  private admission: AdmissionResult = { admitted: [], rejected: [] };

  constructor(
    private readonly nl: KernelAccess,
    private readonly ctx: ReconcilerContext,
    private readonly log: Logger,
    private readonly hooks: ReconcilerHooks = {},
    private readonly now: () => number = Date.now,
  ) {
    this.network = ctx.admission.network;
  }

  /** The peer leases as the store has them (admission happens at every run, against the kernel's routes). */
  setLeases(leases: Iterable<Lease>): void {
    this.leases = new Map([...leases].map((l) => [l.key, l]));
  }

  /** Apply a batch of the lease watcher's events (the next incremental run writes what they change). */
  updateLeases(events: Iterable<{ type: 'added' | 'changed' | 'removed'; lease: Lease }>): void {
    for (const { type, lease } of events) {
      if (type === 'removed') this.leases.delete(lease.key);
      else this.leases.set(lease.key, lease);
    }
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
    return readKernelView(this.nl, this.ctx);
  }

  /**
   * Does this kernel event leave tulle's entries as the last run planned them? Announcements of the agent's own
   * writes do; false means drift (an entry deleted or rewritten by someone else, a foreign route appearing in or
   * leaving the overlay network): reconcile.
   */
  isExpected(e: NetlinkEvent): boolean {
    switch (e.kind) {
      case 'route': {
        const r = e.route;
        if ((r.table ?? 254) !== 254 || r.dst === 'default' || !r.dst.includes('.')) return true;
        const planned = this.plans.get(r.dst)?.route;
        if (r.protocol !== this.ctx.routeProtocol) {
          // Someone else's route: it matters only when it lands in (or leaves) a peer's subnet.
          const dst = parseCidr4(r.dst.includes('/') ? r.dst : `${r.dst}/32`, 'route', true);
          if (!cidrsOverlap(dst, this.network)) return true;
          // Keep the foreign routes current for incremental admission (a lease arriving later is judged by them).
          this.foreign = this.foreign.filter((f) => f.network !== dst.network || f.prefix !== dst.prefix);
          if (e.action !== 'del') this.foreign.push(dst);
          if (e.action === 'del') return !this.admission.rejected.some((x) => x.reason === 'foreign-route');
          return planned === undefined && ![...this.plans.keys()].some((s) => cidrContainsCidr(parseCidr4(s), dst));
        }
        if (e.action === 'del') return !planned;
        return planned !== undefined && planned.via === r.via && planned.dev === r.dev && planned.onlink === Boolean(r.onlink);
      }
      case 'neighbor': {
        const n = e.neighbor;
        if (n.dev !== this.ctx.vtep) return true;
        const mac = this.plannedNeighbors.get(n.ip);
        if (e.action === 'del') return mac === undefined;
        if (n.state !== 'permanent') return mac === undefined;
        return mac !== undefined && mac === n.mac;
      }
      case 'fdb': {
        const f = e.fdb;
        if (f.dev !== this.ctx.vtep || !f.dst) return true;
        const dst = this.plannedFdb.get(f.mac);
        if (e.action === 'del') return dst !== f.dst;
        return dst === f.dst;
      }
      default:
        return true;
    }
  }

  private learn(p: PeerPlan): void {
    this.plans.set(p.subnet, p);
    if (p.neighbor) this.plannedNeighbors.set(p.neighbor.ip, p.neighbor.mac);
    if (p.fdb) this.plannedFdb.set(p.fdb.mac, p.fdb.dst);
  }

  private forget(p: PeerPlan): void {
    if (this.plans.get(p.subnet) === p) this.plans.delete(p.subnet);
    if (p.neighbor && this.plannedNeighbors.get(p.neighbor.ip) === p.neighbor.mac) this.plannedNeighbors.delete(p.neighbor.ip);
    if (p.fdb && this.plannedFdb.get(p.fdb.mac) === p.fdb.dst) this.plannedFdb.delete(p.fdb.mac);
  }

  /** Full run: the plans of every admitted peer against the kernel as dumped. */
  private planFull(due: readonly PeerLease[], view: KernelView): OverlayDiff {
    const plans = planPeers(this.ctx, due);
    this.plans = new Map();
    this.plannedNeighbors.clear();
    this.plannedFdb.clear();
    for (const p of plans.values()) this.learn(p);
    return diffOverlay(plans, view);
  }

  /**
   * Incremental run: only the peers whose plan changed (added, rewritten, gone), diffed against their previous
   * plans, which stand for what the kernel holds of them.
   */
  private planChanges(due: readonly PeerLease[]): OverlayDiff {
    const changed = new Map<string, PeerPlan>();
    const before: { routes: PeerPlan['route'][]; neighbors: NonNullable<PeerPlan['neighbor']>[]; fdb: NonNullable<PeerPlan['fdb']>[] } = {
      routes: [],
      neighbors: [],
      fdb: [],
    };
    const was = (p: PeerPlan) => {
      before.routes.push(p.route);
      if (p.neighbor) before.neighbors.push(p.neighbor);
      if (p.fdb) before.fdb.push(p.fdb);
    };
    const keep = new Set<string>();
    for (const lease of due) {
      if (lease.subnet === this.ctx.ownSubnet) continue;
      keep.add(lease.subnet);
      const old = this.plans.get(lease.subnet);
      const plan = planPeer(this.ctx, lease);
      if (old && samePlan(old, plan)) continue;
      if (old) was(old);
      changed.set(lease.subnet, plan);
    }
    const gone = [...this.plans.values()].filter((p) => !keep.has(p.subnet));
    for (const p of gone) was(p);
    for (const p of gone) this.forget(p);
    for (const p of changed.values()) {
      const old = this.plans.get(p.subnet);
      if (old) this.forget(old);
    }
    for (const p of changed.values()) this.learn(p);
    return diffOverlay(changed, KernelView.of(this.ctx.vtep, this.ctx.routeProtocol, before));
  }

  private async runOnce(reason: string): Promise<ReconcileResult> {
    const started = performance.now();
    // A peer due for a retry may have left entries the plans do not show (a rollback restores nothing it replaced): full.
    const retryDue = [...this.failing.values()].some((f) => f.retryAt <= this.now());
    const full = this.wantFull || !this.synced || retryDue;
    this.wantFull = false;
    const view = full ? await this.readKernel() : undefined;
    if (view) this.foreign = view.foreignRoutes.filter((f) => cidrsOverlap(f, this.network));
    this.admission = admitLeases({ ...this.ctx.admission, ownSubnet: this.ctx.ownSubnet, foreignRoutes: this.foreign }, this.leases.values());
    this.hooks.onAdmission?.(this.admission);
    await this.hooks.beforeProgram?.(this.admission.admitted);
    const now = this.now();
    const due = this.admission.admitted.filter((p) => (this.failing.get(p.subnet)?.retryAt ?? 0) <= now);
    const diff = view ? this.planFull(due, view) : this.planChanges(due);
    this.synced = true;

    let writes = 0;
    let failed = 0;
    // Written a slice at a time: the requests of one slice (and the kernel's announcements of them) become garbage
    // before the next is built, so programming thousands of peers does not hold them all at once.
    const apply = async (list: KernelWrite[]) => {
      const outcome: Array<string | undefined> = [];
      for (let start = 0; start < list.length; start += WRITE_SLICE) {
        const slice = list.slice(start, start + WRITE_SLICE);
        const results = await this.nl.batch(slice.map(toNetlinkOp));
        results.forEach((r, i) => {
          const w = slice[i]!;
          if (r.ok) {
            writes++;
            this.hooks.onWrite?.(w);
            outcome.push(undefined);
          } else if (w.op === 'delete' && (r.error.errno === 'ENOENT' || r.error.errno === 'ESRCH')) {
            outcome.push(undefined);
          } else {
            failed++;
            this.hooks.onFailure?.(w, r.error);
            outcome.push(`${describeWrite(w)}: ${r.error.message}`);
          }
        });
      }
      return outcome;
    };

    const removalErrors = (await apply(diff.removals)).filter(Boolean);
    if (removalErrors.length) this.log.warn('could not remove stale entries', { errors: removalErrors.slice(0, 5), count: removalErrors.length });
    const peerWrites = [...diff.peers.entries()];
    const errors = await apply(peerWrites.flatMap(([, ws]) => ws));
    // Roll back any peer with a failed write: its earlier successful writes are undone.
    const rollback: KernelWrite[] = [];
    let offset = 0;
    const broken = new Map<string, string>();
    for (const [subnet, ws] of peerWrites) {
      const mine = errors.slice(offset, offset + ws.length);
      offset += ws.length;
      const error = mine.find(Boolean);
      if (error) {
        broken.set(subnet, error);
        rollback.push(...rollbackWrites(ws.filter((_, i) => !mine[i])));
      } else {
        this.recovered(subnet);
      }
    }
    // A rolled-back peer is not in the kernel: it leaves the plans, so the next incremental run starts it afresh.
    for (const subnet of broken.keys()) {
      const p = this.plans.get(subnet);
      if (p) this.forget(p);
    }
    if (rollback.length) await this.nl.batch(rollback.map(toNetlinkOp));
    for (const [subnet, error] of broken) this.failed(subnet, error);
    const admitted = new Set(this.admission.admitted.map((p) => p.subnet));
    for (const subnet of this.failing.keys()) if (!admitted.has(subnet)) this.failing.delete(subnet);
    this.scheduleRetry();

    const result: ReconcileResult = { writes, failed, programmed: this.plans.size, durationMs: performance.now() - started };
    if (writes || failed) this.log.info('reconciled', { reason, full, ...result, durationMs: Math.round(result.durationMs * 10) / 10 });
    this.hooks.onResult?.(result, reason);
    return result;
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
