/**
 * The overlay's three kinds of entry written straight from numbers into one buffer: for thousands of peers, the
 * generic path (an op object per write, its text parsed and checked, a message object and a pending request
 * each) costs several times what the kernel takes for the write. Here a write is a few dozen bytes put in
 * place. Each message is byte for byte what the generic encoders (neigh.ts, route.ts) make of the same entry,
 * with the same defaults (test/unit/netlink-packed.test.ts compares them); sequence numbers and the ACK flag are
 * set by the socket (sendPacked).
 */
import { InvalidValueError } from '../base/errors.js';
import {
  AF_BRIDGE,
  AF_INET,
  NDA_DST,
  NDA_LLADDR,
  NLM_F_CREATE,
  NLM_F_EXCL,
  NLM_F_REPLACE,
  NLM_F_REQUEST,
  NTF_SELF,
  NUD_STATES,
  RTA_DST,
  RTA_GATEWAY,
  RTA_OIF,
  RTA_TABLE,
  RTM_DELNEIGH,
  RTM_DELROUTE,
  RTM_NEWNEIGH,
  RTM_NEWROUTE,
  RTNH_F_ONLINK,
  RTN_UNICAST,
  RT_TABLE_MAIN,
  SCOPES,
} from './constants.js';
import { put32 } from './message.js';

export type EntryOp = 'add' | 'replace' | 'delete';

/** Where the writes of one packed batch go: one call per write. */
export interface EntryEncoder {
  /** `ip neigh replace IP lladdr MAC dev DEV nud permanent` / `ip neigh del IP dev DEV` (MAC unused). */
  neighbor(op: 'replace' | 'delete', ifindex: number, ip: number, mac: number): void;
  /** `bridge fdb replace|del MAC dev DEV dst IP self permanent`. */
  fdb(op: 'replace' | 'delete', ifindex: number, mac: number, dst: number): void;
  /** `ip route add|replace|del NETWORK/PREFIX via VIA dev OIF [onlink] proto P` in the main table. */
  route(op: EntryOp, network: number, prefix: number, via: number, oif: number, onlink: boolean, protocol: number): void;
}

const NEIGH_LEN = 16 + 12 + 8 + 12; // header, ndmsg, NDA_DST (IPv4), NDA_LLADDR (6 bytes, padded)
const NEIGH_DEL_LEN = 16 + 12 + 8;
const FDB_LEN = 16 + 12 + 12 + 8; // header, ndmsg, NDA_LLADDR, NDA_DST
const ROUTE_LEN = 16 + 12 + 8 + 8 + 8 + 8; // header, rtmsg, RTA_DST, RTA_GATEWAY, RTA_OIF, RTA_TABLE
const NUD_PERMANENT = NUD_STATES.permanent;

function checkIndex(value: number, what: string): void {
  if (!Number.isInteger(value) || value < 1 || value > 0x7fffffff) throw new InvalidValueError(what, value, 'must be a device index (1..2147483647)');
}

function checkIPv4(value: number, what: string): void {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff)
    throw new InvalidValueError(what, value, 'must be an IPv4 address as a number (0..4294967295)');
}

function checkMac(value: number, what: string): void {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffffffff) throw new InvalidValueError(what, value, 'must be a MAC address as a number (48 bits)');
}

/**
 * The constant bytes of each kind of message, made once by the byte-by-byte writer below (TemplateWriter): a write
 * copies its template (one native copy) and puts in the few fields that vary. On code V8 has not optimised yet —
 * a restart, the first thousand peers — each byte stored alone cost about as much as the kernel's work for the
 * write (measured: 13 ms of JavaScript for the 3000 writes of 1000 peers, most of it here).
 */
interface Templates {
  neighborReplace: Buffer;
  neighborDelete: Buffer;
  fdbReplace: Buffer;
  fdbDelete: Buffer;
  route: Record<EntryOp, Buffer>;
}

