/**
 * The kernel side of an L2 network with Flood "none" (DESIGN.md, "L2 networks"): no frame is ever flooded over
 * the underlay. For every accepted remote pod endpoint, the device `vxlan<VNI>` holds
 *
 *   bridge fdb replace <pod MAC> dev vxlan<VNI> dst <pod's host PublicIP> self permanent
 *   ip neigh replace <pod IP> lladdr <pod MAC> dev vxlan<VNI> nud permanent
 *
 * and the device itself has `proxy` (the vxlan driver answers ARP requests from that neighbour table instead of
 * sending them to a remote) and `nolearning` (a MAC's location comes from the store, never from a packet). With no
 * all-zero flood entry, a frame for a MAC without an entry is dropped at the device.
 *
 * `planEndpointEntries` is pure; `EndpointReconciler` reads the device's entries, writes only the difference and
 * touches entries of that one device only: permanent `self` FDB entries with a `dst` (not the bridge's own
 * entries, not the all-zero flood entries, not entries with a VNI, port or via of their own) and permanent IPv4
 * neighbours.
 */
import { TulleError } from '../base/errors.js';
import { silentLogger, type Logger } from '../base/log.js';
import type { Fdb, Link, Neighbor, NetlinkError, NetlinkOp, OpResult, VxlanOptions } from '../netlink/index.js';
import type { EndpointRecord } from '../subnet/endpoints.js';

/**
 * The vxlan attributes Flood "none" needs. The kernel takes `proxy` at creation only (`ip link set ... type vxlan
 * proxy` fails with "vxlan: cannot change PROXY flag"), so whoever creates `vxlan<VNI>` passes these to
 * `createVxlan`; `ensureEndpointDevice` checks them on an existing device.
 */
export const L2_NONE_VXLAN_ATTRS = { proxy: true, learning: false } as const satisfies Partial<VxlanOptions>;

export interface PlannedEndpointFdb {
  dev: string;
  mac: string;
  dst: string;
}

export interface PlannedEndpointNeighbor {
  dev: string;
  ip: string;
  mac: string;
}

export interface EndpointEntries {
  fdb: PlannedEndpointFdb[];
  neighbors: PlannedEndpointNeighbor[];
}

/**
 * The entries `device` must hold for the accepted endpoints (admitEndpoints' `accepted`): one FDB entry and one
 * neighbour per remote pod; this host's own pods (PublicIP = `ownPublicIP`) are on the local bridge and get none.
 */
export function planEndpointEntries(device: string, accepted: Iterable<EndpointRecord>, ownPublicIP: string): EndpointEntries {
  const fdb: PlannedEndpointFdb[] = [];
  const neighbors: PlannedEndpointNeighbor[] = [];
  for (const rec of accepted) {
    if (rec.publicIP === ownPublicIP) continue;
    fdb.push({ dev: device, mac: rec.mac, dst: rec.publicIP });
    neighbors.push({ dev: device, ip: rec.ip, mac: rec.mac });
  }
  return { fdb, neighbors };
}

const ZERO_MAC = '00:00:00:00:00:00';

/** An FDB entry this module may have written: what it writes looks exactly like this. */
function isEndpointFdb(f: Fdb): boolean {
  return (
    f.self === true &&
    f.permanent === true &&
    f.master === undefined &&
    f.dst !== undefined &&
    f.vni === undefined &&
    f.port === undefined &&
    f.via === undefined &&
    f.mac !== ZERO_MAC
  );
}

function isEndpointNeighbor(n: Neighbor): boolean {
  return n.state === 'permanent' && !n.ip.includes(':');
}

export interface EndpointKernelView {
  fdb: readonly Fdb[];
  neighbors: readonly Neighbor[];
}

/**
 * The writes that turn `view` (the device's current entries) into `want`, as NetlinkOps: an entry already right
 * costs nothing, a new endpoint its FDB entry then its neighbour, a gone one its neighbour then its FDB entry.
 */
