/**
 * `npm run bench [-- --quick] [-- --only NAME]`: run the benchmarks (suite.ts), write each result to
 * `<results>/<name>.json` and generate BENCHMARKS.md from every result file there.
 *
 * A full run writes bench/results/ and BENCHMARKS.md at the repository root (the committed figures). A quick run
 * (tiny sizes, for `npm test`) writes to a new temporary directory unless --results / --report say otherwise,
 * so it never replaces the committed figures. A benchmark that fails is reported and the others still run; the
 * exit code is then 1.
 */
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describeError, UsageError, TulleError } from '../src/base/errors.js';
import { formatCommandHelp, parseCommand, type CommandSpec } from '../src/cli/spec.js';
import { environment, REPO_ROOT, RESULTS_DIR, removeLiveLabs, writeResult, type BenchRow } from './common.js';
import { renderReport, type ReportEntry } from './report.js';
import { BENCHMARKS, benchmarkNamed } from './suite.js';

export { BENCHMARKS } from './suite.js';

export interface SuiteOptions {
  quick: boolean;
  /** Run only these benchmarks (names from BENCHMARKS); default all. */
  only?: readonly string[];
  /** Where result files go (default: bench/results for full runs, a new temporary directory for quick ones). */
  resultsDir?: string;
  /** Where the report goes (default: BENCHMARKS.md at the repository root for full runs, in resultsDir for quick ones). */
  reportFile?: string;
  /** Progress lines (default: none). */
  log?: (line: string) => void;
}

export interface BenchmarkOutcome {
  name: string;
  ok: boolean;
  /** Why it failed, when it did. */
  error?: string;
  resultFile: string;
  rows: BenchRow[];
  seconds: number;
}

export interface SuiteResult {
  quick: boolean;
  resultsDir: string;
  reportFile: string;
  outcomes: BenchmarkOutcome[];
  /** The BENCHMARKS.md text written to reportFile. */
  report: string;
}

/** Check `--only` names; throws UsageError naming the unknown one and the known ones. */
export function selectBenchmarks(only: readonly string[] | undefined): string[] {
  const names = (only ?? [])
    .flatMap((n) => n.split(','))
    .map((n) => n.trim())
    .filter(Boolean);
  if (names.length === 0) return BENCHMARKS.map((b) => b.name);
  for (const n of names) {
    if (!benchmarkNamed(n)) throw new UsageError(`--only: ${JSON.stringify(n)} is not a benchmark (one of ${BENCHMARKS.map((b) => b.name).join(', ')})`);
  }
  return BENCHMARKS.map((b) => b.name).filter((n) => names.includes(n));
}

export async function runBenchmarks(options: SuiteOptions): Promise<SuiteResult> {
  const selected = selectBenchmarks(options.only);
  const resultsDir = resolve(options.resultsDir ?? (options.quick ? mkdtempSync(join(tmpdir(), 'tulle-bench-quick-')) : RESULTS_DIR));
  const reportFile = resolve(options.reportFile ?? (options.quick ? join(resultsDir, 'BENCHMARKS.md') : join(REPO_ROOT, 'BENCHMARKS.md')));
  const log = options.log ?? (() => {});
  const outcomes: BenchmarkOutcome[] = [];
  for (const name of selected) {
    const benchmark = benchmarkNamed(name)!;
    const file = join(resultsDir, `${name}.json`);
    const env = await environment();
    log(`bench: ${name}${options.quick ? ' (quick)' : ''} ...`);
    const started = Date.now();
    try {
      await benchmark.run({ quick: options.quick, output: file });
      const result = JSON.parse(readFileSync(file, 'utf8'));
      // The older benchmarks record only the machine: add the tool versions and the load, as the newer ones have.
      if (!result.environment) writeResult(file, { ...result, environment: { ...env, machine: { ...env.machine, ...result.machine } } });
      const rows = benchmark.rows(result);
      const seconds = Math.round((Date.now() - started) / 100) / 10;
      outcomes.push({ name, ok: true, resultFile: file, rows, seconds });
      for (const r of rows)
        log(
          `bench: ${name} ${r.size}: ${r.metric}: ${r.figure} ${r.unit} vs ${r.baseline} ${r.unit}, ratio ${r.ratio} (${r.goal.text}: ${r.met ? 'met' : 'NOT met'})`,
        );
      log(`bench: ${name} done in ${seconds} s`);
    } catch (err) {
      const seconds = Math.round((Date.now() - started) / 100) / 10;
      outcomes.push({ name, ok: false, error: describeError(err), resultFile: file, rows: [], seconds });
      log(`bench: ${name} FAILED after ${seconds} s: ${describeError(err)}`);
    }
  }
  const report = writeReport(resultsDir, reportFile, options.quick);
  log(`bench: wrote ${reportFile}`);
  return { quick: options.quick, resultsDir, reportFile, outcomes, report };
}

