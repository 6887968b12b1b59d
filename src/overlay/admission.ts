/**
 * Lease admission: which peer leases a host may turn into kernel entries. The store is shared and writable by
 * anyone who can reach it, so a lease is a claim, not a fact: one lease for the underlay's own network would make
 * every host route its underlay into the overlay (ARCHITECTURE.md, "Kernel state owned by the agent").
 *
 * A peer lease is admitted only when
 *   - it is a vxlan lease for this network's VNI;
 *   - its subnet lies inside Network, exactly SubnetLen long (so on a SubnetLen boundary);
 *   - the subnet is not this host's, and holds no route of the main table that tulle does not own (the
 *     underlay's connected networks, a VPN's routes, ... — a covering route such as the default is fine);
 *   - its VtepMAC is a unicast, non-zero MAC that neither this host nor another admitted peer uses;
 *   - its PublicIP is a unicast address, not one of this host's, and not inside the overlay Network.
 * Two leases that conflict (same VtepMAC, or one subnet under two keys) are settled the same way on every host:
 * the older key (lower create revision; then the lower subnet, then the key) wins. Pure: no kernel, no store.
 */
import { cidrContainsCidr, cidrsOverlap, formatCidr4, ipv4Number, macNumber, maskOf, parseCidr4, cidrContains, type Cidr4 } from '../base/ip.js';
import type { Lease, LeaseNumbers } from '../subnet/lease.js';
import type { PeerLease } from './plan.js';

/** Stable reason codes: the label of `tulle_leases_rejected_total{reason}` and the first word in listings. */
export type RejectReason =
  | 'malformed'
  | 'backend-type'
  | 'vni'
  | 'outside-network'
  | 'subnet-length'
  | 'own-subnet'
  | 'overlaps-peer'
  | 'foreign-route'
  | 'vtep-mac'
  | 'duplicate-vtep-mac'
  | 'public-ip'
  | 'own-public-ip';

export interface Rejection {
  key: string;
  /** The subnet the key names, when it names one. */
  subnet?: string;
  reason: RejectReason;
  /** Human words: what is wrong, with the values. */
  detail: string;
}

export interface AdmissionContext {
  network: Cidr4;
  subnetLen: number;
  vni: number;
  /** This host's own lease (absent when judging the store as a whole, as `tulle leases` does). */
  ownSubnet?: string;
  ownVtepMac?: string;
  /** Every IPv4 address of this host (its PublicIP among them). */
  localAddresses: ReadonlySet<string>;
  /** Destinations of main-table routes that tulle does not own (default route excluded by the rule itself). */
  foreignRoutes: readonly Cidr4[];
}

export interface AdmissionResult {
  admitted: PeerLease[];
  rejected: Rejection[];
}

const UPPER_CASE = /[A-Z]/;

/** Unicast IPv4 that can carry VXLAN to a host: not 0/8, loopback, link-local, multicast, reserved or broadcast. */
function publicIPProblem(a: number): string | undefined {
  const first = a >>> 24;
  if (first === 0) return 'is in 0.0.0.0/8 ("this network")';
  if (first === 127) return 'is a loopback address';
  if (first >= 224) return first < 240 ? 'is a multicast address' : 'is a reserved or broadcast address';
  if (a >>> 16 === ((169 << 8) | 254)) return 'is a link-local address';
  return undefined;
}

/**
 * A lease that passed the checks of its own (unless `later` says otherwise), with what the conflict checks read,
 * and the peer it becomes when it wins.
 */
interface Candidate {
  lease: Lease;
  numbers: LeaseNumbers;
  /** Its VtepMAC, lower case. */
  mac: string;
  peer: PeerLease;
  /** A problem of its own found after the foreign-route check (which comes first in the rule order). */
  later?: Rejection;
}

/** Older first: lower create revision, then lower subnet address, then key. Every host orders the same leases alike. */
function olderFirst(a: Candidate, b: Candidate): number {
  return a.lease.created - b.lease.created || a.numbers.network - b.numbers.network || (a.lease.key < b.lease.key ? -1 : a.lease.key > b.lease.key ? 1 : 0);
}

/** A lease's own problem: what is wrong, without the key and subnet (which every rejection carries). */
type Problem = Omit<Rejection, 'key' | 'subnet'>;

/**
 * The reason a lease alone cannot be admitted, whatever the other leases and the kernel's routes say: its checks
 * in order, those before the foreign-route check (`before`) and those after it (`after`). The foreign routes are
 * the one check that depends on the kernel: admitLeases makes it between the two, so the reason given is the first
 * problem in the order of the rule list above, and a foreign route coming or going judges no lease again.
 */
