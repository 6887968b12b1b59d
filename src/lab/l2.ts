/**
 * L2 labs (`tulle lab up --l2 FLOOD`): the network config of an L2 network under its own prefix, the checks that
 * keep a lab from being built where the flood mode cannot work (multicast on the routed underlay, remote with
 * other than two hosts), and the wait until every host's kernel shows the flood mode's state, read with
 * iproute2 (`ip -d -j link show vxlan<VNI>`, `bridge -j fdb show dev vxlan<VNI>`).
 */
import { InvalidValueError } from '../base/errors.js';
import { runJson } from '../base/exec.js';
import { waitFor } from '../base/retry.js';
import { FLOODS, parseNetworkConfig, type FloodMode } from '../config/network.js';
import { l2DeviceName } from '../overlay/l2.js';
import type { Underlay } from './topology.js';

export const L2_PREFIX = '/tulle.io/l2';
/** The lab's default L2 network: seed 001's VNI and port, a /24 in slices of 16 addresses per host. */
export const L2_NETWORK = '10.20.0.0/24';
export const L2_VNI = 120;
export const L2_GROUP = '239.1.1.120';

/** What the lab state records of an L2 network (LabOverlay.l2). */
export interface LabL2 {
  vni: number;
  flood: FloodMode;
  group?: string;
  bridge: string;
}

export function validateFlood(value: string, field = '--l2'): FloodMode {
  if (!(FLOODS as readonly string[]).includes(value)) throw new InvalidValueError(field, value, `is not a flood mode (one of ${FLOODS.join(', ')})`);
  return value as FloodMode;
}

export function defaultL2Config(flood: FloodMode): string {
  const backend: Record<string, unknown> = { Type: 'vxlan', Mode: 'l2', VNI: L2_VNI, Port: 4789, Flood: flood };
  if (flood === 'multicast') backend.Group = L2_GROUP;
  return JSON.stringify({ Network: L2_NETWORK, SubnetLen: 28, Backend: backend });
}

/** Multicast: the switch underlay; unicast and none: the routed one; remote: two hosts (seed 001). */
export function defaultL2Underlay(flood: FloodMode): Underlay {
  return flood === 'multicast' || flood === 'remote' ? 'switch' : 'routed';
}

/**
 * Refuse, before anything is built, a lab the flood mode cannot serve, and a --config that is not this flood
 * mode's L2 network. Returns the config to write.
 */
export function checkL2Lab(flood: FloodMode, nodes: number, underlay: string, configText: string | undefined): string {
  const text = configText ?? defaultL2Config(flood);
  const config = parseNetworkConfig(text);
  if (config.Backend.mode !== 'l2')
    throw new InvalidValueError('Backend.Mode', 'l3', `in --config does not go with --l2 ${flood} (the config must have "Mode":"l2")`);
  if (config.Backend.flood !== flood)
    throw new InvalidValueError('Backend.Flood', config.Backend.flood, `in --config does not go with --l2 ${flood} (give the same flood mode in both)`);
  if (flood === 'multicast' && underlay === 'routed') {
    throw new InvalidValueError(
      '--underlay',
      'routed',
      'cannot carry --l2 multicast (the router does not forward the group; use --underlay switch, or --l2 unicast)',
    );
  }
  if (flood === 'remote' && nodes !== 2)
    throw new InvalidValueError('--nodes', nodes, 'must be 2 with --l2 remote (a point-to-point device joins exactly two hosts)');
  return text;
}

interface IpLink {
  ifname: string;
  master?: string;
  linkinfo?: { info_kind?: string; info_data?: { id?: number; remote?: string; group?: string; port?: number } };
}
interface BridgeFdb {
  mac: string;
  dst?: string;
}

/** What iproute2 shows of a host's L2 device: `ip -d -j link show vxlan<VNI>` and its all-zero FDB entries. */
export async function readL2Device(namespace: string, vni: number): Promise<{ link: IpLink | undefined; floodTo: string[] }> {
  const dev = l2DeviceName(vni);
  const links = await runJson<IpLink[]>(['ip', '-n', namespace, '-d', '-j', 'link', 'show', 'dev', dev]).catch(() => []);
  const fdb = links.length ? await runJson<BridgeFdb[]>(['bridge', '-n', namespace, '-j', 'fdb', 'show', 'dev', dev]) : [];
  return {
    link: links[0],
    floodTo: fdb
      .filter((f) => f.mac === '00:00:00:00:00:00' && f.dst && !f.dst.startsWith('2'))
      .map((f) => f.dst!)
      .sort(),
  };
}

type LabHostRef = { name: string; namespace: string; address: string };

export interface L2HostStatus {
  host: string;
  device: string | null;
  bridge: string | null;
  /** What the device floods to: the all-zero FDB list (unicast), `group G`, `remote R`, or `-` (none). */
  flood: string;
  /** What is missing, or null when the host is in sync with the others. */
  lacking: string | null;
}

