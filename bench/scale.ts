/**
 * Benchmark: scale. One agent (a 1-host lab) and N synthetic peer leases (1000, 5000) written straight into its
 * SQLite store: valid VTEP MACs, public IPs from 198.51.100.0/24 and 203.0.113.0/24 (FDB destinations only; no
 * traffic is sent), subnets of a 10.0.0.0/8 network. Measured from outside the agent:
 *
 *   - program: the agent is paused (SIGSTOP) while the N leases are written, so that it finds them all at once as
 *     after one bulk write; the clock starts when it is resumed and stops when the kernel has announced all N
 *     routes, neighbours and FDB entries (netlink events, peer-observer.ts); iproute2 then confirms the counts.
 *     Baseline: `ip -batch` (neighbour + route per peer) then `bridge -batch` (FDB) of the same entries into a
 *     fresh spare namespace with the same VTEP, in the same run, taking turns with the agent, timed the same way:
 *     from the start until the same observer heard all 3N announcements there (a listener costs the writer
 *     kernel time, so both sides write under one).
 *   - reconcile with nothing to do: the agent restarts with the same leases and the kernel already right; its
 *     first reconcile's duration is read from its /metrics (tulle_reconcile_duration_seconds) once it has logged
 *     "ready" (the log is watched, not /healthz: answering a probe every few ms would slow the very reconcile timed),
 *     with tulle_kernel_writes_total checked to be 0. Baseline: iproute2 reading the same N entries back
 *     (`ip -j neigh`, `ip -j route`, `bridge -j fdb`, parsed), the least a script must do to find nothing to do.
 *     The time from the restart to that "ready" line (node start-up included) is reported too. Then the
 *     same agent's next periodic resyncs (every RECONCILE_INTERVAL_S here; 5 of them, 2 with --quick), also with
 *     nothing to do: the steady state, against the same baseline.
 *   - memory: the agent's VmRSS (/proc/PID/status) 1 s after it programmed N peers, against the same agent
 *     holding none. After bulk work the agent runs one memory-returning collection (src/base/memory.ts), so the
 *     V8 heap figures read then are the live heap: what the peers really cost.
 *
 * Goals: tulle / iproute2 <= 1.0 for programming and for both no-op reconciles; RSS <= 80 MB at 5000 peers.
 *
 *   node dist/bench/scale.js [--quick]     (a full run writes bench/results/scale.json)
 */
import { performance } from 'node:perf_hooks';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { run as runCommand, runJson } from '../src/base/exec.js';
import { formatIPv4, parseCidr4 } from '../src/base/ip.js';
import { BULK_GC_DEFAULTS } from '../src/base/memory.js';
import { sleep, waitFor } from '../src/base/retry.js';
import { labNamespace, loadLabState, overlaySteps, startAgent, stopAgent, type LabState } from '../src/lab/index.js';
import { DEFAULT_PREFIX, openRegistry, subnetKey, type Registry } from '../src/store/index.js';
import { encodeLeaseValue } from '../src/subnet/index.js';
import { TULLE_ROUTE_PROTOCOL } from '../src/netlink/index.js';
import { metricValue, probeAgent } from './agent-probe.js';
import {
  agentReadyTimes,
  environment,
  labRoot,
  median,
  processMemory,
  sumCpuMs,
  resultFile,
  round,
  row,
  scratchDir,
  withEnv,
  withLab,
  writeResult,
  type BenchRow,
  type Environment,
} from './common.js';
import { PeerObserver, VTEP, entryKeys, type PeerEntries } from './peer-observer.js';
import { resetSpareVtep, spareNamespacesStep } from './spare-host.js';

export const NAME = 'scale';
const GOAL_RATIO = 1.0;
const GOAL_RSS_MB = 80;
/** Room for 65535 /24 subnets: the default 10.244.0.0/16 holds only 255. */
const NETWORK_CONFIG = '{"Network":"10.0.0.0/8","SubnetLen":24,"Backend":{"Type":"vxlan","VNI":1,"Port":8472}}';
const LEASE_TTL_SECONDS = 3600;
const HOST = 'h1';
const SPARE = 'x1';

