/**
 * The store contract on an SQLite file, with a hand-moved clock; plus what only the SQLite store does: several
 * processes sharing one file (50 real `node` processes acquiring at once), a watch that sees a change made by
 * another process, the change log trimmed under a watcher, and the on-disk schema.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { cidrsOverlap, parseCidr4 } from '../../src/base/ip.js';
import { configKey, DEFAULT_PREFIX, subnetsPrefix } from '../../src/store/keys.js';
import { openRegistry } from '../../src/store/open.js';
import { StoreError, StoreUnavailableError } from '../../src/store/registry.js';
import type { Lease } from '../../src/subnet/lease.js';
import { LeaseManager } from '../../src/subnet/manager.js';
import { captureLogger, mac, ManualClock, NET_CONF, nextBatch, registryContract, summary } from './store-contract.js';

async function waitUntil(done: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`not done within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

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

const openUrl = new URL('../../src/store/open.js', import.meta.url).href;
const managerUrl = new URL('../../src/subnet/manager.js', import.meta.url).href;

/** Run `code` (an ES module body) in a separate `node` process; resolves to its stdout. */
function nodeProcess(code: string, args: string[]): Promise<{ stdout: string; stderr: string; status: number | null }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', code, '--', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (status) => resolve({ stdout, stderr, status }));
  });
}

const ACQUIRE_IN_CHILD = `
  const { openRegistry } = await import(${JSON.stringify(openUrl)});
  const { LeaseManager } = await import(${JSON.stringify(managerUrl)});
  const [path, publicIP, vtepMac] = process.argv.slice(-3);
  const registry = await openRegistry('sqlite:' + path);
  const lease = await new LeaseManager(registry).acquire({ publicIP, backendData: { VNI: 1, VtepMAC: vtepMac } });
  process.stdout.write(JSON.stringify({ subnet: lease.subnet, key: lease.key, publicIP: lease.publicIP }));
  await registry.close();
`;

test('sqlite: 50 separate processes acquiring on one file at once get 50 distinct, non-overlapping subnets', async (t) => {
  const path = tempDb(t);
  const admin = await openRegistry(`sqlite:${path}`);
  t.after(() => admin.close());
  await admin.put(configKey(DEFAULT_PREFIX), NET_CONF);
  const results = await Promise.all(Array.from({ length: 50 }, (_, i) => nodeProcess(ACQUIRE_IN_CHILD, [path, `192.0.2.${i + 1}`, mac(i + 1)])));
  for (const r of results) assert.equal(r.status, 0, r.stderr);
  const leases = results.map((r) => JSON.parse(r.stdout) as { subnet: string; key: string; publicIP: string });
  const subnets = leases.map((l) => parseCidr4(l.subnet));
  for (let i = 0; i < subnets.length; i++)
    for (let j = i + 1; j < subnets.length; j++) assert.ok(!cidrsOverlap(subnets[i]!, subnets[j]!), `${leases[i]!.subnet} overlaps ${leases[j]!.subnet}`);
  const stored = (await admin.list(subnetsPrefix(DEFAULT_PREFIX))).items;
  assert.equal(stored.length, 50);
  const owners = new Map(stored.map((s) => [s.key, JSON.parse(s.value).PublicIP as string]));
  for (const l of leases) assert.equal(owners.get(l.key), l.publicIP);
});

test('sqlite: a watch sees a lease another process writes', async (t) => {
  const path = tempDb(t);
  const admin = await openRegistry(`sqlite:${path}`);
  t.after(() => admin.close());
  await admin.put(configKey(DEFAULT_PREFIX), NET_CONF);
  const w = new LeaseManager(admin).watch();
  t.after(() => w.close());
  assert.deepEqual(await nextBatch(w), []);
  const child = await nodeProcess(ACQUIRE_IN_CHILD, [path, '192.0.2.99', mac(99)]);
  assert.equal(child.status, 0, child.stderr);
  const seenAt = Date.now();
  const { subnet } = JSON.parse(child.stdout) as { subnet: string };
  assert.deepEqual(summary(await nextBatch(w)), [`added ${subnet} 192.0.2.99`]);
  t.diagnostic(`seen ${Date.now() - seenAt} ms after the writing process exited (informational)`);
});

test('sqlite: a write by another process wakes the watch through a file notification, not the poll', async (t) => {
  const path = tempDb(t);
  // A poll interval of ten minutes: only the notification can deliver the change within the test.
  const admin = await openRegistry(`sqlite:${path}`, { pollIntervalMs: 600_000 });
  t.after(() => admin.close());
  await admin.put(configKey(DEFAULT_PREFIX), NET_CONF);
  const w = new LeaseManager(admin).watch();
  t.after(() => w.close());
  assert.deepEqual(await nextBatch(w), []);
  const child = await nodeProcess(ACQUIRE_IN_CHILD, [path, '192.0.2.98', mac(98)]);
  assert.equal(child.status, 0, child.stderr);
  const { subnet } = JSON.parse(child.stdout) as { subnet: string };
  assert.deepEqual(summary(await nextBatch(w)), [`added ${subnet} 192.0.2.98`]);
});

