/**
 * Benchmark: decode throughput of 148-byte VXLAN frames (seed 003's ping, encapsulated), tulle against tshark in
 * the same run. tulle streams a large pcap through readCaptureBatches + dissect on the main thread (one core) and
 * reads the fields a person looks at (outer addresses and ports, VNI, inner addresses, ICMP type); tshark reads a
 * smaller file (it is slow) printing the same fields. tshark's start-up time, measured on a one-frame file, is
 * subtracted, so its rate is its decoding rate. Goals: >= 1,000,000 frames/s and >= 10x tshark.
 *
 * End to end, as a user runs it: the `tulle decode` command on the same large file — text, --json, --count, and
 * the text read from a pipe (`cat FILE | tulle decode -`) — against `tcpdump -nn -e -r FILE`, all printing to
 * /dev/null, taking turns round by round; medians of the wall times (and the CPU times, from bash's `times`).
 * Goals: text and --json <= 1.0x tcpdump's time, --count <= 0.3x, the pipe <= 1.1x the file.
 *
 *   node dist/bench/decode-throughput.js            (writes bench/results/decode-throughput.json)
 *   node dist/bench/decode-throughput.js --quick    (small files; writes a temporary file and says where)
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, release, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { MissingRequirementError } from '../src/base/errors.js';
import { median, round } from './common.js';
import { PcapWriter, dissect, encapsulate, icmpEchoFrame, readCaptureBatches } from '../src/wire/index.js';
import { tsharkVersion } from '../test/helpers/tshark.js';

export const NAME = 'decode-throughput';
const GOAL_PPS = 1_000_000;
const GOAL_RATIO = 10;
const RESULT_FILE = fileURLToPath(new URL(`../../bench/results/${NAME}.json`, import.meta.url));
const TULLE_MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
/** End-to-end goals: tulle's time / tcpdump's (text, --json, --count), and the pipe's time / the file's. */
export const E2E_GOALS = { text: 1.0, json: 1.0, count: 0.3, stdin: 1.1 } as const;

export type EndToEndCase = 'tcpdump' | 'text' | 'json' | 'count' | 'stdin';

export interface EndToEnd {
  frames: number;
  fileBytes: number;
  rounds: number;
  /** Medians over the rounds, in seconds: wall time, and user + system CPU time of the command's processes. */
  wallSec: Record<EndToEndCase, number>;
  cpuSec: Record<EndToEndCase, number>;
  runsWallSec: Record<EndToEndCase, number[]>;
  /** Wall-time ratios: text, json, count over tcpdump; stdin over text from the file. */
  ratios: Record<Exclude<EndToEndCase, 'tcpdump'>, number>;
  cpuRatios: Record<Exclude<EndToEndCase, 'tcpdump'>, number>;
  goals: typeof E2E_GOALS;
  met: Record<Exclude<EndToEndCase, 'tcpdump'>, boolean>;
}
const TSHARK_FIELDS = ['vxlan.vni', 'ip.src', 'ip.dst', 'udp.srcport', 'udp.dstport', 'icmp.type'];

export interface DecodeBenchResult {
  name: string;
  date: string;
  quick: boolean;
  machine: { cores: number; cpu: string; kernel: string; node: string; tshark: string };
  sizes: { frameBytes: number; tulleFrames: number; tulleFileBytes: number; tsharkFrames: number; tsharkFileBytes: number; tulleRepetitions: number };
  /** Median over the repetitions, on the large file. */
  tullePps: number;
  tulleRunsPps: number[];
  /** tulle on tshark's (smaller) file, for the same-file comparison. */
  tulleSameFilePps: number;
  /** tshark frames/s with its start-up time subtracted. */
  tsharkPps: number;
  /** tshark frames/s including start-up, as a user running it would see. */
  tsharkWallPps: number;
  tsharkStartupMs: number;
  /** tullePps / tsharkPps. */
  ratio: number;
  goals: { tullePps: number; ratio: number };
  met: { tullePps: boolean; ratio: boolean; all: boolean };
  endToEnd: EndToEnd;
}

/**
 * A capture of `frames` 148-byte VXLAN frames: 256 flows (pod pairs and echo ids, so source ports vary as on a real
 * underlay), VNI 1, flannel's port, written through PcapWriter.
 */
