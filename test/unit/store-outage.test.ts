/** StoreOutage: an outage of any length costs a handful of log lines, and the state follows the store. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StoreOutage } from '../../src/store/outage.js';

function recorder() {
  const lines: string[] = [];
  const at = (level: string) => (msg: string) => void lines.push(`${level} ${msg}`);
  return { lines, logger: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'), child: () => ({}) } as never };
}

test('one line when the store goes, one reminder a minute at most, one when it is back; changes reported both ways', () => {
  let now = 0;
  const changes: boolean[] = [];
  const { lines, logger } = recorder();
  const outage = new StoreOutage(logger, 'etcd://192.0.2.10:2379', { now: () => now, onChange: (up) => changes.push(up) });
  const err = new Error('connection refused');
  assert.equal(outage.up, true);
  // Ten minutes of failures, one every 100 ms from every retry loop of the agent.
  for (now = 0; now <= 600_000; now += 100) outage.failed('watch', err);
  assert.equal(outage.up, false);
  assert.equal(lines.filter((l) => l.startsWith('warn store unreachable;')).length, 1);
  assert.equal(lines.filter((l) => l.startsWith('warn store still unreachable')).length, 10, lines.join('\n'));
  outage.succeeded();
  outage.succeeded();
  assert.equal(outage.up, true);
  assert.deepEqual(
    lines.filter((l) => l.startsWith('info')),
    ['info store reachable again'],
  );
  assert.deepEqual(changes, [false, true]);
  assert.equal(lines.length, 12);
});