test('sqlite: a watch wakes at the next expiry by itself, with no write and no poll due', async (t) => {
  const path = tempDb(t);
  // A poll interval of ten minutes: only the wake-up at the expiry can report the expired key within the test.
  const registry = await openRegistry(`sqlite:${path}`, { pollIntervalMs: 600_000 });
  t.after(() => registry.close());
  const seen: string[] = [];
  const watch = registry.watch('/x/', 0, {
    events: (events) => seen.push(...events.map((e) => `${e.type} ${e.key}`)),
    lost: () => seen.push('lost'),
    error: (err) => seen.push(`error ${err.message}`),
  });
  t.after(() => watch.close());
  await registry.put('/x/a', 'v', { ttlSeconds: 1 });
  await waitUntil(() => seen.includes('delete /x/a'), 30_000);
  assert.deepEqual(seen, ['put /x/a', 'delete /x/a']);
});

test('sqlite: the file holds etcd-identical keys and values, expired rows are deleted, WAL mode', async (t) => {
  const path = tempDb(t);
  const clock = new ManualClock();
  const registry = await openRegistry(`sqlite:${path}`, { clock });
  t.after(() => registry.close());
  await registry.put(configKey(DEFAULT_PREFIX), NET_CONF);
  const lease = await new LeaseManager(registry, { clock }).acquire({ publicIP: '192.0.2.11', backendData: { VNI: 1, VtepMAC: mac(1) } });

  const raw = new Database(path, { readonly: true });
  t.after(() => raw.close());
  assert.equal(raw.pragma('journal_mode', { simple: true }), 'wal');
  const rows = raw.prepare('SELECT key, value, mod_revision, expires_at FROM kv ORDER BY key').all() as Array<{
    key: string;
    value: string;
    mod_revision: number;
    expires_at: number | null;
  }>;
  assert.deepEqual(
    rows.map((r) => r.key),
    [configKey(DEFAULT_PREFIX), lease.key],
  );
  assert.equal(rows[0]!.value, NET_CONF);
  assert.equal(rows[0]!.expires_at, null);
  assert.equal(rows[1]!.value, `{"PublicIP":"192.0.2.11","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"${mac(1)}"}}`);
  assert.equal(rows[1]!.expires_at, lease.expiration!.getTime());
  assert.equal(rows[1]!.mod_revision, lease.revision);

  clock.advance(25 * 3600 * 1000);
  assert.equal(await registry.get(lease.key), undefined, 'invisible as soon as it expired');
  await registry.put('/other', 'x'); // any write cleans up expired rows, logging their deletion
  assert.equal((raw.prepare('SELECT COUNT(*) AS n FROM kv WHERE key = ?').get(lease.key) as { n: number }).n, 0);
  const last = raw.prepare('SELECT type FROM events WHERE key = ? ORDER BY revision DESC LIMIT 1').get(lease.key) as { type: string };
  assert.equal(last.type, 'delete');
});

test('sqlite: a watcher whose revision was trimmed from the change log resyncs', async (t) => {
  const path = tempDb(t);
  const registry = await openRegistry(`sqlite:${path}`, { keepEvents: 20 });
  t.after(() => registry.close());
  await registry.put(configKey(DEFAULT_PREFIX), NET_CONF);
  const m = new LeaseManager(registry);
  const first = await m.acquire({ publicIP: '192.0.2.1', backendData: { VNI: 1, VtepMAC: mac(1) } });
  const before = await m.listLeases();
  // 150 more writes: the log keeps only the last 20 (trimmed every 100 revisions).
  const later: Lease[] = [];
  for (let i = 2; i <= 6; i++) later.push(await m.acquire({ publicIP: `192.0.2.${i}`, backendData: { VNI: 1, VtepMAC: mac(i) } }));
  for (let i = 0; i < 150; i++) await registry.put('/coreos.com/network/noise', String(i));
  await m.revoke(first);
  const { logger, lines } = captureLogger();
  const w = m.watch({ resumeFrom: before, logger });
  t.after(() => w.close());
  assert.deepEqual(summary(await nextBatch(w)), [...later.map((l) => `added ${l.subnet} ${l.publicIP}`), `removed ${first.subnet} 192.0.2.1`].sort());
  assert.ok(
    lines.some((l) => /fell behind; resyncing/.test(l) && /change log no longer holds revision/.test(l)),
    lines.join('\n'),
  );
});

test('sqlite: a missing file or a database locked for too long are clear errors', async (t) => {
  const path = tempDb(t);
  await assert.rejects(
    openRegistry(`sqlite:${path}`, { create: false }),
    (e: unknown) => e instanceof StoreError && e.code === 'TLE_STORE' && e.message.includes(path) && /does not exist/.test(e.message),
  );
  const registry = await openRegistry(`sqlite:${path}`, { busyTimeoutMs: 100 });
  t.after(() => registry.close());
  const locker = new Database(path);
  t.after(() => locker.close());
  locker.exec('BEGIN IMMEDIATE');
  await assert.rejects(
    registry.put('/k', 'v'),
    (e: unknown) => e instanceof StoreUnavailableError && e.code === 'TLE_STORE_UNAVAILABLE' && /locked/.test(e.message),
  );
  locker.exec('ROLLBACK');
  await registry.put('/k', 'v');
  assert.equal((await registry.get('/k'))?.value, 'v');
});
