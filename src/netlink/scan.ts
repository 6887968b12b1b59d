/**
 * Compact readers of route and neighbour messages, for code that reads thousands of entries and needs a few numbers
 * of each (the reconciler's full resync, `tulle status`, kernel announcements): the fields are read straight from
 * the received bytes (or, for a whole dump, from the records the binding read them into) and handed to a sink as numbers — IPv4 addresses as unsigned 32-bit numbers, MACs as 48-bit numbers, devices as
 * indexes. The generic decoders (route.ts, neigh.ts) make a Message, an object and several strings per entry; at
 * 5000 peers that garbage was most of a resync's time. What `ip route show` / `ip neigh
 * show` / `bridge fdb show` print is still what these records mean; the netns tests hold the two readers equal.
 */
import {
  AF_INET,
  NDA_DST,
  NDA_LLADDR,
  NDMSG_LEN,
  NLA_HDRLEN,
  NLA_TYPE_MASK,
  RTA_DST,
  RTA_GATEWAY,
  RTA_OIF,
  RTA_TABLE,
  RTM_F_CLONED,
  RTMSG_LEN,
  RTNH_F_ONLINK,
} from './constants.js';

/** One route (`ip route show` / `ip monitor route`), IPv4 fields as numbers; a record reused for every route. */
export interface RouteRecord {
  /** 4 or 6. */
  family: number;
  /** Destination network (0 for the default route; NaN when IPv6). */
  dst: number;
  dstLen: number;
  table: number;
  protocol: number;
  /** rtm_type: 1 unicast, 2 local, 6 blackhole, ... */
  type: number;
  /** The `onlink` flag (RTNH_F_ONLINK). */
  onlink: boolean;
  /** IPv4 gateway (`via`); NaN without one. */
  via: number;
  /** Output device index (`dev`); 0 without one. */
  oif: number;
}

/** One neighbour or FDB entry (`ip neigh show`, `bridge fdb show`); a record reused for every entry. */
export interface NeighborRecord {
  /** AF_INET, AF_INET6 or AF_BRIDGE (an FDB entry). */
  family: number;
  ifindex: number;
  /** NUD_* bits (permanent 0x80). */
  state: number;
  /** NTF_* bits (self 0x02). */
  flags: number;
  /** NDA_DST as IPv4 (a neighbour's address, an FDB entry's remote); NaN when absent or IPv6. */
  ip: number;
  /** NDA_LLADDR as a 48-bit number; NaN when absent or not 6 bytes long. */
  mac: number;
}

/** Receives the routes of a dump, one call each (the record is reused: copy what you keep). */
export interface RouteSink {
  route(r: RouteRecord): void;
}

/** Receives the entries of a neighbour or FDB dump, one call each (the record is reused). */
export interface NeighborSink {
  neighbor(n: NeighborRecord): void;
}

export function routeRecord(): RouteRecord {
  return { family: 0, dst: 0, dstLen: 0, table: 0, protocol: 0, type: 0, onlink: false, via: NaN, oif: 0 };
}

export function neighborRecord(): NeighborRecord {
  return { family: 0, ifindex: 0, state: 0, flags: 0, ip: NaN, mac: NaN };
}

// Fields are read byte by byte in place: these run once per entry of dumps of thousands (and once per kernel
// announcement), often in a process that has just started, where every call through Buffer's read methods costs.

/**
 * Read an RTM_NEWROUTE/RTM_DELROUTE payload (struct rtmsg + attributes, at b[start..end)) into `r`; false for a
 * cached clone (not configuration: `ip route show` leaves them out) or a truncated message.
 */
export function readRoute(b: Buffer, start: number, end: number, r: RouteRecord): boolean {
  if (end - start < RTMSG_LEN) return false;
  const flags = b[start + 8]! | (b[start + 9]! << 8);
  if (flags & RTM_F_CLONED) return false;
  r.family = b[start] === AF_INET ? 4 : 6;
  r.dstLen = b[start + 1]!;
  r.table = b[start + 4]!;
  r.protocol = b[start + 5]!;
  r.type = b[start + 7]!;
  r.onlink = (flags & RTNH_F_ONLINK) !== 0;
  r.dst = 0;
  r.via = NaN;
  r.oif = 0;
  let off = start + RTMSG_LEN;
  while (off + NLA_HDRLEN <= end) {
    const len = b[off]! | (b[off + 1]! << 8);
    if (len < NLA_HDRLEN || off + len > end) break;
    const type = (b[off + 2]! | (b[off + 3]! << 8)) & NLA_TYPE_MASK;
    const v = off + NLA_HDRLEN;
    if (type === RTA_DST) r.dst = len === 8 ? b[v]! * 0x1000000 + ((b[v + 1]! << 16) | (b[v + 2]! << 8) | b[v + 3]!) : NaN;
    else if (type === RTA_GATEWAY) r.via = len === 8 ? b[v]! * 0x1000000 + ((b[v + 1]! << 16) | (b[v + 2]! << 8) | b[v + 3]!) : NaN;
    else if (type === RTA_OIF && len >= 8) r.oif = (b[v]! | (b[v + 1]! << 8) | (b[v + 2]! << 16)) + b[v + 3]! * 0x1000000;
    else if (type === RTA_TABLE && len >= 8) r.table = (b[v]! | (b[v + 1]! << 8) | (b[v + 2]! << 16)) + b[v + 3]! * 0x1000000;
    off += (len + 3) & ~3;
  }
  return true;
}

