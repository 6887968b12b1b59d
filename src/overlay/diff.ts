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

/**
 * The view holds one VTEP's neighbours and FDB entries (and the main table's routes), so entries are indexed by
 * what tells them apart there: a route by destination, a neighbour by IP, an FDB entry by MAC (a MAC with several
 * destinations, which only an `append` by someone else makes, keeps the extra ones in a side list). No composite
 * string keys: the full reconcile of 5000 peers runs this for every entry.
 */
function sameRoute(a: PlannedRoute, b: PlannedRoute): boolean {
  return a.via === b.via && a.dev === b.dev && Boolean(a.onlink) === Boolean(b.onlink) && a.protocol === b.protocol;
}

export function diffOverlay(plans: ReadonlyMap<string, PeerPlan>, view: KernelView): OverlayDiff {
  const haveRoutes = new Map<string, PlannedRoute>();
  for (const r of view.routes) haveRoutes.set(r.dst, r);
  const haveNeighbors = new Map<string, PlannedNeighbor>();
  for (const n of view.neighbors) haveNeighbors.set(n.ip, n);
  const haveFdb = new Map<string, PlannedFdb>();
  const moreFdb: PlannedFdb[] = [];
  for (const f of view.fdb) {
    if (haveFdb.has(f.mac)) moreFdb.push(f);
    else haveFdb.set(f.mac, f);
  }
  const hasFdb = (want: PlannedFdb): boolean => {
    const f = haveFdb.get(want.mac);
    if (f === undefined) return false;
    if (f.dst === want.dst && f.dev === want.dev) return true;
    return moreFdb.length > 0 && moreFdb.some((m) => m.mac === want.mac && m.dst === want.dst && m.dev === want.dev);
  };

  // What the plans want, by the same keys: neighbour IP -> its dev, FDB MAC -> its entry.
  const wantRoutes = new Set<string>();
  const wantNeighbors = new Map<string, string>();
  const wantFdb = new Map<string, PlannedFdb>();
  const peers = new Map<string, KernelWrite[]>();

  for (const [subnet, plan] of plans) {
    const writes: KernelWrite[] = [];
    const neighbor = plan.neighbor;
    if (neighbor) {
      wantNeighbors.set(neighbor.ip, neighbor.dev);
      const have = haveNeighbors.get(neighbor.ip);
      if (have === undefined || have.mac !== neighbor.mac || have.dev !== neighbor.dev) writes.push({ op: 'replace', kind: 'neighbor', entry: neighbor });
    }
    const fdb = plan.fdb;
    if (fdb) {
      wantFdb.set(fdb.mac, fdb);
      if (!hasFdb(fdb)) writes.push({ op: 'replace', kind: 'fdb', entry: fdb });
    }
    wantRoutes.add(plan.route.dst);
    const current = haveRoutes.get(plan.route.dst);
    if (!current) writes.push({ op: 'add', kind: 'route', entry: plan.route });
    else if (!sameRoute(current, plan.route)) writes.push({ op: 'replace', kind: 'route', entry: plan.route });
    if (writes.length) peers.set(subnet, writes);
  }

  const removals: KernelWrite[] = [];
  for (const entry of view.routes) if (!wantRoutes.has(entry.dst)) removals.push({ op: 'delete', kind: 'route', entry });
  for (const entry of view.neighbors) if (wantNeighbors.get(entry.ip) !== entry.dev) removals.push({ op: 'delete', kind: 'neighbor', entry });
  for (const entry of view.fdb) {
    const want = wantFdb.get(entry.mac);
    if (want === undefined || want.dst !== entry.dst || want.dev !== entry.dev) removals.push({ op: 'delete', kind: 'fdb', entry });
  }
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
      return w.op === 'replace'
        ? `ip neigh replace ${w.entry.ip} lladdr ${w.entry.mac} dev ${w.entry.dev} nud permanent`
        : `ip neigh del ${w.entry.ip} dev ${w.entry.dev}`;
    case 'fdb':
      return `bridge fdb ${w.op === 'replace' ? 'replace' : 'del'} ${w.entry.mac} dev ${w.entry.dev} dst ${w.entry.dst} self${w.op === 'replace' ? ' permanent' : ''}`;
    case 'route':
      return `ip route ${w.op === 'delete' ? 'del' : w.op} ${w.entry.dst} via ${w.entry.via} dev ${w.entry.dev}${w.entry.onlink ? ' onlink' : ''} proto ${w.entry.protocol}`;
  }
}
