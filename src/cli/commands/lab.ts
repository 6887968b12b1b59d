/**
 * `tulle lab up|down|list|exec`: the CLI face of src/lab. Output: results on stdout (a table, or JSON with
 * --json), progress and logs on stderr (one updating line on a terminal, log lines otherwise).
 */
import { readFileSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { errnoOrMessage, InvalidValueError, TulleError, UsageError } from '../../base/errors.js';
import { createLogger, type Logger } from '../../base/log.js';
import { spawnIn } from '../../netns/netns.js';
import { FLOODS, parseNetworkConfig } from '../../config/network.js';
import { checkL2Lab, defaultL2Underlay, l2HostStatus, validateFlood, type LabL2 } from '../../lab/l2.js';
import {
  DEFAULT_HOSTS,
  DEFAULT_LAB_NAME,
  DEFAULT_UNDERLAY,
  labDown,
  labTopology,
  labUp,
  listLabs,
  MAX_HOSTS,
  resolveLabTarget,
  UNDERLAYS,
  validateLabName,
  validatePodCount,
  overlaySteps,
  labStatus,
  loadLabState,
  STORE_KINDS,
  POD_MODES,
  MAX_PODS,
  DEFAULT_NETWORK_CONFIG,
  type LabProgress,
  type LabState,
  type LabSummary,
} from '../../lab/index.js';
import { defineCommand, type CommandGroup, type OptionSpec } from '../spec.js';
import { labTraceCommand } from './trace.js';

const nameOption = {
  type: 'string',
  description: 'Lab name (lower-case letters and digits)',
  valueName: 'NAME',
  default: DEFAULT_LAB_NAME,
  env: 'TULLE_LAB_NAME',
} as const satisfies OptionSpec;

const up = defineCommand({
  name: 'tulle lab up',
  summary: 'Build a lab: host namespaces on a switched or routed underlay, a store, one tulle agent per host, and pods',
  details: [
    'Namespaces are named tulle-NAME-h1..hN (hosts), tulle-NAME-sw (switch; sw1/sw2 and rt for the routed underlay),',
    'tulle-NAME-hI-pJ (pods). Every host has eth0 on the underlay (192.0.2.0/24; routed: even hosts on 198.51.100.0/24',
    "behind the router). The store is an SQLite file in the lab directory, or an etcd server in h1's namespace.",
    'Pods are attached by tulle-cni exactly as a container runtime calls it.',
    'State and files live in $TULLE_LAB_DIR/NAME (default /run/tulle/labs/NAME). Nothing is added to the root namespace.',
  ].join('\n'),
  options: {
    name: nameOption,
    nodes: { type: 'integer', description: 'Number of hosts', default: DEFAULT_HOSTS, min: 1, max: MAX_HOSTS },
    pods: { type: 'integer', description: 'Pods per host', default: 0, min: 0, max: MAX_PODS },
    underlay: { type: 'string', description: 'How hosts are connected', choices: UNDERLAYS, default: DEFAULT_UNDERLAY, valueName: 'KIND' },
    store: {
      type: 'string',
      description: 'Where leases live: an SQLite file, or a real etcd server in h1',
      choices: STORE_KINDS,
      default: 'sqlite',
      valueName: 'KIND',
    },
    config: { type: 'string', description: `Network config (flannel's net-conf.json); default ${DEFAULT_NETWORK_CONFIG}`, valueName: 'FILE' },
    mode: {
      type: 'string',
      description: 'Pod attachment: a cni0 bridge (flannel) or routed /32 (Calico)',
      choices: POD_MODES,
      default: 'bridge',
      valueName: 'MODE',
    },
    bare: { type: 'boolean', description: 'Underlay only: no store, no agents, no pods' },
    l2: {
      type: 'string',
      description:
        'An L2 network (seeds 001/002) flooding by FLOOD, under the store prefix /tulle.io/l2; default underlay: switch for multicast and remote, routed otherwise; remote needs --nodes 2',
      choices: FLOODS,
      valueName: 'FLOOD',
    },
    json: { type: 'boolean', description: 'Print the topology as JSON' },
  },
  examples: [
    'tulle lab up',
    'tulle lab up --name big --nodes 5 --underlay routed --pods 2 --json',
    'tulle lab up --store etcd --mode routed',
    'tulle lab up --bare --nodes 2',
  ],
  async run({ options, defaulted }) {
    const name = validateLabName(options.name, '--name');
    const pods = validatePodCount(options.pods, '--pods');
    if (options.bare && (pods > 0 || options.config !== undefined))
      throw new UsageError(`tulle lab up: --bare builds no overlay, so ${pods > 0 ? '--pods' : '--config'} cannot go with it`);
    let configText = options.config === undefined ? undefined : readConfigFile(options.config);
    let { underlay, nodes } = options;
    // An L2 config given without --l2 gets the same checks, with its own flood mode.
    const configFlood = configText === undefined ? undefined : parseNetworkConfig(configText).Backend;
    const l2Option = options.l2 ?? (configFlood?.mode === 'l2' ? configFlood.flood : undefined);
    if (l2Option !== undefined) {
      if (options.bare) throw new UsageError('tulle lab up: --bare builds no overlay, so --l2 cannot go with it');
      const flood = validateFlood(l2Option);
      if (defaulted?.has('underlay')) underlay = defaultL2Underlay(flood);
      if (flood === 'remote' && defaulted?.has('nodes')) nodes = 2;
      configText = checkL2Lab(flood, nodes, underlay, configText);
    }
    const log = createLogger({ component: 'lab' });
    const progress = progressReporter(log);
    const abort = new AbortController();
    const onSignal = (signal: NodeJS.Signals): void =>
      abort.abort(new TulleError('TLE_INTERRUPTED', `lab up interrupted by ${signal}; what was built has been removed`, { exitCode: 130 }));
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    const started = Date.now();
    try {
      const afterUnderlay = options.bare ? [] : overlaySteps({ store: options.store, mode: options.mode, pods, ...(configText ? { configText } : {}) });
      const state = await labUp({ name, nodes, underlay, logger: log, onProgress: progress, signal: abort.signal, afterUnderlay });
      progress.finish();
      if (options.json) process.stdout.write(JSON.stringify(labTopology(state), null, 2) + '\n');
      else process.stdout.write(formatLabSummary(state, Date.now() - started));
      return 0;
    } finally {
      progress.finish();
      process.removeListener('SIGINT', onSignal);
      process.removeListener('SIGTERM', onSignal);
    }
  },
});

/** Read and validate --config FILE before anything is built, so a bad config never leaves a half-made lab. */
function readConfigFile(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new InvalidValueError('--config', file, `cannot be read (${errnoOrMessage(err)})`);
  }
  parseNetworkConfig(text);
  return text;
}

