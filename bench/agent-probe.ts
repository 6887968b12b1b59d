/**
 * Reading an agent from outside, the way an operator would: its /healthz and /metrics listen on 127.0.0.1:9465
 * inside the host's namespace, so a small node program is run in that namespace (`ip netns exec NS node -e ...`)
 * to ask them. Used by the benchmarks to time an agent's restart and to read its reconcile figures.
 */
import { run } from '../src/base/exec.js';
import { DEFAULT_HEALTH_ADDR } from '../src/agent/options.js';

/**
 * Polls /healthz every `intervalMs` until it answers 200, then prints one JSON line: the epoch ms at which it did
 * and the /metrics text read right after. Exits 1 when `timeoutMs` passes first.
 */
const PROBE = `
const [addr, intervalMs, timeoutMs] = process.argv.slice(1);
const deadline = Date.now() + Number(timeoutMs);
for (;;) {
  try {
    const r = await fetch('http://' + addr + '/healthz');
    await r.arrayBuffer();
    if (r.status === 200) {
      const readyAt = Date.now();
      const metrics = await (await fetch('http://' + addr + '/metrics')).text();
      process.stdout.write(JSON.stringify({ readyAt, metrics }) + '\\n');
      break;
    }
  } catch {}
  if (Date.now() > deadline) { process.stderr.write('agent not ready after ' + timeoutMs + ' ms\\n'); process.exit(1); }
  await new Promise((r) => setTimeout(r, Number(intervalMs)));
}
`;

export interface AgentProbe {
  /** Epoch milliseconds at which /healthz first answered 200. */
  readyAt: number;
  /** The Prometheus text of /metrics, read right after. */
  metrics: string;
}

/** Wait (from inside `namespace`) until the agent there is ready; resolves with when, and its metrics. */
export async function probeAgent(namespace: string, options: { intervalMs?: number; timeoutMs?: number } = {}): Promise<AgentProbe> {
  const r = await run([
    'ip',
    'netns',
    'exec',
    namespace,
    process.execPath,
    '--input-type=module',
    '-e',
    PROBE,
    DEFAULT_HEALTH_ADDR,
    String(options.intervalMs ?? 5),
    String(options.timeoutMs ?? 120_000),
  ]);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as AgentProbe;
}

/** The sum of every series of `name` in Prometheus text (`name{...} value` and `name value` lines). */
export function metricValue(text: string, name: string): number | undefined {
  let sum: number | undefined;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== ' ' && rest[0] !== '{') continue;
    const value = Number(rest.slice(rest.lastIndexOf(' ') + 1));
    if (Number.isFinite(value)) sum = (sum ?? 0) + value;
  }
  return sum;
}
