/**
 * L2 networks (Backend.Mode "l2", seeds 001/002): one VXLAN device `vxlan<VNI>` enslaved to a bridge, so that
 * the pods of every host share one subnet and one broadcast domain. What the device carries between hosts is
 * chosen by Backend.Flood:
 *
 *   unicast    ip link add vxlan<VNI> type vxlan id <VNI> local <public IP> dev <underlay> dstport <port> learning noudpcsum
 *              bridge fdb append 00:00:00:00:00:00 dev vxlan<VNI> dst <peer public IP> self permanent   (per peer)
 *   multicast  ip link add vxlan<VNI> type vxlan id <VNI> local <public IP> group <group> dev <underlay> dstport <port> learning
 *   remote     ip link add vxlan<VNI> type vxlan id <VNI> local <public IP> remote <peer> dev <underlay> dstport <port> learning
 *   none       ip link add vxlan<VNI> type vxlan id <VNI> local <public IP> dev <underlay> dstport <port> nolearning proxy
 *              (the per-pod entries come from src/overlay/l2-endpoints.ts)
 * and in every mode
 *   ip link add <bridge> type bridge; ip link set <bridge> up       (only when tulle makes the bridge itself)
 *   ip link set vxlan<VNI> mtu <underlay mtu - 50> master <bridge> up
 *
 * A bridge that exists already (a Docker network's br-<id>) is only joined: its addresses, other ports and
 * settings are never changed, and leaving it means only tulle's device goes.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { TulleError } from '../base/errors.js';
import { cidrContains, formatCidr4, parseIPv4, type Cidr4 } from '../base/ip.js';
import type { Logger } from '../base/log.js';
import type { FloodMode } from '../config/network.js';
import type { Link, NetlinkClient } from '../netlink/index.js';
import type { PeerLease } from './plan.js';

export const ZERO_MAC = '00:00:00:00:00:00';

export class L2Error extends TulleError {
  constructor(code: string, message: string, cause?: unknown) {
    super(code, message, { cause });
  }
}

/** The L2 device's name: seed 001's `vxlan0` pattern with the VNI, so it never collides with flannel.<VNI>. */
export function l2DeviceName(vni: number): string {
  return `vxlan${vni}`;
}

export interface L2DeviceSpec {
  name: string;
  vni: number;
  local: string;
  /** Underlay interface name. */
  dev: string;
  port: number;
  mtu: number;
  mac: string;
  flood: FloodMode;
  /** multicast: the group. */
  group?: string;
  /** remote: the one peer, once its lease is known. */
  remote?: string;
  bridge: string;
}

/** Learning as the flood mode needs: every mode learns from the frames it receives but "none", which is told. */
export function deviceFlags(flood: FloodMode): { learning: boolean; proxy: boolean } {
  return flood === 'none' ? { learning: false, proxy: true } : { learning: true, proxy: false };
}

/** Why an existing link cannot serve as this device, or undefined when it can (MTU, MAC, master and state are adjustable). */
export function l2Incompatibility(link: Link, spec: L2DeviceSpec, underlayIndex: number): string | undefined {
  if (link.kind !== 'vxlan') return `${spec.name} exists but is a ${link.kind ?? 'non-vxlan'} device`;
  const v = link.vxlan;
  if (!v) return `${spec.name} reports no vxlan attributes`;
  const want = deviceFlags(spec.flood);
  const diffs: string[] = [];
  if (v.vni !== spec.vni) diffs.push(`vni ${v.vni} != ${spec.vni}`);
  if ((v.local ?? '') !== spec.local) diffs.push(`local ${v.local ?? 'none'} != ${spec.local}`);
  if (v.link !== underlayIndex) diffs.push(`dev index ${v.link ?? 'none'} != ${underlayIndex} (${spec.dev})`);
  if (v.port !== spec.port) diffs.push(`dstport ${v.port} != ${spec.port}`);
  if (Boolean(v.learning) !== want.learning) diffs.push(`learning ${v.learning} != ${want.learning}`);
  if (Boolean(v.proxy) !== want.proxy) diffs.push(`proxy ${Boolean(v.proxy)} != ${want.proxy}`);
  if (v.udpCsum) diffs.push('udpcsum on != off');
  if ((v.group ?? '') !== (spec.group ?? '')) diffs.push(`group ${v.group ?? 'none'} != ${spec.group ?? 'none'}`);
  if ((v.remote ?? '') !== (spec.remote ?? '')) diffs.push(`remote ${v.remote ?? 'none'} != ${spec.remote ?? 'none'}`);
  return diffs.length ? `${spec.name} has ${diffs.join(', ')}` : undefined;
}

