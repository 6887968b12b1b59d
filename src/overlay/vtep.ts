/**
 * The VTEP, once per host (ARCHITECTURE.md):
 *   ip link add flannel.<VNI> type vxlan id <VNI> local <public IP> dev <underlay> dstport <port> nolearning
 *   ip link set flannel.<VNI> mtu <underlay mtu - 50> [address <VtepMAC>] up
 *   ip addr add <own subnet .0>/32 dev flannel.<VNI>
 * An existing device with the same settings is kept untouched (a restarted agent must not disturb traffic); one
 * whose settings differ is recreated and the reason logged, as flannel does.
 */
import { TulleError } from '../base/errors.js';
import type { Logger } from '../base/log.js';
import type { Link, NetlinkClient } from '../netlink/index.js';

/** Outer Ethernet 14 + outer IPv4 20 + UDP 8 + VXLAN 8 bytes. */
export const VXLAN_OVERHEAD_IPV4 = 50;

export interface VtepSpec {
  name: string;
  vni: number;
  /** Public (underlay) IP the VXLAN packets leave from. */
  local: string;
  /** Underlay interface name. */
  dev: string;
  port: number;
  learning: boolean;
  gbp: boolean;
  mtu: number;
  mac: string;
}

export class VtepError extends TulleError {
  constructor(message: string, cause?: unknown) {
    super('TLE_VTEP', message, { cause });
  }
}

export function vtepName(vni: number): string {
  return `flannel.${vni}`;
}

/** Why an existing link cannot serve as this VTEP, or undefined when it can. MTU, MAC and up-state are adjustable, not reasons. */
export function incompatibility(link: Link, spec: VtepSpec, underlayIndex: number): string | undefined {
  if (link.kind !== 'vxlan') return `${spec.name} exists but is a ${link.kind ?? 'non-vxlan'} device`;
  const v = link.vxlan;
  if (!v) return `${spec.name} reports no vxlan attributes`;
  const diffs: string[] = [];
  if (v.vni !== spec.vni) diffs.push(`vni ${v.vni} != ${spec.vni}`);
  if ((v.local ?? '') !== spec.local) diffs.push(`local ${v.local ?? 'none'} != ${spec.local}`);
  if (v.link !== underlayIndex) diffs.push(`dev index ${v.link ?? 'none'} != ${underlayIndex} (${spec.dev})`);
  if (v.port !== spec.port) diffs.push(`dstport ${v.port} != ${spec.port}`);
  if (Boolean(v.learning) !== spec.learning) diffs.push(`learning ${v.learning} != ${spec.learning}`);
  if (Boolean(v.gbp) !== spec.gbp) diffs.push(`gbp ${v.gbp} != ${spec.gbp}`);
  return diffs.length ? `${spec.name} has ${diffs.join(', ')}` : undefined;
}

export interface EnsureResult {
  link: Link;
  /** What was done: nothing, adjusted (mtu/mac/up), created, or recreated (with the reason). */
  action: 'kept' | 'adjusted' | 'created' | 'recreated';
  reason?: string;
}

/**
 * Another VXLAN device that already takes this VNI and port (the kernel refuses a second one: EEXIST). Asked
 * before the lease is taken, so a host that cannot have its VTEP never holds a subnet.
 */
export async function vniClash(nl: NetlinkClient, spec: Pick<VtepSpec, 'name' | 'vni' | 'port'>): Promise<VtepError | undefined> {
  const other = (await nl.listLinks()).find((l) => l.kind === 'vxlan' && l.name !== spec.name && l.vxlan?.vni === spec.vni && l.vxlan?.port === spec.port);
  if (!other) return undefined;
  return new VtepError(
    `cannot create ${spec.name} (VNI ${spec.vni}, port ${spec.port}): another VXLAN device already uses this VNI and port on this host (${other.name}); remove it or choose another VNI in the network config`,
  );
}

export async function ensureVtep(nl: NetlinkClient, spec: VtepSpec, log: Logger): Promise<EnsureResult> {
  const underlay = await nl.getLink(spec.dev);
  if (!underlay) throw new VtepError(`underlay interface ${spec.dev} does not exist`);
  const existing = await nl.getLink(spec.name);
  let reason: string | undefined;
  if (existing) {
    reason = incompatibility(existing, spec, underlay.index);
    if (!reason) {
      const change: { mtu?: number; up?: boolean; mac?: string } = {};
      if (existing.mtu !== spec.mtu) change.mtu = spec.mtu;
      if (!existing.up) change.up = true;
      // The spec's MAC is the VtepMAC of the lease, which peers have in their entries (at start it is the
      // device's own MAC whenever the device is kept, so this only ever undoes someone else's change).
      if (existing.mac && existing.mac.toLowerCase() !== spec.mac.toLowerCase()) change.mac = spec.mac;
      if (Object.keys(change).length === 0) return { link: existing, action: 'kept' };
      await nl.setLink(spec.name, change);
      return { link: (await nl.getLink(spec.name))!, action: 'adjusted' };
    }
    log.warn('recreating VTEP: existing device is incompatible', { device: spec.name, reason });
    await nl.deleteLink(spec.name);
  }
  try {
    // udpCsum off as flannel's devices read in seed 003 (`noudpcsum`); newer kernels would otherwise default it on.
    await nl.createVxlan({
      name: spec.name,
      vni: spec.vni,
      local: spec.local,
      dev: spec.dev,
      port: spec.port,
      learning: spec.learning,
      gbp: spec.gbp,
      udpCsum: false,
      mtu: spec.mtu,
      mac: spec.mac,
      up: true,
    });
  } catch (err) {
    const e = err as { errno?: string; message?: string };
    if (e.errno === 'EEXIST') {
      throw new VtepError(
        `cannot create ${spec.name} (VNI ${spec.vni}, port ${spec.port}): another VXLAN device already uses this VNI and port on this host; remove it or choose another VNI in the network config`,
        err,
      );
    }
    throw new VtepError(`cannot create ${spec.name}: ${e.message ?? String(err)}`, err);
  }
  const link = (await nl.getLink(spec.name))!;
  return existing ? { link, action: 'recreated', reason: reason! } : { link, action: 'created' };
}

/**
 * Make the VTEP carry exactly `<subnet .0>/32` among its IPv4 addresses:
 *   ip addr add 10.244.1.0/32 dev flannel.1        (when missing)
 *   ip addr del <other IPv4> dev flannel.1         (a previous lease's address)
 * Returns the number of writes (0 when it was already right).
 */
export async function ensureVtepAddress(nl: NetlinkClient, dev: string, cidr: string): Promise<number> {
  const current = (await nl.listAddresses(dev)).filter((a) => a.family === 4);
  let writes = 0;
  for (const a of current) {
    if (`${a.address}/${a.prefix}` !== cidr) {
      await nl.deleteAddress(dev, `${a.address}/${a.prefix}`);
      writes++;
    }
  }
  if (!current.some((a) => `${a.address}/${a.prefix}` === cidr)) {
    await nl.addAddress(dev, cidr);
    writes++;
  }
  return writes;
}
