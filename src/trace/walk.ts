/**
 * The walk through one network namespace: what the kernel does with the probe there, hop by hop, read from
 * kernel state over netlink. Routes are looked up as the kernel looks them up (RTM_GETROUTE with the packet's
 * addresses and incoming device, `ip route get`), never by matching prefixes here. Each hop names the entry
 * used; the first missing or wrong entry ends the walk with its verdict.
 *
 * A walk ends in one of: delivered here, a break, or the packet leaving this namespace (to the pod's host, to a
 * pod, encapsulated to a remote VTEP, or routed to a next hop on the underlay); the trace (trace.ts) continues
 * it in the next namespace.
 */
import { cidrContains, parseCidr4, parseIPv4 } from '../base/ip.js';
import { NetlinkError, type Link, type NetlinkClient, type RouteLookup } from '../netlink/index.js';
import { getSysctl } from '../sys/sysctl.js';
import { findFirewallDrop } from './firewall.js';
import { fdbText, neighText, routeText } from './text.js';
import type { Hop, OuterHeader, Probe, Verdict } from './types.js';

/** IPv4 + UDP + VXLAN + inner Ethernet: what a VTEP adds below its own MTU (ARCHITECTURE.md: underlay mtu - 50). */
const VXLAN_OVERHEAD = 50;

/** One lease as the walk checks entries against it. */
export interface TraceLease {
  subnet: string;
  publicIP: string;
  vni: number;
  vtepMac: string;
}

/** A namespace the walk reads, and whose name it is known by (`h1`, `h1-p1`, `rt`). */
export interface Site {
  host: string;
  /** Namespace name, or undefined for this process's own. */
  namespace: string | undefined;
  nl: NetlinkClient;
}

/** How the probe arrives in a namespace. */
export type Arrival =
  | { kind: 'start' }
  /** Forwarded in from `iif` (a veth, the bridge, the underlay). */
  | { kind: 'forwarded'; iif?: string; to?: string }
  /** As a VXLAN packet on the underlay. */
  | { kind: 'vxlan'; outer: OuterHeader }
  /** As a frame from a pod to another address on its own link: the host's bridge switches it, no routing. */
  | { kind: 'bridged'; mac: string | undefined };

export type Exit =
  | { kind: 'delivered'; reason: string }
  | { kind: 'break'; verdict: Verdict; reason: string; expectedAt?: string }
  /** From a pod to its host over the pod's veth. */
  | { kind: 'to-host'; mtu: number; bridged?: { mac: string | undefined } }
  /** To the pod holding the destination, through `port` (a bridge port or the pod's host veth). */
  | { kind: 'to-pod'; port: string }
  /** Encapsulated; `via` is the underlay next hop when the remote VTEP is not on this host's link. */
  | { kind: 'vxlan'; outer: OuterHeader; via?: string }
  | { kind: 'forward'; nexthop: string; dev: string };

export interface WalkContext {
  leases: readonly TraceLease[];
  /** The MTU of the pod the probe left from (its eth0), when it left from a pod. */
  srcMtu?: number;
}

export interface SiteWalk {
  hops: Hop[];
  exit: Exit;
}

/** The lease whose subnet holds `address`. */
export function leaseFor(leases: readonly TraceLease[], address: string): TraceLease | undefined {
  const a = parseIPv4(address);
  return leases.find((l) => cidrContains(parseCidr4(l.subnet, 'lease subnet', true), a));
}

/** Walk the probe through `site` from how it arrived there. `isPod`: the namespace is a pod, not a host. */
export async function walkSite(site: Site, probe: Probe, arrival: Arrival, ctx: WalkContext, isPod = false): Promise<SiteWalk> {
  const walk = new Walk(site, probe, ctx, await site.nl.listLinks());
  return walk.run(arrival, isPod);
}

/** One walk through one namespace: the hops so far, and the steps that add to them. */
class Walk {
  readonly hops: Hop[] = [];

  constructor(
    readonly site: Site,
    readonly probe: Probe,
    readonly ctx: WalkContext,
    readonly links: readonly Link[],
  ) {}

  hop(device: string, action: string, entry: string): void {
    this.hops.push({ host: this.site.host, namespace: this.site.namespace ?? '(this host)', device, action, entry });
  }

