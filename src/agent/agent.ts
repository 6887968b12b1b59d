/**
 * `tulle agent`: one per host. Turns leases into kernel state and keeps it true (DESIGN.md, "Moving parts").
 *
 * Start: network config (waits for it) -> underlay + public IP -> VTEP (kept when compatible, recreated with
 * the reason logged otherwise) -> lease (by public IP, else the previous subnet.env's subnet, else a free one)
 * -> VTEP address -> subnet.env -> traffic rules -> watch leases and program peers. Then, while running: renew the
 * lease, reconcile periodically and at once when a netlink event shows an owned entry changed or vanished,
 * re-check the traffic rules. SIGTERM stops it and leaves the kernel state and the lease in place, so traffic
 * keeps flowing while the agent restarts; an unchanged restart writes nothing to the kernel.
 */
import type { Server } from 'node:http';
import { join } from 'node:path';
import { rmSync } from 'node:fs';
import { TulleError, describeError } from '../base/errors.js';
import { formatIPv4, parseCidr4 } from '../base/ip.js';
import type { Logger } from '../base/log.js';
import { previousSubnet, writeSubnetEnv } from '../config/subnet-env.js';
import { NetlinkClient, TULLE_ROUTE_PROTOCOL, type NetlinkEvent, type Subscription } from '../netlink/index.js';
import { Reconciler } from '../overlay/reconciler.js';
import { TrafficRules, chooseBackend } from '../overlay/rules.js';
import { pickUnderlay, type Underlay } from '../overlay/underlay.js';
import { VXLAN_OVERHEAD_IPV4, ensureVtep, ensureVtepAddress, incompatibility, vtepName, type VtepSpec } from '../overlay/vtep.js';
import type { Registry } from '../store/index.js';
import { LeaseManager, type Lease, type LeaseWatcher } from '../subnet/index.js';
import type { NetworkConfig } from '../config/network.js';
import { AgentMetrics, startHealthServer, type HealthState } from './health.js';
import type { AgentOptions } from './options.js';
import { chooseVtepMac } from './vtep-mac.js';

/** How long kernel events are gathered before one repair reconcile runs. */
const DRIFT_DEBOUNCE_MS = 20;

export class AgentError extends TulleError {
  constructor(message: string, code = 'TULLE_AGENT', cause?: unknown) {
    super(code, message, { cause });
  }
}

export class Agent {
  readonly metrics = new AgentMetrics();
  private readonly abort = new AbortController();
  private health: HealthState = { ready: false, reason: 'starting' };
  private registry: Registry | undefined;
  private nl: NetlinkClient | undefined;
  private server: Server | undefined;
  private watcher: LeaseWatcher | undefined;
  private subscription: Subscription | undefined;
  private reconciler: Reconciler | undefined;
  private timers: NodeJS.Timeout[] = [];
  private driftTimer: NodeJS.Timeout | undefined;
  private vtepRepair: Promise<void> | undefined;
  private spec: VtepSpec | undefined;
  private lease: Lease | undefined;
  /** Set when the agent must stop for a reason it cannot retry past (its lease was lost). */
  private fatal: unknown;

  constructor(
    private readonly options: AgentOptions,
    private readonly log: Logger,
    /** Opens the store named by the shared store options (--store, --prefix, --etcd-*). */
    private readonly openStore: () => Promise<Registry>,
  ) {}

  get signal(): AbortSignal {
    return this.abort.signal;
  }

  /** Run until stop() is called; rejects only for a failure the agent cannot get past by retrying. */
  async run(): Promise<void> {
    try {
      await this.start();
    } catch (err) {
      // Whatever was interrupted by stop() is not a failure; a lost lease is.
      if (!this.signal.aborted || this.fatal) throw this.fatal ?? err;
    }
    if (this.fatal) throw this.fatal;
  }