function ownProblems(
  ctx: AdmissionContext,
  ownSubnet: Cidr4 | undefined,
  ownVtepMac: string | undefined,
  lease: Lease,
  numbers: LeaseNumbers,
  mac: string,
): { before?: Problem; after?: Problem } {
  const subnet: Cidr4 = numbers;
  if (lease.backendType !== 'vxlan') return { before: { reason: 'backend-type', detail: `BackendType ${JSON.stringify(lease.backendType)} is not "vxlan"` } };
  if (lease.backendData.VNI !== ctx.vni) return { before: { reason: 'vni', detail: `VNI ${lease.backendData.VNI} is not the network's VNI ${ctx.vni}` } };
  if (!cidrContainsCidr(ctx.network, subnet))
    return { before: { reason: 'outside-network', detail: `subnet ${lease.subnet} is not inside the network ${formatCidr4(ctx.network)}` } };
  if (subnet.prefix !== ctx.subnetLen)
    return { before: { reason: 'subnet-length', detail: `subnet ${lease.subnet} is not a /${ctx.subnetLen} (the network's SubnetLen)` } };
  if (ownSubnet && cidrsOverlap(subnet, ownSubnet))
    return { before: { reason: 'own-subnet', detail: `subnet ${lease.subnet} overlaps this host's subnet ${ctx.ownSubnet}` } };
  const after = problemAfterRoutes(ctx, ownVtepMac, lease, numbers, mac);
  return after ? { after } : NO_PROBLEMS;
}

const NO_PROBLEMS = Object.freeze({});

function problemAfterRoutes(ctx: AdmissionContext, ownVtepMac: string | undefined, lease: Lease, numbers: LeaseNumbers, mac: string): Problem | undefined {
  const macNumber = numbers.vtepMac;
  if (macNumber !== macNumber) return { reason: 'vtep-mac', detail: `VtepMAC ${JSON.stringify(mac)} is not a MAC address` };
  // The I/G bit, the lowest of the first byte: set in a multicast (and the broadcast) address.
  if (macNumber === 0 || Math.floor(macNumber / 0x10000000000) % 2 === 1) return { reason: 'vtep-mac', detail: `VtepMAC ${mac} is not a unicast MAC` };
  if (mac === ownVtepMac) return { reason: 'vtep-mac', detail: `VtepMAC ${mac} is this host's own VTEP MAC` };
  const publicIP = numbers.publicIP;
  if (publicIP !== publicIP) return { reason: 'public-ip', detail: `PublicIP ${JSON.stringify(lease.publicIP)} is not an IPv4 address` };
  const ipProblem = publicIPProblem(publicIP);
  if (ipProblem) return { reason: 'public-ip', detail: `PublicIP ${lease.publicIP} ${ipProblem}` };
  if (cidrContains(ctx.network, publicIP))
    return { reason: 'public-ip', detail: `PublicIP ${lease.publicIP} is inside the overlay network ${formatCidr4(ctx.network)}` };
  if (ctx.localAddresses.has(lease.publicIP)) return { reason: 'own-public-ip', detail: `PublicIP ${lease.publicIP} is an address of this host` };
  return undefined;
}

/**
 * The foreign routes a lease of the network's SubnetLen can hold, by the subnet that holds them (its network
 * address): a route lies inside a /SubnetLen exactly when it is at least as long, so each has one such subnet and
 * the check of every lease is one lookup. The first route of the list is the one a rejection names.
 */
function routesBySubnet(ctx: AdmissionContext): Map<number, Cidr4> {
  const out = new Map<number, Cidr4>();
  const mask = maskOf(ctx.subnetLen);
  for (const route of ctx.foreignRoutes) {
    if (route.prefix === 0 || route.prefix < ctx.subnetLen) continue;
    const holder = (route.network & mask) >>> 0;
    if (!out.has(holder)) out.set(holder, route);
  }
  return out;
}

/**
 * A lease judged on its own: its rejection, or the candidate and the peer it becomes when it wins — unless a
 * foreign route lies in its subnet, or else it has the problem `later` (a check after the foreign routes').
 */
type Judged = { rejection: Rejection } | Candidate;

/**
 * What each lease is on its own, kept between calls with the same context: every lease event decides admission
 * over all leases again (a conflict must resolve the same way wherever it is seen), and with the memo only the
 * leases that are new or changed (new Lease objects) are checked again — in a cluster of 100 hosts every join
 * costs each of 99 agents one lease's checks, not a hundred. The foreign routes are not part of the context: they
 * are checked per call, one lookup per lease (routesBySubnet).
 */
