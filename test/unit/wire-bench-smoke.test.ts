// The decode benchmark runs end to end in its quick form, as a person runs it (`node dist/bench/decode-throughput.js
// --quick`), reports the promised shape, and leaves the committed result file alone: a quick run writes to a
// temporary directory and says where. No timing is asserted: the figures depend on the machine; only that they
// were measured.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { defaultOutput, type DecodeBenchResult } from '../../bench/decode-throughput.js';

const SCRIPT = fileURLToPath(new URL('../../bench/decode-throughput.js', import.meta.url));
const COMMITTED = fileURLToPath(new URL('../../../bench/results/decode-throughput.json', import.meta.url));

const hash = (file: string): string | undefined => (existsSync(file) ? createHash('sha256').update(readFileSync(file)).digest('hex') : undefined);

test('where results go: the given file; the committed one for a full run; a new temporary one for --quick', () => {
  assert.equal(defaultOutput({ quick: true, output: '/x/y.json' }), '/x/y.json');
  assert.equal(defaultOutput({ quick: false }), COMMITTED);
  const quick = defaultOutput({ quick: true });
  try {
    assert.notEqual(quick, COMMITTED);
    assert.ok(quick.startsWith(tmpdir()), quick);
  } finally {
    rmSync(dirname(quick), { recursive: true, force: true });
  }
});

test('decode-throughput --quick: measures tulle, tshark and the end-to-end commands; the committed figures stay', { timeout: 300_000 }, (t) => {
  const before = hash(COMMITTED);
  const r = spawnSync(process.execPath, [SCRIPT, '--quick'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const output = /result in (.+)$/m.exec(r.stdout)?.[1];
  assert.ok(output && existsSync(output), r.stdout);
  t.after(() => rmSync(dirname(output), { recursive: true, force: true }));
  assert.equal(hash(COMMITTED), before, 'a quick run must not replace bench/results/decode-throughput.json');
  assert.notEqual(output, COMMITTED);

  const result = JSON.parse(readFileSync(output, 'utf8')) as DecodeBenchResult;
  assert.equal(result.name, 'decode-throughput');
  assert.equal(result.quick, true);
  assert.ok(!Number.isNaN(Date.parse(result.date)));
  assert.ok(result.machine.cores >= 1);
  assert.match(result.machine.tshark, /^TShark \(Wireshark\) \d+\.\d+/);
  assert.match(result.machine.node, /^v\d+/);
  assert.equal(result.sizes.frameBytes, 148);
  assert.equal(result.sizes.tulleFileBytes, 24 + result.sizes.tulleFrames * (16 + 148));
  assert.equal(result.sizes.tsharkFileBytes, 24 + result.sizes.tsharkFrames * (16 + 148));
  for (const v of [result.tullePps, result.tulleSameFilePps, result.tsharkPps, result.tsharkWallPps, result.ratio]) assert.ok(Number.isFinite(v) && v > 0);
  assert.equal(result.tulleRunsPps.length, result.sizes.tulleRepetitions);
  assert.deepEqual(result.goals, { tullePps: 1_000_000, ratio: 10 });
  assert.equal(result.met.all, result.met.tullePps && result.met.ratio);
  for (const v of Object.values(result.met)) assert.equal(typeof v, 'boolean');

  const e = result.endToEnd;
  assert.equal(e.frames, result.sizes.tulleFrames);
  assert.equal(e.fileBytes, result.sizes.tulleFileBytes);
  assert.deepEqual(e.goals, { text: 1.0, json: 1.0, count: 0.3, stdin: 1.1 });
  for (const k of ['tcpdump', 'text', 'json', 'count', 'stdin'] as const) {
    assert.ok(Number.isFinite(e.wallSec[k]) && e.wallSec[k] > 0, `wall ${k}`);
    assert.ok(Number.isFinite(e.cpuSec[k]) && e.cpuSec[k] >= 0, `cpu ${k}`);
    assert.equal(e.runsWallSec[k].length, e.rounds);
  }
  for (const k of ['text', 'json', 'count', 'stdin'] as const) {
    assert.ok(Number.isFinite(e.ratios[k]) && e.ratios[k] > 0, `ratio ${k}`);
    assert.equal(typeof e.met[k], 'boolean', `met ${k}`);
  }
  assert.match(r.stdout, /end to end on [\d,]+ frames: tcpdump -nn -e -r [\d.]+ s; tulle decode [\d.]+ s/);
});
