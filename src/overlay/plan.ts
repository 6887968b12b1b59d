/**
 * What the kernel must hold for the peers of one host (ARCHITECTURE.md, "Kernel state owned by the agent"), as plain
 * data. Pure: no kernel, no store. The reconciler compares this with what the kernel reports and writes the
 * difference.
 *
 * Per remote lease (flannel layout):
 *   ip neigh replace <peer subnet .0> lladdr <peer VtepMAC> dev flannel.<VNI> nud permanent
 *   bridge fdb replace <peer VtepMAC> dev flannel.<VNI> dst <peer public IP> self permanent
 *   ip route replace <peer subnet> via <peer subnet .0> dev flannel.<VNI> onlink
 * DirectRouting, peer on the same L2 segment:
 *   ip route replace <peer subnet> via <peer public IP> dev <underlay iface>
 */
import { InvalidValueError } from '../base/errors.js';
import { cidrContains, ipv4Number, macNumber, scanIPv4, type Cidr4 } from '../base/ip.js';
import type { LeaseNumbers } from '../subnet/lease.js';

export interface PeerLease {
  /** "10.244.2.0/24" */
  subnet: string;
  publicIP: string;
  vtepMac: string;
  /** The same as numbers, as the lease was decoded with (Lease.numbers); absent: planPeer parses the text. */
  numbers?: LeaseNumbers;
}

export interface PlanContext {
  /** VTEP device, e.g. "flannel.1". */
  vtep: string;
  /** Underlay interface, e.g. "eth0". */
  underlay: string;
  /** Networks directly connected on the underlay interface (its addresses' prefixes): peers inside them are L2 neighbours. */
  underlayNetworks: readonly Cidr4[];
  directRouting: boolean;
  /** This host's own subnet; a lease for it is never a peer. */
  ownSubnet: string;
  /** Route protocol number that marks tulle's routes. */
  routeProtocol: number;
}

export interface PlannedNeighbor {
  dev: string;
  ip: string;
  mac: string;
}
export interface PlannedFdb {
  dev: string;
  mac: string;
  dst: string;
}
export interface PlannedRoute {
  dst: string;
  via: string;
  dev: string;
  onlink: boolean;
  protocol: number;
}

/** The entries of one peer; neighbor/fdb are absent for a DirectRouting peer. */
export interface PeerPlan {
  subnet: string;
  neighbor?: PlannedNeighbor;
  fdb?: PlannedFdb;
  route: PlannedRoute;
  /**
   * Its addresses as numbers, parsed once here: the diff compares them with the kernel view and the reconciler
   * with kernel announcements (NaN for the neighbour and FDB fields of a DirectRouting peer).
   */
  numbers: { route: number; via: number; neighborIp: number; mac: number; fdbDst: number };
}

/** A route destination as one number (network and prefix): the key of KernelView.routes. */
export function routeKey(network: number, prefix: number): number {
  return network * 64 + prefix;
}

/** routeKey of "10.244.2.0/24"; NaN for text that is not an IPv4 CIDR. */
export function routeKeyOf(cidr: string): number {
  const slash = cidr.indexOf('/');
  const network = slash > 0 ? scanIPv4(cidr, 0, slash) : -1;
  const prefix = Number(cidr.slice(slash + 1));
  return network < 0 || !Number.isInteger(prefix) || prefix < 0 || prefix > 32 ? NaN : routeKey(network, prefix);
}

export function planPeer(ctx: PlanContext, lease: PeerLease): PeerPlan {
  // The peer VTEP's own address is its subnet's network address, 10.244.2.0: the subnet's text up to the slash
  // (lease subnets are canonical, host bits clear — parsed from the key — and admission checked them).
  const slash = lease.subnet.indexOf('/');
  if (slash < 0) throw new InvalidValueError('subnet', lease.subnet, 'is not an IPv4 CIDR (like 10.244.2.0/24)');
  const gateway = lease.subnet.slice(0, slash);
  // The numbers the lease was decoded with, when it was (admission passes them on): no text is parsed again.
  const known = lease.numbers;
  const network = known ? known.network : scanIPv4(lease.subnet, 0, slash);
  const route = routeKey(network, known ? known.prefix : Number(lease.subnet.slice(slash + 1)));
  const publicIP = known ? known.publicIP : ipv4Number(lease.publicIP);
  // flannel's DirectRouting test: the peer's PublicIP is inside one of the underlay's connected networks.
  if (ctx.directRouting && ctx.underlayNetworks.some((n) => cidrContains(n, publicIP))) {
    return {
      subnet: lease.subnet,
      route: { dst: lease.subnet, via: lease.publicIP, dev: ctx.underlay, onlink: false, protocol: ctx.routeProtocol },
      numbers: { route, via: publicIP, neighborIp: NaN, mac: NaN, fdbDst: NaN },
    };
  }
  const mac = lease.vtepMac.toLowerCase();
  return {
    subnet: lease.subnet,
    neighbor: { dev: ctx.vtep, ip: gateway, mac },
    fdb: { dev: ctx.vtep, mac, dst: lease.publicIP },
    route: { dst: lease.subnet, via: gateway, dev: ctx.vtep, onlink: true, protocol: ctx.routeProtocol },
    numbers: { route, via: network, neighborIp: network, mac: known ? known.vtepMac : macNumber(mac), fdbDst: publicIP },
  };
}

/**
 * Would planPeer (same context) make `plan` of `lease`? Its entries follow from the lease's PublicIP and VtepMAC
 * alone: an incremental run plans again only the leases for which this is false.
 */
export function planMatches(plan: PeerPlan, lease: PeerLease): boolean {
  if (plan.subnet !== lease.subnet) return false;
  if (!plan.fdb || !plan.neighbor) return plan.route.via === lease.publicIP;
  return plan.fdb.dst === lease.publicIP && (plan.neighbor.mac === lease.vtepMac || plan.neighbor.mac === lease.vtepMac.toLowerCase());
}

/** One plan per peer subnet, skipping this host's own lease. */
export function planPeers(ctx: PlanContext, leases: Iterable<PeerLease>): Map<string, PeerPlan> {
  const plans = new Map<string, PeerPlan>();
  for (const lease of leases) {
    if (lease.subnet === ctx.ownSubnet) continue;
    plans.set(lease.subnet, planPeer(ctx, lease));
  }
  return plans;
}