export async function writeVxlanCapture(path: string, frames: number): Promise<void> {
  const templates: Buffer[] = [];
  for (let i = 0; i < 256; i++) {
    const inner = icmpEchoFrame({
      srcMac: 'd2:ba:c1:db:b3:77',
      dstMac: '0e:f0:b5:8c:28:f5',
      srcIp: `10.244.0.${i}`,
      dstIp: `10.244.1.${255 - i}`,
      id: 16640 + i,
      seq: i,
    });
    templates.push(encapsulate(inner, { srcMac: '52:54:00:9c:09:d7', dstMac: 'fe:ee:8f:bf:86:99', srcIp: '10.0.4.2', dstIp: '10.0.4.14', vni: 1 }));
  }
  const writer = PcapWriter.toFile(path);
  for (let i = 0; i < frames; i++) await writer.write(templates[i & 255]!, { sec: 1_700_000_000 + Math.floor(i / 1000), nsec: (i % 1000) * 1000 });
  await writer.close();
}

/** Decode every frame of `path` and read the shown fields; returns frames/s. Checks what it decoded. */
async function tulleDecode(path: string, expected: number): Promise<number> {
  let frames = 0;
  let vni1 = 0;
  let sink = 0;
  const start = performance.now();
  for await (const batch of readCaptureBatches(path)) {
    for (const r of batch) {
      const d = dissect(r.buf, r.offset, r.end);
      const inner = d.inner;
      if (d.vxlan?.vni === 1) vni1++;
      // The fields tshark prints below; numbers, as a consumer that filters or counts would use them.
      sink += d.ipv4!.srcNumber + d.ipv4!.dstNumber + d.udp!.srcPort + d.udp!.dstPort + inner!.ipv4!.srcNumber + inner!.ipv4!.dstNumber + inner!.icmp!.type;
      frames++;
    }
  }
  const seconds = (performance.now() - start) / 1000;
  if (frames !== expected || vni1 !== expected || !Number.isFinite(sink))
    throw new Error(`tulle decoded ${frames} frames (${vni1} with VNI 1), expected ${expected}`);
  return frames / seconds;
}

/** Wall time of tshark printing the fields of `path` (output discarded), in ms; checks its line count. */
function tsharkRun(path: string, expected: number): Promise<number> {
  const args = ['-r', path, '-n', '-d', 'udp.port==8472,vxlan', '-T', 'fields'];
  for (const f of TSHARK_FIELDS) args.push('-e', f);
  return new Promise((resolve, reject) => {
    const start = performance.now();
    const child = spawn('tshark', args, { stdio: ['ignore', 'pipe', 'ignore'] });
    let lines = 0;
    child.stdout.on('data', (d: Buffer) => {
      for (let i = d.indexOf(10); i >= 0; i = d.indexOf(10, i + 1)) lines++;
    });
    child.on('error', (err: NodeJS.ErrnoException) =>
      reject(err.code === 'ENOENT' ? new MissingRequirementError('the program tshark', 'install it (bash scripts/install-deps.sh)') : err),
    );
    child.on('close', (status) => {
      const ms = performance.now() - start;
      if (status !== 0) reject(new Error(`tshark exited ${status}`));
      else if (lines !== expected) reject(new Error(`tshark printed ${lines} lines, expected ${expected}`));
      else resolve(ms);
    });
  });
}

