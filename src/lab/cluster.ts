/**
 * The overlay on top of a lab's underlay: a store (an SQLite file in the lab directory, or a real etcd server
 * running in host h1's namespace), the network config, one `tulle agent` per host inside its namespace, and
 * pods attached by `tulle-cni` exactly as a container runtime calls it. Everything runs as separate processes
 * in the lab's namespaces, recorded in the state file so `lab down` ends them.
 */
import { closeSync, existsSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { InvalidValueError, TulleError } from '../base/errors.js';
import { run, runJson, type RunResult } from '../base/exec.js';
import { sleep, waitFor } from '../base/retry.js';
import { readSubnetEnv } from '../config/subnet-env.js';
import { TULLE_CNI_SHIM, cniInvokeOk } from '../cni/invoke.js';
import { createNetns, spawnIn } from '../netns/netns.js';
import { NetlinkClient, TULLE_ROUTE_PROTOCOL } from '../netlink/index.js';
import { parseNetworkConfig, type NetworkConfig } from '../config/network.js';
import { hostOverlayStatus, type HostOverlayStatus } from '../overlay/status.js';
import type { Lease } from '../subnet/lease.js';
import { labNamespace } from './names.js';
import { agentLogOf, hostDir, loadLabState, registerLabProcess, subnetFileOf, unregisterLabProcess, updateLabState, type LabState } from './state.js';
import type { LabPod } from './topology.js';
import type { LabStep } from './up.js';
import { L2_PREFIX, waitL2Converged, waitL2Endpoints, type LabL2 } from './l2.js';

/** bin/tulle of this checkout (this file runs from dist/src/lab/). */
export const TULLE_BIN = fileURLToPath(new URL('../../../bin/tulle', import.meta.url));

export const STORE_KINDS = ['sqlite', 'etcd'] as const;
export type StoreKind = (typeof STORE_KINDS)[number];
export const POD_MODES = ['bridge', 'routed'] as const;
/** 'l2' is not a --mode choice: an L2 network's config sets it (pods join the network's bridge). */
export type PodMode = (typeof POD_MODES)[number] | 'l2';
export const DEFAULT_NETWORK_CONFIG = '{"Network":"10.244.0.0/16","SubnetLen":24,"Backend":{"Type":"vxlan","VNI":1,"Port":8472}}';
export const MAX_PODS = 16;
const ETCD_CLIENT_PORT = 2379;

export interface OverlayOptions {
  store: StoreKind;
  /** net-conf.json text; default 10.244.0.0/16, /24 per host, VNI 1, port 8472. */
  configText?: string;
  pods: number;
  mode: PodMode;
  /** Start agents on the first N hosts only (a test then lets more join); default all. */
  agents?: number;
  /** How long `lab up` waits for every agent to program every peer. */
  convergeTimeoutMs?: number;
}

/** What the lab state records about its overlay. */
export interface LabOverlay {
  storeKind: StoreKind;
  /** The store URL as the hosts see it. */
  store: string;
  /** The host whose namespace runs store commands (and etcd). */
  storeHost: string;
  mode: PodMode;
  /** The store prefix, when not flannel's (an L2 network lives under its own). */
  prefix?: string;
  /** An L2 network's settings (the lab then waits on, and shows, its device instead of routes). */
  l2?: LabL2;
}

export class LabOverlayError extends TulleError {
  constructor(message: string, code = 'TLE_LAB_OVERLAY') {
    super(code, message);
  }
}

export function validatePodCount(pods: number, field = 'pods'): number {
  if (!Number.isInteger(pods) || pods < 0 || pods > MAX_PODS)
    throw new InvalidValueError(field, pods, `is out of range (must be 0..${MAX_PODS} pods per host)`);
  return pods;
}

export { hostDir, subnetFileOf } from './state.js';

function overlayOf(state: LabState): LabOverlay {
  if (!state.overlay) throw new LabOverlayError(`lab ${state.name} has no overlay (it was built with --bare)`, 'TLE_LAB_NO_OVERLAY');
  return state.overlay;
}

function namespaceOf(state: LabState, host: string): string {
  const h = state.hosts.find((x) => x.name === host);
  if (!h) throw new InvalidValueError('host', host, `is not a host of lab ${state.name} (hosts: ${state.hosts.map((x) => x.name).join(', ')})`);
  return h.namespace;
}

/** Run `tulle ARGS...` inside a namespace of the lab. */
export function runTulleIn(namespace: string, args: readonly string[], options: { input?: string; allowFailure?: boolean } = {}): Promise<RunResult> {
  return run(['ip', 'netns', 'exec', namespace, process.execPath, TULLE_BIN, ...args], options);
}

/** `tulle <args> --store URL` in the store host's namespace (the store is reachable from there, also etcd). */
export function runStoreCommand(state: LabState, args: readonly string[], options: { input?: string; allowFailure?: boolean } = {}): Promise<RunResult> {
  const o = overlayOf(state);
  return runTulleIn(namespaceOf(state, o.storeHost), [...args, '--store', o.store, ...prefixArgs(o)], options);
}

function prefixArgs(o: LabOverlay): string[] {
  return o.prefix ? ['--prefix', o.prefix] : [];
}

/** Start a long-running process in a lab namespace, output to `logFile`, recorded in the state file. */
function startProcess(state: LabState, namespace: string, argv: readonly string[], logFile: string, role: string, host: string | null): number {
  mkdirSync(join(logFile, '..'), { recursive: true });
  const out = openSync(logFile, 'a');
  try {
    const child = spawnIn(namespace, argv, { stdio: ['ignore', out, out], detached: true, env: { ...process.env, TULLE_LOG_FORMAT: 'json' } });
    if (child.pid === undefined) throw new LabOverlayError(`could not start ${role} in ${namespace}`);
    child.unref();
    registerLabProcess(state.name, { pid: child.pid, role, host }, { root: rootOf(state) });
    return child.pid;
  } finally {
    closeSync(out);
  }
}

function rootOf(state: LabState): string {
  return join(state.dir, '..');
}

/** Start `tulle agent` in a host's namespace (with `extraArgs`, e.g. `--bridge NAME`); resolves with its PID. */
export function startAgent(state: LabState, host: string, extraArgs: readonly string[] = []): number {
  const o = overlayOf(state);
  const dir = hostDir(state, host);
  // The agent's own default periods (reconcile 60 s, rules 30 s): drift is repaired from netlink events at once,
  // and fifty agents re-listing rules every few seconds would load a 2-core machine for nothing.
  const argv = [
    process.execPath,
    TULLE_BIN,
    'agent',
    '--store',
    o.store,
    ...prefixArgs(o),
    '--subnet-file',
    subnetFileOf(state, host),
    '--state-dir',
    dir,
    '--cni-socket',
    cniSocketOf(state, host),
    '--cni-ipam-dir',
    join(cniDataDirOf(state, host), LAB_CNI_NETWORK),
    ...extraArgs,
  ];
  return startProcess(state, namespaceOf(state, host), argv, agentLogOf(state, host), 'agent', host);
}

/** SIGTERM a host's agent and wait until it has exited; the lease and the kernel state stay, as on a real host. */
export async function stopAgent(state: LabState, host: string, timeoutMs = 10_000): Promise<void> {
  const agents = loadLabState(state.name, { root: rootOf(state) }).processes.filter((p) => p.role === 'agent' && p.host === host);
  for (const p of agents) {
    try {
      process.kill(p.pid, 'SIGTERM');
    } catch {
      // already gone
    }
    await waitFor(() => !isAlive(p.pid), timeoutMs, `agent of ${host} (pid ${p.pid}) to exit`);
    unregisterLabProcess(state.name, p.pid, { root: rootOf(state) });
  }
}

/**
 * Is the process still running? Signal 0 alone is not enough: a process that exited but was not reaped yet (a
 * zombie, state Z in /proc/PID/stat) still accepts it.
 */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // "pid (comm) S ...": comm may hold spaces and parentheses, so the state follows the last ')'.
    return !/^\s*[ZX]/.test(stat.slice(stat.lastIndexOf(')') + 1));
  } catch {
    return false;
  }
}