  /**
   * End the walk with a break. `device`: where the probe is expected to vanish (a hop `--live` checks);
   * `expectedAt`: the underlay address where it should have arrived instead (the trace adds that hop).
   */
  stop(verdict: Verdict, reason: string, device?: string, expectedAt?: string): SiteWalk {
    if (device !== undefined) this.hop(device, `stops here (${verdict})`, reason);
    return { hops: this.hops, exit: { kind: 'break', verdict, reason: `${this.site.host}: ${reason}`, ...(expectedAt ? { expectedAt } : {}) } };
  }

  leave(exit: Exit): SiteWalk {
    return { hops: this.hops, exit };
  }

  async run(arrival: Arrival, isPod: boolean): Promise<SiteWalk> {
    const { site, probe, ctx, links } = this;
    if (arrival.kind === 'bridged') return this.bridgeSwitch(arrival.mac);
    let iif: string | undefined;
    if (arrival.kind === 'forwarded') iif = arrival.iif ?? (await ingressOf(site, probe, arrival.to));
    if (arrival.kind === 'vxlan') {
      const decap = await this.decapsulate(arrival.outer);
      if (typeof decap !== 'string') return decap;
      iif = decap;
    }

    const query = iif !== undefined ? { dst: probe.dst, from: probe.src, iif } : { dst: probe.dst, from: probe.src };
    const downVtep = links.find((l) => l.kind === 'vxlan' && !l.up);
    const peer = leaseFor(ctx.leases, probe.dst);
    let lookup: RouteLookup;
    try {
      lookup = await site.nl.getRoute(query);
    } catch (err) {
      if (!(err instanceof NetlinkError)) throw err;
      const where = iif !== undefined ? ` for a packet from ${probe.src} coming in on ${iif}` : '';
      // A VTEP set down takes its routes with it: name the cause, not just the missing route.
      if (downVtep && peer) {
        return this.stop(
          'vtep-down',
          `${downVtep.name} (vxlan id ${downVtep.vxlan?.vni}) is down, and the kernel removed the routes through it: no route to ${probe.dst} (ip link set ${downVtep.name} up, then the agent reprograms them)`,
          downVtep.name,
        );
      }
      if (err.errno === 'ENETUNREACH') return this.stop('no-route', `no route to ${probe.dst}${where} (${err.command}: Network is unreachable)`, iif);
      if (iif !== undefined && (err.errno === 'EINVAL' || err.errno === 'EXDEV'))
        return this.stop('not-forwarded', `the kernel will not forward ${probe.dst}${where} (${err.message}); check net.ipv4.ip_forward and rp_filter`, iif);
      return this.stop('no-route', err.message, iif);
    }
    const { result, entry } = lookup;
    const lookupText = `ip route get ${probe.dst}${iif !== undefined ? ` from ${probe.src} iif ${iif}` : ''} -> ${routeText(entry)}`;
    if (result.type === 'local') {
      this.hop(iif ?? entry.dev ?? 'lo', isPod ? 'deliver to this pod' : 'deliver to this host', lookupText);
      return this.leave({ kind: 'delivered', reason: `${probe.dst} is an address of ${site.host} (${routeText(entry)})` });
    }
    if (arrival.kind === 'forwarded') this.hop(iif!, 'receive and route', lookupText);
    // After the ingress hop has shown the lookup, the hops that follow name the route entry it matched.
    const routeEntry = arrival.kind === 'forwarded' ? `ip route: ${routeText(entry)}` : lookupText;
    if (result.type && result.type !== 'unicast')
      return this.stop('no-route', `the route to ${probe.dst} is of type ${result.type} (${routeText(entry)})`, iif);
    const dev = result.dev!;
    const out = links.find((l) => l.name === dev);
    if (!isPod && downVtep && peer && out?.kind !== 'vxlan' && out?.kind !== 'bridge' && (result.via ?? probe.dst) !== peer.publicIP) {
      return this.stop(
        'vtep-down',
        `${downVtep.name} (vxlan id ${downVtep.vxlan?.vni}) is down and the kernel removed the routes through it, so ${probe.dst} (leased by ${peer.publicIP}) now follows ${routeText(entry)} (ip link set ${downVtep.name} up, then the agent reprograms them)`,
        downVtep.name,
      );
    }
    if (iif !== undefined) {
      const drop = await findFirewallDrop(site.namespace, probe.src, probe.dst);
      if (drop)
        return this.stop(
          'firewall-drop',
          `tulle's firewall drops ${probe.src} -> ${probe.dst} in chain ${drop.chain}: ${drop.rule} (nft list table ip tulle)`,
          dev,
        );
    }

    if (isPod) {
      this.hop(dev, result.via === undefined ? 'send on the link (same subnet: no gateway)' : 'route out of the pod', routeEntry);
      if (!out?.up) return this.stop('device-down', `${dev} is down`, dev);
      if (result.via !== undefined) return this.leave({ kind: 'to-host', mtu: out.mtu });
      // Same subnet: the frame goes to the pod's MAC (if the pod knows it yet), switched by the host's bridge.
      const mac = (await site.nl.listNeighbors({ dev })).find((n) => n.ip === probe.dst)?.mac;
      return this.leave({ kind: 'to-host', mtu: out.mtu, bridged: { mac } });
    }
    if (!out) return this.stop('no-route', `the route names ${dev}, which does not exist`);
    if (!out.up)
      return this.stop(
        out.kind === 'vxlan' ? 'vtep-down' : 'device-down',
        `${dev} is down (${out.kind === 'vxlan' ? `vxlan id ${out.vxlan?.vni}` : (out.kind ?? 'device')}): ip link set ${dev} up`,
        dev,
      );
    if (out.kind === 'vxlan' && out.vxlan) return this.encapsulate(out, routeEntry, result.via ?? probe.dst);
    if (out.kind === 'bridge') return this.deliverOnBridge(dev, routeEntry);
    if (out.kind === 'veth' && result.via === undefined && entry.dst === `${probe.dst}/32`) {
      this.hop(dev, "route to the pod's veth", routeEntry);
      return this.leave({ kind: 'to-pod', port: dev });
    }
    const nexthop = result.via ?? probe.dst;
    this.hop(dev, peer?.publicIP === nexthop ? 'DirectRouting: route straight to the peer host, no encapsulation' : 'route on the underlay', routeEntry);
    return this.leave({ kind: 'forward', nexthop, dev });
  }