export function diffEndpointEntries(want: EndpointEntries, view: EndpointKernelView, device: string): NetlinkOp[] {
  const ops: NetlinkOp[] = [];
  const fdbByMac = new Map<string, Fdb[]>();
  for (const f of view.fdb) {
    if (f.dev !== device || !isEndpointFdb(f)) continue;
    const list = fdbByMac.get(f.mac) ?? [];
    list.push(f);
    fdbByMac.set(f.mac, list);
  }
  const neighByIp = new Map<string, Neighbor>();
  for (const n of view.neighbors) if (n.dev === device && !n.ip.includes(':')) neighByIp.set(n.ip, n);

  const wantMacs = new Set(want.fdb.map((f) => f.mac));
  const wantIps = new Set(want.neighbors.map((n) => n.ip));
  // Removals first: a MAC that moved to another IP must lose its old neighbour before anything else reads it.
  for (const [ip, n] of neighByIp) if (!wantIps.has(ip) && isEndpointNeighbor(n)) ops.push({ op: 'deleteNeighbor', args: { dev: device, ip } });
  for (const [mac, entries] of fdbByMac)
    if (!wantMacs.has(mac)) for (const f of entries) ops.push({ op: 'deleteFdb', args: { dev: device, mac, dst: f.dst!, self: true } });

  for (const f of want.fdb) {
    const have = fdbByMac.get(f.mac) ?? [];
    if (have.length === 1 && have[0]!.dst === f.dst) continue;
    // Several remotes for one MAC (someone appended): drop them all, or `replace` would change only the first.
    if (have.length > 1) ops.push({ op: 'deleteFdb', args: { dev: device, mac: f.mac, self: true } });
    ops.push({ op: 'replaceFdb', args: { dev: device, mac: f.mac, dst: f.dst, self: true, permanent: true } });
  }
  for (const n of want.neighbors) {
    const have = neighByIp.get(n.ip);
    if (have && isEndpointNeighbor(have) && have.mac === n.mac) continue;
    ops.push({ op: 'replaceNeighbor', args: { dev: device, ip: n.ip, mac: n.mac, state: 'permanent' } });
  }
  return ops;
}

/** What the reconciler needs of a NetlinkClient (a test can count the writes by wrapping one). */
export interface EndpointKernel {
  getLink(name: string): Promise<Link | undefined>;
  setVxlanLearning(name: string, learning: boolean): Promise<void>;
  listFdb(filter: { dev?: string }): Promise<Fdb[]>;
  listNeighbors(filter: { dev?: string; all?: boolean }): Promise<Neighbor[]>;
  batch(ops: readonly NetlinkOp[]): Promise<OpResult[]>;
}

/** The L2 device is missing, not a vxlan device, or lacks what Flood "none" needs and cannot be given it. */
export class EndpointDeviceError extends TulleError {
  constructor(
    readonly device: string,
    detail: string,
  ) {
    super('TLE_L2_ENDPOINT_DEVICE', `${device}: ${detail}`);
  }
}

/** Some endpoint writes failed; the others were made. Names every failed command. */
export class EndpointWriteError extends TulleError {
  constructor(readonly failures: readonly { command: string; error: NetlinkError }[]) {
    super('TLE_L2_ENDPOINT_WRITE', `${failures.length} endpoint write(s) failed: ${failures.map((f) => f.error.message).join('; ')}`);
  }
}

/**
 * Check the device for Flood "none": it must be a vxlan device with `proxy` on (fixed at creation: a device without
 * it must be recreated with L2_NONE_VXLAN_ATTRS). `learning` is switched off here when it is on
 * (`ip link set dev vxlan<VNI> type vxlan nolearning`). Returns what it changed.
 */
