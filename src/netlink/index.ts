/**
 * tulle's kernel data plane over rtnetlink. Everything the seeds do with `ip` and `bridge` goes through here:
 * links (vxlan, bridge, veth), addresses, routes, neighbours, FDB entries, events and pipelined batches, and
 * nftables set elements. The native binding underneath (src/sys/native.ts) is shared with src/sys (flock, sysctl).
 */
export { NetlinkClient, type ClientOptions } from './client.js';
export { NetlinkError } from './errors.js';
export type { NetlinkOp, OpResult } from './batch.js';
export type { NetlinkEvent, EventKind, EventAction, Subscription, SubscribeOptions } from './events.js';
export type { Link, VxlanInfo, VxlanOptions, BridgeOptions, VethOptions, LinkChanges } from './link.js';
export type { Address } from './addr.js';
export {
  TULLE_ROUTE_PROTOCOL,
  normalizeRoute,
  protocolName,
  routeQueryText,
  type Route,
  type RouteFilter,
  type RouteScope,
  type RouteQuery,
  type RouteLookup,
} from './route.js';
export { normalizeFdb, type Neighbor, type NeighborState, type Fdb } from './neigh.js';
export { NftGenerationReader, NftSetWriter } from './nft-set.js';
export type { EntryEncoder, EntryOp } from './packed.js';
export type { RouteSink, NeighborSink, RouteRecord, NeighborRecord } from './scan.js';
