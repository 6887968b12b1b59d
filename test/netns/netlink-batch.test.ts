/**
 * Batches in fresh namespaces: many operations pipelined, one result per op in order, failures that do not stop
 * the others, bad input refused before anything is sent, and chunking across more requests than fit one write.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bridgeJson, freshNetns, ipJson, requireRoot, vtepHost as vtepHostIn } from '../helpers/netns.js';
import { NetlinkError, TULLE_ROUTE_PROTOCOL, type NetlinkOp } from '../../src/netlink/index.js';
import { InvalidValueError } from '../../src/base/errors.js';

requireRoot();

const vtepHost = (t: Parameters<typeof freshNetns>[0]) => vtepHostIn(t, 'batch', { vtepAddress: true });

test('one result per op, in order; failed ops carry their own error and do not stop the rest', async (t) => {
  const { ns, nl } = await vtepHost(t);
  const ops: NetlinkOp[] = [
    { op: 'replaceNeighbor', args: { dev: 'flannel.1', ip: '10.244.2.0', mac: '0e:f0:b5:8c:28:f5' } },
    { op: 'replaceRoute', args: { dst: '10.244.3.0/24', via: '10.244.3.0', dev: 'flannel.9', onlink: true } },
    { op: 'replaceFdb', args: { dev: 'flannel.1', mac: '0e:f0:b5:8c:28:f5', dst: '198.51.100.12' } },
    { op: 'deleteRoute', args: { dst: '10.244.9.0/24', dev: 'flannel.1' } },
    { op: 'replaceRoute', args: { dst: '10.244.2.0/24', via: '10.244.2.0', dev: 'flannel.1', onlink: true } },
    { op: 'addAddress', args: { dev: 'flannel.1', cidr: '10.244.1.0/32' } },
    { op: 'setLink', args: { name: 'eth0p', mtu: 1400 } },
    { op: 'deleteLink', args: { name: 'nosuch' } },
  ];
  const results = await nl.batch(ops);
  assert.deepEqual(
    results.map((r) => r.ok),
    [true, false, true, false, true, false, true, false],
  );
  const errors = results.map((r) => (r.ok ? undefined : r.error));
  assert.ok(errors.every((e) => e === undefined || e instanceof NetlinkError));
  assert.equal(errors[1]!.message, 'route replace 10.244.3.0/24 via 10.244.3.0 dev flannel.9 onlink: ENODEV (No such device): Cannot find device "flannel.9"');
  assert.equal(errors[3]!.errno, 'ESRCH');
  assert.match(errors[3]!.message, /^route del 10\.244\.9\.0\/24 dev flannel\.1: ESRCH \(No such process\)/);
  assert.equal(errors[5]!.errno, 'EEXIST');
  assert.match(errors[5]!.message, /^addr add 10\.244\.1\.0\/32 dev flannel\.1: EEXIST \(File exists\)/);
  assert.equal(errors[7]!.errno, 'ENODEV');

  assert.equal((await ipJson(ns, 'neigh', 'show', '10.244.2.0', 'dev', 'flannel.1'))[0].lladdr, '0e:f0:b5:8c:28:f5');
  assert.equal((await bridgeJson(ns, 'fdb', 'show', 'dev', 'flannel.1'))[0].dst, '198.51.100.12');
  assert.equal((await ipJson(ns, 'route', 'show', '10.244.2.0/24'))[0].gateway, '10.244.2.0');
  assert.equal((await ipJson(ns, 'link', 'show', 'eth0p'))[0].mtu, 1400);
  assert.deepEqual(await nl.batch([]), []);
});

test('bad input anywhere in a batch throws before anything is sent', async (t) => {
  const { ns, nl } = await vtepHost(t);
  const ops: NetlinkOp[] = [
    { op: 'replaceNeighbor', args: { dev: 'flannel.1', ip: '10.244.2.0', mac: '0e:f0:b5:8c:28:f5' } },
    { op: 'replaceRoute', args: { dst: '10.244.2.0/33', dev: 'flannel.1' } },
  ];
  await assert.rejects(nl.batch(ops), (e: unknown) => e instanceof InvalidValueError && e.field === 'route dst');
  assert.deepEqual(await ipJson(ns, 'neigh', 'show', '10.244.2.0', 'dev', 'flannel.1'), []);
});

test('a batch larger than one write (3000 ops, 1000 peers) programs every entry', async (t) => {
  const { ns, nl } = await vtepHost(t);
  const ops: NetlinkOp[] = [];
  for (let i = 0; i < 1000; i++) {
    const net = `10.${100 + (i >> 8)}.${i & 255}`;
    const mac = `02:54:00:00:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`;
    ops.push({ op: 'replaceNeighbor', args: { dev: 'flannel.1', ip: `${net}.0`, mac } });
    ops.push({ op: 'replaceFdb', args: { dev: 'flannel.1', mac, dst: `198.18.${i >> 8}.${i & 255}` } });
    ops.push({ op: 'replaceRoute', args: { dst: `${net}.0/24`, via: `${net}.0`, dev: 'flannel.1', onlink: true } });
  }
  const results = await nl.batch(ops);
  assert.equal(results.filter((r) => r.ok).length, 3000);
  const [neigh, fdb, routes] = await Promise.all([
    ipJson(ns, 'neigh', 'show', 'dev', 'flannel.1'),
    bridgeJson(ns, 'fdb', 'show', 'dev', 'flannel.1'),
    ipJson(ns, 'route', 'show', 'proto', String(TULLE_ROUTE_PROTOCOL)),
  ]);
  assert.equal(neigh.filter((n: any) => n.state?.includes('PERMANENT')).length, 1000);
  assert.equal(fdb.length, 1000);
  assert.equal(routes.length, 1000);
  const last = routes.find((r: any) => r.dst === '10.103.231.0/24');
  assert.deepEqual([last?.gateway, last?.flags], ['10.103.231.0', ['onlink']]);
  // And the lists agree with iproute2, entry for entry.
  assert.deepEqual((await nl.listRoutes({ protocol: TULLE_ROUTE_PROTOCOL })).map((r) => r.dst).sort(), routes.map((r: any) => r.dst).sort());
  assert.deepEqual((await nl.listFdb({ dev: 'flannel.1' })).map((f) => `${f.mac} ${f.dst}`).sort(), fdb.map((f: any) => `${f.mac} ${f.dst}`).sort());
});
