/**
 * `tulle demo` (`npm run demo`): what the seeds describe, working. A lab of hosts on a routed underlay, one
 * tulle agent per host, pods attached by tulle-cni; then a connectivity matrix (every pod pings every other
 * pod across the overlay) and, per host, the kernel state the seeds print. The lab is removed afterwards unless
 * --keep.
 */
import { describeError } from '../../base/errors.js';
import { createLogger } from '../../base/log.js';
import { run, runJson } from '../../base/exec.js';
import {
  labDown,
  labUp,
  overlaySteps,
  validateLabName,
  validatePodCount,
  MAX_PODS,
  POD_MODES,
  STORE_KINDS,
  UNDERLAYS,
  type LabState,
} from '../../lab/index.js';
import { defineCommand } from '../spec.js';
import { readFileSync } from 'node:fs';
import { UsageError } from '../../base/errors.js';
import { FLOODS } from '../../config/network.js';
import { checkL2Lab, defaultL2Underlay, validateFlood } from '../../lab/l2.js';

const CONCURRENT_PINGS = 8;

export const demoCommand = defineCommand({
  name: 'tulle demo',
  summary: 'Build a cluster of namespace hosts with pods, show that every pod reaches every other over the overlay, and show the kernel state',
  options: {
    name: { type: 'string', valueName: 'NAME', description: 'Lab name', default: 'demo' },
    nodes: { type: 'integer', description: 'Hosts', default: 3, min: 2, max: 16 },
    pods: { type: 'integer', description: 'Pods per host', default: 2, min: 1, max: MAX_PODS },
    underlay: { type: 'string', valueName: 'KIND', description: 'How hosts are connected', choices: UNDERLAYS, default: 'routed' },
    store: { type: 'string', valueName: 'KIND', description: 'Lease store', choices: STORE_KINDS, default: 'sqlite' },
    mode: { type: 'string', valueName: 'MODE', description: 'Pod attachment', choices: POD_MODES, default: 'bridge' },
    keep: { type: 'boolean', description: 'Keep the lab afterwards (remove it with: tulle lab down --name NAME)' },
    l2: { type: 'string', valueName: 'FLOOD', description: 'An L2 network (seeds 001/002) flooding by FLOOD; see tulle lab up --help', choices: FLOODS },
    config: { type: 'string', valueName: 'FILE', description: 'With --l2: the L2 network config (Mode "l2", the same Flood)' },
  },
  examples: ['npm run demo', 'tulle demo --keep', 'tulle demo --store etcd --mode routed --nodes 4', 'tulle demo --l2 unicast', 'tulle demo --l2 remote'],
  async run({ options, defaulted }) {
    const name = validateLabName(options.name, '--name');
    const pods = validatePodCount(options.pods, '--pods');
    const { store, mode } = options;
    let { nodes, underlay } = options;
    let configText: string | undefined;
    const flood = options.l2 === undefined ? undefined : validateFlood(options.l2);
    if (flood) {
      if (defaulted?.has('underlay')) underlay = defaultL2Underlay(flood);
      if (flood === 'remote' && defaulted?.has('nodes')) nodes = 2;
      configText = checkL2Lab(flood, nodes, underlay, options.config === undefined ? undefined : readFileSync(options.config, 'utf8'));
    } else if (options.config !== undefined) {
      throw new UsageError("tulle demo: --config goes with --l2 (the demo's L3 network is the lab default)");
    }
    const log = createLogger({ component: 'demo' }, { level: 'warn' });
    const out = (s = ''): boolean => process.stdout.write(s + '\n');
    out(
      `Building lab ${name}: ${nodes} hosts on a ${underlay} underlay, ${store} store, ${pods} pod(s) per host (${flood ? `l2 network, flood ${flood}` : `${mode} mode`})...`,
    );
    const started = Date.now();
    const state = await labUp({
      name,
      nodes,
      underlay,
      logger: log,
      onProgress: (p) => {
        if (p.phase === 'done') out(`  [${p.index}/${p.total}] ${p.step} (${p.ms} ms)`);
      },
      afterUnderlay: overlaySteps({ store, mode, pods, ...(configText ? { configText } : {}) }),
    });
    let failures: number;
    try {
      out(`Ready in ${((Date.now() - started) / 1000).toFixed(1)} s.`);
      out();
      out(hostTable(state));
      out();
      failures = await connectivityMatrix(state, out);
      const l2 = state.overlay?.l2;
      for (const h of state.hosts) {
        out();
        out(`== ${h.name} (${h.namespace}): underlay ${h.address}, pods ${h.subnet}${l2 ? ' (a slice of the one shared subnet)' : ''} ==`);
        for (const argv of l2
          ? await l2Commands(h.namespace, l2)
          : [
              ['ip', 'route'],
              ['ip', 'neigh', 'show', 'dev', 'flannel.1'],
              ['bridge', 'fdb', 'show', 'dev', 'flannel.1'],
              ['ip', '-d', 'link', 'show', 'flannel.1'],
            ]) {
          out(`$ ${argv.join(' ')}`);
          const r = await run(['ip', 'netns', 'exec', h.namespace, ...argv], { allowFailure: true });
          out((r.stdout || r.stderr).trimEnd());
        }
      }
    } finally {
      out();
      if (options.keep) {
        out(`The lab stays up. Look around:  tulle lab status --name ${name}`);
        out(`                                tulle lab exec ${name} h1-p1 -- ping ${state.pods.find((p) => p.host !== 'h1')?.address ?? '10.244.0.1'}`);
        out(`Remove it with:                 tulle lab down --name ${name}`);
      } else {
        const r = await labDown(name, { logger: log }).catch((err: unknown) => {
          out(`removing the lab failed: ${describeError(err)}; run: tulle lab down --name ${name}`);
          return undefined;
        });
        if (r) out(`Lab removed (${r.namespaces.length} namespaces, ${r.stopped.length} processes). Keep it next time with --keep.`);
      }
    }
    return failures === 0 ? 0 : 1;
  },
});

