/**
 * A CNI server on its own, without an agent (no store, no VTEP), for tests and the benchmark:
 *   ip netns exec HOST node dist/test/helpers/cni-server-main.js SOCKET [READ_TIMEOUT_MS] [HOOKS_FILE]
 * Prints "ready" on stdout once it listens; logs JSON lines on stderr; SIGTERM closes it as the agent would.
 * HOOKS_FILE: the server passes pod endpoint hooks (L2 Flood "none") that append each call to that file as a
 * JSON line instead of writing a store, and fail while `HOOKS_FILE.fail` names the call ("publish", "withdraw").
 */
import { appendFileSync, readFileSync } from 'node:fs';
import { createLogger } from '../../src/base/log.js';
import { describeError } from '../../src/base/errors.js';
import { CniServer } from '../../src/cni/server.js';
import type { PodEndpointHooks } from '../../src/cni/l2-endpoint.js';

const [path, timeout, hooksFile] = process.argv.slice(2);
const log = createLogger({ component: 'cni' }, { format: 'json' });

function recordingHooks(file: string): PodEndpointHooks {
  const call = async (op: string, pod: object): Promise<boolean> => {
    let failing = '';
    try {
      failing = readFileSync(`${file}.fail`, 'utf8').trim();
    } catch {
      // no failure asked for
    }
    if (failing === op) throw new Error(`the store is away (${op} refused by the test)`);
    appendFileSync(file, `${JSON.stringify({ op, ...pod })}\n`);
    return true;
  };
  return { publish: (pod) => call('publish', pod).then(() => undefined), withdraw: (pod) => call('withdraw', pod) };
}

try {
  const hooks = hooksFile ? recordingHooks(hooksFile) : undefined;
  const server = await CniServer.start({
    path: path!,
    log,
    ...(timeout && timeout !== '0' ? { readTimeoutMs: Number(timeout) } : {}),
    ...(hooks ? { endpointHooks: () => hooks } : {}),
  });
  process.once('SIGTERM', () => void server.close().then(() => process.exit(0)));
  process.stdout.write('ready\n');
} catch (err) {
  process.stderr.write(`cni-server: ${describeError(err)}\n`);
  process.exit(1);
}