/** One host's L2 state as iproute2 shows it, against what the other hosts' addresses ask for. */
export async function l2HostStatus(h: LabHostRef, hosts: readonly LabHostRef[], l2: LabL2): Promise<L2HostStatus> {
  const { link, floodTo } = await readL2Device(h.namespace, l2.vni);
  const others = hosts
    .filter((o) => o.name !== h.name)
    .map((o) => o.address)
    .sort();
  const data = link?.linkinfo?.info_data;
  const flood = data?.group ? `group ${data.group}` : data?.remote ? `remote ${data.remote}` : floodTo.length ? floodTo.join(' ') : '-';
  let lacking: string | null = null;
  if (!link) lacking = `no ${l2DeviceName(l2.vni)}`;
  else if (!link.master) lacking = 'not on a bridge';
  else if (l2.flood === 'unicast' && floodTo.join() !== others.join()) lacking = `floods to [${floodTo.join(' ')}], not [${others.join(' ')}]`;
  else if (l2.flood === 'remote' && data?.remote !== others[0]) lacking = `remote ${data?.remote ?? 'none'}, not ${others[0]}`;
  else if (l2.flood === 'multicast' && data?.group !== l2.group) lacking = `group ${data?.group ?? 'none'}`;
  return { host: h.name, device: link ? link.ifname : null, bridge: link?.master ?? null, flood, lacking };
}

/**
 * Wait until every host's vxlan<VNI> is on its bridge and carries the flood mode's state toward the others:
 * unicast, one all-zero FDB entry per other host; remote, `remote <the other host>`; multicast, `group`.
 */
export async function waitL2Converged(hosts: readonly LabHostRef[], l2: LabL2, timeoutMs: number): Promise<void> {
  let lacking: L2HostStatus[] = [];
  await waitFor(
    async () => {
      lacking = (await Promise.all(hosts.map((h) => l2HostStatus(h, hosts, l2)))).filter((s) => s.lacking);
      return lacking.length === 0;
    },
    timeoutMs,
    `every host's L2 device to reach the others (${lacking.map((s) => `${s.host}: ${s.lacking}`).join('; ')})`,
    50,
  );
}

/** A pod's endpoint as the kernel shows it: its address, its eth0 MAC (`ip -n <pod> -j link show eth0`), its host. */
export interface LabEndpoint {
  ip: string;
  mac: string;
  publicIP: string;
}

/** The endpoints of the lab's pods (those with an address), each with its host's underlay address. */
export async function labEndpoints(
  hosts: readonly LabHostRef[],
  pods: readonly { namespace: string; host: string; address: string | null }[],
): Promise<LabEndpoint[]> {
  return Promise.all(
    pods
      .filter((p) => p.address)
      .map(async (p) => {
        const [link] = await runJson<Array<{ address: string }>>(['ip', '-n', p.namespace, '-j', 'link', 'show', 'eth0']);
        return { ip: p.address!, mac: link!.address, publicIP: hosts.find((h) => h.name === p.host)?.address ?? '?' };
      }),
  );
}

/**
 * Flood "none": a host's endpoint entries as iproute2 shows them, one line each — `<MAC> dst <host>` for the
 * device's own FDB entries (`bridge -j fdb show dev vxlan<VNI>`, not the bridge's learned ones) and `<IP> lladdr
 * <MAC> permanent` for its neighbours (`ip -j neigh show dev vxlan<VNI>`), sorted.
 */
export async function readL2Endpoints(namespace: string, vni: number): Promise<{ fdb: string[]; neigh: string[] }> {
  const dev = l2DeviceName(vni);
  const fdb = await runJson<Array<BridgeFdb & { master?: string; state?: string }>>(['bridge', '-n', namespace, '-j', 'fdb', 'show', 'dev', dev]);
  const neigh = await runJson<Array<{ dst: string; lladdr?: string; state?: string[] }>>(['ip', '-n', namespace, '-j', 'neigh', 'show', 'dev', dev]);
  return {
    fdb: fdb
      .filter((f) => !f.master && f.dst)
      .map((f) => `${f.mac} dst ${f.dst}${f.state === 'permanent' ? '' : ` ${f.state ?? 'dynamic'}`}`)
      .sort(),
    neigh: neigh.map((n) => `${n.dst} lladdr ${n.lladdr ?? '-'} ${(n.state ?? []).join(',').toLowerCase()}`).sort(),
  };
}

/** What a host's device must hold for `endpoints` (the remote ones only), in readL2Endpoints' lines. */
export function expectedL2Endpoints(endpoints: readonly LabEndpoint[], ownAddress: string): { fdb: string[]; neigh: string[] } {
  const remote = endpoints.filter((e) => e.publicIP !== ownAddress);
  return { fdb: remote.map((e) => `${e.mac} dst ${e.publicIP}`).sort(), neigh: remote.map((e) => `${e.ip} lladdr ${e.mac} permanent`).sort() };
}

/** Wait until every host's device holds exactly the entries of every remote pod (Flood "none"). */
export async function waitL2Endpoints(
  hosts: readonly LabHostRef[],
  pods: readonly { namespace: string; host: string; address: string | null }[],
  vni: number,
  timeoutMs: number,
): Promise<void> {
  const endpoints = await labEndpoints(hosts, pods);
  let lacking: string[] = [];
  await waitFor(
    async () => {
      lacking = [];
      for (const h of hosts) {
        const [have, want] = [await readL2Endpoints(h.namespace, vni), expectedL2Endpoints(endpoints, h.address)];
        if (have.fdb.join() !== want.fdb.join() || have.neigh.join() !== want.neigh.join())
          lacking.push(`${h.name} has [${have.fdb.join(', ')}], not [${want.fdb.join(', ')}]`);
      }
      return lacking.length === 0;
    },
    timeoutMs,
    `every host's ${l2DeviceName(vni)} to hold every remote pod`,
    50,
  ).catch((err: unknown) => {
    // The message of waitFor is fixed when it starts; what was still lacking at the deadline is the useful part.
    throw err instanceof Error ? Object.assign(err, { message: `${err.message} (${lacking.join('; ')})` }) : err;
  });
}