export interface L2EnsureResult {
  device: 'kept' | 'adjusted' | 'created' | 'recreated';
  reason?: string;
  /** created: tulle made the bridge now; joined: it existed and is not tulle's; kept: tulle's own, from before. */
  bridge: 'created' | 'joined' | 'kept';
}

/**
 * Make the bridge (when missing) and the device, and put the device on the bridge. `owns`: the state dir says
 * tulle made this bridge (so it may bring it up again) and this device (so it may adjust or recreate it; a device
 * of that name tulle did not make is refused). Returns what was done.
 */
export async function ensureL2Device(
  nl: NetlinkClient,
  spec: L2DeviceSpec,
  owns: { bridge: boolean; device: boolean },
  log: Logger,
  expected?: string,
): Promise<L2EnsureResult> {
  const underlay = await nl.getLink(spec.dev);
  if (!underlay) throw new L2Error('TLE_L2_DEVICE', `underlay interface ${spec.dev} does not exist`);
  let bridgeAction: L2EnsureResult['bridge'];
  const bridge = await nl.getLink(spec.bridge);
  if (!bridge) {
    await nl.createBridge({ name: spec.bridge, up: true }); // ip link add <bridge> up type bridge
    bridgeAction = 'created';
  } else if (bridge.kind !== 'bridge') {
    throw new L2Error(
      'TLE_L2_BRIDGE',
      `bridge ${spec.bridge}: the device exists but is a ${bridge.kind ?? 'non-bridge'} device (name a bridge with Backend.Bridge or --bridge)`,
    );
  } else {
    bridgeAction = owns.bridge ? 'kept' : 'joined';
    if (owns.bridge && !bridge.up) await nl.setLink(spec.bridge, { up: true }); // ip link set <bridge> up
  }

  const flags = deviceFlags(spec.flood);
  const existing = await nl.getLink(spec.name);
  let reason: string | undefined;
  let device: L2EnsureResult['device'] = 'created';
  if (existing && !owns.device) {
    // A vxlan<VNI> someone made by hand (seed 001's way): tulle neither adopts, changes nor deletes it.
    throw new L2Error(
      'TLE_L2_DEVICE_FOREIGN',
      `${spec.name} exists and tulle did not make it (the state dir records no such device): tulle does not change or delete it; remove it (ip link del ${spec.name}) or choose another Backend.VNI`,
    );
  }
  if (existing) {
    reason = l2Incompatibility(existing, spec, underlay.index);
    if (!reason) {
      const change: { mtu?: number; up?: boolean; mac?: string; master?: string } = {};
      if (existing.mtu !== spec.mtu) change.mtu = spec.mtu;
      if (existing.mac && existing.mac.toLowerCase() !== spec.mac.toLowerCase()) change.mac = spec.mac;
      if (existing.master !== spec.bridge) change.master = spec.bridge;
      if (!existing.up) change.up = true;
      if (Object.keys(change).length === 0) return { device: 'kept', bridge: bridgeAction };
      await nl.setLink(spec.name, change); // ip link set vxlan<VNI> [mtu N] [address MAC] [master BR] [up]
      return { device: 'adjusted', bridge: bridgeAction };
    }
    // `expected`: the caller changed the spec on purpose (remote's new peer), which is news, not a warning.
    if (expected) log.info(`recreating the L2 device: ${expected}`, { device: spec.name, reason });
    else log.warn('recreating the L2 device: the existing one is incompatible', { device: spec.name, reason });
    await nl.deleteLink(spec.name); // ip link del vxlan<VNI>
    device = 'recreated';
  }
  try {
    await nl.createVxlan({
      name: spec.name,
      vni: spec.vni,
      local: spec.local,
      dev: spec.dev,
      port: spec.port,
      ...flags,
      // noudpcsum, as tulle's L3 VTEP and flannel's (seed 003): the outer checksum adds nothing to the inner frame's.
      udpCsum: false,
      ...(spec.group ? { group: spec.group } : {}),
      ...(spec.remote ? { remote: spec.remote } : {}),
      mtu: spec.mtu,
      mac: spec.mac,
    });
    await nl.setLink(spec.name, { master: spec.bridge, up: true }); // ip link set vxlan<VNI> master <bridge> up
  } catch (err) {
    // Half a device is worse than none: the bridge tulle made just now goes too.
    await nl.deleteLink(spec.name).catch(() => {});
    if (bridgeAction === 'created') await nl.deleteLink(spec.bridge).catch(() => {});
    const e = err as { errno?: string; message?: string };
    const why =
      e.errno === 'EEXIST' ? 'another VXLAN device already uses this VNI and port on this host; remove it or choose another VNI' : (e.message ?? String(err));
    throw new L2Error('TLE_L2_DEVICE', `cannot create ${spec.name} (VNI ${spec.vni}, port ${spec.port}) on bridge ${spec.bridge}: ${why}`, err);
  }
  return { device, ...(reason ? { reason } : {}), bridge: bridgeAction };
}