/** Read an RTM_NEWNEIGH/RTM_DELNEIGH payload (struct ndmsg + attributes) into `n`; false for a truncated message. */
export function readNeighbor(b: Buffer, start: number, end: number, n: NeighborRecord): boolean {
  if (end - start < NDMSG_LEN) return false;
  n.family = b[start]!;
  n.ifindex = (b[start + 4]! | (b[start + 5]! << 8) | (b[start + 6]! << 16)) + b[start + 7]! * 0x1000000;
  n.state = b[start + 8]! | (b[start + 9]! << 8);
  n.flags = b[start + 10]!;
  n.ip = NaN;
  n.mac = NaN;
  let off = start + NDMSG_LEN;
  while (off + NLA_HDRLEN <= end) {
    const len = b[off]! | (b[off + 1]! << 8);
    if (len < NLA_HDRLEN || off + len > end) break;
    const type = (b[off + 2]! | (b[off + 3]! << 8)) & NLA_TYPE_MASK;
    const v = off + NLA_HDRLEN;
    if (type === NDA_DST) n.ip = len === 8 ? b[v]! * 0x1000000 + ((b[v + 1]! << 16) | (b[v + 2]! << 8) | b[v + 3]!) : NaN;
    else if (type === NDA_LLADDR)
      n.mac = len === 10 ? (b[v]! * 0x100 + b[v + 1]!) * 0x100000000 + b[v + 2]! * 0x1000000 + ((b[v + 3]! << 16) | (b[v + 4]! << 8) | b[v + 5]!) : NaN;
    off += (len + 3) & ~3;
  }
  return true;
}

/** Fields per record of a dump read into numbers (NativeBinding.dumpRecords). */
export const ROUTE_RECORD_FIELDS = 9;
export const NEIGHBOR_RECORD_FIELDS = 6;

/** The routes of a dump read into records (socket.dumpRecords), handed to `sink` one by one. */
export function scanRouteRecords(records: Float64Array, sink: RouteSink): void {
  const r = routeRecord();
  for (let i = 0; i + ROUTE_RECORD_FIELDS <= records.length; i += ROUTE_RECORD_FIELDS) {
    r.family = records[i]!;
    r.dst = records[i + 1]!;
    r.dstLen = records[i + 2]!;
    r.table = records[i + 3]!;
    r.protocol = records[i + 4]!;
    r.type = records[i + 5]!;
    r.onlink = records[i + 6] === 1;
    r.via = records[i + 7]!;
    r.oif = records[i + 8]!;
    sink.route(r);
  }
}

/** Routes as dump records (the inverse of scanRouteRecords): what a stand-in for the kernel answers a dump with. */
export function packRouteRecords(routes: readonly RouteRecord[]): Float64Array {
  const out = new Float64Array(routes.length * ROUTE_RECORD_FIELDS);
  routes.forEach((r, k) => out.set([r.family, r.dst, r.dstLen, r.table, r.protocol, r.type, r.onlink ? 1 : 0, r.via, r.oif], k * ROUTE_RECORD_FIELDS));
  return out;
}

/** Neighbour or FDB entries as dump records (the inverse of scanNeighborRecords). */
export function packNeighborRecords(entries: readonly NeighborRecord[]): Float64Array {
  const out = new Float64Array(entries.length * NEIGHBOR_RECORD_FIELDS);
  entries.forEach((n, k) => out.set([n.family, n.ifindex, n.state, n.flags, n.ip, n.mac], k * NEIGHBOR_RECORD_FIELDS));
  return out;
}

/** The entries of a neighbour or FDB dump read into records (socket.dumpRecords), handed to `sink` one by one. */
export function scanNeighborRecords(records: Float64Array, sink: NeighborSink): void {
  const n = neighborRecord();
  for (let i = 0; i + NEIGHBOR_RECORD_FIELDS <= records.length; i += NEIGHBOR_RECORD_FIELDS) {
    n.family = records[i]!;
    n.ifindex = records[i + 1]!;
    n.state = records[i + 2]!;
    n.flags = records[i + 3]!;
    n.ip = records[i + 4]!;
    n.mac = records[i + 5]!;
    sink.neighbor(n);
  }
}
