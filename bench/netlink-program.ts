/**
 * Benchmark: program N peers onto a VTEP the way the agent does (per peer one neighbour, one FDB entry and one
 * onlink route on flannel.1) and dump all three tables back, with tulle's netlink client and, in the same run, with
 * `ip -batch` + `bridge -batch` + `ip -j`/`bridge -j` dumps doing the same. Each side gets a fresh namespace per
 * repetition; both end states are checked to hold exactly the N peers. Goal: tulle's time / iproute2's <= 1.0.
 *
 *   node dist/bench/netlink-program.js [--quick]     (writes bench/results/netlink-program.json)
 */
import { writeFileSync, mkdirSync } from 'node:fs';
import { cpus, release, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { performance } from 'node:perf_hooks';
import { run as runCommand, runJson } from '../src/base/exec.js';
import { createNetns, deleteNetns, deleteNetnsSync } from '../src/netns/netns.js';
import { NetlinkClient, TULLE_ROUTE_PROTOCOL, type NetlinkOp } from '../src/netlink/index.js';
import { median, round } from './common.js';

export const NAME = 'netlink-program';
const GOAL = 1.0;
const VTEP = 'flannel.1';
const RESULT_FILE = fileURLToPath(new URL(`../../bench/results/${NAME}.json`, import.meta.url));

export interface Peer {
  subnet: string;
  vtepIP: string;
  mac: string;
  publicIP: string;
}

/** Peer i: subnet 10.64.0.0/24 + i, VTEP MAC 02:54:xx:xx:xx:xx, public IP in 198.18.0.0/15 (RFC 2544's range). */
export function peers(n: number): Peer[] {
  return Array.from({ length: n }, (_, i) => {
    const net = `10.${64 + (i >> 8)}.${i & 255}`;
    const m = i + 1;
    return {
      subnet: `${net}.0/24`,
      vtepIP: `${net}.0`,
      mac: `02:54:00:${((m >> 16) & 255).toString(16).padStart(2, '0')}:${((m >> 8) & 255).toString(16).padStart(2, '0')}:${(m & 255).toString(16).padStart(2, '0')}`,
      publicIP: `198.${18 + (m >> 16)}.${(m >> 8) & 255}.${m & 255}`,
    };
  });
}

const live = new Set<string>();
process.on('exit', () => {
  for (const ns of live) deleteNetnsSync(ns);
});

/** A host-like namespace: an underlay `eth0` (one end of a veth pair, up, 192.0.2.11/24) and an up VTEP. */
async function hostNamespace(label: string): Promise<string> {
  const ns = `t-bench-${process.pid}-${randomBytes(2).toString('hex')}-${label}`;
  await createNetns(ns);
  live.add(ns);
  const ip = (...args: string[]) => runCommand(['ip', '-n', ns, ...args]);
  await ip('link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0p');
  await ip('addr', 'add', '192.0.2.11/24', 'dev', 'eth0');
  await ip('link', 'set', 'eth0', 'up');
  await ip('link', 'set', 'eth0p', 'up');
  await ip('link', 'add', VTEP, 'type', 'vxlan', 'id', '1', 'local', '192.0.2.11', 'dev', 'eth0', 'dstport', '8472', 'nolearning');
  await ip('link', 'set', VTEP, 'up');
  return ns;
}

async function dropNamespace(ns: string): Promise<void> {
  await deleteNetns(ns);
  live.delete(ns);
}

interface Dumped {
  neighbors: number;
  fdb: number;
  routes: number;
}

/** tulle: open a client, one pipelined batch (neighbour, FDB, route per peer, the agent's order), three dumps. */
async function programWithTulle(ns: string, list: Peer[]): Promise<{ ms: number; dumped: Dumped }> {
  const ops: NetlinkOp[] = [];
  const started = performance.now();
  const nl = await NetlinkClient.open({ netns: ns });
  try {
    for (const p of list) {
      ops.push({ op: 'replaceNeighbor', args: { dev: VTEP, ip: p.vtepIP, mac: p.mac, state: 'permanent' } });
      ops.push({ op: 'replaceFdb', args: { dev: VTEP, mac: p.mac, dst: p.publicIP, self: true, permanent: true } });
      ops.push({ op: 'replaceRoute', args: { dst: p.subnet, via: p.vtepIP, dev: VTEP, onlink: true, protocol: TULLE_ROUTE_PROTOCOL } });
    }
    const results = await nl.batch(ops);
    const failed = results.find((r) => !r.ok);
    if (failed && !failed.ok) throw failed.error;
    const [neighbors, fdb, routes] = await Promise.all([nl.listNeighbors({ dev: VTEP }), nl.listFdb({ dev: VTEP }), nl.listRoutes({ dev: VTEP })]);
    const ms = performance.now() - started;
    return { ms, dumped: { neighbors: neighbors.length, fdb: fdb.length, routes: routes.length } };
  } finally {
    nl.close();
  }
}

/** iproute2: the same commands through `ip -batch` and `bridge -batch`, then the JSON dumps, parsed. */
async function programWithIproute(ns: string, list: Peer[], dir: string): Promise<{ ms: number; dumped: Dumped }> {
  const ipFile = join(dir, `${ns}.ip`);
  const bridgeFile = join(dir, `${ns}.bridge`);
  writeFileSync(
    ipFile,
    list
      .map(
        (p) =>
          `neigh replace ${p.vtepIP} lladdr ${p.mac} dev ${VTEP} nud permanent\nroute replace ${p.subnet} via ${p.vtepIP} dev ${VTEP} onlink proto ${TULLE_ROUTE_PROTOCOL}\n`,
      )
      .join(''),
  );
  writeFileSync(bridgeFile, list.map((p) => `fdb replace ${p.mac} dev ${VTEP} dst ${p.publicIP} self permanent\n`).join(''));
  const started = performance.now();
  await runCommand(['ip', '-n', ns, '-batch', ipFile]);
  await runCommand(['bridge', '-n', ns, '-batch', bridgeFile]);
  const [neighbors, fdb, routes] = await Promise.all([
    runJson<unknown[]>(['ip', '-n', ns, '-j', 'neigh', 'show', 'dev', VTEP]),
    runJson<unknown[]>(['bridge', '-n', ns, '-j', 'fdb', 'show', 'dev', VTEP]),
    runJson<unknown[]>(['ip', '-n', ns, '-j', 'route', 'show', 'dev', VTEP]),
  ]);
  const ms = performance.now() - started;
  return { ms, dumped: { neighbors: neighbors.length, fdb: fdb.length, routes: routes.length } };
}

export interface SizeResult {
  size: number;
  /** Median over the repetitions, in milliseconds. */
  tulleMs: number;
  iprouteMs: number;
  ratio: number;
  goal: number;
  met: boolean;
  repetitions: number;
}

export interface BenchResult {
  name: string;
  date: string;
  machine: { cores: number; kernel: string; node: string };
  quick: boolean;
  sizes: number[];
  results: SizeResult[];
  /** Both sides ended with exactly N neighbours, N FDB entries and N routes on the VTEP, every time. */
  verified: boolean;
}

function checkDumped(side: string, dumped: Dumped, n: number): void {
  // The VTEP also holds the kernel's own IPv6 multicast neighbour entries, which `ip neigh` and tulle hide alike.
  if (dumped.neighbors !== n || dumped.fdb !== n || dumped.routes !== n) {
    throw new Error(`${side}: expected ${n} neighbours, FDB entries and routes, dumped ${JSON.stringify(dumped)}`);
  }
}

export interface RunOptions {
  quick: boolean;
  /** Where to write the result JSON (default: bench/results/netlink-program.json for full runs, nowhere for quick). */
  output?: string;
  /** Called with each side's namespace after it was programmed and dumped, before it is deleted (for tests). */
  inspect?: (ns: string, side: 'tulle' | 'iproute2', peers: Peer[]) => Promise<void>;
}

/**
 * Run the benchmark. A full run writes bench/results/netlink-program.json; `quick` is a seconds-long smoke run with
 * tiny sizes (for `npm test`) that writes only where `output` says, so it never replaces the real figures.
 */
export async function run(options: RunOptions): Promise<BenchResult> {
  const sizes = options.quick ? [20, 50] : [1000, 5000];
  // The agent is a long-running process: measure the steady state, after one untimed round per size in which
  // V8 compiles tulle's hot paths (and iproute2's binaries and the kernel's caches get warm too).
  const warmups = options.quick ? 0 : 1;
  const repetitions = options.quick ? 1 : 7;
  const dir = tmpdir();
  const results: SizeResult[] = [];
  for (const size of sizes) {
    const list = peers(size);
    const tulle: number[] = [];
    const iproute: number[] = [];
    for (let rep = -warmups; rep < repetitions; rep++) {
      const [a, b] = await Promise.all([hostNamespace('tulle'), hostNamespace('ip')]);
      try {
        // Alternate who goes first, so neither side always runs on a warmer (or busier) machine.
        const sides = [
          async () => {
            const t = await programWithTulle(a, list);
            checkDumped('tulle', t.dumped, size);
            await options.inspect?.(a, 'tulle', list);
            if (rep >= 0) tulle.push(t.ms);
          },
          async () => {
            const i = await programWithIproute(b, list, dir);
            checkDumped('iproute2', i.dumped, size);
            await options.inspect?.(b, 'iproute2', list);
            if (rep >= 0) iproute.push(i.ms);
          },
        ];
        if (rep % 2 !== 0) sides.reverse();
        for (const side of sides) await side();
      } finally {
        await Promise.all([dropNamespace(a), dropNamespace(b)]);
      }
    }
    const tulleMs = median(tulle);
    const iprouteMs = median(iproute);
    const ratio = tulleMs / iprouteMs;
    results.push({ size, tulleMs: round(tulleMs), iprouteMs: round(iprouteMs), ratio: round(ratio, 3), goal: GOAL, met: ratio <= GOAL, repetitions });
  }
  const result: BenchResult = {
    name: NAME,
    date: new Date().toISOString(),
    machine: { cores: cpus().length, kernel: release(), node: process.version },
    quick: options.quick,
    sizes,
    results,
    verified: true,
  };
  const output = options.output ?? (options.quick ? undefined : RESULT_FILE);
  if (output) {
    mkdirSync(dirname(output), { recursive: true });
    writeFileSync(output, JSON.stringify(result, null, 2) + '\n');
  }
  return result;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const quick = process.argv.includes('--quick');
  run({ quick })
    .then((r) => {
      for (const s of r.results) {
        console.log(
          `${NAME} N=${s.size}: tulle ${s.tulleMs} ms, iproute2 ${s.iprouteMs} ms, ratio ${s.ratio} (goal <= ${s.goal}: ${s.met ? 'met' : 'NOT met'})`,
        );
      }
      if (!quick) console.log(`wrote ${RESULT_FILE}`);
    })
    .catch((err) => {
      console.error(`${NAME}: ${err instanceof Error ? err.message : String(err)}`);
      process.exitCode = 1;
    });
}
