/**
 * Benchmark: latency of one CNI ADD and one CNI DEL as a runtime sees it (a fresh plugin process per call, run in
 * the host namespace with `ip netns exec`, config on stdin), tulle-cni in bridge mode against the reference
 * `bridge` + `host-local` plugins doing the same attachment (bridge cni0 with the gateway, veth pair, pod address,
 * route to the cluster network, host-local's files), in the same run. The two sides take turns pod by pod, so a
 * busy machine slows both alike. Goal for now: tulle's p50 within 2x of the reference's, for ADD and for DEL.
 *
 *   node dist/bench/cni-latency.js [--quick]     (a full run writes bench/results/cni-latency.json)
 */
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { cpus, loadavg, release, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { performance } from 'node:perf_hooks';
import { run as runCommand, runJson } from '../src/base/exec.js';
import { createNetns, deleteNetns, deleteNetnsSync } from '../src/netns/netns.js';
import { cniInvoke, type CniInvocation } from '../src/cni/invoke.js';
import { percentiles, round, type Percentiles } from './common.js';

export const NAME = 'cni-latency';
const GOAL = 2.0;
const REFERENCE_DIR = '/usr/lib/cni';
const RESULT_FILE = fileURLToPath(new URL(`../../bench/results/${NAME}.json`, import.meta.url));

export interface CommandResult {
  tulle: Percentiles;
  reference: Percentiles;
  /** tulle p50 / reference p50 (and the same for p99). */
  ratio: number;
  ratioP99: number;
  goal: number;
  met: boolean;
}

export interface BenchResult {
  name: string;
  date: string;
  /** loadAverage: the 1-minute load when the run started (the machine is shared; a busy one slows Node's start-up most). */
  machine: { cores: number; kernel: string; node: string; loadAverage: number };
  quick: boolean;
  sizes: { pods: number };
  results: { ADD: CommandResult; DEL: CommandResult };
  /**
   * The floor under any plugin written for Node: `ip netns exec HOST node -e 0`, measured in the same turns. The
   * reference's whole ADD is a Go binary's start plus the work; tulle's is this plus module loading plus the work.
   */
  nodeStartup: Percentiles;
  goal: string;
  met: boolean;
  /** Both hosts were checked to hold every pod after the ADDs and nothing (no veth, no address file) after the DELs. */
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



async function timed(inv: CniInvocation, what: string): Promise<number> {
  const started = performance.now();
  const out = await cniInvoke(inv);
  const ms = performance.now() - started;
  if (!out.ok) throw new Error(`${what}: exit ${out.exitCode}: ${out.stdout}${out.stderr}`);
  return ms;
}

/** Links other than lo and cni0, and address files, left in a host: both must be empty after the DELs. */
async function leftovers(host: string, netDir: string): Promise<string[]> {
  const links = ((await runJson<Array<{ ifname: string }>>(['ip', '-n', host, '-j', 'link', 'show'])) ?? []).map((l) => l.ifname).filter((n) => n !== 'lo' && n !== 'cni0');
  const files = existsSync(netDir) ? readdirSync(netDir).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f)) : [];
  return [...links.map((l) => `link ${l}`), ...files.map((f) => `address file ${f}`)];
}

/**
 * Run the benchmark. A full run (60 pods per side) writes bench/results/cni-latency.json; `quick` (8 pods) is a
 * smoke run for `npm test` that writes only where `output` says, so it never replaces the real figures.
 */
