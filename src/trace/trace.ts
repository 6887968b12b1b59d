/**
 * The whole trace: walks the probe from its source namespace through every namespace it reaches (its host,
 * the remote host after encapsulation, a router or peer on the underlay, the destination pod), joining the hops
 * of each, until it is delivered or a hop breaks. Where the next namespace is not visible from here, the
 * environment may offer a remote walker (the destination host's agent) or the trace says what it cannot see.
 */
import { cidrContains, parseCidr4, parseIPv4 } from '../base/ip.js';
import { leaseFor, walkSite, type Arrival, type Site, type SiteWalk, type TraceLease, type WalkContext } from './walk.js';
import type { Hop, OuterHeader, Probe, TraceResult } from './types.js';

/** Something that can walk the probe through one host: a namespace read here, or a remote agent. */
export interface Walker {
  host: string;
  namespace: string;
  walk(probe: Probe, arrival: Arrival, ctx: WalkContext, isPod: boolean): Promise<SiteWalk>;
}

export function localWalker(site: Site): Walker {
  return {
    host: site.host,
    namespace: site.namespace ?? '(this host)',
    site,
    walk: (probe, arrival, ctx, isPod) => walkSite(site, probe, arrival, ctx, isPod),
  } as Walker;
}

export interface TraceEnv {
  leases: readonly TraceLease[];
  /** The cluster network (config Network), to tell "not leased" from "not ours". */
  network?: string;
  /** Where the probe starts, and whether that is a pod (then `host` is the pod's host). */
  source: { walker: Walker; isPod: boolean; host?: Walker };
  /** The host or router holding underlay address `address`, if the trace can walk through it. */
  walkerAt(address: string): Promise<Walker | undefined>;
  /** The pod namespace holding pod address `address`; undefined when it is not visible (a real host). */
  podAt(address: string): Promise<Walker | undefined>;
  /** True when podAt sees every pod (a lab): a pod address no pod holds is then a break. */
  seesAllPods: boolean;
}

/** More namespaces than any real path crosses: a routing loop between hosts ends the walk here. */
const MAX_SITES = 16;

export async function trace(env: TraceEnv, probe: Probe): Promise<TraceResult> {
  const hops: Hop[] = [];
  let outer: OuterHeader | null = null;
  const ctx: WalkContext = { leases: env.leases };
  const done = (verdict: TraceResult['verdict'], reason: string): TraceResult => ({ probe, verdict, reason, hops, outer });

  let walker = env.source.walker;
  let arrival: Arrival = { kind: 'start' };
  let isPod = env.source.isPod;
  for (let i = 0; i < MAX_SITES; i++) {
    let w: SiteWalk;
    try {
      w = await walker.walk(probe, arrival, ctx, isPod);
    } catch (err) {
      // A peer's agent that cannot be asked: say what was not checked rather than fail the whole trace.
      if ((err as { code?: string }).code === 'TLE_TRACE_REMOTE')
        return done('remote-unknown', `${(err as Error).message}; the hops from ${walker.host} on are not checked`);
      throw err;
    }
    hops.push(...w.hops);
    const exit = w.exit;
    switch (exit.kind) {
      case 'delivered':
        return done('delivered', exit.reason);
      case 'break': {
        if (exit.verdict === 'no-route' && inNetwork(env.network, probe.dst) && !leaseFor(env.leases, probe.dst)) {
          return done('not-leased', `${probe.dst} is in the cluster network ${env.network} but no host holds a lease for it (${exit.reason})`);
        }
        if (exit.expectedAt) {
          const expected = await env.walkerAt(exit.expectedAt);
          if (expected)
            hops.push({
              host: expected.host,
              namespace: expected.namespace,
              device: await deviceOf(expected, exit.expectedAt),
              action: 'where the packet should arrive',
              entry: `the lease's PublicIP ${exit.expectedAt}`,
            });
        }
        return done(exit.verdict, exit.reason);
      }
      case 'to-host': {
        ctx.srcMtu = exit.mtu;
        if (!env.source.host) return done('remote-unknown', `the pod's host is not known, so the walk stops at the pod`);
        walker = env.source.host;
        arrival = exit.bridged ? { kind: 'bridged', mac: exit.bridged.mac } : { kind: 'forwarded' };
        isPod = false;
        break;
      }
      case 'to-pod': {
        const pod = await env.podAt(probe.dst);
        if (!pod) {
          if (env.seesAllPods) return done('no-such-pod', `no pod holds ${probe.dst}: the packet is sent out of ${exit.port} and not answered`);
          return done(
            'delivered',
            `handed to ${exit.port} on ${walker.host}, the port of the pod holding ${probe.dst} (the pod's own namespace is not visible from here)`,
          );
        }
        walker = pod;
        arrival = { kind: 'forwarded', iif: 'eth0' };
        isPod = true;
        break;
      }
      case 'vxlan': {
        outer = exit.outer;
        // Across a routed underlay: the routers the outer packet crosses, each looked up for the outer addresses.
        const crossed = await crossUnderlay(env, exit.outer, exit.via);
        hops.push(...crossed.hops);
        if (crossed.broken) return done(crossed.broken.verdict, crossed.broken.reason);
        const next = await env.walkerAt(exit.outer.dst);
        if (!next) return done('remote-unknown', `encapsulated to ${exit.outer.dst}, which this trace cannot see into (no agent answered for it)`);
        walker = next;
        arrival = { kind: 'vxlan', outer: exit.outer };
        isPod = false;
        break;
      }
      case 'forward': {
        const next = await env.walkerAt(exit.nexthop);
        if (!next) return done('remote-unknown', `routed to ${exit.nexthop} out of ${exit.dev}, which this trace cannot see into`);
        walker = next;
        arrival = { kind: 'forwarded', to: exit.nexthop };
        isPod = false;
        break;
      }
    }
  }
  return done('no-route', `the walk crossed ${MAX_SITES} namespaces without reaching ${probe.dst}: a routing loop`);
}

