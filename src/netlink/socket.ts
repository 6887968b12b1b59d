/**
 * One rtnetlink socket in one network namespace, and the request/reply bookkeeping on top of it: every request
 * gets a sequence number; the kernel answers a change with an ACK (NLMSG_ERROR, error 0 or -errno) and a dump
 * with NLM_F_MULTI messages ended by NLMSG_DONE. Many requests can be outstanding at once (`sendAll`), which is
 * what makes a batch fast: the kernel handles each request synchronously inside sendto(), so a chunk of
 * requests costs one system call and one wake-up for all their ACKs.
 *
 * A socket used for requests never joins multicast groups: events and ACKs on one socket would interleave, and
 * a burst of events could push ACKs out of the receive buffer. Subscriptions use their own socket (events.ts).
 */
import { NETLINK_ROUTE, NLMSG_DONE, NLMSG_ERROR, NLMSG_HDRLEN, NLMSG_OVERRUN, NLM_F_ACK, NLM_F_ACK_TLVS, NLM_F_DUMP, NLM_F_DUMP_INTR } from './constants.js';
import { NetlinkError, fromSystemError } from './errors.js';
import { align4, joinMessages, lazyRequest, parseDone, parseError, type Message, type Request } from './message.js';
import { native, type SocketHandle } from '../sys/native.js';
import { InvalidValueError } from '../base/errors.js';

/** Requests sent together in one sendto(), and their outcomes as they arrive. */
interface Chunk {
  results: Array<Message[] | NetlinkError>;
  outstanding: number;
  resolve: () => void;
  onInterrupted: (() => void) | undefined;
}

/** One request waiting for its ACK / NLMSG_DONE. */
interface Pending {
  request: Request;
  /** Where its outcome goes in `chunk.results`. */
  index: number;
  chunk: Chunk;
  /** Data messages received so far (dumps, GET replies); allocated on the first. */
  messages: Message[] | undefined;
  /** Set when a dump message carries NLM_F_DUMP_INTR: the table changed while it was being dumped. */
  interrupted: boolean;
  /** The last message of a packed batch (sendPacked): its answer closes the batch. */
  packed?: PackedBatch;
}

/** Messages sent by sendPacked, answered only when they fail (and the last one always). */
interface PackedBatch {
  first: number;
  last: number;
  errors: Array<NetlinkError | undefined>;
  describe: (k: number) => string;
}

/** What a dump read into numbers is of: routes, or neighbours / FDB entries (see NativeBinding.dumpRecords). */
export type DumpKind = 'route' | 'neighbor';

/** Requests sent in one sendto(): bounded so their ACKs fit the receive buffer with room to spare. */
const CHUNK_MESSAGES = 1024;
const CHUNK_BYTES = 256 * 1024;
/** Large enough for the ACKs of a whole chunk and a dump datagram in flight; SO_RCVBUFFORCE doubles it. */
const RCVBUF = 8 * 1024 * 1024;
const SNDBUF = 1024 * 1024;
/**
 * A chunk of at least this many requests is sent from a pool thread: the kernel works through it inside sendto()
 * (tens of milliseconds for a thousand routes), while this thread reads the ACKs and events of the chunk before
 * and builds the next. A few requests are sent at once: a thread hand-off would cost more than it saves.
 */
const POOL_SEND_MIN = 64;
/** A dump the kernel marks inconsistent (the table changed under it) is taken again, this many times at most. */
const DUMP_ATTEMPTS = 5;

export interface SocketOptions {
  /** Path of the network namespace file (/run/netns/NAME, /proc/PID/ns/net); undefined = this process's. */
  nsPath?: string;
  /** Multicast groups to join (subscriptions only). */
  groups?: number[];
  /** Receive buffer in bytes (the kernel doubles it); default 8 MiB. */
  receiveBufferBytes?: number;
  /** Receives every message that answers no request (events), and receive errors such as ENOBUFS. */
  onUnsolicited?: (error: NetlinkError | undefined, messages: Message[]) => void;
  /**
   * For a socket that only listens (a subscription, never a request): every received buffer as it came (one or
   * more whole datagrams, parsed by the caller), and receive errors. Replaces onUnsolicited.
   */
  onDatagrams?: (error: NetlinkError | undefined, data: Buffer) => void;
}

