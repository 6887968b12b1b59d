/**
 * What every benchmark of the suite shares: the machine and tool versions a result was measured with, the rows a
 * result is reported as (goal, figure, baseline, ratio, met), percentiles, result files, and labs that are always
 * removed again. The benchmarks themselves live one per file next to this one; bench/run.ts runs them.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, tmpdir, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { run } from '../src/base/exec.js';
import { hostDir, labDown, labUp, type LabState, type LabUpOptions } from '../src/lab/index.js';

/** The repository's bench/results directory (this file runs from dist/bench/). */
export const RESULTS_DIR = fileURLToPath(new URL('../../bench/results/', import.meta.url));
export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface Machine {
  cores: number;
  cpu: string;
  memoryMB: number;
  kernel: string;
  node: string;
  /** 1-minute load average when the benchmark started: these machines are shared, so it says how busy it was. */
  loadAverage: number;
}

export interface Versions {
  tulle: string;
  iproute2: string;
  tshark: string;
  iperf3: string;
  etcd: string;
  cniPlugins: string;
}

export interface Environment {
  machine: Machine;
  versions: Versions;
}

export function machine(): Machine {
  return {
    cores: cpus().length,
    cpu: cpus()[0]?.model.trim() ?? 'unknown',
    memoryMB: Math.round(totalmem() / 2 ** 20),
    kernel: release(),
    node: process.version,
    loadAverage: round(loadavg()[0] ?? 0, 2),
  };
}

/** First line of a tool's version output, or 'missing' / 'unknown' (a missing tool is reported, not fatal here). */
async function toolVersion(argv: string[], pick: (text: string) => string | undefined = (t) => t.split('\n')[0]?.trim()): Promise<string> {
  try {
    const r = await run(argv, { allowFailure: true, timeoutMs: 10_000 });
    return pick(`${r.stdout}\n${r.stderr}`.trim()) || 'unknown';
  } catch {
    return 'missing';
  }
}

let versionsCache: Promise<Versions> | undefined;

/** Versions of tulle (package version + commit) and of every tool a benchmark runs or compares against. */
export function versions(): Promise<Versions> {
  versionsCache ??= (async () => {
    const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
    const commit = await toolVersion(['git', '-C', REPO_ROOT, 'rev-parse', '--short', 'HEAD']);
    const [iproute2, tshark, iperf3, etcd, cniPlugins] = await Promise.all([
      toolVersion(['ip', '-V'], (t) => /iproute2-[\w.]+/.exec(t)?.[0]),
      toolVersion(['tshark', '-v']),
      toolVersion(['iperf3', '-v']),
      toolVersion(['etcd', '--version']),
      // The plugins print "version unknown" on Debian; the package manager knows.
      toolVersion(['dpkg-query', '-W', '-f', '${Version}', 'containernetworking-plugins'], (t) =>
        /^\d/.test(t) ? `containernetworking-plugins ${t}` : undefined,
      ),
    ]);
    return { tulle: `${pkg.version}${/^[0-9a-f]{4,}$/.test(commit) ? ` (${commit})` : ''}`, iproute2, tshark, iperf3, etcd, cniPlugins };
  })();
  return versionsCache;
}

export async function environment(): Promise<Environment> {
  return { machine: machine(), versions: await versions() };
}

/**
 * One reported figure: what was measured (`figure`), the baseline measured in the same run, their ratio, and the
 * goal, which is on the ratio or on the figure itself. `met` is the goal evaluated on the unrounded numbers.
 */
export interface BenchRow {
  benchmark: string;
  metric: string;
  /** The size this row is for, as text (`5000 peers`, `50 hosts`). */
  size: string;
  figure: number;
  unit: string;
  baseline: number;
  /** What the baseline is (`ip -batch + bridge -batch`). */
  baselineLabel: string;
  ratio: number;
  /** How the ratio is formed (`tulle / iproute2`). */
  ratioLabel: string;
  goal: Goal;
  met: boolean;
}

export interface Goal {
  on: 'ratio' | 'figure';
  op: '<=' | '>=' | '<';
  value: number;
  /** For people: `ratio <= 1.0`, `p99 < 200 ms`. */
  text: string;
}

export function meets(value: number, goal: Pick<Goal, 'op' | 'value'>): boolean {
  switch (goal.op) {
    case '<=':
      return value <= goal.value;
    case '>=':
      return value >= goal.value;
    case '<':
      return value < goal.value;
  }
}

