/**
 * `tulle agent`: one per host. Turns leases into kernel state and keeps it true (ARCHITECTURE.md, "Moving parts").
 *
 * Start, in phases: health server -> store -> network config (waits for it) -> underlay + public IP -> VTEP MAC
 * -> lease (by public IP, else the previous subnet.env's subnet, else a free one) -> VTEP (kept when compatible,
 * recreated with the reason logged otherwise) and its address -> subnet.env -> traffic rules -> kernel events,
 * renewal, timers, store probe -> watch leases, admit them and program the peers. The VTEP is made only once the
 * lease is held, so an agent that gets no subnet leaves nothing behind.
 *
 * Every handle a phase opens is registered at once; stop() (SIGTERM/SIGINT, at any moment) aborts the phase in
 * progress and closes everything registered so far, so the process ends promptly whatever it was doing. The
 * kernel state and the lease stay in place, so traffic keeps flowing while the agent restarts, and an unchanged
 * restart writes nothing to the kernel.
 *
 * While running: the lease is renewed; every kernel event is compared with the plan, and anything that differs
 * (an entry deleted or rewritten by someone else, the VTEP's MTU, state, MAC, address or VXLAN attributes) is
 * repaired at once, while the announcements of the agent's own writes are recognised and cost nothing; the
 * store is probed so that an outage or a frozen store is noticed and reported in a few lines (StoreOutage).
 * After bulk work (reconciles that wrote or dumped a thousand entries or more) one memory-returning garbage
 * collection runs (src/base/memory.ts): without it V8 kept ~45 MB of grown young generation and old-space
 * garbage committed at 5000 peers.
 */
import type { Server } from 'node:http';
import { join } from 'node:path';
import { rmSync } from 'node:fs';
import { TulleError, describeError } from '../base/errors.js';
import { BulkGc, forcedGc } from '../base/memory.js';
import { formatIPv4, parseCidr4 } from '../base/ip.js';
import type { Logger } from '../base/log.js';
import { previousSubnet, writeSubnetEnv } from '../config/subnet-env.js';
import type { NetworkConfig } from '../config/network.js';
import { NetlinkClient, TULLE_ROUTE_PROTOCOL, type Link, type NeighborRecord, type NetlinkEvent, type RouteRecord } from '../netlink/index.js';
import type { AdmittedChange, Rejection } from '../overlay/admission.js';
import type { PeerLease } from '../overlay/plan.js';
import { Reconciler, type ReconcileMode } from '../overlay/reconciler.js';
import { TrafficRules, chooseBackend } from '../overlay/rules.js';
import { VxlanGuard } from '../overlay/guard.js';
import { registerGuardMetrics } from './guard-metrics.js';
import { pickUnderlay, type Underlay } from '../overlay/underlay.js';
import { VXLAN_OVERHEAD_IPV4, ensureVtep, ensureVtepAddress, incompatibility, vniClash, vtepName, type VtepSpec } from '../overlay/vtep.js';
import { configKey } from '../store/keys.js';
import { StoreOutage } from '../store/outage.js';
import { StoreUnavailableError, type Registry } from '../store/registry.js';
import { LeaseManager, type Lease, type LeaseEvent, type LeaseWatcher } from '../subnet/index.js';
import { AgentMetrics, startHealthServer, type HealthState } from './health.js';
import type { AgentOptions } from './options.js';
import { chooseVtepMac } from './vtep-mac.js';
import { L2Host } from './l2-host.js';
import { EndpointSync } from './l2-endpoints.js';
import { storePodEndpointHooks } from '../subnet/pod-endpoints.js';
import { L2Error, l2DeviceName, l2Incompatibility, remoteProblem, removeL2, type L2DeviceSpec } from '../overlay/l2.js';

/** In the state dir: what tulle made for an L2 network (device, bridge), so that --cleanup removes only that. */
export const L2_RECORD_FILE = 'l2.json';

/** Kernel events an L2 host watches: its device and bridge, the device's FDB and (Flood "none") its neighbours. */
function subscribeL2(nl: NetlinkClient, onEvent: (e: NetlinkEvent) => void) {
  return nl.subscribe(['link', 'fdb', 'neighbor'], onEvent);
}

/** The pod endpoint hooks the agent's CNI server passes to the plugin's commands (src/cni/l2-endpoint.ts). */
export type AgentPodEndpointHooks = ReturnType<typeof storePodEndpointHooks>;

/** How long kernel events are gathered before one repair reconcile runs. */
const DRIFT_DEBOUNCE_MS = 20;
/** How often the store is asked for the network config to tell whether it answers, and how long it may take. */
const STORE_PROBE_INTERVAL_MS = 5000;
const STORE_PROBE_DEADLINE_MS = 5000;

export class AgentError extends TulleError {
  constructor(message: string, code = 'TLE_AGENT', cause?: unknown) {
    super(code, message, { cause });
  }
}

/** The start-up phases, in order (Agent.start). */
export type StartPhase = 'store' | 'config' | 'underlay' | 'lease' | 'vtep' | 'rules' | 'watch';

/** What the store phase opened. */
interface StoreSide {
  registry: Registry;
  manager: LeaseManager;
  outage: StoreOutage;
}

/** The host as the underlay phase found it: the netlink client, the underlay and the VTEP to make. */
interface HostSide {
  nl: NetlinkClient;
  underlay: Underlay;
  spec: VtepSpec;
}

/** The traffic rules as the rules phase set them up. */
interface RulesSide {
  rules: TrafficRules;
  spec: { network: string; subnet: string; ipMasq: boolean };
  stateFile: string;
  guard: VxlanGuard | undefined;
}

