/**
 * Neighbours and FDB entries over netlink in fresh namespaces, read back with `ip -j neigh` and
 * `bridge -j fdb`: flannel's permanent per-peer entries, the all-zero MAC entries of seeds 001/002 (one per
 * remote, added with append), VNI/port/via, and the error paths.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bridgeJson, freshNetns, ip, ipJson, isNetlinkError, requireRoot, vtepHost as vtepHostIn } from '../helpers/netns.js';
import { normalizeFdb, type Fdb } from '../../src/netlink/index.js';
import { InvalidValueError } from '../../src/base/errors.js';

requireRoot();

const vtepHost = (t: Parameters<typeof freshNetns>[0]) => vtepHostIn(t, 'neigh');

test('neighbours: replace (nud permanent), list like ip neigh, replace with a new MAC, delete', async (t) => {
  const { ns, nl } = await vtepHost(t);
  await nl.replaceNeighbor({ dev: 'flannel.1', ip: '10.244.2.0', mac: '0e:f0:b5:8c:28:f5' });
  await nl.replaceNeighbor({ dev: 'flannel.1', ip: 'fd00:244:2::', mac: '0e:f0:b5:8c:28:f6', state: 'reachable' });
  const j = await ipJson(ns, 'neigh', 'show', 'dev', 'flannel.1');
  const v4 = j.find((n: any) => n.dst === '10.244.2.0');
  assert.deepEqual([v4.lladdr, v4.state], ['0e:f0:b5:8c:28:f5', ['PERMANENT']]);
  const listed = await nl.listNeighbors({ dev: 'flannel.1' });
  assert.deepEqual(
    listed.find((n) => n.ip === '10.244.2.0'),
    { dev: 'flannel.1', ip: '10.244.2.0', mac: '0e:f0:b5:8c:28:f5', state: 'permanent' },
  );
  assert.equal(listed.find((n) => n.ip === 'fd00:244:2::')?.mac, '0e:f0:b5:8c:28:f6');
  assert.deepEqual(
    listed.map((n) => n.ip).sort(),
    j.map((n: any) => n.dst).sort(),
    "the same entries as `ip neigh show`, which hides the kernel's own noarp ones",
  );
  assert.ok((await nl.listNeighbors({ dev: 'flannel.1', all: true })).length >= listed.length);

  await nl.replaceNeighbor({ dev: 'flannel.1', ip: '10.244.2.0', mac: '0e:f0:b5:8c:28:ff' });
  assert.equal((await ipJson(ns, 'neigh', 'show', '10.244.2.0', 'dev', 'flannel.1'))[0].lladdr, '0e:f0:b5:8c:28:ff');

  await nl.deleteNeighbor({ dev: 'flannel.1', ip: '10.244.2.0' });
  assert.deepEqual(await ipJson(ns, 'neigh', 'show', '10.244.2.0', 'dev', 'flannel.1'), []);
  await assert.rejects(
    nl.deleteNeighbor({ dev: 'flannel.1', ip: '10.244.2.0' }),
    isNetlinkError('ENOENT', /^neigh del 10\.244\.2\.0 dev flannel\.1: ENOENT \(No such file or directory\)/),
  );
  await assert.rejects(
    nl.replaceNeighbor({ dev: 'flannel.7', ip: '10.244.2.0', mac: '0e:f0:b5:8c:28:f5' }),
    isNetlinkError(
      'ENODEV',
      'neigh replace 10.244.2.0 lladdr 0e:f0:b5:8c:28:f5 dev flannel.7 nud permanent: ENODEV (No such device): Cannot find device "flannel.7"',
    ),
  );
  await assert.rejects(
    nl.replaceNeighbor({ dev: 'flannel.1', ip: '10.244.2.0', mac: 'zz:f0:b5:8c:28:f5' }),
    (e: unknown) => e instanceof InvalidValueError && e.field === 'neighbor mac',
  );
  await assert.rejects(
    nl.replaceNeighbor({ dev: 'flannel.1', ip: '10.244.2.0', mac: '0e:f0:b5:8c:28:f5', state: 'delay' }),
    (e: unknown) => e instanceof InvalidValueError && e.field === 'neighbor state',
  );
});

test("FDB: flannel's per-peer entry (self permanent, dst), listed equal to the request, replaced, deleted", async (t) => {
  const { ns, nl } = await vtepHost(t);
  const entry: Fdb = { dev: 'flannel.1', mac: '0e:f0:b5:8c:28:f5', dst: '198.51.100.12' };
  await nl.replaceFdb(entry);
  const j = await bridgeJson(ns, 'fdb', 'show', 'dev', 'flannel.1');
  assert.deepEqual(j, [{ mac: '0e:f0:b5:8c:28:f5', dst: '198.51.100.12', flags: ['self'], state: 'permanent' }]);
  assert.deepEqual(await nl.listFdb({ dev: 'flannel.1' }), [normalizeFdb(entry)]);

  await nl.replaceFdb({ ...entry, dst: '198.51.100.13' }); // replace moves the MAC to the new remote
  assert.deepEqual(
    (await bridgeJson(ns, 'fdb', 'show', 'dev', 'flannel.1')).map((e: any) => e.dst),
    ['198.51.100.13'],
  );

  await nl.deleteFdb({ dev: 'flannel.1', mac: '0e:f0:b5:8c:28:f5' });
  assert.deepEqual(await bridgeJson(ns, 'fdb', 'show', 'dev', 'flannel.1'), []);
  await assert.rejects(
    nl.deleteFdb({ dev: 'flannel.1', mac: '0e:f0:b5:8c:28:f5' }),
    isNetlinkError('ENOENT', /^fdb del 0e:f0:b5:8c:28:f5 dev flannel\.1 self permanent: ENOENT/),
  );
  await assert.rejects(
    nl.replaceFdb({ ...entry, dev: 'flannel.2' }),
    isNetlinkError(
      'ENODEV',
      'fdb replace 0e:f0:b5:8c:28:f5 dev flannel.2 dst 198.51.100.12 self permanent: ENODEV (No such device): Cannot find device "flannel.2"',
    ),
  );
  await assert.rejects(nl.replaceFdb({ ...entry, dst: 'not-an-ip' }), (e: unknown) => e instanceof InvalidValueError && e.field === 'fdb dst');
});

test('FDB: all-zero MAC with one entry per remote (seeds 001/002), appended, listed one per remote, deleted one at a time', async (t) => {
  const { ns, nl } = await vtepHost(t);
  const zero = '00:00:00:00:00:00';
  await nl.appendFdb({ dev: 'flannel.1', mac: zero, dst: '192.0.2.12', via: 'eth0' });
  await nl.appendFdb({ dev: 'flannel.1', mac: zero, dst: '192.0.2.13' });
  const j = await bridgeJson(ns, 'fdb', 'show', 'dev', 'flannel.1');
  assert.deepEqual(j.map((e: any) => [e.mac, e.dst, e.viaIf, e.state]).sort(), [
    [zero, '192.0.2.12', 'eth0', 'permanent'],
    [zero, '192.0.2.13', undefined, 'permanent'],
  ]);
  const listed = await nl.listFdb({ dev: 'flannel.1' });
  assert.deepEqual(
    listed.sort((a, b) => a.dst!.localeCompare(b.dst!)),
    [normalizeFdb({ dev: 'flannel.1', mac: zero, dst: '192.0.2.12', via: 'eth0' }), normalizeFdb({ dev: 'flannel.1', mac: zero, dst: '192.0.2.13' })],
  );
  await nl.appendFdb({ dev: 'flannel.1', mac: zero, dst: '192.0.2.13' }); // the same remote again: no duplicate
  assert.equal((await bridgeJson(ns, 'fdb', 'show', 'dev', 'flannel.1')).length, 2);

  // A remote is identified by dst, port, VNI and via together; the kernel (like `bridge fdb del`) reports
  // success for a remote that matches none, so the first delete leaves both entries.
  await nl.deleteFdb({ dev: 'flannel.1', mac: zero, dst: '192.0.2.12' });
  assert.equal((await bridgeJson(ns, 'fdb', 'show', 'dev', 'flannel.1')).length, 2);
  await nl.deleteFdb({ dev: 'flannel.1', mac: zero, dst: '192.0.2.12', via: 'eth0' });
  assert.deepEqual(
    (await bridgeJson(ns, 'fdb', 'show', 'dev', 'flannel.1')).map((e: any) => e.dst),
    ['192.0.2.13'],
  );
});

test('FDB: a remote VNI and port that differ from the device are kept and listed; equal ones are implied', async (t) => {
  const { ns, nl } = await vtepHost(t);
  await nl.replaceFdb({ dev: 'flannel.1', mac: '02:00:00:00:00:01', dst: '192.0.2.21', vni: 7, port: 4789 });
  const [e] = await bridgeJson(ns, 'fdb', 'show', 'dev', 'flannel.1');
  assert.deepEqual([e.vni, e.port], [7, 4789]);
  assert.deepEqual(await nl.listFdb({ dev: 'flannel.1' }), [
    normalizeFdb({ dev: 'flannel.1', mac: '02:00:00:00:00:01', dst: '192.0.2.21', vni: 7, port: 4789 }),
  ]);
  // The bridge's own table: a port's static entry is listed as a master entry with its bridge.
  await ip(ns, 'link', 'add', 'br0', 'type', 'bridge');
  await ip(ns, 'link', 'set', 'eth0p', 'master', 'br0');
  await nl.replaceFdb({ dev: 'eth0p', mac: '02:00:00:00:00:02', self: false });
  const master = (await nl.listFdb({ dev: 'eth0p' })).find((f) => f.mac === '02:00:00:00:00:02');
  assert.deepEqual([master?.self, master?.master, master?.permanent], [false, 'br0', true]);
});