export class NetlinkSocket {
  private handle: SocketHandle | undefined;
  private seq = Math.floor(Math.random() * 0x7fffffff) + 1;
  private readonly pending = new Map<number, Pending>();
  /** Packed batches waiting for their last answer: a failure of any of their messages is looked up here. */
  private readonly packed = new Set<PackedBatch>();
  private referenced = true;
  /** Sends queued on the pool and not yet done: while there are any, every send queues. */
  private queuedSends = 0;
  /** The last send queued for the pool thread, settled (never rejects). */
  private lastQueued: Promise<void> = Promise.resolve();

  private constructor(
    handle: SocketHandle,
    private readonly onUnsolicited?: SocketOptions['onUnsolicited'],
    private readonly onDatagrams?: SocketOptions['onDatagrams'],
  ) {
    this.handle = handle;
    native().startReading(handle, (err, data) => this.receive(err, data));
    this.updateRef();
  }

  static open(options: SocketOptions = {}): NetlinkSocket {
    const command = `open netlink socket${options.nsPath ? ` in ${options.nsPath}` : ''}`;
    let handle: SocketHandle;
    try {
      handle = native().open(options.nsPath ?? null, NETLINK_ROUTE, options.groups ?? [], options.receiveBufferBytes ?? RCVBUF, SNDBUF, {
        extAck: true,
        capAck: true,
        strict: true,
      });
    } catch (err) {
      throw fromSystemError(command, err);
    }
    return new NetlinkSocket(handle, options.onUnsolicited, options.onDatagrams);
  }

  get closed(): boolean {
    return this.handle === undefined;
  }

  /** Close the socket; requests still waiting fail with EBADF. Idempotent. */
  close(): void {
    if (!this.handle) return;
    native().close(this.handle);
    this.handle = undefined;
    this.failAll(EBADF);
  }

  /** The port id the kernel gave this socket: the nlmsg_pid of the announcements of its requests. */
  portId(): number {
    if (!this.handle) throw new NetlinkError('getsockname', EBADF, 'the socket is closed');
    try {
      return native().portId(this.handle);
    } catch (err) {
      throw fromSystemError('getsockname', err);
    }
  }

  /**
   * Do not deliver route and neighbour announcements of the requests of the socket with port id `portId` (a
   * socket filter; the kernel drops them before they are queued). For a listening socket.
   */
  ignoreAnnouncementsOf(portId: number): void {
    // 0 is the kernel's own port: its announcements (and a VXLAN device's FDB ones) would all be dropped.
    if (!Number.isInteger(portId) || portId < 1 || portId > 0xffffffff)
      throw new InvalidValueError('ignoreAnnouncementsOf', portId, "is not another socket's port id (1..4294967295)");
    if (!this.handle) throw new NetlinkError('attach a socket filter', EBADF, 'the socket is closed');
    try {
      native().ignoreAnnouncementsOf(this.handle, portId);
    } catch (err) {
      throw fromSystemError('attach a socket filter', err);
    }
  }

  /** A change (new/del/set): resolves when the kernel ACKs it, rejects with its error. */
  async request(req: Request): Promise<Message[]> {
    const [result] = await this.sendAll([req], NLM_F_ACK);
    if (result instanceof NetlinkError) throw result;
    return result!;
  }

