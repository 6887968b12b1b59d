/**
 * Reading capture files, pcap or pcapng (told apart by their first bytes), as a stream: the file is read in
 * chunks and records are views into those chunks, so a capture of any size needs memory for one chunk (plus
 * whatever the caller keeps). A record cut by a chunk boundary is completed from the next chunk.
 *
 * A bad header, record or block ends the stream with a PcapError naming its file offset — after every record
 * before it has been handed out, so a caller can show what it could read.
 */
import { open } from 'node:fs/promises';
import { TulleError } from '../base/errors.js';
import { PcapError } from './errors.js';
import { PcapReader, isPcapMagic } from './pcap.js';
import { PcapngReader, isPcapngMagic } from './pcapng.js';
import type { CaptureRecord, FormatReader } from './record.js';

export type CaptureFormat = 'pcap' | 'pcapng';

/** Default read size: large enough that per-chunk costs vanish, small enough to stay in cache-friendly memory. */
export const DEFAULT_CHUNK_SIZE = 1 << 20;

const EMPTY = Buffer.alloc(0);

/**
 * Turns file chunks into records. Feed chunks in order with push(), then call end(). Not tied to any I/O, so the
 * same code reads a Buffer, a file, or stdin.
 */
export class CaptureParser {
  private reader: FormatReader | undefined = undefined;
  format: CaptureFormat | undefined = undefined;
  /** Bytes of an incomplete record carried over to the next chunk, and the file offset of pending[0]. */
  private pending: Buffer = EMPTY;
  private pendingBase = 0;

  /**
   * Append the records completed by `chunk` to `out`. On a PcapError, `out` still holds every record before
   * the bad one; the error is thrown after them.
   */
  push(chunk: Buffer, out: CaptureRecord[]): void {
    if (this.pending.length > 0 && this.reader?.pieceLength) {
      const used = this.completePending(chunk, out);
      if (used === chunk.length) return;
      chunk = chunk.subarray(used);
    }
    let buf: Buffer;
    if (this.pending.length === 0) buf = chunk;
    else buf = Buffer.concat([this.pending, chunk]);
    const base = this.pendingBase;
    if (!this.reader) {
      if (buf.length < 4) {
        this.pending = buf;
        return;
      }
      this.reader = this.detect(buf);
    }
    const pos = this.reader.parse(buf, 0, buf.length, base, out);
    // The unfinished tail waits for the next chunk.
    this.pending = pos === buf.length ? EMPTY : buf.subarray(pos);
    this.pendingBase = base + pos;
  }

  /**
   * Complete the record the previous chunk cut from the head of `chunk`, copying only that record's bytes (a
   * stream's chunks, 64 KiB from a pipe, would otherwise each be copied whole behind the tail). Returns how many
   * bytes of `chunk` it used; the pending bytes are then parsed (or still wait, when `chunk` ran out), or left for
   * the general path when the reader cannot tell the record's length.
   */
  private completePending(chunk: Buffer, out: CaptureRecord[]): number {
    const reader = this.reader!;
    let head = this.pending;
    let used = 0;
    for (;;) {
      const size = reader.pieceLength!(head, 0, head.length);
      if (size === undefined) break;
      if (head.length >= size) {
        const pos = reader.parse(head, 0, size, this.pendingBase, out);
        if (pos !== size) break; // not what the reader said: let the general path see every byte
        this.pending = head.length === size ? EMPTY : head.subarray(size);
        this.pendingBase += size;
        return used;
      }
      if (used === chunk.length) break;
      const more = Math.min(size - head.length, chunk.length - used);
      head = Buffer.concat([head, chunk.subarray(used, used + more)]);
      used += more;
    }
    this.pending = head;
    return used;
  }

  /**
   * Hand over the unfinished tail and forget it: the caller puts it at the start of the next chunk it pushes,
   * so a file reader copies only those few bytes instead of concatenating whole chunks.
   */
  takePending(): Buffer {
    const tail = this.pending;
    this.pending = EMPTY;
    return tail;
  }

