/**
 * Elements of an nftables set of IPv4 addresses, changed over netlink (NETLINK_NETFILTER) instead of by running
 * `nft`: a process start per change costs milliseconds and, when every agent of a cluster reacts to the same
 * lease at once, a burst of CPU on the hosts' shared cores. One change is one nf_tables batch, applied by the
 * kernel all or nothing:
 *
 *   NFNL_MSG_BATCH_BEGIN, NFT_MSG_NEWSETELEM { a, b }, NFT_MSG_DELSETELEM { c }, NFNL_MSG_BATCH_END
 *   = nft add element ip TABLE SET { a, b }; nft delete element ip TABLE SET { c }   (in one `nft -f -`)
 *
 * Creating tables, sets and rules stays with `nft` (src/overlay/guard.ts): it happens once, and nft's own
 * parser is the best judge of a ruleset. The same socket reads the ruleset's generation, which tells a periodic
 * check whether anything changed at all before it runs `nft` to look.
 */
import { parseIPv4 } from '../base/ip.js';
import { NLA_F_NESTED, NLA_HDRLEN, NLMSG_ERROR, NLMSG_HDRLEN, NLM_F_ACK, NLM_F_CREATE, NLM_F_REQUEST } from './constants.js';
import { NetlinkError, fromSystemError } from './errors.js';
import { align4, parseError, parseMessages, put32 } from './message.js';
import { resolveNetns } from '../netns/resolve.js';
import { native, type SocketHandle } from '../sys/native.js';

const NETLINK_NETFILTER = 12;
const NFNL_SUBSYS_NFTABLES = 10;
const NFNL_MSG_BATCH_BEGIN = 0x10;
const NFNL_MSG_BATCH_END = 0x11;
const NFT_MSG_NEWSETELEM = 12;
const NFT_MSG_DELSETELEM = 14;
const NFT_MSG_NEWGEN = 15;
const NFT_MSG_GETGEN = 16;
const NFTA_GEN_ID = 1;
const NFPROTO_IPV4 = 2;
const NFTA_SET_ELEM_LIST_TABLE = 1;
const NFTA_SET_ELEM_LIST_SET = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS = 3;
const NFTA_LIST_ELEM = 1;
const NFTA_SET_ELEM_KEY = 1;
const NFTA_DATA_VALUE = 1;
const NFGENMSG_LEN = 4;
const EIO = 5;

export class NftSetWriter {
  private seq = Math.floor(Math.random() * 0x7fffffff) + 1;

  private constructor(private handle: SocketHandle | undefined) {}

  /** A NETLINK_NETFILTER socket in `netns` (a name under /run/netns or a path; default: this process's). */
  static open(netns?: string): NftSetWriter {
    const nsPath = resolveNetns(netns);
    try {
      return new NftSetWriter(native().open(nsPath ?? null, NETLINK_NETFILTER, [], 256 * 1024, 256 * 1024, { extAck: true, capAck: true, strict: false }));
    } catch (err) {
      throw fromSystemError(`open netfilter netlink socket${nsPath ? ` in ${nsPath}` : ''}`, err);
    }
  }

  close(): void {
    if (!this.handle) return;
    native().close(this.handle);
    this.handle = undefined;
  }

  /**
   * `nft add element ip TABLE SET { add... }; nft delete element ip TABLE SET { del... }` as one batch; throws
   * the kernel's error (ENOENT: no such table/set/element; EEXIST never: adds are not exclusive). Synchronous:
   * nfnetlink applies a batch inside the send() that carries it and queues its ACKs before send() returns, so
   * they are read at once — no reply to wait for, no event-loop turn between a lease change and its writes.
   */
  update(table: string, set: string, add: readonly string[], del: readonly string[]): void {
    if (add.length === 0 && del.length === 0) return;
    const handle = this.handle;
    if (!handle) throw new NetlinkError('nft set update', EIO, 'socket closed');
    // Parse before anything is sent: a bad value fails the whole change.
    const addKeys = add.map((ip) => parseIPv4(ip, 'set element'));
    const delKeys = del.map((ip) => parseIPv4(ip, 'set element'));
    const commands: Array<() => string> = [];
    if (addKeys.length) commands.push(() => `nft add element ip ${table} ${set} { ${add.join(', ')} }`);
    if (delKeys.length) commands.push(() => `nft delete element ip ${table} ${set} { ${del.join(', ')} }`);
    // Sequence numbers: the batch's begin, its element messages (add, then delete, each only when it has
    // elements), its end. Only the element messages ask for an ACK.
    const first = this.takeSeqs(commands.length + 2);
    const all = () => commands.map((c) => c()).join('; ');
    let replies: Buffer | null;
    try {
      native().send(handle, encodeBatch(first, table, set, addKeys, delKeys));
      replies = native().receiveNow(handle);
    } catch (err) {
      const e = fromSystemError(all(), err);
      throw e instanceof NetlinkError ? e : new NetlinkError(all(), EIO, String(err));
    }
    // The ACKs of seq first+1 .. first+commands.length, read in place; a reply to an earlier batch (one that failed
    // before its replies were read) is skipped by its seq.
    let acked = 0;
    for (let off = 0; replies && off + NLMSG_HDRLEN <= replies.length;) {
      const len = u32(replies, off);
      if (len < NLMSG_HDRLEN || off + len > replies.length) break;
      const k = u32(replies, off + 8) - first - 1;
      if ((replies[off + 4]! | (replies[off + 5]! << 8)) === NLMSG_ERROR && k >= 0 && k < commands.length) {
        if (len >= NLMSG_HDRLEN + 4 && u32(replies, off + NLMSG_HDRLEN) !== 0) {
          const ack = parseError(parseMessages(replies.subarray(off, off + len))[0]!);
          throw new NetlinkError(commands[k]!(), ack.errno, ack.kernelMessage);
        }
        acked++;
      }
      off += (len + 3) & ~3;
    }
    if (acked !== commands.length) throw new NetlinkError(all(), EIO, 'the kernel did not acknowledge the batch');
  }

