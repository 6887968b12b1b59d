/**
 * The agent's side of an L2 network (src/overlay/l2.ts has the kernel state): the peer leases as the watch
 * reported them, admitted with the same rules as an L3 network's (src/overlay/admission.ts), turned into the
 * flood mode's state on `vxlan<VNI>` — the all-zero FDB list (unicast), the one `remote` (remote), nothing per
 * peer (multicast), per remote pod an entry from the store (none, by the agent's EndpointSync) — and kept that
 * way when the kernel changes under it. Syncs run one at a time; requests
 * made meanwhile share the next run.
 */
import { rmSync } from 'node:fs';
import { Coalescer } from '../base/coalesce.js';
import { describeError } from '../base/errors.js';
import { cidrsOverlap } from '../base/ip.js';
import type { Logger } from '../base/log.js';
import type { Link, NetlinkClient, NetlinkEvent } from '../netlink/index.js';
import { admitLeases, type AdmissionResult } from '../overlay/admission.js';
import {
  ZERO_MAC,
  ensureL2Device,
  l2Incompatibility,
  multicastReachProblem,
  planFloodList,
  readL2Record,
  remoteProblem,
  syncFloodList,
  writeL2Record,
  type L2DeviceSpec,
} from '../overlay/l2.js';
import { type AdmissionSettings } from '../overlay/reconciler.js';
import { splitRoutes } from '../overlay/kernel-view.js';
import type { Underlay } from '../overlay/underlay.js';
import { TULLE_ROUTE_PROTOCOL } from '../netlink/index.js';
import type { Lease } from '../subnet/lease.js';
import type { PeerLease } from '../overlay/plan.js';

export interface L2SyncResult {
  peers: number;
  added: string[];
  removed: string[];
  /** Why the flood mode cannot serve these peers (remote with a third host, multicast across a router). */
  problem: string | undefined;
}

export interface L2HostOptions {
  nl: NetlinkClient;
  spec: L2DeviceSpec;
  underlay: Underlay;
  ownSubnet: string;
  admission: AdmissionSettings;
  /** The state dir's record of what tulle made (device, bridge, whether the bridge is tulle's). */
  recordFile: string;
  log: Logger;
  onAdmission?: (a: AdmissionResult) => void;
  onWrites?: (n: number) => void;
  /** Flood "none": the admitted peers changed or a repair ran; the endpoint entries follow (EndpointSync.changed). */
  onEndpoints?: () => void;
}

export class L2Host {
  private readonly leases = new Map<string, Lease>();
  private admission: AdmissionResult = { admitted: [], rejected: [] };
  private readonly runs = new Coalescer<L2SyncResult>();
  private reportedProblem: string | undefined;
  private spec: L2DeviceSpec;
  /** Called with the admitted peers before the kernel is written (the VXLAN guard's members). */
  beforeProgram: ((admitted: readonly PeerLease[]) => Promise<void>) | undefined;

  constructor(private readonly o: L2HostOptions) {
    this.spec = { ...o.spec };
  }

  get device(): string {
    return this.spec.name;
  }

  get lastAdmission(): AdmissionResult {
    return this.admission;
  }

  /** Make the bridge and device (at start, and again when someone removed or changed them). */
  async ensureDevice(expected?: string): Promise<void> {
    const record = readL2Record(this.o.recordFile);
    const owns = { bridge: record?.bridge === this.spec.bridge && record.bridgeCreated, device: record?.device === this.spec.name };
    const bridgeExists = (await this.o.nl.getLink(this.spec.bridge)) !== undefined;
    const deviceExists = (await this.o.nl.getLink(this.spec.name)) !== undefined;
    // Intent first, like the lab's state file: --cleanup must know what is tulle's even if the agent dies midway.
    // A device that exists and is not recorded stays someone else's (ensureL2Device refuses it).
    if (!deviceExists || owns.device) {
      writeL2Record(this.o.recordFile, { device: this.spec.name, bridge: this.spec.bridge, bridgeCreated: owns.bridge || !bridgeExists });
    }
    let r;
    try {
      r = await ensureL2Device(this.o.nl, this.spec, { bridge: owns.bridge, device: owns.device || !deviceExists }, this.o.log, expected);
    } catch (err) {
      // Nothing was made (ensureL2Device undoes its part): a record written just now names nothing of tulle's.
      if (!record && !(await this.o.nl.getLink(this.spec.name))) rmSync(this.o.recordFile, { force: true });
      throw err;
    }
    if (r.device !== 'kept' || r.bridge !== 'kept') {
      this.o.log.info(`L2 device ${r.device}`, {
        device: this.spec.name,
        bridge: this.spec.bridge,
        bridgeAction: r.bridge,
        flood: this.spec.flood,
        ...(r.reason ? { reason: r.reason } : {}),
      });
    }
  }

  updateLeases(events: Iterable<{ type: 'added' | 'changed' | 'removed'; lease: Lease }>): void {
    for (const { type, lease } of events) {
      if (type === 'removed') this.leases.delete(lease.key);
      else this.leases.set(lease.key, lease);
    }
  }

  /** Sync now, or right after the run in progress (requests made meanwhile share that one run). */
  sync(): Promise<L2SyncResult> {
    return this.runs.run(() => this.syncOnce());
  }

