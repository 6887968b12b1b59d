/**
 * Routes (`ip route`): replace/delete requests, dump requests filtered by the kernel, and the RTM_NEWROUTE
 * decoder. A listed route has the same shape as the one given to `replaceRoute` after `normalizeRoute`, so
 * desired and actual state compare with deepEqual.
 */
import { InvalidValueError } from '../base/errors.js';
import {
  NLM_F_CREATE,
  NLM_F_EXCL,
  NLM_F_REPLACE,
  ROUTE_TYPES,
  RTA_DST,
  RTA_GATEWAY,
  RTA_IIF,
  RTA_MARK,
  RTA_OIF,
  RTA_PREFSRC,
  RTA_PRIORITY,
  RTA_SRC,
  RTA_TABLE,
  RTMSG_LEN,
  RTM_DELROUTE,
  RTM_F_CLONED,
  RTM_F_FIB_MATCH,
  RTM_GETROUTE,
  RTM_NEWROUTE,
  RTNH_F_ONLINK,
  RTN_UNICAST,
  RT_TABLE_MAIN,
  RT_TABLE_UNSPEC,
  SCOPES,
} from './constants.js';
import { addressFamily, formatAddress, parseAddress, parsePrefix, type Family, type InetPrefix } from './inet.js';
import { Attrs, MessageWriter, lazyRequest, type Message, type Request } from './message.js';
import { checkBool, checkIfName, checkInt, checkOneOf } from './validate.js';

/**
 * The route protocol number on every route tulle creates (`proto 84` in `ip route`), so its own routes can be
 * told apart from everyone else's and stale ones removed. 84 (0x54, 'T') is in neither iproute2's rt_protos nor
 * the kernel's RTPROT_* list, and differs from Calico's 80.
 */
export const TULLE_ROUTE_PROTOCOL = 84;

export type RouteScope = keyof typeof SCOPES;
const SCOPE_NAMES = Object.keys(SCOPES) as RouteScope[];

export interface Route {
  /** Destination prefix ('10.244.2.0/24') or 'default'. */
  dst: string;
  /** Gateway address. */
  via?: string;
  dev?: string;
  /** Treat the gateway as directly reachable on `dev` even if no address says so (flannel's routes). */
  onlink?: boolean;
  scope?: RouteScope;
  /** Routing table number; 254 = main (the default). */
  table?: number;
  /** Route protocol; defaults to TULLE_ROUTE_PROTOCOL for routes tulle creates. */
  protocol?: number;
  /** Preferred source address. */
  src?: string;
  metric?: number;
  /** Only on listed routes that are not plain unicast: 'local', 'broadcast', 'blackhole', ... */
  type?: string;
  /** Only on route lookups made with an incoming device: that device. */
  iif?: string;
}

export interface RouteFilter {
  /** Routing table; default main (254); 0 = all tables (`ip route show table all`). */
  table?: number;
  protocol?: number;
  dev?: string;
  /** Address family; default 4 (what plain `ip route` shows). */
  family?: Family;
}

interface ParsedRoute {
  family: Family;
  dst: InetPrefix | undefined; // undefined = default
  via: Buffer | undefined;
  src: Buffer | undefined;
}

function parseRoute(r: Route): ParsedRoute {
  if (!r || typeof r !== 'object') throw new InvalidValueError('route', r, 'must be an object like {dst, via, dev}');
  const via = r.via !== undefined ? parseAddress(r.via, 'route via') : undefined;
  const src = r.src !== undefined ? parseAddress(r.src, 'route src') : undefined;
  let dst: InetPrefix | undefined;
  let family: Family;
  if (r.dst === 'default') {
    family = via?.family ?? src?.family ?? 4;
  } else {
    dst = parsePrefix(r.dst, 'route dst', 'reject');
    family = dst.family;
    if (dst.prefix === 0) dst = undefined;
  }
  if (via && via.family !== family) throw new InvalidValueError('route via', r.via, `is not of the destination's address family (IPv${family})`);
  if (src && src.family !== family) throw new InvalidValueError('route src', r.src, `is not of the destination's address family (IPv${family})`);
  if (r.dev !== undefined) checkIfName(r.dev, 'route dev');
  checkBool(r.onlink, 'route onlink');
  if (r.scope !== undefined) checkOneOf(r.scope, 'route scope', SCOPE_NAMES);
  if (r.table !== undefined) checkInt(r.table, 'route table', 1, 0xffffffff);
  if (r.protocol !== undefined) checkInt(r.protocol, 'route protocol', 0, 255);
  if (r.metric !== undefined) checkInt(r.metric, 'route metric', 0, 0xffffffff);
  return { family, dst, via: via?.bytes, src: src?.bytes };
}

