/**
 * tulle-cni entry: a runtime executes the plugin once per container and command, with CNI_* in the environment
 * and the network configuration on stdin; the result (ADD) or an error object goes to stdout, and the exit code
 * is 0 or 1. Runtimes pay this start-up for every pod, so this module loads only the error and environment
 * checks; the commands (and with them the netlink client and its native binding) are imported only when a
 * command that needs them runs.
 */
import { LATEST_VERSION, SUPPORTED_VERSIONS, toErrorObject } from './errors.js';
import { readCommand } from './env.js';

export async function main(env: NodeJS.ProcessEnv, stdin: NodeJS.ReadableStream, stdout: NodeJS.WritableStream): Promise<number> {
  let input = '';
  try {
    const command = readCommand(env);
    if (command === 'VERSION') {
      stdout.write(JSON.stringify({ cniVersion: LATEST_VERSION, supportedVersions: SUPPORTED_VERSIONS }) + '\n');
      return 0;
    }
    input = await readAll(stdin);
    const { runCommand } = await import('./commands.js');
    const output = await runCommand(env, input);
    if (output !== undefined) stdout.write(JSON.stringify(output) + '\n');
    return 0;
  } catch (err) {
    stdout.write(JSON.stringify(toErrorObject(err, requestedVersion(input))) + '\n');
    return 1;
  }
}

async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}

/** The config's cniVersion when it is one we speak, so that even an early error answers in the caller's version. */
function requestedVersion(input: string): string {
  try {
    const v = (JSON.parse(input) as { cniVersion?: unknown })?.cniVersion;
    return SUPPORTED_VERSIONS.includes(v as never) ? (v as string) : LATEST_VERSION;
  } catch {
    return LATEST_VERSION;
  }
}
