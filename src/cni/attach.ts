/**
 * The kernel side of one pod attachment, in either mode. The veth pair is made in one request with its container
 * end created directly inside the container's namespace under its final name (`ip link add vethX type veth peer
 * name eth0 netns NS`), so nothing is ever created in the host namespace under a name that could clash.
 *
 * bridge (flannel, seeds 000/003):
 *   ip link add cni0 type bridge; ip addr add <gateway>/<prefix> dev cni0; ip link set cni0 up   (once per host)
 *   ip link set vethX master cni0 up [; bridge link set dev vethX hairpin on]
 *   container: ip addr add <ip>/<prefix> dev eth0; ip link set eth0 up;
 *              ip route replace <cluster network> via <gateway> [; ip route replace default via <gateway>]
 * routed (Calico, seed 004):
 *   ip link set vethX up; sysctl net.ipv4.conf.vethX.proxy_arp=1 net.ipv4.neigh.vethX.proxy_delay=0
 *     net.ipv4.conf.vethX.forwarding=1; ip route replace <ip>/32 dev vethX scope link
 *   container: ip addr add <ip>/32 dev eth0; ip link set eth0 up; ip route replace 169.254.1.1 dev eth0 scope link;
 *              ip route replace default via 169.254.1.1 dev eth0;
 *              ip neigh replace 169.254.1.1 lladdr <vethX MAC> dev eth0 nud permanent
 *   (the static neighbour makes the gateway resolve even on a host without a default route, where proxy ARP
 *   would stay silent; Calico's own hosts always have one)
 *
 * A failed ADD removes the veth pair (which takes the container end and every route through it along); the
 * bridge and its gateway address stay, as with the reference bridge plugin: they are shared by every pod.
 */
import { writeFileSync } from 'node:fs';
import { run } from '../base/exec.js';
import { cidrContains, parseCidr4, randomMac } from '../base/ip.js';
import { NetlinkClient, NetlinkError, type Link, type NetlinkOp } from '../netlink/index.js';
import { getSysctl, setSysctl } from '../sys/sysctl.js';
import { CNI_CODES, CniError } from './errors.js';
import type { Mode } from './netconf.js';
import type { CniInterface, CniIp, CniResult, CniRoute } from './result.js';

/** Calico's fixed, link-local gateway for every pod. */
export const ROUTED_GATEWAY = '169.254.1.1';

/**
 * Pod routes are marked `proto boot`, what a plain `ip route add` marks (and what seed 004 shows): tulle's own
 * protocol (84) belongs to the agent's peer routes, which it owns, reconciles and removes.
 */
const POD_ROUTE_PROTOCOL = 3; // RTPROT_BOOT

export interface AttachmentSpec {
  mode: Mode;
  containerId: string;
  ifName: string;
  /** CNI_NETNS: path of the container's namespace. */
  netns: string;
  hostVeth: string;
  bridge: string;
  hairpin: boolean;
  mtu: number;
  /** The pod's address, e.g. "10.244.1.2". */
  address: string;
  /** The host subnet's prefix length (bridge mode's address prefix). */
  prefix: number;
  /** The host subnet's gateway (cni0's address in bridge mode). */
  gateway: string;
  /** The cluster network routed via the gateway in bridge mode, e.g. "10.244.0.0/16". */
  network: string;
  isDefaultGateway: boolean;
  /** The container end's MAC the runtime asked for (CNI_ARGS MAC=, runtimeConfig.mac); else the kernel's random one. */
  mac?: string | undefined;
}

export interface Attached {
  interfaces: CniInterface[];
  ips: CniIp[];
  routes: CniRoute[];
}