export class AdmissionMemo {
  private judged = new WeakMap<Lease, Judged>();
  private context: AdmissionContext | undefined;
  private ownSubnet: Cidr4 | undefined;
  private ownVtepMac: string | undefined;

  /** Judge leases under `ctx`: each as judged before, or judged now and kept. */
  judgeFor(ctx: AdmissionContext): (lease: Lease) => Judged {
    this.use(ctx);
    const known = this.judged;
    const { ownSubnet, ownVtepMac } = this;
    return (lease) => {
      let judged = known.get(lease);
      if (!judged) {
        judged = judgeLease(ctx, ownSubnet, ownVtepMac, lease);
        known.set(lease, judged);
      }
      return judged;
    };
  }

  /** Forget every result when `ctx` differs from the last (any field but foreignRoutes; addresses by identity). */
  private use(ctx: AdmissionContext): void {
    const c = this.context;
    if (
      c === ctx ||
      (c &&
        c.network.network === ctx.network.network &&
        c.network.prefix === ctx.network.prefix &&
        c.subnetLen === ctx.subnetLen &&
        c.vni === ctx.vni &&
        c.ownSubnet === ctx.ownSubnet &&
        c.ownVtepMac === ctx.ownVtepMac &&
        c.localAddresses === ctx.localAddresses)
    )
      return;
    this.judged = new WeakMap();
    this.context = ctx;
    this.ownSubnet = ctx.ownSubnet ? parseCidr4(ctx.ownSubnet) : undefined;
    this.ownVtepMac = ctx.ownVtepMac ? ctx.ownVtepMac.toLowerCase() : undefined;
  }
}

/**
 * Split the peer leases (the caller leaves this host's own lease out, by key) into admitted peers and rejections.
 * `memo`: results of earlier calls to reuse (AdmissionMemo); the outcome is the same with or without it.
 */
export function admitLeases(ctx: AdmissionContext, leases: Iterable<Lease>, memo: AdmissionMemo = new AdmissionMemo()): AdmissionResult {
  const rejected: Rejection[] = [];
  const candidates: Candidate[] = [];
  const routes = routesBySubnet(ctx);
  const judge = memo.judgeFor(ctx);
  for (const lease of leases) {
    const judged = judge(lease);
    if ('rejection' in judged) {
      rejected.push(judged.rejection);
      continue;
    }
    const route = routes.size ? routes.get(judged.numbers.network) : undefined;
    if (route) {
      rejected.push({
        key: lease.key,
        subnet: lease.subnet,
        reason: 'foreign-route',
        detail: `subnet ${lease.subnet} holds the route ${formatCidr4(route)}, which tulle does not own`,
      });
      continue;
    }
    if (judged.later) {
      rejected.push(judged.later);
      continue;
    }
    candidates.push(judged);
  }
  const contested = contestedAmong(candidates);
  const losers = contested.length ? settleConflicts(contested, rejected) : undefined;
  const admitted: PeerLease[] = [];
  for (const c of candidates) if (!losers?.has(c.lease)) admitted.push(c.peer);
  return { admitted, rejected };
}

/**
 * The candidates that share a subnet (under two keys) or a VtepMAC with another: only they compete. Whether any
 * do is found by sorting the subnets and the MACs as numbers (candidates' subnets all have the network's
 * SubnetLen, so equal subnets are equal network addresses), which costs no object per lease; a store without
 * conflicts (the usual) ends there.
 */
function contestedAmong(candidates: readonly Candidate[]): Candidate[] {
  const networks = new Float64Array(candidates.length);
  const macs = new Float64Array(candidates.length);
  for (let i = 0; i < candidates.length; i++) {
    networks[i] = candidates[i]!.numbers.network;
    macs[i] = candidates[i]!.numbers.vtepMac;
  }
  if (!hasDuplicate(networks.sort()) && !hasDuplicate(macs.sort())) return [];
  // The first candidate to claim each subnet and each MAC; every later claimant competes with it.
  const bySubnet = new Map<number, Candidate>();
  const byMac = new Map<number, Candidate>();
  const contested = new Set<Candidate>();
  for (const c of candidates) {
    const subnetHolder = bySubnet.get(c.numbers.network);
    const macHolder = byMac.get(c.numbers.vtepMac);
    if (subnetHolder) contested.add(subnetHolder).add(c);
    else bySubnet.set(c.numbers.network, c);
    if (macHolder) contested.add(macHolder).add(c);
    else byMac.set(c.numbers.vtepMac, c);
  }
  return [...contested];
}