export async function run(options: RunOptions): Promise<BenchResult> {
  for (const p of ['bridge', 'host-local']) {
    if (!existsSync(join(REFERENCE_DIR, p))) throw new Error(`${REFERENCE_DIR}/${p} is missing: install containernetworking-plugins (bash scripts/install-deps.sh)`);
  }
  const pods = options.quick ? 8 : 60;
  const loadAverage = round(loadavg()[0] ?? 0, 2);
  const dir = mkdtempSync(join(tmpdir(), 'tulle-cni-bench-'));
  const created: string[] = [];
  try {
    const subnetFile = join(dir, 'subnet.env');
    writeFileSync(subnetFile, 'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n');
    const [tulleHost, refHost] = await Promise.all([namespace('th'), namespace('rh')]);
    created.push(tulleHost, refHost);
    const podNs: Array<[string, string]> = [];
    for (let i = 0; i < pods; i++) {
      const pair = await Promise.all([namespace(`t${i}`), namespace(`r${i}`)]);
      created.push(...pair);
      podNs.push(pair);
    }
    // The same attachment on both sides: cni0 with 10.244.1.1/24, MTU 1450, a route to 10.244.0.0/16 via the gateway.
    const tulleConfig = { cniVersion: '1.0.0', name: 'bench-tulle', type: 'tulle', mode: 'bridge', subnetFile, dataDir: join(dir, 'ipam') };
    const refConfig = {
      cniVersion: '1.0.0',
      name: 'bench-ref',
      type: 'bridge',
      bridge: 'cni0',
      isGateway: true,
      mtu: 1450,
      ipam: { type: 'host-local', dataDir: join(dir, 'ipam'), ranges: [[{ subnet: '10.244.1.0/24', gateway: '10.244.1.1' }]], routes: [{ dst: '10.244.0.0/16' }] },
    };
    const tulle = (command: 'ADD' | 'DEL', i: number): CniInvocation => ({ command, containerId: `bench-${i}`, ifName: 'eth0', netns: `/run/netns/${podNs[i]![0]}`, config: tulleConfig, path: [REFERENCE_DIR], hostNetns: tulleHost });
    const ref = (command: 'ADD' | 'DEL', i: number): CniInvocation => ({ command, containerId: `bench-${i}`, ifName: 'eth0', netns: `/run/netns/${podNs[i]![1]}`, config: refConfig, path: [REFERENCE_DIR], plugin: join(REFERENCE_DIR, 'bridge'), hostNetns: refHost });

    // One untimed pod each first: the page cache holds both executables and the bridges exist, as on a busy node.
    const samples = { ADD: { tulle: [] as number[], reference: [] as number[] }, DEL: { tulle: [] as number[], reference: [] as number[] } };
    const nodeStartup: number[] = [];
    for (const command of ['ADD', 'DEL'] as const) {
      for (let i = 0; i < pods; i++) {
        const sides = [
          async () => {
            const ms = await timed(tulle(command, i), `tulle ${command} ${i}`);
            if (i > 0) samples[command].tulle.push(ms);
          },
          async () => {
            const ms = await timed(ref(command, i), `reference ${command} ${i}`);
            if (i > 0) samples[command].reference.push(ms);
          },
        ];
        if (i % 2 === 1) sides.reverse();
        for (const side of sides) await side();
        if (command === 'ADD' && i > 0) {
          const started = performance.now();
          await runCommand(['ip', 'netns', 'exec', tulleHost, process.execPath, '-e', '0']);
          nodeStartup.push(performance.now() - started);
        }
      }
    }
    const left = [...(await leftovers(tulleHost, join(dir, 'ipam', 'bench-tulle'))).map((x) => `tulle: ${x}`), ...(await leftovers(refHost, join(dir, 'ipam', 'bench-ref'))).map((x) => `reference: ${x}`)];
    if (left.length > 0) throw new Error(`left behind after the DELs: ${left.join(', ')}`);

    const summarize = (c: 'ADD' | 'DEL'): CommandResult => {
      const t = percentiles(samples[c].tulle);
      const r = percentiles(samples[c].reference);
      const ratio = round(t.p50 / r.p50, 2);
      return { tulle: t, reference: r, ratio, ratioP99: round(t.p99 / r.p99, 2), goal: GOAL, met: ratio <= GOAL };
    };
    const results = { ADD: summarize('ADD'), DEL: summarize('DEL') };
    const result: BenchResult = {
      name: NAME,
      date: new Date().toISOString(),
      machine: { cores: cpus().length, kernel: release(), node: process.version, loadAverage },
      quick: options.quick,
      sizes: { pods: pods - 1 },
      results,
      nodeStartup: percentiles(nodeStartup),
      goal: `tulle-cni p50 within ${GOAL}x of the reference bridge + host-local, for ADD and DEL`,
      met: results.ADD.met && results.DEL.met,
      verified: true,
    };
    const output = options.output ?? (options.quick ? undefined : RESULT_FILE);
    if (output) {
      mkdirSync(dirname(output), { recursive: true });
      writeFileSync(output, JSON.stringify(result, null, 2) + '\n');
    }
    return result;
  } finally {
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
        console.log(`${NAME} ${c} (${r.sizes.pods} pods): tulle p50 ${x.tulle.p50} ms p99 ${x.tulle.p99} ms; reference p50 ${x.reference.p50} ms p99 ${x.reference.p99} ms; ratio ${x.ratio} (goal <= ${x.goal}: ${x.met ? 'met' : 'NOT met'})`);
      }
      console.log(`${NAME} floor: ip netns exec + node -e 0 p50 ${r.nodeStartup.p50} ms`);
      if (!quick) console.log(`wrote ${RESULT_FILE}`);
    })
    .catch((err) => {
      console.error(`${NAME}: ${err instanceof Error ? err.message : String(err)}`);
      process.exitCode = 1;
    });
}
