// tulle-cni's host-local-compatible IPAM: the order addresses are tried in, the file format, the lock, errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatIPv4, parseIPv4 } from '../../src/base/ip.js';
import { CNI_CODES, CniError } from '../../src/cni/errors.js';
import { IpamStore, allocate, candidateAddresses, freeAddresses, hostRange, ownedBy, parseOwner } from '../../src/cni/ipam.js';

function tempDir(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'tulle-cni-ipam-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const list = (r: ReturnType<typeof hostRange>, last?: string) => [...candidateAddresses(r, last === undefined ? undefined : parseIPv4(last))].map(formatIPv4);

test('the range of a /24 is .1-.254 without the gateway; of a /29 the five hosts besides the gateway', () => {
  const r = hostRange('10.244.1.0/24', '10.244.1.1');
  const all = list(r);
  assert.equal(all.length, 253);
  assert.equal(all[0], '10.244.1.2');
  assert.equal(all.at(-1), '10.244.1.254');
  assert.ok(!all.includes('10.244.1.1') && !all.includes('10.244.1.0') && !all.includes('10.244.1.255'));
  assert.deepEqual(list(hostRange('10.244.7.8/29', '10.244.7.9')), ['10.244.7.10', '10.244.7.11', '10.244.7.12', '10.244.7.13', '10.244.7.14']);
  // A gateway in the middle of the range is skipped there (host-local skips it wherever it is).
  assert.deepEqual(list(hostRange('10.1.0.0/29', '10.1.0.3')), ['10.1.0.1', '10.1.0.2', '10.1.0.4', '10.1.0.5', '10.1.0.6']);
  assert.deepEqual(list(hostRange('10.1.0.0/31', '10.1.0.1')), [], 'a /31 has no usable address');
});

test('the search starts after the last reserved address and wraps round to it, as host-local does', () => {
  const r = hostRange('10.244.7.8/29', '10.244.7.9');
  assert.deepEqual(list(r, '10.244.7.12'), ['10.244.7.13', '10.244.7.14', '10.244.7.10', '10.244.7.11', '10.244.7.12']);
  assert.deepEqual(list(r, '10.244.7.14'), ['10.244.7.10', '10.244.7.11', '10.244.7.12', '10.244.7.13', '10.244.7.14'], 'the last one wraps to the start');
  assert.deepEqual(list(r, '10.244.7.9'), ['10.244.7.10', '10.244.7.11', '10.244.7.12', '10.244.7.13', '10.244.7.14'], 'after the gateway');
  assert.deepEqual(list(r, '192.0.2.1'), list(r), 'a last address outside the range is ignored');
});

test('address files hold "<containerID>\\r\\n<ifname>"; old ID-only files belong to every interface of that ID', () => {
  assert.deepEqual(parseOwner('abc\r\neth0'), { containerId: 'abc', ifName: 'eth0' });
  assert.deepEqual(parseOwner('abc\n'), { containerId: 'abc', ifName: '' });
  assert.equal(ownedBy({ ip: '10.0.0.2', containerId: 'abc', ifName: '' }, 'abc', 'net1'), true);
  assert.equal(ownedBy({ ip: '10.0.0.2', containerId: 'abc', ifName: 'eth0' }, 'abc', 'net1'), false);
  assert.equal(ownedBy({ ip: '10.0.0.2', containerId: 'abc', ifName: 'eth0' }, 'abcd', 'eth0'), false);
});

test('allocate writes host-local files, round robin, refuses a second ADD of one attachment, reports exhaustion', async (t) => {
  const dataDir = tempDir(t);
  const range = hostRange('10.244.7.8/29', '10.244.7.9');
  const store = IpamStore.open(dataDir, 'net1');
  t.after(() => store.close());
  const got: string[] = [];
  for (let i = 0; i < 5; i++) got.push(formatIPv4(await allocate(store, range, `c${i}`, 'eth0')));
  assert.deepEqual(got, ['10.244.7.10', '10.244.7.11', '10.244.7.12', '10.244.7.13', '10.244.7.14']);
  const dir = join(dataDir, 'net1');
  assert.equal(readFileSync(join(dir, '10.244.7.12'), 'utf8'), 'c2\r\neth0');
  assert.equal(readFileSync(join(dir, 'last_reserved_ip.0'), 'utf8'), '10.244.7.14');
  assert.deepEqual(readdirSync(dir).sort(), ['10.244.7.10', '10.244.7.11', '10.244.7.12', '10.244.7.13', '10.244.7.14', 'last_reserved_ip.0', 'lock']);

  await assert.rejects(
    allocate(store, range, 'c1', 'eth0'),
    (e: CniError) => e.cniCode === CNI_CODES.ALREADY_ALLOCATED && /c1 eth0 already holds 10\.244\.7\.11/.test(e.message),
  );
  await assert.rejects(
    allocate(store, range, 'c9', 'eth0'),
    (e: CniError) => e.cniCode === CNI_CODES.ADDRESS_EXHAUSTED && /no free address in 10\.244\.7\.8\/29/.test(e.message),
  );
  assert.equal(freeAddresses(store, range), 0);

  // Release one in the middle: the next search starts after the last reserved (.14), wraps, and finds .11.
  assert.deepEqual(await store.withLock(() => store.release('c1', 'eth0')), ['10.244.7.11']);
  assert.equal(freeAddresses(store, range), 1);
  assert.equal(formatIPv4(await allocate(store, range, 'c10', 'eth0')), '10.244.7.11');
  // Releasing what is not held is not an error.
  assert.deepEqual(await store.withLock(() => store.release('nobody', 'eth0')), []);
});

test('a file another allocator wrote (host-local) is never handed out again, and lock/last files are not addresses', async (t) => {
  const dataDir = tempDir(t);
  const range = hostRange('10.9.0.0/29', '10.9.0.1');
  const store = IpamStore.open(dataDir, 'shared');
  t.after(() => store.close());
  writeFileSync(join(dataDir, 'shared', '10.9.0.2'), 'other\r\neth0');
  writeFileSync(join(dataDir, 'shared', 'last_reserved_ip.0'), '10.9.0.2');
  assert.equal(formatIPv4(await allocate(store, range, 'mine', 'eth0')), '10.9.0.3');
  assert.deepEqual(
    store
      .allocations()
      .map((a) => a.ip)
      .sort(),
    ['10.9.0.2', '10.9.0.3'],
  );
});

test('changes without the lock are refused (a bug guard, not a user error)', (t) => {
  const store = IpamStore.open(tempDir(t), 'n');
  t.after(() => store.close());
  assert.throws(() => store.reserve(parseIPv4('10.0.0.2'), 'c', 'eth0'), /need the lock/);
});
