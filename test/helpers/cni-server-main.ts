/**
 * A CNI server on its own, without an agent (no store, no VTEP), for tests and the benchmark:
 *   ip netns exec HOST node dist/test/helpers/cni-server-main.js SOCKET [READ_TIMEOUT_MS]
 * Prints "ready" on stdout once it listens; logs JSON lines on stderr; SIGTERM closes it as the agent would.
 */
import { createLogger } from '../../src/base/log.js';
import { describeError } from '../../src/base/errors.js';
import { CniServer } from '../../src/cni/server.js';

const [path, timeout] = process.argv.slice(2);
const log = createLogger({ component: 'cni' }, { format: 'json' });
try {
  const server = await CniServer.start({ path: path!, log, ...(timeout ? { readTimeoutMs: Number(timeout) } : {}) });
  process.once('SIGTERM', () => void server.close().then(() => process.exit(0)));
  process.stdout.write('ready\n');
} catch (err) {
  process.stderr.write(`cni-server: ${describeError(err)}\n`);
  process.exit(1);
}
