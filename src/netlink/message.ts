/**
 * Netlink message framing: a 16-byte header (length, type, flags, sequence, port id), a fixed struct
 * (ifinfomsg, rtmsg, ...), then type-length-value attributes, each padded to 4 bytes and possibly nested.
 * Netlink uses the host's byte order (little-endian on every machine tulle runs on) except where an attribute
 * says network order (ports, addresses).
 */
import {
  NLA_F_NESTED,
  NLA_HDRLEN,
  NLA_TYPE_MASK,
  NLMSG_HDRLEN,
  NLM_F_ACK_TLVS,
  NLM_F_CAPPED,
  NLM_F_REQUEST,
  NLMSGERR_ATTR_MSG,
} from './constants.js';

export const align4 = (n: number): number => (n + 3) & ~3;

/** One request ready to send, and the iproute2 command it equals (for error messages). */
export interface Request {
  message: Buffer;
  command: string;
}

/**
 * Builds one message. Start with the header and fixed struct (`new MessageWriter(type, flags, structLen)`), fill
 * the struct through `struct`, add attributes, then `finish()`. The sequence number is set when sent.
 */
export class MessageWriter {
  private buf: Buffer;
  private pos: number;

  constructor(type: number, flags: number, structLen: number, capacity = 256) {
    this.buf = Buffer.alloc(Math.max(capacity, NLMSG_HDRLEN + structLen));
    this.buf.writeUInt16LE(type, 4);
    this.buf.writeUInt16LE(flags | NLM_F_REQUEST, 6);
    this.pos = NLMSG_HDRLEN + align4(structLen);
  }

  /** The fixed struct right after the header, zero-filled, for the caller to write its fields into. */
  get struct(): Buffer {
    return this.buf.subarray(NLMSG_HDRLEN);
  }

  private reserve(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const bigger = Buffer.alloc(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(bigger, 0, 0, this.pos);
    this.buf = bigger;
  }

  /** Attribute header plus room for `dataLen` bytes; returns where the data goes. */
  private attr(type: number, dataLen: number): number {
    const len = NLA_HDRLEN + dataLen;
    this.reserve(align4(len));
    this.buf.writeUInt16LE(len, this.pos);
    this.buf.writeUInt16LE(type, this.pos + 2);
    const at = this.pos + NLA_HDRLEN;
    this.pos += align4(len); // padding bytes are already zero (Buffer.alloc)
    return at;
  }

  bytes(type: number, data: Uint8Array): this {
    this.buf.set(data, this.attr(type, data.length));
    return this;
  }

  u8(type: number, value: number): this {
    this.buf[this.attr(type, 1)] = value;
    return this;
  }

  u16(type: number, value: number): this {
    this.buf.writeUInt16LE(value, this.attr(type, 2));
    return this;
  }

  /** 16-bit value in network byte order (UDP ports). */
  be16(type: number, value: number): this {
    this.buf.writeUInt16BE(value, this.attr(type, 2));
    return this;
  }

  u32(type: number, value: number): this {
    this.buf.writeUInt32LE(value >>> 0, this.attr(type, 4));
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

  /** Open a nested attribute; everything added until `endNest(start)` goes inside it. */
  beginNest(type: number): number {
    const start = this.pos;
    this.reserve(NLA_HDRLEN);
    this.buf.writeUInt16LE(type | NLA_F_NESTED, this.pos + 2);
    this.pos += NLA_HDRLEN;
    return start;
  }

  endNest(start: number): this {
    this.buf.writeUInt16LE(this.pos - start, start);
    return this;
  }

  /** Raw bytes inside a nest that are not an attribute (veth's peer ifinfomsg). */
  raw(data: Uint8Array): this {
    this.reserve(align4(data.length));
    this.buf.set(data, this.pos);
    this.pos += align4(data.length);
    return this;
  }

  finish(): Buffer {
    this.buf.writeUInt32LE(this.pos, 0);
    return this.buf.subarray(0, this.pos);
  }
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

/** Attributes by type (flags stripped); a sparse array is the fastest lookup for small type numbers. */
export type Attrs = Array<Buffer | undefined>;

export function parseAttrs(data: Buffer, start = 0, end = data.length): Attrs {
  const attrs: Attrs = [];
  let off = start;
  while (off + NLA_HDRLEN <= end) {
    const len = data.readUInt16LE(off);
    if (len < NLA_HDRLEN || off + len > end) break;
    attrs[data.readUInt16LE(off + 2) & NLA_TYPE_MASK] = data.subarray(off + NLA_HDRLEN, off + len);
    off += align4(len);
  }
  return attrs;
}

/** A NUL-terminated string attribute. */
export function attrString(b: Buffer | undefined): string | undefined {
  if (!b) return undefined;
  const nul = b.indexOf(0);
  return b.toString('utf8', 0, nul < 0 ? b.length : nul);
}

export function attrU32(b: Buffer | undefined): number | undefined {
  return b && b.length >= 4 ? b.readUInt32LE(0) : undefined;
}

export function attrU8(b: Buffer | undefined): number | undefined {
  return b && b.length >= 1 ? b[0] : undefined;
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
  const errno = -p.readInt32LE(0);
  let kernelMessage: string | undefined;
  if (m.flags & NLM_F_ACK_TLVS && p.length >= 4 + NLMSG_HDRLEN) {
    const echoed = m.flags & NLM_F_CAPPED ? NLMSG_HDRLEN : align4(p.readUInt32LE(4));
    const attrs = parseAttrs(p, 4 + echoed);
    kernelMessage = attrString(attrs[NLMSGERR_ATTR_MSG]);
  }
  return { errno, kernelMessage };
}

/** NLMSG_DONE carries an int error (non-zero when a dump failed part-way), then extended ACK attributes. */
export function parseDone(m: Message): AckInfo {
  const p = m.payload;
  if (p.length < 4) return { errno: 0, kernelMessage: undefined };
  const errno = -p.readInt32LE(0);
  const kernelMessage = m.flags & NLM_F_ACK_TLVS ? attrString(parseAttrs(p, 4)[NLMSGERR_ATTR_MSG]) : undefined;
  return { errno, kernelMessage };
}