  /** The input is over: throws if it ended inside a header or record (or was empty). */
  end(): void {
    if (!this.reader) {
      const n = this.pending.length;
      throw new PcapError('TLE_PCAP_TRUNCATED', 0, n === 0 ? 'the file is empty' : `the file is ${n} bytes long, too short for a capture header`);
    }
    if (this.pending.length > 0) {
      throw new PcapError('TLE_PCAP_TRUNCATED', this.pendingBase, this.reader.describeIncomplete(this.pending, 0, this.pending.length));
    }
  }

  private detect(buf: Buffer): FormatReader {
    if (isPcapMagic(buf)) {
      this.format = 'pcap';
      return new PcapReader();
    }
    if (isPcapngMagic(buf)) {
      this.format = 'pcapng';
      return new PcapngReader();
    }
    const head = [...buf.subarray(0, 4)].map((b) => b.toString(16).padStart(2, '0')).join(' ');
    const hint = buf[0] === 0x1f && buf[1] === 0x8b ? ' (it is gzip-compressed: gunzip it first)' : '';
    throw new PcapError('TLE_PCAP_BAD_MAGIC', 0, `not a pcap or pcapng file: it starts with ${head}${hint}`);
  }
}

/** All records of an in-memory capture; throws PcapError at the first bad spot, after yielding the records before it. */
export function* readCaptureSync(buf: Buffer): Generator<CaptureRecord, CaptureFormat> {
  const parser = new CaptureParser();
  const out: CaptureRecord[] = [];
  let failed = false;
  let failure: unknown;
  try {
    parser.push(buf, out);
    parser.end();
  } catch (err) {
    failed = true;
    failure = err;
  }
  yield* out;
  if (failed) throw failure;
  return parser.format!;
}

/** Where to read a capture from: a file path, or chunks from any stream (e.g. process.stdin). */
export type CaptureSource = string | AsyncIterable<Uint8Array>;

/**
 * Chunks of a file, each beginning with the parser's unfinished tail: read straight into a fresh buffer after
 * that tail, so no chunk is ever copied. Each chunk is a new buffer because records handed out are views into it.
 */
async function* fileChunks(path: string, chunkSize: number, parser: CaptureParser): AsyncGenerator<Buffer> {
  const file = await open(path, 'r');
  try {
    for (;;) {
      const tail = parser.takePending();
      const buf = Buffer.allocUnsafe(tail.length + chunkSize);
      tail.copy(buf, 0);
      const { bytesRead } = await file.read(buf, tail.length, chunkSize, null);
      if (bytesRead === 0) {
        if (tail.length) yield buf.subarray(0, tail.length); // give the tail back, so end() can name it
        return;
      }
      yield buf.subarray(0, tail.length + bytesRead);
    }
  } finally {
    await file.close();
  }
}

/**
 * Records in batches (one per chunk read): the fast way through a large file, one await per chunk rather than
 * per packet. `onFormat` is told the format as soon as it is known.
 */
export async function* readCaptureBatches(
  source: CaptureSource,
  options: { chunkSize?: number; onFormat?: (f: CaptureFormat) => void } = {},
): AsyncGenerator<CaptureRecord[]> {
  const parser = new CaptureParser();
  const chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
  let told = false;
  try {
    for await (const chunk of typeof source === 'string' ? fileChunks(source, chunkSize, parser) : source) {
      const out: CaptureRecord[] = [];
      const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      try {
        parser.push(buf, out);
      } finally {
        if (!told && parser.format) {
          told = true;
          options.onFormat?.(parser.format);
        }
        if (out.length) yield out;
      }
    }
  } catch (err) {
    if (err instanceof TulleError) throw err;
    const e = err as NodeJS.ErrnoException;
    throw new TulleError('TLE_CAPTURE_UNREADABLE', `${typeof source === 'string' ? source : 'input'}: ${e.code === 'ENOENT' ? 'no such file' : e.message}`, {
      cause: err,
    });
  }
  parser.end();
}

/** Records one by one (convenient; readCaptureBatches is faster for millions of packets). */
export async function* readCapture(source: CaptureSource, options: { chunkSize?: number } = {}): AsyncGenerator<CaptureRecord> {
  for await (const batch of readCaptureBatches(source, options)) yield* batch;
}