  private async start(): Promise<void> {
    const { options, log, signal } = this;
    this.server = await startHealthServer(options.healthAddr, this.metrics, () => this.health);
    log.info('agent starting', { store: options.store, prefix: options.prefix, health: options.healthAddr });

    this.registry = await this.openStore();
    const manager = new LeaseManager(this.registry, { prefix: options.prefix, logger: log });

    this.setHealth(false, 'waiting for the network config');
    const config = await manager.waitForNetworkConfig({ signal });
    log.info('network config', { network: config.Network, subnetLen: config.SubnetLen, vni: config.Backend.VNI, port: config.Backend.Port, directRouting: config.Backend.DirectRouting });

    this.nl = await NetlinkClient.open();
    const underlay = await pickUnderlay(this.nl, { iface: options.iface, publicIP: options.publicIP });
    log.info('underlay', { iface: underlay.name, publicIP: underlay.publicIP, mtu: underlay.mtu });

    this.spec = await this.vtepSpec(config, underlay);
    const vtep = await ensureVtep(this.nl, this.spec, log);
    log.info(`VTEP ${vtep.action}`, { device: this.spec.name, mac: this.spec.mac, mtu: this.spec.mtu, ...(vtep.reason ? { reason: vtep.reason } : {}) });

    this.setHealth(false, 'acquiring a lease');
    const lease = await manager.acquire({
      publicIP: underlay.publicIP,
      backendData: { VNI: config.Backend.VNI, VtepMAC: this.spec.mac },
      previousSubnet: previousSubnet(options.subnetFile),
      signal,
      onStoreError: () => this.metrics.storeErrors.inc(),
    });
    this.lease = lease;
    this.setLeaseExpiry(lease);
    log.info('lease acquired', { subnet: lease.subnet, expiration: lease.expiration?.toISOString() ?? 'never (reservation)' });

    const subnet = parseCidr4(lease.subnet, 'subnet');
    const vtepAddress = `${formatIPv4(subnet.network)}/32`;
    await ensureVtepAddress(this.nl, this.spec.name, vtepAddress);
    writeSubnetEnv(options.subnetFile, { network: config.Network, subnet: lease.subnet, gateway: formatIPv4(subnet.network + 1), mtu: this.spec.mtu, ipMasq: options.ipMasq });

    const rules = new TrafficRules(chooseBackend());
    const rulesSpec = { network: config.Network, subnet: lease.subnet, ipMasq: options.ipMasq };
    const rulesState = join(options.stateDir, 'rules.json');
    log.info(`traffic rules ${await rules.ensure(rulesSpec, rulesState)}`, { backend: rules.backend, ipMasq: options.ipMasq });

    this.reconciler = new Reconciler(
      this.nl,
      {
        vtep: this.spec.name,
        underlay: underlay.name,
        underlayNetworks: underlay.networks,
        directRouting: config.Backend.DirectRouting,
        ownSubnet: lease.subnet,
        routeProtocol: TULLE_ROUTE_PROTOCOL,
      },
      log,
      {
        onWrite: (w) => this.metrics.kernelWrites.inc({ kind: w.kind, op: w.op }),
        onFailure: () => this.metrics.kernelErrors.inc(),
        onResult: (r, reason) => {
          this.metrics.reconciles.inc();
          this.metrics.reconcileSeconds.observe(r.durationMs / 1000);
          this.metrics.peersProgrammed.set(r.programmed);
          if (reason === 'drift' || reason === 'periodic') this.metrics.repairs.inc(r.writes);
        },
      },
    );

    // Kernel events first, so that nothing deleted between the first reconcile and the subscription is missed.
    // Deletions only: the announcements of the agent's own writes (three per peer) are dropped undecoded. An
    // entry someone else rewrote in place is put right by the periodic reconcile.
    this.subscription = await this.nl.subscribe(['link', 'address', 'route', 'neighbor'], (e) => this.onKernelEvent(e), { deletionsOnly: true });

    const renewing = manager
      .keepRenewed(lease, {
        signal,
        onRenewed: (l) => {
          this.lease = l;
          this.setLeaseExpiry(l);
        },
        onError: () => this.metrics.storeErrors.inc(),
      })
      .catch((err: unknown) => {
        // Our subnet went to someone else: continuing would route another host's pods here. flannel exits too.
        log.error('lease lost; stopping', { error: describeError(err) });
        this.fatal = err;
        this.stop();
      });

    this.timers.push(
      setInterval(() => void this.reconcile('periodic'), options.reconcileInterval * 1000),
      setInterval(() => void this.checkRules(rules, rulesSpec, rulesState), options.rulesInterval * 1000),
    );

    this.watcher = manager.watch({ excludeSubnet: lease.subnet, onStoreError: () => this.metrics.storeErrors.inc() });
    let skipped = 0;
    try {
      for await (const _batch of this.watcher) {
        const peers = [];
        for (const l of this.watcher.leases) {
          if (l.subnet === lease.subnet) continue;
          if (l.backendType !== 'vxlan' || typeof l.backendData.VtepMAC !== 'string') {
            skipped++;
            continue;
          }
          peers.push({ subnet: l.subnet, publicIP: l.publicIP, vtepMac: l.backendData.VtepMAC });
        }
        if (skipped) {
          this.metrics.skippedLeases.inc(skipped);
          log.warn('skipping leases this backend cannot use', { count: skipped });
          skipped = 0;
        }
        this.reconciler.setPeers(peers);
        const r = await this.reconcile('leases');
        if (r && !this.health.ready) {
          this.setHealth(true, 'programmed', { subnet: lease.subnet, peers: peers.length });
          log.info('ready', { subnet: lease.subnet, peers: peers.length, programmed: r.programmed, writes: r.writes });
        }
      }
    } finally {
      await renewing;
    }
  }