/** A host leaves the cluster: its agent stops and `tulle agent --cleanup` removes its state and releases its lease. */
export async function removeHostFromOverlay(state: LabState, host: string): Promise<void> {
  await stopAgent(state, host);
  const o = overlayOf(state);
  await runTulleIn(namespaceOf(state, host), [
    'agent',
    '--cleanup',
    '--store',
    o.store,
    ...prefixArgs(o),
    '--subnet-file',
    subnetFileOf(state, host),
    '--state-dir',
    hostDir(state, host),
  ]);
  updateLabState(state.name, (s) => void (s.hosts.find((h) => h.name === host)!.subnet = null), { root: rootOf(state) });
}

/** Routes tulle programmed on a host, read with iproute2 (`ip -j route show proto 84`). */
export async function overlayRoutes(namespace: string): Promise<Array<{ dst: string; gateway?: string; dev: string }>> {
  return runJson(['ip', '-n', namespace, '-j', 'route', 'show', 'proto', String(TULLE_ROUTE_PROTOCOL)]);
}

/**
 * Wait until every host with an agent has written subnet.env and holds a route to every other such host;
 * records each host's subnet in the state. Returns the state.
 */
export async function waitConverged(state: LabState, hosts: readonly string[], timeoutMs = 30_000): Promise<LabState> {
  const subnets = new Map<string, string>();
  const agents = loadLabState(state.name, { root: rootOf(state) }).processes.filter((p) => p.role === 'agent' && p.host && hosts.includes(p.host));
  let dead: { host: string; pid: number } | undefined;
  await waitFor(
    () => {
      // An agent that exited will not come back: say why at once instead of waiting for the timeout.
      dead = agents.map((a) => ({ host: a.host!, pid: a.pid })).find((a) => !isAlive(a.pid));
      if (dead) return true;
      for (const h of hosts) if (!subnets.has(h) && existsSync(subnetFileOf(state, h))) subnets.set(h, readSubnetEnv(subnetFileOf(state, h)).subnet);
      return subnets.size === hosts.length;
    },
    timeoutMs,
    `every agent to lease a subnet (${hosts.length - subnets.size} still without subnet.env; see ${state.dir}/<host>/agent.log)`,
    50,
  );
  if (dead) {
    const log = join(hostDir(state, dead.host), 'agent.log');
    const tail = existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n').slice(-2).join(' | ') : '(no log)';
    throw new LabOverlayError(`the agent of ${dead.host} (pid ${dead.pid}) exited: ${tail}`, 'TLE_LAB_AGENT_EXITED');
  }
  const l2 = state.overlay?.l2;
  if (l2) {
    await waitL2Converged(
      state.hosts.filter((h) => hosts.includes(h.name)),
      l2,
      timeoutMs,
    );
    return updateLabState(
      state.name,
      (s) => {
        for (const h of s.hosts) if (subnets.has(h.name)) h.subnet = subnets.get(h.name)!;
      },
      { root: rootOf(state) },
    );
  }
  const want = (h: string) => new Set([...subnets].filter(([x]) => x !== h).map(([, s]) => s));
  const missing = new Map<string, string[]>();
  await waitFor(
    async () => {
      missing.clear();
      await Promise.all(
        hosts.map(async (h) => {
          const have = new Set((await overlayRoutes(namespaceOf(state, h))).map((r) => r.dst));
          const lacking = [...want(h)].filter((s) => !have.has(s));
          if (lacking.length) missing.set(h, lacking);
        }),
      );
      return missing.size === 0;
    },
    timeoutMs,
    `every host to route to every other (${[...missing].map(([h, l]) => `${h} lacks ${l.join(' ')}`).join('; ')})`,
    50,
  );
  return updateLabState(
    state.name,
    (s) => {
      for (const h of s.hosts) if (subnets.has(h.name)) h.subnet = subnets.get(h.name)!;
    },
    { root: rootOf(state) },
  );
}

