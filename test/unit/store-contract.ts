/**
 * The contract every store must keep, as one suite run against each of them (undici's habit): memory
 * (store-memory.test.ts), SQLite (store-sqlite.test.ts) and a real etcd server (store-etcd.test.ts). It drives
 * the stores through the LeaseManager and LeaseWatcher, the way the agent does: acquire, reuse, renew,
 * expiry, revoke, reservation, watch, watch after compaction, and 50 hosts acquiring at once.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createLogger, type Logger } from '../../src/base/log.js';
import { cidrsOverlap, parseCidr4 } from '../../src/base/ip.js';
import { configKey, DEFAULT_PREFIX, subnetKey, subnetsPrefix } from '../../src/store/keys.js';
import type { Clock, Registry } from '../../src/store/registry.js';
import { LeaseManager, LeaseLostError, type LeaseManagerOptions } from '../../src/subnet/manager.js';
import { OutOfSubnetsError } from '../../src/subnet/allocator.js';
import type { Lease } from '../../src/subnet/lease.js';
import type { LeaseEvent, LeaseWatcher } from '../../src/subnet/watcher.js';

export interface ContractStore {
  /** Another client of the one store under test (each simulated host opens its own). */
  open(): Promise<Registry>;
  /** Lease TTL for these tests: the real 24 h where time is simulated, a few seconds on etcd. */
  ttlSeconds: number;
  /** Let `seconds` pass for the store: advance its clock, or wait for real. */
  passTime(seconds: number): Promise<void>;
  clock: Clock;
}

export type ContractFactory = (t: TestContext) => Promise<ContractStore>;

/** A clock tests move by hand. */
export class ManualClock implements Clock {
  constructor(private time = Date.now()) {}
  now(): number {
    return this.time;
  }
  advance(ms: number): void {
    this.time += ms;
  }
}

export const NET_CONF = '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}';

export function captureLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  return { logger: createLogger({}, { format: 'json', level: 'debug', write: (l) => lines.push(l) }), lines };
}

export function mac(n: number): string {
  return `0e:00:00:00:${((n >> 8) & 255).toString(16).padStart(2, '0')}:${(n & 255).toString(16).padStart(2, '0')}`;
}