  /** Stop watching and serving; the kernel state and the lease stay as they are. */
  stop(): void {
    if (this.abort.signal.aborted) return;
    this.abort.abort(new AgentError('agent stopping', 'TULLE_AGENT_STOPPING'));
    for (const t of this.timers) clearInterval(t);
    clearTimeout(this.driftTimer);
    this.subscription?.close();
    void this.watcher?.close();
  }

  /** Release everything the process holds (after run() settled). */
  async close(): Promise<void> {
    this.stop();
    await this.watcher?.close();
    this.nl?.close();
    await this.registry?.close().catch(() => {});
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
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

  private async reconcile(reason: string) {
    if (!this.reconciler || this.signal.aborted) return undefined;
    try {
      if (this.vtepRepair) await this.vtepRepair;
      return await this.reconciler.reconcile(reason);
    } catch (err) {
      this.metrics.kernelErrors.inc();
      this.log.error('reconcile failed', { reason, error: describeError(err) });
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

  /** React to kernel changes that touch what tulle owns; our own writes come back here too and reconcile to nothing. */
  private onKernelEvent(e: NetlinkEvent): void {
    const vtep = this.spec?.name;
    switch (e.kind) {
      case 'overflow':
        return this.scheduleDrift();
      case 'route':
        if (e.route.protocol === TULLE_ROUTE_PROTOCOL || e.route.dev === vtep) this.scheduleDrift();
        return;
      case 'neighbor':
        if (e.neighbor.dev === vtep) this.scheduleDrift();
        return;
      case 'fdb':
        if (e.fdb.dev === vtep) this.scheduleDrift();
        return;
      case 'link':
        if (e.link.name === vtep && (e.action === 'del' || !e.link.up)) this.repairVtep(e.action === 'del' ? 'VTEP deleted' : 'VTEP down');
        return;
      case 'address':
        if (e.address.dev === vtep && e.action === 'del') this.repairVtep('VTEP address removed');
        return;
    }
  }

  /** Someone deleted or downed the VTEP (or its address): bring it back, then reprogram every peer. */
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
        this.log.error('VTEP repair failed', { error: describeError(err) });
      } finally {
        this.vtepRepair = undefined;
      }
      await this.reconcile('drift');
    })();
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

/** What `tulle agent --cleanup` did with this host's lease. */
export interface CleanupOutcome {
  /** The subnet whose lease was released, if one was. */
  released: string | undefined;
  /** One line for the user: what was released, or why nothing was. */
  summary: string;
}

/**
 * `tulle agent --cleanup`: remove what the agent made on this host — routes with tulle's protocol, the VTEP
 * (its neighbours and FDB entries go with it), the traffic rules, subnet.env — and release the lease when the
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
    if (!publicIP) publicIP = await pickUnderlay(nl, { iface: options.iface }).then((u) => u.publicIP, () => undefined);
    const routes = await nl.listRoutes({ table: 254, protocol: TULLE_ROUTE_PROTOCOL });
    const results = routes.length ? await nl.batch(routes.map((r) => ({ op: 'deleteRoute' as const, args: r }))) : [];
    for (const v of vteps) await nl.deleteLink(v.name);
    log.info('removed kernel state', { routes: results.filter((r) => r.ok).length, vteps: vteps.map((v) => v.name) });
  } finally {
    nl.close();
  }
  await new TrafficRules(chooseBackend()).remove();
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
