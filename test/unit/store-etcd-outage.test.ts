/**
 * etcd stopped for 30 s and started again on the same data: nothing is lost, the watch resumes where it
 * stopped, a host that asked for a subnet during the outage gets one when etcd is back, renewals go on, and no
 * subnet is handed out twice. The 30 s are the point of the test; everything else in it is quick.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cidrsOverlap, parseCidr4 } from '../../src/base/ip.js';
import { sleep } from '../../src/base/retry.js';
import { configKey, DEFAULT_PREFIX, subnetsPrefix } from '../../src/store/keys.js';
import { openRegistry } from '../../src/store/open.js';
import type { Lease } from '../../src/subnet/lease.js';
import { LeaseManager } from '../../src/subnet/manager.js';
import { captureLogger, mac, NET_CONF, nextBatch, summary } from './store-contract.js';
import { startEtcd } from './store-etcd-server.js';

const OUTAGE_MS = 30_000;

test('etcd: stopped for 30 s and restarted: nothing lost, watches resume, no duplicate subnet', async (t) => {
  const etcd = await startEtcd(t);
  const { logger, lines } = captureLogger();
  const open = async (): Promise<LeaseManager> => {
    const registry = await openRegistry(etcd.url, { logger, requestTimeoutMs: 2000 });
    t.after(() => registry.close());
    // Renew every 5 s (60 s leases, renewed 55 s before they end), so renewals fail during the outage.
    return new LeaseManager(registry, { logger, ttlSeconds: 60, renewMarginSeconds: 55 });
  };
  const admin = await open();
  await admin.registry.put(configKey(DEFAULT_PREFIX), NET_CONF);

  const hosts = await Promise.all([1, 2, 3].map(() => open()));
  const leases = await Promise.all(hosts.map((h, i) => h.acquire({ publicIP: `192.0.2.${i + 1}`, backendData: { VNI: 1, VtepMAC: mac(i + 1) } })));
  const stop = new AbortController();
  t.after(() => stop.abort());
  const renewed: Lease[][] = hosts.map(() => []);
  const renewing = hosts.map((h, i) => h.keepRenewed(leases[i]!, { signal: stop.signal, onRenewed: (l) => renewed[i]!.push(l) }));

  const storeErrors: Error[] = [];
  const watcher = admin.watch({ onStoreError: (e) => storeErrors.push(e) });
  t.after(() => watcher.close());
  assert.deepEqual(summary(await nextBatch(watcher)), leases.map((l) => `added ${l.subnet} ${l.publicIP}`).sort());

  await etcd.stop();
  const downAt = Date.now();
  // A fourth host starts while etcd is away: it keeps retrying.
  const late = (await open()).acquire({ publicIP: '192.0.2.4', backendData: { VNI: 1, VtepMAC: mac(4) } });
  let lateDone = false;
  void late.then(
    () => (lateDone = true),
    () => (lateDone = true),
  );
  await sleep(OUTAGE_MS - (Date.now() - downAt));
  assert.equal(lateDone, false, 'no lease can be had while etcd is away');
  const renewalsDuringOutage = renewed.map((r) => r.length);
  await etcd.start();

  const upAt = Date.now();
  const fourth = await late;
  t.diagnostic(`the waiting host got its lease ${Date.now() - upAt} ms after etcd was back`);
  assert.deepEqual(summary(await nextBatch(watcher, 30_000)), [`added ${fourth.subnet} 192.0.2.4`], 'the watch resumed and saw the new lease');

  // Renewals go on after the outage.
  const deadline = Date.now() + 20_000;
  while (renewed.some((r, i) => r.length <= renewalsDuringOutage[i]!) && Date.now() < deadline) await sleep(100);
  renewed.forEach((r, i) => assert.ok(r.length > renewalsDuringOutage[i]!, `host ${i + 1} renewed after the outage`));
  t.diagnostic(`all hosts renewed again ${Date.now() - upAt} ms after etcd was back`);

  // Nothing lost, nothing doubled: the three leases as before plus the new one, one key per host.
  const { leases: stored } = await admin.listLeases();
  assert.deepEqual(stored.map((l) => `${l.subnet} ${l.publicIP}`).sort(), [...leases, fourth].map((l) => `${l.subnet} ${l.publicIP}`).sort());
  const subnets = stored.map((l) => parseCidr4(l.subnet));
  for (let i = 0; i < subnets.length; i++) for (let j = i + 1; j < subnets.length; j++) assert.ok(!cidrsOverlap(subnets[i]!, subnets[j]!));
  // A restarting host still gets its own subnet back.
  assert.equal((await (await open()).acquire({ publicIP: '192.0.2.1', backendData: { VNI: 1, VtepMAC: mac(11) } })).subnet, leases[0]!.subnet);

  assert.ok(
    lines.some((l) => /store unreachable, retrying in \d+ ms/.test(l)),
    'the outage is logged',
  );
  // The watch lost its stream and reconnected on tulle's own backoff (the new lease above came through it).
  assert.ok(
    lines.some((l) => /watch stream lost, reconnecting in \d+ ms/.test(l)),
    lines.slice(-20).join('\n'),
  );
  assert.ok(storeErrors.length > 0, 'the watcher reported store errors');
  assert.equal((await admin.registry.list(subnetsPrefix(DEFAULT_PREFIX))).items.length, 4);

  stop.abort();
  await Promise.all(renewing);
});