  /**
   * A dump: every message up to NLMSG_DONE, taken again if the kernel says it was interrupted. Dumps on one
   * socket run one at a time (the kernel answers a second concurrent one with EBUSY); other requests don't wait.
   */
  dump(req: Request): Promise<Message[]> {
    const run = this.dumpQueue.then(() => this.dumpNow(req));
    this.dumpQueue = run.catch(() => undefined);
    return run;
  }

  /**
   * A dump read into records of numbers by a pool thread, on a socket of its own in this socket's namespace
   * (NativeBinding.dumpRecords; fails with EBADF once this one is closed): `filter` is the table of a route dump,
   * the device index of a neighbour or FDB dump (0: all) — or `device` names the device, whose index the pool
   * thread looks up and writes into the request at byte `indexAt`; `splitProtocol`: see NativeBinding. Taken
   * again if the kernel says it was interrupted, like `dump`. Several run side by side. Resolves with the
   * records and the filter used.
   */
  async dumpRecords(
    req: Request,
    kind: DumpKind,
    filter: number,
    more: { device?: { name: string; indexAt: number }; splitProtocol?: number } = {},
  ): Promise<{ records: Float64Array; others: Float64Array; filter: number }> {
    // Like every request of this socket, after the sends queued before it: the dump sees what they wrote.
    await this.queueDrained();
    for (let attempt = 1; ; attempt++) {
      let result: { records: Float64Array; others: Float64Array; interrupted: boolean; filter: number };
      try {
        if (!this.handle) throw new NetlinkError(req.command, EBADF, 'the socket is closed');
        const { device, splitProtocol } = more;
        result = await native().dumpRecords(this.handle, req.message, kind === 'route' ? 0 : 1, filter, device?.name, device?.indexAt, splitProtocol);
      } catch (err) {
        throw fromSystemError(req.command, err);
      }
      if (!result.interrupted || attempt >= DUMP_ATTEMPTS) return { records: result.records, others: result.others, filter: result.filter };
    }
  }

  private dumpQueue: Promise<unknown> = Promise.resolve();

  private async dumpNow(req: Request): Promise<Message[]> {
    for (let attempt = 1; ; attempt++) {
      let interrupted = false;
      const [result] = await this.sendAll([req], NLM_F_DUMP, () => (interrupted = true));
      if (result instanceof NetlinkError) throw result;
      if (!interrupted || attempt >= DUMP_ATTEMPTS) return result!;
    }
  }

  /**
   * Send many requests (chunked, each chunk in one sendto) and collect one outcome per request, in order: the
   * messages it got back, or its NetlinkError. Never rejects for a single request's failure.
   */
  sendAll(requests: readonly Request[], flags: number, onInterrupted?: () => void): Promise<Array<Message[] | NetlinkError>> {
    return this.sendEach(requests.length, (k) => requests[k]!, flags, onInterrupted);
  }

  /**
   * sendAll of `count` requests made by `build(k)` as they go out: each chunk is sent as soon as it is built, so
   * the kernel works through one chunk (on a pool thread) while the next is built and the ACKs of the one before
   * are read. The ACKs of every chunk in flight fit the receive buffer many times over.
   */
  async sendEach(count: number, build: (k: number) => Request, flags: number, onInterrupted?: () => void): Promise<Array<Message[] | NetlinkError>> {
    const results = new Array<Message[] | NetlinkError>(count);
    const chunks: Array<Promise<void>> = [];
    let next: Request | undefined;
    let i = 0;
    while (i < count) {
      const start = i;
      const chunk: Request[] = [];
      let bytes = 0;
      while (i < count && chunk.length < CHUNK_MESSAGES) {
        next ??= build(i);
        if (chunk.length > 0 && bytes + next.message.length > CHUNK_BYTES) break;
        chunk.push(next);
        bytes += next.message.length;
        next = undefined;
        i++;
      }
      chunks.push(this.sendChunk(chunk, start, flags, results, onInterrupted));
    }
    await Promise.all(chunks);
    return results;
  }

