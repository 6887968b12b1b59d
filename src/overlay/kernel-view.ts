/**
 * Reading what the kernel holds that tulle owns (KernelView): the main table's routes with tulle's protocol
 * (`ip route show table main proto <tulle>`), the permanent IPv4 neighbours on the VTEP (`ip neigh show dev
 * flannel.1 nud permanent`) and its FDB entries with an IPv4 dst (`bridge fdb show dev flannel.1`); plus the
 * destinations of everyone else's routes, which admission must not cover. The reconciler diffs against it;
 * `tulle status` reads it without a reconciler.
 */
import { parseCidr4, type Cidr4 } from '../base/ip.js';
import type { Fdb, Neighbor, NetlinkClient } from '../netlink/index.js';
import type { KernelView } from './diff.js';

/** The three dumps a kernel view is read from. */
export type KernelReader = Pick<NetlinkClient, 'listRoutes' | 'listNeighbors' | 'listFdb'>;

/** Split the main table into tulle's routes (the KernelView shape) and the destinations of everyone else's. */
export function splitRoutes(routes: Awaited<ReturnType<NetlinkClient['listRoutes']>>, protocol: number): { ours: KernelView['routes']; foreign: Cidr4[] } {
  const ours: KernelView['routes'][number][] = [];
  const foreign: Cidr4[] = [];
  for (const r of routes) {
    if (r.protocol === protocol) {
      if (r.dst !== 'default' && r.via && r.dev) ours.push({ dst: r.dst, via: r.via, dev: r.dev, onlink: Boolean(r.onlink), protocol: r.protocol });
    } else if (r.dst !== 'default' && r.dst.includes('.')) {
      foreign.push(parseCidr4(r.dst.includes('/') ? r.dst : `${r.dst}/32`, 'route', true));
    }
  }
  return { ours, foreign };
}

/**
 * One dump each of the main table, the VTEP's neighbours and its FDB. `vtepMayBeMissing`: a VTEP that is not
 * there holds no entries (status on a host whose agent never ran) instead of failing the read (the reconciler,
 * which only runs with its VTEP made).
 */
export async function readKernelView(
  nl: KernelReader,
  o: { vtep: string; routeProtocol: number; vtepMayBeMissing?: boolean },
): Promise<KernelView & { foreignRoutes: Cidr4[] }> {
  const onVtep = <T>(read: Promise<T[]>): Promise<T[]> => (o.vtepMayBeMissing ? read.catch((): T[] => []) : read);
  const [routes, neighbors, fdb] = await Promise.all([
    nl.listRoutes({ table: 254 }),
    onVtep(nl.listNeighbors({ dev: o.vtep })),
    onVtep(nl.listFdb({ dev: o.vtep })),
  ]);
  const { ours, foreign } = splitRoutes(routes, o.routeProtocol);
  return {
    routes: ours,
    foreignRoutes: foreign,
    // The listed entries themselves (no copies: a full run of 5000 peers reads 10000 of them).
    neighbors: neighbors.filter((n): n is Neighbor & { mac: string } => n.state === 'permanent' && n.mac !== undefined && n.ip.includes('.')),
    fdb: fdb.filter((f): f is Fdb & { dst: string } => f.dst !== undefined && f.dst.includes('.')),
  };
}