/** Record namespaces in the state file (so `lab down` removes them), then create them. */
async function recordAndCreate(state: LabState, namespaces: readonly string[]): Promise<void> {
  updateLabState(state.name, (s) => void (s.namespaces = [...new Set([...s.namespaces, ...namespaces])]), { root: rootOf(state) });
  for (const ns of namespaces) await createNetns(ns);
}

/** The name of the lab pods' CNI network (also the IPAM directory's name under the data dir). */
const LAB_CNI_NETWORK = 'tulle';

/** Where a host's tulle-cni keeps its address reservations (host-local's format, one directory per network). */
function cniDataDirOf(state: LabState, host: string): string {
  return join(hostDir(state, host), 'ipam');
}

/** The CNI network config the lab's pods are attached with. */
export function podNetconf(state: LabState, host: string): Record<string, unknown> {
  return {
    cniVersion: '1.1.0',
    name: LAB_CNI_NETWORK,
    type: 'tulle',
    mode: overlayOf(state).mode,
    subnetFile: subnetFileOf(state, host),
    dataDir: cniDataDirOf(state, host),
  };
}

/**
 * Each host's agent serves CNI requests on its own socket (hosts share one file system); "" (none: pods are
 * attached by the Node plugin) when the lab directory is too deep for a unix socket path's 107 bytes.
 */