  /** Send `chunk` (requests start.. of a sendEach) in one sendto; resolves when every one is answered. */
  private sendChunk(
    chunk: readonly Request[],
    start: number,
    flags: number,
    results: Array<Message[] | NetlinkError>,
    onInterrupted?: () => void,
  ): Promise<void> {
    return new Promise((resolve) => {
      const state: Chunk = { results, outstanding: chunk.length, resolve, onInterrupted };
      const parts: Buffer[] = [];
      const seqs: number[] = [];
      for (let k = 0; k < chunk.length; k++) {
        const request = chunk[k]!;
        const seq = this.nextSeq();
        const msg = request.message;
        msg[6]! |= flags & 255; // nlmsg_flags (little-endian), then nlmsg_seq
        msg[7]! |= flags >>> 8;
        msg[8] = seq & 255;
        msg[9] = (seq >>> 8) & 255;
        msg[10] = (seq >>> 16) & 255;
        msg[11] = (seq >>> 24) & 255;
        parts.push(msg);
        seqs.push(seq);
        this.pending.set(seq, { request, index: start + k, chunk: state, messages: undefined, interrupted: false });
      }
      this.updateRef();
      if (!this.handle) {
        for (const seq of seqs) this.finish(seq, new NetlinkError(this.pending.get(seq)!.request.command, EBADF));
        return;
      }
      const failed = (err: unknown): void => {
        for (const seq of seqs) {
          const p = this.pending.get(seq);
          if (!p) continue;
          const e = fromSystemError(p.request.command, err);
          this.finish(seq, e instanceof NetlinkError ? e : new NetlinkError(p.request.command, EIO, String(err)));
        }
      };
      this.transmit(this.handle, joinMessages(parts), chunk.length, flags, failed);
    });
  }

  /**
   * One sendto() of `count` messages: from this thread for a few, queued for the pool thread for many (see
   * POOL_SEND_MIN), always after the sends queued before it, so the kernel gets every request in the order made.
   */
  private transmit(handle: SocketHandle, data: Buffer, count: number, flags: number, failed: (err: unknown) => void): void {
    const sendNow = (): void => {
      try {
        native().send(handle, data);
      } catch (err) {
        failed(err);
      }
    };
    if (flags & NLM_F_DUMP) {
      // A dump is sent from this thread only, after every queued send (the kernel gets requests in order). From
      // the pool thread, the kernel would run its first part there while this thread's recv() runs the rest, and
      // two netlink_dump() calls racing on one socket make the kernel fail the socket with EINVAL (seen).
      if (this.queuedSends === 0) sendNow();
      else void this.queueDrained().then(() => (this.handle === handle ? sendNow() : failed(new NetlinkError('send', EBADF))));
      return;
    }
    if (count < POOL_SEND_MIN && this.queuedSends === 0) {
      sendNow();
      return;
    }
    this.queuedSends++;
    let queued: Promise<number>;
    try {
      queued = native().sendQueued(handle, data);
    } catch (err) {
      queued = Promise.reject(err);
    }
    this.lastQueued = queued.then(() => undefined, failed).finally(() => this.queuedSends--);
  }