export interface SizeResult {
  peers: number;
  repetitions: number;
  /**
   * agentCpuMs: CPU the agent used meanwhile (user + system, so the kernel's work on its requests included;
   * 10 ms resolution). observerCpuMs: CPU this benchmark process used meanwhile (mostly decoding the kernel's
   * announcements); it competes with the agent for the same cores.
   */
  program: { tulleMs: number; iprouteMs: number; ratio: number; tulleRunsMs: number[]; iprouteRunsMs: number[]; observerCpuMs: number[]; agentCpuMs: number[] };
  /** warmMs: the mean of the restarted agent's next periodic reconciles (warmRuns of them), also with nothing to do. */
  noopReconcile: {
    tulleMs: number;
    iprouteMs: number;
    ratio: number;
    tulleRunsMs: number[];
    iprouteRunsMs: number[];
    kernelWrites: number;
    restartToReadyMs: number[];
    warmMs: number;
    warmRuns: number;
    warmRatio: number;
  };
  /**
   * RSS from /proc: rssMB after the first programming run (the figure), rssRunsMB after each run (later ones
   * after all N peers were removed and added again), peakRssMB (VmHWM), afterRestartRssMB with the same N peers
   * taken on at start-up (1 s after ready); the V8 heap and external memory as the agent's /metrics report them after the first run.
   */
  memory: {
    idleRssMB: number;
    rssMB: number;
    rssRunsMB: number[];
    peakRssMB: number;
    afterRestartRssMB: number;
    heapUsedMB: number;
    heapTotalMB: number;
    externalMB: number;
  };
  lab: string;
}

export interface ScaleResult {
  name: string;
  date: string;
  quick: boolean;
  environment: Environment;
  sizes: number[];
  results: SizeResult[];
  notes: string[];
  rows: BenchRow[];
}

export interface RunOptions {
  quick: boolean;
  output?: string;
  sizes?: number[];
  repetitions?: number;
}

export async function run(options: RunOptions): Promise<ScaleResult> {
  const env = await environment();
  // Quick: enough peers (3 entries each) for the agent's post-bulk collection to run, as it does in a full run.
  const sizes = options.sizes ?? (options.quick ? [Math.ceil(BULK_GC_DEFAULTS.minEntries / 3) + 20] : [1000, 5000]);
  const repetitions = options.repetitions ?? (options.quick ? 1 : 3);
  const results: SizeResult[] = [];
  for (const n of sizes) results.push(await measureSize(n, repetitions));
  const result: ScaleResult = {
    name: NAME,
    date: new Date().toISOString(),
    quick: options.quick,
    environment: env,
    sizes,
    results,
    notes: results.map(
      (r) =>
        `${r.peers} peers: restart to its "ready" log line ${round(median(r.noopReconcile.restartToReadyMs), 0)} ms (node start-up included); ` +
        `kernel writes in the no-op reconciles: ${r.noopReconcile.kernelWrites}; program runs ${r.program.tulleRunsMs.join(', ')} ms vs iproute2 ${r.program.iprouteRunsMs.join(', ')} ms ` +
        `(agent CPU meanwhile ${r.program.agentCpuMs.join(', ')} ms; this benchmark's own CPU while observing ${r.program.observerCpuMs.join(', ')} ms); ` +
        `the restarted agent's next ${r.noopReconcile.warmRuns} periodic no-op reconciles took ${r.noopReconcile.warmMs} ms on average; ` +
        `RSS after each programming run ${r.memory.rssRunsMB.join(', ')} MB (peak ${r.memory.peakRssMB} MB, during the runs), ${r.memory.afterRestartRssMB} MB 1 s after a restart; ` +
        `V8 heap after the first run (${3 * r.peers >= BULK_GC_DEFAULTS.minEntries ? "after the agent's post-bulk collection, so about the live heap" : 'no post-bulk collection at this size'}) ` +
        `${r.memory.heapUsedMB} MB used of ${r.memory.heapTotalMB} MB, external ${r.memory.externalMB} MB`,
    ),
    rows: results.flatMap(rows),
  };
  const file = resultFile(NAME, options);
  if (file) writeResult(file, result);
  return result;
}