/** Make the attachment; on any failure undo what was made and throw. */
export async function addAttachment(spec: AttachmentSpec): Promise<Attached> {
  const host = await NetlinkClient.open();
  let ctr: NetlinkClient | undefined;
  let vethMade = false;
  try {
    ctr = await NetlinkClient.open({ netns: spec.netns });
    if (await ctr.getLink(spec.ifName)) {
      throw new CniError(CNI_CODES.INTERFACE_EXISTS, `CNI_IFNAME: ${spec.ifName} already exists in ${spec.netns} (an interface plugin must create it)`);
    }
    const bridge = spec.mode === 'bridge' ? await ensureBridge(host, spec) : spec.mode === 'l2' ? await l2Bridge(host, spec) : undefined;
    const hostEnd = await createVeth(host, spec);
    vethMade = true;
    if (spec.mode === 'routed') await setUpRoutedHostEnd(host, spec);
    else await setUpBridgePort(host, spec);
    await applyAll(ctr, spec.mode === 'bridge' ? bridgeContainerOps(spec) : spec.mode === 'l2' ? l2ContainerOps(spec) : routedContainerOps(spec, hostEnd.mac!));
    if (spec.mode === 'routed') await host.replaceRoute({ dst: `${spec.address}/32`, dev: spec.hostVeth, scope: 'link', protocol: POD_ROUTE_PROTOCOL });
    const ctrEnd = await ctr.getLink(spec.ifName);
    if (!ctrEnd) throw new CniError(CNI_CODES.KERNEL, `${spec.ifName} vanished from ${spec.netns} while it was being set up`);
    return describe(spec, bridge, hostEnd, ctrEnd);
  } catch (err) {
    if (vethMade) await deleteLinkIfPresent(host, spec.hostVeth).catch((e) => warn(`undo: ip link del ${spec.hostVeth}: ${(e as Error).message}`));
    throw err;
  } finally {
    host.close();
    ctr?.close();
  }
}

/** `ip link del <host veth>`: the container end and all routes through either end go with it. Missing is fine. */
export async function removeAttachment(hostVeth: string): Promise<boolean> {
  const host = await NetlinkClient.open();
  try {
    return await deleteLinkIfPresent(host, hostVeth);
  } finally {
    host.close();
  }
}

/** `ip link del NAME`, true if it was there. */
async function deleteLinkIfPresent(nl: NetlinkClient, name: string): Promise<boolean> {
  try {
    await nl.deleteLink(name);
    return true;
  } catch (err) {
    if (err instanceof NetlinkError && err.errno === 'ENODEV') return false;
    throw err;
  }
}

/**
 * `ip link add cni0 address MAC mtu M up type bridge` unless it exists, then `ip addr add <gateway>/<prefix> dev
 * cni0`. The MAC is set explicitly because a bridge without one takes the lowest MAC of its ports and changes it
 * as pods come and go, leaving every pod's ARP entry for the gateway stale. Safe
 * against concurrent ADDs (EEXIST from a racing creator is success). A bridge holding another subnet's gateway
 * means the host's lease changed under live pods: refused, as flannel does.
 */
async function ensureBridge(host: NetlinkClient, spec: AttachmentSpec): Promise<Link> {
  let link = await host.getLink(spec.bridge);
  if (!link) {
    try {
      link = await host.createBridge({ name: spec.bridge, mtu: spec.mtu, mac: randomMac(pseudoRandomBytes), up: true });
    } catch (err) {
      if (!(err instanceof NetlinkError && err.errno === 'EEXIST')) throw err;
      link = await host.getLink(spec.bridge);
    }
  }
  if (!link) throw new CniError(CNI_CODES.KERNEL, `bridge ${spec.bridge} vanished while it was being set up`);
  if (link.kind !== 'bridge') {
    throw new CniError(
      CNI_CODES.BRIDGE_CONFLICT,
      `bridge: ${spec.bridge} exists but is ${link.kind ? `a ${link.kind} device` : 'not a bridge'} (choose another "bridge" name)`,
    );
  }
  if (!link.up) await host.setLink(spec.bridge, { up: true });
  const wanted = `${spec.gateway}/${spec.prefix}`;
  const v4 = (await host.listAddresses(spec.bridge)).filter((a) => a.family === 4);
  if (!v4.some((a) => a.cidr === wanted)) {
    if (v4.length > 0)
      await moveBridgeToSubnet(
        host,
        spec.bridge,
        v4.map((a) => a.cidr),
        wanted,
        spec.network,
      );
    try {
      await host.addAddress(spec.bridge, wanted);
    } catch (err) {
      if (!(err instanceof NetlinkError && err.errno === 'EEXIST')) throw err;
    }
  }
  // Pods reach other hosts through this host: the reference bridge plugin's isGateway does the same.
  if ((await getSysctl(undefined, 'net.ipv4.ip_forward')) !== '1') await setSysctl(undefined, 'net.ipv4.ip_forward', 1);
  return link;
}