  /** The VXLAN device that takes the packet (its name), or the break. */
  private async decapsulate(o: OuterHeader): Promise<string | SiteWalk> {
    const { site, probe, links } = this;
    const underlay = (await site.nl.listAddresses()).find((a) => a.address === o.dst)?.dev ?? 'eth0';
    const vxlans = links.filter((l) => l.kind === 'vxlan' && l.vxlan);
    const vtep = vxlans.find((l) => l.vxlan!.vni === o.vni && l.vxlan!.port === o.dstPort);
    this.hop(underlay, 'receive the VXLAN packet', `udp ${o.src} > ${o.dst} dport ${o.dstPort} vni ${o.vni}`);
    if (!vtep) {
      const others = vxlans.map((l) => `${l.name} is vxlan id ${l.vxlan!.vni} dstport ${l.vxlan!.port}`).join(', ') || 'no VXLAN device at all';
      const verdict = vxlans.some((l) => l.vxlan!.vni === o.vni) ? 'port-mismatch' : 'vni-mismatch';
      return this.stop(
        verdict,
        `no VXLAN device here takes VNI ${o.vni} on UDP port ${o.dstPort} (${others}): the packet is dropped at ${underlay}`,
        vxlans[0]?.name,
      );
    }
    if (!vtep.up) return this.stop('vtep-down', `${vtep.name} (vxlan id ${o.vni}) is down: ip link set ${vtep.name} up`, vtep.name);
    if (vtep.mac !== o.innerDstMac) {
      // The VTEP takes the frame in and drops it as not its own: it vanishes on the way to where it would be routed.
      const next = await site.nl.getRoute({ dst: probe.dst, from: probe.src, iif: vtep.name }).then(
        (r) => r.result.dev,
        () => undefined,
      );
      return this.stop(
        'stale-vtep-mac',
        `the inner frame is addressed to ${o.innerDstMac} but ${vtep.name} has MAC ${vtep.mac}: the sender's neighbour and FDB entries (and the lease they came from) are stale`,
        next ?? vtep.name,
      );
    }
    this.hop(
      vtep.name,
      'decapsulate',
      `${vtep.name}: vxlan id ${vtep.vxlan!.vni} dstport ${vtep.vxlan!.port} matches; inner dst ${o.innerDstMac} is this VTEP's MAC`,
    );
    return vtep.name;
  }

