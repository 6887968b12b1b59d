/**
 * Keeps the kernel equal to the plan: reads what the kernel holds (one dump each of tulle's routes, the VTEP's
 * neighbours and its FDB), diffs it against the planned peers, and writes only the difference, pipelined in
 * one batch. A peer whose writes fail part-way is rolled back, so no peer is ever left half-programmed.
 *
 * Runs are serialised and coalesced: asking for a reconcile while one runs schedules exactly one more.
 */
import type { Logger } from '../base/log.js';
import type { NetlinkClient, NetlinkOp } from '../netlink/index.js';
import { describeWrite, diffOverlay, rollbackWrites, type KernelView, type KernelWrite } from './diff.js';
import { planPeers, type PeerLease, type PlanContext } from './plan.js';

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
}

export function toNetlinkOp(w: KernelWrite): NetlinkOp {
  switch (w.kind) {
    case 'neighbor':
      return w.op === 'replace'
        ? { op: 'replaceNeighbor', args: { dev: w.entry.dev, ip: w.entry.ip, mac: w.entry.mac, state: 'permanent' } }
        : { op: 'deleteNeighbor', args: { dev: w.entry.dev, ip: w.entry.ip } };
    case 'fdb':
      return { op: w.op === 'replace' ? 'replaceFdb' : 'deleteFdb', args: { dev: w.entry.dev, mac: w.entry.mac, dst: w.entry.dst, self: true, permanent: true } };
    case 'route': {
      const r = { dst: w.entry.dst, via: w.entry.via, dev: w.entry.dev, onlink: w.entry.onlink, protocol: w.entry.protocol };
      return { op: w.op === 'replace' ? 'replaceRoute' : 'deleteRoute', args: r };
    }
  }
}

export class Reconciler {
  private peers = new Map<string, PeerLease>();
  private running: Promise<ReconcileResult> | undefined;
  private pending: Promise<ReconcileResult> | undefined;

  constructor(
    private readonly nl: NetlinkClient,
    private ctx: PlanContext,
    private readonly log: Logger,
    private readonly hooks: ReconcilerHooks = {},
  ) {}

  setPeers(peers: Iterable<PeerLease>): void {
    this.peers = new Map([...peers].map((p) => [p.subnet, p]));
  }

  updateContext(ctx: Partial<PlanContext>): void {
    this.ctx = { ...this.ctx, ...ctx };
  }

  /** Reconcile now, or right after the run in progress (several requests meanwhile share one run). */
  reconcile(reason: string): Promise<ReconcileResult> {
    if (!this.running) {
      this.running = this.runOnce(reason).finally(() => {
        this.running = undefined;
      });
      return this.running;
    }
    this.pending ??= this.running
      .catch(() => undefined)
      .then(() => {
        this.pending = undefined;
        return this.reconcile(reason);
      });
    return this.pending;
  }

  /** What the kernel holds that tulle may own (see KernelView). */
  async readKernel(): Promise<KernelView> {
    const [routes, neighbors, fdb] = await Promise.all([
      this.nl.listRoutes({ table: 254, protocol: this.ctx.routeProtocol }),
      this.nl.listNeighbors({ dev: this.ctx.vtep }),
      this.nl.listFdb({ dev: this.ctx.vtep }),
    ]);
    return {
      routes: routes
        .filter((r) => r.dst !== 'default' && r.via && r.dev)
        .map((r) => ({ dst: r.dst, via: r.via!, dev: r.dev!, onlink: Boolean(r.onlink), protocol: r.protocol ?? 0 })),
      neighbors: neighbors.filter((n) => n.state === 'permanent' && n.ip.includes('.') && n.mac).map((n) => ({ dev: n.dev, ip: n.ip, mac: n.mac! })),
      fdb: fdb.filter((f) => f.dst && f.dst.includes('.')).map((f) => ({ dev: f.dev, mac: f.mac, dst: f.dst! })),
    };
  }

  private async runOnce(reason: string): Promise<ReconcileResult> {
    const started = performance.now();
    const plans = planPeers(this.ctx, this.peers.values());
    const view = await this.readKernel();
    const diff = diffOverlay(plans, view);

    let writes = 0;
    let failed = 0;
    const apply = async (list: KernelWrite[]) => {
      if (list.length === 0) return [];
      const results = await this.nl.batch(list.map(toNetlinkOp));
      return results.map((r, i) => {
        const w = list[i]!;
        if (r.ok) {
          writes++;
          this.hooks.onWrite?.(w);
        } else if (!(w.op === 'delete' && r.error.errno === 'ENOENT')) {
          failed++;
          this.hooks.onFailure?.(w, r.error);
          this.log.warn('kernel write failed', { write: describeWrite(w), error: r.error.message });
        }
        return r.ok;
      });
    };

    await apply(diff.removals);
    const peerWrites = [...diff.peers.entries()];
    const flat = peerWrites.flatMap(([, ws]) => ws);
    const ok = await apply(flat);
    // Roll back any peer with a failed write: its earlier successful writes are undone.
    const rollback: KernelWrite[] = [];
    let offset = 0;
    const brokenPeers = new Set<string>();
    for (const [subnet, ws] of peerWrites) {
      const mine = ok.slice(offset, offset + ws.length);
      offset += ws.length;
      if (mine.some((x) => !x)) {
        brokenPeers.add(subnet);
        rollback.push(...rollbackWrites(ws.filter((_, i) => mine[i])));
      }
    }
    if (rollback.length) {
      this.log.warn('rolling back partly programmed peers', { peers: [...brokenPeers] });
      await this.nl.batch(rollback.map(toNetlinkOp));
    }
    const result: ReconcileResult = { writes, failed, programmed: plans.size - brokenPeers.size, durationMs: performance.now() - started };
    if (writes || failed) this.log.info('reconciled', { reason, ...result, durationMs: Math.round(result.durationMs * 10) / 10 });
    this.hooks.onResult?.(result, reason);
    return result;
  }
}
