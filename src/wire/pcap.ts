/**
 * The classic pcap file format (libpcap; draft-ietf-opsawg-pcap): a 24-byte file header, then per packet a
 * 16-byte record header and the captured bytes. Byte order and timestamp precision (micro- or nanoseconds)
 * are given by the magic number, so all four variants are read; files are written little-endian.
 */
import { createWriteStream } from 'node:fs';
import type { Writable } from 'node:stream';
import { PcapError } from './errors.js';
import { CaptureRecord, MAX_RECORD_LENGTH, type FormatReader } from './record.js';
import { checkBytes, checkInt } from './validate.js';

export const PCAP_MAGIC_MICROSECONDS = 0xa1b2c3d4;
export const PCAP_MAGIC_NANOSECONDS = 0xa1b23c4d;
export const PCAP_HEADER_LENGTH = 24;
export const PCAP_RECORD_HEADER_LENGTH = 16;
export const DEFAULT_SNAPLEN = 262144;

export interface PcapFileHeader {
  littleEndian: boolean;
  nanosecond: boolean;
  versionMajor: number;
  versionMinor: number;
  snaplen: number;
  /** Link type (low 26 bits of the network field; the top bits say whether frames carry an FCS). */
  linkType: number;
}

/** Is this the start of a pcap file (either byte order, either precision)? */
export function isPcapMagic(buf: Uint8Array, offset = 0): boolean {
  if (buf.length - offset < 4) return false;
  const b = Buffer.from(buf.buffer, buf.byteOffset + offset, 4);
  const le = b.readUInt32LE(0);
  const be = b.readUInt32BE(0);
  return le === PCAP_MAGIC_MICROSECONDS || le === PCAP_MAGIC_NANOSECONDS || be === PCAP_MAGIC_MICROSECONDS || be === PCAP_MAGIC_NANOSECONDS;
}

export function parsePcapHeader(buf: Buffer, pos: number): PcapFileHeader {
  const le = buf.readUInt32LE(pos);
  const littleEndian = le === PCAP_MAGIC_MICROSECONDS || le === PCAP_MAGIC_NANOSECONDS;
  const magic = littleEndian ? le : buf.readUInt32BE(pos);
  if (magic !== PCAP_MAGIC_MICROSECONDS && magic !== PCAP_MAGIC_NANOSECONDS) {
    throw new PcapError('TLE_PCAP_BAD_MAGIC', pos, `magic 0x${buf.readUInt32BE(pos).toString(16).padStart(8, '0')} is not a pcap magic number`);
  }
  const u16 = (o: number): number => (littleEndian ? buf.readUInt16LE(pos + o) : buf.readUInt16BE(pos + o));
  const u32 = (o: number): number => (littleEndian ? buf.readUInt32LE(pos + o) : buf.readUInt32BE(pos + o));
  const versionMajor = u16(4);
  const versionMinor = u16(6);
  if (versionMajor !== 2) throw new PcapError('TLE_PCAP_UNSUPPORTED', pos + 4, `pcap version ${versionMajor}.${versionMinor} is not 2.x`);
  return { littleEndian, nanosecond: magic === PCAP_MAGIC_NANOSECONDS, versionMajor, versionMinor, snaplen: u32(16), linkType: u32(20) & 0x03ffffff };
}

/** Reads a pcap file: the file header once, then records. */
export class PcapReader implements FormatReader {
  header: PcapFileHeader | undefined = undefined;
  private count = 0;

  parse(buf: Buffer, pos: number, end: number, base: number, out: CaptureRecord[]): number {
    if (!this.header) {
      if (end - pos < PCAP_HEADER_LENGTH) return pos;
      this.header = parsePcapHeader(buf, pos);
      pos += PCAP_HEADER_LENGTH;
    }
    const { littleEndian, nanosecond, linkType } = this.header;
    const fracScale = nanosecond ? 1 : 1000;
    // Plain byte arithmetic: this loop runs once per packet, and Buffer's readers re-check bounds we checked.
    const u32 = littleEndian
      ? (o: number): number => (buf[o]! | (buf[o + 1]! << 8) | (buf[o + 2]! << 16) | (buf[o + 3]! << 24)) >>> 0
      : (o: number): number => ((buf[o]! << 24) | (buf[o + 1]! << 16) | (buf[o + 2]! << 8) | buf[o + 3]!) >>> 0;
    while (end - pos >= PCAP_RECORD_HEADER_LENGTH) {
      const sec = u32(pos);
      const frac = u32(pos + 4);
      const caplen = u32(pos + 8);
      const origlen = u32(pos + 12);
      if (caplen > MAX_RECORD_LENGTH) {
        throw new PcapError(
          'TLE_PCAP_BAD_LENGTH',
          base + pos + 8,
          `record ${this.count} says ${caplen} bytes captured, more than any packet (${MAX_RECORD_LENGTH})`,
        );
      }
      const dataStart = pos + PCAP_RECORD_HEADER_LENGTH;
      if (end - dataStart < caplen) break;
      out.push(new CaptureRecord(this.count++, base + pos, sec, frac * fracScale, caplen, origlen, linkType, 0, buf, dataStart));
      pos = dataStart + caplen;
    }
    return pos;
  }