export function cniSocketOf(state: LabState, host: string): string {
  const path = join(hostDir(state, host), 'cni.sock');
  return Buffer.byteLength(path) <= 107 ? path : '';
}

/**
 * Create a pod namespace and attach it with `tulle-cni ADD`, run in the host's namespace as a runtime would: the
 * compiled shim, which hands the call to the host's agent (and runs the Node plugin itself if the agent is gone).
 */
export async function addPod(
  state: LabState,
  host: string,
  podName: string,
  createNamespaces: (ns: string[]) => Promise<void> = (ns) => recordAndCreate(state, ns),
): Promise<LabPod> {
  const namespace = labNamespace(state.name, podName);
  await createNamespaces([namespace]);
  const result = (await cniInvokeOk({
    command: 'ADD',
    containerId: `${state.name}-${podName}`,
    netns: `/run/netns/${namespace}`,
    ifName: 'eth0',
    config: podNetconf(state, host),
    hostNetns: namespaceOf(state, host),
    ...(existsSync(TULLE_CNI_SHIM) ? { plugin: TULLE_CNI_SHIM, env: { TULLE_CNI_SOCKET: cniSocketOf(state, host) } } : {}),
  })) as { ips?: Array<{ address: string }> };
  const address = result?.ips?.[0]?.address.split('/')[0] ?? null;
  const pod: LabPod = { name: podName, host, namespace, address };
  updateLabState(state.name, (s) => void s.pods.push(pod), { root: rootOf(state) });
  return pod;
}

/** Start the lab's etcd server in a host's namespace (client port 2379 on its underlay address and loopback). */
export function startEtcd(state: LabState, host: string): number {
  const h = state.hosts.find((x) => x.name === host)!;
  const peer = 'http://127.0.0.1:2380';
  const argv = [
    'etcd',
    '--name',
    'lab',
    '--data-dir',
    join(state.dir, 'etcd'),
    '--listen-client-urls',
    `http://${h.address}:${ETCD_CLIENT_PORT},http://127.0.0.1:${ETCD_CLIENT_PORT}`,
    '--advertise-client-urls',
    `http://${h.address}:${ETCD_CLIENT_PORT}`,
    '--listen-peer-urls',
    peer,
    '--initial-advertise-peer-urls',
    peer,
    '--initial-cluster',
    `lab=${peer}`,
  ];
  return startProcess(state, h.namespace, argv, join(state.dir, 'etcd.log'), 'etcd', h.name);
}

