/**
 * What a host's overlay looks like next to what it should be: its lease, its VTEP (every attribute the agent
 * sets), and for every admitted peer lease whether the kernel holds exactly the planned route, neighbour and FDB
 * entry; the leases this host rejects, with their reasons. Read-only: it admits, plans and diffs as the agent
 * does, and reports the writes the agent would make (none when the host is in sync).
 */
import { formatIPv4, parseCidr4 } from '../base/ip.js';
import type { NetworkConfig } from '../config/network.js';
import { TULLE_ROUTE_PROTOCOL, type Link, type NetlinkClient } from '../netlink/index.js';
import type { Lease } from '../subnet/lease.js';
import { admitLeases, type Rejection } from './admission.js';
import { describeWrite, diffOverlay } from './diff.js';
import { planPeers } from './plan.js';
import { readKernelView } from './kernel-view.js';
import { VXLAN_OVERHEAD_IPV4, vtepName } from './vtep.js';

export interface HostOverlayStatus {
  /** This host's subnet: the lease whose PublicIP is one of the host's addresses (and whose VtepMAC its VTEP has). */
  subnet: string | null;
  publicIP: string | null;
  vtep: {
    name: string;
    mac: string | undefined;
    mtu: number;
    up: boolean;
    vni: number | undefined;
    local: string | undefined;
    port: number | undefined;
  } | null;
  /** Peer leases this host admits and should reach. */
  peers: number;
  /** Peers whose entries are all present and right. */
  programmed: number;
  /** Peer leases this host refuses to program, with the reason. */
  rejected: Rejection[];
  /** The writes that would make the kernel right, in iproute2's words (VTEP attributes first). */
  pending: string[];
  inSync: boolean;
}

/** What differs between the VTEP and what the agent makes of it, as the commands that would fix it. */
export function vtepProblems(
  link: Link | undefined,
  want: { name: string; vni: number; port: number; local: string; mtu: number; mac: string; learning: boolean; address: string },
  addresses: readonly string[],
): string[] {
  const name = want.name;
  if (!link) return [`ip link add ${name} type vxlan id ${want.vni} local ${want.local} dstport ${want.port} nolearning (missing)`];
  const v = link.vxlan;
  const out: string[] = [];
  const recreate: string[] = [];
  if (link.kind !== 'vxlan' || !v) recreate.push(`it is a ${link.kind ?? 'non-vxlan'} device`);
  else {
    if (v.vni !== want.vni) recreate.push(`id ${v.vni} != ${want.vni}`);
    if (v.port !== want.port) recreate.push(`dstport ${v.port} != ${want.port}`);
    if ((v.local ?? '') !== want.local) recreate.push(`local ${v.local ?? 'none'} != ${want.local}`);
    if (Boolean(v.learning) !== want.learning) recreate.push(want.learning ? 'nolearning' : 'learning');
  }
  if (recreate.length)
    out.push(`ip link del ${name} && ip link add ${name} type vxlan id ${want.vni} local ${want.local} dstport ${want.port} ... (${recreate.join(', ')})`);
  if (link.mtu !== want.mtu) out.push(`ip link set ${name} mtu ${want.mtu} (is ${link.mtu})`);
  if ((link.mac ?? '').toLowerCase() !== want.mac.toLowerCase())
    out.push(`ip link set ${name} address ${want.mac} (is ${link.mac ?? 'none'}; peers know the lease's VtepMAC)`);
  if (!link.up) out.push(`ip link set ${name} up`);
  if (!addresses.includes(want.address)) out.push(`ip addr add ${want.address} dev ${name}`);
  for (const a of addresses) if (a !== want.address) out.push(`ip addr del ${a} dev ${name}`);
  return out;
}