  /** Flannel's three entries in order (neighbour -> FDB -> underlay route), each checked against the peer's lease. */
  private async encapsulate(vtep: Link, routeEntry: string, gateway: string): Promise<SiteWalk> {
    const { site, probe, ctx, links } = this;
    const dev = vtep.name;
    const info = vtep.vxlan!;
    this.hop(dev, 'route into the overlay', routeEntry);
    const lease = leaseFor(ctx.leases, probe.dst);
    if (!lease) return this.stop('not-leased', `no host holds a lease for ${probe.dst}, yet a route through ${dev} sends it there (a stale route?)`, dev);
    const neigh = (await site.nl.listNeighbors({ dev })).find((n) => n.ip === gateway);
    const want = `ip neigh replace ${gateway} lladdr ${lease.vtepMac} dev ${dev} nud permanent`;
    if (!neigh?.mac)
      return this.stop('neighbour-missing', `no neighbour entry for the next hop ${gateway} on ${dev}; the lease of ${lease.subnet} asks for: ${want}`, dev);
    if (neigh.mac !== lease.vtepMac)
      return this.stop(
        'neighbour-wrong-mac',
        `ip neigh says ${neighText(neigh)} but the lease of ${lease.subnet} says VtepMAC ${lease.vtepMac}; fix: ${want}`,
        dev,
        lease.publicIP,
      );
    this.hop(dev, "resolve the next hop to the remote VTEP's MAC", `ip neigh: ${neighText(neigh)}`);

    const underlayDev = info.dev ?? links.find((l) => l.index === info.link)?.name;
    const fdb = (await site.nl.listFdb({ dev })).find((f) => f.mac === neigh.mac && f.dst);
    const wantFdb = `bridge fdb replace ${neigh.mac} dev ${dev} dst ${lease.publicIP} self permanent`;
    if (!fdb)
      return this.stop(
        'fdb-missing',
        `no FDB entry for ${neigh.mac} on ${dev}: the VTEP does not know where to send it; the lease asks for: ${wantFdb}`,
        underlayDev ?? dev,
        lease.publicIP,
      );
    if (fdb.dst !== lease.publicIP)
      return this.stop(
        'fdb-wrong-host',
        `bridge fdb sends ${neigh.mac} to ${fdb.dst}, but the lease of ${lease.subnet} says PublicIP ${lease.publicIP}; fix: ${wantFdb}`,
        dev,
        lease.publicIP,
      );
    const vni = fdb.vni ?? info.vni;
    const port = fdb.port ?? info.port;
    if (vni !== lease.vni)
      return this.stop('vni-mismatch', `${dev} sends with VNI ${vni} but the lease of ${lease.subnet} says VNI ${lease.vni}`, dev, lease.publicIP);
    this.hop(dev, 'find the remote VTEP (FDB)', `bridge fdb: ${fdbText(fdb)}`);

    if (ctx.srcMtu !== undefined && ctx.srcMtu > vtep.mtu) {
      return this.stop(
        'mtu',
        `the pod's MTU ${ctx.srcMtu} is larger than ${dev}'s ${vtep.mtu}: full-size packets are dropped (ip link set ${dev} mtu ${ctx.srcMtu} or lower the pod's)`,
        dev,
        lease.publicIP,
      );
    }
    const underlay = links.find((l) => l.name === underlayDev);
    if (underlay && vtep.mtu + VXLAN_OVERHEAD > underlay.mtu) {
      return this.stop(
        'mtu',
        `${dev}'s MTU ${vtep.mtu} + ${VXLAN_OVERHEAD} bytes of VXLAN is more than ${underlay.name}'s MTU ${underlay.mtu}: full-size packets cannot leave`,
        underlay.name,
        lease.publicIP,
      );
    }

    let under: RouteLookup;
    try {
      under = await site.nl.getRoute({ dst: fdb.dst, ...(info.local ? { from: info.local } : {}) });
    } catch (err) {
      if (err instanceof NetlinkError) return this.stop('no-route', `no underlay route to the remote VTEP ${fdb.dst} (${err.message})`, dev);
      throw err;
    }
    const outer: OuterHeader = {
      src: info.local ?? under.result.src ?? '0.0.0.0',
      dst: fdb.dst,
      dstPort: port,
      srcPortRange: info.srcPortRange ?? (await localPortRange(site.namespace)),
      vni,
      innerSrcMac: vtep.mac ?? '',
      innerDstMac: neigh.mac,
    };
    this.hop(
      under.result.dev ?? '?',
      'send encapsulated on the underlay',
      `ip route get ${fdb.dst}${info.local ? ` from ${info.local}` : ''} -> ${routeText(under.entry)}; outer ${outer.src} > ${outer.dst} udp dport ${port} vni ${vni}`,
    );
    return this.leave({ kind: 'vxlan', outer, ...(under.result.via ? { via: under.result.via } : {}) });
  }

