/**
 * An in-memory stand-in for the part of the kernel the reconciler talks to (its KernelAccess: three compact dumps and a
 * batch of writes), for unit tests of the reconciler's bookkeeping. Typed as KernelAccess, so tests need no casts;
 * the kernel paths themselves are covered by the netns and e2e tests.
 */
import {
  NetlinkError,
  type Fdb,
  type Neighbor,
  type NeighborRecord,
  type NetlinkOp,
  type OpResult,
  type Route,
  type RouteRecord,
} from '../../src/netlink/index.js';
import type { EntryEncoder } from '../../src/netlink/index.js';
import { EntryPacker } from '../../src/netlink/packed.js';
import { packNeighborRecords, packRouteRecords } from '../../src/netlink/scan.js';
import { InvalidValueError } from '../../src/base/errors.js';
import type { KernelAccess } from '../../src/overlay/reconciler.js';
import { routeKeyOf } from '../../src/overlay/plan.js';
import { formatIPv4, formatMacNumber, ipv4Number, macNumber } from '../../src/base/ip.js';

/** The entry an op names: a route's destination, a neighbour's IP, an FDB entry's MAC. */
export function opTarget(o: NetlinkOp): string {
  const a = o.args;
  return 'dst' in a && o.op.endsWith('Route') ? String(a.dst) : 'ip' in a ? a.ip : 'mac' in a ? String(a.mac) : '';
}

export interface KernelStandIn {
  nl: KernelAccess;
  /** An entry as the kernel announces it (scan.ts records), with this stand-in's device indexes. */
  routeRecord(r: Route): RouteRecord;
  neighborRecord(n: Neighbor): NeighborRecord;
  fdbRecord(f: Fdb): NeighborRecord;
  routes: Map<string, Route>;
  /** By neighbour IP. */
  neigh: Map<string, Neighbor>;
  /** By "MAC dst". */
  fdb: Map<string, Fdb>;
  /** Every batch sent, in order. */
  batches: NetlinkOp[][];
  /** Dumps taken so far (three per full reconcile). */
  dumps(): number;
  /** Every op sent as "op target". */
  ops(): string[];
}