function rows(r: SizeResult): BenchRow[] {
  const size = `${r.peers} peers`;
  const ratioGoal = { on: 'ratio' as const, op: '<=' as const, value: GOAL_RATIO, text: `tulle / iproute2 <= ${GOAL_RATIO.toFixed(1)}` };
  return [
    row({
      benchmark: NAME,
      metric: 'program all peers (leases written -> every route, neighbour, FDB entry in the kernel)',
      size,
      figure: r.program.tulleMs,
      unit: 'ms',
      baseline: r.program.iprouteMs,
      baselineLabel: 'ip -batch + bridge -batch',
      ratio: r.program.ratio,
      ratioLabel: 'tulle / iproute2',
      goal: ratioGoal,
    }),
    row({
      benchmark: NAME,
      metric: 'reconcile with nothing to do (after a restart)',
      size,
      figure: r.noopReconcile.tulleMs,
      unit: 'ms',
      baseline: r.noopReconcile.iprouteMs,
      baselineLabel: 'ip -j neigh/route + bridge -j fdb, parsed',
      ratio: r.noopReconcile.ratio,
      ratioLabel: 'tulle / iproute2',
      goal: ratioGoal,
    }),
    row({
      benchmark: NAME,
      metric: 'reconcile with nothing to do (periodic resync of a running agent)',
      size,
      figure: r.noopReconcile.warmMs,
      unit: 'ms',
      baseline: r.noopReconcile.iprouteMs,
      baselineLabel: 'ip -j neigh/route + bridge -j fdb, parsed',
      ratio: r.noopReconcile.warmRatio,
      ratioLabel: 'tulle / iproute2',
      goal: ratioGoal,
    }),
    row({
      benchmark: NAME,
      metric: 'agent RSS holding the peers (fresh agent, after programming them)',
      size,
      figure: r.memory.rssMB,
      unit: 'MB',
      baseline: r.memory.idleRssMB,
      baselineLabel: 'the same agent with no peers',
      ratio: round(r.memory.rssMB / r.memory.idleRssMB, 2),
      ratioLabel: 'RSS / RSS with no peers',
      goal: { on: 'figure', op: '<=', value: GOAL_RSS_MB, text: `RSS <= ${GOAL_RSS_MB} MB` },
    }),
  ];
}

interface SyntheticPeer extends PeerEntries {
  key: string;
  value: string;
}

/** N peers: subnets 10.1.0.0/24, 10.1.1.0/24, ... (skipping the agent's own), MACs 02:5c:00:xx:xx:xx, public IPs cycling through two documentation /24s. */
export function syntheticPeers(n: number, ownSubnet: string): SyntheticPeer[] {
  const out: SyntheticPeer[] = [];
  for (let i = 0; out.length < n; i++) {
    const subnet = `10.${1 + (i >> 8)}.${i & 255}.0/24`;
    if (subnet === ownSubnet) continue;
    const m = i + 1;
    const mac = `02:5c:00:${[m >> 16, m >> 8, m].map((b) => (b & 255).toString(16).padStart(2, '0')).join(':')}`;
    const j = i % 508;
    const publicIP = j < 254 ? `198.51.100.${j + 1}` : `203.0.113.${j - 253}`;
    out.push({
      subnet,
      mac,
      publicIP,
      key: subnetKey(DEFAULT_PREFIX, parseCidr4(subnet)),
      value: encodeLeaseValue({ publicIP, backendType: 'vxlan', backendData: { VNI: 1, VtepMAC: mac } }),
    });
  }
  return out;
}

function agentPid(state: LabState): number {
  const p = loadLabState(state.name, { root: labRoot(state) }).processes.find((x) => x.role === 'agent' && x.host === HOST);
  if (!p) throw new Error(`lab ${state.name} records no agent for ${HOST}`);
  return p.pid;
}

/** How many neighbours, FDB entries and tulle routes `ns` holds on the VTEP, as iproute2 shows them. */
async function counts(ns: string): Promise<{ neighbors: number; fdb: number; routes: number }> {
  const [neighbors, fdb, routes] = await Promise.all([
    runJson<Array<{ lladdr?: string }>>(['ip', '-n', ns, '-j', 'neigh', 'show', 'dev', VTEP]),
    runJson<unknown[]>(['bridge', '-n', ns, '-j', 'fdb', 'show', 'dev', VTEP]),
    runJson<unknown[]>(['ip', '-n', ns, '-j', 'route', 'show', 'proto', String(TULLE_ROUTE_PROTOCOL), 'dev', VTEP]),
  ]);
  return { neighbors: neighbors.filter((x) => x.lladdr).length, fdb: fdb.length, routes: routes.length };
}

function expectCounts(side: string, c: { neighbors: number; fdb: number; routes: number }, n: number): void {
  if (c.neighbors !== n || c.fdb !== n || c.routes !== n)
    throw new Error(`${side}: expected ${n} neighbours, FDB entries and routes on ${VTEP}, found ${JSON.stringify(c)}`);
}