/** Build a row; the ratio is taken as given (each benchmark says which way round it is), `met` is computed. */
export function row(r: Omit<BenchRow, 'met'>): BenchRow {
  const subject = r.goal.on === 'ratio' ? r.ratio : r.figure;
  return { ...r, met: Number.isFinite(subject) && meets(subject, r.goal) };
}

export interface Percentiles {
  p50: number;
  p99: number;
  min: number;
  max: number;
  mean: number;
  samples: number;
}

/** Nearest-rank percentiles (p99 of 49 samples is the largest), rounded to 0.001. */
export function percentiles(samples: readonly number[]): Percentiles {
  if (samples.length === 0) throw new Error('no samples to take percentiles of');
  const s = [...samples].sort((a, b) => a - b);
  const at = (q: number): number => s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
  return {
    p50: round(at(0.5), 3),
    p99: round(at(0.99), 3),
    min: round(s[0]!, 3),
    max: round(s[s.length - 1]!, 3),
    mean: round(s.reduce((a, b) => a + b, 0) / s.length, 3),
    samples: s.length,
  };
}

/**
 * A reading printed to a fixed step. ping prints a round trip under 1 ms in whole microseconds ("time=0.024 ms",
 * the difference of two microsecond timestamps) and longer ones rounded to 10 µs, 100 µs or 1 ms: either way the
 * reading is centred on the true value, within about one step.
 */
export interface SteppedReading {
  value: number;
  step: number;
}

/** "0.024" -> 0.024 in steps of 0.001; "1.23" -> steps of 0.01; "123" -> steps of 1. */
export function steppedReading(text: string): SteppedReading {
  const value = Number(text);
  if (!/^\d+(\.\d+)?$/.test(text) || !Number.isFinite(value)) throw new Error(`not a decimal reading: ${JSON.stringify(text)}`);
  const dot = text.indexOf('.');
  return { value, step: 10 ** -(dot < 0 ? 0 : text.length - dot - 1) };
}

/**
 * Percentiles of stepped readings, each taken as spread evenly over [value - step/2, value + step/2) (the
 * grouped-data median and its kin): a percentile falls inside the step of the readings around it, at the share of
 * them on either side. Nearest-rank on whole microseconds moves only in whole microseconds, 4% of a 25 µs round
 * trip against goals of 2%; this moves with the readings. Rounded to 0.00001 (10 ns in ms); mean of the values.
 */
