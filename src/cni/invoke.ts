/**
 * Calling CNI plugins exactly as a container runtime does: a fresh process per call, CNI_* in its environment,
 * the configuration on stdin, JSON back on stdout, success or failure in the exit code. `cniInvoke` runs one
 * plugin (tulle-cni by default); `runConflist` drives a whole configuration list the way libcni does (ADD in
 * order, each plugin getting the previous one's result as `prevResult`; DEL in reverse order with the cached ADD
 * result; CHECK in order with it). The plugin process runs in the host's network namespace: this process's, or
 * a named one through `ip netns exec` (a lab host, a test's namespace).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TulleError } from '../base/errors.js';
import { run } from '../base/exec.js';
import type { CniErrorObject } from './errors.js';
import type { CniCommand } from './env.js';

/** bin/tulle-cni of this checkout (this file runs from dist/src/cni/). */
export const TULLE_CNI_BIN = fileURLToPath(new URL('../../../bin/tulle-cni', import.meta.url));
/**
 * The compiled shim (native/tulle_cni_shim.c, built with the native module): forwards to the agent's CNI socket
 * ($TULLE_CNI_SOCKET, default /run/tulle/cni.sock) and runs TULLE_CNI_BIN itself when no agent answers.
 */
export const TULLE_CNI_SHIM = fileURLToPath(new URL('../../../build/Release/tulle-cni-shim', import.meta.url));

export interface CniInvocation {
  command: CniCommand;
  containerId?: string;
  /** CNI_NETNS: the container namespace's path, e.g. /run/netns/NAME. */
  netns?: string;
  ifName?: string;
  /** The plugin configuration (serialised as JSON), or raw text to send as is (for malformed-input tests). */
  config: Record<string, unknown> | string;
  /** CNI_ARGS, "K=V;K2=V2". */
  args?: string;
  /** CNI_PATH directories. */
  path?: string[];
  /** The executable; default bin/tulle-cni. */
  plugin?: string;
  /** Run the plugin inside this named network namespace (the "host"), via `ip netns exec`. */
  hostNetns?: string;
  /** Extra environment for the plugin (e.g. TULLE_LOG_LEVEL). */
  env?: Record<string, string>;
  timeoutMs?: number;
}

export interface CniOutcome {
  ok: boolean;
  exitCode: number | null;
  stdout: string;
  stderr: string;
  /** The parsed stdout of a successful call that printed something (ADD, VERSION). */
  result?: Record<string, unknown>;
  /** The parsed error object of a failed call. */
  error?: CniErrorObject;
}

/** A plugin (or a plugin in a list) failed; `outcome` holds its exit code, output and error object. */
export class CniInvocationError extends TulleError {
  constructor(
    readonly plugin: string,
    readonly command: string,
    readonly outcome: CniOutcome,
  ) {
    const e = outcome.error;
    const why = e
      ? `CNI error ${e.code}: ${e.msg}${e.details ? ` (${e.details})` : ''}`
      : `exit ${outcome.exitCode}: ${(outcome.stderr || outcome.stdout).trim().slice(0, 500)}`;
    super('TLE_CNI_INVOKE', `${plugin} ${command}: ${why}`);
  }
}

/** Run one plugin once. Never throws for the plugin's own failure: see `ok`, `error`, `exitCode`. */
export async function cniInvoke(inv: CniInvocation): Promise<CniOutcome> {
  const plugin = inv.plugin ?? TULLE_CNI_BIN;
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', CNI_COMMAND: inv.command, ...inv.env };
  if (inv.containerId !== undefined) env.CNI_CONTAINERID = inv.containerId;
  if (inv.netns !== undefined) env.CNI_NETNS = inv.netns;
  if (inv.ifName !== undefined) env.CNI_IFNAME = inv.ifName;
  if (inv.args !== undefined) env.CNI_ARGS = inv.args;
  if (inv.path !== undefined) env.CNI_PATH = inv.path.join(':');
  const argv = inv.hostNetns !== undefined ? ['ip', 'netns', 'exec', inv.hostNetns, plugin] : [plugin];
  const input = typeof inv.config === 'string' ? inv.config : JSON.stringify(inv.config);
  const r = await run(argv, { input, env, allowFailure: true, timeoutMs: inv.timeoutMs ?? 60_000 });
  const outcome: CniOutcome = { ok: r.status === 0, exitCode: r.status, stdout: r.stdout, stderr: r.stderr };
  const text = r.stdout.trim();
  if (text !== '') {
    try {
      const parsed = JSON.parse(text) as Record<string, unknown>;
      if (outcome.ok) outcome.result = parsed;
      else if (typeof parsed.code === 'number') outcome.error = parsed as unknown as CniErrorObject;
    } catch {
      // not JSON: left in stdout for the caller to show
    }
  }
  return outcome;
}

