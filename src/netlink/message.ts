/**
 * Netlink message framing: a 16-byte header (length, type, flags, sequence, port id), a fixed struct
 * (ifinfomsg, rtmsg, ...), then type-length-value attributes, each padded to 4 bytes and possibly nested.
 * Netlink uses the host's byte order (little-endian on every machine tulle runs on) except where an attribute
 * says network order (ports, addresses).
 */
import { formatAddress } from './inet.js';
import { NLA_F_NESTED, NLA_HDRLEN, NLA_TYPE_MASK, NLMSG_HDRLEN, NLM_F_ACK_TLVS, NLM_F_CAPPED, NLM_F_REQUEST, NLMSGERR_ATTR_MSG } from './constants.js';

export const align4 = (n: number): number => (n + 3) & ~3;

/** One request ready to send, and the iproute2 command it equals (for error messages). */
export interface Request {
  readonly message: Buffer;
  readonly command: string;
}

/**
 * A request whose command text is written only when asked for, i.e. when it failed: a batch of 15000 successful
 * ops then builds no strings at all.
 */
class LazyRequest implements Request {
  constructor(
    readonly message: Buffer,
    private readonly describe: () => string,
  ) {}

  get command(): string {
    return this.describe();
  }
}

export function lazyRequest(message: Buffer, describe: () => string): Request {
  return new LazyRequest(message, describe);
}

/**
 * Messages are written one after another into an append-only arena and handed out as views into it: no
 * allocation or copy per message, and a chunk of consecutive requests goes to the kernel as one view of the
 * arena (see `joinMessages`). A full arena is replaced, never rewritten, so earlier views stay valid.
 */
const ARENA_SIZE = 256 * 1024;
let arena = Buffer.allocUnsafe(ARENA_SIZE);
let arenaUsed = 0;
let writerOpen = false;

// Little-endian stores without Buffer's checked write methods: an encoder of thousands of requests calls these
// several times per message, and the offsets come from the writer itself.
function put16(b: Buffer, at: number, v: number): void {
  b[at] = v & 255;
  b[at + 1] = (v >>> 8) & 255;
}

export function put32(b: Buffer, at: number, v: number): void {
  b[at] = v & 255;
  b[at + 1] = (v >>> 8) & 255;
  b[at + 2] = (v >>> 16) & 255;
  b[at + 3] = (v >>> 24) & 255;
}

/**
 * Builds one message. Start with the header and fixed struct (`new MessageWriter(type, flags, structLen)`), fill
 * the struct through `struct`, add attributes, then `finish()`. The sequence number is set when sent.
 */
export class MessageWriter {
  private buf: Buffer;
  /** Where this message starts in `buf`. */
  private start: number;
  private pos: number;
  private readonly inArena: boolean;

  constructor(type: number, flags: number, structLen: number) {
    // Encoders are synchronous, so messages are never interleaved in the arena; a writer opened while another
    // is (never done today) simply gets a buffer of its own.
    this.inArena = !writerOpen;
    writerOpen = true;
    const headLen = NLMSG_HDRLEN + align4(structLen);
    if (this.inArena) {
      if (arenaUsed + headLen + 512 > arena.length) {
        arena = Buffer.allocUnsafe(ARENA_SIZE);
        arenaUsed = 0;
      }
      this.buf = arena;
      this.start = arenaUsed;
    } else {
      this.buf = Buffer.allocUnsafe(4096);
      this.start = 0;
    }
    this.pos = this.start + headLen;
    this.buf.fill(0, this.start, this.pos);
    put16(this.buf, this.start + 4, type);
    put16(this.buf, this.start + 6, flags | NLM_F_REQUEST);
  }

  /** Fields of the fixed struct after the header, written in place (little-endian, as netlink wants). */
  structU8(offset: number, value: number): this {
    this.buf[this.start + NLMSG_HDRLEN + offset] = value;
    return this;
  }

  structU16(offset: number, value: number): this {
    put16(this.buf, this.start + NLMSG_HDRLEN + offset, value);
    return this;
  }

  structU32(offset: number, value: number): this {
    put32(this.buf, this.start + NLMSG_HDRLEN + offset, value);
    return this;
  }

  /**
   * The fixed struct right after the header, zero-filled, for the caller to write its fields into: before adding
   * attributes, which may move the message to a bigger buffer.
   */
  get struct(): Buffer {
    return this.buf.subarray(this.start + NLMSG_HDRLEN);
  }

  /** Room for `n` more bytes: a message outgrowing the arena moves, whole, to a fresh one. */
  private reserve(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const size = this.pos - this.start;
    const bigger = Buffer.allocUnsafe(Math.max(ARENA_SIZE, (size + n) * 2));
    this.buf.copy(bigger, 0, this.start, this.pos);
    this.buf = bigger;
    this.start = 0;
    this.pos = size;
    if (this.inArena) arena = bigger;
  }

