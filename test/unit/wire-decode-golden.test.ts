// `tulle decode` prints the committed corpus (test/helpers/decode-corpus.ts) exactly as the golden files say, text
// and JSON Lines, byte for byte: the golden files were written by the string-building printers before output moved to
// byte buffers, so this is the proof that the faster printers changed nothing. The string API (describeFrame,
// frameToJson) must agree with the command too.
//
// Regenerate only when output is meant to change: TULLE_UPDATE_GOLDEN=1 node --test dist/test/unit/wire-decode-golden.test.js
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitFor } from '../../src/base/retry.js';
import { ByteSink, describeFrame, dissect, encodePcap, frameToJson, readCaptureSync, writeFrameJson, writeFrameText } from '../../src/wire/index.js';
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

test('golden: the byte printers and the string API agree frame by frame (describeFrame, JSON.stringify(frameToJson))', () => {
  for (const file of decodeCorpus()) {
    const ports = new Set([4789, 8472, ...file.ports]);
    const sink = new ByteSink(64);
    for (const r of readCaptureSync(file.bytes)) {
      const d = dissect(r.buf, r.offset, r.end, { vxlanPorts: ports, linkType: r.linkType, complete: r.complete });
      const meta = { number: r.index + 1, sec: r.sec, nsec: r.nsec, capturedLength: r.capturedLength, originalLength: r.originalLength };
      writeFrameJson(sink, d, meta);
      assert.equal(sink.take().toString('utf8'), JSON.stringify(frameToJson(d, meta)), `${file.name} frame ${meta.number}`);
      writeFrameText(sink, d, meta);
      assert.equal(sink.take().toString('utf8'), describeFrame(d, meta), `${file.name} frame ${meta.number}`);
    }
  }
});

test('--count prints the summary the text output ends with; --count --json the same counts as one object', () => {
  for (const file of decodeCorpus()) {
    const pcap = join(FIXTURES, file.name);
    const text = readFileSync(pcap.replace(/\.pcap$/, '.txt'), 'utf8');
    const count = decode(['--count', ...portArgs(file.ports), pcap]);
    assert.equal(count.status, 0, count.stderr);
    assert.equal(count.stdout, text.slice(text.lastIndexOf('\n\nframes') + 2));
    const json = decode(['--count', '--json', ...portArgs(file.ports), pcap]);
    assert.equal(json.status, 0, json.stderr);
    const counts = JSON.parse(json.stdout);
    assert.match(count.stdout, new RegExp(`^frames +${counts.frames}$`, 'm'));
    assert.match(count.stdout, new RegExp(`^malformed +${counts.malformed}$`, 'm'));
    assert.equal(json.stdout.trim().split('\n').length, 1);
  }
});

test('numbers of every width print as String(n) would, in both printers', () => {
  const sink = new ByteSink(4);
  for (const n of [0, 9, 10, 99, 100, 65535, 65536, 99999, 100000, 1e9 - 1, 1e9, 2 ** 32 - 1, 2 ** 32, 2 ** 53, -1, 1.5]) {
    sink.uint(n);
    assert.equal(sink.take().toString(), String(n));
    sink.uint(n, 7, 0x30);
    assert.equal(sink.take().toString(), String(n).padStart(7, '0'));
  }
  sink.hex(0xabc, 4);
  sink.text(' naïve ');
  sink.jsonString('a"b\\c\n\u00e9');
  assert.equal(sink.take().toString('utf8'), `0x0abc naïve ${JSON.stringify('a"b\\c\n\u00e9')}`);
});

test('stdin ("-") gives the same bytes as the file, with records cut by every pipe read (a capture of 1.2 MB)', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tulle-decode-stdin-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const records = [...readCaptureSync(decodeCorpus()[0]!.bytes)];
  const big = encodePcap(
    Array.from({ length: 30 }, () => records)
      .flat()
      .map((r) => ({ data: r.data, time: { sec: r.sec, nsec: r.nsec }, originalLength: r.originalLength })),
  );
  assert.ok(big.length > 1_000_000);
  const path = join(dir, 'big.pcap');
  writeFileSync(path, big);
  for (const args of [['--port', '9000'], ['--json'], ['--count'], ['--proto', 'icmp']]) {
    const fromFile = spawnSync(process.execPath, [MAIN, 'decode', ...args, path], { maxBuffer: 256 << 20 });
    const fromPipe = spawnSync(process.execPath, [MAIN, 'decode', ...args, '-'], { input: big, maxBuffer: 256 << 20 });
    assert.equal(fromFile.status, 0, String(fromFile.stderr));
    assert.equal(fromPipe.status, 0, String(fromPipe.stderr));
    assert.ok(fromPipe.stdout.equals(fromFile.stdout), `decode ${args.join(' ')}: stdin and file differ`);
  }
});

test('a live capture on stdin: each frame is printed when it arrives, not when the input ends', { timeout: 120_000 }, async (t) => {
  const records = [...readCaptureSync(decodeCorpus()[0]!.bytes)].slice(0, 3);
  const file = encodePcap(records.map((r) => ({ data: r.data, time: { sec: r.sec, nsec: r.nsec } })));
  const header = file.subarray(0, 24);
  const recordBytes = (i: number): Buffer => encodePcap([{ data: records[i]!.data, time: { sec: records[i]!.sec, nsec: records[i]!.nsec } }]).subarray(24);
  const child = spawn(process.execPath, [MAIN, 'decode', '-'], { stdio: ['pipe', 'pipe', 'pipe'] });
  t.after(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const seen = async (n: number): Promise<void> => {
    await waitFor(() => out.split('\n').filter((l) => /^ {4}\d {2}/.test(l)).length >= n, 60_000, `frame ${n} on stdout`);
  };
  child.stdin.write(Buffer.concat([header, recordBytes(0)]));
  await seen(1);
  assert.doesNotMatch(out, /^frames/m, 'no summary while the input is open');
  child.stdin.write(recordBytes(1));
  await seen(2);
  child.stdin.end(recordBytes(2));
  const code = await new Promise((resolve) => child.once('exit', resolve));
  assert.equal(code, 0);
  assert.match(out, /^frames +3$/m);
});