  /** Does this kernel event touch what tulle owns here? Then the caller schedules a repair. */
  concerns(e: NetlinkEvent): 'device' | 'flood' | undefined {
    if (e.kind === 'overflow') return 'device';
    if (e.kind === 'link') {
      if (e.link.name === this.spec.bridge && e.action === 'del') return 'device';
      if (e.link.name !== this.spec.name) return undefined;
      return e.action === 'del' || this.deviceProblem(e.link) ? 'device' : undefined;
    }
    if (e.kind === 'fdb' && e.fdb.dev === this.spec.name) {
      if (this.spec.flood === 'unicast' && e.fdb.mac === ZERO_MAC) return 'flood';
      // none: the device's own entries (not what the bridge learns on its port) are the store's pods, or must go.
      if (this.spec.flood === 'none' && e.fdb.master === undefined) return 'flood';
    }
    // none: a pod's neighbour entry deleted or rewritten by hand is put back from the store.
    if (e.kind === 'neighbor' && e.neighbor.dev === this.spec.name && this.spec.flood === 'none') return 'flood';
    return undefined;
  }

  private async syncOnce(): Promise<L2SyncResult> {
    const { nl, admission, ownSubnet } = this.o;
    const { foreign } = splitRoutes(await nl.listRoutes({ table: 254 }), TULLE_ROUTE_PROTOCOL);
    this.admission = admitLeases({ ...admission, ownSubnet, foreignRoutes: foreign.filter((f) => cidrsOverlap(f, admission.network)) }, this.leases.values());
    this.o.onAdmission?.(this.admission);
    const admitted = this.admission.admitted;
    await this.beforeProgram?.(admitted);
    const result: L2SyncResult = { peers: admitted.length, added: [], removed: [], problem: undefined };
    switch (this.spec.flood) {
      case 'unicast': {
        const r = await syncFloodList(nl, this.spec.name, planFloodList('unicast', admitted));
        result.added = r.added;
        result.removed = r.removed;
        break;
      }
      case 'multicast':
        result.problem = multicastReachProblem(admitted, this.o.underlay.networks, this.spec.group!);
        break;
      case 'remote': {
        result.problem = remoteProblem(admitted, this.o.underlay.publicIP);
        if (result.problem) break;
        // The kernel keeps `remote` as the device's default destination: a new peer means a new device.
        const remote = admitted[0]?.publicIP;
        if (remote !== this.spec.remote) {
          this.spec = { ...this.spec, ...(remote ? { remote } : {}) };
          if (!remote) delete this.spec.remote;
          await this.ensureDevice(`the other host is now ${remote ?? 'gone'} (the kernel keeps remote as the device's default destination)`);
          result.added = remote ? [remote] : [];
        }
        break;
      }
      case 'none': {
        // No flooding at all: an all-zero entry (left by hand, or by a unicast run on a device kept since) goes.
        const r = await syncFloodList(nl, this.spec.name, planFloodList('none', admitted));
        result.removed = r.removed;
        // The per-pod entries are EndpointSync's (it reads the admitted leases when it runs).
        this.o.onEndpoints?.();
        break;
      }
    }
    this.o.onWrites?.(result.added.length + result.removed.length);
    if (result.problem !== this.reportedProblem) {
      if (result.problem)
        this.o.log.error('the L2 network cannot serve these peers; nothing more is built', { flood: this.spec.flood, problem: result.problem });
      else if (this.reportedProblem) this.o.log.info('the L2 flood mode serves the peers again', { flood: this.spec.flood });
      this.reportedProblem = result.problem;
    }
    if (result.added.length || result.removed.length) {
      this.o.log.info('L2 flood list', {
        device: this.spec.name,
        flood: this.spec.flood,
        added: result.added,
        removed: result.removed,
        peers: admitted.length,
      });
    }
    return result;
  }

  /** What is wrong with the device as the kernel shows it (down, off its bridge, another MTU or kind), if anything. */
  private deviceProblem(link: Link): string | undefined {
    if (!link.up) return 'down';
    if (link.master !== this.spec.bridge) return `not on bridge ${this.spec.bridge}`;
    if (link.mtu !== this.spec.mtu) return `mtu ${link.mtu} != ${this.spec.mtu}`;
    return l2Incompatibility(link, this.spec, this.o.underlay.index);
  }

  /** Put the device back (deleted, downed, taken off the bridge, changed), then sync. */
  async repair(why: string): Promise<void> {
    // The events may have been tulle's own (a remote device made anew for its new peer): then nothing is wrong.
    const link = await this.o.nl.getLink(this.spec.name).catch(() => undefined);
    const bridge = await this.o.nl.getLink(this.spec.bridge).catch(() => undefined);
    if (link && bridge && !this.deviceProblem(link)) {
      this.o.log.debug('L2 device events seen; the device is as designed', { device: this.spec.name, why });
      await this.sync();
      return;
    }
    this.o.log.warn('repairing the L2 device', { device: this.spec.name, why });
    try {
      await this.ensureDevice();
    } catch (err) {
      this.o.log.error('L2 device repair failed', { error: describeError(err) });
    }
    await this.sync();
  }
}
