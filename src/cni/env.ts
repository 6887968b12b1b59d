/**
 * The CNI_* environment a runtime sets for each call, checked by the spec's rules. A variable that is missing or
 * malformed is CNI error 4 naming the variable; a CNI_NETNS path that does not exist is error 3 ("container
 * unknown": the runtime need not clean up). Loaded on every start: only node:fs.
 */
import { statfsSync } from 'node:fs';
import { CNI_CODES, CniError, invalidEnvironment } from './errors.js';

export const COMMANDS = ['ADD', 'DEL', 'CHECK', 'STATUS', 'GC', 'VERSION'] as const;
export type CniCommand = (typeof COMMANDS)[number];

export interface CniEnv {
  command: CniCommand;
  /** CNI_CONTAINERID (ADD, DEL, CHECK). */
  containerId: string;
  /** CNI_NETNS as given (ADD, CHECK; optional for DEL, which never needs it). */
  netns: string | undefined;
  /** CNI_IFNAME (ADD, DEL, CHECK). */
  ifName: string;
  /** CNI_ARGS as key/value pairs. */
  args: Map<string, string>;
  /** CNI_PATH directories. */
  path: string[];
}

/** The spec's container ID rule: alphanumeric first, then alphanumerics, '_', '.', '-'. */
const CONTAINER_ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
/** nsfs, the file system of /proc/PID/ns/net and of its bind mounts under /run/netns. */
const NSFS_MAGIC = 0x6e736673;

/** CNI_COMMAND alone: VERSION needs nothing else, and everything else needs it first. */
export function readCommand(env: NodeJS.ProcessEnv): CniCommand {
  const value = env.CNI_COMMAND;
  if (!COMMANDS.includes(value as CniCommand)) {
    throw invalidEnvironment('CNI_COMMAND', value, `is not a CNI command (must be one of ${COMMANDS.join(', ')})`);
  }
  return value as CniCommand;
}

/** Every variable the command needs, checked; the netns is checked to be a network namespace where it is used. */
export function readEnv(env: NodeJS.ProcessEnv): CniEnv {
  const command = readCommand(env);
  const perContainer = command === 'ADD' || command === 'DEL' || command === 'CHECK';
  const containerId = env.CNI_CONTAINERID ?? '';
  const ifName = env.CNI_IFNAME ?? '';
  let netns = env.CNI_NETNS || undefined;
  if (perContainer) {
    if (!CONTAINER_ID_RE.test(containerId)) {
      throw invalidEnvironment(
        'CNI_CONTAINERID',
        env.CNI_CONTAINERID,
        'is not a container ID (must start with a letter or digit, then letters, digits, "_", "." or "-")',
      );
    }
    checkIfName(ifName, env.CNI_IFNAME);
  }
  if (command === 'ADD' || command === 'CHECK') {
    netns = checkNetns(env.CNI_NETNS);
  }
  return { command, containerId, netns, ifName, args: parseArgs(env.CNI_ARGS), path: (env.CNI_PATH ?? '').split(':').filter(Boolean) };
}

/** Linux's rule for an interface name, as the spec repeats it: 1..15 bytes, not '.' or '..', no '/', ':' or whitespace. */
function checkIfName(ifName: string, raw: string | undefined): void {
  if (ifName === '' || ifName === '.' || ifName === '..' || Buffer.byteLength(ifName) > 15 || /[\s/:]/.test(ifName)) {
    throw invalidEnvironment('CNI_IFNAME', raw, 'is not an interface name (1-15 bytes, not "." or "..", no "/", ":" or whitespace)');
  }
}

/** CNI_NETNS must be an absolute path to a network namespace file (what the runtime made or /proc/PID/ns/net). */
export function checkNetns(value: string | undefined): string {
  if (!value) throw invalidEnvironment('CNI_NETNS', value, 'is required for this command (the path of the container network namespace)');
  if (!value.startsWith('/')) throw invalidEnvironment('CNI_NETNS', value, 'must be an absolute path like /run/netns/NAME or /proc/PID/ns/net');
  let type: number;
  try {
    type = statfsSync(value).type;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new CniError(CNI_CODES.UNKNOWN_CONTAINER, `CNI_NETNS: ${JSON.stringify(value)} does not exist (the container's network namespace is gone)`);
    }
    throw invalidEnvironment('CNI_NETNS', value, `cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  if (type !== NSFS_MAGIC) throw invalidEnvironment('CNI_NETNS', value, 'is not a network namespace file (not on nsfs)');
  return value;
}

/** CNI_ARGS "K1=V1;K2=V2" (malformed pairs are an error 4, as in the Go library). */
export function parseArgs(text: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  if (!text) return out;
  for (const pair of text.split(';')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    if (eq <= 0) throw invalidEnvironment('CNI_ARGS', text, `has a pair without "KEY=" (${JSON.stringify(pair)}; must be KEY=VALUE pairs separated by ";")`);
    out.set(pair.slice(0, eq), pair.slice(eq + 1));
  }
  return out;
}
