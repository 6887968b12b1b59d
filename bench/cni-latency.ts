/**
 * Benchmark: latency of one CNI ADD, DEL and STATUS as a runtime sees it: a fresh plugin process per call, executed
 * (fork + exec, CNI_* environment, config on stdin) and timed from spawn to exit by a long-lived executor inside
 * the host namespace (bench/plugin-runner.ts), as containerd runs plugins. In the same run, taking turns pod by
 * pod, so a busy machine slows all sides alike:
 *   resident   tulle's compiled shim handing the call to a CNI server (the agent's src/cni/server.ts) in that host
 *   fallback   the same shim with no server, so it runs the Node plugin (bin/tulle-cni), as before the server
 *   reference  the reference `bridge` + `host-local` plugins doing the same attachment (bridge cni0 with the
 *              gateway, veth pair, pod address, route to the cluster network, host-local's files)
 * Goals: the resident path's ADD and DEL p50 at most the reference's (ratio <= 1.0) and p99 at most twice its p99;
 * STATUS p50 <= 5 ms (the reference plugins have no STATUS). The fallback keeps its old goal (p50 within 2x).
 *
 *   node dist/bench/cni-latency.js [--quick]     (a full run writes bench/results/cni-latency.json)
 */
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { cpus, loadavg, release, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { runJson } from '../src/base/exec.js';
import { createNetns, deleteNetns, deleteNetnsSync } from '../src/netns/netns.js';
import type { CniInvocation } from '../src/cni/invoke.js';
import { SHIM, startCniServer } from '../test/helpers/cni-paths.js';
import { percentiles, round, type Percentiles } from './common.js';
import { PluginRunner } from './plugin-runner.js';

export const NAME = 'cni-latency';
/** Resident path: p50 ratio to the reference, p99 ratio to the reference's p99. */
const GOAL = 1.0;
const GOAL_P99 = 2.0;
/** The Node plugin's goal before the resident path existed. */
const FALLBACK_GOAL = 2.0;
const STATUS_GOAL_MS = 5;
const REFERENCE_DIR = '/usr/lib/cni';
const RESULT_FILE = fileURLToPath(new URL(`../../bench/results/${NAME}.json`, import.meta.url));

export interface CommandResult {
  /** The resident path (shim + CNI server). */
  tulle: Percentiles;
  /** The shim falling back to the Node plugin. */
  fallback: Percentiles;
  reference: Percentiles;
  /** tulle p50 / reference p50, tulle p99 / reference p99. */
  ratio: number;
  ratioP99: number;
  goal: number;
  goalP99: number;
  fallbackRatio: number;
  fallbackGoal: number;
  met: boolean;
}

export interface StatusResult {
  tulle: Percentiles;
  fallback: Percentiles;
  goalMs: number;
  met: boolean;
}

export interface BenchResult {
  name: string;
  date: string;
  /** loadAverage: the 1-minute load when the run started (the machine is shared; a busy one slows Node's start-up most). */
  machine: { cores: number; kernel: string; node: string; loadAverage: number };
  quick: boolean;
  sizes: { pods: number };
  results: { ADD: CommandResult; DEL: CommandResult; STATUS: StatusResult };
  /**
   * The floor under any plugin written for Node: `node -e 0` run by the same executor, in the same turns. The
   * reference's whole ADD is a Go binary's start plus the work; the fallback's is this plus module loading plus
   * the work.
   */
  nodeStartup: Percentiles;
  /** The floor under any plugin: `true` run by the same executor (fork + exec + wait), in the same turns. */
  execFloor: Percentiles;
  goal: string;
  met: boolean;
  /** Every host was checked to hold every pod after the ADDs and nothing (no veth, no address file) after the DELs. */
  verified: boolean;
}

export interface RunOptions {
  quick: boolean;
  /** Where to write the result JSON (default: bench/results/cni-latency.json for full runs, nowhere for quick). */
  output?: string;
}

const live = new Set<string>();
process.on('exit', () => {
  for (const ns of live) deleteNetnsSync(ns);
});

async function namespace(label: string): Promise<string> {
  const ns = `t-bench-${process.pid}-${randomBytes(2).toString('hex')}-${label}`;
  await createNetns(ns);
  live.add(ns);
  return ns;
}

/** One call through `runner`, as a runtime makes it; the time is the executor's, spawn to exit. */
async function timed(runner: PluginRunner, inv: CniInvocation, what: string): Promise<number> {
  const env: Record<string, string> = { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', CNI_COMMAND: inv.command, ...inv.env };
  if (inv.containerId !== undefined) env.CNI_CONTAINERID = inv.containerId;
  if (inv.netns !== undefined) env.CNI_NETNS = inv.netns;
  if (inv.ifName !== undefined) env.CNI_IFNAME = inv.ifName;
  if (inv.path !== undefined) env.CNI_PATH = inv.path.join(':');
  const out = await runner.call({ plugin: inv.plugin!, env, stdin: JSON.stringify(inv.config) });
  if (out.exitCode !== 0) throw new Error(`${what}: exit ${out.exitCode}: ${out.stdout}${out.stderr}`);
  return out.ms;
}

/** Links other than lo and cni0, and address files, left in a host: both must be empty after the DELs. */
async function leftovers(host: string, netDir: string): Promise<string[]> {
  const links = ((await runJson<Array<{ ifname: string }>>(['ip', '-n', host, '-j', 'link', 'show'])) ?? [])
    .map((l) => l.ifname)
    .filter((n) => n !== 'lo' && n !== 'cni0');
  const files = existsSync(netDir) ? readdirSync(netDir).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f)) : [];
  return [...links.map((l) => `link ${l}`), ...files.map((f) => `address file ${f}`)];
}

