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

/** Packs writes into one buffer, recording where each message starts. */
export class EntryPacker implements EntryEncoder {
  readonly offsets: number[] = [];
  private buf: Buffer;
  private pos = 0;

  constructor(expected: number) {
    this.buf = Buffer.allocUnsafe(Math.max(256, expected * ROUTE_LEN));
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
    if (op === 'replace') {
      checkMac(mac, 'neighbor mac');
      const at = this.header(NEIGH_LEN, RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE);
      this.ndmsg(at, AF_INET, ifindex, NUD_PERMANENT, 0);
      this.ipv4Attr(at + 28, NDA_DST, ip);
      this.macAttr(at + 36, NDA_LLADDR, mac);
    } else {
      const at = this.header(NEIGH_DEL_LEN, RTM_DELNEIGH, 0);
      this.ndmsg(at, AF_INET, ifindex, 0, 0);
      this.ipv4Attr(at + 28, NDA_DST, ip);
    }
  }

  fdb(op: 'replace' | 'delete', ifindex: number, mac: number, dst: number): void {
    checkIndex(ifindex, 'fdb dev index');
    checkMac(mac, 'fdb mac');
    checkIPv4(dst, 'fdb dst');
    const at = op === 'replace' ? this.header(FDB_LEN, RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE) : this.header(FDB_LEN, RTM_DELNEIGH, 0);
    this.ndmsg(at, AF_BRIDGE, ifindex, NUD_PERMANENT, NTF_SELF);
    this.macAttr(at + 28, NDA_LLADDR, mac);
    this.ipv4Attr(at + 40, NDA_DST, dst);
  }

  route(op: EntryOp, network: number, prefix: number, via: number, oif: number, onlink: boolean, protocol: number): void {
    checkIPv4(network, 'route dst');
    if (!Number.isInteger(prefix) || prefix < 1 || prefix > 32)
      throw new InvalidValueError('route dst prefix', prefix, 'must be 1..32 (an overlay route has a destination)');
    checkIPv4(via, 'route via');
    checkIndex(oif, 'route dev index');
    if (!Number.isInteger(protocol) || protocol < 0 || protocol > 255) throw new InvalidValueError('route protocol', protocol, 'must be 0..255');
    const del = op === 'delete';
    const flags = op === 'add' ? NLM_F_CREATE | NLM_F_EXCL : op === 'replace' ? NLM_F_CREATE | NLM_F_REPLACE : 0;
    const at = this.header(ROUTE_LEN, del ? RTM_DELROUTE : RTM_NEWROUTE, flags);
    const b = this.buf;
    // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags (u32)
    b[at + 16] = AF_INET;
    b[at + 17] = prefix;
    b[at + 18] = 0;
    b[at + 19] = 0;
    b[at + 20] = RT_TABLE_MAIN;
    b[at + 21] = protocol;
    b[at + 22] = del ? SCOPES.nowhere : SCOPES.universe;
    b[at + 23] = del ? 0 : RTN_UNICAST;
    put32(b, at + 24, onlink ? RTNH_F_ONLINK : 0);
    this.ipv4Attr(at + 28, RTA_DST, network);
    this.ipv4Attr(at + 36, RTA_GATEWAY, via);
    this.u32Attr(at + 44, RTA_OIF, oif);
    this.u32Attr(at + 52, RTA_TABLE, RT_TABLE_MAIN);
  }

  /** nlmsghdr with room for `len` bytes; sequence number and port id are left 0 for the socket. */
  private header(len: number, type: number, flags: number): number {
    if (this.pos + len > this.buf.length) {
      const bigger = Buffer.allocUnsafe(this.buf.length * 2);
      this.buf.copy(bigger, 0, 0, this.pos);
      this.buf = bigger;
    }
    const at = this.pos;
    const b = this.buf;
    put32(b, at, len);
    b[at + 4] = type;
    b[at + 5] = 0;
    b[at + 6] = (flags | NLM_F_REQUEST) & 255;
    b[at + 7] = flags >>> 8;
    put32(b, at + 8, 0);
    put32(b, at + 12, 0);
    this.offsets.push(at);
    this.pos += len;
    return at;
  }

  /** struct ndmsg: family, 3 pad bytes, ifindex, state (u16), flags, type. */
  private ndmsg(at: number, family: number, ifindex: number, state: number, flags: number): void {
    const b = this.buf;
    b[at + 16] = family;
    b[at + 17] = 0;
    b[at + 18] = 0;
    b[at + 19] = 0;
    put32(b, at + 20, ifindex);
    b[at + 24] = state & 255;
    b[at + 25] = state >>> 8;
    b[at + 26] = flags;
    b[at + 27] = 0;
  }

  /** An attribute's header: its length (header included, padding not) and type. */
  private attrHeader(at: number, len: number, type: number): void {
    const b = this.buf;
    b[at] = len;
    b[at + 1] = 0;
    b[at + 2] = type;
    b[at + 3] = 0;
  }

  /** An attribute holding an IPv4 address (network byte order). */
  private ipv4Attr(at: number, type: number, ip: number): void {
    const b = this.buf;
    this.attrHeader(at, 8, type);
    b[at + 4] = ip >>> 24;
    b[at + 5] = (ip >>> 16) & 255;
    b[at + 6] = (ip >>> 8) & 255;
    b[at + 7] = ip & 255;
  }

  /** An attribute holding a 6-byte MAC, padded to 12. */
  private macAttr(at: number, type: number, mac: number): void {
    const b = this.buf;
    const high = Math.floor(mac / 0x100000000);
    this.attrHeader(at, 10, type);
    b[at + 4] = (high >>> 8) & 255;
    b[at + 5] = high & 255;
    b[at + 6] = mac >>> 24;
    b[at + 7] = (mac >>> 16) & 255;
    b[at + 8] = (mac >>> 8) & 255;
    b[at + 9] = mac & 255;
    b[at + 10] = 0;
    b[at + 11] = 0;
  }

  private u32Attr(at: number, type: number, value: number): void {
    this.attrHeader(at, 8, type);
    put32(this.buf, at + 4, value);
  }
}