export class Agent {
  readonly metrics = new AgentMetrics();
  private readonly abort = new AbortController();
  private health: HealthState = { ready: false, reason: 'starting' };
  /** How to release what the phases opened, newest first on stop. */
  private readonly closers: Array<() => unknown> = [];
  private closing: Promise<void> | undefined;
  private nl: NetlinkClient | undefined;
  private reconciler: Reconciler | undefined;
  private watcher: LeaseWatcher | undefined;
  private driftTimer: NodeJS.Timeout | undefined;
  private vtepRepair: Promise<void> | undefined;
  private spec: VtepSpec | undefined;
  private underlayIndex = 0;
  private lease: Lease | undefined;
  /** Rejections already logged, by key, with the words they were logged with (each is logged once). */
  private reported = new Map<string, string>();
  /** Set when the agent must stop for a reason it cannot retry past (its lease was lost). */
  private fatal: Error | undefined;
  private endpointHooks: AgentPodEndpointHooks | undefined;
  /** L2 Flood "none": the remote pods' entries on the device, from the store's endpoint records. */
  private endpointSync: EndpointSync | undefined;

  constructor(
    private readonly options: AgentOptions,
    private readonly log: Logger,
    /** Opens the store named by the shared store options (--store, --prefix, --etcd-*). */
    private readonly openStore: () => Promise<Registry>,
  ) {}

  get signal(): AbortSignal {
    return this.abort.signal;
  }

  /**
   * L2 Flood "none": how a CNI ADD/DEL on this host publishes and withdraws its pod's endpoint record (the CNI
   * server passes them to the plugin's commands). Set once the lease is held, before subnet.env tells the plugin
   * the network is up; undefined for every other network.
   */
  get podEndpointHooks(): AgentPodEndpointHooks | undefined {
    return this.endpointHooks;
  }

  /** Run until stop() is called; rejects only for a failure the agent cannot get past by retrying. */
  async run(): Promise<void> {
    try {
      await this.start();
    } catch (err) {
      // Whatever was interrupted by stop() is not a failure; a lost lease is.
      if (!this.signal.aborted || this.fatal) throw this.fatal ?? (err instanceof Error ? err : new AgentError(String(err)));
    }
    if (this.fatal) throw this.fatal;
  }

  /** Stop at once: abort the phase in progress and close every handle; the kernel state and the lease stay. */
  stop(): void {
    if (this.abort.signal.aborted) return;
    this.abort.abort(new AgentError('agent stopping', 'TLE_AGENT_STOPPING'));
    clearTimeout(this.driftTimer);
    void this.close();
  }

  /** Release everything the process holds; resolves once all of it is closed. Safe to call more than once. */
  close(): Promise<void> {
    if (!this.abort.signal.aborted) this.abort.abort(new AgentError('agent stopping', 'TLE_AGENT_STOPPING'));
    this.closing ??= (async () => {
      for (const close of this.closers.splice(0).reverse()) {
        try {
          await close();
        } catch (err) {
          this.log.debug('closing a handle failed', { error: describeError(err) });
        }
      }
    })();
    return this.closing;
  }

  /**
   * Register how to release something a phase just opened. When stop() came first (while the phase was busy),
   * it is released at once and the phase ends here.
   */
  private own<T>(thing: T, release: (t: T) => unknown): T {
    if (this.signal.aborted) {
      // close() may have run already: release this one here, or nothing would.
      void Promise.resolve()
        .then(() => release(thing))
        .catch(() => {});
      this.signal.throwIfAborted();
    }
    this.closers.push(() => release(thing));
    return thing;
  }

  /** After a step that cannot be interrupted: end the start-up here if stop() came meanwhile. */
  private checkpoint(): void {
    this.signal.throwIfAborted();
  }

  /**
   * Start-up as named phases, in this order: store (health server, store, lease manager), config (waits for the
   * network config), underlay (netlink, underlay, VTEP spec), lease, vtep (device, address, subnet.env), rules
   * (traffic rules, VXLAN guard), watch (reconciler, kernel events, renewal, timers, the lease watch). Each phase
   * registers what it opens with own() as it opens it — that is its undo, run newest first by stop() or after a
   * failure — and ends at a checkpoint, so stop() during any phase ends the start-up there.
   */
  private async start(): Promise<void> {
    const store = await this.phase('store', () => this.openStorePhase());
    const config = await this.phase('config', () => this.configPhase(store));
    if (config.Backend.mode === 'l2') return this.startL2(store, config);
    const host = await this.phase('underlay', () => this.underlayPhase(config));
    const lease = await this.phase('lease', () => this.leasePhase(store, config, host));
    await this.phase('vtep', () => this.vtepPhase(store, config, host, lease));
    const rules = await this.phase('rules', () => this.rulesPhase(config, lease));
    await this.phase('watch', () => this.watchPhase(store, config, host, lease, rules));
  }

  /** Run one start-up phase and end the start-up after it if stop() came meanwhile. */
  private async phase<T>(name: StartPhase, run: () => Promise<T>): Promise<T> {
    this.log.debug('start-up phase', { phase: name });
    const result = await run();
    this.checkpoint();
    return result;
  }

