/**
 * The resident CNI path: the agent answers CNI calls on a unix socket (default /run/tulle/cni.sock, mode 0600, so
 * root only), doing exactly what the tulle-cni process would (the same `answer` as main.ts: same validation,
 * results, errors and host-local IPAM files). The runtime still executes a plugin per call, but that plugin is the
 * small compiled shim (native/tulle_cni_shim.c): it forwards the environment and stdin here and prints the answer,
 * so a call costs a process start in C instead of starting Node.js. Cilium's and Multus' thick plugins work alike.
 *
 * Wire format (one request and one answer per connection; integers big-endian):
 *   request  "TCNI" u8 version=1 u32 length, then `length` bytes: NUL-terminated "KEY=VALUE" entries (the
 *            caller's CNI_* variables and "netns=<dev>:<inode>" of its network namespace), an empty entry, stdin
 *   answer   "TCNI" u8 version=1 u8 status u32 length, then stdout; status 0/1 is the plugin's exit code, 2 means
 *            "refused, do it yourself" (the shim then runs the Node plugin: another namespace's caller, shutdown)
 *
 * A caller in another network namespace is refused: the server acts in its own namespace, and the plugin's host
 * side must be the caller's. Bad input (garbage, oversize, half a request, a client that never finishes) gets a
 * CNI error 6 naming what was wrong and costs no other request anything: every connection is read
 * asynchronously with its own deadline and size cap.
 *
 * Pod namespaces: the netlink binding enters a namespace only inside one synchronous native call (open a socket
 * there) and returns to the agent's namespace before JS runs again, or on a libuv pool thread for one /proc/sys
 * read or write, which returns before that work is done; so the main thread is never left in a pod's namespace and requests for different pods interleave freely. The IPAM lock
 * is a flock on a descriptor each request opens itself, so concurrent requests exclude each other as separate
 * plugin processes do.
 */
