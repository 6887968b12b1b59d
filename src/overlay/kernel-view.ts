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
import type { NeighborRecord, NetlinkClient, Route, RouteRecord } from '../netlink/index.js';
import { NEIGHBOR_RECORD_FIELDS, ROUTE_RECORD_FIELDS, scanNeighborRecords, scanRouteRecords } from '../netlink/scan.js';
import { routeKey, routeKeyOf, type PeerPlan, type PlannedFdb, type PlannedNeighbor, type PlannedRoute } from './plan.js';

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

/** What the plans want of the kernel, as the reconciler keeps it (numbers; see Reconciler.learn). */
export interface PlannedEntries {
  /** route key -> the plan whose route it is */
  routes: ReadonlyMap<number, PeerPlan>;
  /** neighbour IP -> MAC */
  neighbors: ReadonlyMap<number, number>;
  /** FDB MAC -> remote */
  fdb: ReadonlyMap<number, number>;
}

export class KernelView {
  private readonly neighborMap = new Map<number, number>();
  private readonly fdbMap = new Map<number, number>();
  private readonly extraFdbList: Array<{ mac: number; dst: number }> = [];
  private readonly routeMap = new Map<number, ViewRoute>();
  /** Destinations of everyone else's IPv4 routes in the main table (the default route excluded). */
  readonly foreignRoutes: Cidr4[] = [];
  private readonly names = new Map<number, string>();
  private readonly indexes = new Map<string, number>();
  /**
   * The dumps as read (netlink/scan.ts records), until something asks for the maps: a resync that finds the kernel
   * as planned (holdsExactly) never makes them.
   */
  private records: DumpRecords | undefined;

  constructor(
    /** The VTEP whose neighbours and FDB entries the view holds. */
    readonly vtep: string,
    private readonly routeProtocol: number,
  ) {}