/**
 * The lab agent's full-reconcile period here: short, so that the warm no-op reconcile is seen within seconds, in
 * quick runs too (a path only full runs take would rot unseen). Agents inherit it from this process's environment.
 */
const RECONCILE_INTERVAL_S = 3;

async function measureSize(n: number, repetitions: number): Promise<SizeResult> {
  const afterUnderlay = [spareNamespacesStep([SPARE]), ...overlaySteps({ store: 'sqlite', mode: 'bridge', pods: 0, configText: NETWORK_CONFIG })];
  return withEnv({ TULLE_RECONCILE_INTERVAL: String(RECONCILE_INTERVAL_S) }, () =>
    withLab('sc', { nodes: 1, underlay: 'switch', afterUnderlay }, async (state) => {
      const host = state.hosts[0]!;
      const spare = labNamespace(state.name, SPARE);
      const peers = syntheticPeers(n, host.subnet ?? '');
      const keys = peers.flatMap(entryKeys);
      const scratch = scratchDir('scale');
      writeFileSync(
        join(scratch.dir, 'ip.batch'),
        peers
          .map(
            (p) =>
              `neigh replace ${vtepIP(p)} lladdr ${p.mac} dev ${VTEP} nud permanent\nroute replace ${p.subnet} via ${vtepIP(p)} dev ${VTEP} onlink proto ${TULLE_ROUTE_PROTOCOL}\n`,
          )
          .join(''),
      );
      writeFileSync(join(scratch.dir, 'bridge.batch'), peers.map((p) => `fdb replace ${p.mac} dev ${VTEP} dst ${p.publicIP} self permanent\n`).join(''));

      const registry = await openRegistry(state.overlay!.store);
      // Listening in the spare namespace too: the kernel pays for every announcement a listener gets (`ip -batch`
      // of 5000 peers took a third longer with `ip monitor` listening, measured), so both sides are timed alike.
      const observer = await PeerObserver.open([host.namespace, spare]);
      try {
        let pid = agentPid(state);
        await sleep(1000); // let the idle agent settle before its RSS is the baseline
        const idle = processMemory(pid);

        const tulleProgram: number[] = [];
        const iprouteProgram: number[] = [];
        // RSS after each programming run; the figure is the first: a fresh agent that has just taken on N peers.
        // Later runs follow removals of all N peers, whose garbage the heap may still hold.
        const programmed: Array<{ rssMB: number; peakMB: number }> = [];
        let heap = { heapUsedMB: 0, heapTotalMB: 0, externalMB: 0 };
        const observerCpu: number[] = [];
        const agentCpu: number[] = [];
        for (let rep = 0; rep < repetitions; rep++) {
          const sides = [
            async () => {
              if (rep > 0) await removeAll(registry, peers, host.namespace);
              const agentRun = await programWithAgent(pid, registry, observer, host.namespace, peers, keys);
              tulleProgram.push(agentRun.ms);
              observerCpu.push(agentRun.observerCpuMs);
              agentCpu.push(agentRun.agentCpuMs);
              expectCounts('agent', await counts(host.namespace), n);
              await sleep(1000);
              programmed.push(processMemory(pid));
              if (programmed.length === 1) heap = heapOf(await metricsAfterCollection(host.namespace, n));
            },
            async () => {
              await resetSpareVtep(spare);
              observer.reset();
              const started = performance.now();
              await runCommand(['ip', '-n', spare, '-batch', join(scratch.dir, 'ip.batch')]);
              await runCommand(['bridge', '-n', spare, '-batch', join(scratch.dir, 'bridge.batch')]);
              // The same stopwatch as the agent's: stopped by the last announcement, which the same observer hears.
              const doneAt = await observer.complete(spare, keys, 300_000);
              if (observer.overflowed(spare)) throw new Error(`netlink events were dropped in ${spare}; the time is not trustworthy`);
              iprouteProgram.push(doneAt - started);
              expectCounts('iproute2', await counts(spare), n);
            },
          ];
          if (rep % 2 === 1) sides.reverse();
          for (const side of sides) await side();
        }

        const tulleNoop: number[] = [];
        const iprouteNoop: number[] = [];
        const readyMs: number[] = [];
        let writes = 0;
        let afterRestart = 0;
        for (let rep = 0; rep < repetitions; rep++) {
          const sides = [
            async () => {
              const readyBefore = agentReadyTimes(state, HOST).length;
              await stopAgent(state, HOST);
              const started = Date.now();
              pid = startAgent(state, HOST);
              // Ready when its log says so: asking /healthz every few ms would put the answers inside the reconcile
              // timed here (measured: 10 ms of a 38 ms no-op at 1000 peers). Its metrics are read once, after.
              let readyAt = 0;
              await waitFor(() => (readyAt = agentReadyTimes(state, HOST)[readyBefore] ?? 0) > 0, 120_000, `${HOST}'s agent to log "ready" after a restart`, 5);
              const probe = await probeAgent(host.namespace);
              readyMs.push(readyAt - started);
              const sum = metricValue(probe.metrics, 'tulle_reconcile_duration_seconds_sum');
              const count = metricValue(probe.metrics, 'tulle_reconcile_duration_seconds_count');
              const peersProgrammed = metricValue(probe.metrics, 'tulle_peers_programmed');
              if (!sum || !count || peersProgrammed !== n)
                throw new Error(`the restarted agent reports ${count} reconciles and ${peersProgrammed} peers programmed, expected >= 1 and ${n}`);
              // Every reconcile so far found nothing to do (checked below), so their mean is the no-op reconcile time.
              tulleNoop.push((sum / count) * 1000);
              writes += metricValue(probe.metrics, 'tulle_kernel_writes_total') ?? 0;
              // Like the figure after programming: 1 s after the agent is ready (its first reconcile dumped 3N entries).
              await sleep(1000);
              afterRestart = processMemory(pid).rssMB;
            },
            async () => {
              const started = performance.now();
              const c = await counts(spare);
              iprouteNoop.push(performance.now() - started);
              expectCounts('iproute2 read-back', c, n);
            },
          ];
          if (rep % 2 === 1) sides.reverse();
          for (const side of sides) await side();
        }
        expectCounts('agent after restarts', await counts(host.namespace), n);
        // The first reconcile after a start runs on code V8 has not optimised yet; a running agent's periodic
        // resyncs (every RECONCILE_INTERVAL_S here) show what the steady state costs: the mean of the next few.
        const warmRuns = repetitions > 1 ? 5 : 2;
        let warmMs: number;
        {
          const first = (await probeAgent(host.namespace)).metrics;
          const count0 = metricValue(first, 'tulle_reconcile_duration_seconds_count')!;
          const sum0 = metricValue(first, 'tulle_reconcile_duration_seconds_sum')!;
          let later = first;
          await waitFor(
            async () => {
              later = (await probeAgent(host.namespace)).metrics;
              return metricValue(later, 'tulle_reconcile_duration_seconds_count')! >= count0 + warmRuns;
            },
            RECONCILE_INTERVAL_S * (warmRuns + 10) * 1000,
            `${warmRuns} periodic reconciles (every ${RECONCILE_INTERVAL_S} s)`,
            500,
          );
          const writesLater = metricValue(later, 'tulle_kernel_writes_total') ?? 0;
          if (writesLater !== (metricValue(first, 'tulle_kernel_writes_total') ?? 0))
            throw new Error('a periodic reconcile wrote to the kernel; it was not a no-op');
          warmMs = round(
            ((metricValue(later, 'tulle_reconcile_duration_seconds_sum')! - sum0) / (metricValue(later, 'tulle_reconcile_duration_seconds_count')! - count0)) *
              1000,
            2,
          );
        }

        const program = { tulleMs: round(median(tulleProgram)), iprouteMs: round(median(iprouteProgram)) };
        const noop = { tulleMs: round(median(tulleNoop), 2), iprouteMs: round(median(iprouteNoop), 2) };
        return {
          peers: n,
          repetitions,
          program: {
            ...program,
            ratio: round(median(tulleProgram) / median(iprouteProgram), 3),
            tulleRunsMs: tulleProgram.map((x) => round(x)),
            iprouteRunsMs: iprouteProgram.map((x) => round(x)),
            observerCpuMs: observerCpu.map((x) => round(x)),
            agentCpuMs: agentCpu,
          },
          noopReconcile: {
            ...noop,
            ratio: round(median(tulleNoop) / median(iprouteNoop), 3),
            tulleRunsMs: tulleNoop.map((x) => round(x, 2)),
            iprouteRunsMs: iprouteNoop.map((x) => round(x, 2)),
            kernelWrites: writes,
            restartToReadyMs: readyMs,
            warmMs,
            warmRuns,
            warmRatio: round(warmMs / median(iprouteNoop), 3),
          },
          memory: {
            idleRssMB: idle.rssMB,
            rssMB: programmed[0]!.rssMB,
            rssRunsMB: programmed.map((m) => m.rssMB),
            peakRssMB: Math.max(...programmed.map((m) => m.peakMB)),
            afterRestartRssMB: afterRestart,
            ...heap,
          },
          lab: state.name,
        };
      } finally {
        observer.close();
        await registry.close();
        scratch.remove();
      }
    }),
  );
}

