/**
 * What a host's overlay looks like next to what it should be: its lease, its VTEP, and for every peer lease
 * whether the kernel holds exactly the planned route, neighbour and FDB entry. Read-only: it plans and diffs as
 * the agent does, and reports the writes the agent would make (none when the host is in sync).
 */
import { TULLE_ROUTE_PROTOCOL, type NetlinkClient } from '../netlink/index.js';
import { silentLogger } from '../base/log.js';
import { parseCidr4 } from '../base/ip.js';
import { describeWrite, diffOverlay } from './diff.js';
import { planPeers, type PeerLease } from './plan.js';
import { Reconciler } from './reconciler.js';
import { vtepName } from './vtep.js';

export interface StatusLease extends PeerLease {
  backendType: string;
}

export interface HostOverlayStatus {
  /** This host's subnet: the lease whose PublicIP is one of the host's addresses. */
  subnet: string | null;
  publicIP: string | null;
  vtep: { name: string; mac: string | undefined; mtu: number; up: boolean; vni: number | undefined; local: string | undefined } | null;
  /** Peer leases this host should reach. */
  peers: number;
  /** Peers whose entries are all present and right. */
  programmed: number;
  /** The writes that would make the kernel right, in iproute2's words. */
  pending: string[];
  inSync: boolean;
}

export async function hostOverlayStatus(nl: NetlinkClient, o: { leases: readonly StatusLease[]; vni: number; directRouting: boolean }): Promise<HostOverlayStatus> {
  const name = vtepName(o.vni);
  const [link, addresses] = await Promise.all([nl.getLink(name), nl.listAddresses()]);
  const v4 = addresses.filter((a) => a.family === 4);
  const own = o.leases.find((l) => v4.some((a) => a.address === l.publicIP));
  const vtep = link ? { name, mac: link.mac, mtu: link.mtu, up: link.up, vni: link.vxlan?.vni, local: link.vxlan?.local } : null;
  if (!own) return { subnet: null, publicIP: null, vtep, peers: 0, programmed: 0, pending: [], inSync: false };

  const underlay = v4.find((a) => a.address === own.publicIP)!;
  const ctx = {
    vtep: name,
    underlay: underlay.dev,
    underlayNetworks: v4.filter((a) => a.dev === underlay.dev).map((a) => parseCidr4(a.cidr, 'address', true)),
    directRouting: o.directRouting,
    ownSubnet: own.subnet,
    routeProtocol: TULLE_ROUTE_PROTOCOL,
  };
  const peers = o.leases.filter((l) => l.subnet !== own.subnet && l.backendType === 'vxlan');
  const plans = planPeers(ctx, peers);
  const view = await new Reconciler(nl, ctx, silentLogger).readKernel();
  const diff = diffOverlay(plans, view);
  const pending = [...diff.removals, ...[...diff.peers.values()].flat()].map(describeWrite);
  return {
    subnet: own.subnet,
    publicIP: own.publicIP,
    vtep,
    peers: plans.size,
    programmed: plans.size - diff.peers.size,
    pending,
    inSync: vtep !== null && vtep.up && pending.length === 0,
  };
}

/** The kernel side alone, for when the store cannot be asked: tulle's VTEPs and how many routes tulle owns. */
export async function localOverlayState(nl: NetlinkClient): Promise<{ vteps: Array<{ name: string; up: boolean; address: string | undefined }>; routes: number }> {
  const links = (await nl.listLinks()).filter((l) => l.kind === 'vxlan' && /^flannel\.\d+$/.test(l.name));
  const vteps = [];
  for (const l of links) vteps.push({ name: l.name, up: l.up, address: (await nl.listAddresses(l.name)).find((a) => a.family === 4)?.cidr });
  const routes = (await nl.listRoutes({ table: 254, protocol: TULLE_ROUTE_PROTOCOL })).length;
  return { vteps, routes };
}
