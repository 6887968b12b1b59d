// pcap (both byte orders, micro- and nanoseconds) and pcapng (SHB, IDB, EPB, SPB) reading, pcap writing, streaming
// in chunks of any size, and hostile files: every one ends in a typed PcapError naming the offset and the reason,
// after the records before it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import {
  CaptureParser,
  PcapError,
  PcapWriter,
  encodePcap,
  readCapture,
  readCaptureBatches,
  readCaptureSync,
  type CaptureRecord,
} from '../../src/wire/index.js';

/** All records of `buf`, plus the error that ended the file (if any). */
function readAll(buf: Buffer): { records: CaptureRecord[]; error?: PcapError } {
  const records: CaptureRecord[] = [];
  try {
    for (const r of readCaptureSync(buf)) records.push(r);
  } catch (err) {
    if (!(err instanceof PcapError)) throw err;
    return { records, error: err };
  }
  return { records };
}

/** Feed `buf` to a parser in chunks of `size` bytes. */
function readChunked(buf: Buffer, size: number): { records: CaptureRecord[]; error?: PcapError } {
  const parser = new CaptureParser();
  const records: CaptureRecord[] = [];
  try {
    for (let o = 0; o < buf.length; o += size) parser.push(buf.subarray(o, o + size), records);
    parser.end();
  } catch (err) {
    if (!(err instanceof PcapError)) throw err;
    return { records, error: err };
  }
  return { records };
}

function assertPcapError(result: { records: CaptureRecord[]; error?: PcapError }, code: string, offset: number, reason: RegExp): void {
  assert.ok(result.error, `expected ${code}`);
  assert.equal(result.error.code, code);
  assert.equal(result.error.offset, offset);
  assert.match(result.error.reason, reason);
  assert.match(result.error.message, new RegExp(`^offset ${offset}: `));
}

const frameArb = fc.record({
  data: fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
  sec: fc.integer({ min: 0, max: 0xffffffff }),
  nsec: fc.integer({ min: 0, max: 999_999_999 }),
  extra: fc.integer({ min: 0, max: 100 }),
});

test('pcap round trip: any records, both byte orders, micro- and nanoseconds; streamed in any chunk size', () => {
  fc.assert(
    fc.property(fc.array(frameArb, { maxLength: 20 }), fc.boolean(), fc.boolean(), fc.integer({ min: 1, max: 64 }), (frames, bigEndian, nanosecond, chunk) => {
      const file = encodePcap(
        frames.map((f) => ({ data: f.data, time: { sec: f.sec, nsec: f.nsec }, originalLength: f.data.length + f.extra })),
        { bigEndian, nanosecond, linkType: 1 },
      );
      for (const { records, error } of [readAll(file), readChunked(file, chunk)]) {
        assert.equal(error, undefined);
        assert.equal(records.length, frames.length);
        records.forEach((r, i) => {
          const f = frames[i]!;
          assert.equal(r.index, i);
          assert.deepEqual(r.data, f.data);
          assert.equal(r.sec, f.sec);
          assert.equal(r.nsec, nanosecond ? f.nsec : Math.floor(f.nsec / 1000) * 1000);
          assert.equal(r.originalLength, f.data.length + f.extra);
          assert.equal(r.complete, f.extra === 0);
          assert.equal(r.linkType, 1);
        });
      }
    }),
    { numRuns: 200 },
  );
});

test('pcap snap length cuts long frames and keeps their original length', () => {
  const { records } = readAll(encodePcap([{ data: Buffer.alloc(148, 7), time: { sec: 1, nsec: 0 } }], { snaplen: 96 }));
  assert.equal(records[0]!.capturedLength, 96);
  assert.equal(records[0]!.originalLength, 148);
  assert.equal(records[0]!.complete, false);
});

// --- pcapng, built block by block -------------------------------------------------------------------------

