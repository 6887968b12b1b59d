/**
 * The difference between the planned peer entries and what the kernel holds, as an ordered list of writes.
 * Pure. An entry that is already right produces no write at all, so a restarted agent with unchanged leases
 * touches nothing, and a reconcile with nothing to do costs one dump.
 *
 * Order (ARCHITECTURE.md): stale entries go first, route -> neighbour -> FDB (the route stops using the neighbour
 * before it disappears); then per peer neighbour -> FDB -> route (the route only starts to match once the
 * next hop can be resolved and encapsulated).
 */
import type { PeerPlan, PlannedFdb, PlannedNeighbor, PlannedRoute } from './plan.js';

/**
 * Routes are added (`ip route add`, failing rather than overwriting a route someone else made) unless tulle's
 * own route to that destination is there with other attributes: only then `replace`.
 */
export type KernelWrite =
  | { op: 'replace' | 'delete'; kind: 'neighbor'; entry: PlannedNeighbor }
  | { op: 'replace' | 'delete'; kind: 'fdb'; entry: PlannedFdb }
  | { op: 'add' | 'replace' | 'delete'; kind: 'route'; entry: PlannedRoute };

/** What the kernel holds that tulle owns: permanent IPv4 neighbours and FDB entries on its VTEP, routes with tulle's protocol. */
export interface KernelView {
  neighbors: readonly PlannedNeighbor[];
  fdb: readonly PlannedFdb[];
  routes: readonly PlannedRoute[];
}

export interface OverlayDiff {
  /** Entries no plan wants (hosts that left, a peer's old VtepMAC), in removal order. */
  removals: KernelWrite[];
  /** Per peer subnet, the writes that make it right, in programming order; peers already right are absent. */
  peers: Map<string, KernelWrite[]>;
}

const routeKey = (r: { dst: string }): string => r.dst;
const neighborKey = (n: { dev: string; ip: string }): string => `${n.dev} ${n.ip}`;
const fdbKey = (f: { dev: string; mac: string; dst: string }): string => `${f.dev} ${f.mac} ${f.dst}`;

function sameRoute(a: PlannedRoute, b: PlannedRoute): boolean {
  return a.via === b.via && a.dev === b.dev && a.onlink === b.onlink && a.protocol === b.protocol;
}

export function diffOverlay(plans: ReadonlyMap<string, PeerPlan>, view: KernelView): OverlayDiff {
  const haveRoutes = new Map(view.routes.map((r) => [routeKey(r), r]));
  const haveNeighbors = new Map(view.neighbors.map((n) => [neighborKey(n), n]));
  const haveFdb = new Set(view.fdb.map(fdbKey));

  const wantRoutes = new Set<string>();
  const wantNeighbors = new Set<string>();
  const wantFdb = new Set<string>();
  const peers = new Map<string, KernelWrite[]>();

  for (const [subnet, plan] of plans) {
    const writes: KernelWrite[] = [];
    if (plan.neighbor) {
      wantNeighbors.add(neighborKey(plan.neighbor));
      if (haveNeighbors.get(neighborKey(plan.neighbor))?.mac !== plan.neighbor.mac) writes.push({ op: 'replace', kind: 'neighbor', entry: plan.neighbor });
    }
    if (plan.fdb) {
      wantFdb.add(fdbKey(plan.fdb));
      if (!haveFdb.has(fdbKey(plan.fdb))) writes.push({ op: 'replace', kind: 'fdb', entry: plan.fdb });
    }
    wantRoutes.add(routeKey(plan.route));
    const current = haveRoutes.get(routeKey(plan.route));
    if (!current) writes.push({ op: 'add', kind: 'route', entry: plan.route });
    else if (!sameRoute(current, plan.route)) writes.push({ op: 'replace', kind: 'route', entry: plan.route });
    if (writes.length) peers.set(subnet, writes);
  }

  const removals: KernelWrite[] = [
    ...view.routes.filter((r) => !wantRoutes.has(routeKey(r))).map((entry): KernelWrite => ({ op: 'delete', kind: 'route', entry })),
    ...view.neighbors.filter((n) => !wantNeighbors.has(neighborKey(n))).map((entry): KernelWrite => ({ op: 'delete', kind: 'neighbor', entry })),
    ...view.fdb.filter((f) => !wantFdb.has(fdbKey(f))).map((entry): KernelWrite => ({ op: 'delete', kind: 'fdb', entry })),
  ];
  return { removals, peers };
}

/** The writes that undo a peer's partial programming: delete what was written, last first. */
export function rollbackWrites(done: readonly KernelWrite[]): KernelWrite[] {
  return done
    .filter((w) => w.op !== 'delete')
    .reverse()
    .map((w) => ({ ...w, op: 'delete' }));
}

/** The write in the words of the iproute2 command it equals (for logs and errors). */
export function describeWrite(w: KernelWrite): string {
  switch (w.kind) {
    case 'neighbor':
      return w.op === 'replace' ? `ip neigh replace ${w.entry.ip} lladdr ${w.entry.mac} dev ${w.entry.dev} nud permanent` : `ip neigh del ${w.entry.ip} dev ${w.entry.dev}`;
    case 'fdb':
      return `bridge fdb ${w.op === 'replace' ? 'replace' : 'del'} ${w.entry.mac} dev ${w.entry.dev} dst ${w.entry.dst} self${w.op === 'replace' ? ' permanent' : ''}`;
    case 'route':
      return `ip route ${w.op === 'delete' ? 'del' : w.op} ${w.entry.dst} via ${w.entry.via} dev ${w.entry.dev}${w.entry.onlink ? ' onlink' : ''} proto ${w.entry.protocol}`;
  }
}