/** The steps `lab up` appends after the underlay: store, config, agents, convergence, pods. */
export function overlaySteps(options: OverlayOptions): LabStep[] {
  const l2Flood = options.configText ? l2FloodOf(options.configText) : undefined;
  const steps: LabStep[] = [
    {
      title: `start the store (${options.store})`,
      run: async (ctx) => {
        const state = ctx.state();
        const storeHost = state.hosts[0]!;
        let store: string;
        if (options.store === 'sqlite') {
          store = `sqlite:${join(state.dir, 'store.db')}`;
        } else {
          store = `etcd://${storeHost.address}:${ETCD_CLIENT_PORT}`;
          startEtcd(state, storeHost.name);
        }
        const config = parseNetworkConfig(options.configText ?? DEFAULT_NETWORK_CONFIG);
        const b = config.Backend;
        const l2: LabL2 | undefined = b.mode === 'l2' ? { vni: b.VNI, flood: b.flood, bridge: b.bridge, ...(b.group ? { group: b.group } : {}) } : undefined;
        ctx.update(
          (s) =>
            void (s.overlay = {
              storeKind: options.store,
              store,
              storeHost: storeHost.name,
              mode: l2 ? 'l2' : options.mode,
              ...(l2 ? { prefix: L2_PREFIX, l2 } : {}),
            }),
        );
      },
    },
    {
      title: 'write the network config',
      run: async (ctx) => {
        const state = ctx.state();
        const text = options.configText ?? DEFAULT_NETWORK_CONFIG;
        // etcd needs a moment to start listening: retry while the store is unreachable.
        const deadline = Date.now() + 15_000;
        for (;;) {
          const r = await runStoreCommand(state, ['config', 'put'], { input: text, allowFailure: true });
          if (r.status === 0) break;
          if (r.status === 2 || Date.now() > deadline || !/unreachable|UNAVAILABLE/i.test(r.stderr)) {
            throw new LabOverlayError(`writing the network config failed: ${r.stderr.trim()}`, 'TLE_LAB_CONFIG');
          }
          await sleep(200);
        }
      },
    },
    {
      title: 'start one agent per host',
      run: async (ctx) => {
        const state = ctx.state();
        for (const h of state.hosts.slice(0, options.agents ?? state.hosts.length)) startAgent(state, h.name);
      },
    },
    {
      title: l2Flood ? `wait until every host's vxlan device reaches the others (l2, flood ${l2Flood})` : 'wait until every host routes to every other',
      run: async (ctx) => {
        const state = ctx.state();
        await waitConverged(
          state,
          state.hosts.slice(0, options.agents ?? state.hosts.length).map((h) => h.name),
          options.convergeTimeoutMs,
        );
      },
    },
  ];
  if (options.pods > 0) {
    steps.push({
      title: `attach ${options.pods} pod(s) per host with tulle-cni (${l2Flood ? 'l2' : options.mode})`,
      run: async (ctx) => {
        const state = ctx.state();
        const hosts = state.hosts.slice(0, options.agents ?? state.hosts.length);
        await Promise.all(
          hosts.map(async (h) => {
            for (let p = 1; p <= options.pods; p++) await addPod(ctx.state(), h.name, `${h.name}-p${p}`, (ns) => ctx.createNamespaces(ns));
          }),
        );
      },
    });
    if (l2Flood === 'none') {
      steps.push({
        title: "wait until every host's vxlan device holds every remote pod (l2, flood none: from the store's endpoint records)",
        run: async (ctx) => {
          const state = ctx.state();
          await waitL2Endpoints(
            state.hosts.filter((h) => state.pods.some((p) => p.host === h.name)),
            state.pods,
            overlayOf(state).l2!.vni,
            options.convergeTimeoutMs ?? 30_000,
          );
        },
      });
    }
  }
  return steps;
}

/** The flood mode of an L2 config, undefined for an L3 one (a bad config is reported by the step that writes it). */
function l2FloodOf(configText: string): string | undefined {
  try {
    const b = parseNetworkConfig(configText).Backend;
    return b.mode === 'l2' ? b.flood : undefined;
  } catch {
    return undefined;
  }
}

export interface LabHostStatus extends HostOverlayStatus {
  host: string;
  namespace: string;
  /** The host's agent process, if the lab started one. */
  agent: { pid: number; running: boolean } | null;
}

/** The lab's leases and network config, read from its store by `tulle leases --json` and `tulle config get`. */
export async function readLabLeases(state: LabState): Promise<{ leases: Lease[]; config: NetworkConfig }> {
  const leasesOut = await runStoreCommand(state, ['leases', '--json']);
  type LeaseJson = Omit<Lease, 'expiration' | 'revision' | 'extra'> & { expiration: string | null };
  // Entries the store could not read are listed with only their key and the reason; they are no leases.
  const leases: Lease[] = (JSON.parse(leasesOut.stdout) as Array<Partial<LeaseJson>>)
    .filter((l): l is LeaseJson => typeof l.subnet === 'string' && typeof l.publicIP === 'string')
    .map((l) => ({ ...l, expiration: l.expiration ? new Date(l.expiration) : null, revision: 0, extra: {} }));
  const config = parseNetworkConfig((await runStoreCommand(state, ['config', 'get'])).stdout);
  return { leases, config };
}

/** Per host: lease, VTEP, peers, and whether the kernel matches what the leases ask for (read over netlink). */
export async function labStatus(state: LabState): Promise<LabHostStatus[]> {
  const { leases, config } = await readLabLeases(state);
  return Promise.all(
    state.hosts.map(async (h) => {
      const nl = await NetlinkClient.open({ netns: h.namespace });
      try {
        const status = await hostOverlayStatus(nl, { leases, config });
        const agent = state.processes.find((p) => p.role === 'agent' && p.host === h.name);
        return { host: h.name, namespace: h.namespace, agent: agent ? { pid: agent.pid, running: isAlive(agent.pid) } : null, ...status };
      } finally {
        nl.close();
      }
    }),
  );
}