function block(type: number, body: Buffer, le = true): Buffer {
  const padded = Buffer.concat([body, Buffer.alloc((4 - (body.length % 4)) % 4)]);
  const len = 12 + padded.length;
  const out = Buffer.alloc(len);
  if (le) {
    out.writeUInt32LE(type, 0);
    out.writeUInt32LE(len, 4);
    out.writeUInt32LE(len, len - 4);
  } else {
    out.writeUInt32BE(type, 0);
    out.writeUInt32BE(len, 4);
    out.writeUInt32BE(len, len - 4);
  }
  padded.copy(out, 8);
  return out;
}
function u16(v: number, le: boolean): Buffer {
  const b = Buffer.alloc(2);
  if (le) b.writeUInt16LE(v);
  else b.writeUInt16BE(v);
  return b;
}
function u32(v: number, le: boolean): Buffer {
  const b = Buffer.alloc(4);
  if (le) b.writeUInt32LE(v);
  else b.writeUInt32BE(v);
  return b;
}
function option(code: number, value: Buffer, le: boolean): Buffer {
  return Buffer.concat([u16(code, le), u16(value.length, le), value, Buffer.alloc((4 - (value.length % 4)) % 4)]);
}
const shb = (le = true): Buffer => block(0x0a0d0d0a, Buffer.concat([u32(0x1a2b3c4d, le), u16(1, le), u16(0, le), Buffer.alloc(8, 0xff)]), le);
const idb = (linkType: number, snaplen: number, le = true, options: Buffer[] = []): Buffer =>
  block(1, Buffer.concat([u16(linkType, le), u16(0, le), u32(snaplen, le), ...options, ...(options.length ? [Buffer.alloc(4)] : [])]), le);
const epb = (ifId: number, tsHigh: number, tsLow: number, data: Buffer, le = true, origlen = data.length): Buffer =>
  block(
    6,
    Buffer.concat([u32(ifId, le), u32(tsHigh, le), u32(tsLow, le), u32(data.length, le), u32(origlen, le), data, Buffer.alloc((4 - (data.length % 4)) % 4)]),
    le,
  );
const spb = (data: Buffer, le = true, origlen = data.length): Buffer => block(3, Buffer.concat([u32(origlen, le), data]), le);

test('pcapng: both byte orders, several interfaces, timestamp resolution and offset, SPB, unknown blocks skipped', () => {
  for (const le of [true, false]) {
    const nsRes = option(9, Buffer.from([9]), le); // if_tsresol: 10^-9
    const tsOffset = Buffer.alloc(8);
    if (le) tsOffset.writeBigInt64LE(100n);
    else tsOffset.writeBigInt64BE(100n);
    const ticks = 1_700_000_000_123_456_789n; // nanoseconds: beyond 2^53, must be exact
    const file = Buffer.concat([
      shb(le),
      idb(1, 0, le),
      idb(101, 0, le, [nsRes, option(14, tsOffset, le)]),
      block(0x0bad, Buffer.from('a block tulle does not know'), le),
      epb(0, 0x00060000, 0x12345678, Buffer.from('first'), le), // microseconds
      epb(1, Number(ticks >> 32n), Number(ticks & 0xffffffffn), Buffer.from('second!'), le, 60),
      spb(Buffer.from('simple'), le),
    ]);
    for (const { records, error } of [readAll(file), readChunked(file, 3), readChunked(file, 17)]) {
      assert.equal(error, undefined);
      assert.equal(records.length, 3);
      const [a, b, c] = records as [CaptureRecord, CaptureRecord, CaptureRecord];
      assert.equal(a.data.toString(), 'first');
      const micros = 0x00060000 * 2 ** 32 + 0x12345678;
      assert.equal(a.sec, Math.floor(micros / 1e6));
      assert.equal(a.nsec, (micros % 1e6) * 1000);
      assert.equal(a.linkType, 1);
      assert.equal(b.data.toString(), 'second!');
      assert.equal(b.interfaceId, 1);
      assert.equal(b.linkType, 101);
      assert.equal(b.sec, 1_700_000_000 + 100);
      assert.equal(b.nsec, 123_456_789);
      assert.equal(b.originalLength, 60);
      assert.equal(c.data.toString(), 'simple');
      assert.equal(c.interfaceId, 0);
    }
  }
});