/** unicast: the public IPs that get an all-zero FDB entry (one per admitted peer, each once, sorted). Pure. */
export function planFloodList(flood: FloodMode, admitted: readonly PeerLease[]): string[] {
  if (flood !== 'unicast') return [];
  return [...new Set(admitted.map((p) => p.publicIP))].sort((a, b) => parseIPv4(a) - parseIPv4(b));
}

export interface FloodSync {
  added: string[];
  removed: string[];
}

/**
 * Make the device's all-zero FDB entries exactly `wanted` (head-end replication, seed 002's entry per peer):
 *   bridge fdb append 00:00:00:00:00:00 dev vxlan<VNI> dst <peer> self permanent   (missing)
 *   bridge fdb del 00:00:00:00:00:00 dev vxlan<VNI> dst <ip> self                   (a host that left)
 * Only this device's entries are read and written; it is tulle's own.
 */
export async function syncFloodList(nl: NetlinkClient, dev: string, wanted: readonly string[]): Promise<FloodSync> {
  const have = new Set(
    (await nl.listFdb({ dev }))
      .filter((f) => f.mac === ZERO_MAC && f.dst !== undefined && f.dst.includes('.') && parseIPv4(f.dst) >>> 28 !== 0xe)
      .map((f) => f.dst!),
  );
  const want = new Set(wanted);
  const added = wanted.filter((ip) => !have.has(ip));
  const removed = [...have].filter((ip) => !want.has(ip));
  for (const dst of removed) await nl.deleteFdb({ dev, mac: ZERO_MAC, dst });
  for (const dst of added) await nl.appendFdb({ dev, mac: ZERO_MAC, dst });
  return { added, removed };
}

/**
 * multicast: a peer outside the underlay's own networks sits behind a router, and routers do not forward the
 * group's frames (the lab's routed underlay neither). The words for the error, or undefined when all peers share
 * a segment with this host.
 */
export function multicastReachProblem(admitted: readonly PeerLease[], underlayNetworks: readonly Cidr4[], group: string): string | undefined {
  const far = admitted.filter((p) => !underlayNetworks.some((n) => cidrContains(n, parseIPv4(p.publicIP))));
  if (!far.length) return undefined;
  const nets = underlayNetworks.map(formatCidr4).join(', ') || 'none';
  return `Backend.Flood "multicast": the underlay cannot carry group ${group} to ${far.map((p) => p.publicIP).join(', ')} (not on this host's underlay network ${nets}; multicast does not cross routers); use Backend.Flood "unicast"`;
}

/** remote: exactly two hosts. The words for the error when more hold leases, else undefined. */
export function remoteProblem(admitted: readonly PeerLease[], ownPublicIP: string): string | undefined {
  if (admitted.length <= 1) return undefined;
  const hosts = [ownPublicIP, ...admitted.map((p) => p.publicIP)];
  return `Backend.Flood "remote" joins exactly two hosts, but ${hosts.length} hold leases (${hosts.join(', ')}); the device is left as it was; use Backend.Flood "unicast" for more hosts`;
}