  pieceLength(buf: Buffer, pos: number, end: number): number | undefined {
    if (!this.header) return PCAP_HEADER_LENGTH;
    if (end - pos < PCAP_RECORD_HEADER_LENGTH) return PCAP_RECORD_HEADER_LENGTH;
    const caplen = this.header.littleEndian ? buf.readUInt32LE(pos + 8) : buf.readUInt32BE(pos + 8);
    return caplen > MAX_RECORD_LENGTH ? undefined : PCAP_RECORD_HEADER_LENGTH + caplen;
  }

  describeIncomplete(buf: Buffer, pos: number, end: number): string {
    const left = end - pos;
    if (!this.header) return `the pcap file header needs ${PCAP_HEADER_LENGTH} bytes but the file has only ${left}`;
    if (left < PCAP_RECORD_HEADER_LENGTH)
      return `record ${this.count}: the record header needs ${PCAP_RECORD_HEADER_LENGTH} bytes but the file ends after ${left}`;
    const caplen = this.header.littleEndian ? buf.readUInt32LE(pos + 8) : buf.readUInt32BE(pos + 8);
    return `record ${this.count} says ${caplen} bytes captured but the file ends ${left - PCAP_RECORD_HEADER_LENGTH} bytes after its header`;
  }
}

export interface Timestamp {
  sec: number;
  nsec: number;
}

export interface PcapWriterOptions {
  /** Default 1 (Ethernet). */
  linkType?: number;
  /** Frames longer than this are cut (original length kept); default 262144. */
  snaplen?: number;
  /** Nanosecond timestamps (magic 0xa1b23c4d); default microseconds, which every tool reads. */
  nanosecond?: boolean;
  /** Write big-endian (tests of readers); default little-endian. */
  bigEndian?: boolean;
}

export function timestampNow(): Timestamp {
  const ms = Date.now();
  return { sec: Math.floor(ms / 1000), nsec: (ms % 1000) * 1_000_000 };
}

function pcapHeader(o: Required<PcapWriterOptions>): Buffer {
  const h = Buffer.alloc(PCAP_HEADER_LENGTH);
  const w32 = (v: number, at: number): number => (o.bigEndian ? h.writeUInt32BE(v, at) : h.writeUInt32LE(v, at));
  const w16 = (v: number, at: number): number => (o.bigEndian ? h.writeUInt16BE(v, at) : h.writeUInt16LE(v, at));
  w32(o.nanosecond ? PCAP_MAGIC_NANOSECONDS : PCAP_MAGIC_MICROSECONDS, 0);
  w16(2, 4);
  w16(4, 6);
  w32(o.snaplen, 16);
  w32(o.linkType, 20);
  return h;
}

function resolveOptions(options: PcapWriterOptions): Required<PcapWriterOptions> {
  return {
    linkType: checkInt('linkType', options.linkType ?? 1, 0, 0x03ffffff),
    snaplen: checkInt('snaplen', options.snaplen ?? DEFAULT_SNAPLEN, 1, MAX_RECORD_LENGTH),
    nanosecond: options.nanosecond ?? false,
    bigEndian: options.bigEndian ?? false,
  };
}