  /**
   * A view of the dumps' records: the main table's routes of tulle's protocol (`routes`) and the destinations of
   * everyone else's (`foreign`, [dst, length] each), the VTEP's neighbours and its FDB.
   */
  static fromRecords(vtep: string, routeProtocol: number, records: DumpRecords & { foreign: Float64Array }): KernelView {
    const view = new KernelView(vtep, routeProtocol);
    view.records = records;
    const f = records.foreign;
    for (let i = 0; i + 1 < f.length; i += 2) view.foreignRoutes.push({ network: (f[i]! & maskOf(f[i + 1]!)) >>> 0, prefix: f[i + 1]! });
    return view;
  }

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
    for (const n of entries.neighbors ?? []) view.neighborMap.set(ipv4Number(n.ip), macNumber(n.mac));
    for (const f of entries.fdb ?? []) view.addFdb(macNumber(f.mac), ipv4Number(f.dst));
    for (const r of entries.routes ?? []) {
      const key = routeKeyOf(r.dst);
      view.routeMap.set(key, {
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

  /** Permanent IPv4 neighbours on the VTEP: IP -> MAC. */
  get neighbors(): ReadonlyMap<number, number> {
    this.take();
    return this.neighborMap;
  }

  /** FDB entries on the VTEP with an IPv4 remote: MAC -> remote. */
  get fdb(): ReadonlyMap<number, number> {
    this.take();
    return this.fdbMap;
  }

  /** Further remotes of a MAC already in `fdb` (only `bridge fdb append` by someone else makes them). */
  get extraFdb(): ReadonlyArray<{ mac: number; dst: number }> {
    this.take();
    return this.extraFdbList;
  }

  /** tulle's routes in the main table, by routeKey. */
  get routes(): ReadonlyMap<number, ViewRoute> {
    this.take();
    return this.routeMap;
  }

  /** Make the maps of the records read (once). */
  private take(): void {
    const records = this.records;
    if (!records) return;
    this.records = undefined;
    scanRouteRecords(records.routes, { route: (r) => this.route(r) });
    scanNeighborRecords(records.neighbors, { neighbor: (n) => this.neighbor(n) });
    scanNeighborRecords(records.fdb, { neighbor: (f) => this.addFdb(f.mac, f.ip) });
  }

  /** One of tulle's routes in the main table (by protocol; routes of other tables are not in the dump). */
  private route(r: RouteRecord): void {
    if (r.family === 4 && r.dstLen !== 0 && r.protocol === this.routeProtocol && r.via === r.via && r.oif !== 0)
      this.routeMap.set(routeKey(r.dst, r.dstLen), { dst: r.dst, prefix: r.dstLen, via: r.via, oif: r.oif, onlink: r.onlink, protocol: r.protocol });
  }

  /** An entry of the VTEP's neighbour table: a permanent IPv4 neighbour with a MAC is tulle's kind. */
  private neighbor(n: NeighborRecord): void {
    if (n.family === AF_INET && (n.state & 0xff) === NUD_PERMANENT && n.mac === n.mac) this.neighborMap.set(n.ip, n.mac);
  }

  /** Take in one FDB entry of the VTEP: one with an IPv4 remote is tulle's kind. */
  private addFdb(mac: number, dst: number): void {
    if (mac !== mac || dst !== dst) return;
    if (this.fdbMap.has(mac)) this.extraFdbList.push({ mac, dst });
    else this.fdbMap.set(mac, dst);
  }

  /**
   * Does the kernel hold exactly the planned entries of tulle's kinds, no more, no fewer, each as planned — so that
   * diffing the plans against this view would write nothing? Read straight from the dumps' records, one lookup per
   * entry and no map of the view made: a resync that finds nothing to do costs that alone. False whenever in doubt
   * (an entry twice, say): the caller then diffs.
   */
  holdsExactly(planned: PlannedEntries): boolean {
    const records = this.records;
    if (!records) return false;
    const r = records.routes;
    let routes = 0;
    let lastKey = NaN;
    for (let i = 0; i + ROUTE_RECORD_FIELDS <= r.length; i += ROUTE_RECORD_FIELDS) {
      const via = r[i + 7]!;
      const oif = r[i + 8]!;
      if (r[i] !== 4 || r[i + 2] === 0 || r[i + 4] !== this.routeProtocol || via !== via || oif === 0) continue;
      const key = routeKey(r[i + 1]!, r[i + 2]!);
      // Routes to one destination (another metric, say) come one after the other in a dump.
      if (key === lastKey) return false;
      lastKey = key;
      const plan = planned.routes.get(key);
      if (!plan || plan.numbers.via !== via || this.deviceIndex(plan.routeDev) !== oif || plan.onlink !== (r[i + 6] === 1)) return false;
      routes++;
    }
    if (routes !== planned.routes.size) return false;
    const n = records.neighbors;
    let neighbors = 0;
    for (let i = 0; i + NEIGHBOR_RECORD_FIELDS <= n.length; i += NEIGHBOR_RECORD_FIELDS) {
      const mac = n[i + 5]!;
      if (n[i] !== AF_INET || (n[i + 2]! & 0xff) !== NUD_PERMANENT || mac !== mac) continue;
      if (planned.neighbors.get(n[i + 4]!) !== mac) return false;
      neighbors++;
    }
    if (neighbors !== planned.neighbors.size) return false;
    const f = records.fdb;
    let fdb = 0;
    for (let i = 0; i + NEIGHBOR_RECORD_FIELDS <= f.length; i += NEIGHBOR_RECORD_FIELDS) {
      const dst = f[i + 4]!;
      const mac = f[i + 5]!;
      if (mac !== mac || dst !== dst) continue;
      if (planned.fdb.get(mac) !== dst) return false;
      fdb++;
    }
    return fdb === planned.fdb.size;
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

  /** Devices tulle's routes use whose names are not known yet (read from the records, so no map is made for it). */
  unnamedDevices(): number[] {
    const out = new Set<number>();
    const r = this.records?.routes;
    if (r) {
      for (let i = 0; i + ROUTE_RECORD_FIELDS <= r.length; i += ROUTE_RECORD_FIELDS) {
        const oif = r[i + 8]!;
        if (r[i] === 4 && r[i + 2] !== 0 && r[i + 4] === this.routeProtocol && r[i + 7] === r[i + 7] && oif !== 0 && !this.names.has(oif)) out.add(oif);
      }
    } else {
      for (const route of this.routeMap.values()) if (!this.names.has(route.oif)) out.add(route.oif);
    }
    return [...out];
  }

  /** A route of the view in the words of a plan (for a removal). */
  plannedRoute(r: ViewRoute): PlannedRoute {
    return { dst: `${formatIPv4(r.dst)}/${r.prefix}`, via: formatIPv4(r.via), dev: this.deviceName(r.oif), onlink: r.onlink, protocol: r.protocol };
  }
}

/** The three dumps a view is read from, as records of numbers (netlink/scan.ts). */
export interface DumpRecords {
  routes: Float64Array;
  neighbors: Float64Array;
  fdb: Float64Array;
}

/** The dumps a kernel view is read from (records of numbers, netlink/scan.ts) and the naming of route devices. */
export type KernelReader = Pick<NetlinkClient, 'routeRecords' | 'neighborRecords' | 'fdbRecords' | 'linkNames' | 'linkIndexes'>;

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
  const none = { index: 0, records: new Float64Array(0) };
  const onVtep = (read: Promise<{ index: number; records: Float64Array }>) => (o.vtepMayBeMissing ? read.catch(() => none) : read);
  // The three dumps run side by side, each on a pool thread (netlink/socket.ts dumpRecords).
  const [routes, neighbors, fdb] = await Promise.all([
    nl.routeRecords(254, o.routeProtocol),
    onVtep(nl.neighborRecords(o.vtep)),
    onVtep(nl.fdbRecords(o.vtep)),
  ]);
  const view = KernelView.fromRecords(o.vtep, o.routeProtocol, {
    routes: routes.records,
    foreign: routes.others,
    neighbors: neighbors.records,
    fdb: fdb.records,
  });
  if (neighbors.index) view.nameDevice(neighbors.index, o.vtep);
  const unnamed = view.unnamedDevices();
  if (unnamed.length) for (const [index, name] of await nl.linkNames(unnamed)) view.nameDevice(index, name);
  if (o.alsoName !== undefined && view.deviceIndex(o.alsoName) < 0)
    for (const [name, index] of await nl.linkIndexes([o.alsoName])) view.nameDevice(index, name);
  return view;
}
