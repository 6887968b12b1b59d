/**
 * The lab's topology as data, and the pure planner that decides it from (name, hosts, underlay): which
 * namespaces exist, which host sits on which segment with which address, where the router is. Nothing here
 * touches the kernel; `up.ts` builds what the plan says and `state.ts` stores it.
 *
 * Addresses come from the documentation ranges only (RFC 5737): segment 1 is 192.0.2.0/24, segment 2
 * 198.51.100.0/24; 203.0.113.0/24 stays free for later use. Host i has address .(10+i) on its segment; the
 * router has .1 on each.
 */
import { InvalidValueError } from '../base/errors.js';
import { formatIPv4, nthAddress, parseCidr4 } from '../base/ip.js';
import { hostName, labNamespace, MAX_HOSTS, validateLabName } from './names.js';

export const UNDERLAYS = ['switch', 'routed'] as const;
export type Underlay = (typeof UNDERLAYS)[number];

/** The interface every host has on the underlay. */
export const HOST_INTERFACE = 'eth0';
/** The bridge inside each switch namespace. */
export const SWITCH_BRIDGE = 'br0';
/** The switch port the router's veth ends on. */
export const ROUTER_PORT = 'rt';

const SEGMENT_CIDRS = ['192.0.2.0/24', '198.51.100.0/24'] as const;
const HOST_OFFSET = 10;
const ROUTER_OFFSET = 1;

/** One L2 segment of the underlay: a bridge in its own namespace. */
export interface LabSegment {
  id: number;
  cidr: string;
  /** The router's address on this segment (routed underlay), null on a single switch. */
  gateway: string | null;
  /** Name of the switch (target) carrying this segment, e.g. `sw` or `sw1`. */
  switch: string;
}

export interface LabHost {
  /** Target name, e.g. `h1`. */
  name: string;
  namespace: string;
  /** Underlay interface inside the host namespace (a veth). */
  interface: string;
  address: string;
  prefixLength: number;
  segment: number;
  /** Next hop for other segments (the router), null when there is only one segment. */
  gateway: string | null;
  /** The veth end inside the switch namespace. */
  switchPort: string;
  /** Pod subnet leased by this host's agent; null until the agent issue fills it. */
  subnet: string | null;
}

export interface LabSwitch {
  name: string;
  namespace: string;
  bridge: string;
  segment: number;
}

export interface LabRouterInterface {
  interface: string;
  address: string;
  prefixLength: number;
  segment: number;
  switchPort: string;
}

export interface LabRouter {
  name: string;
  namespace: string;
  interfaces: LabRouterInterface[];
}

/** A pod namespace (filled by the CNI issue; always empty for now). */
export interface LabPod {
  name: string;
  host: string;
  namespace: string;
  address: string | null;
}

export interface LabTopology {
  name: string;
  underlay: Underlay;
  segments: LabSegment[];
  hosts: LabHost[];
  switches: LabSwitch[];
  router: LabRouter | null;
  pods: LabPod[];
}

export function validateHostCount(hosts: number, field = 'nodes'): number {
  if (!Number.isInteger(hosts) || hosts < 1 || hosts > MAX_HOSTS) {
    throw new InvalidValueError(field, hosts, `is out of range (must be a whole number 1..${MAX_HOSTS})`);
  }
  return hosts;
}

export function validateUnderlay(underlay: string, field = 'underlay'): Underlay {
  if (!(UNDERLAYS as readonly string[]).includes(underlay)) {
    throw new InvalidValueError(field, underlay, `is not one of ${UNDERLAYS.join(', ')}`);
  }
  return underlay as Underlay;
}

/** Decide the whole topology of a lab. Throws InvalidValueError for a bad name, host count or underlay. */
export function planTopology(name: string, hosts: number, underlay: Underlay): LabTopology {
  validateLabName(name);
  validateHostCount(hosts);
  validateUnderlay(underlay);
  const routed = underlay === 'routed';
  const segments: LabSegment[] = (routed ? [1, 2] : [1]).map((id) => {
    const cidr = SEGMENT_CIDRS[id - 1]!;
    return { id, cidr, gateway: routed ? addressIn(cidr, ROUTER_OFFSET) : null, switch: routed ? `sw${id}` : 'sw' };
  });
  const switches: LabSwitch[] = segments.map((s) => ({ name: s.switch, namespace: labNamespace(name, s.switch), bridge: SWITCH_BRIDGE, segment: s.id }));
  const hostList: LabHost[] = [];
  for (let i = 1; i <= hosts; i++) {
    // routed: odd hosts on segment 1, even hosts on segment 2, so hosts 1 and 2 already talk across the router
    const segment = segments[routed ? (i - 1) % 2 : 0]!;
    const h = hostName(i);
    hostList.push({
      name: h,
      namespace: labNamespace(name, h),
      interface: HOST_INTERFACE,
      address: addressIn(segment.cidr, HOST_OFFSET + i),
      prefixLength: parseCidr4(segment.cidr).prefix,
      segment: segment.id,
      gateway: segment.gateway,
      switchPort: h,
      subnet: null,
    });
  }
  const router: LabRouter | null = routed
    ? {
        name: 'rt',
        namespace: labNamespace(name, 'rt'),
        interfaces: segments.map((s) => ({
          interface: `eth${s.id}`,
          address: s.gateway!,
          prefixLength: parseCidr4(s.cidr).prefix,
          segment: s.id,
          switchPort: ROUTER_PORT,
        })),
      }
    : null;
  return { name, underlay, segments, hosts: hostList, switches, router, pods: [] };
}

/** Every namespace of the topology, switches first (hosts plug into them). */
export function topologyNamespaces(t: Pick<LabTopology, 'switches' | 'hosts' | 'router' | 'pods'>): string[] {
  return [
    ...t.switches.map((s) => s.namespace),
    ...(t.router ? [t.router.namespace] : []),
    ...t.hosts.map((h) => h.namespace),
    ...t.pods.map((p) => p.namespace),
  ];
}

function addressIn(cidr: string, n: number): string {
  return formatIPv4(nthAddress(parseCidr4(cidr), n));
}
