/**
 * tulle-cni entry: a runtime executes the plugin once per container and command, with CNI_* in the environment
 * and the network configuration on stdin; the result (ADD) or an error object goes to stdout, and the exit code
 * is 0 or 1. Runtimes pay this start-up for every pod, so this module loads only the error and environment
 * checks; the commands (and with them the netlink client and its native binding) are imported only when a
 * command that needs them runs. The agent's CNI server (server.ts) answers through the same `answer`.
 */
import { LATEST_VERSION, SUPPORTED_VERSIONS, toErrorObject } from './errors.js';
import { readCommand } from './env.js';
import type { PodEndpointHooks } from './l2-endpoint.js';

/** What a plugin process would print on stdout, and its exit code. */
export interface Answer {
  exitCode: 0 | 1;
  stdout: string;
}

/**
 * One CNI call: `env` holds CNI_*, `readInput` yields stdin (not read for VERSION). `hooks`: the agent's store
 * side for L2 Flood "none" (the plugin process alone has none). Never throws.
 */
export async function answer(env: NodeJS.ProcessEnv, readInput: () => Promise<string>, hooks?: PodEndpointHooks): Promise<Answer> {
  let input = '';
  try {
    const command = readCommand(env);
    if (command === 'VERSION') {
      return { exitCode: 0, stdout: JSON.stringify({ cniVersion: LATEST_VERSION, supportedVersions: SUPPORTED_VERSIONS }) + '\n' };
    }
    input = await readInput();
    const { runCommand } = await import('./commands.js');
    const output = await runCommand(env, input, hooks);
    return { exitCode: 0, stdout: output !== undefined ? JSON.stringify(output) + '\n' : '' };
  } catch (err) {
    return { exitCode: 1, stdout: JSON.stringify(toErrorObject(err, requestedVersion(input))) + '\n' };
  }
}

export async function main(env: NodeJS.ProcessEnv, stdin: NodeJS.ReadableStream, stdout: NodeJS.WritableStream): Promise<number> {
  const a = await answer(env, () => readAll(stdin));
  if (a.stdout !== '') stdout.write(a.stdout);
  return a.exitCode;
}

async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  return Buffer.concat(chunks).toString('utf8');
}

/** The config's cniVersion when it is one we speak, so that even an early error answers in the caller's version. */
export function requestedVersion(input: string): string {
  try {
    const v = (JSON.parse(input) as { cniVersion?: unknown })?.cniVersion;
    return SUPPORTED_VERSIONS.includes(v as never) ? (v as string) : LATEST_VERSION;
  } catch {
    return LATEST_VERSION;
  }
}
