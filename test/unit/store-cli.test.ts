/**
 * `tulle config put|get` and `tulle leases`, run as a user runs them (bin/tulle in a child process), on an
 * SQLite file and on a real etcd: output, exit codes, and one clear line for every bad input.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from '../../src/base/exec.js';
import { assertOneLineError } from '../helpers/cli.js';
import { openRegistry } from '../../src/store/open.js';
import { subnetsPrefix, DEFAULT_PREFIX } from '../../src/store/keys.js';
import { LeaseManager } from '../../src/subnet/manager.js';
import { mac } from './store-contract.js';
import { startEtcd } from './store-etcd-server.js';

const TULLE = fileURLToPath(new URL('../../../bin/tulle', import.meta.url));

async function tulle(args: string[], input?: string, env: NodeJS.ProcessEnv = {}): Promise<{ stdout: string; stderr: string; status: number | null }> {
  return run([process.execPath, TULLE, ...args], { allowFailure: true, input: input ?? '', env: { ...process.env, TULLE_STORE: '', ...env } });
}

function tempDir(t: { after(fn: () => unknown): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'tulle-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('config put validates and writes, config get prints it back, leases lists the table and JSON (sqlite)', async (t) => {
  const dir = tempDir(t);
  const store = `sqlite:${join(dir, 'tulle.db')}`;
  const conf = '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","VNI":1}}';
  writeFileSync(join(dir, 'net-conf.json'), conf);

  const put = await tulle(['config', 'put', '--store', store, join(dir, 'net-conf.json')]);
  assert.equal(put.status, 0, put.stderr);
  assert.match(
    put.stdout,
    /wrote \/coreos\.com\/network\/config in sqlite:.*: Network 10\.244\.0\.0\/16, \/24 subnets 10\.244\.1\.0\.\.10\.244\.255\.0 \(255\), vxlan VNI 1 port 8472/,
  );
  assert.equal((await tulle(['config', 'get'], '', { TULLE_STORE: store })).stdout, `${conf}\n`, 'the store URL comes from TULLE_STORE');
  const effective = JSON.parse((await tulle(['config', 'get', '--store', store, '--effective'])).stdout);
  assert.deepEqual([effective.SubnetLen, effective.SubnetMin, effective.Backend.Port], [24, '10.244.1.0', 8472]);

  // From standard input, under another prefix.
  const other = await tulle(['config', 'put', '--store', store, '--prefix', '/tulle/net2', '-'], '{"Network":"10.50.0.0/16","SubnetLen":20}');
  assert.equal(other.status, 0, other.stderr);
  assert.match((await tulle(['config', 'get', '--store', store, '--prefix', '/tulle/net2'])).stdout, /10\.50\.0\.0\/16/);

  const registry = await openRegistry(store);
  t.after(() => registry.close());
  const m = new LeaseManager(registry);
  const a = await m.acquire({ publicIP: '192.0.2.11', backendData: { VNI: 1, VtepMAC: mac(1) }, previousSubnet: '10.244.2.0/24' });
  const b = await m.acquire({ publicIP: '192.0.2.12', backendData: { VNI: 1, VtepMAC: mac(2) }, previousSubnet: '10.244.10.0/24' });
  await registry.put(
    `${subnetsPrefix(DEFAULT_PREFIX)}10.244.200.0-24`,
    '{"PublicIP":"198.51.100.9","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:00:99"}}',
  );
  await registry.put(`${subnetsPrefix(DEFAULT_PREFIX)}10.244.201.0-24`, '{"PublicIP":"bad"}');

  const table = await tulle(['leases', '--store', store]);
  assert.equal(table.status, 0, table.stderr);
  const lines = table.stdout.trimEnd().split('\n');
  assert.match(lines[0]!, /^SUBNET\s+PUBLIC IP\s+VTEP MAC\s+VNI\s+EXPIRES IN\s+STATUS$/);
  assert.match(lines[1]!, new RegExp(`^10\\.244\\.2\\.0/24\\s+192\\.0\\.2\\.11\\s+${mac(1)}\\s+1\\s+23h5\\dm\\s+ok$`));
  assert.match(lines[2]!, new RegExp(`^10\\.244\\.10\\.0/24\\s+192\\.0\\.2\\.12\\s+${mac(2)}\\s+1\\s+23h5\\dm\\s+ok$`), 'sorted by address, not as text');
  assert.match(lines[3]!, /^10\.244\.200\.0\/24\s+198\.51\.100\.9\s+0e:00:00:00:00:99\s+1\s+never \(reservation\)\s+ok$/);
  assert.match(
    lines[4]!,
    /^\/coreos\.com\/network\/subnets\/10\.244\.201\.0-24\s+-\s+-\s+-\s+-\s+rejected: malformed: malformed lease at \S+: PublicIP "bad" is not an IPv4 address$/,
  );
  assert.equal(lines.length, 5);

  const json = JSON.parse((await tulle(['leases', '--store', store, '--json'])).stdout) as Array<Record<string, unknown>>;
  assert.deepEqual(
    json.map((l) => l.subnet),
    ['10.244.2.0/24', '10.244.10.0/24', '10.244.200.0/24', undefined],
  );
  assert.deepEqual(json[3], {
    key: `${subnetsPrefix(DEFAULT_PREFIX)}10.244.201.0-24`,
    rejected: { reason: 'malformed', detail: `malformed lease at ${subnetsPrefix(DEFAULT_PREFIX)}10.244.201.0-24: PublicIP "bad" is not an IPv4 address` },
  });
  assert.deepEqual(json[0], {
    subnet: a.subnet,
    publicIP: '192.0.2.11',
    backendType: 'vxlan',
    backendData: { VNI: 1, VtepMAC: mac(1) },
    expiration: a.expiration!.toISOString(),
    reservation: false,
    key: a.key,
    created: a.created,
    rejected: null,
  });
  assert.equal(json[1]!.key, b.key);
  assert.equal(json[2]!.reservation, true);
  assert.equal(json[2]!.expiration, null);

  // A config that leaves existing leases outside is written, with a warning naming them.
  const narrow = await tulle(['config', 'put', '--store', store, '-'], '{"Network":"10.244.0.0/16","SubnetMin":"10.244.100.0"}');
  assert.equal(narrow.status, 0);
  assert.match(narrow.stderr, /warning: 2 existing lease\(s\) do not fit this config \(10\.244\.2\.0\/24, 10\.244\.10\.0\/24\)/);
});

test('bad input: one clear line and a non-zero exit, nothing written', async (t) => {
  const dir = tempDir(t);
  const store = `sqlite:${join(dir, 'tulle.db')}`;
  assertOneLineError(
    await tulle(['config', 'put', '--store', store, '-'], '{"Network":"10.244.0.0/16","SubnetLen":33}'),
    2,
    /^tulle: SubnetLen: 33 is out of range \(must be 18\.\.30/,
  );
  assertOneLineError(
    await tulle(['config', 'put', '--store', store, '-'], '{"Network":"10.244.0.0/16","Backend":{"Type":"udp"}}'),
    2,
    /Backend\.Type: "udp" is not a supported backend type/,
  );
  assertOneLineError(
    await tulle(['config', 'put', '--store', store, '-'], '{"Network":"10.244.0.0/16","Backend":{"VNI":0}}'),
    2,
    /Backend\.VNI: 0 is out of range \(must be 1\.\.16777215\)/,
  );
  assertOneLineError(await tulle(['config', 'put', '--store', store, '-'], 'Network: 10.244.0.0/16'), 2, /network config: .* is not valid JSON/);
  assertOneLineError(await tulle(['config', 'put', '--store', store, join(dir, 'missing.json')]), 2, /FILE: ".*missing\.json" cannot be read \(ENOENT\)/);
  assertOneLineError(await tulle(['config', 'get', '--store', store]), 1, /store error: .*tulle\.db does not exist \(write the network config first/);
  assertOneLineError(await tulle(['leases', '--store', 'mysql://x']), 2, /--store: "mysql:\/\/x" is not a store URL/);
  assertOneLineError(await tulle(['leases', '--store', 'etcd://127.0.0.1']), 2, /endpoint "127\.0\.0\.1" is not HOST:PORT/);
  assertOneLineError(await tulle(['leases', '--store', store, '--prefix', 'nope']), 2, /--prefix: "nope" is not a key prefix/);
  assertOneLineError(await tulle(['leases', '--store', 'etcd://127.0.0.1:9', '--etcd-username', 'u']), 2, /--etcd-username and --etcd-password go together/);
  // Nothing was written by the failed puts: the file was never even created.
  assertOneLineError(await tulle(['leases', '--store', store]), 1, /does not exist/);

  await tulle(['config', 'put', '--store', store, '-'], '{"Network":"10.244.0.0/16"}');
  assertOneLineError(
    await tulle(['config', 'get', '--store', store, '--prefix', '/other']),
    1,
    /no network config at \/other\/config in sqlite:.* \(write one with: tulle config put/,
  );
});

test('config put and leases on etcd; an unreachable etcd is one line and exit 1', async (t) => {
  const etcd = await startEtcd(t);
  const put = await tulle(['config', 'put', '--store', etcd.url, '-'], '{"Network":"10.244.0.0/16"}');
  assert.equal(put.status, 0, put.stderr);
  assert.equal(await etcd.etcdctl(['get', '--print-value-only', '/coreos.com/network/config']), '{"Network":"10.244.0.0/16"}\n');
  await etcd.etcdctl([
    'put',
    '/coreos.com/network/subnets/10.244.7.0-24',
    '{"PublicIP":"198.51.100.7","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:07"}}',
  ]);
  const table = await tulle(['leases'], '', { TULLE_STORE: etcd.url });
  assert.equal(table.status, 0, table.stderr);
  assert.match(table.stdout, /10\.244\.7\.0\/24\s+198\.51\.100\.7\s+aa:bb:cc:dd:ee:07\s+1\s+never \(reservation\)/);
  await etcd.stop();
  assertOneLineError(
    await tulle(['leases', '--store', etcd.url]),
    1,
    /^tulle: store unreachable: etcd:\/\/127\.0\.0\.1:\d+: list: no etcd answers at this address \(connection refused: is etcd running, and is its client port open\?\) \[TLE_STORE_UNAVAILABLE\]$/,
  );
});