  private async openStorePhase(): Promise<StoreSide> {
    const { options, log, metrics } = this;
    this.own(await startHealthServer(options.healthAddr, metrics, () => this.health, options.healthRoutes), closeServer);
    log.info('agent starting', { store: options.store, prefix: options.prefix, health: options.healthAddr });
    const registry = this.own(await this.openStore(), (r) => r.close());
    metrics.storeUp.set(1);
    const outage = new StoreOutage(log.child({ component: 'store' }), registry.url, {
      onChange: (up) => {
        metrics.storeUp.set(up ? 1 : 0);
        // Back after an outage: pick up what changed now rather than when the client's reconnect timer fires.
        if (up) this.watcher?.restart();
      },
    });
    return { registry, outage, manager: new LeaseManager(registry, { prefix: options.prefix, logger: log, outage }) };
  }

  private async configPhase({ manager }: StoreSide): Promise<NetworkConfig> {
    this.setHealth(false, 'waiting for the network config');
    const config = await manager.waitForNetworkConfig({ signal: this.signal });
    this.log.info('network config', {
      network: config.Network,
      subnetLen: config.SubnetLen,
      vni: config.Backend.VNI,
      port: config.Backend.Port,
      directRouting: config.Backend.DirectRouting,
    });
    return config;
  }

  private async underlayPhase(config: NetworkConfig): Promise<HostSide> {
    const nl = (this.nl = this.own(await NetlinkClient.open(), (c) => c.close()));
    const underlay = await pickUnderlay(nl, { iface: this.options.iface, publicIP: this.options.publicIP });
    this.checkpoint();
    this.log.info('underlay', { iface: underlay.name, publicIP: underlay.publicIP, mtu: underlay.mtu });
    this.underlayIndex = underlay.index;
    const spec = (this.spec = await this.vtepSpec(config, underlay));
    const clash = await vniClash(nl, spec);
    if (clash) throw clash;
    return { nl, underlay, spec };
  }

  private async leasePhase({ manager }: StoreSide, config: NetworkConfig, { underlay, spec }: { underlay: Underlay; spec: { mac: string } }): Promise<Lease> {
    this.setHealth(false, 'acquiring a lease');
    const lease = await manager.acquire({
      publicIP: underlay.publicIP,
      backendData: { VNI: config.Backend.VNI, VtepMAC: spec.mac },
      previousSubnet: previousSubnet(this.options.subnetFile),
      signal: this.signal,
      onStoreError: () => this.metrics.storeErrors.inc(),
    });
    this.lease = lease;
    this.setLeaseExpiry(lease);
    this.log.info('lease acquired', { subnet: lease.subnet, expiration: lease.expiration?.toISOString() ?? 'never (reservation)' });
    return lease;
  }

  /** The VTEP is made only once the lease is held, so an agent that gets no subnet leaves nothing behind. */
  private async vtepPhase({ manager }: StoreSide, config: NetworkConfig, { nl, spec }: HostSide, lease: Lease): Promise<void> {
    const { log, options, signal } = this;
    const subnet = parseCidr4(lease.subnet, 'subnet');
    try {
      const vtep = await ensureVtep(nl, spec, log);
      log.info(`VTEP ${vtep.action}`, { device: spec.name, mac: spec.mac, mtu: spec.mtu, ...(vtep.reason ? { reason: vtep.reason } : {}) });
      await ensureVtepAddress(nl, spec.name, `${formatIPv4(subnet.network)}/32`);
    } catch (err) {
      // This phase's undo: a subnet taken in this very run (created, never rewritten) goes back, so no host
      // without a VTEP holds one.
      if (lease.created === lease.revision && !signal.aborted) {
        const released = await manager.revoke(lease).catch(() => false);
        log.warn('the VTEP could not be made; released the subnet just taken', { subnet: lease.subnet, released });
      }
      throw err;
    }
    writeSubnetEnv(options.subnetFile, {
      network: config.Network,
      subnet: lease.subnet,
      gateway: formatIPv4(subnet.network + 1),
      mtu: spec.mtu,
      ipMasq: options.ipMasq,
    });
  }

  private async rulesPhase(config: NetworkConfig, lease: Lease): Promise<RulesSide> {
    const { log, options, metrics } = this;
    const backend = chooseBackend();
    // The guard's member changes are nf_tables commits too; the rules' check knows them as not a change of its table.
    const guard = options.vxlanGuard === false ? undefined : new VxlanGuard(backend);
    const rules = this.own(new TrafficRules(backend, undefined, { knownCommits: () => guard?.memberCommits ?? 0 }), (r) => r.close());
    const spec = { network: config.Network, subnet: lease.subnet, ipMasq: options.ipMasq };
    const stateFile = join(options.stateDir, 'rules.json');
    log.info(`traffic rules ${await rules.ensure(spec, stateFile)}`, { backend: rules.backend, ipMasq: options.ipMasq });
    // The VXLAN guard is kept as the kernel has it (members too) until the leases are read.
    if (guard) {
      const guardSpec = { vni: config.Backend.VNI, port: config.Backend.Port, allowedSources: config.Backend.AllowedSources ?? [] };
      log.info(`VXLAN guard ${await guard.ensure(guardSpec)}`, { backend: guard.backend, allowedSources: guardSpec.allowedSources });
      registerGuardMetrics(metrics.registry, guard);
      this.own(guard, (g) => g.close());
    } else {
      // A guard left by an earlier run with the guard on would keep dropping VXLAN from every peer not in its stale
      // member set: turning the guard off removes tulle's own table (and nothing else).
      await new VxlanGuard(rules.backend).remove();
    }
    return { rules, spec, stateFile, guard };
  }

