/**
 * The store contract on a real etcd server (started on 127.0.0.1 by the test, see store-etcd-server.ts), where
 * time is real: leases live a few seconds. Each test starts from an empty key space.
 */
import { after, before } from 'node:test';
import { sleep } from '../../src/base/retry.js';
import { systemClock } from '../../src/store/registry.js';
import { openRegistry } from '../../src/store/open.js';
import { registryContract } from './store-contract.js';
import { startEtcd, type EtcdServer } from './store-etcd-server.js';

const cleanups: Array<() => unknown> = [];
let server: EtcdServer;
before(async () => {
  server = await startEtcd({ after: (fn) => cleanups.push(fn) });
});
after(async () => {
  for (const fn of cleanups) await fn();
});

registryContract('etcd', async () => {
  await server.etcdctl(['del', '--prefix', '/']);
  return {
    open: () => openRegistry(server.url),
    ttlSeconds: 3,
    passTime: (seconds) => sleep(seconds * 1000),
    clock: systemClock,
  };
});