/** Does a sorted array hold a value twice? */
function hasDuplicate(sorted: Float64Array): boolean {
  for (let i = 1; i < sorted.length; i++) if (sorted[i] === sorted[i - 1]) return true;
  return false;
}

function judgeLease(ctx: AdmissionContext, ownSubnet: Cidr4 | undefined, ownVtepMac: string | undefined, lease: Lease): Judged {
  // Numbers read when the lease was decoded; a lease made otherwise is parsed here.
  const numbers = lease.numbers ?? leaseNumbers(lease);
  const text = String(lease.backendData.VtepMAC);
  const mac = UPPER_CASE.test(text) ? text.toLowerCase() : text; // decoded MACs are lower-case already

  const { before, after } = ownProblems(ctx, ownSubnet, ownVtepMac, lease, numbers, mac);
  if (before) return { rejection: { key: lease.key, subnet: lease.subnet, ...before } };
  return {
    lease,
    numbers,
    mac,
    peer: { subnet: lease.subnet, publicIP: lease.publicIP, vtepMac: mac, numbers },
    later: after ? { key: lease.key, subnet: lease.subnet, ...after } : undefined,
  };
}

/** What decodeLease reads into Lease.numbers, for a lease that came without them. */
function leaseNumbers(lease: Lease): LeaseNumbers {
  const subnet = parseCidr4(lease.subnet);
  return { network: subnet.network, prefix: subnet.prefix, publicIP: ipv4Number(lease.publicIP), vtepMac: macNumber(String(lease.backendData.VtepMAC)) };
}

/**
 * Leases that share a subnet (under two keys) or a VtepMAC, oldest first: each takes its subnet and MAC unless
 * an older winner holds either. A lease that shares nothing never loses, so only the contested ones are sorted
 * (a 5000-peer store without conflicts sorts nothing). Returns the losers; their rejections go to `rejected`.
 */
function settleConflicts(contested: Candidate[], rejected: Rejection[]): Set<Lease> {
  const losers = new Set<Lease>();
  if (contested.length === 0) return losers;
  contested.sort(olderFirst);
  const macOwner = new Map<string, Lease>();
  const subnetOwner = new Map<string, Lease>();
  for (const { lease, mac } of contested) {
    // Same length inside one Network: two leases overlap only when they name the same subnet (under two keys).
    const other = subnetOwner.get(lease.subnet);
    const owner = other ? undefined : macOwner.get(mac);
    if (other) {
      rejected.push({
        key: lease.key,
        subnet: lease.subnet,
        reason: 'overlaps-peer',
        detail: `subnet ${lease.subnet} is already held by the older lease at ${other.key}`,
      });
    } else if (owner) {
      rejected.push({
        key: lease.key,
        subnet: lease.subnet,
        reason: 'duplicate-vtep-mac',
        detail: `VtepMAC ${mac} is already used by the older lease ${owner.subnet} (${owner.publicIP})`,
      });
    } else {
      macOwner.set(mac, lease);
      subnetOwner.set(lease.subnet, lease);
      continue;
    }
    losers.add(lease);
  }
  return losers;
}

/** The peers admitted since an earlier admission, and those no longer admitted. */
export interface AdmittedChange {
  added: PeerLease[];
  removed: PeerLease[];
}

/**
 * What changed from one admission's peers to the next. Both lists follow the store's order and keep the objects of
 * unchanged leases (AdmissionMemo), so one walk over both finds a join, a leave or a rewritten lease by identity,
 * with no set or map: the same peer in both is kept, one met in one list only was added or removed. Whatever the
 * walk decides, `after` = `before` - removed + added, counted by object, so the result is exact even when it is not
 * the smallest (every lease new after the memo was reset: all removed, all added).
 */
export function admittedChange(before: readonly PeerLease[], after: readonly PeerLease[]): AdmittedChange {
  const added: PeerLease[] = [];
  const removed: PeerLease[] = [];
  let i = 0;
  let j = 0;
  while (i < before.length && j < after.length) {
    const was = before[i]!;
    const now = after[j]!;
    if (was === now) {
      i++;
      j++;
    } else if (after[j + 1] === was) {
      added.push(now); // `now` came in ahead of `was`
      j++;
    } else {
      removed.push(was); // left, or rewritten: its new object is met as added next
      i++;
    }
  }
  for (; i < before.length; i++) removed.push(before[i]!);
  for (; j < after.length; j++) added.push(after[j]!);
  return { added, removed };
}