  /** Attribute header plus room for `dataLen` bytes; returns where the data goes. */
  private attr(type: number, dataLen: number): number {
    const len = NLA_HDRLEN + dataLen;
    this.reserve(align4(len));
    this.buf.writeUInt16LE(len, this.pos);
    this.buf.writeUInt16LE(type, this.pos + 2);
    const at = this.pos + NLA_HDRLEN;
    this.buf.fill(0, this.pos + len, this.pos + align4(len)); // padding
    this.pos += align4(len);
    return at;
  }

  // Each writer below takes the position first: attr() may move the message to a bigger buffer, and
  // `this.buf.set(data, this.attr(...))` would have read the old one before the call.

  bytes(type: number, data: Uint8Array): this {
    const at = this.attr(type, data.length);
    this.buf.set(data, at);
    return this;
  }

  u8(type: number, value: number): this {
    const at = this.attr(type, 1);
    this.buf[at] = value;
    return this;
  }

  u16(type: number, value: number): this {
    const at = this.attr(type, 2);
    this.buf.writeUInt16LE(value, at);
    return this;
  }

  /** 16-bit value in network byte order (UDP ports). */
  be16(type: number, value: number): this {
    const at = this.attr(type, 2);
    this.buf.writeUInt16BE(value, at);
    return this;
  }

  u32(type: number, value: number): this {
    const at = this.attr(type, 4);
    put32(this.buf, at, value);
    return this;
  }

  /** A NUL-terminated string, as the kernel expects for names and kinds. */
  string(type: number, value: string): this {
    return this.bytes(type, Buffer.from(value + '\0', 'utf8'));
  }

  /** A flag attribute: present means true. */
  flag(type: number): this {
    return this.bytes(type, new Uint8Array(0));
  }

  /** Open a nested attribute; everything added until `endNest(nest)` goes inside it. */
  beginNest(type: number): number {
    this.reserve(NLA_HDRLEN);
    const nest = this.pos - this.start; // relative: the message may move to a bigger buffer meanwhile
    this.buf.writeUInt16LE(type | NLA_F_NESTED, this.pos + 2);
    this.pos += NLA_HDRLEN;
    return nest;
  }

  endNest(nest: number): this {
    this.buf.writeUInt16LE(this.pos - this.start - nest, this.start + nest);
    return this;
  }

  /** Raw bytes inside a nest that are not an attribute (veth's peer ifinfomsg). */
  raw(data: Uint8Array): this {
    this.reserve(align4(data.length));
    this.buf.set(data, this.pos);
    this.buf.fill(0, this.pos + data.length, this.pos + align4(data.length));
    this.pos += align4(data.length);
    return this;
  }

  /** The finished message, a view into the arena; the writer must not be used afterwards. */
  finish(): Buffer {
    put32(this.buf, this.start, this.pos - this.start);
    if (this.inArena) {
      arenaUsed = this.pos;
      writerOpen = false;
    }
    return this.buf.subarray(this.start, this.pos);
  }
}

/**
 * The messages back to back in one buffer: a single view when they lie one after another in the same arena
 * (the usual case for a batch), else a copy.
 */
export function joinMessages(parts: readonly Buffer[]): Buffer {
  if (parts.length === 1) return parts[0]!;
  const first = parts[0]!;
  let end = first.byteOffset + first.length;
  for (let i = 1; i < parts.length; i++) {
    const p = parts[i]!;
    if (p.buffer !== first.buffer || p.byteOffset !== end) return Buffer.concat(parts);
    end += p.length;
  }
  return Buffer.from(first.buffer, first.byteOffset, end - first.byteOffset);
}

/** A received message: header fields and the payload (fixed struct + attributes) as a view. */
export interface Message {
  type: number;
  flags: number;
  seq: number;
  pid: number;
  payload: Buffer;
}

/** Split a buffer of one or more datagrams into messages. Stops at a malformed length rather than looping. */
export function parseMessages(data: Buffer): Message[] {
  const out: Message[] = [];
  let off = 0;
  while (off + NLMSG_HDRLEN <= data.length) {
    const len = data.readUInt32LE(off);
    if (len < NLMSG_HDRLEN || off + len > data.length) break;
    out.push({
      type: data.readUInt16LE(off + 4),
      flags: data.readUInt16LE(off + 6),
      seq: data.readUInt32LE(off + 8),
      pid: data.readUInt32LE(off + 12),
      payload: data.subarray(off + NLMSG_HDRLEN, off + len),
    });
    off += align4(len);
  }
  return out;
}

/**
 * The attributes of one message, as positions into its buffer: values are read in place, no Buffer per
 * attribute (dumps of thousands of routes decode tens of thousands of attributes).
 */
export class Attrs {
  private readonly offsets: number[] = [];
  private readonly lengths: number[] = [];

  constructor(
    readonly buf: Buffer,
    start = 0,
    end = buf.length,
  ) {
    let off = start;
    while (off + NLA_HDRLEN <= end) {
      const len = buf.readUInt16LE(off);
      if (len < NLA_HDRLEN || off + len > end) break;
      const type = buf.readUInt16LE(off + 2) & NLA_TYPE_MASK;
      if (type < 256) {
        this.offsets[type] = off + NLA_HDRLEN;
        this.lengths[type] = len - NLA_HDRLEN;
      }
      off += align4(len);
    }
  }