/**
 * The agent's /metrics once it has run its post-bulk memory collection (src/base/memory.ts), which N peers' 3N
 * writes call for when 3N reaches the threshold: so the heap figures read from it are the live heap, and a quick
 * run shows that the collection runs at all. Below the threshold: at once.
 */
async function metricsAfterCollection(ns: string, n: number): Promise<string> {
  let metrics = (await probeAgent(ns)).metrics;
  if (3 * n < BULK_GC_DEFAULTS.minEntries) return metrics;
  await waitFor(
    async () => {
      metrics = (await probeAgent(ns)).metrics;
      return (metricValue(metrics, 'tulle_memory_collections_total') ?? 0) >= 1;
    },
    60_000,
    `the agent's memory collection after programming ${n} peers (tulle_memory_collections_total >= 1)`,
    500,
  );
  return metrics;
}

/** The V8 heap figures of prom-client's default metrics, in MiB. */
function heapOf(metrics: string): { heapUsedMB: number; heapTotalMB: number; externalMB: number } {
  const mb = (name: string): number => round((metricValue(metrics, name) ?? NaN) / 2 ** 20, 1);
  return {
    heapUsedMB: mb('tulle_nodejs_heap_size_used_bytes'),
    heapTotalMB: mb('tulle_nodejs_heap_size_total_bytes'),
    externalMB: mb('tulle_nodejs_external_memory_bytes'),
  };
}