/**
 * L2: the bridge is the agent's network's (tulle's own or a joined one, e.g. Docker's): the plugin only checks it
 * is there and never changes it — no address, no state.
 */
async function l2Bridge(host: NetlinkClient, spec: AttachmentSpec): Promise<Link> {
  const link = await host.getLink(spec.bridge);
  if (!link)
    throw new CniError(CNI_CODES.TRY_AGAIN_LATER, `bridge: ${spec.bridge} does not exist: is the tulle agent running with this l2 network on this host?`);
  if (link.kind !== 'bridge')
    throw new CniError(CNI_CODES.BRIDGE_CONFLICT, `bridge: ${spec.bridge} exists but is ${link.kind ? `a ${link.kind} device` : 'not a bridge'}`);
  return link;
}

/**
 * The host's lease changed (a restart after `--cleanup`, or after the lease expired) and the bridge still holds
 * the old subnet's gateway: with no pod attached, `ip addr del <old> dev cni0` (then the caller adds the new
 * one), as flannel's users otherwise do by hand. Refused, with the reason, when pods are still attached (they hold
 * addresses of the old subnet, which no longer routes to this host) or when the old address is not in the cluster
 * network (then the bridge is not an earlier tulle/flannel one, and tulle never changes what it did not make).
 * Exported so that the agent can move the bridge as soon as it gets a new lease.
 */
export async function moveBridgeToSubnet(host: NetlinkClient, bridge: string, old: string[], wanted: string, network: string): Promise<void> {
  const cluster = parseCidr4(network, 'FLANNEL_NETWORK');
  const foreign = old.filter((cidr) => !cidrContains(cluster, parseCidr4(cidr, 'address', true).network));
  if (foreign.length > 0) {
    throw new CniError(
      CNI_CODES.BRIDGE_CONFLICT,
      `bridge: ${bridge} has ${foreign.join(', ')}, outside the cluster network ${network}: it is not tulle's bridge (choose another "bridge" name)`,
    );
  }
  const master = (await host.getLink(bridge))?.index;
  const ports = (await host.listLinks()).filter((l) => l.masterIndex === master).map((l) => l.name);
  if (ports.length > 0) {
    throw new CniError(
      CNI_CODES.BRIDGE_CONFLICT,
      `bridge: ${bridge} still has ${old.join(', ')} of this host's previous subnet, and ${ports.length} pod${ports.length === 1 ? '' : 's'} (${ports.slice(0, 5).join(', ')}${ports.length > 5 ? ', …' : ''}) still use${ports.length === 1 ? 's' : ''} it; the host's subnet is now ${wanted}: remove or restart those pods, then ADD moves ${bridge} to the new subnet`,
    );
  }
  for (const cidr of old) {
    try {
      await host.deleteAddress(bridge, cidr);
    } catch (err) {
      if (!(err instanceof NetlinkError && err.errno === 'EADDRNOTAVAIL')) throw err;
    }
  }
  warn(`moved ${bridge} from ${old.join(', ')} to ${wanted}: the host's subnet changed and no pod was attached`);
}

/**
 * `ip link add <host veth> mtu M type veth peer name <ifname> [address MAC] netns <CNI_NETNS>`. A host end of the same name is a
 * leftover of this very attachment (its DEL never ran): it is removed and the pair made again.
 */
