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
 * parser is the best judge of a ruleset.
 */
import { parseIPv4 } from '../base/ip.js';
import { NLMSG_ERROR, NLM_F_ACK, NLM_F_CREATE } from './constants.js';
import { NetlinkError, fromSystemError } from './errors.js';
import { MessageWriter, joinMessages, parseError, parseMessages } from './message.js';
import { resolveNetns } from '../netns/resolve.js';
import { native, type SocketHandle } from '../sys/native.js';

const NETLINK_NETFILTER = 12;
const NFNL_SUBSYS_NFTABLES = 10;
const NFNL_MSG_BATCH_BEGIN = 0x10;
const NFNL_MSG_BATCH_END = 0x11;
const NFT_MSG_NEWSETELEM = 12;
const NFT_MSG_DELSETELEM = 14;
const NFPROTO_IPV4 = 2;
const NFTA_SET_ELEM_LIST_TABLE = 1;
const NFTA_SET_ELEM_LIST_SET = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS = 3;
const NFTA_LIST_ELEM = 1;
const NFTA_SET_ELEM_KEY = 1;
const NFTA_DATA_VALUE = 1;
const NFGENMSG_LEN = 4;
/** A kernel that never answers must not hang the agent. */
const REPLY_TIMEOUT_MS = 10_000;
const EIO = 5;
const ETIMEDOUT = 110;

interface Waiting {
  seqs: Set<number>;
  commands: Map<number, string>;
  resolve: () => void;
  reject: (err: NetlinkError) => void;
}

export class NftSetWriter {
  private seq = Math.floor(Math.random() * 0x7fffffff) + 1;
  private waiting: Waiting | undefined;
  /** One batch at a time: the replies of two would be told apart by seq alone, which is fine, but one is simpler. */
  private queue: Promise<unknown> = Promise.resolve();
  /**
   * The reply deadline of the batch in flight: one timer, restarted for each batch (refresh) rather than made anew,
   * since every lease event of every agent sends a batch. It holds the process only while a reply is due.
   */
  private deadline: NodeJS.Timeout | undefined;

