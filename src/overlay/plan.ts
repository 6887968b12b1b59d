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

/** A plan's addresses as numbers (NaN for the neighbour and FDB fields of a DirectRouting peer). */
export interface PlanNumbers {
  /** routeKey of the destination */
  route: number;
  via: number;
  neighborIp: number;
  mac: number;
  fdbDst: number;
}

/**
 * One peer's plan: its lease and its entries as numbers. The entries in words (routeOf, neighborOf, fdbOf) are made
 * only when asked — a diff that writes, a log line: a restart plans every peer, and when the kernel already holds
 * them all (the usual) they are never needed. Measured, the three entry objects and their strings were most of
 * what a restart's planning allocated. A plain object, not a class: made for every peer at a restart, on code V8
 * has not optimised yet, a literal costs least.
 */
export interface PeerPlan {
  subnet: string;
  /** The lease it was made of (admission keeps one object per unchanged lease, so identity means unchanged). */
  lease: PeerLease;
  /** Routed over the underlay (DirectRouting, the peer on the same segment): no neighbour or FDB entry. */
  direct: boolean;
  /** The device its route goes out of; a VXLAN peer's neighbour and FDB entry are on it too (the VTEP). */
  routeDev: string;
  /** `onlink` on its route: a VTEP route's gateway is on no connected network. */
  onlink: boolean;
  /** Its route's protocol: tulle's. */
  protocol: number;
  /** Its addresses as numbers, parsed once: the diff compares them with the kernel view, the reconciler with kernel announcements. */
  numbers: PlanNumbers;
}

/**
 * The peer VTEP's own address is its subnet's network address, 10.244.2.0: the subnet's text up to the slash
 * (lease subnets are canonical, host bits clear — parsed from the key — and admission checked them).
 */
function gatewayOf(subnet: string): string {
  return subnet.slice(0, subnet.indexOf('/'));
}

/** `ip route replace <peer subnet> via <peer subnet .0> dev flannel.<VNI> onlink` (DirectRouting: via its public IP, dev the underlay). */
export function routeOf(p: PeerPlan): PlannedRoute {
  return { dst: p.subnet, via: p.direct ? p.lease.publicIP : gatewayOf(p.subnet), dev: p.routeDev, onlink: p.onlink, protocol: p.protocol };
}

/** `ip neigh replace <peer subnet .0> lladdr <peer VtepMAC> dev flannel.<VNI>`; none for a DirectRouting peer. */
export function neighborOf(p: PeerPlan): PlannedNeighbor | undefined {
  return p.direct ? undefined : { dev: p.routeDev, ip: gatewayOf(p.subnet), mac: p.lease.vtepMac.toLowerCase() };
}

/** `bridge fdb replace <peer VtepMAC> dev flannel.<VNI> dst <peer public IP>`; none for a DirectRouting peer. */
export function fdbOf(p: PeerPlan): PlannedFdb | undefined {
  return p.direct ? undefined : { dev: p.routeDev, mac: p.lease.vtepMac.toLowerCase(), dst: p.lease.publicIP };
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
  const slash = lease.subnet.indexOf('/');
  if (slash < 0) throw new InvalidValueError('subnet', lease.subnet, 'is not an IPv4 CIDR (like 10.244.2.0/24)');
  // The numbers the lease was decoded with, when it was (admission passes them on): no text is parsed again.
  const known = lease.numbers;
  const network = known ? known.network : scanIPv4(lease.subnet, 0, slash);
  const route = routeKey(network, known ? known.prefix : Number(lease.subnet.slice(slash + 1)));
  const publicIP = known ? known.publicIP : ipv4Number(lease.publicIP);
  // flannel's DirectRouting test: the peer's PublicIP is inside one of the underlay's connected networks.
  if (ctx.directRouting && ctx.underlayNetworks.some((n) => cidrContains(n, publicIP)))
    return {
      subnet: lease.subnet,
      lease,
      direct: true,
      routeDev: ctx.underlay,
      onlink: false,
      protocol: ctx.routeProtocol,
      numbers: { route, via: publicIP, neighborIp: NaN, mac: NaN, fdbDst: NaN },
    };
  const mac = known ? known.vtepMac : macNumber(lease.vtepMac);
  return {
    subnet: lease.subnet,
    lease,
    direct: false,
    routeDev: ctx.vtep,
    onlink: true,
    protocol: ctx.routeProtocol,
    numbers: { route, via: network, neighborIp: network, mac, fdbDst: publicIP },
  };
}

/**
 * Would planPeer (same context) make `plan` of `lease`? Its entries follow from the lease's PublicIP and VtepMAC
 * alone: an incremental run plans again only the leases for which this is false.
 */
export function planMatches(plan: PeerPlan, lease: PeerLease): boolean {
  const was = plan.lease;
  if (was === lease) return true;
  if (was.subnet !== lease.subnet || was.publicIP !== lease.publicIP) return false;
  return plan.direct || was.vtepMac === lease.vtepMac || was.vtepMac.toLowerCase() === lease.vtepMac.toLowerCase();
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