  /**
   * Send the messages packed in `data` (each starting at one of `offsets`; packed.ts) in one sendto(), asking
   * only the last for an ACK: the kernel answers a message that fails whether or not it asked, and handles a
   * sendto()'s messages in order, so when the last one's answer arrives every earlier failure has arrived too.
   * A thousand writes then cost the kernel and this thread one answer, not a thousand. Resolves with one entry
   * per message: its NetlinkError (worded by `describe`), or undefined when the kernel took it. When the answers
   * are lost (the receive buffer overflowed, the socket closed), every message not known to have failed fails.
   */
  sendPacked(data: Buffer, offsets: readonly number[], describe: (k: number) => string): Promise<Array<NetlinkError | undefined>> {
    const count = offsets.length;
    if (count === 0) return Promise.resolve([]);
    if (this.seq + count > 0xffffffff) this.seq = 0; // one batch's sequence numbers never wrap
    const first = this.seq + 1;
    this.seq += count;
    for (let k = 0; k < count; k++) {
      const at = offsets[k]!;
      const seq = first + k;
      data[at + 6] = (data[at + 6]! & ~NLM_F_ACK) | (k === count - 1 ? NLM_F_ACK : 0);
      data[at + 8] = seq & 255;
      data[at + 9] = (seq >>> 8) & 255;
      data[at + 10] = (seq >>> 16) & 255;
      data[at + 11] = seq >>> 24;
    }
    return new Promise((resolve) => {
      const batch: PackedBatch = { first, last: first + count - 1, errors: new Array<NetlinkError | undefined>(count), describe };
      const results: Array<Message[] | NetlinkError> = [];
      const settle = (): void => {
        this.packed.delete(batch);
        const lost = results[0];
        if (lost instanceof NetlinkError)
          for (let k = 0; k < count; k++) batch.errors[k] ??= new NetlinkError(describe(k), lost.errnoNumber, lost.kernelMessage);
        resolve(batch.errors);
      };
      const request = lazyRequest(data, () => describe(count - 1));
      this.packed.add(batch);
      this.pending.set(batch.last, {
        request,
        index: 0,
        chunk: { results, outstanding: 1, resolve: settle, onInterrupted: undefined },
        messages: undefined,
        interrupted: false,
        packed: batch,
      });
      this.updateRef();
      if (!this.handle) return this.finish(batch.last, new NetlinkError(request.command, EBADF));
      const failed = (err: unknown): void => {
        const e = fromSystemError(request.command, err);
        this.finish(batch.last, e instanceof NetlinkError ? e : new NetlinkError(request.command, EIO, String(err)));
      };
      this.transmit(this.handle, data, count, 0, failed);
    });
  }

  /** Resolves once no send is queued for the pool thread (the queue runs in order: the last one done is all done). */
  private async queueDrained(): Promise<void> {
    while (this.queuedSends > 0) await this.lastQueued;
  }

  private nextSeq(): number {
    this.seq = this.seq >= 0xffffffff ? 1 : this.seq + 1;
    return this.seq;
  }

  private finish(seq: number, error: NetlinkError | undefined): void {
    const p = this.pending.get(seq);
    if (!p) return;
    this.pending.delete(seq);
    if (this.pending.size === 0) this.updateRef();
    const chunk = p.chunk;
    if (p.interrupted) chunk.onInterrupted?.();
    chunk.results[p.index] = error ?? p.messages ?? NO_MESSAGES;
    if (--chunk.outstanding === 0) chunk.resolve();
  }

