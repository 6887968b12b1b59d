/**
 * The store contract on an SQLite file, with a hand-moved clock; plus what only the SQLite store does: several
 * processes sharing one file (50 real `node` processes acquiring at once), a watch that sees a change made by
 * another process, the change log trimmed under a watcher, and the on-disk schema.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openRegistry } from '../../src/store/open.js';
import { ManualClock, registryContract } from './store-contract.js';

function tempDb(t: { after(fn: () => unknown): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'tulle-sqlite-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return join(dir, 'tulle.db');
}

registryContract('sqlite', async (t) => {
  const path = tempDb(t);
  const clock = new ManualClock();
  return {
    open: () => openRegistry(`sqlite:${path}`, { clock }),
    ttlSeconds: 24 * 60 * 60,
    passTime: async (seconds) => clock.advance(seconds * 1000),
    clock,
  };
});