  /** Program the peers and keep them right until stop(): returns only when the lease watch ends. */
  private async watchPhase(store: StoreSide, config: NetworkConfig, { nl, underlay, spec }: HostSide, lease: Lease, rulesSide: RulesSide): Promise<void> {
    const { log, metrics } = this;
    const { manager } = store;
    const { guard } = rulesSide;
    const bulkGc = this.own(
      new BulkGc({
        collect: async () => {
          const started = performance.now();
          await forcedGc();
          metrics.memoryCollections.inc();
          log.debug('memory collected after bulk work', { ms: Math.round(performance.now() - started) });
        },
      }),
      (g) => g.close(),
    );
    let firstRun = true;
    const reconciler = (this.reconciler = new Reconciler(
      nl,
      {
        vtep: spec.name,
        underlay: underlay.name,
        underlayNetworks: underlay.networks,
        directRouting: config.Backend.DirectRouting,
        ownSubnet: lease.subnet,
        routeProtocol: TULLE_ROUTE_PROTOCOL,
        admission: {
          network: parseCidr4(config.Network),
          subnetLen: config.SubnetLen,
          vni: config.Backend.VNI,
          ownVtepMac: spec.mac,
          localAddresses: new Set((await nl.listAddresses()).filter((a) => a.family === 4).map((a) => a.address)),
        },
      },
      log,
      {
        onWrites: (counts) => {
          for (const [what, n] of counts) {
            const [kind, op] = what.split(' ');
            metrics.kernelWrites.inc({ kind, op }, n);
          }
        },
        onFailure: () => metrics.kernelErrors.inc(),
        onResult: (r, reason) => {
          // The first run also read every peer's three entries and planned every peer. A later no-op resync reads the
          // kernel as numbers and reuses the plans: it leaves little garbage, and a collection after it would only
          // throw away the code V8 has optimised for the next one (measured: 55 ms resyncs at 5000 peers, not 20).
          bulkGc.noteRun(r.writes + r.failed + (firstRun ? 3 * r.programmed : 0));
          firstRun = false;
          metrics.reconciles.inc();
          metrics.reconcileSeconds.observe(r.durationMs / 1000);
          metrics.peersProgrammed.set(r.programmed);
          if (reason === 'drift' || reason === 'periodic') metrics.repairs.inc(r.writes);
        },
        onAdmission: (a) => this.reportRejections(a.rejected),
        ...(guard
          ? {
              beforeProgram: (admitted, change) => this.updateGuard(guard, admitted, change),
            }
          : {}),
      },
    ));
    this.own(reconciler, (r) => r.close());

    // Kernel events first, so that nothing changed between the first reconcile and the subscription is missed.
    // Route, neighbour and FDB announcements come as numbers and are checked against the plans without being
    // decoded. The kernel drops those of the reconciler's own route and neighbour writes (the same socket, `nl`,
    // writes them all) before they reach the agent: thousands when many peers are programmed at once, and each
    // would wake the agent only to find what it planned. Someone else's change still comes and is checked.
    const drift = (expected: boolean) => {
      if (!expected && !this.signal.aborted) this.scheduleDrift();
    };
    const records = {
      route: (deleted: boolean, r: RouteRecord) => drift(reconciler.routeExpected(deleted, r)),
      neighbor: (deleted: boolean, n: NeighborRecord) => drift(reconciler.neighborExpected(deleted, n)),
    };
    this.own(await nl.subscribe(['link', 'address', 'route', 'neighbor'], (e) => this.onKernelEvent(e), { records, ignoreAnnouncementsOf: nl.portId() }), (s) =>
      s.close(),
    );

    this.keepLeaseAndChecks(store, lease, rulesSide, () => void this.reconcile('periodic'));

    const watcher = (this.watcher = this.own(manager.watch({ excludeSubnet: lease.subnet, onStoreError: () => metrics.storeErrors.inc() }), (w) => w.close()));
    // Only what changed goes on: the reconciler writes the entries of those peers alone (no dump, no full diff).
    while (await takeNextBatch(watcher, lease.key, (events) => reconciler.updateLeases(events))) {
      const r = await this.reconcile('leases', 'incremental');
      if (r && !this.health.ready) {
        const peers = reconciler.lastAdmission.admitted.length;
        this.setHealth(true, 'programmed', { subnet: lease.subnet, peers });
        log.info('ready', { subnet: lease.subnet, peers, rejected: reconciler.lastAdmission.rejected.length, programmed: r.programmed, writes: r.writes });
      }
    }
  }