async function createVeth(host: NetlinkClient, spec: AttachmentSpec): Promise<Link> {
  const options = { name: spec.hostVeth, peerName: spec.ifName, peerNetns: spec.netns, mtu: spec.mtu, ...(spec.mac ? { peerMac: spec.mac } : {}) };
  try {
    return await host.createVeth(options);
  } catch (err) {
    if (!(err instanceof NetlinkError && err.errno === 'EEXIST')) throw err;
    if (await host.getLink(spec.hostVeth)) {
      warn(`removing leftover ${spec.hostVeth} of ${spec.containerId} ${spec.ifName}`);
      await deleteLinkIfPresent(host, spec.hostVeth);
      return await host.createVeth(options);
    }
    throw new CniError(CNI_CODES.INTERFACE_EXISTS, `CNI_IFNAME: ${spec.ifName} appeared in ${spec.netns} while the veth pair was being made`);
  }
}

/** `ip link set <host veth> master <bridge> up`, then hairpin mode if asked for. */
async function setUpBridgePort(host: NetlinkClient, spec: AttachmentSpec): Promise<void> {
  await host.setLink(spec.hostVeth, { master: spec.bridge, up: true });
  if (spec.hairpin) await setHairpin(spec.hostVeth);
}

/**
 * `bridge link set dev VETH hairpin on`. The netlink client has no bridge-port attributes (IFLA_PROTINFO), so this
 * writes the port's sysfs flag, which shows this namespace's devices when /sys was mounted for it (as `ip netns
 * exec` and a host's own /sys do); if the file is not there, `bridge` itself does it.
 */
async function setHairpin(veth: string): Promise<void> {
  try {
    writeFileSync(`/sys/class/net/${veth}/brport/hairpin_mode`, '1');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    await run(['bridge', 'link', 'set', 'dev', veth, 'hairpin', 'on']);
  }
}

/**
 * Host end in routed mode: `ip link set VETH up; sysctl -w net.ipv4.conf.VETH.proxy_arp=1
 * net.ipv4.neigh.VETH.proxy_delay=0 net.ipv4.conf.VETH.forwarding=1` (it answers ARP for the pod's gateway at once
 * and routes what the pod sends).
 */
async function setUpRoutedHostEnd(host: NetlinkClient, spec: AttachmentSpec): Promise<void> {
  await host.setLink(spec.hostVeth, { up: true });
  await setSysctl(undefined, `net.ipv4.conf.${spec.hostVeth}.proxy_arp`, 1);
  await setSysctl(undefined, `net.ipv4.neigh.${spec.hostVeth}.proxy_delay`, 0);
  await setSysctl(undefined, `net.ipv4.conf.${spec.hostVeth}.forwarding`, 1);
}

/** `ip addr add IP/PREFIX dev eth0; ip link set eth0 up; ip route replace NETWORK via GW dev eth0 [; ip route replace default via GW dev eth0]` */
function bridgeContainerOps(spec: AttachmentSpec): NetlinkOp[] {
  const dev = spec.ifName;
  const ops: NetlinkOp[] = [
    { op: 'addAddress', args: { dev, cidr: `${spec.address}/${spec.prefix}` } },
    { op: 'setLink', args: { name: dev, up: true } },
    { op: 'replaceRoute', args: { dst: spec.network, via: spec.gateway, dev, protocol: POD_ROUTE_PROTOCOL } },
  ];
  if (spec.isDefaultGateway) ops.push({ op: 'replaceRoute', args: { dst: 'default', via: spec.gateway, dev, protocol: POD_ROUTE_PROTOCOL } });
  return ops;
}

/** `ip addr add IP/<Network prefix> dev eth0; ip link set eth0 up`: every pod of the network is on-link, no gateway. */
function l2ContainerOps(spec: AttachmentSpec): NetlinkOp[] {
  return [
    { op: 'addAddress', args: { dev: spec.ifName, cidr: `${spec.address}/${spec.prefix}` } },
    { op: 'setLink', args: { name: spec.ifName, up: true } },
  ];
}

