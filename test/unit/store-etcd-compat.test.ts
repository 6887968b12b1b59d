/**
 * tulle next to flanneld on one etcd: the config and leases are written here with etcdctl exactly as flanneld
 * writes them (its JSON, its key names, a 24 h etcd lease per subnet, dual-stack keys) and tulle must read
 * them; what tulle writes must read back through etcdctl in flannel's format with an etcd lease attached.
 * Also: TLS with client certificates plus password authentication, and clear errors for bad credentials.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidValueError } from '../../src/base/errors.js';
import { configKey, DEFAULT_PREFIX, subnetsPrefix } from '../../src/store/keys.js';
import { openRegistry } from '../../src/store/open.js';
import { StoreError, StoreUnavailableError } from '../../src/store/registry.js';
import { LeaseManager } from '../../src/subnet/manager.js';
import { mac, nextBatch, summary } from './store-contract.js';
import { startEtcd, type EtcdServer } from './store-etcd-server.js';

/** `etcdctl lease grant` then `etcdctl put --lease`: how flanneld stores a subnet with its TTL. */
async function putWithLease(etcd: EtcdServer, key: string, value: string, ttlSeconds: number): Promise<string> {
  const granted = await etcd.etcdctl(['lease', 'grant', String(ttlSeconds)]);
  const id = /lease ([0-9a-f]+) granted/.exec(granted)?.[1];
  assert.ok(id, granted);
  await etcd.etcdctl(['put', `--lease=${id}`, key, value]);
  return id;
}

test('etcd: config and leases written as flanneld writes them are read; tulle writes flannel format with an etcd lease', async (t) => {
  const etcd = await startEtcd(t);
  const prefix = DEFAULT_PREFIX;
  // flannel's documentation writes the config by hand; Go reads keys case-insensitively.
  await etcd.etcdctl(['put', configKey(prefix), '{"network": "10.1.0.0/16", "subnetLen": 24, "backend": {"type": "vxlan", "vni": 1}}']);
  const flannelLease = '{"PublicIP":"198.51.100.5","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"AA:BB:CC:DD:EE:01"}}';
  await putWithLease(etcd, `${subnetsPrefix(prefix)}10.1.5.0-24`, flannelLease, 86400);
  const dualStack =
    '{"PublicIP":"198.51.100.6","PublicIPv6":"fc00::6","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:02"},"BackendV6Data":{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:03"}}';
  await putWithLease(etcd, `${subnetsPrefix(prefix)}10.1.6.0-24&fc00:0:0:6::-64`, dualStack, 86400);

  const registry = await openRegistry(etcd.url);
  t.after(() => registry.close());
  const m = new LeaseManager(registry);
  const config = await m.getNetworkConfig();
  assert.deepEqual(config, {
    Network: '10.1.0.0/16',
    SubnetLen: 24,
    SubnetMin: '10.1.1.0',
    SubnetMax: '10.1.255.0',
    Backend: { Type: 'vxlan', VNI: 1, Port: 8472, MTU: 0, GBP: false, DirectRouting: false, Learning: false },
  });

  const { leases, malformed } = await m.listLeases();
  assert.deepEqual(malformed, []);
  const bySubnet = new Map(leases.map((l) => [l.subnet, l]));
  const single = bySubnet.get('10.1.5.0/24');
  assert.ok(single);
  assert.equal(single.publicIP, '198.51.100.5');
  assert.deepEqual(single.backendData, { VNI: 1, VtepMAC: 'aa:bb:cc:dd:ee:01' });
  assert.deepEqual(single.extra, { PublicIPv6: null });
  const remaining = single.expiration!.getTime() - Date.now();
  assert.ok(remaining > 86_000_000 && remaining <= 86_400_000, `${remaining} ms left`);
  const dual = bySubnet.get('10.1.6.0/24');
  assert.ok(dual);
  assert.equal(dual.key, `${subnetsPrefix(prefix)}10.1.6.0-24&fc00:0:0:6::-64`);
  assert.deepEqual(dual.extra, { PublicIPv6: 'fc00::6', BackendV6Data: { VNI: 1, VtepMAC: 'aa:bb:cc:dd:ee:03' } });

  // A tulle host joins: it gets a subnet of its own and writes flannel's JSON with a 24 h etcd lease.
  const mine = await m.acquire({ publicIP: '198.51.100.7', backendData: { VNI: 1, VtepMAC: mac(7) } });
  assert.ok(!['10.1.5.0/24', '10.1.6.0/24'].includes(mine.subnet), mine.subnet);
  const json = await etcd.etcdctl(['get', mine.key, '-w', 'json']);
  const got = JSON.parse(json) as { kvs: Array<{ value: string }> };
  assert.equal(
    Buffer.from(got.kvs[0]!.value, 'base64').toString(),
    `{"PublicIP":"198.51.100.7","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"${mac(7)}"}}`,
  );
  const leaseId = /"lease":(\d+)/.exec(json)?.[1]; // a 64-bit number: read as text, JSON.parse would round it
  assert.ok(leaseId && leaseId !== '0', 'the key is attached to an etcd lease');
  const ttl = await etcd.etcdctl(['lease', 'timetolive', BigInt(leaseId).toString(16)]);
  assert.match(ttl, /granted with TTL\(86400s\)/);

  // The flannel host restarts as a tulle host: it gets its subnet back, and flannel's extra field stays.
  const back = await m.acquire({ publicIP: '198.51.100.5', backendData: { VNI: 1, VtepMAC: mac(5) } });
  assert.equal(back.subnet, '10.1.5.0/24');
  assert.equal(
    await etcd.etcdctl(['get', '--print-value-only', back.key]),
    `{"PublicIP":"198.51.100.5","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"${mac(5)}"},"PublicIPv6":null}\n`,
  );

  // flanneld's own watch output path: a lease it deletes is seen by tulle's watcher.
  const w = m.watch({ excludeSubnet: mine.subnet });
  t.after(() => w.close());
  assert.deepEqual(summary(await nextBatch(w)), ['added 10.1.5.0/24 198.51.100.5', 'added 10.1.6.0/24 198.51.100.6']);
  await etcd.etcdctl(['del', dual.key]);
  assert.deepEqual(summary(await nextBatch(w)), ['removed 10.1.6.0/24 198.51.100.6']);
});