  /**
   * An L2 network (src/overlay/l2.ts): underlay -> lease -> bridge and device -> subnet.env -> traffic rules and
   * guard -> watch, with the same registration of every handle as the L3 start-up. Flood "remote" refuses to
   * start a third host before it takes a lease, so such a host builds nothing.
   */
  private async startL2(store: StoreSide, config: NetworkConfig): Promise<void> {
    const { log, options, signal } = this;
    const { nl, underlay, spec } = await this.phase('underlay', async () => {
      const nl = (this.nl = this.own(await NetlinkClient.open(), (c) => c.close()));
      const underlay = await pickUnderlay(nl, { iface: options.iface, publicIP: options.publicIP });
      this.checkpoint();
      log.info('underlay', { iface: underlay.name, publicIP: underlay.publicIP, mtu: underlay.mtu });
      const name = l2DeviceName(config.Backend.VNI);
      const base: L2DeviceSpec = {
        name,
        vni: config.Backend.VNI,
        local: underlay.publicIP,
        dev: underlay.name,
        port: config.Backend.Port,
        mtu: config.Backend.MTU || underlay.mtu - VXLAN_OVERHEAD_IPV4,
        mac: '',
        flood: config.Backend.flood,
        ...(config.Backend.group ? { group: config.Backend.group } : {}),
        bridge: options.bridge ?? config.Backend.bridge,
      };
      if (base.flood === 'remote') {
        const others = [...new Set((await store.manager.listLeases()).leases.map((l) => l.publicIP).filter((ip) => ip !== underlay.publicIP))];
        if (others.length > 1) {
          throw new L2Error(
            'TLE_L2_REMOTE_HOSTS',
            `${remoteProblem(
              others.map((publicIP) => ({ publicIP, subnet: '', vtepMac: '' })),
              underlay.publicIP,
            )} (this host took no lease and built nothing)`,
          );
        }
        if (others[0]) base.remote = others[0];
      }
      const existing = await nl.getLink(name);
      const keepable = existing && !l2Incompatibility(existing, base, underlay.index) ? existing.mac : undefined;
      const spec = { ...base, mac: chooseVtepMac(keepable, options.stateDir, name) };
      const clash = await vniClash(nl, spec);
      if (clash) throw clash;
      return { nl, underlay, spec };
    });
    const lease = await this.phase('lease', () => this.leasePhase(store, config, { underlay, spec }));
    const l2 = new L2Host({
      nl,
      spec,
      underlay,
      ownSubnet: lease.subnet,
      recordFile: join(options.stateDir, L2_RECORD_FILE),
      log,
      admission: {
        network: parseCidr4(config.Network),
        subnetLen: config.SubnetLen,
        vni: config.Backend.VNI,
        ownVtepMac: spec.mac,
        localAddresses: new Set((await nl.listAddresses()).filter((a) => a.family === 4).map((a) => a.address)),
      },
      onAdmission: (a) => this.reportRejections(a.rejected),
      onWrites: (n) => this.metrics.kernelWrites.inc({ kind: 'fdb', op: 'l2' }, n),
      onEndpoints: () => this.endpointSync?.changed(),
    });
    if (spec.flood === 'none') this.endpointHooks = storePodEndpointHooks(store.registry, store.manager.prefix, lease.publicIP);
    await this.phase('vtep', async () => {
      try {
        await l2.ensureDevice();
      } catch (err) {
        if (lease.created === lease.revision && !signal.aborted) {
          const released = await store.manager.revoke(lease).catch(() => false);
          log.warn('the L2 device could not be made; released the subnet just taken', { subnet: lease.subnet, released });
        }
        throw err;
      }
      const subnet = parseCidr4(lease.subnet, 'subnet');
      writeSubnetEnv(options.subnetFile, {
        network: config.Network,
        subnet: lease.subnet,
        gateway: formatIPv4(subnet.network + 1),
        mtu: spec.mtu,
        ipMasq: options.ipMasq,
        l2Bridge: spec.bridge,
        l2Flood: spec.flood,
      });
    });
    const rulesSide = await this.phase('rules', () => this.rulesPhase(config, lease));
    await this.phase('watch', () => this.watchL2(store, l2, lease, rulesSide));
  }

  private async watchL2(store: StoreSide, l2: L2Host, lease: Lease, rulesSide: RulesSide): Promise<void> {
    const { options, log, signal, metrics } = this;
    const { registry, manager } = store;
    const { guard } = rulesSide;
    if (guard)
      l2.beforeProgram = async (admitted) => {
        const change = await this.updateGuard(guard, admitted, undefined);
        if (change) this.log.info('VXLAN guard members', change.guard);
      };
    // Flood "none": records are believed against this host's lease and the admitted peers' (read at every run), so
    // the endpoint sync starts once the first lease snapshot is admitted, not before (it would refuse every
    // remote pod once, and say so).
    const own = { subnet: lease.subnet, publicIP: lease.publicIP };
    const startEndpoints = async (): Promise<void> => {
      if (!this.endpointHooks || this.endpointSync) return;
      this.endpointSync = this.own(
        await EndpointSync.start({
          registry,
          prefix: manager.prefix,
          nl: this.nl!,
          device: l2.device,
          ownPublicIP: lease.publicIP,
          leases: () => [own, ...l2.lastAdmission.admitted],
          signal,
          ...(options.cniIpamDir ? { ipamDir: options.cniIpamDir } : {}),
          logger: log,
        }),
        (sync) => sync.close(),
      );
    };
    let timer: NodeJS.Timeout | undefined;
    let repairWhy: string | undefined;
    const sync = async (reason: string) => {
      if (signal.aborted) return undefined;
      try {
        const r = await l2.sync();
        metrics.reconciles.inc();
        metrics.peersProgrammed.set(r.peers);
        if (!this.health.ready || this.health.reason !== (r.problem ?? 'programmed')) {
          this.setHealth(!r.problem, r.problem ?? 'programmed', { subnet: lease.subnet, peers: r.peers });
          if (!r.problem) log.info('ready', { subnet: lease.subnet, peers: r.peers, rejected: l2.lastAdmission.rejected.length, device: l2.device });
        }
        return r;
      } catch (err) {
        metrics.kernelErrors.inc();
        if (!signal.aborted) log.error('L2 sync failed', { reason, error: describeError(err) });
        return undefined;
      }
    };
    this.own(
      await subscribeL2(this.nl!, (e) => {
        const what = l2.concerns(e);
        if (!what || signal.aborted) return;
        if (what === 'device') repairWhy ??= e.kind === 'link' ? `${e.link.name} ${e.action === 'del' ? 'deleted' : 'changed'}` : 'kernel events lost';
        clearTimeout(timer);
        timer = setTimeout(() => {
          const why = repairWhy;
          repairWhy = undefined;
          if (why) {
            metrics.repairs.inc();
            void l2.repair(why).catch(() => {});
          } else void sync('drift');
        }, DRIFT_DEBOUNCE_MS);
      }),
      (sub) => {
        clearTimeout(timer);
        sub.close();
      },
    );
    this.keepLeaseAndChecks(store, lease, rulesSide, () => void sync('periodic'));
    const watcher = (this.watcher = this.own(manager.watch({ excludeSubnet: lease.subnet, onStoreError: () => metrics.storeErrors.inc() }), (w) => w.close()));
    while (await takeNextBatch(watcher, lease.key, (events) => l2.updateLeases(events))) {
      await sync('leases');
      await startEndpoints();
    }
  }