/** The scope `ip route` picks when none is given: link for a route without gateway, else universe. */
function defaultScope(r: Route): RouteScope {
  return r.via === undefined ? 'link' : 'universe';
}

function dstText(dst: InetPrefix | undefined, family: Family): string {
  if (!dst) return family === 4 ? 'default' : '::/0';
  return `${formatAddress(dst.bytes)}/${dst.prefix}`;
}

/**
 * A route as `listRoutes` reports it once the kernel holds it: defaults filled in (table main, tulle's protocol,
 * the scope `ip` would pick), canonical text, false/zero options left out.
 */
export function normalizeRoute(r: Route): Route {
  const p = parseRoute(r);
  const out: Route = {
    dst: dstText(p.dst, p.family),
    scope: r.scope ?? defaultScope(r),
    table: r.table ?? RT_TABLE_MAIN,
    protocol: r.protocol ?? TULLE_ROUTE_PROTOCOL,
  };
  if (p.via) out.via = formatAddress(p.via);
  if (r.dev !== undefined) out.dev = r.dev;
  if (r.onlink) out.onlink = true;
  if (p.src) out.src = formatAddress(p.src);
  if (r.metric) out.metric = r.metric;
  return out;
}

function routeArgs(r: Route): string {
  return (
    `${r.dst}${r.via !== undefined ? ` via ${r.via}` : ''}${r.dev !== undefined ? ` dev ${r.dev}` : ''}${r.onlink ? ' onlink' : ''}` +
    `${r.scope !== undefined ? ` scope ${r.scope}` : ''}${r.table !== undefined ? ` table ${r.table}` : ''}` +
    `${r.protocol !== undefined ? ` proto ${protocolName(r.protocol)}` : ''}${r.src !== undefined ? ` src ${r.src}` : ''}${r.metric !== undefined ? ` metric ${r.metric}` : ''}`
  );
}

/**
 * Check a route and return the builder of its request, which needs only the output device's index. Like
 * `ip route del`, a delete matches any protocol, scope and type unless the route names them.
 */
type RouteVerb = 'add' | 'replace' | 'del';

/** NLM flags of each verb: `add` fails with EEXIST instead of overwriting a route someone else made. */
const ROUTE_FLAGS: Record<RouteVerb, number> = { add: NLM_F_CREATE | NLM_F_EXCL, replace: NLM_F_CREATE | NLM_F_REPLACE, del: 0 };

function prepareRoute(r: Route, verb: RouteVerb): (oif: number | undefined) => Request {
  const forDelete = verb === 'del';
  const p = parseRoute(r);
  const table = r.table ?? RT_TABLE_MAIN;
  const protocol = forDelete ? (r.protocol ?? 0) : (r.protocol ?? TULLE_ROUTE_PROTOCOL);
  const scope = forDelete ? (r.scope !== undefined ? SCOPES[r.scope] : SCOPES.nowhere) : SCOPES[r.scope ?? defaultScope(r)];
  return (oif) => {
    const w = new MessageWriter(forDelete ? RTM_DELROUTE : RTM_NEWROUTE, ROUTE_FLAGS[verb], RTMSG_LEN);
    w.structU8(0, addressFamily(p.family))
      .structU8(1, p.dst?.prefix ?? 0)
      .structU8(4, table < 256 ? table : RT_TABLE_UNSPEC)
      .structU8(5, protocol)
      .structU8(6, scope)
      .structU8(7, forDelete ? 0 : RTN_UNICAST)
      .structU32(8, r.onlink ? RTNH_F_ONLINK : 0);
    if (p.dst) w.bytes(RTA_DST, p.dst.bytes);
    if (p.via) w.bytes(RTA_GATEWAY, p.via);
    if (oif !== undefined) w.u32(RTA_OIF, oif);
    if (r.metric !== undefined) w.u32(RTA_PRIORITY, r.metric);
    if (p.src) w.bytes(RTA_PREFSRC, p.src);
    w.u32(RTA_TABLE, table);
    return lazyRequest(w.finish(), () => `route ${verb} ${routeArgs(r)}`);
  };
}

