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
import { align4, joinMessages, parseDone, parseError, type Message, type Request } from './message.js';
import { native, type SocketHandle } from '../sys/native.js';

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
  /** A raw dump collects where its messages lie instead of making a Message of each (see dumpRaw). */
  raw: RawDump | undefined;
}

/**
 * A dump's messages left where they arrived: the received datagrams, and per message three numbers — the index of
 * its datagram, the offset of its header and its length. A dump of 5000 routes then costs no object per route;
 * scan.ts reads the fields it needs straight from the bytes.
 */
export interface RawDump {
  buffers: Buffer[];
  spans: number[];
}

/** Requests sent in one sendto(): bounded so their ACKs fit the receive buffer with room to spare. */
const CHUNK_MESSAGES = 1024;
const CHUNK_BYTES = 256 * 1024;
/** Large enough for the ACKs of a whole chunk and a dump datagram in flight; SO_RCVBUFFORCE doubles it. */
const RCVBUF = 8 * 1024 * 1024;
const SNDBUF = 1024 * 1024;
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
}

export class NetlinkSocket {
  private handle: SocketHandle | undefined;
  private seq = Math.floor(Math.random() * 0x7fffffff) + 1;
  private readonly pending = new Map<number, Pending>();
  private referenced = true;

  private constructor(
    handle: SocketHandle,
    private readonly onUnsolicited?: SocketOptions['onUnsolicited'],
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
    return new NetlinkSocket(handle, options.onUnsolicited);
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

  /** A dump like `dump`, its messages left in the received datagrams (RawDump). */
  dumpRaw(req: Request): Promise<RawDump> {
    const run = this.dumpQueue.then(async () => {
      const raw: RawDump = { buffers: [], spans: [] };
      await this.dumpNow(req, raw);
      return raw;
    });
    this.dumpQueue = run.catch(() => undefined);
    return run;
  }

  private dumpQueue: Promise<unknown> = Promise.resolve();

  private async dumpNow(req: Request, raw?: RawDump): Promise<Message[]> {
    for (let attempt = 1; ; attempt++) {
      let interrupted = false;
      if (raw) {
        raw.buffers.length = 0;
        raw.spans.length = 0;
      }
      const [result] = await this.sendAll([req], NLM_F_DUMP, () => (interrupted = true), raw);
      if (result instanceof NetlinkError) throw result;
      if (!interrupted || attempt >= DUMP_ATTEMPTS) return result!;
    }
  }

  /**
   * Send many requests (chunked, each chunk in one sendto) and collect one outcome per request, in order: the
   * messages it got back, or its NetlinkError. Never rejects for a single request's failure.
   */
  async sendAll(requests: readonly Request[], flags: number, onInterrupted?: () => void, raw?: RawDump): Promise<Array<Message[] | NetlinkError>> {
    const results = new Array<Message[] | NetlinkError>(requests.length);
    let i = 0;
    while (i < requests.length) {
      let bytes = 0;
      const start = i;
      while (i < requests.length && i - start < CHUNK_MESSAGES && (i === start || bytes + requests[i]!.message.length <= CHUNK_BYTES)) {
        bytes += requests[i]!.message.length;
        i++;
      }
      await this.sendChunk(requests, start, i, flags, results, onInterrupted, raw);
    }
    return results;
  }

  private sendChunk(
    requests: readonly Request[],
    start: number,
    end: number,
    flags: number,
    results: Array<Message[] | NetlinkError>,
    onInterrupted?: () => void,
    raw?: RawDump,
  ): Promise<void> {
    return new Promise((resolve) => {
      const chunk: Chunk = { results, outstanding: end - start, resolve, onInterrupted };
      const parts: Buffer[] = [];
      const seqs: number[] = [];
      for (let k = start; k < end; k++) {
        const request = requests[k]!;
        const seq = this.nextSeq();
        const msg = request.message;
        msg.writeUInt16LE(msg.readUInt16LE(6) | flags, 6);
        msg.writeUInt32LE(seq, 8);
        parts.push(msg);
        seqs.push(seq);
        this.pending.set(seq, { request, index: k, chunk, messages: undefined, interrupted: false, raw });
      }
      this.updateRef();
      if (!this.handle) {
        for (const seq of seqs) this.finish(seq, new NetlinkError(this.pending.get(seq)!.request.command, EBADF));
        return;
      }
      try {
        native().send(this.handle, joinMessages(parts));
      } catch (err) {
        for (const seq of seqs) {
          const p = this.pending.get(seq);
          if (!p) continue;
          const e = fromSystemError(p.request.command, err);
          this.finish(seq, e instanceof NetlinkError ? e : new NetlinkError(p.request.command, EIO, String(err)));
        }
      }
    });
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
      if (p?.raw && type !== NLMSG_ERROR && type !== NLMSG_DONE && type !== NLMSG_OVERRUN) {
        const r: RawDump = p.raw;
        if (r.buffers[r.buffers.length - 1] !== data) r.buffers.push(data);
        r.spans.push(r.buffers.length - 1, off, len);
        if (flags & NLM_F_DUMP_INTR) p.interrupted = true;
        off += align4(len);
        continue;
      }
      const m: Message = { type, flags, seq, pid: data.readUInt32LE(off + 12), payload: data.subarray(off + NLMSG_HDRLEN, off + len) };
      off += align4(len);
      if (type === NLMSG_ERROR || type === NLMSG_DONE || type === NLMSG_OVERRUN) lastSeq = -1; // its request is finished below
      if (!p) {
        (unsolicited ??= []).push(m);
      } else if (type === NLMSG_ERROR) {
        const ack = parseError(m);
        this.finish(seq, ack.errno ? new NetlinkError(p.request.command, ack.errno, ack.kernelMessage) : undefined);
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

  private failAll(errno: number): void {
    for (const [seq, p] of [...this.pending]) this.finish(seq, new NetlinkError(p.request.command, errno));
  }

  /** The socket keeps the process alive only while requests wait (or while it carries a subscription). */
  private updateRef(): void {
    const want = this.pending.size > 0 || this.onUnsolicited !== undefined;
    if (want !== this.referenced && this.handle) {
      native().setReadingRef(this.handle, want);
      this.referenced = want;
    }
  }
}

/** The outcome of a request that got only its ACK; shared, never written to. */
const NO_MESSAGES: Message[] = Object.freeze([]) as unknown as Message[];

const EBADF = 9;
const EIO = 5;
const ENOBUFS = 105;
