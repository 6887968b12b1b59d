/**
 * `tulle trace`: seed 003's hop-by-hop walk from kernel state (walk.ts, one namespace; trace.ts, the whole
 * path), optional live confirmation by captures (live.ts), and the remote half served by the agent (endpoint.ts).
 */
export * from './types.js';
export { trace, localWalker, type TraceEnv, type Walker } from './trace.js';
export { walkSite, leaseFor, type Site, type Arrival, type Exit, type TraceLease, type SiteWalk } from './walk.js';
export { confirmLive, LiveCaptureError, type LiveOptions } from './live.js';
export { traceRoute, remoteWalker, parseTraceQuery, RemoteTraceError, TRACE_PATH } from './endpoint.js';
export { formatTrace, routeText, neighText, fdbText } from './text.js';
export { findFirewallDrop } from './firewall.js';