/** iproute2's names for the protocols it knows (rt_protos), so a command reads as `ip route` would print it. */
const PROTOCOL_NAMES: Record<number, string> = { 1: 'redirect', 2: 'kernel', 3: 'boot', 4: 'static' };

export function protocolName(protocol: number): string {
  return PROTOCOL_NAMES[protocol] ?? String(protocol);
}

/** `ip route replace DST [via GW] [dev DEV] [onlink] [scope S] [table T] [proto P] [src A] [metric M]` */
export function prepareReplaceRoute(r: Route): (oif: number | undefined) => Request {
  return prepareRoute(r, 'replace');
}

/** `ip route add DST ...`: like replace, but EEXIST when a route to DST (same table, metric) already exists. */
export function prepareAddRoute(r: Route): (oif: number | undefined) => Request {
  return prepareRoute(r, 'add');
}

/** `ip route del DST [via GW] [dev DEV] ...` (ESRCH when no such route). */
export function prepareDeleteRoute(r: Route): (oif: number | undefined) => Request {
  return prepareRoute(r, 'del');
}

export function encodeReplaceRoute(r: Route, oif: number | undefined): Request {
  return prepareRoute(r, 'replace')(oif);
}

export function encodeDeleteRoute(r: Route, oif: number | undefined): Request {
  return prepareRoute(r, 'del')(oif);
}

/** `ip [-6] route show [table T] [proto P] [dev DEV]`: the kernel filters by table, protocol and device. */
export function encodeDumpRoutes(filter: RouteFilter, oif: number | undefined): Request {
  const family = filter.family ?? 4;
  const table = filter.table ?? RT_TABLE_MAIN;
  if (filter.table !== undefined) checkInt(filter.table, 'route filter table', 0, 0xffffffff);
  if (filter.protocol !== undefined) checkInt(filter.protocol, 'route filter protocol', 0, 255);
  const w = new MessageWriter(RTM_GETROUTE, 0, RTMSG_LEN);
  const s = w.struct;
  s[0] = addressFamily(family);
  s[4] = table < 256 ? table : RT_TABLE_UNSPEC;
  s[5] = filter.protocol ?? 0;
  if (table !== RT_TABLE_UNSPEC) w.u32(RTA_TABLE, table);
  if (oif !== undefined) w.u32(RTA_OIF, oif);
  const args = `${table === 0 ? ' table all' : table !== RT_TABLE_MAIN ? ` table ${table}` : ''}${filter.protocol !== undefined ? ` proto ${protocolName(filter.protocol)}` : ''}${filter.dev ? ` dev ${filter.dev}` : ''}`;
  return { message: w.finish(), command: `${family === 6 ? '-6 ' : ''}route show${args}` };
}

const SCOPE_BY_NUMBER: RouteScope[] = [];
for (const n of SCOPE_NAMES) SCOPE_BY_NUMBER[SCOPES[n]] = n;

/** Decode RTM_NEWROUTE/RTM_DELROUTE; undefined for cached clones, which are not configuration. */
export function decodeRoute(m: Message, nameOf: (index: number) => string | undefined): Route | undefined {
  if (m.payload.readUInt32LE(8) & RTM_F_CLONED) return undefined;
  return decodeRouteFields(m, nameOf);
}

function decodeRouteFields(m: Message, nameOf: (index: number) => string | undefined): Route {
  const p = m.payload;
  const flags = p.readUInt32LE(8);
  const family: Family = p[0] === 2 ? 4 : 6;
  const dstLen = p[1]!;
  const a = new Attrs(p, RTMSG_LEN);
  const dst = a.address(RTA_DST);
  const route: Route = {
    dst: dstLen === 0 || dst === undefined ? (family === 4 ? 'default' : '::/0') : `${dst}/${dstLen}`,
    scope: SCOPE_BY_NUMBER[p[6]!] ?? 'universe',
    table: a.u32(RTA_TABLE) ?? p[4]!,
    protocol: p[5]!,
  };
  const via = a.address(RTA_GATEWAY);
  if (via !== undefined) route.via = via;
  const oif = a.u32(RTA_OIF);
  if (oif !== undefined) route.dev = nameOf(oif) ?? `if${oif}`;
  if (flags & RTNH_F_ONLINK) route.onlink = true;
  const src = a.address(RTA_PREFSRC);
  if (src !== undefined) route.src = src;
  const metric = a.u32(RTA_PRIORITY);
  if (metric) route.metric = metric;
  if (p[7] !== RTN_UNICAST) route.type = ROUTE_TYPES[p[7]!] ?? String(p[7]);
  return route;
}