/** Holds routes/neighbours/FDB in memory; fails any op the `fail` predicate picks (EINVAL), and a route add over an existing route (EEXIST). */
export function kernelStandIn(fail: (op: NetlinkOp) => boolean = () => false, delayMs = 5): KernelStandIn {
  const routes = new Map<string, Route>();
  const neigh = new Map<string, Neighbor>();
  const fdb = new Map<string, Fdb>();
  const batches: NetlinkOp[][] = [];
  let dumps = 0;
  const apply = (o: NetlinkOp): OpResult => {
    if (fail(o)) return { ok: false, error: new NetlinkError(o.op, 22) };
    switch (o.op) {
      case 'addRoute':
        if (routes.has(o.args.dst)) return { ok: false, error: new NetlinkError(o.op, 17) };
        routes.set(o.args.dst, { ...o.args, table: 254 });
        break;
      case 'replaceRoute':
        routes.set(o.args.dst, { ...o.args, table: 254 });
        break;
      case 'deleteRoute':
        if (!routes.delete(o.args.dst)) return { ok: false, error: new NetlinkError(o.op, 3) }; // ESRCH
        break;
      case 'replaceNeighbor':
        neigh.set(o.args.ip, { ...o.args, state: 'permanent' });
        break;
      case 'deleteNeighbor':
        if (!neigh.delete(o.args.ip)) return { ok: false, error: new NetlinkError(o.op, 2) }; // ENOENT
        break;
      case 'replaceFdb':
      case 'appendFdb':
        fdb.set(`${o.args.mac} ${o.args.dst}`, o.args);
        break;
      case 'deleteFdb':
        if (!fdb.delete(`${o.args.mac} ${o.args.dst}`)) return { ok: false, error: new NetlinkError(o.op, 2) };
        break;
      default:
        return { ok: false, error: new NetlinkError(o.op, 95) }; // EOPNOTSUPP: the reconciler never sends it
    }
    return { ok: true };
  };
  // Devices get indexes in the order they are first named; the VTEP of the tests is flannel.1.
  const devices = new Map<string, number>();
  const indexOf = (dev: string | undefined): number => {
    if (dev === undefined) return 0;
    if (!devices.has(dev)) devices.set(dev, devices.size + 1);
    return devices.get(dev)!;
  };
  const routeRecord = (r: Route): RouteRecord => {
    const key = r.dst === 'default' ? 0 : routeKeyOf(r.dst.includes('/') ? r.dst : `${r.dst}/32`);
    const via = r.via === undefined ? NaN : ipv4Number(r.via);
    return {
      family: 4,
      dst: Math.floor(key / 64),
      dstLen: key % 64,
      table: r.table ?? 254,
      protocol: r.protocol ?? 0,
      type: 1,
      onlink: Boolean(r.onlink),
      via,
      oif: indexOf(r.dev),
    };
  };
  const neighborRecord = (n: Neighbor): NeighborRecord => ({
    family: 2,
    ifindex: indexOf(n.dev),
    state: n.state === 'permanent' ? 0x80 : 0x02,
    flags: 0,
    ip: ipv4Number(n.ip),
    mac: n.mac === undefined ? NaN : macNumber(n.mac),
  });
  const fdbRecord = (f: Fdb): NeighborRecord => ({
    family: 7,
    ifindex: indexOf(f.dev),
    state: 0x80,
    flags: 0x02,
    ip: f.dst === undefined ? NaN : ipv4Number(f.dst),
    mac: macNumber(f.mac),
  });
  const nameOf = (index: number): string => [...devices].find(([, i]) => i === index)?.[0] ?? `if${index}`;
  /** The op (as tests name them) of the one write `encode` makes. */
  const recordWrite = (encode: (to: EntryEncoder) => void): NetlinkOp => {
    let op: NetlinkOp | undefined;
    encode({
      neighbor: (what, ifindex, ip, mac) =>
        (op =
          what === 'delete'
            ? { op: 'deleteNeighbor', args: { dev: nameOf(ifindex), ip: formatIPv4(ip) } }
            : { op: 'replaceNeighbor', args: { dev: nameOf(ifindex), ip: formatIPv4(ip), mac: formatMacNumber(mac), state: 'permanent' } }),
      fdb: (what, ifindex, mac, dst) =>
        (op = {
          op: what === 'delete' ? 'deleteFdb' : 'replaceFdb',
          args: { dev: nameOf(ifindex), mac: formatMacNumber(mac), dst: formatIPv4(dst), self: true, permanent: true },
        }),
      route: (what, network, prefix, via, oif, onlink, protocol) =>
        (op = {
          op: what === 'add' ? 'addRoute' : what === 'replace' ? 'replaceRoute' : 'deleteRoute',
          args: { dst: `${formatIPv4(network)}/${prefix}`, via: formatIPv4(via), dev: nameOf(oif), onlink, protocol },
        }),
    });
    return op!;
  };
  const nl: KernelAccess = {
    async routeRecords(table, protocol) {
      dumps++;
      // As the binding splits them: the routes of `protocol`, the destinations of every other IPv4 route but the default.
      const all = [...routes.values()].map(routeRecord).filter((r) => table === 0 || r.table === table);
      const others = all.filter((r) => r.protocol !== protocol && r.family === 4 && r.dstLen !== 0);
      return { records: packRouteRecords(all.filter((r) => r.protocol === protocol)), others: new Float64Array(others.flatMap((r) => [r.dst, r.dstLen])) };
    },
    async neighborRecords(dev) {
      dumps++;
      return { index: indexOf(dev), records: packNeighborRecords([...neigh.values()].filter((n) => n.dev === dev).map(neighborRecord)) };
    },
    async fdbRecords(dev) {
      dumps++;
      return { index: indexOf(dev), records: packNeighborRecords([...fdb.values()].filter((f) => f.dev === dev).map(fdbRecord)) };
    },
    async linkIndexes(names) {
      return new Map([...names].map((name) => [name, indexOf(name)]));
    },
    async linkNames(indexes) {
      const names = new Map<number, string>();
      for (const [name, index] of devices) if ([...indexes].includes(index)) names.set(index, name);
      return names;
    },
    async writeEntries(count, encode, describe) {
      // Each write goes through the real packer first (its range checks), then is read back as the op it equals.
      const ops: Array<NetlinkOp | NetlinkError> = [];
      for (let k = 0; k < count; k++) {
        try {
          encode(k, new EntryPacker(1));
          ops.push(recordWrite((to) => encode(k, to)));
        } catch (err) {
          if (!(err instanceof InvalidValueError)) throw err;
          ops.push(new NetlinkError(describe(k), err.value === 0 && err.field.endsWith('dev index') ? 19 : 22, err.message)); // ENODEV, EINVAL
        }
      }
      batches.push(ops.filter((o): o is NetlinkOp => !(o instanceof NetlinkError)));
      if (delayMs) await new Promise((r) => setTimeout(r, delayMs));
      return ops.map((o) => {
        if (o instanceof NetlinkError) return o;
        const r = apply(o);
        return r.ok ? undefined : r.error;
      });
    },
  };
  return {
    nl,
    routeRecord,
    neighborRecord,
    fdbRecord,
    routes,
    neigh,
    fdb,
    batches,
    dumps: () => dumps,
    ops: () => batches.flat().map((o) => `${o.op} ${opTarget(o)}`),
  };
}