/** Quote for bash. */
function sh(word: string): string {
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/** The shell command of each end-to-end case, output to /dev/null. */
function endToEndCommand(which: EndToEndCase, file: string): string {
  const tulle = `${sh(process.execPath)} ${sh(TULLE_MAIN)} decode`;
  switch (which) {
    case 'tcpdump':
      return `tcpdump -nn -e -r ${sh(file)} > /dev/null 2>&1`;
    case 'text':
      return `${tulle} ${sh(file)} > /dev/null`;
    case 'json':
      return `${tulle} --json ${sh(file)} > /dev/null`;
    case 'count':
      return `${tulle} --count ${sh(file)} > /dev/null`;
    case 'stdin':
      return `cat ${sh(file)} | ${tulle} - > /dev/null`;
  }
}

/**
 * Run one case under bash and return its wall time and the CPU time of its processes (bash's `times`: the
 * children's user and system time), in seconds. A failing command is an error, not a figure.
 */
function timeCommand(command: string): { wall: number; cpu: number } {
  const start = performance.now();
  const r = spawnSync('bash', ['-c', `set -o pipefail; ${command} || exit $?; times`], { encoding: 'utf8' });
  const wall = (performance.now() - start) / 1000;
  if (r.status !== 0) throw new Error(`${command}: exited ${r.status}: ${r.stderr.trim().slice(0, 300)}`);
  const children = r.stdout.trim().split('\n').at(-1) ?? '';
  const m = /^(\d+)m([\d.]+)s (\d+)m([\d.]+)s$/.exec(children);
  if (!m) throw new Error(`bash times printed ${JSON.stringify(r.stdout)}`);
  return { wall, cpu: Number(m[1]) * 60 + Number(m[2]) + Number(m[3]) * 60 + Number(m[4]) };
}

/** The end-to-end rounds on `file`; checks first that tulle counts every frame and tcpdump is there. */
function endToEnd(file: string, frames: number, rounds: number): EndToEnd {
  const count = spawnSync(process.execPath, [TULLE_MAIN, 'decode', '--count', '--json', file], { encoding: 'utf8' });
  const counted = count.status === 0 ? (JSON.parse(count.stdout) as { frames: number; vxlanFrames: number }) : undefined;
  if (!counted || counted.frames !== frames || counted.vxlanFrames !== frames)
    throw new Error(`tulle decode --count: ${count.stdout}${count.stderr}, expected ${frames} VXLAN frames`);
  if (spawnSync('tcpdump', ['--version']).error) throw new MissingRequirementError('the program tcpdump', 'install it (bash scripts/install-deps.sh)');
  const cases: EndToEndCase[] = ['tcpdump', 'text', 'json', 'count', 'stdin'];
  const wall = Object.fromEntries(cases.map((c) => [c, [] as number[]])) as Record<EndToEndCase, number[]>;
  const cpu = Object.fromEntries(cases.map((c) => [c, [] as number[]])) as Record<EndToEndCase, number[]>;
  timeCommand(endToEndCommand('text', file)); // warm the page cache and the disk path once
  for (let i = 0; i < rounds; i++) {
    for (const c of cases) {
      const t = timeCommand(endToEndCommand(c, file));
      wall[c].push(t.wall);
      cpu[c].push(t.cpu);
    }
  }
  const medians = (x: Record<EndToEndCase, number[]>) => Object.fromEntries(cases.map((c) => [c, median(x[c])])) as Record<EndToEndCase, number>;
  const ratiosOf = (x: Record<EndToEndCase, number>) => ({
    text: x.text / x.tcpdump,
    json: x.json / x.tcpdump,
    count: x.count / x.tcpdump,
    stdin: x.stdin / x.text,
  });
  const rounded = <T extends Record<string, number>>(x: T): T => Object.fromEntries(Object.entries(x).map(([k, v]) => [k, round(v, 3)])) as T;
  const wallSec = medians(wall);
  const exact = ratiosOf(wallSec);
  return {
    frames,
    fileBytes: statSync(file).size,
    rounds,
    wallSec: rounded(wallSec),
    cpuSec: rounded(medians(cpu)),
    runsWallSec: Object.fromEntries(cases.map((c) => [c, wall[c].map((x) => round(x, 3))])) as Record<EndToEndCase, number[]>,
    ratios: rounded(exact),
    cpuRatios: rounded(ratiosOf(medians(cpu))),
    goals: E2E_GOALS,
    met: {
      text: exact.text <= E2E_GOALS.text,
      json: exact.json <= E2E_GOALS.json,
      count: exact.count <= E2E_GOALS.count,
      stdin: exact.stdin <= E2E_GOALS.stdin,
    },
  };
}

/**
 * Where a run's result goes: the caller's `output`; else the committed bench/results file for a full run, and a
 * new temporary directory for a quick one (its tiny figures must never replace the committed ones).
 */
export function defaultOutput(options: { quick: boolean; output?: string }): string {
  if (options.output) return options.output;
  if (!options.quick) return RESULT_FILE;
  return join(mkdtempSync(join(tmpdir(), 'tulle-bench-quick-')), `${NAME}.json`);
}

export async function run(options: { quick: boolean; output?: string }): Promise<DecodeBenchResult> {
  const tulleFrames = options.quick ? 20_000 : 1_000_000;
  const tsharkFrames = options.quick ? 2_000 : 100_000;
  const repetitions = options.quick ? 1 : 5;
  const e2eRounds = options.quick ? 1 : 5;
  const dir = mkdtempSync(join(tmpdir(), 'tulle-bench-decode-'));
  try {
    const big = join(dir, 'tulle.pcap');
    const small = join(dir, 'tshark.pcap');
    const one = join(dir, 'one.pcap');
    await writeVxlanCapture(big, tulleFrames);
    await writeVxlanCapture(small, tsharkFrames);
    await writeVxlanCapture(one, 1);
    const version = await tsharkVersion();

    await tulleDecode(small, tsharkFrames); // warm-up: let V8 optimise the decoder before timing it
    const runs: number[] = [];
    for (let i = 0; i < repetitions; i++) runs.push(await tulleDecode(big, tulleFrames));
    const tulleSameFilePps = await tulleDecode(small, tsharkFrames);

    const startupMs = Math.min(await tsharkRun(one, 1), await tsharkRun(one, 1));
    const tsharkMs = await tsharkRun(small, tsharkFrames);
    const tsharkPps = tsharkFrames / (Math.max(1, tsharkMs - startupMs) / 1000);
    const e2e = endToEnd(big, tulleFrames, e2eRounds);
    const tullePps = median(runs);
    const ratio = tullePps / tsharkPps;
    const result: DecodeBenchResult = {
      name: NAME,
      date: new Date().toISOString(),
      quick: options.quick,
      machine: { cores: cpus().length, cpu: cpus()[0]?.model.trim() ?? 'unknown', kernel: release(), node: process.version, tshark: version },
      sizes: {
        frameBytes: 148,
        tulleFrames,
        tulleFileBytes: statSync(big).size,
        tsharkFrames,
        tsharkFileBytes: statSync(small).size,
        tulleRepetitions: repetitions,
      },
      tullePps: Math.round(tullePps),
      tulleRunsPps: runs.map(Math.round),
      tulleSameFilePps: Math.round(tulleSameFilePps),
      tsharkPps: Math.round(tsharkPps),
      tsharkWallPps: Math.round(tsharkFrames / (tsharkMs / 1000)),
      tsharkStartupMs: Math.round(startupMs),
      ratio: Math.round(ratio * 10) / 10,
      goals: { tullePps: GOAL_PPS, ratio: GOAL_RATIO },
      met: { tullePps: tullePps >= GOAL_PPS, ratio: ratio >= GOAL_RATIO, all: tullePps >= GOAL_PPS && ratio >= GOAL_RATIO },
      endToEnd: e2e,
    };
    const output = defaultOutput(options);
    mkdirSync(dirname(output), { recursive: true });
    writeFileSync(output, JSON.stringify(result, null, 2) + '\n');
    return result;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const quick = process.argv.includes('--quick');
  const output = defaultOutput({ quick });
  const result = await run({ quick, output });
  const f = (n: number): string => n.toLocaleString('en-US');
  const e = result.endToEnd;
  process.stdout.write(
    `${NAME}: tulle ${f(result.tullePps)} frames/s (${f(result.sizes.tulleFrames)} frames), tshark ${f(result.tsharkPps)} frames/s ` +
      `(${f(result.sizes.tsharkFrames)} frames, start-up ${result.tsharkStartupMs} ms excluded): ${result.ratio}x; ` +
      `goals >= ${f(GOAL_PPS)}/s ${result.met.tullePps ? 'met' : 'NOT met'}, >= ${GOAL_RATIO}x ${result.met.ratio ? 'met' : 'NOT met'}\n` +
      `${NAME}: end to end on ${f(e.frames)} frames: tcpdump -nn -e -r ${e.wallSec.tcpdump} s; tulle decode ${e.wallSec.text} s (${e.ratios.text}x), ` +
      `--json ${e.wallSec.json} s (${e.ratios.json}x), --count ${e.wallSec.count} s (${e.ratios.count}x), from a pipe ${e.wallSec.stdin} s (${e.ratios.stdin}x the file); ` +
      `goals ${(['text', 'json', 'count', 'stdin'] as const).map((k) => `${k} <= ${E2E_GOALS[k]}x ${e.met[k] ? 'met' : 'NOT met'}`).join(', ')}\n` +
      `${NAME}: result in ${output}\n`,
  );
}
