/**
 * Addresses and routes over netlink in fresh namespaces, read back with `ip -j addr` / `ip -j route`, including
 * the error of each operation and the list shapes that compare equal to the requested ones.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { freshNetns, ipJson, isNetlinkError, requireRoot, vtepHost as vtepHostIn } from '../helpers/netns.js';
import { TULLE_ROUTE_PROTOCOL, normalizeRoute, type Route } from '../../src/netlink/index.js';
import { InvalidValueError } from '../../src/base/errors.js';

requireRoot();

const vtepHost = (t: Parameters<typeof freshNetns>[0]) => vtepHostIn(t, 'route');

test('addresses: add, list (same as ip), delete; EEXIST, EADDRNOTAVAIL, ENODEV, invalid', async (t) => {
  const { ns, nl } = await vtepHost(t);
  await nl.addAddress('flannel.1', '10.244.1.0/32');
  await nl.addAddress('flannel.1', 'fd00:244:1::/128');
  const ours = (await nl.listAddresses('flannel.1')).filter((a) => a.scope === 'global');
  assert.deepEqual(
    ours.map((a) => [a.cidr, a.address, a.prefix, a.family]),
    [
      ['10.244.1.0/32', '10.244.1.0', 32, 4],
      ['fd00:244:1::/128', 'fd00:244:1::', 128, 6],
    ],
  );
  const info = (await ipJson(ns, 'addr', 'show', 'dev', 'flannel.1'))[0].addr_info.filter((a: any) => a.scope === 'global');
  assert.deepEqual(
    info.map((a: any) => `${a.local}/${a.prefixlen}`),
    ['10.244.1.0/32', 'fd00:244:1::/128'],
  );
  assert.ok((await nl.listAddresses()).some((a) => a.dev === 'eth0' && a.cidr === '192.0.2.11/24'));

  await assert.rejects(
    nl.addAddress('flannel.1', '10.244.1.0/32'),
    isNetlinkError('EEXIST', /^addr add 10\.244\.1\.0\/32 dev flannel\.1: EEXIST \(File exists\)/),
  );
  await nl.deleteAddress('flannel.1', '10.244.1.0/32');
  assert.equal(
    (await nl.listAddresses('flannel.1')).some((a) => a.cidr === '10.244.1.0/32'),
    false,
  );
  await assert.rejects(
    nl.deleteAddress('flannel.1', '10.244.1.0/32'),
    isNetlinkError('EADDRNOTAVAIL', /^addr del 10\.244\.1\.0\/32 dev flannel\.1: EADDRNOTAVAIL \(Cannot assign requested address\)/),
  );
  await assert.rejects(
    nl.addAddress('nosuch', '10.0.0.1/24'),
    isNetlinkError('ENODEV', 'addr add 10.0.0.1/24 dev nosuch: ENODEV (No such device): Cannot find device "nosuch"'),
  );
  await assert.rejects(nl.addAddress('flannel.1', '10.0.0.1/40'), (e: unknown) => e instanceof InvalidValueError && e.field === 'address');
});

test("flannel's onlink route: replace, read by ip, listed equal to the request, replace again, delete", async (t) => {
  const { ns, nl } = await vtepHost(t);
  const route: Route = { dst: '10.244.2.0/24', via: '10.244.2.0', dev: 'flannel.1', onlink: true };
  await nl.replaceRoute(route);
  const j = (await ipJson(ns, 'route', 'show', '10.244.2.0/24'))[0];
  assert.deepEqual([j.dst, j.gateway, j.dev, j.protocol, j.flags], ['10.244.2.0/24', '10.244.2.0', 'flannel.1', String(TULLE_ROUTE_PROTOCOL), ['onlink']]);
  assert.deepEqual(await nl.listRoutes({ dev: 'flannel.1' }), [normalizeRoute(route)]);
  assert.deepEqual(await nl.listRoutes({ protocol: TULLE_ROUTE_PROTOCOL }), [normalizeRoute(route)]);

  await nl.replaceRoute({ ...route, via: '10.244.2.1' }); // replace, not add: still one route
  const routes = await ipJson(ns, 'route', 'show', '10.244.2.0/24');
  assert.deepEqual(
    routes.map((r: any) => r.gateway),
    ['10.244.2.1'],
  );

  await nl.deleteRoute({ dst: '10.244.2.0/24', dev: 'flannel.1' });
  assert.deepEqual(await ipJson(ns, 'route', 'show', '10.244.2.0/24'), []);
  await assert.rejects(
    nl.deleteRoute({ dst: '10.244.2.0/24', dev: 'flannel.1' }),
    isNetlinkError('ESRCH', /^route del 10\.244\.2\.0\/24 dev flannel\.1: ESRCH \(No such process\)/),
  );
});

test('route errors read like the ip command: unreachable gateway without onlink, missing device, bad prefix', async (t) => {
  const { nl } = await vtepHost(t);
  await assert.rejects(
    nl.replaceRoute({ dst: '10.244.2.0/24', via: '10.244.2.0', dev: 'flannel.1' }),
    isNetlinkError('ENETUNREACH', /^route replace 10\.244\.2\.0\/24 via 10\.244\.2\.0 dev flannel\.1: ENETUNREACH \(Network is unreachable\)/),
  );
  await assert.rejects(
    nl.replaceRoute({ dst: '10.244.2.0/24', via: '10.244.2.0', dev: 'flannel.9', onlink: true }),
    isNetlinkError('ENODEV', 'route replace 10.244.2.0/24 via 10.244.2.0 dev flannel.9 onlink: ENODEV (No such device): Cannot find device "flannel.9"'),
  );
  await assert.rejects(nl.replaceRoute({ dst: '10.244.2.7/24', dev: 'flannel.1' }), (e: unknown) => e instanceof InvalidValueError && e.field === 'route dst');
  assert.deepEqual(await nl.listRoutes({ dev: 'flannel.1' }), []);
});

test('routes in another table, with metric, src, scope and protocol; list filters by table, protocol and device', async (t) => {
  const { ns, nl } = await vtepHost(t);
  const inTable: Route = { dst: '10.245.0.0/16', dev: 'eth0', table: 1000, metric: 50, src: '192.0.2.11', protocol: 4 };
  const gateway: Route = { dst: 'default', via: '192.0.2.1', dev: 'eth0' };
  const host: Route = { dst: '10.244.1.5/32', dev: 'flannel.1', scope: 'link' };
  for (const r of [inTable, gateway, host]) await nl.replaceRoute(r);
  const t1000 = await ipJson(ns, 'route', 'show', 'table', '1000');
  assert.deepEqual([t1000[0].dst, t1000[0].metric, t1000[0].prefsrc, t1000[0].protocol], ['10.245.0.0/16', 50, '192.0.2.11', 'static']);
  assert.deepEqual(await nl.listRoutes({ table: 1000 }), [normalizeRoute(inTable)]);
  const main = await nl.listRoutes({ protocol: TULLE_ROUTE_PROTOCOL });
  assert.deepEqual(
    main.sort((a, b) => a.dst.localeCompare(b.dst)),
    [normalizeRoute(host), normalizeRoute(gateway)].sort((a, b) => a.dst.localeCompare(b.dst)),
  );
  const all = await nl.listRoutes({ table: 0 });
  assert.ok(all.some((r) => r.table === 1000) && all.some((r) => r.table === 255 && r.type === 'local'));
  await assert.rejects(
    nl.listRoutes({ dev: 'nosuch' }),
    isNetlinkError('ENODEV', 'route show dev nosuch: ENODEV (No such device): Cannot find device "nosuch"'),
  );
  // The kernel's own connected route is listed with its protocol and preferred source.
  assert.deepEqual(
    (await nl.listRoutes({ dev: 'eth0' })).find((r) => r.dst === '192.0.2.0/24'),
    { dst: '192.0.2.0/24', dev: 'eth0', scope: 'link', table: 254, protocol: 2, src: '192.0.2.11' },
  );
});