export async function ensureEndpointDevice(nl: Pick<EndpointKernel, 'getLink' | 'setVxlanLearning'>, device: string): Promise<string[]> {
  const link = await nl.getLink(device);
  if (!link) throw new EndpointDeviceError(device, 'there is no such device (the L2 device must exist before its endpoint entries)');
  if (link.kind !== 'vxlan' || !link.vxlan) throw new EndpointDeviceError(device, `is a ${link.kind ?? 'plain'} device, not a vxlan device`);
  if (!link.vxlan.proxy) {
    throw new EndpointDeviceError(
      device,
      `has proxy off, which Flood "none" needs and the kernel sets only when the device is created: recreate it with proxy nolearning (ip link add ${device} type vxlan id ${link.vxlan.vni} ... proxy nolearning)`,
    );
  }
  if (!link.vxlan.learning) return [];
  await nl.setVxlanLearning(device, false);
  return [`ip link set dev ${device} type vxlan nolearning`];
}

export interface EndpointReconcileResult {
  /** The writes made (a write that failed is in `EndpointWriteError.failures` instead). */
  writes: NetlinkOp[];
}

/** Keeps the endpoint entries of one L2 device equal to the plan, writing only differences. */
export class EndpointReconciler {
  private readonly logger: Logger;

  constructor(
    private readonly nl: EndpointKernel,
    readonly device: string,
    logger: Logger = silentLogger,
  ) {
    this.logger = logger.child({ component: 'l2-endpoints', dev: device });
  }

  /** Read the device's entries, write the difference to `accepted`'s remote endpoints. Throws EndpointWriteError if any write failed. */
  async reconcile(accepted: Iterable<EndpointRecord>, ownPublicIP: string): Promise<EndpointReconcileResult> {
    const want = planEndpointEntries(this.device, accepted, ownPublicIP);
    const [fdb, neighbors] = await Promise.all([this.nl.listFdb({ dev: this.device }), this.nl.listNeighbors({ dev: this.device, all: true })]);
    const ops = diffEndpointEntries(want, { fdb, neighbors }, this.device);
    if (!ops.length) return { writes: [] };
    const results = await this.nl.batch(ops);
    const writes: NetlinkOp[] = [];
    const failures: { command: string; error: NetlinkError }[] = [];
    results.forEach((r, i) => {
      const op = ops[i]!;
      if (r.ok) writes.push(op);
      // Already gone is what a delete wanted.
      else if (!(op.op.startsWith('delete') && r.error.errno === 'ENOENT')) failures.push({ command: r.error.command, error: r.error });
    });
    this.logger.info('endpoint entries written', { writes: writes.length, failed: failures.length });
    if (failures.length) throw new EndpointWriteError(failures);
    return { writes };
  }
}

/** An endpoint write as the iproute2 command it equals (for `tulle status`'s "would need" list). */
export function endpointOpCommand(op: NetlinkOp): string {
  const a = op.args as { dev: string; mac?: string; dst?: string; ip?: string };
  switch (op.op) {
    case 'replaceFdb':
      return `bridge fdb replace ${a.mac} dev ${a.dev} dst ${a.dst} self permanent`;
    case 'deleteFdb':
      return `bridge fdb del ${a.mac} dev ${a.dev}${a.dst ? ` dst ${a.dst}` : ''} self`;
    case 'replaceNeighbor':
      return `ip neigh replace ${a.ip} lladdr ${a.mac} dev ${a.dev} nud permanent`;
    case 'deleteNeighbor':
      return `ip neigh del ${a.ip} dev ${a.dev}`;
    default:
      return op.op;
  }
}

/**
 * `tulle status` for Flood "none": how many remote pods the device holds as planned, and the commands that would
 * make it hold exactly `accepted`'s remote endpoints (empty when in sync). Read-only.
 */
export async function endpointStatus(
  nl: Pick<EndpointKernel, 'listFdb' | 'listNeighbors'>,
  device: string,
  accepted: Iterable<EndpointRecord>,
  ownPublicIP: string,
): Promise<{ remote: number; pending: string[] }> {
  const want = planEndpointEntries(device, accepted, ownPublicIP);
  const [fdb, neighbors] = await Promise.all([nl.listFdb({ dev: device }), nl.listNeighbors({ dev: device, all: true })]);
  return { remote: want.fdb.length, pending: diffEndpointEntries(want, { fdb, neighbors }, device).map(endpointOpCommand) };
}
