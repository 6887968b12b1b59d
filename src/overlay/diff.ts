/**
 * The difference between the planned peer entries and what the kernel holds, as an ordered list of writes.
 * Pure. An entry that is already right produces no write at all, so a restarted agent with unchanged leases
 * touches nothing, and a reconcile with nothing to do costs one dump.
 *
 * Order (ARCHITECTURE.md): stale entries go first, route -> neighbour -> FDB (the route stops using the neighbour
 * before it disappears); then per peer neighbour -> FDB -> route (the route only starts to match once the
 * next hop can be resolved and encapsulated).
 */
import { formatIPv4, formatMacNumber } from '../base/ip.js';
import type { KernelView } from './kernel-view.js';
import { fdbOf, neighborOf, routeOf, type PeerPlan, type PlanNumbers, type PlannedFdb, type PlannedNeighbor, type PlannedRoute } from './plan.js';

/**
 * Routes are added (`ip route add`, failing rather than overwriting a route someone else made) unless tulle's
 * own route to that destination is there with other attributes: only then `replace`.
 */
export type KernelWrite =
  | { op: 'replace' | 'delete'; kind: 'neighbor'; entry: PlannedNeighbor; numbers: WriteNumbers }
  | { op: 'replace' | 'delete'; kind: 'fdb'; entry: PlannedFdb; numbers: WriteNumbers }
  | { op: 'add' | 'replace' | 'delete'; kind: 'route'; entry: PlannedRoute; numbers: WriteNumbers };

/**
 * The write's entry as numbers, which is how it is encoded for the kernel (netlink/packed.ts): the plan's own
 * numbers for a planned entry (shared, not copied); for an entry found in the kernel view, its numbers there and,
 * for a route, the index of its device (whose name the view may not know).
 */
export type WriteNumbers = PlanNumbers & { oif?: number };

export interface OverlayDiff {
  /** Entries no plan wants (hosts that left, a peer's old VtepMAC), in removal order. */
  removals: KernelWrite[];
  /** Per peer subnet, the writes that make it right, in programming order; peers already right are absent. */
  peers: Map<string, KernelWrite[]>;
}

/**
 * The plans are one per subnet of admitted leases (planPeers), so no two of them name the same neighbour IP,
 * FDB MAC or route destination: every view entry a plan finds is counted once, and when the plans found all of
 * the view's entries there is nothing to remove — the no-op resync of 5000 peers is 15000 map lookups.
 */
export function diffOverlay(plans: PlanList, view: KernelView): OverlayDiff {
  const { peers, found } = peerWrites(plans, view);
  const nothingElse = found.neighbors === view.neighbors.size && found.fdb === view.fdb.size && view.extraFdb.length === 0 && found.routes === view.routes.size;
  return { removals: nothingElse ? [] : removals(plans, view), peers };
}

/** Plans as a list, or a map by subnet. */
export type PlanList = { values(): Iterable<PeerPlan> };

/**
 * Per peer subnet, the writes that make its plan's entries right in `view` (peers already right are absent), and
 * how many of the view's entries the plans found. Removals are not looked for (see removals).
 */
export function peerWrites(
  plans: PlanList,
  view: KernelView,
): { peers: Map<string, KernelWrite[]>; found: { neighbors: number; fdb: number; routes: number } } {
  const peers = new Map<string, KernelWrite[]>();
  let neighborsFound = 0;
  let fdbFound = 0;
  let routesFound = 0;
  for (const plan of plans.values()) {
    let writes: KernelWrite[] | undefined;
    const n = plan.numbers;
    // A VXLAN peer's neighbour and FDB entry are on the device its route uses, the VTEP. The entries in words are
    // made only for a write (plan.ts): a peer already right costs lookups alone.
    if (!plan.direct) {
      const onVtep = plan.routeDev === view.vtep;
      const have = onVtep ? view.neighbors.get(n.neighborIp) : undefined;
      if (have !== undefined) neighborsFound++;
      if (have !== n.mac) (writes ??= []).push({ op: 'replace', kind: 'neighbor', entry: neighborOf(plan)!, numbers: n });
      if (onVtep && view.fdb.get(n.mac) === n.fdbDst) fdbFound++;
      else if (!(onVtep && view.hasFdb(n.mac, n.fdbDst))) (writes ??= []).push({ op: 'replace', kind: 'fdb', entry: fdbOf(plan)!, numbers: n });
    }
    const current = view.routes.get(n.route);
    if (!current) {
      (writes ??= []).push({ op: 'add', kind: 'route', entry: routeOf(plan), numbers: n });
    } else {
      routesFound++;
      if (current.via !== n.via || current.oif !== view.deviceIndex(plan.routeDev) || current.onlink !== plan.onlink || current.protocol !== plan.protocol)
        (writes ??= []).push({ op: 'replace', kind: 'route', entry: routeOf(plan), numbers: n });
    }
    if (writes) peers.set(plan.subnet, writes);
  }
  return { peers, found: { neighbors: neighborsFound, fdb: fdbFound, routes: routesFound } };
}

const NO_NUMBERS: WriteNumbers = { route: NaN, via: NaN, neighborIp: NaN, mac: NaN, fdbDst: NaN };

/** The view's entries no plan wants: routes first, then neighbours, then FDB entries (an FDB entry of a wanted MAC with another remote too). */
export function removals(plans: PlanList, view: KernelView): KernelWrite[] {
  const wantRoutes = new Set<number>();
  const wantNeighbors = new Set<number>();
  const wantFdb = new Map<number, number>();
  for (const plan of plans.values()) {
    wantRoutes.add(plan.numbers.route);
    if (plan.direct || plan.routeDev !== view.vtep) continue;
    wantNeighbors.add(plan.numbers.neighborIp);
    wantFdb.set(plan.numbers.mac, plan.numbers.fdbDst);
  }
  const out: KernelWrite[] = [];
  for (const [key, r] of view.routes)
    if (!wantRoutes.has(key))
      out.push({ op: 'delete', kind: 'route', entry: view.plannedRoute(r), numbers: { ...NO_NUMBERS, route: key, via: r.via, oif: r.oif } });
  for (const [ip, mac] of view.neighbors)
    if (!wantNeighbors.has(ip))
      out.push({
        op: 'delete',
        kind: 'neighbor',
        entry: { dev: view.vtep, ip: formatIPv4(ip), mac: formatMacNumber(mac) },
        numbers: { ...NO_NUMBERS, neighborIp: ip, mac },
      });
  const fdbEntries = [...view.fdb].map(([mac, dst]) => ({ mac, dst })).concat(view.extraFdb);
  for (const { mac, dst } of fdbEntries)
    if (wantFdb.get(mac) !== dst)
      out.push({
        op: 'delete',
        kind: 'fdb',
        entry: { dev: view.vtep, mac: formatMacNumber(mac), dst: formatIPv4(dst) },
        numbers: { ...NO_NUMBERS, mac, fdbDst: dst },
      });
  return out;
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