import { lstatSync, mkdirSync, statSync, unlinkSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { dirname, isAbsolute } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { InvalidValueError, TulleError, describeError } from '../base/errors.js';
import type { Logger } from '../base/log.js';
import { CNI_CODES, LATEST_VERSION } from './errors.js';
import type { PodEndpointHooks } from './l2-endpoint.js';
import { answer, type Answer } from './main.js';

export const DEFAULT_CNI_SOCKET = '/run/tulle/cni.sock';
export const MAGIC = Buffer.from('TCNI');
export const PROTOCOL_VERSION = 1;
const REQUEST_HEADER = 9;
/** Refused: the caller does the work itself. */
export const STATUS_REFUSED = 2;
/** A CNI config plus prevResult is a few KiB; the shim runs the Node plugin itself for anything larger. */
export const DEFAULT_MAX_REQUEST_BYTES = 1024 * 1024;
/** A shim sends its whole request at once; a client still sending after this is stuck or hostile. */
export const DEFAULT_READ_TIMEOUT_MS = 10_000;
/** sun_path is 108 bytes with its terminating NUL. */
const MAX_SOCKET_PATH = 107;

export class CniServerError extends TulleError {}

export interface CniServerOptions {
  /** Socket path (absolute). */
  path: string;
  log: Logger;
  /** Where the request metrics go (the agent's /metrics registry); a private one when absent. */
  registry?: Registry;
  maxRequestBytes?: number;
  readTimeoutMs?: number;
  /** On close, how long in-flight requests may take to finish before their connections are cut. */
  drainMs?: number;
  /**
   * The agent's pod endpoint hooks (L2 Flood "none"), read at every request: undefined until the agent holds its
   * lease, and for any other network.
   */
  endpointHooks?: () => PodEndpointHooks | undefined;
}

/** Per-command latency and outcome, on the agent's /metrics. */
export class CniServerMetrics {
  readonly duration: Histogram<'command' | 'result'>;
  readonly requests: Counter<'command' | 'code'>;
  readonly badRequests: Counter<'reason'>;
  readonly refused: Counter<'reason'>;
  readonly inFlight: Gauge;

  constructor(readonly registry: Registry) {
    const registers = [registry];
    this.duration = new Histogram({
      name: 'tulle_cni_request_duration_seconds',
      help: 'Time the agent took to answer a CNI request on its socket, by command and result (ok or error)',
      labelNames: ['command', 'result'] as const,
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
      registers,
    });
    this.requests = new Counter({
      name: 'tulle_cni_requests_total',
      help: 'CNI requests answered on the socket, by command and CNI result code (0 = success)',
      labelNames: ['command', 'code'] as const,
      registers,
    });
    this.badRequests = new Counter({
      name: 'tulle_cni_bad_requests_total',
      help: 'Connections that did not carry a well-formed request, by reason',
      labelNames: ['reason'] as const,
      registers,
    });
    this.refused = new Counter({
      name: 'tulle_cni_refused_total',
      help: 'Requests handed back to the caller to do itself, by reason',
      labelNames: ['reason'] as const,
      registers,
    });
    this.inFlight = new Gauge({ name: 'tulle_cni_requests_in_flight', help: 'CNI requests being worked on', registers });
  }
}

/** A request taken apart: the CNI_* environment, the caller's namespace identity, stdin. */
export interface Request {
  env: Record<string, string>;
  netns: string | undefined;
  stdin: string;
}

/** Thrown by `parseRequestBody`: a body that breaks the wire format (answered as CNI error 6). */
export class BadRequestError extends TulleError {
  constructor(
    readonly reason: string,
    message: string,
  ) {
    super('TLE_CNI_BAD_REQUEST', message);
  }
}

/** The body after the header: entries up to the first empty one, then stdin. */
export function parseRequestBody(body: Buffer): Request {
  const env: Record<string, string> = {};
  let netns: string | undefined;
  let at = 0;
  for (let n = 0; ; n++) {
    const end = body.indexOf(0, at);
    if (end < 0) throw new BadRequestError('format', `request: entry ${n + 1} has no terminating NUL (the entries must end with an empty one)`);
    if (end === at) {
      at = end + 1;
      break;
    }
    const entry = body.subarray(at, end).toString('utf8');
    at = end + 1;
    const eq = entry.indexOf('=');
    const key = eq > 0 ? entry.slice(0, eq) : '';
    if (key !== 'netns' && !/^CNI_[A-Z_]+$/.test(key)) {
      throw new BadRequestError('format', `request: entry ${n + 1} ${cut(entry)} is not KEY=VALUE with KEY netns or CNI_*`);
    }
    const value = entry.slice(eq + 1);
    if (key in env || (key === 'netns' && netns !== undefined)) throw new BadRequestError('format', `request: ${key} is given twice`);
    if (key === 'netns') netns = value;
    else env[key] = value;
  }
  const stdin = body.subarray(at);
  const text = stdin.toString('utf8');
  // Invalid UTF-8 would be silently replaced; a plugin's stdin is JSON, so say so instead.
  if (!Buffer.from(text, 'utf8').equals(stdin)) throw new BadRequestError('format', 'request: stdin is not valid UTF-8');
  return { env, netns, stdin: text };
}

/** A request as the shim frames it (for tests, the benchmark and anyone speaking the protocol from Node);
 * `netns` null leaves the namespace out, as a foreign client would. */
export function encodeRequest(env: Record<string, string | undefined>, stdin: string, netns: string | null = ownNetnsId()): Buffer {
  const entries: Buffer[] = [];
  if (netns !== null) entries.push(Buffer.from(`netns=${netns}\0`));
  for (const [k, v] of Object.entries(env)) if (v !== undefined && k.startsWith('CNI_')) entries.push(Buffer.from(`${k}=${v}\0`));
  entries.push(Buffer.from([0]), Buffer.from(stdin, 'utf8'));
  const body = Buffer.concat(entries);
  const header = Buffer.alloc(REQUEST_HEADER);
  MAGIC.copy(header);
  header.writeUInt8(PROTOCOL_VERSION, 4);
  header.writeUInt32BE(body.length, 5);
  return Buffer.concat([header, body]);
}

function encodeAnswer(status: number, stdout: string): Buffer {
  const body = Buffer.from(stdout, 'utf8');
  const header = Buffer.alloc(10);
  MAGIC.copy(header);
  header.writeUInt8(PROTOCOL_VERSION, 4);
  header.writeUInt8(status, 5);
  header.writeUInt32BE(body.length, 6);
  return Buffer.concat([header, body]);
}

/** "<st_dev>:<st_ino>" of this thread's network namespace file, what the shim sends of its own. */
export function ownNetnsId(): string {
  const s = statSync('/proc/thread-self/ns/net', { bigint: true });
  return `${s.dev}:${s.ino}`;
}

/** A caller-given value for a log line: at most `max` characters, with an ellipsis. */
function clip(text: string, max = 100): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

function cut(text: string, max = 60): string {
  const q = JSON.stringify(text);
  return q.length > max ? `${q.slice(0, max - 1)}…` : q;
}

function decodeError(msg: string): string {
  return JSON.stringify({ cniVersion: LATEST_VERSION, code: CNI_CODES.DECODE_FAILURE, msg }) + '\n';
}

export class CniServer {
  readonly metrics: CniServerMetrics;
  private readonly netnsId = ownNetnsId();
  private readonly connections = new Set<Socket>();
  private readonly inFlight = new Set<Promise<unknown>>();
  private closing = false;
  private closed: Promise<void> | undefined;
  private socketIno: bigint | undefined;

  private constructor(
    private readonly server: Server,
    readonly path: string,
    private readonly o: Required<Omit<CniServerOptions, 'registry' | 'endpointHooks'>> & Pick<CniServerOptions, 'endpointHooks'>,
    registry: Registry,
  ) {
    this.metrics = new CniServerMetrics(registry);
  }

  /** Listen on `options.path`; resolves once the socket accepts connections. */
  static async start(options: CniServerOptions): Promise<CniServer> {
    const path = options.path;
    if (typeof path !== 'string' || !isAbsolute(path) || Buffer.byteLength(path) > MAX_SOCKET_PATH || path.includes('\0')) {
      throw new InvalidValueError('--cni-socket', path, `must be an absolute path of at most ${MAX_SOCKET_PATH} bytes (or "" for no CNI socket)`);
    }
    await clearStaleSocket(path);
    // The commands (netlink client, native binding) load now, not on the first pod's ADD (tens of ms).
    await import('./commands.js');
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    const o = {
      path,
      log: options.log,
      maxRequestBytes: options.maxRequestBytes ?? DEFAULT_MAX_REQUEST_BYTES,
      readTimeoutMs: options.readTimeoutMs ?? DEFAULT_READ_TIMEOUT_MS,
      drainMs: options.drainMs ?? 10_000,
      endpointHooks: options.endpointHooks,
    };
    const server = createServer({ allowHalfOpen: true });
    const self = new CniServer(server, path, o, options.registry ?? new Registry());
    server.on('connection', (sock) => self.onConnection(sock));
    // The socket is born 0600: bind() creates the file with the process umask, and nothing but root may connect.
    const umask = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(path, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      throw new CniServerError('TLE_CNI_SOCKET', `--cni-socket: cannot listen on ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, {
        cause: err,
      });
    } finally {
      process.umask(umask);
    }
    server.on('error', (err) => o.log.error('cni socket failed', { path, error: describeError(err) }));
    self.socketIno = statSync(path, { bigint: true }).ino;
    o.log.info('serving CNI requests', { socket: path });
    return self;
  }

  /**
   * Stop accepting, refuse what arrives meanwhile, let in-flight requests finish (up to drainMs), then cut the
   * remaining connections and remove the socket file if it is still ours.
   */
  close(): Promise<void> {
    this.closed ??= this.shutDown();
    return this.closed;
  }

  private async shutDown(): Promise<void> {
    this.closing = true;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.allSettled([...this.inFlight]), new Promise((resolve) => (timer = setTimeout(resolve, this.o.drainMs)))]);
    clearTimeout(timer);
    for (const sock of this.connections) sock.destroy();
    await closed;
    try {
      if (statSync(this.path, { bigint: true }).ino === this.socketIno) unlinkSync(this.path);
    } catch {
      // already gone
    }
  }

  private onConnection(sock: Socket): void {
    this.connections.add(sock);
    sock.on('close', () => this.connections.delete(sock));
    sock.on('error', () => {}); // a client that went away; its request (if any) still completes and is logged
    const chunks: Buffer[] = [];
    let received = 0;
    let expected: number | undefined;
    let done = false;
    const finish = (): void => {
      done = true;
      clearTimeout(timer);
      sock.removeAllListeners('data');
      sock.removeAllListeners('end');
    };
    const bad = (reason: string, msg: string): void => {
      finish();
      this.metrics.badRequests.inc({ reason });
      this.o.log.warn('bad CNI request', { reason, error: msg });
      sock.end(encodeAnswer(1, decodeError(msg)));
      // A client that neither reads nor closes is cut loose rather than kept.
      sock.setTimeout(1000, () => sock.destroy());
    };
    const timer = setTimeout(() => {
      bad(
        'timeout',
        `request: incomplete after ${this.o.readTimeoutMs} ms (${received} bytes received${expected !== undefined ? ` of ${REQUEST_HEADER + expected}` : ''})`,
      );
    }, this.o.readTimeoutMs);
    sock.on('data', (chunk: Buffer) => {
      if (done) return;
      chunks.push(chunk);
      received += chunk.length;
      if (expected === undefined && received >= REQUEST_HEADER) {
        const head = Buffer.concat(chunks);
        if (!head.subarray(0, 4).equals(MAGIC) || head[4] !== PROTOCOL_VERSION) {
          return bad(
            'format',
            `request: not a tulle CNI request (it must start with "TCNI" and version ${PROTOCOL_VERSION}; got ${cut(head.subarray(0, 5).toString('latin1'))})`,
          );
        }
        expected = head.readUInt32BE(5);
        if (expected > this.o.maxRequestBytes) {
          return bad('oversize', `request: ${expected} bytes is over the limit of ${this.o.maxRequestBytes} (the plugin runs requests this large itself)`);
        }
      }
      if (expected !== undefined && received > REQUEST_HEADER + expected) {
        return bad('format', `request: ${received - REQUEST_HEADER - expected} bytes more than its length of ${expected}`);
      }
      if (expected !== undefined && received === REQUEST_HEADER + expected) {
        finish();
        this.track(this.serve(sock, Buffer.concat(chunks).subarray(REQUEST_HEADER)));
      }
    });
    sock.on('end', () => {
      if (done) return;
      if (received === 0) {
        // A probe (connect and close, as a starting server checks for a live one): nothing to answer.
        finish();
        sock.end();
        return;
      }
      bad(
        'truncated',
        `request: the connection ended after ${received} bytes${expected !== undefined ? ` of ${REQUEST_HEADER + expected}` : ` (the header alone is ${REQUEST_HEADER})`}`,
      );
    });
  }

  private track(p: Promise<void>): void {
    this.inFlight.add(p);
    void p.finally(() => this.inFlight.delete(p));
  }

  private async serve(sock: Socket, body: Buffer): Promise<void> {
    let req: Request;
    try {
      req = parseRequestBody(body);
    } catch (err) {
      const e = err as BadRequestError;
      this.metrics.badRequests.inc({ reason: e.reason ?? 'format' });
      this.o.log.warn('bad CNI request', { reason: e.reason, error: e.message });
      sock.end(encodeAnswer(1, decodeError(e.message)));
      return;
    }
    const refuse = (reason: string, detail: string): void => {
      this.metrics.refused.inc({ reason });
      this.o.log.info('CNI request handed back to the plugin', {
        reason,
        detail: clip(detail, 300),
        command: clip(req.env.CNI_COMMAND ?? ''),
        containerId: clip(req.env.CNI_CONTAINERID ?? ''),
      });
      sock.end(encodeAnswer(STATUS_REFUSED, `${detail}\n`));
    };
    if (this.closing) return refuse('closing', 'the agent is stopping');
    if (req.netns !== this.netnsId) {
      return refuse('netns', `the caller's network namespace (${req.netns ?? 'not given'}) is not the agent's (${this.netnsId})`);
    }
    const command = commandLabel(req.env.CNI_COMMAND);
    const started = performance.now();
    this.metrics.inFlight.inc();
    let a: Answer;
    try {
      a = await answer(req.env, async () => req.stdin, this.o.endpointHooks?.());
    } finally {
      this.metrics.inFlight.dec();
    }
    const seconds = (performance.now() - started) / 1000;
    const code = a.exitCode === 0 ? 0 : errorCode(a.stdout);
    this.metrics.duration.observe({ command, result: a.exitCode === 0 ? 'ok' : 'error' }, seconds);
    this.metrics.requests.inc({ command, code: String(code) });
    // Caller-given values are cut: a hostile request must not write megabyte log lines.
    const fields = {
      command: clip(req.env.CNI_COMMAND ?? '(missing)'),
      containerId: clip(req.env.CNI_CONTAINERID ?? ''),
      ifName: clip(req.env.CNI_IFNAME ?? ''),
      code,
      durationMs: Math.round(seconds * 100_000) / 100,
    };
    if (a.exitCode === 0) this.o.log.info('cni request', fields);
    else this.o.log.warn('cni request failed', { ...fields, error: clip(errorMessage(a.stdout), 500) });
    if (!sock.destroyed) sock.end(encodeAnswer(a.exitCode, a.stdout));
  }
}

/** The command as a metric label: one of the six, or "invalid" (so a hostile caller cannot mint label values). */
function commandLabel(value: string | undefined): string {
  return ['ADD', 'DEL', 'CHECK', 'STATUS', 'GC', 'VERSION'].includes(value ?? '') ? value! : 'invalid';
}

function errorCode(stdout: string): number {
  try {
    const code = (JSON.parse(stdout) as { code?: unknown }).code;
    return typeof code === 'number' ? code : CNI_CODES.INTERNAL;
  } catch {
    return CNI_CODES.INTERNAL;
  }
}

function errorMessage(stdout: string): string {
  try {
    return String((JSON.parse(stdout) as { msg?: unknown }).msg);
  } catch {
    return stdout.trim();
  }
}

/**
 * A socket file left by an agent that died is removed; one a live server answers on, or anything that is not a
 * socket, is not ours to take over.
 */
async function clearStaleSocket(path: string): Promise<void> {
  let st;
  try {
    st = lstatSync(path);
  } catch {
    return;
  }
  if (!st.isSocket())
    throw new CniServerError('TLE_CNI_SOCKET', `--cni-socket: ${path} exists and is not a socket (tulle replaces only a stale socket of its own)`);
  const live = await new Promise<boolean>((resolve) => {
    const c = connect(path);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
  if (live)
    throw new CniServerError(
      'TLE_CNI_SOCKET_IN_USE',
      `--cni-socket: another process already serves ${path} (stop it, or give this agent another --cni-socket)`,
    );
  unlinkSync(path);
}