test('etcd: TLS with a client certificate and password authentication', async (t) => {
  const auth = { username: 'tulle', password: 's3cret' };
  const etcd = await startEtcd(t, { tls: true, auth });
  const tls = etcd.tls!;
  const registry = await openRegistry(etcd.url, { tls, auth });
  t.after(() => registry.close());
  await registry.put(configKey(DEFAULT_PREFIX), '{"Network":"10.244.0.0/16"}');
  const m = new LeaseManager(registry);
  const lease = await m.acquire({ publicIP: '192.0.2.11', backendData: { VNI: 1, VtepMAC: mac(1) } });
  assert.match(await etcd.etcdctl(['get', '--print-value-only', lease.key]), /"PublicIP":"192\.0\.2\.11"/);
  const w = m.watch();
  t.after(() => w.close());
  assert.deepEqual(summary(await nextBatch(w)), [`added ${lease.subnet} 192.0.2.11`]);

  const wrongPassword = await openRegistry(etcd.url, { tls, auth: { username: 'tulle', password: 'nope' }, requestTimeoutMs: 3000 });
  t.after(() => wrongPassword.close());
  await assert.rejects(
    wrongPassword.get(configKey(DEFAULT_PREFIX)),
    (e: unknown) => e instanceof StoreError && /authentication failed|invalid/i.test(e.message),
  );

  const noAuth = await openRegistry(etcd.url, { tls, requestTimeoutMs: 3000 });
  t.after(() => noAuth.close());
  await assert.rejects(
    noAuth.get(configKey(DEFAULT_PREFIX)),
    (e: unknown) => e instanceof StoreError && /user name is empty|permission denied|not capable/i.test(e.message),
  );

  const noCertificate = await openRegistry(etcd.url, { tls: { caFile: tls.caFile }, auth, requestTimeoutMs: 3000 });
  t.after(() => noCertificate.close());
  await assert.rejects(noCertificate.get(configKey(DEFAULT_PREFIX)), (e: unknown) => e instanceof StoreUnavailableError || e instanceof StoreError);

  await assert.rejects(
    openRegistry(etcd.url, { tls: { caFile: '/nonexistent/ca.pem' } }),
    (e: unknown) => e instanceof InvalidValueError && e.field === '--etcd-cafile' && /cannot be read \(ENOENT\)/.test(e.message),
  );
  await assert.rejects(
    openRegistry(etcd.url, { tls: { certFile: tls.certFile } }),
    (e: unknown) => e instanceof InvalidValueError && e.field === '--etcd-keyfile',
  );
});