/** What tulle made on this host for an L2 network, kept in the state dir so that --cleanup removes only that. */
export interface L2HostRecord {
  device: string;
  bridge: string;
  /** tulle created the bridge (and so removes it); false: it was there and is only joined. */
  bridgeCreated: boolean;
}

export function readL2Record(file: string): L2HostRecord | undefined {
  if (!existsSync(file)) return undefined;
  try {
    const r = JSON.parse(readFileSync(file, 'utf8')) as Partial<L2HostRecord>;
    if (typeof r.device === 'string' && typeof r.bridge === 'string' && typeof r.bridgeCreated === 'boolean') return r as L2HostRecord;
  } catch {
    // A damaged record names nothing tulle may remove.
  }
  return undefined;
}

export function writeL2Record(file: string, record: L2HostRecord): void {
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, `${JSON.stringify(record)}\n`, { mode: 0o600 });
}

/**
 * Undo what the record names: `ip link del vxlan<VNI>` (which takes it off the bridge and drops its FDB
 * entries), then `ip link del <bridge>` only when tulle created the bridge. A joined bridge keeps its addresses,
 * its other ports and its settings. Returns what was removed.
 */
export async function removeL2(nl: NetlinkClient, file: string): Promise<string[]> {
  const record = readL2Record(file);
  if (!record) return [];
  const removed: string[] = [];
  const device = await nl.getLink(record.device);
  if (device?.kind === 'vxlan') {
    await nl.deleteLink(record.device);
    removed.push(record.device);
  }
  if (record.bridgeCreated && (await nl.getLink(record.bridge))?.kind === 'bridge') {
    await nl.deleteLink(record.bridge);
    removed.push(record.bridge);
  }
  rmSync(file, { force: true });
  return removed;
}

/**
 * `tulle status` for an L2 network: what differs on this host's device from what the flood mode and the admitted
 * peers ask for, as the commands that would fix it (empty when in sync). Read-only.
 */
export async function l2StatusProblems(
  nl: NetlinkClient,
  want: { vni: number; flood: FloodMode; group?: string },
  peers: readonly string[],
): Promise<{ device: Link | undefined; floodTo: string[]; pending: string[] }> {
  const name = l2DeviceName(want.vni);
  const device = await nl.getLink(name);
  if (!device) return { device, floodTo: [], pending: [`ip link add ${name} type vxlan id ${want.vni} ... (missing: is the agent running?)`] };
  const pending: string[] = [];
  const v = device.vxlan;
  if (!device.master) pending.push(`ip link set ${name} master <bridge> (it is on no bridge)`);
  if (!device.up) pending.push(`ip link set ${name} up`);
  const floodTo = (await nl.listFdb({ dev: name }))
    .filter((f) => f.mac === ZERO_MAC && f.dst?.includes('.') && parseIPv4(f.dst) >>> 28 !== 0xe)
    .map((f) => f.dst!);
  if (want.flood === 'unicast') {
    const sorted = planFloodList(
      'unicast',
      peers.map((publicIP) => ({ publicIP, subnet: '', vtepMac: '' })),
    );
    for (const ip of sorted.filter((x) => !floodTo.includes(x))) pending.push(`bridge fdb append ${ZERO_MAC} dev ${name} dst ${ip} self permanent`);
    for (const ip of floodTo.filter((x) => !sorted.includes(x))) pending.push(`bridge fdb del ${ZERO_MAC} dev ${name} dst ${ip} self (no admitted lease)`);
  } else if (want.flood === 'multicast' && v?.group !== want.group) {
    pending.push(`ip link add ${name} type vxlan id ${want.vni} group ${want.group ?? '?'} ... (it has group ${v?.group ?? 'none'})`);
  } else if (want.flood === 'remote' && peers.length === 1 && v?.remote !== peers[0]) {
    pending.push(`ip link add ${name} type vxlan id ${want.vni} remote ${peers[0]} ... (it has remote ${v?.remote ?? 'none'})`);
  } else if (want.flood === 'none' && (v?.learning || !v?.proxy)) {
    pending.push(
      `ip link add ${name} type vxlan id ${want.vni} ... nolearning proxy (it has ${v?.learning ? 'learning' : 'nolearning'}${v?.proxy ? ' proxy' : ''})`,
    );
  }
  return { device, floodTo, pending };
}
