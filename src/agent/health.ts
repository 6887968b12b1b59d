/**
 * The agent's HTTP endpoints: `/healthz` (200 once the agent holds its lease and has programmed the kernel, 503
 * before, with a JSON body saying why) and Prometheus `/metrics` (prom-client, the Prometheus project's own
 * Node.js client). Bound to one address only (default 127.0.0.1), never exposed by accident.
 */
import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { InvalidValueError, TulleError } from '../base/errors.js';

export class AgentMetrics {
  readonly registry = new Registry();
  readonly peersProgrammed = new Gauge({
    name: 'tulle_peers_programmed',
    help: 'Peers whose route, neighbour and FDB entry are in the kernel',
    registers: [this.registry],
  });
  readonly reconciles = new Counter({
    name: 'tulle_reconciles_total',
    help: 'Full reconciles of the kernel state against the leases',
    registers: [this.registry],
  });
  readonly reconcileSeconds = new Histogram({
    name: 'tulle_reconcile_duration_seconds',
    help: 'Time a full reconcile took',
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
    registers: [this.registry],
  });
  readonly repairs = new Counter({
    name: 'tulle_repairs_total',
    help: 'Kernel entries rewritten because they had drifted (deleted or changed by someone else)',
    registers: [this.registry],
  });
  readonly kernelWrites = new Counter({
    name: 'tulle_kernel_writes_total',
    help: 'Route, neighbour and FDB writes made',
    labelNames: ['kind', 'op'] as const,
    registers: [this.registry],
  });
  readonly kernelErrors = new Counter({ name: 'tulle_kernel_errors_total', help: 'Kernel writes that failed', registers: [this.registry] });
  readonly leaseExpiry = new Gauge({
    name: 'tulle_lease_expiry_timestamp_seconds',
    help: "When this host's lease expires unless renewed (Unix time)",
    registers: [this.registry],
  });
  readonly storeErrors = new Counter({
    name: 'tulle_store_errors_total',
    help: 'Failed store operations (the data plane is kept as it is)',
    registers: [this.registry],
  });
  readonly leasesRejected = new Gauge({
    name: 'tulle_leases_rejected',
    help: 'Peer leases in the store that this host refuses to program, by reason (malformed, outside-network, foreign-route, duplicate-vtep-mac, ...)',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly storeUp = new Gauge({
    name: 'tulle_store_up',
    help: '1 while the store answers, 0 while it is unreachable or does not answer in time',
    registers: [this.registry],
  });
  readonly memoryCollections = new Counter({
    name: 'tulle_memory_collections_total',
    help: 'Memory-returning garbage collections run after bulk work (a thousand kernel entries or more written or dumped)',
    registers: [this.registry],
  });

  constructor() {
    // The event-loop lag histogram samples with a timer, and every tick wakes the process: prom-client's default of
    // 10 ms made about half of an idle agent's CPU (measured in a 10-host lab: 6.6-8.9 ms per second per agent
    // with it, 3.4 ms with one tick a second and the store's quieter poll), and a lab runs a hundred agents on one
    // machine. A stall of a second or more is always seen; a shorter one in proportion to its length.
    collectDefaultMetrics({ register: this.registry, prefix: 'tulle_', eventLoopMonitoringPrecision: 1000 });
  }
}

export interface HealthState {
  ready: boolean;
  reason: string;
  details?: Record<string, unknown>;
}

export function parseHostPort(text: string, field = '--health-addr'): { host: string; port: number } {
  const m = /^(\[[0-9a-fA-F:]+\]|[^:]+):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535) throw new InvalidValueError(field, text, 'must be HOST:PORT, like 127.0.0.1:9465');
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
}

/**
 * An extra read-only endpoint (e.g. `tulle trace`'s /trace): answers for the paths it knows, undefined for the
 * others. Given by the command that starts the agent, so this server needs to know nothing about it.
 */
export type HealthRoute = (path: string, query: URLSearchParams) => Promise<{ status: number; body: unknown }> | undefined;

/** The usual reasons a listen fails, in plain words; the first one is a second agent on the same host. */
function listenError(addr: string, err: NodeJS.ErrnoException): Error {
  const rule: Record<string, string> = {
    EADDRINUSE: 'is already in use: is another tulle agent running on this host? (stop it, or give this one another --health-addr)',
    EADDRNOTAVAIL: 'is not an address of this host (use 127.0.0.1 or an address of one of its interfaces)',
    EACCES: 'needs a privilege this process lacks (a port below 1024 needs root)',
  };
  const why = err.code ? rule[err.code] : undefined;
  return why ? new TulleError('TLE_HEALTH_LISTEN', `--health-addr: ${addr} ${why}`, { cause: err }) : err;
}

/** Start the server; resolves once it listens. `state()` is asked on every /healthz. */
export async function startHealthServer(addr: string, metrics: AgentMetrics, state: () => HealthState, extra?: HealthRoute): Promise<Server> {
  const { host, port } = parseHostPort(addr);
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://agent');
    const path = url.pathname;
    const answer = req.method === 'GET' ? extra?.(path, url.searchParams) : undefined;
    if (answer) {
      answer.then(
        ({ status, body }) => {
          res.writeHead(status, { 'content-type': 'application/json' });
          res.end(JSON.stringify(body) + '\n');
        },
        (err: Error) => {
          res.writeHead(500, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ error: err.message }) + '\n');
        },
      );
    } else if (path === '/healthz') {
      const s = state();
      res.writeHead(s.ready ? 200 : 503, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ status: s.ready ? 'ok' : 'not ready', reason: s.reason, ...s.details }) + '\n');
    } else if (path === '/metrics') {
      metrics.registry.metrics().then(
        (text) => {
          res.writeHead(200, { 'content-type': metrics.registry.contentType });
          res.end(text);
        },
        (err: Error) => {
          res.writeHead(500);
          res.end(err.message);
        },
      );
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found: try /healthz or /metrics\n');
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(listenError(addr, err)));
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return server;
}

/** What answers at an agent's health address: not running, running but not ready (with why), or ready. */
export interface AgentProbe {
  running: boolean;
  ready: boolean;
  reason: string;
}

/** GET /healthz at `addr` (in this process's network namespace); connection refused means no agent. */
export async function probeAgent(addr: string, timeoutMs = 3000): Promise<AgentProbe> {
  const { host, port } = parseHostPort(addr);
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}/healthz`;
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    const body = (await res.json().catch(() => ({}))) as { reason?: unknown };
    return { running: true, ready: res.status === 200, reason: typeof body.reason === 'string' ? body.reason : `HTTP ${res.status}` };
  } catch (err) {
    const code = ((err as Error).cause as NodeJS.ErrnoException | undefined)?.code ?? (err as Error).name;
    return { running: false, ready: false, reason: code === 'ECONNREFUSED' ? `nothing answers at ${addr}` : `no answer at ${addr} (${code})` };
  }
}