export function steppedPercentiles(samples: readonly SteppedReading[]): Percentiles {
  if (samples.length === 0) throw new Error('no samples to take percentiles of');
  const n = samples.length;
  let lo = Infinity;
  let hi = -Infinity;
  let min = Infinity;
  let max = -Infinity;
  let sum = 0;
  for (const r of samples) {
    lo = Math.min(lo, r.value - r.step / 2);
    hi = Math.max(hi, r.value + r.step / 2);
    min = Math.min(min, r.value);
    max = Math.max(max, r.value);
    sum += r.value;
  }
  // The share of the spread-out readings below x: piecewise linear and rising, so bisection finds each quantile.
  const below = (x: number): number => {
    let s = 0;
    for (const r of samples) s += Math.min(1, Math.max(0, (x - (r.value - r.step / 2)) / r.step));
    return s / n;
  };
  const quantile = (q: number): number => {
    let a = lo;
    let b = hi;
    for (let i = 0; i < 60 && b - a > 1e-9; i++) {
      const m = (a + b) / 2;
      if (below(m) < q) a = m;
      else b = m;
    }
    return (a + b) / 2;
  };
  return {
    p50: round(quantile(0.5), 5),
    p99: round(quantile(0.99), 5),
    min,
    max,
    mean: round(sum / n, 5),
    samples: n,
  };
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) throw new Error('no samples to take the median of');
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function round(x: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** Write a result as pretty JSON (creating the directory). */
export function writeResult(file: string, result: unknown): void {
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
}

/** Where a benchmark's result goes: the caller's `output`, else bench/results/NAME.json for full runs, nowhere for quick. */
export function resultFile(name: string, options: { quick: boolean; output?: string }): string | undefined {
  return options.output ?? (options.quick ? undefined : join(RESULTS_DIR, `${name}.json`));
}

// -------------------------------------------------------------------------------------------------------------
// Labs

const labsMade: string[] = [];
const labsLive = new Map<string, string>();

/** Names of every lab the benchmarks of this process built (to check that none is left behind). */
export function labsCreated(): readonly string[] {
  return labsMade;
}

/** Remove every lab still up (for a signal handler: the benchmarks' own `finally` blocks do it otherwise). */
export async function removeLiveLabs(): Promise<void> {
  await Promise.allSettled([...labsLive].map(([name, root]) => labDown(name, { root, graceMs: 1000 })));
}

/** A short unique lab name: lower-case letters and digits, at most 16 (the lab's rule). */
export function labName(kind: string): string {
  return `b${kind}${randomBytes(4).toString('hex')}`.slice(0, 16);
}

/**
 * Build a lab in a temporary labs directory, give it to `fn`, and remove it (namespaces, processes, files)
 * afterwards whatever happened.
 */
export async function withLab<T>(kind: string, options: Omit<LabUpOptions, 'name' | 'root'>, fn: (state: LabState) => Promise<T>): Promise<T> {
  const root = mkdtempSync(join(tmpdir(), 'tulle-bench-labs-'));
  const name = labName(kind);
  labsMade.push(name);
  labsLive.set(name, root);
  try {
    const state = await labUp({ ...options, name, root });
    return await fn(state);
  } finally {
    try {
      await labDown(name, { root });
      labsLive.delete(name);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  }
}

/** The labs directory of a lab (its state's directory's parent), as lab functions take it. */
export function labRoot(state: Pick<LabState, 'dir'>): string {
  return dirname(state.dir);
}

/**
 * When a lab host's agent logged "ready" (its JSON log's `time`, epoch ms), every time so far: the log is appended
 * to across restarts. Reading the file costs the agent nothing, unlike polling its /healthz, which a starting agent
 * answers between the steps of the very reconcile a benchmark times.
 */
export function agentReadyTimes(state: LabState, host: string): number[] {
  const file = join(hostDir(state, host), 'agent.log');
  if (!existsSync(file)) return [];
  const times: number[] = [];
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (!line.includes('"msg":"ready"')) continue;
    try {
      const entry = JSON.parse(line) as { msg?: string; time?: string };
      if (entry.msg === 'ready' && entry.time) times.push(Date.parse(entry.time));
    } catch {
      // a line being written
    }
  }
  return times;
}

/** A temporary directory for a benchmark's scratch files, removed by the returned function. */
export function scratchDir(label: string): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), `tulle-bench-${label}-`));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

const CLOCK_TICKS_PER_SECOND = 100;

/**
 * CPU time (user + system) the processes have used so far, summed, in ms, from /proc/PID/stat (fields 14 and 15,
 * in clock ticks of 10 ms; Linux's USER_HZ is 100). Processes that are gone count 0.
 */
export function sumCpuMs(pids: readonly number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // exited
    }
  }
  return (ticks * 1000) / CLOCK_TICKS_PER_SECOND;
}

/**
 * CPU time the processes' main threads have used so far, summed, in ms with nanosecond resolution, from
 * /proc/PID/schedstat (its first field: time on a CPU, in ns; the thread-group leader only). For short windows,
 * where sumCpuMs's 10 ms ticks per process would swamp the figure; a Node process's own work runs on that thread.
 * Processes that are gone count 0.
 */
export function mainThreadCpuMs(pids: readonly number[]): number {
  let ns = 0;
  for (const pid of pids) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // exited
    }
  }
  return ns / 1e6;
}

/** VmRSS and VmHWM of a process from /proc/PID/status, in MiB. */
export function processMemory(pid: number): { rssMB: number; peakMB: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string): number => {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
    if (!m) throw new Error(`/proc/${pid}/status has no ${field}`);
    return Number(m[1]);
  };
  return { rssMB: round(kb('VmRSS') / 1024, 1), peakMB: round(kb('VmHWM') / 1024, 1) };
}

/** Run `fn` with these environment variables set (lab agents inherit them from this process), then restore them. */
export async function withEnv<T>(vars: Record<string, string>, fn: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  Object.assign(process.env, vars);
  try {
    return await fn();
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

/**
 * Run `fn` with the agents it starts running with the VXLAN guard on or off (TULLE_VXLAN_GUARD), so a benchmark
 * can show the guard's cost against no guard in the same run.
 */
export function withVxlanGuard<T>(enabled: boolean, fn: () => Promise<T>): Promise<T> {
  return withEnv({ TULLE_VXLAN_GUARD: enabled ? 'true' : 'false' }, fn);
}