/**
 * `ip addr add IP/32 dev eth0; ip link set eth0 up; ip route replace 169.254.1.1 dev eth0 scope link;
 * ip route replace default via 169.254.1.1 dev eth0; ip neigh replace 169.254.1.1 lladdr HOSTMAC dev eth0 nud permanent`
 */
function routedContainerOps(spec: AttachmentSpec, hostMac: string): NetlinkOp[] {
  const dev = spec.ifName;
  return [
    { op: 'addAddress', args: { dev, cidr: `${spec.address}/32` } },
    { op: 'setLink', args: { name: dev, up: true } },
    { op: 'replaceRoute', args: { dst: `${ROUTED_GATEWAY}/32`, dev, scope: 'link', protocol: POD_ROUTE_PROTOCOL } },
    { op: 'replaceRoute', args: { dst: 'default', via: ROUTED_GATEWAY, dev, protocol: POD_ROUTE_PROTOCOL } },
    { op: 'replaceNeighbor', args: { dev, ip: ROUTED_GATEWAY, mac: hostMac, state: 'permanent' } },
  ];
}

/** One pipelined batch, in order (the kernel applies each request before reading the next); the first failure throws. */
async function applyAll(nl: NetlinkClient, ops: NetlinkOp[]): Promise<void> {
  const results = await nl.batch(ops);
  const failed = results.find((r) => !r.ok);
  if (failed && !failed.ok) throw failed.error;
}

function describe(spec: AttachmentSpec, bridge: Link | undefined, hostEnd: Link, ctrEnd: Link): Attached {
  const interfaces: CniInterface[] = [];
  if (bridge) interfaces.push(iface(bridge));
  interfaces.push(iface(hostEnd));
  interfaces.push({ ...iface(ctrEnd), sandbox: spec.netns });
  const podIndex = interfaces.length - 1;
  if (spec.mode === 'bridge') {
    const routes: CniRoute[] = [{ dst: spec.network, gw: spec.gateway }];
    if (spec.isDefaultGateway) routes.push({ dst: '0.0.0.0/0', gw: spec.gateway });
    return { interfaces, ips: [{ address: `${spec.address}/${spec.prefix}`, gateway: spec.gateway, interface: podIndex }], routes };
  }
  if (spec.mode === 'l2') return { interfaces, ips: [{ address: `${spec.address}/${spec.prefix}`, interface: podIndex }], routes: [] };
  return { interfaces, ips: [{ address: `${spec.address}/32`, interface: podIndex }], routes: [{ dst: '0.0.0.0/0', gw: ROUTED_GATEWAY }] };
}

