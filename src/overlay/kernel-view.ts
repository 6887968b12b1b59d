/**
 * What the kernel holds that tulle may own (KernelView): the main table's routes with tulle's protocol (`ip route
 * show table main proto <tulle>`), the permanent IPv4 neighbours on the VTEP (`ip neigh show dev flannel.1 nud
 * permanent`) and its FDB entries with an IPv4 dst (`bridge fdb show dev flannel.1`); plus the destinations of
 * everyone else's routes, which admission must not cover. The reconciler diffs against it; `tulle status` reads
 * it without a reconciler.
 *
 * The view is indexed by what tells entries apart on one VTEP — a neighbour by IP, an FDB entry by MAC, a route
 * by destination — with addresses as numbers, read by the compact dump readers (netlink/scan.ts). A full resync
 * of 5000 peers reads 15000 entries; as numbers in three maps they cost no object or string each.
 */
import { formatIPv4, maskOf, type Cidr4 } from '../base/ip.js';
import { ipv4Number, macNumber } from '../base/ip.js';
import type { NeighborRecord, NeighborSink, NetlinkClient, Route, RouteRecord, RouteSink } from '../netlink/index.js';
import { routeKey, routeKeyOf, type PlannedFdb, type PlannedNeighbor, type PlannedRoute } from './plan.js';

const AF_INET = 2;
const NUD_PERMANENT = 0x80;

/** One of tulle's routes as the view holds it. */
export interface ViewRoute {
  dst: number;
  prefix: number;
  via: number;
  /** Output device index (KernelView.deviceName gives its name). */
  oif: number;
  onlink: boolean;
  protocol: number;
}

export class KernelView implements RouteSink, NeighborSink {
  /** Permanent IPv4 neighbours on the VTEP: IP -> MAC. */
  readonly neighbors = new Map<number, number>();
  /** FDB entries on the VTEP with an IPv4 remote: MAC -> remote. */
  readonly fdb = new Map<number, number>();
  /** Further remotes of a MAC already in `fdb` (only `bridge fdb append` by someone else makes them). */
  readonly extraFdb: Array<{ mac: number; dst: number }> = [];
  /** tulle's routes in the main table, by routeKey. */
  readonly routes = new Map<number, ViewRoute>();
  /** Destinations of everyone else's IPv4 routes in the main table (the default route excluded). */
  readonly foreignRoutes: Cidr4[] = [];
  private readonly names = new Map<number, string>();
  private readonly indexes = new Map<string, number>();

  constructor(
    /** The VTEP whose neighbours and FDB entries the view holds. */
    readonly vtep: string,
    private readonly routeProtocol: number,
  ) {}

  /**
   * A view of entries given as text (tests; the incremental run's previous plans). Neighbour and FDB entries are
   * taken as the VTEP's; devices get made-up indexes.
   */
  static of(
    vtep: string,
    routeProtocol: number,
    entries: { neighbors?: readonly PlannedNeighbor[]; fdb?: readonly PlannedFdb[]; routes?: readonly PlannedRoute[] },
  ): KernelView {
    const view = new KernelView(vtep, routeProtocol);
    const indexOf = (name: string): number => {
      let i = view.indexes.get(name);
      if (i === undefined) view.nameDevice((i = view.indexes.size + 1), name);
      return i;
    };
    indexOf(vtep);
    for (const n of entries.neighbors ?? []) view.neighbors.set(ipv4Number(n.ip), macNumber(n.mac));
    for (const f of entries.fdb ?? []) view.addFdb(macNumber(f.mac), ipv4Number(f.dst));
    for (const r of entries.routes ?? []) {
      const key = routeKeyOf(r.dst);
      view.routes.set(key, {
        dst: Math.floor(key / 64),
        prefix: key % 64,
        via: ipv4Number(r.via),
        oif: indexOf(r.dev),
        onlink: r.onlink,
        protocol: r.protocol,
      });
    }
    return view;
  }

  /** A route of the main table (a RouteSink): tulle's own (by protocol), or a foreign destination. */
  route(r: RouteRecord): void {
    if (r.family !== 4 || r.dstLen === 0) return;
    if (r.protocol !== this.routeProtocol) this.foreignRoutes.push({ network: (r.dst & maskOf(r.dstLen)) >>> 0, prefix: r.dstLen });
    else if (r.via === r.via && r.oif !== 0)
      this.routes.set(routeKey(r.dst, r.dstLen), { dst: r.dst, prefix: r.dstLen, via: r.via, oif: r.oif, onlink: r.onlink, protocol: r.protocol });
  }

  /** An entry of the VTEP's neighbour table (a NeighborSink): a permanent IPv4 neighbour with a MAC is tulle's kind. */
  neighbor(n: NeighborRecord): void {
    if (n.family === AF_INET && (n.state & 0xff) === NUD_PERMANENT && n.mac === n.mac) this.neighbors.set(n.ip, n.mac);
  }