/** Write one record (header + bytes) at out[pos]; returns the position after it. */
function writeRecord(out: Buffer, pos: number, o: Required<PcapWriterOptions>, frame: Uint8Array, time: Timestamp, originalLength: number): number {
  const caplen = Math.min(frame.length, o.snaplen);
  const frac = o.nanosecond ? time.nsec : Math.floor(time.nsec / 1000);
  if (o.bigEndian) {
    out.writeUInt32BE(time.sec >>> 0, pos);
    out.writeUInt32BE(frac >>> 0, pos + 4);
    out.writeUInt32BE(caplen, pos + 8);
    out.writeUInt32BE(originalLength >>> 0, pos + 12);
  } else {
    out.writeUInt32LE(time.sec >>> 0, pos);
    out.writeUInt32LE(frac >>> 0, pos + 4);
    out.writeUInt32LE(caplen, pos + 8);
    out.writeUInt32LE(originalLength >>> 0, pos + 12);
  }
  out.set(caplen === frame.length ? frame : frame.subarray(0, caplen), pos + PCAP_RECORD_HEADER_LENGTH);
  return pos + PCAP_RECORD_HEADER_LENGTH + caplen;
}

export interface PcapInputRecord {
  data: Uint8Array;
  /** Default: now. */
  time?: Timestamp;
  /** Default: data.length. */
  originalLength?: number;
}

/** A whole pcap file in memory (small captures, tests). */
export function encodePcap(records: Iterable<PcapInputRecord>, options: PcapWriterOptions = {}): Buffer {
  const o = resolveOptions(options);
  const list = [...records];
  let size = PCAP_HEADER_LENGTH;
  for (const r of list) size += PCAP_RECORD_HEADER_LENGTH + Math.min(checkBytes('data', r.data).length, o.snaplen);
  const out = Buffer.alloc(size);
  pcapHeader(o).copy(out, 0);
  let pos = PCAP_HEADER_LENGTH;
  for (const r of list) pos = writeRecord(out, pos, o, r.data, r.time ?? timestampNow(), r.originalLength ?? r.data.length);
  return out;
}

/**
 * Appends records to a stream or file. Records are gathered into large writes; `write` returns a promise only
 * when the stream asks to wait (backpressure), so `await writer.write(...)` is cheap in a loop.
 */
export class PcapWriter {
  private readonly options: Required<PcapWriterOptions>;
  private chunk: Buffer;
  private pos = 0;
  private failure: Error | undefined = undefined;
  private closed = false;
  /** Records written so far. */
  count = 0;

  static toFile(path: string, options: PcapWriterOptions = {}): PcapWriter {
    return new PcapWriter(createWriteStream(path), options);
  }

  constructor(
    private readonly sink: Writable,
    options: PcapWriterOptions = {},
    private readonly chunkSize = 1 << 20,
  ) {
    this.options = resolveOptions(options);
    this.chunk = Buffer.allocUnsafe(chunkSize);
    sink.on('error', (err: Error) => (this.failure ??= err));
    pcapHeader(this.options).copy(this.chunk, 0);
    this.pos = PCAP_HEADER_LENGTH;
  }

  write(frame: Uint8Array, time: Timestamp = timestampNow(), originalLength = frame.length): Promise<void> | void {
    if (this.failure) throw this.failure;
    if (this.closed) throw new Error('PcapWriter: write after close');
    const need = PCAP_RECORD_HEADER_LENGTH + Math.min(frame.length, this.options.snaplen);
    let wait: Promise<void> | void = undefined;
    if (this.pos + need > this.chunk.length) {
      wait = this.flush();
      if (need > this.chunk.length) this.chunk = Buffer.allocUnsafe(need);
    }
    this.pos = writeRecord(this.chunk, this.pos, this.options, frame, time, originalLength);
    this.count++;
    return wait;
  }

  /** Hand the gathered bytes to the stream; resolves when it can take more. */
  private flush(): Promise<void> | void {
    if (this.pos === 0) return;
    const full = this.chunk.subarray(0, this.pos);
    this.chunk = Buffer.allocUnsafe(this.chunkSize);
    this.pos = 0;
    if (this.sink.write(full)) return;
    return new Promise((resolve, reject) => {
      const onDrain = (): void => {
        this.sink.off('error', onError);
        resolve();
      };
      const onError = (err: Error): void => {
        this.sink.off('drain', onDrain);
        reject(err);
      };
      this.sink.once('drain', onDrain);
      this.sink.once('error', onError);
    });
  }

  /** Write what is left and end the stream; resolves when the file is complete. */
  async close(): Promise<void> {
    if (this.closed) return;
    await this.flush();
    this.closed = true;
    await new Promise<void>((resolve, reject) => {
      if (this.failure) return reject(this.failure);
      this.sink.once('error', reject);
      this.sink.end(() => resolve());
    });
    if (this.failure) throw this.failure;
  }
}