/** `cniInvoke` that throws CniInvocationError on failure and returns the parsed output (undefined when empty). */
export async function cniInvokeOk(inv: CniInvocation): Promise<Record<string, unknown> | undefined> {
  const outcome = await cniInvoke(inv);
  if (!outcome.ok) throw new CniInvocationError(inv.plugin ?? 'tulle-cni', inv.command, outcome);
  return outcome.result;
}

/** A network configuration list (a .conflist file). */
export interface Conflist {
  cniVersion: string;
  name: string;
  disableCheck?: boolean;
  plugins: Array<Record<string, unknown> & { type: string }>;
}

export interface ChainOptions {
  containerId: string;
  netns?: string;
  ifName: string;
  /** CNI_PATH: where plugin executables are looked up by `type`. */
  path: string[];
  /** type -> executable, ahead of the CNI_PATH search (e.g. {tulle: TULLE_CNI_BIN}). */
  plugins?: Record<string, string>;
  hostNetns?: string;
  args?: string;
  /** DEL and CHECK: the cached result of the ADD. */
  prevResult?: Record<string, unknown>;
  /** Capability arguments (e.g. {portMappings: [...]}): each plugin gets, as `runtimeConfig`, those it declares in `capabilities`. */
  capabilityArgs?: Record<string, unknown>;
  /** GC: the attachments still in use. */
  validAttachments?: Array<{ containerID: string; ifname: string }>;
  timeoutMs?: number;
  /** Extra environment for every plugin of the list (e.g. TULLE_CNI_SOCKET for tulle's shim). */
  env?: Record<string, string>;
}

/**
 * Run a configuration list for one attachment, as libcni does. ADD returns the last plugin's result (which the
 * caller caches for DEL and CHECK); the others return undefined. The first failing plugin stops the list and
 * throws CniInvocationError (libcni leaves the DEL after a failed ADD to the runtime, as this does to the caller).
 */
export async function runConflist(
  list: Conflist,
  command: 'ADD' | 'DEL' | 'CHECK' | 'STATUS' | 'GC',
  o: ChainOptions,
): Promise<Record<string, unknown> | undefined> {
  if (command === 'CHECK' && list.disableCheck) return undefined;
  const order = command === 'DEL' ? [...list.plugins].reverse() : list.plugins;
  let prev: Record<string, unknown> | undefined = command === 'ADD' ? undefined : o.prevResult;
  for (const plugin of order) {
    const executable = findPlugin(plugin.type, o);
    const { capabilities, ...rest } = plugin;
    const config: Record<string, unknown> = { ...rest, cniVersion: list.cniVersion, name: list.name };
    const runtimeConfig = deriveRuntimeConfig(capabilities, o.capabilityArgs);
    if (runtimeConfig) config.runtimeConfig = runtimeConfig;
    if (prev !== undefined && command !== 'STATUS' && command !== 'GC') config.prevResult = prev;
    if (command === 'GC') config['cni.dev/valid-attachments'] = o.validAttachments ?? [];
    const perContainer = command === 'ADD' || command === 'DEL' || command === 'CHECK';
    const outcome = await cniInvoke({
      command,
      config,
      plugin: executable,
      path: o.path,
      hostNetns: o.hostNetns,
      timeoutMs: o.timeoutMs,
      env: o.env,
      ...(perContainer ? { containerId: o.containerId, ifName: o.ifName, netns: o.netns, args: o.args } : {}),
    });
    if (!outcome.ok) throw new CniInvocationError(plugin.type, command, outcome);
    if (command === 'ADD') prev = outcome.result;
  }
  return command === 'ADD' ? prev : undefined;
}

/** The spec's runtimeConfig: the capability arguments whose capability the plugin declares as true. */
function deriveRuntimeConfig(capabilities: unknown, args: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
  if (!args || capabilities === null || typeof capabilities !== 'object') return undefined;
  const out: Record<string, unknown> = {};
  for (const [name, enabled] of Object.entries(capabilities)) if (enabled === true && args[name] !== undefined) out[name] = args[name];
  return Object.keys(out).length > 0 ? out : undefined;
}

/** The executable for `type`: the explicit mapping first, then the first CNI_PATH directory that has it. */
export function findPlugin(type: string, o: Pick<ChainOptions, 'path' | 'plugins'>): string {
  const mapped = o.plugins?.[type];
  if (mapped !== undefined) return mapped;
  if (!/^[A-Za-z0-9_.-]+$/.test(type)) throw new TulleError('TLE_CNI_INVOKE', `plugin type ${JSON.stringify(type)} is not a file name`);
  for (const dir of o.path) {
    const candidate = join(dir, type);
    if (existsSync(candidate)) return candidate;
  }
  throw new TulleError('TLE_CNI_INVOKE', `plugin ${JSON.stringify(type)} not found in CNI_PATH ${o.path.join(':')}`);
}