let templates: Templates | undefined;

function messageTemplates(): Templates {
  if (templates) return templates;
  const t = (write: (w: TemplateWriter) => void): Buffer => {
    const w = new TemplateWriter();
    write(w);
    return w.done();
  };
  templates = {
    neighborReplace: t((w) => {
      const at = w.header(NEIGH_LEN, RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE);
      w.ndmsg(at, AF_INET, NUD_PERMANENT, 0);
      w.attrHeader(at + 28, 8, NDA_DST);
      w.attrHeader(at + 36, 10, NDA_LLADDR);
    }),
    neighborDelete: t((w) => {
      const at = w.header(NEIGH_DEL_LEN, RTM_DELNEIGH, 0);
      w.ndmsg(at, AF_INET, 0, 0);
      w.attrHeader(at + 28, 8, NDA_DST);
    }),
    fdbReplace: t((w) => {
      const at = w.header(FDB_LEN, RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE);
      w.ndmsg(at, AF_BRIDGE, NUD_PERMANENT, NTF_SELF);
      w.attrHeader(at + 28, 10, NDA_LLADDR);
      w.attrHeader(at + 40, 8, NDA_DST);
    }),
    fdbDelete: t((w) => {
      const at = w.header(FDB_LEN, RTM_DELNEIGH, 0);
      w.ndmsg(at, AF_BRIDGE, NUD_PERMANENT, NTF_SELF);
      w.attrHeader(at + 28, 10, NDA_LLADDR);
      w.attrHeader(at + 40, 8, NDA_DST);
    }),
    route: {
      add: t((w) => w.route(NLM_F_CREATE | NLM_F_EXCL, false)),
      replace: t((w) => w.route(NLM_F_CREATE | NLM_F_REPLACE, false)),
      delete: t((w) => w.route(0, true)),
    },
  };
  return templates;
}

/** Writes the constant bytes of one message (the variable fields stay 0). */
class TemplateWriter {
  private readonly b = Buffer.alloc(ROUTE_LEN);
  private len = 0;

  done(): Buffer {
    return Buffer.from(this.b.subarray(0, this.len));
  }

  /** nlmsghdr; sequence number and port id are left 0 for the socket. */
  header(len: number, type: number, flags: number): number {
    this.len = len;
    put32(this.b, 0, len);
    this.b[4] = type;
    this.b[6] = (flags | NLM_F_REQUEST) & 255;
    this.b[7] = flags >>> 8;
    return 0;
  }

  /** struct ndmsg: family, 3 pad bytes, ifindex (set per write), state (u16), flags, type. */
  ndmsg(at: number, family: number, state: number, flags: number): void {
    this.b[at + 16] = family;
    this.b[at + 24] = state & 255;
    this.b[at + 25] = state >>> 8;
    this.b[at + 26] = flags;
  }

  /** An attribute's header: its length (header included, padding not) and type. */
  attrHeader(at: number, len: number, type: number): void {
    this.b[at] = len;
    this.b[at + 2] = type;
  }

  /** A main-table route: struct rtmsg (dst_len, protocol and flags set per write), RTA_DST, RTA_GATEWAY, RTA_OIF, RTA_TABLE. */
  route(flags: number, del: boolean): void {
    const at = this.header(ROUTE_LEN, del ? RTM_DELROUTE : RTM_NEWROUTE, flags);
    const b = this.b;
    // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags (u32)
    b[at + 16] = AF_INET;
    b[at + 20] = RT_TABLE_MAIN;
    b[at + 22] = del ? SCOPES.nowhere : SCOPES.universe;
    b[at + 23] = del ? 0 : RTN_UNICAST;
    this.attrHeader(at + 28, 8, RTA_DST);
    this.attrHeader(at + 36, 8, RTA_GATEWAY);
    this.attrHeader(at + 44, 8, RTA_OIF);
    this.attrHeader(at + 52, 8, RTA_TABLE);
    put32(b, at + 56, RT_TABLE_MAIN);
  }
}