/** A route lookup, as `ip route get` asks it: the packet's addresses and, for a forwarded packet, where it came in. */
export interface RouteQuery {
  /** Destination address. */
  dst: string;
  /** Source address of the packet (`from`). */
  from?: string;
  /** Incoming device: the lookup is the one the kernel makes for a packet forwarded from there (`iif`). */
  iif?: string;
  /** Outgoing device the socket is bound to (`oif`). */
  oif?: string;
  /** Firewall mark (`mark`). */
  mark?: number;
}

/**
 * What the kernel answered: `result` is the resolved path (`ip route get`: dst is the address as /32 or /128,
 * type `local` for an address of this host, `src` the source the kernel would pick), `entry` the FIB entry
 * that matched it (`ip route get fibmatch`: the configured route with its prefix, protocol, onlink flag, table).
 */
export interface RouteLookup {
  result: Route;
  entry: Route;
}

interface ParsedQuery {
  family: Family;
  dst: Buffer;
  from: Buffer | undefined;
}

export function parseRouteQuery(q: RouteQuery): ParsedQuery {
  if (!q || typeof q !== 'object') throw new InvalidValueError('route query', q, 'must be an object like {dst, from, iif}');
  const dst = parseAddress(q.dst, 'route get dst');
  const from = q.from !== undefined ? parseAddress(q.from, 'route get from') : undefined;
  if (from && from.family !== dst.family)
    throw new InvalidValueError('route get from', q.from, `is not of the destination's address family (IPv${dst.family})`);
  if (q.iif !== undefined) checkIfName(q.iif, 'route get iif');
  if (q.oif !== undefined) checkIfName(q.oif, 'route get oif');
  if (q.mark !== undefined) checkInt(q.mark, 'route get mark', 0, 0xffffffff);
  return { family: dst.family, dst: dst.bytes, from: from?.bytes };
}

/** The lookup in iproute2's words: `route get [fibmatch] DST [from SRC] [iif DEV] [oif DEV] [mark M]`. */
export function routeQueryText(q: RouteQuery, fibmatch = false): string {
  return `route get ${fibmatch ? 'fibmatch ' : ''}${q.dst}${q.from !== undefined ? ` from ${q.from}` : ''}${q.iif !== undefined ? ` iif ${q.iif}` : ''}${q.oif !== undefined ? ` oif ${q.oif}` : ''}${q.mark !== undefined ? ` mark ${q.mark}` : ''}`;
}

/**
 * `ip route get [fibmatch] DST [from SRC] [iif DEV] [oif DEV] [mark M]`: one RTM_GETROUTE request (not a dump)
 * with the packet's addresses, answered by the kernel's own lookup (policy rules, tables, longest prefix).
 */
export function encodeGetRoute(q: RouteQuery, indexes: { iif?: number; oif?: number }, fibmatch: boolean): Request {
  const p = parseRouteQuery(q);
  const w = new MessageWriter(RTM_GETROUTE, 0, RTMSG_LEN);
  const s = w.struct;
  s[0] = addressFamily(p.family);
  s[1] = p.family === 4 ? 32 : 128;
  if (p.from) s[2] = p.family === 4 ? 32 : 128;
  s.writeUInt32LE(fibmatch ? RTM_F_FIB_MATCH : 0, 8);
  w.bytes(RTA_DST, p.dst);
  if (p.from) w.bytes(RTA_SRC, p.from);
  if (indexes.iif !== undefined) w.u32(RTA_IIF, indexes.iif);
  if (indexes.oif !== undefined) w.u32(RTA_OIF, indexes.oif);
  if (q.mark !== undefined) w.u32(RTA_MARK, q.mark);
  return { message: w.finish(), command: routeQueryText(q, fibmatch) };
}

/** Decode the answer to `encodeGetRoute` (a cloned, resolved route is kept: it is the answer). */
export function decodeRouteAnswer(m: Message, nameOf: (index: number) => string | undefined): Route {
  const route = decodeRouteFields(m, nameOf);
  const iif = new Attrs(m.payload, RTMSG_LEN).u32(RTA_IIF);
  if (iif !== undefined) route.iif = nameOf(iif) ?? `if${iif}`;
  return route;
}