const down = defineCommand({
  name: 'tulle lab down',
  summary: 'Remove a lab: its processes, namespaces and files (also after a crash)',
  options: {
    name: nameOption,
    grace: { type: 'integer', description: 'Milliseconds processes get between SIGTERM and SIGKILL', default: 3000, min: 0, max: 600_000, valueName: 'MS' },
  },
  examples: ['tulle lab down', 'tulle lab down --name big'],
  async run({ options }) {
    const name = validateLabName(options.name, '--name');
    const result = await labDown(name, { graceMs: options.grace, logger: createLogger({ component: 'lab' }) });
    if (!result.existed) {
      process.stdout.write(`lab ${name} does not exist; nothing to remove\n`);
      return 0;
    }
    process.stdout.write(
      `lab ${name} removed: ${plural(result.namespaces.length, 'namespace')}, ${plural(result.stopped.length, 'process', 'processes')} stopped\n`,
    );
    return 0;
  },
});

const list = defineCommand({
  name: 'tulle lab list',
  summary: 'List labs (from their state files and from leftover namespaces)',
  options: { json: { type: 'boolean', description: 'Print the list as JSON' } },
  async run({ options }) {
    const labs = listLabs();
    if (options.json) process.stdout.write(JSON.stringify(labs, null, 2) + '\n');
    else process.stdout.write(formatLabList(labs));
    return 0;
  },
});

