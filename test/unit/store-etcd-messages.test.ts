/**
 * What a user reads while etcd is away: the store errors and the watch's log lines say it in plain words (no
 * "Breaker is open", no gRPC status names or "Resolution note"), against a real etcd that the test stops.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sleep } from '../../src/base/retry.js';
import { openRegistry } from '../../src/store/open.js';
import { captureLogger } from './store-contract.js';
import { startEtcd } from './store-etcd-server.js';

const JARGON = /breaker|circuit|GRPC|UNAVAILABLE|DEADLINE|Resolution note|Last error/i;

test('etcd stopped: every error and log line says "etcd ..." in plain words, first "connection refused", then "did not answer"', async (t) => {
  const etcd = await startEtcd(t);
  const { logger, lines } = captureLogger();
  const registry = await openRegistry(etcd.url, { logger, requestTimeoutMs: 1000 });
  t.after(() => registry.close());
  await registry.put('/plain/x', '1');
  const watch = registry.watch('/plain/', 0, { events: () => {}, error: () => {}, lost: () => {} });
  t.after(() => watch.close());
  await etcd.stop();

  const messages: string[] = [];
  // The client's breaker opens after a few failures: ask until its message has been seen (or a generous limit).
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline && !messages.some((m) => /waits a moment/.test(m))) {
    try {
      await registry.get('/plain/x');
    } catch (err) {
      messages.push((err as Error).message);
    }
    await sleep(100);
  }
  assert.ok(messages.length > 0);
  for (const m of messages) {
    assert.match(m, /^store unreachable: etcd:\/\/127\.0\.0\.1:\d+: get: (no etcd answers at this address \(connection refused|etcd did not answer)/, m);
    assert.doesNotMatch(m, JARGON, m);
  }
  assert.ok(
    messages.some((m) => /connection refused: is etcd running/.test(m)),
    messages.join('\n'),
  );
  assert.ok(
    messages.some((m) => /etcd did not answer the last attempts, so the client waits a moment before trying again/.test(m)),
    messages.join('\n'),
  );
  for (const l of lines) assert.doesNotMatch(l, JARGON, l);
});
