/**
 * The remote half of `tulle trace`, served read-only by the agent's health server (bound like /metrics): GET
 * /trace with the probe and how it arrives (as a VXLAN packet with its outer header, or forwarded to one of this
 * host's addresses) answers with this host's hops and where the probe goes next, read from this host's kernel.
 * Every query value is checked; a bad one is a 400 naming the field, the value and the rule.
 *
 * The client side (`remoteWalker`) asks a peer's agent the same question over HTTP.
 */
import { hostname } from 'node:os';
import { InvalidValueError, TulleError } from '../base/errors.js';
import { isIP, parseIPv4, parseMac } from '../base/ip.js';
import { NetlinkClient } from '../netlink/index.js';
import { PROTOCOLS, type Probe, type Protocol } from './types.js';
import { walkSite, type Arrival, type SiteWalk } from './walk.js';
import type { Walker } from './trace.js';

export const TRACE_PATH = '/trace';

export class RemoteTraceError extends TulleError {
  constructor(message: string) {
    super('TLE_TRACE_REMOTE', message);
  }
}

function ipv4(q: URLSearchParams, field: string): string {
  const v = q.get(field);
  if (v === null || !isIP(v) || v.includes(':')) throw new InvalidValueError(field, cut(v), 'must be an IPv4 address');
  parseIPv4(v, field);
  return v;
}

function int(q: URLSearchParams, field: string, min: number, max: number): number {
  const v = q.get(field);
  const n = v !== null && /^\d{1,10}$/.test(v) ? Number(v) : NaN;
  if (!(n >= min && n <= max)) throw new InvalidValueError(field, cut(v), `must be a whole number ${min}..${max}`);
  return n;
}

function cut(v: string | null): string | undefined {
  if (v === null) return undefined;
  return v.length > 64 ? `${v.slice(0, 64)}…` : v;
}

/** Turn a /trace query into the probe and its arrival (throws InvalidValueError). */
export function parseTraceQuery(q: URLSearchParams): { probe: Probe; arrival: Arrival } {
  const proto = (q.get('proto') ?? 'icmp') as Protocol;
  if (!PROTOCOLS.includes(proto)) throw new InvalidValueError('proto', cut(q.get('proto')), `must be one of ${PROTOCOLS.join(', ')}`);
  const probe: Probe = { src: ipv4(q, 'src'), dst: ipv4(q, 'dst'), proto };
  if (proto !== 'icmp') probe.port = int(q, 'port', 1, 65535);
  const kind = q.get('arrival');
  if (kind === 'vxlan') {
    const mac = q.get('imac') ?? '';
    let innerDstMac: string;
    try {
      innerDstMac = parseMac(mac, 'imac');
    } catch {
      throw new InvalidValueError('imac', cut(mac), 'must be a MAC address like 0e:f0:b5:8c:28:f5');
    }
    return {
      probe,
      arrival: {
        kind: 'vxlan',
        outer: {
          src: ipv4(q, 'osrc'),
          dst: ipv4(q, 'odst'),
          dstPort: int(q, 'dport', 1, 65535),
          srcPortRange: [0, 0],
          vni: int(q, 'vni', 0, 0xffffff),
          innerSrcMac: '',
          innerDstMac,
        },
      },
    };
  }
  if (kind === 'forwarded') return { probe, arrival: { kind: 'forwarded', to: ipv4(q, 'to') } };
  throw new InvalidValueError('arrival', cut(kind), 'must be vxlan or forwarded');
}

/** The health-server route: GET /trace?... -> { host, hops, exit } or 400/500 with { error, code }. */
export function traceRoute(): (path: string, query: URLSearchParams) => Promise<{ status: number; body: unknown }> | undefined {
  return (path, query) => {
    if (path !== TRACE_PATH) return undefined;
    return (async () => {
      let parsed;
      try {
        parsed = parseTraceQuery(query);
      } catch (err) {
        const e = err as TulleError;
        return { status: 400, body: { error: e.message, code: e.code } };
      }
      const nl = await NetlinkClient.open();
      try {
        const host = hostname();
        const walk = await walkSite({ host, namespace: undefined, nl }, parsed.probe, parsed.arrival, { leases: [] });
        return { status: 200, body: { host, ...walk } };
      } catch (err) {
        const e = err as TulleError;
        return { status: 500, body: { error: e.message, code: e.code ?? 'TLE_TRACE' } };
      } finally {
        nl.close();
      }
    })();
  };
}

/** A walker that asks the agent at `baseUrl` (http://ADDRESS:PORT) to walk its own host. */
export function remoteWalker(address: string, baseUrl: string, timeoutMs = 5000): Walker {
  return {
    host: address,
    namespace: `(agent of ${address})`,
    async walk(probe, arrival): Promise<SiteWalk> {
      const q = new URLSearchParams({ src: probe.src, dst: probe.dst, proto: probe.proto, ...(probe.port !== undefined ? { port: String(probe.port) } : {}) });
      if (arrival.kind === 'vxlan') {
        const o = arrival.outer;
        for (const [k, v] of Object.entries({ arrival: 'vxlan', osrc: o.src, odst: o.dst, dport: String(o.dstPort), vni: String(o.vni), imac: o.innerDstMac }))
          q.set(k, v);
      } else if (arrival.kind === 'forwarded' && arrival.to) {
        q.set('arrival', 'forwarded');
        q.set('to', arrival.to);
      } else {
        throw new RemoteTraceError(`the agent at ${baseUrl} can only continue a probe that arrives by VXLAN or is forwarded to it`);
      }
      let res: Response;
      try {
        res = await fetch(`${baseUrl}${TRACE_PATH}?${q.toString()}`, { signal: AbortSignal.timeout(timeoutMs) });
      } catch (err) {
        throw new RemoteTraceError(`the agent at ${baseUrl} did not answer ${TRACE_PATH}: ${(err as Error).message}`);
      }
      const body = (await res.json().catch(() => ({}))) as { host?: string; hops?: SiteWalk['hops']; exit?: SiteWalk['exit']; error?: string };
      if (!res.ok || !body.hops || !body.exit)
        throw new RemoteTraceError(`the agent at ${baseUrl} answered ${res.status}: ${body.error ?? 'no walk in the answer'}`);
      // The agent knows itself by its hostname; the trace knows it by the address the packet was sent to.
      return { hops: body.hops.map((h) => ({ ...h, host: address, namespace: `(agent of ${address})` })), exit: body.exit };
    },
  };
}
