/** Pod endpoint records (Flood "none"): parsing hostile values, publish/withdraw, list/watch, admission, pruning. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InvalidValueError } from '../../src/base/errors.js';
import { waitFor } from '../../src/base/retry.js';
import { openRegistry } from '../../src/store/open.js';
import type { Registry } from '../../src/store/registry.js';
import {
  admitEndpoints,
  endpointKey,
  EndpointWatcher,
  listEndpoints,
  MalformedEndpointError,
  parseEndpointRecord,
  publishEndpoint,
  withdrawEndpoint,
  type EndpointSnapshot,
  type StoredEndpoint,
} from '../../src/subnet/endpoints.js';
import { startEtcd } from './store-etcd-server.js';
import { heldAddresses, publishPodEndpoint, pruneStaleEndpoints, withdrawPodEndpoint } from '../../src/subnet/pod-endpoints.js';

const PREFIX = '/tulle.io/l2';
const KEY = `${PREFIX}/endpoints/10.17.0.18`;
const VALUE = '{"IP":"10.17.0.18","MAC":"0a:58:0a:11:00:12","PublicIP":"192.0.2.12"}';

async function memoryStore(t: { after(fn: () => unknown): void }): Promise<Registry> {
  const store = await openRegistry(`memory:endpoints-${randomBytes(4).toString('hex')}`, { pollIntervalMs: 10 });
  t.after(() => store.close());
  return store;
}

function rejects(value: string, field: string, rule: RegExp, key = KEY): void {
  assert.throws(
    () => parseEndpointRecord(key, value),
    (e: unknown) =>
      e instanceof MalformedEndpointError && e.code === 'TLE_MALFORMED_ENDPOINT' && e.field === field && rule.test(e.message) && e.message.length < 400,
    `${value.slice(0, 60)} should be refused naming ${field}`,
  );
}

test('a record in the contract format parses; keys are read case-insensitively, the MAC lower-cased', () => {
  assert.deepEqual(parseEndpointRecord(KEY, VALUE), { ip: '10.17.0.18', mac: '0a:58:0a:11:00:12', publicIP: '192.0.2.12' });
  assert.deepEqual(parseEndpointRecord(KEY, '{"ip":"10.17.0.18","mac":"0A:58:0A:11:00:12","publicip":"192.0.2.12"}').mac, '0a:58:0a:11:00:12');
});

test('hostile records are refused, each naming the field, the value and the rule', () => {
  rejects('{"IP":"10.17.0.19","MAC":"0a:58:0a:11:00:12","PublicIP":"192.0.2.12"}', 'IP', /"10\.17\.0\.19" does not match the key's address "10\.17\.0\.18"/);
  rejects('{"IP":"10.17.0.018","MAC":"0a:58:0a:11:00:12","PublicIP":"192.0.2.12"}', 'IP', /is not an IPv4 address/);
  rejects('{"IP":"fd00::12","MAC":"0a:58:0a:11:00:12","PublicIP":"192.0.2.12"}', 'IP', /"fd00::12" is not an IPv4 address/);
  rejects('{"IP":18,"MAC":"0a:58:0a:11:00:12","PublicIP":"192.0.2.12"}', 'IP', /18 is not an IPv4 address/);
  rejects('{"IP":"224.0.0.1","MAC":"0a:58:0a:11:00:12","PublicIP":"192.0.2.12"}', 'IP', /multicast/, `${PREFIX}/endpoints/224.0.0.1`);
  rejects('{"IP":"10.17.0.18","MAC":"01:00:5e:00:00:01","PublicIP":"192.0.2.12"}', 'MAC', /"01:00:5e:00:00:01" is a multicast or broadcast MAC/);
  rejects('{"IP":"10.17.0.18","MAC":"ff:ff:ff:ff:ff:ff","PublicIP":"192.0.2.12"}', 'MAC', /multicast or broadcast/);
  rejects('{"IP":"10.17.0.18","MAC":"00:00:00:00:00:00","PublicIP":"192.0.2.12"}', 'MAC', /all-zero MAC/);
  rejects('{"IP":"10.17.0.18","MAC":"0a:58:0a:11:00","PublicIP":"192.0.2.12"}', 'MAC', /is not a MAC address/);
  rejects('{"IP":"10.17.0.18","MAC":"0a:58:0a:11:00:12","PublicIP":"127.0.0.1"}', 'PublicIP', /"127\.0\.0\.1" is a loopback address/);
  rejects('{"IP":"10.17.0.18","MAC":"0a:58:0a:11:00:12","PublicIP":"169.254.1.1"}', 'PublicIP', /link-local/);
  rejects('{"IP":"10.17.0.18","MAC":"0a:58:0a:11:00:12","PublicIP":"255.255.255.255"}', 'PublicIP', /broadcast/);
  rejects('{"IP":"10.17.0.18","MAC":"0a:58:0a:11:00:12","PublicIP":"2001:db8::1"}', 'PublicIP', /is not an IPv4 address/);
  rejects('{"IP":"10.17.0.18","MAC":"0a:58:0a:11:00:12"}', 'PublicIP', /is missing/);
  rejects(
    '{"IP":"10.17.0.18","MAC":"0a:58:0a:11:00:12","PublicIP":"192.0.2.12","Evil":"$(reboot)"}',
    '"Evil"',
    /is not a field of an endpoint record \(only IP, MAC, PublicIP\)/,
  );
  rejects('not json', 'value', /"not json" is not JSON/);
  rejects('["10.17.0.18"]', 'value', /is not a JSON object/);
  rejects('null', 'value', /is not a JSON object/);
  // An oversized value is refused by its length; the message does not carry it.
  const huge = `{"IP":"10.17.0.18","MAC":"0a:58:0a:11:00:12","PublicIP":"192.0.2.12","X":"${'A'.repeat(1_000_000)}"}`;
  rejects(huge, 'value', /is 1000\d+ characters long \(at most 512\)/);
  // A long junk value is cut with an ellipsis.
  rejects(`${'x'.repeat(400)}`, 'value', /x{100,120}"… \(400 characters\) is not JSON/);
  rejects(VALUE, 'key', /is not an endpoint key/, `${PREFIX}/subnets/10.17.0.16-28`);
});

test('publish writes the contract value; withdraw deletes only while the MAC matches', async (t) => {
  const store = await memoryStore(t);
  await publishEndpoint(store, PREFIX, { ip: '10.17.0.18', mac: '0A:58:0A:11:00:12', publicIP: '192.0.2.12' });
  assert.equal((await store.get(KEY))?.value, VALUE);
  await assert.rejects(
    publishEndpoint(store, PREFIX, { ip: '10.17.0.19', mac: 'ff:ff:ff:ff:ff:ff', publicIP: '192.0.2.12' }),
    (e: unknown) =>
      e instanceof InvalidValueError && e.message === 'endpoint mac: "ff:ff:ff:ff:ff:ff" is a multicast or broadcast MAC (the first octet is odd)',
  );
  await assert.rejects(
    publishEndpoint(store, PREFIX, { ip: '10.17.0.19', mac: '0a:58:0a:11:00:13', publicIP: '127.0.0.1' }),
    (e: unknown) => e instanceof InvalidValueError && e.field === 'endpoint publicIP',
  );
  await assert.rejects(
    publishEndpoint(store, PREFIX, { ip: '10.17.0.19/24', mac: '0a:58:0a:11:00:13', publicIP: '192.0.2.12' }),
    /endpoint ip: "10\.17\.0\.19\/24" is not an IPv4 address/,
  );
  await assert.rejects(withdrawEndpoint(store, PREFIX, '../../config', '0a:58:0a:11:00:13'), /endpoint ip: "\.\.\/\.\.\/config" is not an IPv4 address/);
  await assert.rejects(
    publishEndpoint(store, 'no-slash', { ip: '10.17.0.19', mac: '0a:58:0a:11:00:13', publicIP: '192.0.2.12' }),
    /prefix: "no-slash" is not a key prefix/,
  );
  assert.equal((await store.list(`${PREFIX}/`)).items.length, 1, 'a refused record writes nothing');

  assert.equal(await withdrawEndpoint(store, PREFIX, '10.17.0.18', '0a:58:0a:11:00:99'), false, "another pod's MAC: kept");
  assert.ok(await store.get(KEY));
  assert.equal(await withdrawEndpoint(store, PREFIX, '10.17.0.18', '0A:58:0A:11:00:12'), true);
  assert.equal(await store.get(KEY), undefined);
  assert.equal(await withdrawEndpoint(store, PREFIX, '10.17.0.18', '0a:58:0a:11:00:12'), false, 'withdrawing twice is fine');

  await store.put(KEY, '{"IP":"10.17.0.18","MAC":"0a:58:0a:11:00:12","PublicIP":"192.0.2.12","Owner":"someone"}');
  assert.equal(await withdrawEndpoint(store, PREFIX, '10.17.0.18', '0a:58:0a:11:00:12'), false, 'a record tulle cannot read is never deleted');
});

test('the CNI hooks: ADD publishes, DEL without a MAC withdraws only a record naming this host', async (t) => {
  const store = await memoryStore(t);
  await publishPodEndpoint(store, PREFIX, { ip: '10.17.0.18', mac: '0a:58:0a:11:00:12', publicIP: '192.0.2.12' });
  assert.equal(await withdrawPodEndpoint(store, PREFIX, { ip: '10.17.0.18', publicIP: '192.0.2.13' }), false);
  assert.equal(await withdrawPodEndpoint(store, PREFIX, { ip: '10.17.0.18', publicIP: '192.0.2.12' }), true);
  await publishPodEndpoint(store, PREFIX, { ip: '10.17.0.18', mac: '0a:58:0a:11:00:12', publicIP: '192.0.2.12' });
  assert.equal(await withdrawPodEndpoint(store, PREFIX, { ip: '10.17.0.18', mac: '0a:58:0a:11:00:77', publicIP: '192.0.2.12' }), false);
  assert.equal(await withdrawPodEndpoint(store, PREFIX, { ip: '10.17.0.18', mac: '0a:58:0a:11:00:12', publicIP: '192.0.2.12' }), true);
});

test('agent start prunes its own records whose address the IPAM directory no longer holds', async (t) => {
  const store = await memoryStore(t);
  const dir = mkdtempSync(join(tmpdir(), 'tulle-l2none-ipam-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, '10.17.0.18'), 'c1\r\neth0');
  writeFileSync(join(dir, 'last_reserved_ip.0'), '10.17.0.19');
  writeFileSync(join(dir, 'lock'), '');
  assert.deepEqual([...heldAddresses(dir)], ['10.17.0.18']);
  assert.equal(heldAddresses(join(dir, 'missing')).size, 0);
  await publishEndpoint(store, PREFIX, { ip: '10.17.0.18', mac: '0a:58:0a:11:00:12', publicIP: '192.0.2.12' });
  await publishEndpoint(store, PREFIX, { ip: '10.17.0.19', mac: '0a:58:0a:11:00:13', publicIP: '192.0.2.12' });
  await publishEndpoint(store, PREFIX, { ip: '10.17.0.33', mac: '0a:58:0a:11:00:21', publicIP: '192.0.2.13' });
  assert.deepEqual(await pruneStaleEndpoints(store, PREFIX, '192.0.2.12', dir), [endpointKey(PREFIX, '10.17.0.19')]);
  assert.deepEqual(
    (await listEndpoints(store, PREFIX)).records.map((r) => r.ip),
    ['10.17.0.18', '10.17.0.33'],
    "another host's record and a held address stay",
  );
});

function rec(ip: string, mac: string, publicIP: string, created: number): StoredEndpoint {
  return { ip, mac, publicIP, key: endpointKey(PREFIX, ip), revision: created, created };
}

test('admission: an IP must lie in an admitted lease of the same PublicIP; one MAC twice keeps the older record', () => {
  const leases = [
    { subnet: '10.17.0.16/28', publicIP: '192.0.2.11' },
    { subnet: '10.17.0.32/28', publicIP: '192.0.2.12' },
  ];
  const records = [
    rec('10.17.0.18', '0a:00:00:00:00:01', '192.0.2.11', 5), // own host
    rec('10.17.0.34', '0a:00:00:00:00:02', '192.0.2.12', 6), // a peer
    rec('10.17.0.35', '0a:00:00:00:00:03', '192.0.2.11', 7), // in the peer's slice, claims to be on 192.0.2.11
    rec('10.17.0.50', '0a:00:00:00:00:04', '192.0.2.13', 8), // a host without an admitted lease
    rec('10.17.0.36', '0a:00:00:00:00:02', '192.0.2.12', 3), // the peer's MAC, older: it wins
    rec('10.17.0.19', '0a:00:00:00:00:01', '192.0.2.11', 9), // own pod's MAC again, newer: rejected
  ];
  const run = (list: StoredEndpoint[]) => admitEndpoints(list, leases, '192.0.2.11');
  const r = run(records);
  assert.deepEqual(
    r.accepted.map((a) => a.ip),
    ['10.17.0.36', '10.17.0.18'],
  );
  assert.deepEqual(
    r.rejected.map((x) => [x.key.split('/').pop(), x.reason]),
    [
      ['10.17.0.35', 'no-lease'],
      ['10.17.0.50', 'no-lease'],
      ['10.17.0.34', 'duplicate-mac'],
      ['10.17.0.19', 'duplicate-mac'],
    ],
  );
  assert.match(r.rejected[0]!.detail, /IP 10\.17\.0\.35 lies in the slice of the host 192\.0\.2\.12, not of PublicIP 192\.0\.2\.11/);
  assert.match(r.rejected[2]!.detail, /MAC 0a:00:00:00:00:02 is already used by the older record of 10\.17\.0\.36 on 192\.0\.2\.12/);
  // Deterministic: every host, whatever order its listing came in, settles the same way.
  const again = run([...records].reverse());
  assert.deepEqual(again.accepted.map((a) => a.key).sort(), r.accepted.map((a) => a.key).sort());
  assert.deepEqual(again.rejected.map((x) => x.key).sort(), r.rejected.map((x) => x.key).sort());
  // Same age: the lower IP wins.
  const tie = admitEndpoints(
    [rec('10.17.0.40', '0a:00:00:00:00:09', '192.0.2.12', 4), rec('10.17.0.39', '0a:00:00:00:00:09', '192.0.2.12', 4)],
    leases,
    '192.0.2.11',
  );
  assert.deepEqual(
    tie.accepted.map((a) => a.ip),
    ['10.17.0.39'],
  );
});

async function watchContract(t: { after(fn: () => unknown): void }, store: Registry): Promise<void> {
  const snaps: EndpointSnapshot[] = [];
  await publishEndpoint(store, PREFIX, { ip: '10.17.0.18', mac: '0a:58:0a:11:00:12', publicIP: '192.0.2.12' });
  await store.put(`${PREFIX}/endpoints/10.17.0.99`, '{"IP":"10.17.0.98"}');
  await store.put(`${PREFIX}/subnets/10.17.0.16-28`, '{"PublicIP":"192.0.2.12"}'); // not an endpoint: never seen
  const watcher = new EndpointWatcher(store, PREFIX, (s) => snaps.push(s));
  t.after(() => watcher.close());
  await watcher.ready;
  assert.deepEqual(
    snaps[0]!.records.map((r) => r.ip),
    ['10.17.0.18'],
  );
  assert.deepEqual(
    snaps[0]!.malformed.map((m) => m.key),
    [`${PREFIX}/endpoints/10.17.0.99`],
  );
  const last = () => snaps[snaps.length - 1]!;
  await publishEndpoint(store, PREFIX, { ip: '10.17.0.19', mac: '0a:58:0a:11:00:13', publicIP: '192.0.2.12' });
  await waitFor(() => last().records.length === 2, 10_000, 'the new record in a snapshot');
  const created = last().records.find((r) => r.ip === '10.17.0.19')!;
  await publishEndpoint(store, PREFIX, { ip: '10.17.0.19', mac: '0a:58:0a:11:00:14', publicIP: '192.0.2.12' });
  await waitFor(() => last().records.find((r) => r.ip === '10.17.0.19')?.mac === '0a:58:0a:11:00:14', 10_000, 'the changed MAC');
  assert.equal(last().records.find((r) => r.ip === '10.17.0.19')!.created, created.created, "a rewrite keeps the record's age");
  await withdrawEndpoint(store, PREFIX, '10.17.0.18', '0a:58:0a:11:00:12');
  await waitFor(() => last().records.length === 1 && last().records[0]!.ip === '10.17.0.19', 10_000, 'the withdrawn record gone');
}

test('watch: a snapshot first, then one after every change (memory store)', async (t) => {
  await watchContract(t, await memoryStore(t));
});

test('watch: the same on a real SQLite file, seen by a second process-local handle', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tulle-l2none-sqlite-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const url = `sqlite:${join(dir, 'store.db')}`;
  const writer = await openRegistry(url);
  const reader = await openRegistry(url, { pollIntervalMs: 20 });
  t.after(async () => {
    await writer.close();
    await reader.close();
  });
  const snaps: EndpointSnapshot[] = [];
  const watcher = new EndpointWatcher(reader, PREFIX, (s) => snaps.push(s));
  t.after(() => watcher.close());
  await watcher.ready;
  assert.equal(snaps[0]!.records.length, 0, 'an empty store gives an empty first snapshot');
  await watchContract(t, writer);
  await waitFor(() => snaps[snaps.length - 1]?.records.map((r) => r.ip).join() === '10.17.0.19', 10_000, "the other handle's writes");
});

test('watch: a watch that fell behind (compaction) lists again and delivers what changed meanwhile', async (t) => {
  const store = await memoryStore(t);
  let watches = 0;
  // The first watch is told at once that its history is gone, as etcd says after a compaction.
  const lossy: Registry = Object.assign(Object.create(store) as Registry, {
    watch: (prefix: string, after: number, handlers: Parameters<Registry['watch']>[2]) => {
      if (++watches > 1) return store.watch(prefix, after, handlers);
      void publishEndpoint(store, PREFIX, { ip: '10.17.0.20', mac: '0a:58:0a:11:00:20', publicIP: '192.0.2.12' }).then(() =>
        handlers.lost('required revision has been compacted'),
      );
      return { close: async () => {} };
    },
  });
  const snaps: EndpointSnapshot[] = [];
  const watcher = new EndpointWatcher(lossy, PREFIX, (s) => snaps.push(s));
  t.after(() => watcher.close());
  await watcher.ready;
  await waitFor(() => snaps[snaps.length - 1]!.records.length === 1, 10_000, 'the record written while the watch was lost');
  assert.equal(watches, 2, 'a second watch from the new listing');
  await publishEndpoint(store, PREFIX, { ip: '10.17.0.21', mac: '0a:58:0a:11:00:21', publicIP: '192.0.2.12' });
  await waitFor(() => snaps[snaps.length - 1]!.records.length === 2, 10_000, 'changes after the new listing');
});

test('watch: the same on a real etcd (watch events carry no create revision: a rewrite keeps the listed age)', { timeout: 120_000 }, async (t) => {
  const server = await startEtcd(t);
  const store = await openRegistry(server.url);
  t.after(() => store.close());
  await watchContract(t, store);
});