  /** Take in one FDB entry of the VTEP: one with an IPv4 remote is tulle's kind. */
  addFdb(mac: number, dst: number): void {
    if (mac !== mac || dst !== dst) return;
    if (this.fdb.has(mac)) this.extraFdb.push({ mac, dst });
    else this.fdb.set(mac, dst);
  }

  /** Does the VTEP hold FDB entry MAC -> dst? */
  hasFdb(mac: number, dst: number): boolean {
    if (this.fdb.get(mac) === dst) return true;
    return this.extraFdb.length > 0 && this.extraFdb.some((f) => f.mac === mac && f.dst === dst);
  }

  nameDevice(index: number, name: string): void {
    this.names.set(index, name);
    this.indexes.set(name, index);
  }

  /** The name of a device index routes use (`if7` when it could not be named). */
  deviceName(index: number): string {
    return this.names.get(index) ?? `if${index}`;
  }

  /** The index of a named device, or -1 (a route on it cannot be in the view). */
  deviceIndex(name: string): number {
    return this.indexes.get(name) ?? -1;
  }

  /** Every device the view knows, name -> index (the VTEP, and the devices tulle's routes use). */
  devices(): ReadonlyMap<string, number> {
    return new Map(this.indexes);
  }

  /** Devices tulle's routes use whose names are not known yet. */
  unnamedDevices(): number[] {
    const out = new Set<number>();
    for (const r of this.routes.values()) if (!this.names.has(r.oif)) out.add(r.oif);
    return [...out];
  }

  /** A route of the view in the words of a plan (for a removal). */
  plannedRoute(r: ViewRoute): PlannedRoute {
    return { dst: `${formatIPv4(r.dst)}/${r.prefix}`, via: formatIPv4(r.via), dev: this.deviceName(r.oif), onlink: r.onlink, protocol: r.protocol };
  }
}

/** The dumps a kernel view is read from (compact readers, netlink/scan.ts) and the naming of route devices. */
export type KernelReader = Pick<NetlinkClient, 'scanRoutes' | 'scanNeighbors' | 'scanFdb' | 'linkNames' | 'linkIndexes'>;

/** Split the main table into tulle's routes and the destinations of everyone else's (for code holding Route objects). */
export function splitRoutes(routes: readonly Route[], protocol: number): { ours: PlannedRoute[]; foreign: Cidr4[] } {
  const ours: PlannedRoute[] = [];
  const foreign: Cidr4[] = [];
  for (const r of routes) {
    if (r.protocol === protocol) {
      if (r.dst !== 'default' && r.via && r.dev) ours.push({ dst: r.dst, via: r.via, dev: r.dev, onlink: Boolean(r.onlink), protocol: r.protocol });
    } else if (r.dst !== 'default' && r.dst.includes('.')) {
      const slash = r.dst.indexOf('/');
      const prefix = slash > 0 ? Number(r.dst.slice(slash + 1)) : 32;
      foreign.push({ network: (ipv4Number(slash > 0 ? r.dst.slice(0, slash) : r.dst) & maskOf(prefix)) >>> 0, prefix });
    }
  }
  return { ours, foreign };
}

/**
 * One dump each of the main table, the VTEP's neighbours and its FDB. `vtepMayBeMissing`: a VTEP that is not
 * there holds no entries (status on a host whose agent never ran) instead of failing the read (the reconciler,
 * which only runs with its VTEP made). `alsoName`: a device the view must know by index even when no route of
 * tulle's uses it yet (DirectRouting's underlay: its routes' announcements are compared by index).
 */
export async function readKernelView(
  nl: KernelReader,
  o: { vtep: string; routeProtocol: number; vtepMayBeMissing?: boolean; alsoName?: string },
): Promise<KernelView> {
  const view = new KernelView(o.vtep, o.routeProtocol);
  const onVtep = (read: Promise<number>): Promise<number> => (o.vtepMayBeMissing ? read.catch(() => 0) : read);
  const [, vtepIndex] = await Promise.all([
    nl.scanRoutes({ table: 254 }, view),
    onVtep(nl.scanNeighbors(o.vtep, view)),
    onVtep(nl.scanFdb(o.vtep, { neighbor: (f) => view.addFdb(f.mac, f.ip) })),
  ]);
  if (vtepIndex) view.nameDevice(vtepIndex, o.vtep);
  const unnamed = view.unnamedDevices();
  if (unnamed.length) for (const [index, name] of await nl.linkNames(unnamed)) view.nameDevice(index, name);
  if (o.alsoName !== undefined && view.deviceIndex(o.alsoName) < 0)
    for (const [name, index] of await nl.linkIndexes([o.alsoName])) view.nameDevice(index, name);
  return view;
}
