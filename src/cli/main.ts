/**
 * `tulle` command dispatcher. Command modules are imported only when their command runs, so `tulle --help`
 * and short commands start fast. To add a command: one entry in COMMANDS, one module in commands/.
 */
import { readFileSync } from 'node:fs';
import { describeError, TulleError } from '../base/errors.js';
import { formatCommandHelp, formatGroupHelp, parseCommand, type CommandGroup, type CommandSpec } from './spec.js';

interface CommandEntry {
  name: string;
  summary: string;
  load(): Promise<CommandSpec | CommandGroup>;
}

const COMMANDS: readonly CommandEntry[] = [
  {
    name: 'demo',
    summary: 'A cluster of namespace hosts with pods that talk over the overlay (npm run demo)',
    load: async () => (await import('./commands/demo.js')).demoCommand,
  },
  { name: 'lab', summary: 'Build, inspect and tear down clusters made of network namespaces', load: async () => (await import('./commands/lab.js')).labGroup },
  {
    name: 'config',
    summary: "Write or read the network config (flannel's net-conf.json) in the store",
    load: async () => (await import('./commands/config.js')).configGroup,
  },
  { name: 'leases', summary: 'List the subnet leases in the store', load: async () => (await import('./commands/leases.js')).leasesCommand },
  {
    name: 'agent',
    summary: 'Run the per-host overlay agent (lease, VTEP, routes, neighbours, FDB; kept true)',
    load: async () => (await import('./commands/agent.js')).agentCommand,
  },
  {
    name: 'status',
    summary: "This host's lease, VTEP and peers, whether the kernel matches the leases, and whether the agent runs",
    load: async () => (await import('./commands/status.js')).statusCommand,
  },
  {
    name: 'trace',
    summary: 'Walk a packet from a pod to DST hop by hop: every route, neighbour and FDB entry, the outer header; --live captures it',
    load: async () => (await import('./commands/trace.js')).traceCommand,
  },
  {
    name: 'install',
    summary: 'Install the CNI plugin, a conflist, the agent settings and a systemd unit on this host',
    load: async () => (await import('./commands/install.js')).installCommand,
  },
  { name: 'uninstall', summary: 'Remove the files tulle install wrote', load: async () => (await import('./commands/install.js')).uninstallCommand },
  {
    name: 'decode',
    summary: 'Decode a pcap/pcapng capture: VXLAN and inner frames, tcpdump-like or JSON',
    load: async () => (await import('./commands/decode.js')).decodeCommand,
  },
];

export const PROGRAM = 'tulle';

function version(): string {
  const pkg: unknown = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8'));
  return typeof pkg === 'object' && pkg !== null && 'version' in pkg ? String(pkg.version) : 'unknown';
}

function topHelp(): string {
  const lines = [`Usage: ${PROGRAM} <command> [options]`, '', 'tulle: a VXLAN overlay network for containers.', '', 'Commands:'];
  for (const c of COMMANDS) lines.push(`  ${c.name.padEnd(12)} ${c.summary}`);
  lines.push('', `Run '${PROGRAM} <command> --help' for a command's options. '${PROGRAM} --version' prints the version.`);
  return lines.join('\n') + '\n';
}

function isGroup(x: CommandSpec | CommandGroup): x is CommandGroup {
  return 'subcommands' in x;
}

/** Run the CLI; resolves to the process exit code. Never throws. */
export async function main(argv: readonly string[]): Promise<number> {
  try {
    const [first, ...rest] = argv;
    if (first === undefined || first === '-h' || first === '--help' || first === 'help') {
      process.stdout.write(topHelp());
      return first === undefined ? 2 : 0;
    }
    if (first === '--version' || first === 'version') {
      process.stdout.write(`${PROGRAM} ${version()}\n`);
      return 0;
    }
    const entry = COMMANDS.find((c) => c.name === first);
    if (!entry) {
      process.stderr.write(`${PROGRAM}: unknown command ${JSON.stringify(first)}; commands: ${COMMANDS.map((c) => c.name).join(', ')}\n`);
      return 2;
    }
    const loaded = await entry.load();
    let spec: CommandSpec;
    let args: readonly string[] = rest;
    if (isGroup(loaded)) {
      const [sub, ...subRest] = rest;
      if (sub === undefined || sub === '-h' || sub === '--help') {
        process.stdout.write(formatGroupHelp(PROGRAM, loaded));
        return sub === undefined ? 2 : 0;
      }
      const found = loaded.subcommands.find((c) => c.name.split(' ').pop() === sub);
      if (!found) {
        const names = loaded.subcommands.map((c) => c.name.split(' ').pop()).join(', ');
        process.stderr.write(`${PROGRAM} ${loaded.name}: unknown command ${JSON.stringify(sub)}; commands: ${names}\n`);
        return 2;
      }
      spec = found;
      args = subRest;
    } else {
      spec = loaded;
    }
    const parsed = parseCommand(spec, args);
    if (parsed.options.help) {
      process.stdout.write(formatCommandHelp(spec));
      return 0;
    }
    return (await spec.run(parsed)) ?? 0;
  } catch (err) {
    return reportError(err);
  }
}

/** One clear line on stderr; a stack trace only for bugs, and only with TULLE_DEBUG=1. */
export function reportError(err: unknown): number {
  if (err instanceof TulleError) {
    process.stderr.write(`${PROGRAM}: ${describeError(err)}\n`);
    return err.exitCode;
  }
  process.stderr.write(`${PROGRAM}: internal error: ${describeError(err)}\n`);
  if (process.env.TULLE_DEBUG && err instanceof Error) process.stderr.write(`${err.stack}\n`);
  return 70; // EX_SOFTWARE
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.exitCode = await main(process.argv.slice(2));
}