/** Generate the report from every benchmark's result file in `resultsDir` (those present) and write it. */
export function writeReport(resultsDir: string, reportFile: string, quick = false): string {
  const entries: ReportEntry[] = [];
  for (const benchmark of BENCHMARKS) {
    const file = join(resultsDir, `${benchmark.name}.json`);
    if (existsSync(file)) entries.push({ benchmark, result: JSON.parse(readFileSync(file, 'utf8')) });
  }
  const report = renderReport(entries, { command: quick ? 'npm run bench -- --quick' : 'npm run bench' });
  writeFileSync(reportFile, report);
  return report;
}

const benchCommand: CommandSpec = {
  name: 'npm run bench --',
  summary: 'Run the benchmarks against their baselines; write bench/results/*.json and BENCHMARKS.md',
  details: 'Needs root (labs of network namespaces) and iproute2, iperf3, tshark, etcd and the CNI plugins (scripts/install-deps.sh).',
  options: {
    quick: { type: 'boolean', description: 'Tiny sizes, seconds per benchmark; results go to a temporary directory unless --results says otherwise' },
    only: { type: 'string', valueName: 'NAME[,NAME]', multiple: true, description: `Run only these benchmarks: ${BENCHMARKS.map((b) => b.name).join(', ')}` },
    results: { type: 'string', valueName: 'DIR', description: 'Write result files here (default: bench/results, or a temporary directory with --quick)' },
    report: { type: 'string', valueName: 'FILE', description: 'Write the report here (default: BENCHMARKS.md, or next to the results with --quick)' },
  },
  examples: ['npm run bench', 'npm run bench -- --quick', 'npm run bench -- --only scale', 'npm run bench -- --only dataplane,convergence'],
  async run(args) {
    const o = args.options;
    const suite = await runBenchmarks({
      quick: Boolean(o.quick),
      only: (o.only as string[] | undefined) ?? [],
      ...(o.results ? { resultsDir: String(o.results) } : {}),
      ...(o.report ? { reportFile: String(o.report) } : {}),
      log: (line) => console.log(line),
    });
    const failed = suite.outcomes.filter((x) => !x.ok);
    const rows = suite.outcomes.flatMap((x) => x.rows);
    console.log(
      `bench: ${rows.filter((r) => r.met).length} of ${rows.length} goals met; ${failed.length} benchmark(s) failed${failed.length ? `: ${failed.map((x) => x.name).join(', ')}` : ''}`,
    );
    console.log(`bench: results in ${suite.resultsDir}, report ${suite.reportFile}`);
    return failed.length ? 1 : 0;
  },
};

async function main(argv: readonly string[]): Promise<number> {
  const args = parseCommand(benchCommand, argv);
  if (args.options.help) {
    process.stdout.write(formatCommandHelp(benchCommand));
    return 0;
  }
  if (process.getuid?.() !== 0)
    throw new TulleError('TLE_MISSING_REQUIREMENT', 'the benchmarks build labs of network namespaces and need root: run as root (sudo npm run bench)');
  // Interrupted: remove the labs still up (their own `finally` blocks will not run), then stop.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      console.error(`bench: ${signal}: removing the labs still up`);
      void removeLiveLabs().finally(() => process.exit(130));
    });
  }
  return (await benchCommand.run(args)) ?? 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).then(
    (code) => (process.exitCode = code),
    (err) => {
      console.error(`bench: ${describeError(err)}`);
      process.exitCode = err instanceof TulleError ? err.exitCode : 1;
    },
  );
}