  /**
   * The namespace's nf_tables generation: every committed change of any table, by anyone (`nft`, iptables-nft,
   * update() here), adds exactly one, so an unchanged generation means nothing in nf_tables changed. NFT_MSG_GETGEN,
   * answered with NFT_MSG_NEWGEN { NFTA_GEN_ID (big-endian) } before the send returns (as `nft monitor` prints
   * "# new generation N").
   */
  generation(): number {
    const handle = this.handle;
    const command = 'read the nf_tables generation (NFT_MSG_GETGEN)';
    if (!handle) throw new NetlinkError(command, EIO, 'socket closed');
    const seq = this.takeSeqs(1);
    const request = Buffer.alloc(NLMSG_HDRLEN + NFGENMSG_LEN); // nfgenmsg: family AF_UNSPEC, version 0, res_id 0
    put32(request, 0, request.length);
    request.writeUInt16LE((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN, 4);
    request.writeUInt16LE(NLM_F_REQUEST, 6);
    put32(request, 8, seq);
    let replies: Buffer | null;
    try {
      native().send(handle, request);
      replies = native().receiveNow(handle);
    } catch (err) {
      const e = fromSystemError(command, err);
      throw e instanceof NetlinkError ? e : new NetlinkError(command, EIO, String(err));
    }
    for (const m of replies ? parseMessages(replies) : []) {
      if (m.seq !== seq) continue;
      if (m.type === NLMSG_ERROR) {
        const ack = parseError(m);
        throw new NetlinkError(command, ack.errno, ack.kernelMessage);
      }
      if (m.type !== ((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN)) continue;
      for (let at = NFGENMSG_LEN; at + NLA_HDRLEN <= m.payload.length;) {
        const len = m.payload.readUInt16LE(at);
        if (len < NLA_HDRLEN) break;
        if ((m.payload.readUInt16LE(at + 2) & 0x3fff) === NFTA_GEN_ID && len >= NLA_HDRLEN + 4) return m.payload.readUInt32BE(at + NLA_HDRLEN);
        at += align4(len);
      }
    }
    throw new NetlinkError(command, EIO, 'the kernel sent no generation');
  }

  /** `n` consecutive sequence numbers, never wrapping inside one batch; the first is returned. */
  private takeSeqs(n: number): number {
    if (this.seq + n > 0xffffffff) this.seq = 0;
    const first = this.seq + 1;
    this.seq += n;
    return first;
  }
}

/**
 * The nf_tables generation of a namespace for a periodic check that runs `nft` only when something changed:
 * undefined when it cannot be read (the check then looks the long way). The socket opens at the first read.
 */
export class NftGenerationReader {
  private socket: NftSetWriter | undefined;

  constructor(private readonly netns?: string) {}

  read(): number | undefined {
    try {
      this.socket ??= NftSetWriter.open(this.netns);
      return this.socket.generation();
    } catch {
      return undefined;
    }
  }

  close(): void {
    this.socket?.close();
    this.socket = undefined;
  }
}

function u32(b: Buffer, at: number): number {
  return (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16)) + b[at + 3]! * 0x1000000;
}

let elementBytes: Buffer | undefined;

/** ELEM { KEY { VALUE 0.0.0.0 } }: one set element with its address left 0. */
function elementTemplate(): Buffer {
  if (elementBytes) return elementBytes;
  const b = Buffer.alloc(4 * NLA_HDRLEN);
  const attrHeader = (at: number, len: number, type: number) => {
    b.writeUInt16LE(len, at);
    b.writeUInt16LE(type, at + 2);
  };
  attrHeader(0, 4 * NLA_HDRLEN, NFTA_LIST_ELEM | NLA_F_NESTED);
  attrHeader(NLA_HDRLEN, 3 * NLA_HDRLEN, NFTA_SET_ELEM_KEY | NLA_F_NESTED);
  attrHeader(2 * NLA_HDRLEN, 2 * NLA_HDRLEN, NFTA_DATA_VALUE);
  return (elementBytes = b);
}

/**
 * One batch as bytes, laid out here in a single buffer rather than by MessageWriter: a member change is rare, so it
 * runs in code V8 has not optimised, where every call and Buffer method shows (a CPU profile of agents joining
 * a lab put the guard's message building above its kernel work). Sequence numbers first, first+1, ... in order:
 *
 *   BATCH_BEGIN { nfgenmsg res_id=NFNL_SUBSYS_NFTABLES }
 *   NEWSETELEM (ACK, CREATE) { nfgenmsg family=ipv4 } TABLE SET ELEMENTS { ELEM { KEY { VALUE be32 } } ... }
 *   DELSETELEM (ACK) { ... the same for `del` }
 *   BATCH_END { nfgenmsg res_id=NFNL_SUBSYS_NFTABLES }
 */
export function encodeBatch(first: number, table: string, set: string, add: readonly number[], del: readonly number[]): Buffer {
  const tableLen = Buffer.byteLength(table) + 1;
  const setLen = Buffer.byteLength(set) + 1;
  const head = NLMSG_HDRLEN + NFGENMSG_LEN;
  const names = NLA_HDRLEN + align4(tableLen) + NLA_HDRLEN + align4(setLen);
  const ELEMENT = 4 * NLA_HDRLEN; // ELEM { KEY { VALUE(4 bytes) } }
  const elementsLen = (keys: readonly number[]) => (keys.length ? head + names + NLA_HDRLEN + keys.length * ELEMENT : 0);
  const b = Buffer.alloc(2 * head + elementsLen(add) + elementsLen(del));
  let seq = first;
  let at = 0;
  const header = (len: number, type: number, flags: number, family: number, resId: number) => {
    put32(b, at, len);
    b[at + 4] = type & 255;
    b[at + 5] = type >>> 8;
    b[at + 6] = (flags | NLM_F_REQUEST) & 255;
    b[at + 7] = (flags | NLM_F_REQUEST) >>> 8;
    put32(b, at + 8, seq++);
    b[at + NLMSG_HDRLEN] = family;
    b[at + NLMSG_HDRLEN + 2] = resId >>> 8; // res_id is big-endian
    b[at + NLMSG_HDRLEN + 3] = resId & 255;
    at += head;
  };
  const attrHeader = (len: number, type: number) => {
    b[at] = len & 255;
    b[at + 1] = len >>> 8;
    b[at + 2] = type & 255;
    b[at + 3] = type >>> 8;
    at += NLA_HDRLEN;
  };
  header(head, NFNL_MSG_BATCH_BEGIN, 0, 0, NFNL_SUBSYS_NFTABLES);
  for (const [type, keys] of [
    [NFT_MSG_NEWSETELEM, add],
    [NFT_MSG_DELSETELEM, del],
  ] as const) {
    if (keys.length === 0) continue;
    header(elementsLen(keys), (NFNL_SUBSYS_NFTABLES << 8) | type, NLM_F_ACK | (type === NFT_MSG_NEWSETELEM ? NLM_F_CREATE : 0), NFPROTO_IPV4, 0);
    attrHeader(NLA_HDRLEN + tableLen, NFTA_SET_ELEM_LIST_TABLE);
    b.write(table, at); // the NUL and the padding are the buffer's zeros
    at += align4(tableLen);
    attrHeader(NLA_HDRLEN + setLen, NFTA_SET_ELEM_LIST_SET);
    b.write(set, at);
    at += align4(setLen);
    attrHeader(NLA_HDRLEN + keys.length * ELEMENT, NFTA_SET_ELEM_LIST_ELEMENTS | NLA_F_NESTED);
    // Every element is the same three headers and its address: a copy of the template and one store each (on
    // a guard of thousands of peers, cold, byte-by-byte stores cost more than the kernel's work).
    const template = elementTemplate();
    const view = new DataView(b.buffer, b.byteOffset, b.length);
    for (const key of keys) {
      b.set(template, at);
      view.setUint32(at + 3 * NLA_HDRLEN, key); // network byte order, as the packet's address is compared
      at += ELEMENT;
    }
  }
  header(head, NFNL_MSG_BATCH_END, 0, 0, NFNL_SUBSYS_NFTABLES);
  return b;
}