/**
 * The L2 state as seeds 001/002 print it: the device, its FDB (the all-zero flood entries, or the group, or the
 * remote, or per remote pod its entry), for Flood "none" the neighbours the device answers ARP from, and the
 * bridge's ports (what `brctl show` lists, with iproute2: `ip -br link show master BR`).
 */
async function l2Commands(namespace: string, l2: { vni: number; flood: string }): Promise<string[][]> {
  const dev = `vxlan${l2.vni}`;
  const [link] = await runJson<Array<{ master?: string }>>(['ip', '-n', namespace, '-j', 'link', 'show', dev]).catch(() => []);
  return [
    ['ip', '-d', 'link', 'show', dev],
    ['bridge', 'fdb', 'show', 'dev', dev],
    ...(l2.flood === 'none' ? [['ip', 'neigh', 'show', 'dev', dev]] : []),
    ...(link?.master ? [['ip', '-br', 'link', 'show', 'master', link.master]] : []),
  ];
}

function hostTable(state: LabState): string {
  const rows = [['HOST', 'UNDERLAY', 'POD SUBNET', 'PODS']];
  for (const h of state.hosts)
    rows.push([
      h.name,
      h.address,
      h.subnet ?? '-',
      state.pods
        .filter((p) => p.host === h.name)
        .map((p) => `${p.name}=${p.address}`)
        .join(' '),
    ]);
  return formatRows(rows);
}

/** Every pod pings every other pod once; prints the matrix and returns the number of failed pairs. */
async function connectivityMatrix(state: LabState, out: (s?: string) => void): Promise<number> {
  const pods = [...state.pods].sort((a, b) => a.name.localeCompare(b.name, 'en', { numeric: true }));
  const pairs = pods.flatMap((a) => pods.filter((b) => b !== a).map((b) => [a, b] as const));
  const ok = new Map<string, boolean>();
  let next = 0;
  const worker = async () => {
    while (next < pairs.length) {
      const [a, b] = pairs[next++]!;
      const r = await run(['ip', 'netns', 'exec', a.namespace, 'ping', '-c1', '-W2', '-n', b.address!], { allowFailure: true });
      ok.set(`${a.name} ${b.name}`, r.status === 0);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENT_PINGS }, worker));
  out('Connectivity: each pod pings every other pod once (ok = echo reply received)');
  const rows = [['from \\ to', ...pods.map((p) => p.name)]];
  for (const a of pods) rows.push([a.name, ...pods.map((b) => (a === b ? '-' : ok.get(`${a.name} ${b.name}`) ? 'ok' : 'FAIL'))]);
  out(formatRows(rows));
  const failed = [...ok.values()].filter((v) => !v).length;
  out(`${pairs.length - failed}/${pairs.length} pod pairs reachable${failed ? ` — ${failed} FAILED` : ''}`);
  return failed;
}

function formatRows(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n');
}