/** The next batch from a watcher, failing the test (instead of hanging) after `ms`. */
export async function nextBatch(watcher: LeaseWatcher, ms = 10_000): Promise<LeaseEvent[]> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no lease events within ${ms} ms`)), ms)));
  try {
    const batch = await Promise.race([watcher.next(), timeout]);
    assert.ok(batch, 'the watcher ended');
    return batch;
  } finally {
    clearTimeout(timer);
  }
}

/** "type subnet publicIP" per event, sorted: order within one batch is the store's, not part of the contract. */
export function summary(batch: LeaseEvent[]): string[] {
  return batch.map((e) => `${e.type} ${e.lease.subnet} ${e.lease.publicIP}`).sort();
}

export function registryContract(name: string, factory: ContractFactory): void {
  /** A host: its own client and lease manager. Closed after the test. */
  async function host(t: TestContext, store: ContractStore, options: LeaseManagerOptions = {}): Promise<LeaseManager> {
    const registry = await store.open();
    t.after(() => registry.close());
    return new LeaseManager(registry, { clock: store.clock, ttlSeconds: store.ttlSeconds, ...options });
  }

  async function setup(t: TestContext, netConf = NET_CONF): Promise<{ store: ContractStore; admin: Registry }> {
    const store = await factory(t);
    const admin = await store.open();
    t.after(() => admin.close());
    await admin.put(configKey(DEFAULT_PREFIX), netConf);
    return { store, admin };
  }

  function watch(t: TestContext, m: LeaseManager, options: Parameters<LeaseManager['watch']>[0] = {}): LeaseWatcher {
    const w = m.watch(options);
    t.after(() => w.close());
    return w;
  }

  test(`${name}: acquire writes flannel's key and JSON, with the TTL`, async (t) => {
    const { store, admin } = await setup(t);
    const m = await host(t, store);
    const before = store.clock.now();
    const lease = await m.acquire({ publicIP: '192.0.2.11', backendData: { VNI: 1, VtepMAC: 'C6:D2:32:6F:8F:44' } });
    const subnet = parseCidr4(lease.subnet);
    assert.equal(subnet.prefix, 24);
    assert.ok(subnet.network >= parseCidr4('10.244.1.0/24').network && subnet.network <= parseCidr4('10.244.255.0/24').network, lease.subnet);
    assert.equal(lease.key, subnetKey(DEFAULT_PREFIX, subnet));
    assert.match(lease.key, /^\/coreos\.com\/network\/subnets\/10\.244\.\d+\.0-24$/);
    const stored = await admin.get(lease.key);
    assert.equal(stored?.value, '{"PublicIP":"192.0.2.11","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}');
    assert.ok(lease.expiration, 'a lease has an expiration');
    const ttlMs = lease.expiration.getTime() - before;
    assert.ok(ttlMs > store.ttlSeconds * 1000 - 3000 && ttlMs <= store.ttlSeconds * 1000 + 3000, `expires in ${ttlMs} ms`);
    assert.deepEqual(lease.backendData, { VNI: 1, VtepMAC: 'c6:d2:32:6f:8f:44' });
  });

  test(`${name}: acquire reuses the lease of the same public IP, then the previous subnet, never a taken one`, async (t) => {
    const { store, admin } = await setup(t);
    const a = await (await host(t, store)).acquire({ publicIP: '192.0.2.11', backendData: { VNI: 1, VtepMAC: mac(1) } });

    // The host restarts (new client, new VTEP MAC): same subnet, new MAC published.
    const again = await (await host(t, store)).acquire({ publicIP: '192.0.2.11', backendData: { VNI: 1, VtepMAC: mac(2) } });
    assert.equal(again.subnet, a.subnet);
    assert.ok(again.revision > a.revision);
    assert.match((await admin.get(a.key))!.value, new RegExp(mac(2)));

    // A host with a subnet.env from before gets that subnet back (written as FLANNEL_SUBNET, host bits set).
    const previous = a.subnet === '10.244.77.0/24' ? '10.244.78.0/24' : '10.244.77.0/24';
    const b = await (
      await host(t, store)
    ).acquire({ publicIP: '192.0.2.12', backendData: { VNI: 1, VtepMAC: mac(3) }, previousSubnet: previous.replace('.0/24', '.1/24') });
    assert.equal(b.subnet, previous);

    // A previous subnet that another host holds, or that is outside the network, is not used.
    const c = await (await host(t, store)).acquire({ publicIP: '192.0.2.13', backendData: { VNI: 1, VtepMAC: mac(4) }, previousSubnet: a.subnet });
    const d = await (await host(t, store)).acquire({ publicIP: '192.0.2.14', backendData: { VNI: 1, VtepMAC: mac(5) }, previousSubnet: '10.99.1.0/24' });
    const subnets = [a.subnet, b.subnet, c.subnet, d.subnet];
    assert.equal(new Set(subnets).size, 4, subnets.join(' '));
    assert.ok(d.subnet.startsWith('10.244.'), d.subnet);
    const listing = await admin.list(subnetsPrefix(DEFAULT_PREFIX));
    assert.deepEqual(listing.items.map((i) => i.key).sort(), [a.key, b.key, c.key, d.key].sort());
  });

  test(`${name}: renew extends the lease, keeps fields it does not interpret, and never overwrites another host`, async (t) => {
    const { store, admin } = await setup(t);
    const m = await host(t, store);
    const lease = await m.acquire({ publicIP: '192.0.2.11', backendData: { VNI: 1, VtepMAC: mac(1) } });
    await store.passTime(1.5);
    const renewed = await m.renew(lease);
    assert.equal(renewed.subnet, lease.subnet);
    assert.ok(renewed.expiration!.getTime() > lease.expiration!.getTime(), 'the expiration moved forward');
    assert.ok(renewed.revision > lease.revision);

    // flanneld on a dual-stack host would add fields tulle does not know: a renewal keeps them.
    const current = (await admin.get(lease.key))!;
    const withV6 = current.value
      .replace('"BackendType"', '"PublicIPv6":"2001:db8::11","BackendType"')
      .replace('}}', '},"BackendV6Data":{"VNI":1,"VtepMAC":"0e:00:00:00:00:66"}}');
    await admin.update(lease.key, withV6, current.modRevision, { ttlSeconds: store.ttlSeconds });
    const renewed2 = await m.renew(renewed);
    const value = JSON.parse((await admin.get(lease.key))!.value);
    assert.equal(value.PublicIPv6, '2001:db8::11');
    assert.deepEqual(value.BackendV6Data, { VNI: 1, VtepMAC: '0e:00:00:00:00:66' });
    assert.equal(value.PublicIP, '192.0.2.11');

    // Another host took the key: renewing must fail and leave its value alone.
    const theirs = '{"PublicIP":"198.51.100.7","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:00:77"}}';
    await admin.put(lease.key, theirs, { ttlSeconds: store.ttlSeconds });
    await assert.rejects(m.renew(renewed2), (e: unknown) => e instanceof LeaseLostError && /198\.51\.100\.7/.test(e.message));
    assert.equal((await admin.get(lease.key))!.value, theirs);
  });

  test(`${name}: keepRenewed renews before expiry until stopped`, async (t) => {
    const { store } = await setup(t);
    const m = await host(t, store, { ttlSeconds: 3, renewMarginSeconds: 2 });
    const lease = await m.acquire({ publicIP: '192.0.2.11', backendData: { VNI: 1, VtepMAC: mac(1) } });
    const renewals: Lease[] = [];
    const stop = new AbortController();
    const loop = m.keepRenewed(lease, { signal: stop.signal, onRenewed: (l) => renewals.push(l) });
    const deadline = Date.now() + 15_000;
    while (renewals.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    stop.abort();
    await loop; // resolves once stopped
    assert.ok(renewals.length >= 2, `${renewals.length} renewals`);
    assert.ok(renewals[1]!.revision > renewals[0]!.revision && renewals[0]!.revision > lease.revision);
    assert.equal(renewals[1]!.subnet, lease.subnet);
  });

  test(`${name}: an expired lease disappears, is reported removed, and its subnet can be taken`, async (t) => {
    const { store, admin } = await setup(t);
    const a = await (await host(t, store)).acquire({ publicIP: '192.0.2.11', backendData: { VNI: 1, VtepMAC: mac(1) } });
    const observer = await host(t, store);
    const w = watch(t, observer);
    assert.deepEqual(summary(await nextBatch(w)), [`added ${a.subnet} 192.0.2.11`]);

    await store.passTime(store.ttlSeconds + 2);
    assert.deepEqual(summary(await nextBatch(w)), [`removed ${a.subnet} 192.0.2.11`]);
    assert.equal(await admin.get(a.key), undefined);
    assert.deepEqual((await admin.list(subnetsPrefix(DEFAULT_PREFIX))).items, []);

    const b = await (await host(t, store)).acquire({ publicIP: '192.0.2.12', backendData: { VNI: 1, VtepMAC: mac(2) }, previousSubnet: a.subnet });
    assert.equal(b.subnet, a.subnet);
    assert.deepEqual(summary(await nextBatch(w)), [`added ${a.subnet} 192.0.2.12`]);
    // The first host comes back to renew: the subnet is someone else's now.
    await assert.rejects((await host(t, store)).renew(a), LeaseLostError);
  });

  test(`${name}: revoke deletes the host's own lease only`, async (t) => {
    const { store, admin } = await setup(t);
    const m = await host(t, store);
    const a = await m.acquire({ publicIP: '192.0.2.11', backendData: { VNI: 1, VtepMAC: mac(1) } });
    assert.equal(await m.revoke(a), true);
    assert.equal(await admin.get(a.key), undefined);
    assert.equal(await m.revoke(a), false);

    const b = await (await host(t, store)).acquire({ publicIP: '192.0.2.12', backendData: { VNI: 1, VtepMAC: mac(2) }, previousSubnet: a.subnet });
    assert.equal(b.subnet, a.subnet);
    assert.equal(await m.revoke(a), false, 'the old lease object must not delete the new owner');
    assert.match((await admin.get(a.key))!.value, /192\.0\.2\.12/);
  });

  test(`${name}: a reservation (key without TTL) is never allocated, never expires, and goes to its own public IP`, async (t) => {
    // 10.5.0.0/26 in /28s: 10.5.0.16, .32 and .48 can be leased (the first subnet is skipped).
    const { store, admin } = await setup(t, '{"Network":"10.5.0.0/26","SubnetLen":28}');
    const reservedKey = `${subnetsPrefix(DEFAULT_PREFIX)}10.5.0.32-28`;
    await admin.put(reservedKey, '{"PublicIP":"198.51.100.9","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:00:99"}}');
    const one = await (await host(t, store)).acquire({ publicIP: '192.0.2.1', backendData: { VNI: 1, VtepMAC: mac(1) } });
    const two = await (await host(t, store)).acquire({ publicIP: '192.0.2.2', backendData: { VNI: 1, VtepMAC: mac(2) } });
    assert.deepEqual([one.subnet, two.subnet].sort(), ['10.5.0.16/28', '10.5.0.48/28']);
    await assert.rejects(
      (await host(t, store)).acquire({ publicIP: '192.0.2.3', backendData: { VNI: 1, VtepMAC: mac(3) } }),
      (e: unknown) =>
        e instanceof OutOfSubnetsError && e.total === 3 && e.leases === 2 && e.reservations === 1 && /out of subnets: all 3 subnets/.test(e.message),
    );

    await store.passTime(store.ttlSeconds + 2);
    const left = (await admin.list(subnetsPrefix(DEFAULT_PREFIX))).items;
    assert.deepEqual(
      left.map((i) => i.key),
      [reservedKey],
      'the leases expired, the reservation stayed',
    );
    assert.equal(left[0]!.expiresAt, null);

    const owner = await (await host(t, store)).acquire({ publicIP: '198.51.100.9', backendData: { VNI: 1, VtepMAC: mac(9) } });
    assert.equal(owner.subnet, '10.5.0.32/28');
    assert.equal(owner.expiration, null, 'still a reservation');
    assert.equal((await admin.get(reservedKey))!.expiresAt, null);
    assert.match((await admin.get(reservedKey))!.value, new RegExp(mac(9)));
  });

  test(`${name}: watch gives the snapshot, then added, changed and removed with full leases; malformed values are skipped`, async (t) => {
    const { store, admin } = await setup(t);
    const { logger, lines } = captureLogger();
    const a = await (await host(t, store)).acquire({ publicIP: '192.0.2.11', backendData: { VNI: 1, VtepMAC: mac(1) } });
    const self = await (await host(t, store)).acquire({ publicIP: '192.0.2.10', backendData: { VNI: 1, VtepMAC: mac(10) } });
    const observer = await host(t, store, { logger });
    const w = watch(t, observer, { excludeSubnet: self.subnet });
    const snapshot = await nextBatch(w);
    assert.deepEqual(summary(snapshot), [`added ${a.subnet} 192.0.2.11`], 'the own subnet is left out');
    assert.deepEqual(snapshot[0]!.lease.backendData, { VNI: 1, VtepMAC: mac(1) });
    assert.equal(snapshot[0]!.lease.backendType, 'vxlan');
    assert.ok(snapshot[0]!.lease.expiration instanceof Date);

    const bHost = await host(t, store);
    const b = await bHost.acquire({ publicIP: '192.0.2.12', backendData: { VNI: 1, VtepMAC: mac(2) } });
    const added = await nextBatch(w);
    assert.deepEqual(summary(added), [`added ${b.subnet} 192.0.2.12`]);
    assert.deepEqual(added[0]!.lease.backendData, { VNI: 1, VtepMAC: mac(2) });

    // The host restarts with a new VTEP MAC: "changed" with the new data.
    const b2 = await (await host(t, store)).acquire({ publicIP: '192.0.2.12', backendData: { VNI: 1, VtepMAC: mac(3) } });
    const changed = await nextBatch(w);
    assert.deepEqual(summary(changed), [`changed ${b.subnet} 192.0.2.12`]);
    assert.equal(changed[0]!.lease.backendData.VtepMAC, mac(3));

    // A renewal is no event; garbage written by someone else is reported and skipped; a removal is an event.
    await bHost.renew(b2);
    await admin.put(`${subnetsPrefix(DEFAULT_PREFIX)}10.244.250.0-24`, '{"PublicIP":"not-an-ip"}', { ttlSeconds: store.ttlSeconds });
    await admin.put(`${subnetsPrefix(DEFAULT_PREFIX)}10.244.251.0-24`, 'this is not JSON', { ttlSeconds: store.ttlSeconds });
    const aNow = (await admin.get(a.key))!;
    await admin.update(a.key, '{"PublicIP":', aNow.modRevision, { ttlSeconds: store.ttlSeconds });
    assert.equal(await bHost.revoke(b2), true);
    assert.deepEqual(summary(await nextBatch(w)), [`removed ${b.subnet} 192.0.2.12`]);
    assert.ok(
      lines.some((l) => /skipping a malformed lease/.test(l) && /10\.244\.250\.0-24/.test(l) && /not an IPv4 address/.test(l)),
      lines.join('\n'),
    );
    assert.ok(lines.some((l) => /skipping a malformed lease/.test(l) && /10\.244\.251\.0-24/.test(l)));
    assert.deepEqual(w.leases.map((l) => l.subnet).sort(), [a.subnet, self.subnet].sort(), 'the last good value of a garbled lease is kept');
  });

  test(`${name}: a watch that fell behind (compaction) resyncs from a fresh snapshot as add/change/remove events`, async (t) => {
    const { store, admin } = await setup(t);
    const m = await host(t, store);
    const a = await (await host(t, store)).acquire({ publicIP: '192.0.2.11', backendData: { VNI: 1, VtepMAC: mac(1) } });
    const bHost = await host(t, store);
    const b = await bHost.acquire({ publicIP: '192.0.2.12', backendData: { VNI: 1, VtepMAC: mac(2) } });
    const before = await m.listLeases(); // the state a watcher had before it fell behind

    const c = await (await host(t, store)).acquire({ publicIP: '192.0.2.13', backendData: { VNI: 1, VtepMAC: mac(3) } });
    await bHost.revoke(b);
    await (await host(t, store)).acquire({ publicIP: '192.0.2.11', backendData: { VNI: 1, VtepMAC: mac(4) } });
    const latest = await admin.list(subnetsPrefix(DEFAULT_PREFIX));
    await admin.compact(latest.revision);

    const { logger, lines } = captureLogger();
    const w = watch(t, new LeaseManager(m.registry, { logger }), { resumeFrom: { leases: before.leases, revision: before.revision } });
    const resync = await nextBatch(w);
    assert.deepEqual(summary(resync), [`added ${c.subnet} 192.0.2.13`, `changed ${a.subnet} 192.0.2.11`, `removed ${b.subnet} 192.0.2.12`].sort());
    assert.equal(resync.find((e) => e.type === 'changed')!.lease.backendData.VtepMAC, mac(4));
    assert.ok(
      lines.some((l) => /fell behind; resyncing from a fresh snapshot/.test(l)),
      lines.join('\n'),
    );

    // And it watches on from the fresh snapshot.
    const d = await (await host(t, store)).acquire({ publicIP: '192.0.2.14', backendData: { VNI: 1, VtepMAC: mac(5) } });
    assert.deepEqual(summary(await nextBatch(w)), [`added ${d.subnet} 192.0.2.14`]);
  });

  test(`${name}: a lease's age (create revision) is stable across renewals and seen alike by a listing and by the writer`, async (t) => {
    const { store } = await setup(t);
    const a = await host(t, store);
    const b = await host(t, store);
    const first = await a.acquire({ publicIP: '192.0.2.11', backendData: { VNI: 1, VtepMAC: '02:00:00:00:00:11' } });
    const second = await b.acquire({ publicIP: '192.0.2.12', backendData: { VNI: 1, VtepMAC: '02:00:00:00:00:12' } });
    assert.equal(first.created, first.revision, 'a lease just created: created == revision');
    assert.ok(second.created > first.created, 'the later lease is younger');
    const renewed = await a.renew(first);
    assert.ok(renewed.revision > first.revision);
    assert.equal(renewed.created, first.created, 'a renewal keeps the age');
    const again = await a.acquire({ publicIP: '192.0.2.11', backendData: { VNI: 1, VtepMAC: '02:00:00:00:00:11' } });
    assert.equal(again.created, first.created, 'reusing the lease of this public IP keeps its age');
    assert.notEqual(again.created, again.revision, 'a reused lease is not a new one');
    const listed = (await b.listLeases()).leases;
    assert.equal(listed.find((l) => l.subnet === first.subnet)!.created, first.created);
    assert.equal(listed.find((l) => l.subnet === second.subnet)!.created, second.created);
  });

  test(`${name}: 50 hosts acquiring at once get 50 distinct, non-overlapping subnets`, async (t) => {
    const { store, admin } = await setup(t);
    const managers = await Promise.all(Array.from({ length: 50 }, () => host(t, store)));
    const leases = await Promise.all(managers.map((m, i) => m.acquire({ publicIP: `192.0.2.${i + 1}`, backendData: { VNI: 1, VtepMAC: mac(i + 1) } })));
    const subnets = leases.map((l) => parseCidr4(l.subnet));
    for (let i = 0; i < subnets.length; i++)
      for (let j = i + 1; j < subnets.length; j++) assert.ok(!cidrsOverlap(subnets[i]!, subnets[j]!), `${leases[i]!.subnet} overlaps ${leases[j]!.subnet}`);
    const stored = (await admin.list(subnetsPrefix(DEFAULT_PREFIX))).items;
    assert.equal(stored.length, 50);
    const owners = new Map(stored.map((s) => [s.key, JSON.parse(s.value).PublicIP as string]));
    for (const l of leases) assert.equal(owners.get(l.key), l.publicIP, `${l.key} belongs to its acquirer`);
  });
}
