/** The store contract on the in-memory store (the SQLite code on an in-memory database), with a hand-moved clock. */
import { randomBytes } from 'node:crypto';
import { openRegistry } from '../../src/store/open.js';
import { ManualClock, registryContract } from './store-contract.js';

registryContract('memory', async () => {
  const name = `contract-${randomBytes(4).toString('hex')}`;
  const clock = new ManualClock();
  return {
    open: () => openRegistry(`memory:${name}`, { clock, pollIntervalMs: 10 }),
    ttlSeconds: 24 * 60 * 60,
    passTime: async (seconds) => clock.advance(seconds * 1000),
    clock,
  };
});
