// The decode benchmark runs end to end in its quick form and reports the promised shape. No timing is asserted:
// the figures depend on the machine; only that they were measured.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../../bench/decode-throughput.js';

test('decode-throughput --quick: measures tulle and tshark on VXLAN captures and writes its JSON', { timeout: 300_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tulle-bench-smoke-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const output = join(dir, 'decode-throughput.json');
  const result = await run({ quick: true, output });
  assert.deepEqual(JSON.parse(readFileSync(output, 'utf8')), JSON.parse(JSON.stringify(result)));
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
});
