/**
 * The pure allocator: which subnets of the network config are free, and a random pick among them. A subnet is
 * free when it overlaps no lease and no reservation (whatever their length, so a flannel lease of another size
 * still blocks what it covers). The pick is uniform over all free subnets (flannel picks among the first 100);
 * the random source is injectable so that tests can choose.
 *
 * Candidates are counted, not listed: a 10.0.0.0/8 cut into /30s has four million of them, and only the taken
 * ones (few) are looked at.
 */
import { TulleError } from '../base/errors.js';
import { formatCidr4, formatIPv4, type Cidr4 } from '../base/ip.js';
import { subnetRange, type NetworkConfig } from '../config/network.js';

export interface TakenSubnet {
  subnet: Cidr4;
  /** A key without TTL (set aside by an operator) rather than a host's lease. */
  reservation: boolean;
}

export class OutOfSubnetsError extends TulleError {
  constructor(
    readonly total: number,
    readonly leases: number,
    readonly reservations: number,
    range: string,
  ) {
    super(
      'TLE_OUT_OF_SUBNETS',
      `out of subnets: all ${total} subnets ${range} are taken (${leases} ${leases === 1 ? 'lease' : 'leases'} and ${reservations} ${reservations === 1 ? 'reservation' : 'reservations'} in the store); widen Network or SubnetMin..SubnetMax, or remove stale leases`,
    );
  }
}

/** Candidate slot indexes blocked by taken subnets, as sorted, merged [first, last] pairs. */
function blockedSlots(config: NetworkConfig, taken: readonly TakenSubnet[]): Array<[number, number]> {
  const range = subnetRange(config);
  const intervals: Array<[number, number]> = [];
  for (const { subnet } of taken) {
    const start = subnet.network;
    const end = start + 2 ** (32 - subnet.prefix) - 1;
    const lo = Math.max(0, Math.floor((start - range.first) / range.size));
    const hi = Math.min(range.count - 1, Math.floor((end - range.first) / range.size));
    if (end >= range.first && lo <= hi) intervals.push([lo, hi]);
  }
  intervals.sort((a, b) => a[0] - b[0]);
  const merged: Array<[number, number]> = [];
  for (const [lo, hi] of intervals) {
    const last = merged[merged.length - 1];
    if (last && lo <= last[1] + 1) last[1] = Math.max(last[1], hi);
    else merged.push([lo, hi]);
  }
  return merged;
}

export function countFreeSubnets(config: NetworkConfig, taken: readonly TakenSubnet[]): number {
  const blocked = blockedSlots(config, taken).reduce((n, [lo, hi]) => n + hi - lo + 1, 0);
  return subnetRange(config).count - blocked;
}

/** Every free subnet, in address order (for small networks and tests; use pickFreeSubnet to allocate). */
export function freeSubnets(config: NetworkConfig, taken: readonly TakenSubnet[]): Cidr4[] {
  const range = subnetRange(config);
  const out: Cidr4[] = [];
  let next = 0;
  for (const [lo, hi] of [...blockedSlots(config, taken), [range.count, range.count] as [number, number]]) {
    for (let i = next; i < lo; i++) out.push({ network: range.first + i * range.size, prefix: range.prefix });
    next = hi + 1;
  }
  return out;
}

/** Does `subnet` overlap none of `taken`? */
export function isSubnetFree(subnet: Cidr4, taken: readonly TakenSubnet[]): boolean {
  const end = subnet.network + 2 ** (32 - subnet.prefix) - 1;
  return taken.every((t) => t.subnet.network + 2 ** (32 - t.subnet.prefix) - 1 < subnet.network || t.subnet.network > end);
}

/**
 * A free subnet chosen uniformly at random. `random` returns a number in [0, 1) like Math.random.
 * Throws OutOfSubnetsError with the counts when none is free.
 */
export function pickFreeSubnet(config: NetworkConfig, taken: readonly TakenSubnet[], random: () => number = Math.random): Cidr4 {
  const range = subnetRange(config);
  const blocked = blockedSlots(config, taken);
  const free = range.count - blocked.reduce((n, [lo, hi]) => n + hi - lo + 1, 0);
  if (free <= 0) {
    const reservations = taken.filter((t) => t.reservation).length;
    const span = `between ${formatCidr4({ network: range.first, prefix: range.prefix })} and ${formatIPv4(range.last)}/${range.prefix} of ${config.Network}`;
    throw new OutOfSubnetsError(range.count, taken.length - reservations, reservations, span);
  }
  // The n-th free slot: step over each blocked run that starts at or before it.
  let slot = Math.min(free - 1, Math.floor(random() * free));
  for (const [lo, hi] of blocked) {
    if (slot >= lo) slot += hi - lo + 1;
    else break;
  }
  return { network: range.first + slot * range.size, prefix: range.prefix };
}