test('pcapng: a new section forgets the interfaces of the one before; SPB obeys the snap length', () => {
  const file = Buffer.concat([shb(true), idb(1, 4), spb(Buffer.from('abcdefgh')), shb(false), idb(1, 0, false), epb(0, 0, 5, Buffer.from('be'), false)]);
  const { records, error } = readAll(file);
  assert.equal(error, undefined);
  assert.equal(records[0]!.data.toString(), 'abcd');
  assert.equal(records[0]!.originalLength, 8);
  assert.equal(records[1]!.data.toString(), 'be');
  const noInterface = Buffer.concat([shb(), idb(1, 0), shb(), epb(0, 0, 0, Buffer.from('x'))]);
  assertPcapError(readAll(noInterface), 'TLE_PCAP_MALFORMED', 28 + 20 + 28 + 8, /packet 0 is on interface 0 but the section describes 0/);
});

test('writer and streaming reader: a file is read in chunks, records are views into those chunks, not the whole file', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tulle-pcap-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'many.pcap');
  const writer = PcapWriter.toFile(path, {}); // default chunking, backpressure through the file stream
  const n = 20000;
  for (let i = 0; i < n; i++) {
    const frame = Buffer.alloc(60 + (i % 90), i & 0xff);
    frame.writeUInt32BE(i, 0);
    await writer.write(frame, { sec: 1000 + i, nsec: 5000 });
  }
  await writer.close();
  assert.equal(writer.count, n);
  const size = statSync(path).size;
  const chunkSize = 4096;
  let i = 0;
  let largestChunk = 0;
  for await (const batch of readCaptureBatches(path, { chunkSize })) {
    for (const r of batch) {
      assert.equal(r.data.readUInt32BE(0), i);
      assert.equal(r.capturedLength, 60 + (i % 90));
      assert.equal(r.sec, 1000 + i);
      assert.equal(r.nsec, 5000);
      largestChunk = Math.max(largestChunk, r.buf.length);
      i++;
    }
  }
  assert.equal(i, n);
  // Never more than a chunk plus one carried-over record in memory, for a file 200 times larger.
  assert.ok(size > 200 * chunkSize);
  assert.ok(largestChunk <= chunkSize + 16 + 150, `largest buffer ${largestChunk}`);
  // The one-record-at-a-time iterator reads the same.
  let j = 0;
  for await (const r of readCapture(path)) assert.equal(r.index, j++);
  assert.equal(j, n);
});