  /**
   * Ask the store for the network config every few seconds with a deadline: a store that is down, or frozen
   * (a stopped etcd accepts connections and never answers), is noticed within two periods.
   */
  private startStoreProbe(registry: Registry, key: string, outage: StoreOutage): NodeJS.Timeout {
    let busy = false;
    return setInterval(() => {
      if (busy || this.signal.aborted) return;
      busy = true;
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new StoreUnavailableError(registry.url, `no answer within ${STORE_PROBE_DEADLINE_MS} ms`)), STORE_PROBE_DEADLINE_MS);
      });
      Promise.race([registry.get(key), deadline])
        .then(
          () => outage.succeeded(),
          (err: unknown) => {
            if (this.signal.aborted) return;
            this.metrics.storeErrors.inc();
            outage.failed('probe', err instanceof Error ? err : new Error(String(err)));
          },
        )
        .finally(() => {
          clearTimeout(timer);
          busy = false;
        });
    }, STORE_PROBE_INTERVAL_MS);
  }

  /** Log each rejected lease once (again only when its reason changes) and keep the per-reason gauge current. */
  private reportRejections(rejected: readonly Rejection[]): void {
    const malformed = [...(this.watcher?.malformed ?? new Map<string, string>())].map(([key, detail]): Rejection => ({ key, reason: 'malformed', detail }));
    const all = [...rejected, ...malformed];
    const now = new Map<string, string>();
    const counts = new Map<string, number>();
    for (const r of all) {
      const words = `${r.reason}: ${r.detail}`;
      now.set(r.key, words);
      counts.set(r.reason, (counts.get(r.reason) ?? 0) + 1);
      // The watcher already logged a malformed value once; admission rejections are logged here.
      if (r.reason !== 'malformed' && this.reported.get(r.key) !== words)
        this.log.warn('rejecting a peer lease; it is not programmed', { key: r.key, reason: r.reason, detail: r.detail });
    }
    for (const key of this.reported.keys()) if (!now.has(key)) this.log.info('a rejected lease is gone or acceptable now', { key });
    this.reported = now;
    this.metrics.leasesRejected.reset();
    for (const [reason, n] of counts) this.metrics.leasesRejected.set({ reason }, n);
  }

  private setHealth(ready: boolean, reason: string, details?: Record<string, unknown>): void {
    this.health = { ready, reason, ...(details ? { details } : {}) };
  }

  private setLeaseExpiry(lease: Lease): void {
    if (lease.expiration) this.metrics.leaseExpiry.set(lease.expiration.getTime() / 1000);
  }

  private async vtepSpec(config: NetworkConfig, underlay: Underlay): Promise<VtepSpec> {
    const name = vtepName(config.Backend.VNI);
    const base = {
      name,
      vni: config.Backend.VNI,
      local: underlay.publicIP,
      dev: underlay.name,
      port: config.Backend.Port,
      learning: config.Backend.Learning,
      gbp: config.Backend.GBP,
      mtu: config.Backend.MTU || underlay.mtu - VXLAN_OVERHEAD_IPV4,
    };
    // Keep the MAC of a device that will be kept; a device about to be recreated gets the saved/new MAC.
    const existing = await this.nl!.getLink(name);
    const keepable = existing && !incompatibility(existing, { ...base, mac: '' }, underlay.index) ? existing.mac : undefined;
    return { ...base, mac: chooseVtepMac(keepable, this.options.stateDir, name) };
  }

  /**
   * What runs beside the lease watch, in L3 and L2 alike: the lease renewal (a lease lost stops the agent), the
   * periodic resync, the traffic-rule and guard checks, and the store probe. All end with the agent.
   */
  private keepLeaseAndChecks(store: StoreSide, lease: Lease, rulesSide: RulesSide, resync: () => void): void {
    const { options, log, signal, metrics } = this;
    const { registry, manager, outage } = store;
    const { rules, guard } = rulesSide;
    const renewing = manager
      .keepRenewed(lease, {
        signal,
        onRenewed: (l) => {
          this.lease = l;
          this.setLeaseExpiry(l);
        },
        onError: () => metrics.storeErrors.inc(),
      })
      .catch((err: unknown) => {
        // Our subnet went to someone else: continuing would route another host's pods here. flannel exits too.
        log.error('lease lost; stopping', { error: describeError(err) });
        this.fatal = err instanceof Error ? err : new AgentError(String(err));
        this.stop();
      });
    // Closing waits for the renewal loop to end (it does once the stop signal aborts its sleep).
    void this.own(renewing, (p) => p);
    this.own(setInterval(resync, options.reconcileInterval * 1000), clearInterval);
    this.own(
      setInterval(() => void this.checkRules(rules, rulesSide.spec, rulesSide.stateFile), options.rulesInterval * 1000),
      clearInterval,
    );
    if (guard)
      this.own(
        setInterval(() => void this.repairGuard(guard), options.rulesInterval * 1000),
        clearInterval,
      );
    this.own(this.startStoreProbe(registry, configKey(manager.prefix), outage), clearInterval);
  }

  /** Lease changes run incrementally; start, the periodic resync and drift (overflow included) run in full. */
  private async reconcile(reason: string, mode: ReconcileMode = 'full') {
    if (!this.reconciler || this.signal.aborted) return undefined;
    try {
      if (this.vtepRepair) await this.vtepRepair;
      return await this.reconciler.reconcile(reason, mode);
    } catch (err) {
      this.metrics.kernelErrors.inc();
      if (!this.signal.aborted) this.log.error('reconcile failed', { reason, error: describeError(err) });
      return undefined;
    }
  }

  private scheduleDrift(): void {
    if (this.driftTimer || this.signal.aborted) return;
    this.driftTimer = setTimeout(() => {
      this.driftTimer = undefined;
      void this.reconcile('drift');
    }, DRIFT_DEBOUNCE_MS);
  }

  /** What is wrong with the VTEP as this event shows it, or undefined when it is as the agent made it. */
  private vtepDrift(link: Link): string | undefined {
    const spec = this.spec!;
    if (!link.up) return 'VTEP down';
    if (link.mtu !== spec.mtu) return `VTEP mtu ${link.mtu} != ${spec.mtu}`;
    if (link.mac && link.mac.toLowerCase() !== spec.mac.toLowerCase()) return `VTEP address ${link.mac} != ${spec.mac}`;
    return incompatibility(link, spec, this.underlayIndex);
  }

  /** React to kernel changes that touch what tulle owns; announcements of our own writes match the plan and are let go. */
  private onKernelEvent(e: NetlinkEvent): void {
    const vtep = this.spec?.name;
    if (!vtep || this.signal.aborted) return;
    switch (e.kind) {
      case 'overflow':
        return this.scheduleDrift();
      case 'link': {
        if (e.link.name !== vtep) return;
        const why = e.action === 'del' ? 'VTEP deleted' : this.vtepDrift(e.link);
        if (why) this.repairVtep(why);
        return;
      }
      case 'address': {
        if (e.address.dev !== vtep || e.address.family !== 4 || !this.lease) return;
        const mine = `${formatIPv4(parseCidr4(this.lease.subnet).network)}/32`;
        const cidr = `${e.address.address}/${e.address.prefix}`;
        if ((e.action === 'del') === (cidr === mine)) this.repairVtep(e.action === 'del' ? 'VTEP address removed' : `VTEP got another address ${cidr}`);
        return;
      }
      default:
        return; // routes, neighbours and FDB entries come as records (see the subscription)
    }
  }

  /** Someone deleted, downed or changed the VTEP (or its address): put it back, then reprogram every peer. */
  private repairVtep(why: string): void {
    if (this.vtepRepair || this.signal.aborted || !this.spec || !this.lease || !this.nl) return;
    this.log.warn('repairing VTEP', { device: this.spec.name, why });
    const subnet = parseCidr4(this.lease.subnet, 'subnet');
    this.vtepRepair = (async () => {
      try {
        await ensureVtep(this.nl!, this.spec!, this.log);
        await ensureVtepAddress(this.nl!, this.spec!.name, `${formatIPv4(subnet.network)}/32`);
        this.metrics.repairs.inc();
      } catch (err) {
        if (!this.signal.aborted) this.log.error('VTEP repair failed', { error: describeError(err) });
      } finally {
        this.vtepRepair = undefined;
      }
      await this.reconcile('drift');
    })();
  }

  /**
   * Let the admitted peers through the VXLAN guard before they are programmed: what changed since the last call
   * (a join or a leave touches one address), or all of them when there is no earlier call to compare with. Returns
   * the change of members for the reconcile's log line (one line per lease event, not two).
   */
  private async updateGuard(
    guard: VxlanGuard,
    admitted: readonly PeerLease[],
    change: AdmittedChange | undefined,
  ): Promise<{ guard: { added: string[]; removed: string[]; members: number } } | undefined> {
    try {
      const r = change ? await guard.changePeers(publicIPs(change.added), publicIPs(change.removed)) : await guard.setPeers(publicIPs(admitted));
      if (r.invalid.length) this.log.warn('VXLAN guard: ignoring public IPs that are not IPv4 addresses', { count: r.invalid.length });
      if (r.added.length || r.removed.length) return { guard: { added: r.added, removed: r.removed, members: guard.size } };
    } catch (err) {
      this.log.error('VXLAN guard update failed', { error: describeError(err) });
    }
    return undefined;
  }

  /** The periodic check: rewrite the guard when the kernel no longer holds it as written. */
  private async repairGuard(guard: VxlanGuard): Promise<void> {
    try {
      if (await guard.repair()) this.metrics.repairs.inc();
    } catch (err) {
      this.log.error('VXLAN guard update failed', { error: describeError(err) });
    }
  }

  private async checkRules(rules: TrafficRules, spec: { network: string; subnet: string; ipMasq: boolean }, stateFile: string): Promise<void> {
    try {
      if (await rules.intact()) return;
      this.log.warn('traffic rules changed by someone else; rewriting them', { backend: rules.backend });
      await rules.apply(spec);
      await rules.ensure(spec, stateFile);
      this.metrics.repairs.inc();
    } catch (err) {
      this.log.error('traffic rules check failed', { error: describeError(err) });
    }
  }
}