  has(type: number): boolean {
    return this.offsets[type] !== undefined;
  }

  length(type: number): number {
    return this.lengths[type] ?? -1;
  }

  /** The value as a view (for nested attributes and raw bytes). */
  bytes(type: number): Buffer | undefined {
    const off = this.offsets[type];
    return off === undefined ? undefined : this.buf.subarray(off, off + this.lengths[type]!);
  }

  nested(type: number): Attrs | undefined {
    const off = this.offsets[type];
    return off === undefined ? undefined : new Attrs(this.buf, off, off + this.lengths[type]!);
  }

  u8(type: number): number | undefined {
    return (this.lengths[type] ?? 0) >= 1 ? this.buf[this.offsets[type]!] : undefined;
  }

  u32(type: number): number | undefined {
    return (this.lengths[type] ?? 0) >= 4 ? this.buf.readUInt32LE(this.offsets[type]) : undefined;
  }

  i32(type: number): number | undefined {
    return (this.lengths[type] ?? 0) >= 4 ? this.buf.readInt32LE(this.offsets[type]) : undefined;
  }

  /** 16-bit value in network byte order (ports). */
  be16(type: number): number | undefined {
    return (this.lengths[type] ?? 0) >= 2 ? this.buf.readUInt16BE(this.offsets[type]) : undefined;
  }

  u16(type: number): number | undefined {
    return (this.lengths[type] ?? 0) >= 2 ? this.buf.readUInt16LE(this.offsets[type]) : undefined;
  }

  /** A NUL-terminated string. */
  string(type: number): string | undefined {
    const off = this.offsets[type];
    if (off === undefined) return undefined;
    let end = off + this.lengths[type]!;
    const nul = this.buf.indexOf(0, off);
    if (nul >= 0 && nul < end) end = nul;
    return this.buf.toString('utf8', off, end);
  }

  /** A 6-byte MAC address as text, or undefined (absent or another length). */
  mac(type: number): string | undefined {
    return this.lengths[type] === 6 ? macText(this.buf, this.offsets[type]!) : undefined;
  }

  /** An IPv4 (4 bytes) or IPv6 (16 bytes) address as text. */
  address(type: number): string | undefined {
    const len = this.lengths[type];
    if (len !== 4 && len !== 16) return undefined;
    return addressText(this.buf, this.offsets[type]!, len);
  }
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

export function macText(buf: Buffer, off: number): string {
  return `${HEX[buf[off]!]}:${HEX[buf[off + 1]!]}:${HEX[buf[off + 2]!]}:${HEX[buf[off + 3]!]}:${HEX[buf[off + 4]!]}:${HEX[buf[off + 5]!]}`;
}

/** Address text straight from a buffer: dotted quad for 4 bytes, RFC 5952 for 16. */
export function addressText(buf: Buffer, off: number, len: 4 | 16): string {
  if (len === 4) return `${buf[off]}.${buf[off + 1]}.${buf[off + 2]}.${buf[off + 3]}`;
  return formatAddress(buf.subarray(off, off + 16));
}

/** The outcome carried by NLMSG_ERROR (0 = ACK) or NLMSG_DONE, with the kernel's extended ACK message. */
export interface AckInfo {
  /** 0 for success, else a positive errno number. */
  errno: number;
  kernelMessage: string | undefined;
}

/**
 * Decode struct nlmsgerr { int error; struct nlmsghdr msg; ... } plus the extended-ACK attributes that follow
 * the echoed request (just its header when the kernel capped it).
 */
export function parseError(m: Message): AckInfo {
  const p = m.payload;
  if (p.length < 4) return { errno: 0, kernelMessage: undefined };
  const errno = 0 - p.readInt32LE(0); // not -x: an ACK's 0 must not become -0
  let kernelMessage: string | undefined;
  if (m.flags & NLM_F_ACK_TLVS && p.length >= 4 + NLMSG_HDRLEN) {
    const echoed = m.flags & NLM_F_CAPPED ? NLMSG_HDRLEN : align4(p.readUInt32LE(4));
    kernelMessage = new Attrs(p, 4 + echoed).string(NLMSGERR_ATTR_MSG);
  }
  return { errno, kernelMessage };
}

/** NLMSG_DONE carries an int error (non-zero when a dump failed part-way), then extended ACK attributes. */
export function parseDone(m: Message): AckInfo {
  const p = m.payload;
  if (p.length < 4) return { errno: 0, kernelMessage: undefined };
  const errno = 0 - p.readInt32LE(0);
  const kernelMessage = m.flags & NLM_F_ACK_TLVS ? new Attrs(p, 4).string(NLMSGERR_ATTR_MSG) : undefined;
  return { errno, kernelMessage };
}
