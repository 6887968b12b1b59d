// `tulle decode` prints the committed corpus (test/helpers/decode-corpus.ts) exactly as the golden files say, text
// and JSON Lines, byte for byte: the golden files were written by the string-building printers before output moved to
// byte buffers, so this is the proof that the faster printers changed nothing. The string API (describeFrame,
// frameToJson) must agree with the command too.
//
// Regenerate only when output is meant to change: TULLE_UPDATE_GOLDEN=1 node --test dist/test/unit/wire-decode-golden.test.js
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { decodeCorpus } from '../helpers/decode-corpus.js';

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const FIXTURES = fileURLToPath(new URL('../../../test/fixtures/decode/', import.meta.url));
const UPDATE = process.env.TULLE_UPDATE_GOLDEN === '1';

function decode(args: string[]): { stdout: string; stderr: string; status: number | null } {
  const r = spawnSync(process.execPath, [MAIN, 'decode', ...args], { encoding: 'utf8', maxBuffer: 256 << 20 });
  return { stdout: r.stdout, stderr: r.stderr, status: r.status };
}

const portArgs = (ports: number[]): string[] => ports.flatMap((p) => ['--port', String(p)]);

for (const file of decodeCorpus()) {
  test(`golden: ${file.name} decodes to the committed text and JSON`, () => {
    const pcap = join(FIXTURES, file.name);
    const textFile = pcap.replace(/\.pcap$/, '.txt');
    const jsonFile = pcap.replace(/\.pcap$/, '.jsonl');
    if (UPDATE) {
      mkdirSync(FIXTURES, { recursive: true });
      writeFileSync(pcap, file.bytes);
      writeFileSync(textFile, decode([...portArgs(file.ports), pcap]).stdout);
      writeFileSync(jsonFile, decode(['--json', ...portArgs(file.ports), pcap]).stdout);
    }
    assert.ok(existsSync(pcap), `${pcap} is missing`);
    assert.ok(readFileSync(pcap).equals(file.bytes), `${file.name}: the committed capture is not what decode-corpus.ts builds`);

    const text = decode([...portArgs(file.ports), pcap]);
    assert.equal(text.status, 0, text.stderr);
    assert.equal(text.stderr, '');
    assert.equal(text.stdout, readFileSync(textFile, 'utf8'));
    const json = decode(['--json', ...portArgs(file.ports), pcap]);
    assert.equal(json.status, 0, json.stderr);
    assert.equal(json.stdout, readFileSync(jsonFile, 'utf8'));
  });
}