/**
 * Run the benchmark. A full run (60 pods per side) writes bench/results/cni-latency.json; `quick` (8 pods) is a
 * smoke run for `npm test` that writes only where `output` says, so it never replaces the real figures.
 */
export async function run(options: RunOptions): Promise<BenchResult> {
  for (const p of ['bridge', 'host-local']) {
    if (!existsSync(join(REFERENCE_DIR, p)))
      throw new Error(`${REFERENCE_DIR}/${p} is missing: install containernetworking-plugins (bash scripts/install-deps.sh)`);
  }
  if (!existsSync(SHIM)) throw new Error(`${SHIM} is missing: build it with npm ci (or node-gyp rebuild)`);
  const pods = options.quick ? 8 : 60;
  const loadAverage = round(loadavg()[0] ?? 0, 2);
  const dir = mkdtempSync(join(tmpdir(), 'tulle-cni-bench-'));
  const created: string[] = [];
  const cleanups: Array<() => unknown> = [];
  try {
    const subnetFile = join(dir, 'subnet.env');
    writeFileSync(subnetFile, 'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n');
    const [tulleHost, fallbackHost, refHost] = await Promise.all([namespace('th'), namespace('fh'), namespace('rh')]);
    created.push(tulleHost, fallbackHost, refHost);
    const podNs: Array<[string, string, string]> = [];
    for (let i = 0; i < pods; i++) {
      const trio = await Promise.all([namespace(`t${i}`), namespace(`f${i}`), namespace(`r${i}`)]);
      created.push(...trio);
      podNs.push(trio);
    }
    // The agent's CNI server, alone, in the resident side's host namespace.
    const server = await startCniServer({ after: (fn) => void cleanups.push(fn) }, tulleHost);
    const runners = { tulle: new PluginRunner(tulleHost), fallback: new PluginRunner(fallbackHost), reference: new PluginRunner(refHost) };
    cleanups.push(() => Promise.all(Object.values(runners).map((r) => r.close())));
    const resident = { plugin: SHIM, env: { TULLE_CNI_SOCKET: server.socket } };
    const fallback = { plugin: SHIM, env: { TULLE_CNI_SOCKET: join(dir, 'no-agent.sock') } };
    // The same attachment on every side: cni0 with 10.244.1.1/24, MTU 1450, a route to 10.244.0.0/16 via the gateway.
    const tulleConfig = (name: string) => ({ cniVersion: '1.0.0', name, type: 'tulle', mode: 'bridge', subnetFile, dataDir: join(dir, 'ipam') });
    const refConfig = {
      cniVersion: '1.0.0',
      name: 'bench-ref',
      type: 'bridge',
      bridge: 'cni0',
      isGateway: true,
      mtu: 1450,
      ipam: {
        type: 'host-local',
        dataDir: join(dir, 'ipam'),
        ranges: [[{ subnet: '10.244.1.0/24', gateway: '10.244.1.1' }]],
        routes: [{ dst: '10.244.0.0/16' }],
      },
    };
    const call = {
      tulle: (command: 'ADD' | 'DEL', i: number): CniInvocation => ({
        command,
        containerId: `bench-${i}`,
        ifName: 'eth0',
        netns: `/run/netns/${podNs[i]![0]}`,
        config: tulleConfig('bench-tulle'),
        path: [REFERENCE_DIR],
        hostNetns: tulleHost,
        ...resident,
      }),
      fallback: (command: 'ADD' | 'DEL', i: number): CniInvocation => ({
        command,
        containerId: `bench-${i}`,
        ifName: 'eth0',
        netns: `/run/netns/${podNs[i]![1]}`,
        config: tulleConfig('bench-fallback'),
        path: [REFERENCE_DIR],
        hostNetns: fallbackHost,
        ...fallback,
      }),
      reference: (command: 'ADD' | 'DEL', i: number): CniInvocation => ({
        command,
        containerId: `bench-${i}`,
        ifName: 'eth0',
        netns: `/run/netns/${podNs[i]![2]}`,
        config: refConfig,
        path: [REFERENCE_DIR],
        plugin: join(REFERENCE_DIR, 'bridge'),
        hostNetns: refHost,
      }),
    };
    const status = {
      tulle: (): CniInvocation => ({ command: 'STATUS', config: { ...tulleConfig('bench-tulle'), cniVersion: '1.1.0' }, hostNetns: tulleHost, ...resident }),
      fallback: (): CniInvocation => ({
        command: 'STATUS',
        config: { ...tulleConfig('bench-fallback'), cniVersion: '1.1.0' },
        hostNetns: fallbackHost,
        ...fallback,
      }),
    };

    // One untimed pod each first: the page cache holds every executable and the bridges exist, as on a busy node.
    type Side = 'tulle' | 'fallback' | 'reference';
    const empty = () => ({ tulle: [] as number[], fallback: [] as number[], reference: [] as number[] });
    const samples = { ADD: empty(), DEL: empty(), STATUS: empty() };
    const nodeStartup: number[] = [];
    const execFloor: number[] = [];
    const sides: Side[] = ['tulle', 'fallback', 'reference'];
    for (const command of ['ADD', 'DEL'] as const) {
      for (let i = 0; i < pods; i++) {
        // Rotate who goes first, so no side always runs right after another's work.
        const order = [...sides.slice(i % 3), ...sides.slice(0, i % 3)];
        for (const side of order) {
          const ms = await timed(runners[side], call[side](command, i), `${side} ${command} ${i}`);
          if (i > 0) samples[command][side].push(ms);
        }
        if (command === 'ADD') {
          for (const side of ['tulle', 'fallback'] as const) {
            const ms = await timed(runners[side], status[side](), `${side} STATUS ${i}`);
            if (i > 0) samples.STATUS[side].push(ms);
          }
          if (i > 0) {
            const node = await runners.tulle.call({ plugin: process.execPath, args: ['-e', '0'], env: {}, stdin: '' });
            const floor = await runners.tulle.call({ plugin: 'true', env: { PATH: process.env.PATH ?? '/usr/bin:/bin' }, stdin: '' });
            if (node.exitCode !== 0 || floor.exitCode !== 0)
              throw new Error(`floors: node -e 0 exit ${node.exitCode}, true exit ${floor.exitCode}: ${node.stderr}${floor.stderr}`);
            nodeStartup.push(node.ms);
            execFloor.push(floor.ms);
          }
        }
      }
    }
    const left = [
      ...(await leftovers(tulleHost, join(dir, 'ipam', 'bench-tulle'))).map((x) => `resident: ${x}`),
      ...(await leftovers(fallbackHost, join(dir, 'ipam', 'bench-fallback'))).map((x) => `fallback: ${x}`),
      ...(await leftovers(refHost, join(dir, 'ipam', 'bench-ref'))).map((x) => `reference: ${x}`),
    ];
    if (left.length > 0) throw new Error(`left behind after the DELs: ${left.join(', ')}`);
    // The resident figures must be the server's work: it logged every timed call.
    const served = server.log().filter((l) => l.includes('"cni request"')).length;
    if (served < 3 * (pods - 1)) throw new Error(`the CNI server answered ${served} requests, fewer than the ${3 * (pods - 1)} timed resident calls`);

    const summarize = (c: 'ADD' | 'DEL'): CommandResult => {
      const t = percentiles(samples[c].tulle);
      const f = percentiles(samples[c].fallback);
      const r = percentiles(samples[c].reference);
      const ratio = round(t.p50 / r.p50, 2);
      const ratioP99 = round(t.p99 / r.p99, 2);
      const fallbackRatio = round(f.p50 / r.p50, 2);
      return {
        tulle: t,
        fallback: f,
        reference: r,
        ratio,
        ratioP99,
        goal: GOAL,
        goalP99: GOAL_P99,
        fallbackRatio,
        fallbackGoal: FALLBACK_GOAL,
        met: t.p50 <= GOAL * r.p50 && t.p99 <= GOAL_P99 * r.p99,
      };
    };
    const st = percentiles(samples.STATUS.tulle);
    const results = {
      ADD: summarize('ADD'),
      DEL: summarize('DEL'),
      STATUS: { tulle: st, fallback: percentiles(samples.STATUS.fallback), goalMs: STATUS_GOAL_MS, met: st.p50 <= STATUS_GOAL_MS },
    };
    const result: BenchResult = {
      name: NAME,
      date: new Date().toISOString(),
      machine: { cores: cpus().length, kernel: release(), node: process.version, loadAverage },
      quick: options.quick,
      sizes: { pods: pods - 1 },
      results,
      nodeStartup: percentiles(nodeStartup),
      execFloor: percentiles(execFloor),
      goal: `resident tulle-cni (shim + agent) ADD and DEL p50 <= the reference bridge + host-local's (ratio <= ${GOAL}), p99 <= ${GOAL_P99}x; STATUS p50 <= ${STATUS_GOAL_MS} ms`,
      met: results.ADD.met && results.DEL.met && results.STATUS.met,
      verified: true,
    };
    const output = options.output ?? (options.quick ? undefined : RESULT_FILE);
    if (output) {
      mkdirSync(dirname(output), { recursive: true });
      writeFileSync(output, JSON.stringify(result, null, 2) + '\n');
    }
    return result;
  } finally {
    for (const fn of cleanups.reverse()) await fn();
    for (const ns of created) {
      await deleteNetns(ns);
      live.delete(ns);
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const quick = process.argv.includes('--quick');
  run({ quick })
    .then((r) => {
      for (const c of ['ADD', 'DEL'] as const) {
        const x = r.results[c];
        console.log(
          `${NAME} ${c} (${r.sizes.pods} pods): resident p50 ${x.tulle.p50} ms p99 ${x.tulle.p99} ms; fallback p50 ${x.fallback.p50} ms p99 ${x.fallback.p99} ms; ` +
            `reference p50 ${x.reference.p50} ms p99 ${x.reference.p99} ms; ratio ${x.ratio}, p99 ratio ${x.ratioP99} (goal <= ${x.goal}, <= ${x.goalP99}: ${x.met ? 'met' : 'NOT met'}); fallback ratio ${x.fallbackRatio}`,
        );
      }
      const s = r.results.STATUS;
      console.log(
        `${NAME} STATUS: resident p50 ${s.tulle.p50} ms p99 ${s.tulle.p99} ms; fallback p50 ${s.fallback.p50} ms (goal <= ${s.goalMs} ms: ${s.met ? 'met' : 'NOT met'})`,
      );
      console.log(`${NAME} floors: node -e 0 p50 ${r.nodeStartup.p50} ms; true p50 ${r.execFloor.p50} ms`);
      if (!quick) console.log(`wrote ${RESULT_FILE}`);
    })
    .catch((err) => {
      console.error(`${NAME}: ${err instanceof Error ? err.message : String(err)}`);
      process.exitCode = 1;
    });
}