test('hostile and broken files: typed error with offset and reason, records before it still read', () => {
  const good = encodePcap([
    { data: Buffer.alloc(60, 1), time: { sec: 1, nsec: 0 } },
    { data: Buffer.alloc(70, 2), time: { sec: 2, nsec: 0 } },
  ]);
  assertPcapError(readAll(Buffer.alloc(0)), 'TLE_PCAP_TRUNCATED', 0, /the file is empty/);
  assertPcapError(readAll(Buffer.from([0xd4, 0xc3])), 'TLE_PCAP_TRUNCATED', 0, /2 bytes long, too short/);
  assertPcapError(readAll(Buffer.from('{"not": "a capture"}')), 'TLE_PCAP_BAD_MAGIC', 0, /not a pcap or pcapng file: it starts with 7b 22 6e 6f/);
  assertPcapError(readAll(Buffer.from([0x1f, 0x8b, 8, 0, 0, 0])), 'TLE_PCAP_BAD_MAGIC', 0, /gzip-compressed/);
  assertPcapError(readAll(good.subarray(0, 10)), 'TLE_PCAP_TRUNCATED', 0, /file header needs 24 bytes but the file has only 10/);
  const v3 = Buffer.from(good);
  v3.writeUInt16LE(3, 4);
  assertPcapError(readAll(v3), 'TLE_PCAP_UNSUPPORTED', 4, /pcap version 3\.4 is not 2\.x/);

  // A record whose captured length runs past the end: the first record is still read.
  const cut = readAll(good.subarray(0, good.length - 5));
  assert.equal(cut.records.length, 1);
  assertPcapError(cut, 'TLE_PCAP_TRUNCATED', 24 + 16 + 60, /record 1 says 70 bytes captured but the file ends 65 bytes after its header/);
  const halfHeader = readAll(good.subarray(0, 24 + 16 + 60 + 7));
  assertPcapError(halfHeader, 'TLE_PCAP_TRUNCATED', 100, /record 1: the record header needs 16 bytes but the file ends after 7/);
  const huge = Buffer.from(good);
  huge.writeUInt32LE(0xffffffff, 24 + 8);
  assertPcapError(readAll(huge), 'TLE_PCAP_BAD_LENGTH', 32, /record 0 says 4294967295 bytes captured, more than any packet/);

  // pcapng: zero, odd and mismatched lengths, packets past their block, bad byte-order magic, bad options.
  const head = Buffer.concat([shb(), idb(1, 0)]);
  const zero = Buffer.concat([head, Buffer.from([6, 0, 0, 0, 0, 0, 0, 0]), epb(0, 0, 0, Buffer.alloc(8))]);
  assertPcapError(readAll(zero), 'TLE_PCAP_BAD_LENGTH', head.length + 4, /block length 0 is impossible/);
  const odd = Buffer.concat([head, epb(0, 0, 0, Buffer.alloc(8))]);
  odd.writeUInt32LE(42, head.length + 4);
  assertPcapError(readAll(odd), 'TLE_PCAP_BAD_LENGTH', head.length + 4, /block length 42 is impossible \(must be a multiple of 4/);
  const mismatch = Buffer.concat([head, epb(0, 0, 0, Buffer.alloc(8))]);
  mismatch.writeUInt32LE(1000, mismatch.length - 4);
  assertPcapError(readAll(mismatch), 'TLE_PCAP_MALFORMED', mismatch.length - 4, /trailing length 1000 differs from its leading length 40/);
  const overlong = Buffer.concat([head, epb(0, 0, 0, Buffer.alloc(8))]);
  overlong.writeUInt32LE(9, head.length + 20);
  assertPcapError(readAll(overlong), 'TLE_PCAP_BAD_LENGTH', head.length + 20, /packet 0 says 9 bytes captured but its block holds only 8/);
  const bom = shb();
  bom.writeUInt32LE(0xdeadbeef, 8);
  assertPcapError(readAll(bom), 'TLE_PCAP_MALFORMED', 8, /byte-order magic 0xefbeadde is not 0x1a2b3c4d/);
  const badOption = Buffer.concat([shb(), idb(1, 0, true, [option(2, Buffer.from('eth0'), true)])]);
  badOption.writeUInt16LE(200, 28 + 16 + 2);
  assertPcapError(readAll(badOption), 'TLE_PCAP_MALFORMED', 28 + 16 + 2, /option 2 length 200 runs past the end of its block/);
  const unfinished = Buffer.concat([head, epb(0, 0, 0, Buffer.alloc(8))]).subarray(0, head.length + 30);
  assertPcapError(readAll(unfinished), 'TLE_PCAP_TRUNCATED', head.length, /says it is 40 bytes long but the file ends after 30/);
});

test('a zero-length pcapng block fails at once in a stream too (no loop waiting for more)', async () => {
  const chunks = (async function* () {
    yield Buffer.concat([shb(), idb(1, 0), epb(0, 0, 0, Buffer.from('ok'))]);
    yield Buffer.from([6, 0, 0, 0, 0, 0, 0, 0]);
    // A hostile stream that never ends: the reader must stop at the bad block, not read on.
    for (;;) yield Buffer.alloc(4096);
  })();
  const seen: string[] = [];
  await assert.rejects(
    (async () => {
      for await (const r of readCapture(chunks)) seen.push(r.data.toString());
    })(),
    (e: unknown) => e instanceof PcapError && e.code === 'TLE_PCAP_BAD_LENGTH',
  );
  assert.deepEqual(seen, ['ok']);
});

test('a file that cannot be opened is a TulleError naming it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tulle-pcap-'));
  try {
    writeFileSync(join(dir, 'x'), '');
    await assert.rejects(readCapture(join(dir, 'missing.pcap')).next(), /missing\.pcap: no such file/);
    await assert.rejects(readCapture(join(dir, 'x')).next(), (e: unknown) => e instanceof PcapError && /the file is empty/.test(e.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
