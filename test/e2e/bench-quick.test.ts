/**
 * Every benchmark, once, at tiny size (`--quick`), through the suite runner's API, so none of them rots: each
 * result has the shape the report reads (goal, figure, baseline, ratio, met), records its machine and versions,
 * the report names every row, the committed figures are left alone, and no lab namespace is left behind.
 * No timing is asserted: on a shared 2-core machine the quick figures mean nothing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { listNetns } from '../../src/netns/netns.js';
import { BENCHMARKS, runBenchmarks, selectBenchmarks } from '../../bench/run.js';
import { REPO_ROOT, RESULTS_DIR, labsCreated, meets } from '../../bench/common.js';
import { requireRoot } from '../helpers/netns.js';

requireRoot();

/** Content hashes of the committed figures: bench/results/*.json and BENCHMARKS.md. */
function committedFigures(): Map<string, string> {
  const files = [
    ...(existsSync(RESULTS_DIR)
      ? readdirSync(RESULTS_DIR)
          .filter((f) => f.endsWith('.json'))
          .map((f) => join(RESULTS_DIR, f))
      : []),
    join(REPO_ROOT, 'BENCHMARKS.md'),
  ];
  return new Map(files.filter((f) => existsSync(f)).map((f) => [f, createHash('sha256').update(readFileSync(f)).digest('hex')]));
}

test('--only rejects an unknown benchmark, naming the known ones', () => {
  assert.throws(
    () => selectBenchmarks(['scale', 'nope']),
    (err: any) => err.code === 'TLE_USAGE' && /"nope"/.test(err.message) && /convergence/.test(err.message),
  );
  assert.deepEqual(selectBenchmarks(['netlink-program,scale']), ['scale', 'netlink-program']);
  assert.deepEqual(
    selectBenchmarks([]),
    BENCHMARKS.map((b) => b.name),
  );
});

test('every benchmark runs at quick size: result shape, machine and versions, report, nothing left behind', async () => {
  const before = committedFigures();
  const dir = mkdtempSync(join(tmpdir(), 'tulle-bench-test-'));
  try {
    const suite = await runBenchmarks({ quick: true, resultsDir: dir });
    assert.equal(suite.reportFile, join(dir, 'BENCHMARKS.md'));
    assert.deepEqual(
      suite.outcomes.map((o) => o.name),
      BENCHMARKS.map((b) => b.name),
    );
    for (const o of suite.outcomes) {
      assert.ok(o.ok, `${o.name} failed: ${o.error}`);
      assert.ok(o.rows.length > 0, `${o.name} reported no rows`);
      for (const r of o.rows) {
        const what = `${o.name} ${r.metric} ${r.size}`;
        assert.equal(r.benchmark, o.name);
        assert.equal(typeof r.goal.text, 'string', what);
        assert.ok(
          ['ratio', 'figure'].includes(r.goal.on) && ['<=', '>=', '<'].includes(r.goal.op) && Number.isFinite(r.goal.value),
          `${what}: goal ${JSON.stringify(r.goal)}`,
        );
        for (const k of ['figure', 'baseline', 'ratio'] as const) assert.ok(Number.isFinite(r[k]) && r[k] > 0, `${what}: ${k} ${r[k]}`);
        assert.equal(typeof r.met, 'boolean', what);
        assert.equal(r.met, meets(r.goal.on === 'ratio' ? r.ratio : r.figure, r.goal), `${what}: met disagrees with the goal`);
      }
      const result = JSON.parse(readFileSync(o.resultFile, 'utf8'));
      assert.equal(result.name, o.name);
      assert.equal(result.quick, true);
      assert.ok(!Number.isNaN(Date.parse(result.date)), `${o.name}: date ${result.date}`);
      assert.ok(result.sizes !== undefined, `${o.name}: no sizes`);
      assert.ok(result.environment.machine.cores >= 1 && result.environment.machine.kernel && result.environment.machine.node, `${o.name}: machine`);
      for (const tool of ['tulle', 'iproute2', 'tshark', 'iperf3', 'etcd'])
        assert.ok(result.environment.versions[tool] && result.environment.versions[tool] !== 'missing', `${o.name}: version of ${tool}`);
    }
    const report = readFileSync(suite.reportFile, 'utf8');
    assert.equal(report, suite.report);
    for (const b of BENCHMARKS) assert.ok(report.includes(`(\`${b.name}\`)`), `the report has no section for ${b.name}`);
    const rows = suite.outcomes.flatMap((o) => o.rows);
    const summary = report.split('## Summary')[1]!.split('\n## ')[0]!;
    const verdicts = summary.split('\n').filter((l) => !l.startsWith('| benchmark |') && /^\| [a-z-]+ \| .* \| (met|\*\*NOT met\*\*) \|$/.test(l));
    assert.equal(verdicts.length, rows.length, 'one summary line per row');
    assert.match(summary, new RegExp(`^: ${rows.filter((r) => r.met).length} of ${rows.length} goals met`));
    assert.equal(verdicts.filter((l) => l.endsWith('| met |')).length, rows.filter((r) => r.met).length);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  // Nothing left: no namespace of any lab the benchmarks built, none of the smaller benchmarks' namespaces.
  assert.ok(labsCreated().length >= 3, `labs built: ${labsCreated().join(', ')}`);
  for (const lab of labsCreated()) assert.deepEqual(listNetns(`tulle-${lab}-`), [], `namespaces of lab ${lab} left behind`);
  assert.deepEqual(listNetns(`t-bench-${process.pid}-`), [], 'benchmark namespaces left behind');
  assert.deepEqual(committedFigures(), before, 'a quick run changed the committed figures');
});