/** Packs writes into one buffer, recording where each message starts. */
export class EntryPacker implements EntryEncoder {
  readonly offsets: number[] = [];
  private buf: Buffer;
  /** The same bytes, for the multi-byte fields (one call each, in the byte order each field has). */
  private view: DataView;
  private pos = 0;
  private readonly templates = messageTemplates();

  constructor(expected: number) {
    this.buf = Buffer.allocUnsafe(Math.max(256, expected * ROUTE_LEN));
    this.view = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.length);
  }

  get count(): number {
    return this.offsets.length;
  }

  /** The packed messages (a view of the buffer). */
  get data(): Buffer {
    return this.buf.subarray(0, this.pos);
  }

  neighbor(op: 'replace' | 'delete', ifindex: number, ip: number, mac: number): void {
    checkIndex(ifindex, 'neighbor dev index');
    checkIPv4(ip, 'neighbor ip');
    if (op === 'replace') checkMac(mac, 'neighbor mac');
    const at = this.put(op === 'replace' ? this.templates.neighborReplace : this.templates.neighborDelete);
    const v = this.view;
    v.setUint32(at + 20, ifindex, true);
    v.setUint32(at + 32, ip);
    if (op === 'replace') this.putMac(at + 40, mac);
  }

  fdb(op: 'replace' | 'delete', ifindex: number, mac: number, dst: number): void {
    checkIndex(ifindex, 'fdb dev index');
    checkMac(mac, 'fdb mac');
    checkIPv4(dst, 'fdb dst');
    const at = this.put(op === 'replace' ? this.templates.fdbReplace : this.templates.fdbDelete);
    const v = this.view;
    v.setUint32(at + 20, ifindex, true);
    this.putMac(at + 32, mac);
    v.setUint32(at + 44, dst);
  }

  route(op: EntryOp, network: number, prefix: number, via: number, oif: number, onlink: boolean, protocol: number): void {
    checkIPv4(network, 'route dst');
    if (!Number.isInteger(prefix) || prefix < 1 || prefix > 32)
      throw new InvalidValueError('route dst prefix', prefix, 'must be 1..32 (an overlay route has a destination)');
    checkIPv4(via, 'route via');
    checkIndex(oif, 'route dev index');
    if (!Number.isInteger(protocol) || protocol < 0 || protocol > 255) throw new InvalidValueError('route protocol', protocol, 'must be 0..255');
    const template = this.templates.route[op];
    if (!template) throw new InvalidValueError('route op', op, 'must be add, replace or delete');
    const at = this.put(template);
    const b = this.buf;
    const v = this.view;
    b[at + 17] = prefix;
    b[at + 21] = protocol;
    v.setUint32(at + 24, onlink ? RTNH_F_ONLINK : 0, true);
    v.setUint32(at + 32, network);
    v.setUint32(at + 40, via);
    v.setUint32(at + 48, oif, true);
  }

  /** Copy a message's template to the end (growing the buffer when full); returns where it starts. */
  private put(template: Buffer): number {
    const len = template.length;
    if (this.pos + len > this.buf.length) {
      const bigger = Buffer.allocUnsafe(this.buf.length * 2);
      this.buf.copy(bigger, 0, 0, this.pos);
      this.buf = bigger;
      this.view = new DataView(bigger.buffer, bigger.byteOffset, bigger.length);
    }
    const at = this.pos;
    this.buf.set(template, at);
    this.offsets.push(at);
    this.pos += len;
    return at;
  }

  /** A 6-byte MAC (big-endian: its first byte first) at `at`; the template has the attribute's header and padding. */
  private putMac(at: number, mac: number): void {
    const v = this.view;
    v.setUint16(at, Math.floor(mac / 0x100000000));
    v.setUint32(at + 2, mac % 0x100000000);
  }
}