const exec = defineCommand({
  name: 'tulle lab exec',
  summary: 'Run a command inside a host, router or switch namespace of a lab',
  details: 'The command runs with `ip netns exec`, with this terminal as its stdin/stdout/stderr; its exit code is passed through.',
  positionals: [
    { name: 'name', description: 'The lab', required: true },
    { name: 'target', description: 'h1..hN, rt or sw/sw1/sw2', required: true },
    { name: 'command', description: 'The command and its arguments (after --)', required: true, rest: true },
  ],
  examples: ['tulle lab exec demo h1 -- ip addr', 'tulle lab exec demo h1 -- ping -c1 192.0.2.12'],
  async run({ positionals }) {
    const name = validateLabName(positionals.name, 'NAME');
    const namespace = resolveLabTarget(name, positionals.target);
    return runInherited(namespace, positionals.command);
  },
});

const status = defineCommand({
  name: 'tulle lab status',
  summary: 'Per host: lease, VTEP, peers, and whether the kernel matches what the leases ask for',
  details:
    "Reads the leases from the lab's store and each host's kernel over netlink, plans as the agent does, and lists any entry that is missing, wrong or stale.",
  options: { name: nameOption, json: { type: 'boolean', description: 'Print the status as JSON' } },
  examples: ['tulle lab status', 'tulle lab status --name big --json'],
  async run({ options }) {
    const name = validateLabName(options.name, '--name');
    const state = loadLabState(name);
    if (state.overlay?.l2) return l2Status(state, state.overlay.l2, Boolean(options.json));
    const hosts = await labStatus(state);
    if (options.json) {
      process.stdout.write(JSON.stringify(hosts, null, 2) + '\n');
    } else {
      const rows = hosts.map((h) => [
        h.host,
        h.subnet ?? '-',
        h.vtep ? `${h.vtep.name} ${h.vtep.mac ?? '?'} mtu ${h.vtep.mtu}${h.vtep.up ? '' : ' DOWN'}` : '-',
        `${h.programmed}/${h.peers}`,
        h.inSync ? 'yes' : 'NO',
        h.agent ? `${h.agent.pid}${h.agent.running ? '' : ' (exited)'}` : '-',
      ]);
      const lines = table(['HOST', 'SUBNET', 'VTEP', 'PEERS', 'IN SYNC', 'AGENT'], rows);
      for (const h of hosts.filter((x) => x.pending.length)) lines.push('', `${h.host} would need:`, ...h.pending.map((p) => `  ${p}`));
      process.stdout.write(lines.join('\n') + '\n');
    }
    return hosts.every((h) => h.inSync) ? 0 : 1;
  },
});

/** An L2 lab: per host the device, its bridge and what it floods to, against what the other hosts ask for. */
async function l2Status(state: LabState, l2: LabL2, json: boolean): Promise<number> {
  const withAgent = state.hosts.filter((h) => state.processes.some((p) => p.role === 'agent' && p.host === h.name));
  const hosts = await Promise.all(withAgent.map((h) => l2HostStatus(h, withAgent, l2)));
  if (json) {
    process.stdout.write(JSON.stringify(hosts, null, 2) + '\n');
  } else {
    const subnet = (n: string) => state.hosts.find((h) => h.name === n)?.subnet ?? '-';
    const rows = hosts.map((h) => [h.host, subnet(h.host), h.device ?? '-', h.bridge ?? '-', h.flood, h.lacking ? `NO (${h.lacking})` : 'yes']);
    process.stdout.write(table(['HOST', 'SLICE', 'DEVICE', 'BRIDGE', `FLOOD (${l2.flood})`, 'IN SYNC'], rows).join('\n') + '\n');
  }
  return hosts.every((h) => !h.lacking) ? 0 : 1;
}

export const labGroup: CommandGroup = {
  name: 'lab',
  summary: 'Build, inspect and tear down clusters made of network namespaces',
  subcommands: [up, down, status, list, exec, labTraceCommand],
};