/**
 * Wait for the watcher's next batch and hand its peer events (the host's own lease left out) to `take`; false once
 * the watch has ended. A function of its own so that the batch is garbage once taken: a variable of the long-lived
 * watch loop stays in its suspended frame while it awaits (measured: the 5000 events of a snapshot were held
 * until the next lease change).
 */
async function takeNextBatch(watcher: LeaseWatcher, ownKey: string, take: (events: LeaseEvent[]) => void): Promise<boolean> {
  const batch = await watcher.next();
  if (!batch) return false;
  take(batch.filter((e) => e.lease.key !== ownKey));
  return true;
}

/** The public IPs of some peers, one per peer (the guard counts peers that share an address). */
function publicIPs(peers: readonly PeerLease[]): string[] {
  return peers.map((p) => p.publicIP);
}

/** Close a server and the connections it still has (a scraper's keep-alive must not hold the agent up). */
function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

/** What `tulle agent --cleanup` did with this host's lease. */
export interface CleanupOutcome {
  /** The subnet whose lease was released, if one was. */
  released: string | undefined;
  /** One line for the user: what was released, or why nothing was. */
  summary: string;
}

/**
 * `tulle agent --cleanup`: remove what the agent made on this host — routes with tulle's protocol, the VTEP
 * (its neighbours and FDB entries go with it), the traffic rules, the VXLAN guard, subnet.env — and release the lease when the
 * store can be reached. The lease is found by the subnet in subnet.env, else by the VTEP's address (the subnet's
 * .0), else by this host's public IP: after a reboot /run (and subnet.env with it) is gone and the VTEP too, and
 * the lease would otherwise stay for its 24 h. Safe to run twice; waits on no timer (the store's own request
 * deadline bounds it).
 */