  /** Routed onto the local bridge: the neighbour gives the pod's MAC, the bridge's FDB its port. */
  private async deliverOnBridge(dev: string, routeEntry: string): Promise<SiteWalk> {
    const { site, probe } = this;
    this.hop(dev, 'route to the local bridge', routeEntry);
    const neigh = (await site.nl.listNeighbors({ dev })).find((n) => n.ip === probe.dst && n.mac);
    if (!neigh) {
      this.hop(dev, 'find the pod on the bridge', `no neighbour entry for ${probe.dst} on ${dev} yet: the kernel asks by ARP when the packet is sent`);
      return this.leave({ kind: 'to-pod', port: dev });
    }
    const port = (await site.nl.listFdb()).find((f) => f.mac === neigh.mac && f.master === dev);
    this.hop(
      port?.dev ?? dev,
      "bridge to the pod's port",
      `ip neigh: ${neighText(neigh)}; ${port ? `bridge fdb: ${fdbText(port)}` : `no bridge fdb entry for ${neigh.mac} yet (flooded to every port)`}`,
    );
    return this.leave({ kind: 'to-pod', port: port?.dev ?? dev });
  }

  /** A frame between two pods of one bridge: switched by the bridge's FDB, never routed by the host. */
  private async bridgeSwitch(mac: string | undefined): Promise<SiteWalk> {
    const { site, probe } = this;
    const back = await site.nl.getRoute({ dst: probe.src }).catch(() => undefined);
    const bridge = back?.result.dev;
    if (!bridge) return this.stop('no-route', `no bridge here holds ${probe.src}'s link`);
    const port = mac ? (await site.nl.listFdb()).find((f) => f.mac === mac && f.master === bridge) : undefined;
    const why = port
      ? `bridge fdb: ${fdbText(port)}`
      : `${mac ? `no bridge fdb entry for ${mac}` : `the pod has no neighbour entry for ${probe.dst} yet`}: ARP and the frame are flooded to every port of ${bridge}`;
    this.hop(bridge, `switch the frame on ${bridge} (no routing)`, why);
    return this.leave({ kind: 'to-pod', port: port?.dev ?? bridge });
  }
}

/** Where a forwarded packet comes in: the device holding the address it was sent to, else the way back to its source. */
async function ingressOf(site: Site, probe: Probe, to: string | undefined): Promise<string> {
  if (to !== undefined) {
    const holder = (await site.nl.listAddresses()).find((a) => a.address === to);
    if (holder) return holder.dev;
  }
  const back = await site.nl.getRoute({ dst: probe.src });
  return back.result.dev ?? 'lo';
}

/** The kernel picks an unset VXLAN source port range from the namespace's ephemeral ports. */
async function localPortRange(namespace: string | undefined): Promise<[number, number]> {
  const text = await getSysctl(namespace, 'net.ipv4.ip_local_port_range').catch(() => '32768 60999');
  const [lo, hi] = text.trim().split(/\s+/).map(Number);
  return [lo || 32768, hi || 60999];
}