export async function hostOverlayStatus(nl: NetlinkClient, o: { leases: readonly Lease[]; config: NetworkConfig }): Promise<HostOverlayStatus> {
  const { config } = o;
  const name = vtepName(config.Backend.VNI);
  const [link, addresses, kernel, links] = await Promise.all([
    nl.getLink(name),
    nl.listAddresses(),
    readKernelView(nl, { vtep: name, routeProtocol: TULLE_ROUTE_PROTOCOL, vtepMayBeMissing: true }),
    nl.listLinks(),
  ]);
  const v4 = addresses.filter((a) => a.family === 4);
  // This host's lease: one whose PublicIP is a (non-loopback) address here; anyone can write a lease naming
  // this host's address, so the one whose VtepMAC the VTEP carries wins, then the oldest.
  const mine = o.leases
    .filter((l) => v4.some((a) => a.address === l.publicIP && a.scope !== 'host'))
    .sort((a, b) => Number(b.backendData.VtepMAC === link?.mac) - Number(a.backendData.VtepMAC === link?.mac) || a.created - b.created);
  const own = mine[0];
  const vtep = link ? { name, mac: link.mac, mtu: link.mtu, up: link.up, vni: link.vxlan?.vni, local: link.vxlan?.local, port: link.vxlan?.port } : null;
  if (!own) return { subnet: null, publicIP: null, vtep, peers: 0, programmed: 0, rejected: [], pending: [], inSync: false };

  const underlay = v4.find((a) => a.address === own.publicIP)!;
  const underlayMtu = links.find((l) => l.name === underlay.dev)?.mtu ?? 1500;
  const ownMac = String(own.backendData.VtepMAC ?? '');
  const ctx = {
    vtep: name,
    underlay: underlay.dev,
    underlayNetworks: v4.filter((a) => a.dev === underlay.dev).map((a) => parseCidr4(a.cidr, 'address', true)),
    directRouting: config.Backend.DirectRouting,
    ownSubnet: own.subnet,
    routeProtocol: TULLE_ROUTE_PROTOCOL,
  };
  const admission = admitLeases(
    {
      network: parseCidr4(config.Network),
      subnetLen: config.SubnetLen,
      vni: config.Backend.VNI,
      ownSubnet: own.subnet,
      ownVtepMac: ownMac,
      localAddresses: new Set(v4.map((a) => a.address)),
      foreignRoutes: kernel.foreignRoutes,
    },
    o.leases.filter((l) => l.key !== own.key),
  );
  const plans = planPeers(ctx, admission.admitted);
  const diff = diffOverlay(plans, kernel);
  const vtepAddresses = v4.filter((a) => a.dev === name).map((a) => `${a.address}/${a.prefix}`);
  const wantVtep = {
    name,
    vni: config.Backend.VNI,
    port: config.Backend.Port,
    local: own.publicIP,
    mtu: config.Backend.MTU || underlayMtu - VXLAN_OVERHEAD_IPV4,
    mac: ownMac,
    learning: config.Backend.Learning,
    address: `${formatIPv4(parseCidr4(own.subnet).network)}/32`,
  };
  const pending = [...vtepProblems(link, wantVtep, vtepAddresses), ...[...diff.removals, ...[...diff.peers.values()].flat()].map(describeWrite)];
  return {
    subnet: own.subnet,
    publicIP: own.publicIP,
    vtep,
    peers: plans.size,
    programmed: plans.size - diff.peers.size,
    rejected: admission.rejected,
    pending,
    inSync: pending.length === 0,
  };
}

/** The kernel side alone, for when the store cannot be asked: tulle's VTEPs and how many routes tulle owns. */
export async function localOverlayState(
  nl: NetlinkClient,
): Promise<{ vteps: Array<{ name: string; up: boolean; address: string | undefined }>; routes: number }> {
  const links = (await nl.listLinks()).filter((l) => l.kind === 'vxlan' && /^flannel\.\d+$/.test(l.name));
  const vteps = [];
  for (const l of links) vteps.push({ name: l.name, up: l.up, address: (await nl.listAddresses(l.name)).find((a) => a.family === 4)?.cidr });
  const routes = (await nl.listRoutes({ table: 254, protocol: TULLE_ROUTE_PROTOCOL })).length;
  return { vteps, routes };
}