function vtepIP(p: PeerEntries): string {
  return formatIPv4(parseCidr4(p.subnet).network);
}

/**
 * Pause the agent, write every lease, resume it; resolves with the ms from the resume until the kernel announced
 * all 3N entries, and the CPU this process used meanwhile. The agent is resumed whatever happens.
 */
async function programWithAgent(
  pid: number,
  registry: Registry,
  observer: PeerObserver,
  ns: string,
  peers: readonly SyntheticPeer[],
  keys: readonly string[],
): Promise<{ ms: number; observerCpuMs: number; agentCpuMs: number }> {
  observer.reset();
  process.kill(pid, 'SIGSTOP');
  let resumedAt: number;
  let cpuAtResume: NodeJS.CpuUsage;
  let agentCpuAtResume: number;
  try {
    for (const p of peers) await registry.put(p.key, p.value, { ttlSeconds: LEASE_TTL_SECONDS });
  } finally {
    cpuAtResume = process.cpuUsage();
    agentCpuAtResume = sumCpuMs([pid]);
    resumedAt = performance.now();
    process.kill(pid, 'SIGCONT');
  }
  const doneAt = await observer.complete(ns, keys, 300_000);
  const cpu = process.cpuUsage(cpuAtResume);
  const agentCpuMs = sumCpuMs([pid]) - agentCpuAtResume;
  if (observer.overflowed(ns)) throw new Error(`netlink events were dropped in ${ns}; the time is not trustworthy`);
  return { ms: doneAt - resumedAt, observerCpuMs: (cpu.user + cpu.system) / 1000, agentCpuMs };
}

/** Delete every synthetic lease and wait until the agent has removed all their entries. */
async function removeAll(registry: Registry, peers: readonly SyntheticPeer[], ns: string): Promise<void> {
  for (const p of peers) await registry.delete(p.key);
  await waitFor(
    async () => {
      const c = await counts(ns);
      return c.routes === 0 && c.neighbors === 0 && c.fdb === 0;
    },
    300_000,
    `the agent to remove ${peers.length} peers`,
    200,
  );
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const quick = process.argv.includes('--quick');
  run({ quick })
    .then((r) => {
      for (const x of r.rows)
        console.log(
          `${NAME} ${x.size} ${x.metric}: tulle ${x.figure} ${x.unit}, ${x.baselineLabel} ${x.baseline} ${x.unit}, ratio ${x.ratio} (${x.goal.text}: ${x.met ? 'met' : 'NOT met'})`,
        );
      for (const note of r.notes) console.log(`${NAME} ${note}`);
    })
    .catch((err) => {
      console.error(`${NAME}: ${err instanceof Error ? err.message : String(err)}`);
      process.exitCode = 1;
    });
}