/** Run `ip netns exec NS CMD...` attached to our terminal; resolve with its exit code (128+N for signal N). */
function runInherited(namespace: string, argv: string[]): Promise<number> {
  // The terminal sends Ctrl-C to the child too; let the child decide what it means and report its exit.
  const ignore = (): void => {};
  process.on('SIGINT', ignore);
  return new Promise<number>((resolve, reject) => {
    const child = spawnIn(namespace, argv, { stdio: 'inherit' });
    child.on('error', reject);
    child.on('exit', (code, signal) => resolve(code ?? 128 + (signal ? (osConstants.signals[signal] ?? 0) : 0)));
  }).finally(() => process.removeListener('SIGINT', ignore));
}

interface ProgressReporter {
  (p: LabProgress): void;
  finish(): void;
}

/** Steps done / to do: one rewritten line on a terminal, a log line per finished step otherwise. */
function progressReporter(log: Logger): ProgressReporter {
  const tty = process.stderr.isTTY === true;
  let shown = false;
  const report = (p: LabProgress): void => {
    if (tty) {
      const doneCount = p.phase === 'done' ? p.index : p.index - 1;
      process.stderr.write(`\r\x1b[2K[${doneCount}/${p.total}] ${p.phase === 'start' ? p.step + ' ...' : p.step + ' done'}`);
      shown = true;
    } else if (p.phase === 'done') {
      log.info(`step ${p.index}/${p.total} done: ${p.step}`, { lab: p.lab, ms: p.ms });
    }
  };
  const finish = (): void => {
    if (shown) process.stderr.write('\r\x1b[2K');
    shown = false;
  };
  return Object.assign(report, { finish });
}

/** The human summary after `lab up`. */
export function formatLabSummary(state: LabState, ms: number): string {
  const lines = [`lab ${state.name} is up: ${plural(state.hosts.length, 'host')} on a ${state.underlay} underlay (${(ms / 1000).toFixed(2)} s)`, ''];
  const rows = state.hosts.map((h) => [h.name, h.namespace, h.interface, `${h.address}/${h.prefixLength}`, h.gateway ?? '-', h.subnet ?? '-']);
  lines.push(...table(['HOST', 'NAMESPACE', 'INTERFACE', 'ADDRESS', 'GATEWAY', 'SUBNET'], rows));
  if (state.router) {
    lines.push('', `router ${state.router.namespace}: ${state.router.interfaces.map((i) => `${i.interface} ${i.address}/${i.prefixLength}`).join(', ')}`);
  }
  lines.push(`switches: ${state.switches.map((s) => `${s.namespace} (${state.segments.find((g) => g.id === s.segment)?.cidr})`).join(', ')}`);
  if (state.overlay)
    lines.push(`store: ${state.overlay.store}; agents: ${state.processes.filter((p) => p.role === 'agent').length}; pod mode: ${state.overlay.mode}`);
  if (state.pods.length) {
    lines.push('');
    const pods = [...state.pods].sort((a, b) => a.name.localeCompare(b.name, 'en', { numeric: true }));
    lines.push(
      ...table(
        ['POD', 'HOST', 'NAMESPACE', 'ADDRESS'],
        pods.map((p) => [p.name, p.host, p.namespace, p.address ?? '-']),
      ),
    );
  }
  lines.push(
    `files: ${state.dir}`,
    '',
    `run a command in a host: tulle lab exec ${state.name} h1 -- ip addr`,
    `remove the lab:          tulle lab down --name ${state.name}`,
  );
  return lines.join('\n') + '\n';
}

function formatLabList(labs: LabSummary[]): string {
  if (labs.length === 0) return 'no labs\n';
  const rows = labs.map((l) => [l.name, l.status, l.underlay ?? '-', String(l.hosts.length), String(l.namespaces.length), String(l.processes), l.dir ?? '-']);
  return table(['NAME', 'STATUS', 'UNDERLAY', 'HOSTS', 'NAMESPACES', 'PROCESSES', 'DIR'], rows).join('\n') + '\n';
}

function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [header, ...rows].map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  '));
}

function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}