  private receive(err: NodeJS.ErrnoException | null, data: Buffer | null): void {
    if (this.onDatagrams) {
      if (err) this.onDatagrams(new NetlinkError('receive', typeof err.errno === 'number' ? err.errno : EIO, err.syscall), EMPTY);
      else if (data) this.onDatagrams(undefined, data);
      return;
    }
    if (err) {
      // ENOBUFS: the kernel dropped replies because the receive buffer was full. Which ones is unknowable,
      // so every waiting request fails rather than waiting forever; subscribers are told to resync.
      const errno = typeof err.errno === 'number' ? err.errno : EIO;
      if (this.onUnsolicited) this.onUnsolicited(new NetlinkError('receive', errno, err.syscall), []);
      else this.failAll(errno);
      return;
    }
    if (!data) return;
    let unsolicited: Message[] | undefined;
    let off = 0;
    // The header is read byte by byte (little-endian, as the kernel writes it): a dump of thousands of entries
    // runs this loop once per entry, and the messages of one dump share a sequence number, so its lookup is kept.
    let lastSeq = -1;
    let lastPending: Pending | undefined;
    while (off + NLMSG_HDRLEN <= data.length) {
      const len = (data[off]! | (data[off + 1]! << 8) | (data[off + 2]! << 16)) + data[off + 3]! * 0x1000000;
      if (len < NLMSG_HDRLEN || off + len > data.length) break;
      const type = data[off + 4]! | (data[off + 5]! << 8);
      const flags = data[off + 6]! | (data[off + 7]! << 8);
      const seq: number = (data[off + 8]! | (data[off + 9]! << 8) | (data[off + 10]! << 16)) + data[off + 11]! * 0x1000000;
      if (seq !== lastSeq) {
        lastSeq = seq;
        lastPending = seq !== 0 ? this.pending.get(seq) : undefined;
      }
      const p: Pending | undefined = lastPending;
      // Fast path for the common case, a plain ACK: nothing to decode.
      if (p && type === NLMSG_ERROR && len >= NLMSG_HDRLEN + 4 && data.readInt32LE(off + NLMSG_HDRLEN) === 0 && !(flags & NLM_F_ACK_TLVS)) {
        this.finish(seq, undefined);
        lastSeq = -1;
        off += align4(len);
        continue;
      }
      const m: Message = { type, flags, seq, pid: data.readUInt32LE(off + 12), payload: data.subarray(off + NLMSG_HDRLEN, off + len) };
      off += align4(len);
      if (type === NLMSG_ERROR || type === NLMSG_DONE || type === NLMSG_OVERRUN) lastSeq = -1; // its request is finished below
      if (!p) {
        if (type !== NLMSG_ERROR || !this.packedFailure(seq, m)) (unsolicited ??= []).push(m);
      } else if (type === NLMSG_ERROR) {
        const ack = parseError(m);
        const error = ack.errno ? new NetlinkError(p.request.command, ack.errno, ack.kernelMessage) : undefined;
        if (p.packed) p.packed.errors[seq - p.packed.first] = error;
        this.finish(seq, p.packed ? undefined : error);
      } else if (type === NLMSG_DONE) {
        const done = parseDone(m);
        this.finish(seq, done.errno ? new NetlinkError(p.request.command, done.errno, done.kernelMessage) : undefined);
      } else if (type === NLMSG_OVERRUN) {
        this.finish(seq, new NetlinkError(p.request.command, ENOBUFS));
      } else {
        // Every request asks for an ACK or is a dump, so it completes at NLMSG_ERROR / NLMSG_DONE, never here.
        if (flags & NLM_F_DUMP_INTR) p.interrupted = true;
        (p.messages ??= []).push(m);
      }
    }
    if (unsolicited && this.onUnsolicited) this.onUnsolicited(undefined, unsolicited);
  }

  /** The answer to a message of a packed batch other than its last: the kernel refused it. */
  private packedFailure(seq: number, m: Message): boolean {
    for (const batch of this.packed) {
      if (seq < batch.first || seq >= batch.last) continue;
      const ack = parseError(m);
      const k = seq - batch.first;
      if (ack.errno) batch.errors[k] = new NetlinkError(batch.describe(k), ack.errno, ack.kernelMessage);
      return true;
    }
    return false;
  }

  private failAll(errno: number): void {
    for (const [seq, p] of [...this.pending]) this.finish(seq, new NetlinkError(p.request.command, errno));
  }

  /** The socket keeps the process alive only while requests wait (or while it carries a subscription). */
  private updateRef(): void {
    const want = this.pending.size > 0 || this.onUnsolicited !== undefined || this.onDatagrams !== undefined;
    if (want !== this.referenced && this.handle) {
      native().setReadingRef(this.handle, want);
      this.referenced = want;
    }
  }
}

/** The outcome of a request that got only its ACK; shared, never written to. */
const NO_MESSAGES: Message[] = Object.freeze([]) as unknown as Message[];

const EMPTY = Buffer.alloc(0);
const EBADF = 9;
const EIO = 5;
const ENOBUFS = 105;