/**
 * Walk the outer packet (outer src -> dst, UDP to the VXLAN port) through the underlay routers between the two
 * VTEPs, up to the host that holds the outer destination. Routers the trace cannot see are skipped silently:
 * the underlay is not tulle's, and the remote host's own walk still shows whether the packet arrived.
 */
async function crossUnderlay(
  env: TraceEnv,
  o: OuterHeader,
  via: string | undefined,
): Promise<{ hops: Hop[]; broken?: { verdict: TraceResult['verdict']; reason: string } }> {
  const hops: Hop[] = [];
  const packet: Probe = { src: o.src, dst: o.dst, proto: 'udp', port: o.dstPort };
  let nexthop = via;
  for (let i = 0; nexthop !== undefined && nexthop !== o.dst && i < MAX_SITES; i++) {
    const router = await env.walkerAt(nexthop);
    if (!router) break;
    let w: SiteWalk;
    try {
      w = await router.walk(packet, { kind: 'forwarded', to: nexthop }, { leases: [] }, false);
    } catch (err) {
      if ((err as { code?: string }).code === 'TLE_TRACE_REMOTE') break;
      throw err;
    }
    hops.push(...w.hops.map((h) => ({ ...h, action: `${h.action} (outer packet)` })));
    if (w.exit.kind === 'break') return { hops, broken: { verdict: w.exit.verdict, reason: `the outer packet ${o.src} > ${o.dst}: ${w.exit.reason}` } };
    nexthop = w.exit.kind === 'forward' ? w.exit.nexthop : undefined;
  }
  return { hops };
}

function inNetwork(network: string | undefined, address: string): boolean {
  if (!network) return false;
  try {
    return cidrContains(parseCidr4(network, 'Network', true), parseIPv4(address));
  } catch {
    return false;
  }
}

/** The device of `walker` that holds `address` (for a hop there); the underlay's usual name when unknown. */
async function deviceOf(walker: Walker & { site?: Site }, address: string): Promise<string> {
  const site = (walker as { site?: Site }).site;
  if (!site) return 'eth0';
  return (await site.nl.listAddresses()).find((a) => a.address === address)?.dev ?? 'eth0';
}