export async function cleanupHost(options: AgentOptions, log: Logger, openStore: () => Promise<Registry>): Promise<CleanupOutcome> {
  let vtepSubnet: string | undefined;
  let publicIP = options.publicIP;
  const nl = await NetlinkClient.open();
  try {
    const vteps = (await nl.listLinks()).filter((l) => l.kind === 'vxlan' && /^flannel\.\d+$/.test(l.name));
    const vtepAddr = vteps.length === 1 ? (await nl.listAddresses(vteps[0]!.name)).find((a) => a.family === 4 && a.prefix === 32) : undefined;
    if (vtepAddr) vtepSubnet = vtepAddr.address;
    if (!publicIP)
      publicIP = await pickUnderlay(nl, { iface: options.iface }).then(
        (u) => u.publicIP,
        () => undefined,
      );
    const routes = await nl.listRoutes({ table: 254, protocol: TULLE_ROUTE_PROTOCOL });
    const results = routes.length ? await nl.batch(routes.map((r) => ({ op: 'deleteRoute' as const, args: r }))) : [];
    for (const v of vteps) await nl.deleteLink(v.name);
    // An L2 network's device, and its bridge only when tulle made it (a joined bridge keeps everything else).
    const l2 = await removeL2(nl, join(options.stateDir, L2_RECORD_FILE));
    log.info('removed kernel state', { routes: results.filter((r) => r.ok).length, vteps: vteps.map((v) => v.name), ...(l2.length ? { l2 } : {}) });
  } finally {
    nl.close();
  }
  await new TrafficRules(chooseBackend()).remove();
  await new VxlanGuard(chooseBackend()).remove();
  rmSync(join(options.stateDir, 'rules.json'), { force: true });
  const fromFile = previousSubnet(options.subnetFile);
  rmSync(options.subnetFile, { force: true });
  try {
    const registry = await openStore();
    try {
      const manager = new LeaseManager(registry, { prefix: options.prefix, logger: log });
      const { leases } = await manager.listLeases();
      // The VTEP holds the subnet's network address as a /32: "10.244.1.0" names "10.244.1.0/<len>".
      const byVtep = vtepSubnet ? leases.filter((l) => l.subnet.split('/')[0] === vtepSubnet) : [];
      const byIP = publicIP ? leases.filter((l) => l.publicIP === publicIP) : [];
      const mine = fromFile ? leases.find((l) => l.subnet === fromFile) : byVtep.length === 1 ? byVtep[0] : byIP.length === 1 ? byIP[0] : undefined;
      const how = fromFile ? `from ${options.subnetFile}` : byVtep.length === 1 ? 'by the VTEP address' : `by public IP ${publicIP}`;
      if (!mine) {
        const why = fromFile
          ? `no lease for ${fromFile} (from ${options.subnetFile}) in the store`
          : byIP.length > 1
            ? `${byIP.length} leases have public IP ${publicIP} (${byIP.map((l) => l.subnet).join(', ')}): remove the right one with etcdctl`
            : `no lease of this host found (no subnet.env at ${options.subnetFile}, no VTEP, no lease with public IP ${publicIP ?? '(unknown: give --public-ip)'})`;
        log.info('no lease released', { why });
        return { released: undefined, summary: `no lease released: ${why}` };
      }
      if (!(await manager.revoke(mine))) {
        return { released: undefined, summary: `no lease released: ${mine.subnet} (found ${how}) is a reservation or changed meanwhile, so it stays` };
      }
      log.info('lease released', { subnet: mine.subnet, found: how });
      return { released: mine.subnet, summary: `lease ${mine.subnet} released (found ${how})` };
    } finally {
      await registry.close();
    }
  } catch (err) {
    log.warn('could not release the lease (it will expire by itself)', { error: describeError(err) });
    return { released: undefined, summary: `no lease released: the store could not be reached (${describeError(err)}); the lease expires by itself` };
  }
}