  private constructor(private handle: SocketHandle | undefined) {
    native().startReading(handle!, (err, data) => this.receive(err, data));
    native().setReadingRef(handle!, false);
  }

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
    clearTimeout(this.deadline);
    native().close(this.handle);
    this.handle = undefined;
    this.waiting?.reject(new NetlinkError('nft set update', EIO, 'socket closed'));
    this.waiting = undefined;
  }

  /**
   * `nft add element ip TABLE SET { add... }; nft delete element ip TABLE SET { del... }` as one batch. Rejects
   * with the kernel's error (ENOENT: no such table/set/element; EEXIST never: adds are not exclusive).
   */
  update(table: string, set: string, add: readonly string[], del: readonly string[]): Promise<void> {
    const next = this.queue.then(() => this.send(table, set, add, del));
    this.queue = next.catch(() => {});
    return next;
  }

  private send(table: string, set: string, add: readonly string[], del: readonly string[]): Promise<void> {
    if (add.length === 0 && del.length === 0) return Promise.resolve();
    const handle = this.handle;
    if (!handle) return Promise.reject(new NetlinkError('nft set update', EIO, 'socket closed'));
    // Parse before writing anything: a bad value must not leave a half-built message in the shared arena.
    const addKeys = add.map((ip) => parseIPv4(ip, 'set element'));
    const delKeys = del.map((ip) => parseIPv4(ip, 'set element'));
    const commands = new Map<number, string>();
    const parts: Buffer[] = [batchMessage(NFNL_MSG_BATCH_BEGIN, this.nextSeq())];
    for (const [type, keys, list, verb] of [
      [NFT_MSG_NEWSETELEM, addKeys, add, 'add'],
      [NFT_MSG_DELSETELEM, delKeys, del, 'delete'],
    ] as const) {
      if (keys.length === 0) continue;
      const seq = this.nextSeq();
      commands.set(seq, `nft ${verb} element ip ${table} ${set} { ${list.join(', ')} }`);
      parts.push(elementsMessage(type, seq, table, set, keys));
    }
    parts.push(batchMessage(NFNL_MSG_BATCH_END, this.nextSeq()));
    return new Promise<void>((resolve, reject) => {
      const done = (err?: NetlinkError) => {
        this.deadline?.unref();
        this.waiting = undefined;
        if (err) reject(err);
        else resolve();
      };
      this.waiting = { seqs: new Set(commands.keys()), commands, resolve: () => done(), reject: (e) => done(e) };
      if (this.deadline) this.deadline.refresh().ref();
      else this.deadline = setTimeout(() => this.timedOut(), REPLY_TIMEOUT_MS);
      try {
        native().send(handle, joinMessages(parts));
      } catch (err) {
        const e = fromSystemError([...commands.values()].join('; '), err);
        done(e instanceof NetlinkError ? e : new NetlinkError([...commands.values()].join('; '), EIO, String(err)));
      }
    });
  }

  /**
   * The deadline passed: the batch waiting now is the one sent last (one at a time, and each send restarts the
   * timer), so it has had its full time. The timer is never cleared, only restarted: it also fires after a batch
   * that was answered, and then finds nothing waiting.
   */
  private timedOut(): void {
    const w = this.waiting;
    if (w) w.reject(new NetlinkError([...w.commands.values()].join('; '), ETIMEDOUT, 'no reply from the kernel'));
  }

  private nextSeq(): number {
    this.seq = this.seq >= 0xffffffff ? 1 : this.seq + 1;
    return this.seq;
  }

  private receive(err: NodeJS.ErrnoException | null, data: Buffer | null): void {
    const w = this.waiting;
    if (!w) return;
    if (err || !data) {
      const e = fromSystemError('nft set update', err);
      w.reject(e instanceof NetlinkError ? e : new NetlinkError('nft set update', EIO, String(err)));
      return;
    }
    for (const m of parseMessages(data)) {
      if (m.type !== NLMSG_ERROR || !w.seqs.has(m.seq)) continue;
      const ack = parseError(m);
      if (ack.errno !== 0) return w.reject(new NetlinkError(w.commands.get(m.seq)!, ack.errno, ack.kernelMessage));
      w.seqs.delete(m.seq);
    }
    if (w.seqs.size === 0) w.resolve();
  }
}

/** nfgenmsg after the header: family, version (NFNETLINK_V0), res_id (big-endian). */
function nfgen(w: MessageWriter, family: number, resId: number): void {
  const s = w.struct;
  s[0] = family;
  s[1] = 0;
  s.writeUInt16BE(resId, 2);
}

function batchMessage(type: number, seq: number): Buffer {
  const w = new MessageWriter(type, 0, NFGENMSG_LEN);
  nfgen(w, 0, NFNL_SUBSYS_NFTABLES);
  const msg = w.finish();
  msg.writeUInt32LE(seq, 8);
  return msg;
}

function elementsMessage(type: number, seq: number, table: string, set: string, keys: readonly number[]): Buffer {
  const w = new MessageWriter((NFNL_SUBSYS_NFTABLES << 8) | type, NLM_F_ACK | (type === NFT_MSG_NEWSETELEM ? NLM_F_CREATE : 0), NFGENMSG_LEN);
  nfgen(w, NFPROTO_IPV4, 0);
  w.string(NFTA_SET_ELEM_LIST_TABLE, table).string(NFTA_SET_ELEM_LIST_SET, set);
  const elements = w.beginNest(NFTA_SET_ELEM_LIST_ELEMENTS);
  const key = Buffer.alloc(4);
  for (const k of keys) {
    const elem = w.beginNest(NFTA_LIST_ELEM);
    const keyNest = w.beginNest(NFTA_SET_ELEM_KEY);
    key.writeUInt32BE(k, 0); // network byte order, as the packet's address is compared
    w.bytes(NFTA_DATA_VALUE, key);
    w.endNest(keyNest);
    w.endNest(elem);
  }
  w.endNest(elements);
  const msg = w.finish();
  msg.writeUInt32LE(seq, 8);
  return msg;
}