function iface(link: Link): CniInterface {
  const out: CniInterface = { name: link.name };
  if (link.mac) out.mac = link.mac;
  if (link.mtu) out.mtu = link.mtu;
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// CHECK

export interface CheckSpec {
  mode: Mode;
  ifName: string;
  netns: string;
  hostVeth: string;
  bridge: string;
  gateway: string;
  prefix: number;
}

/**
 * What differs from what ADD left, read with the equivalents of `ip -d link show`, `ip addr show dev`, `ip route
 * show dev` and `sysctl -n` on both sides, as sentences (empty when all is well): the container interface from
 * prevResult (present, up, same MAC), its addresses, prevResult's routes through tulle's gateway in the container,
 * the host end (up, on the bridge / with its /32 route and proxy ARP), the bridge's gateway address.
 */
export async function checkAttachment(spec: CheckSpec, prev: CniResult): Promise<string[]> {
  const problems: string[] = [];
  const index = prev.interfaces.findIndex((i) => i.name === spec.ifName && i.sandbox !== undefined);
  if (index < 0) return [`prevResult lists no interface ${spec.ifName} inside a sandbox`];
  const expected = prev.interfaces[index]!;
  const addresses = prev.ips.filter((ip) => ip.interface === index).map((ip) => ip.address);
  const host = await NetlinkClient.open();
  const ctr = await NetlinkClient.open({ netns: spec.netns });
  try {
    const link = await ctr.getLink(spec.ifName);
    if (!link) {
      problems.push(`${spec.ifName} is missing in ${spec.netns}`);
    } else {
      if (expected.mac && link.mac?.toLowerCase() !== expected.mac.toLowerCase())
        problems.push(`${spec.ifName} has MAC ${link.mac}, prevResult says ${expected.mac}`);
      if (!link.up) problems.push(`${spec.ifName} is down`);
      const present = new Set((await ctr.listAddresses(spec.ifName)).map((a) => a.cidr));
      for (const a of addresses) if (!present.has(a)) problems.push(`address ${a} is missing on ${spec.ifName}`);
      const routes = await ctr.listRoutes({ dev: spec.ifName });
      // Only the routes tulle made (through its gateway): others in prevResult belong to other plugins in the list.
      const ownGateway = spec.mode === 'bridge' ? spec.gateway : ROUTED_GATEWAY;
      for (const r of prev.routes.filter((x) => x.gw === ownGateway)) {
        const dst = r.dst === '0.0.0.0/0' ? 'default' : r.dst;
        if (!routes.some((k) => k.dst === dst && (r.gw === undefined || k.via === r.gw))) {
          problems.push(`route ${r.dst}${r.gw ? ` via ${r.gw}` : ''} is missing in the container (dev ${spec.ifName})`);
        }
      }
      if (spec.mode === 'routed' && !routes.some((k) => k.dst === `${ROUTED_GATEWAY}/32` && k.scope === 'link')) {
        problems.push(`route ${ROUTED_GATEWAY} dev ${spec.ifName} scope link is missing in the container`);
      }
    }
    const hostEnd = await host.getLink(spec.hostVeth);
    if (!hostEnd) {
      problems.push(`host end ${spec.hostVeth} is missing`);
    } else {
      if (!hostEnd.up) problems.push(`host end ${spec.hostVeth} is down`);
      if (spec.mode !== 'routed' && hostEnd.master !== spec.bridge)
        problems.push(`host end ${spec.hostVeth} is not a port of ${spec.bridge} (master ${hostEnd.master ?? 'none'})`);
      if (spec.mode === 'routed') {
        const own = addresses.filter((a) => !a.includes(':')).map((a) => `${a.split('/')[0]}/32`);
        const hostRoutes = await host.listRoutes({ dev: spec.hostVeth });
        for (const dst of own) if (!hostRoutes.some((r) => r.dst === dst)) problems.push(`host route ${dst} dev ${spec.hostVeth} is missing`);
        if ((await getSysctl(undefined, `net.ipv4.conf.${spec.hostVeth}.proxy_arp`)) !== '1') problems.push(`proxy_arp is off on ${spec.hostVeth}`);
      }
    }
    if (spec.mode === 'bridge') {
      const bridge = await host.getLink(spec.bridge);
      if (!bridge) problems.push(`bridge ${spec.bridge} is missing`);
      else {
        if (!bridge.up) problems.push(`bridge ${spec.bridge} is down`);
        const wanted = `${spec.gateway}/${spec.prefix}`;
        if (!(await host.listAddresses(spec.bridge)).some((a) => a.cidr === wanted)) problems.push(`bridge ${spec.bridge} lacks its gateway address ${wanted}`);
      }
    }
  } finally {
    host.close();
    ctr.close();
  }
  return problems;
}

/** Random bytes for a locally administered MAC: Math.random suffices (uniqueness on one L2 segment, not secrecy) and spares loading node:crypto. */
function pseudoRandomBytes(n: number): Buffer {
  return Buffer.from(Array.from({ length: n }, () => Math.floor(Math.random() * 256)));
}

function warn(text: string): void {
  process.stderr.write(`tulle-cni: ${text}\n`);
}
