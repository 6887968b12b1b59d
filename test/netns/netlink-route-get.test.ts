/**
 * `ip route get` over netlink (RTM_GETROUTE with the packet's addresses): the kernel's own answer for flannel's
 * onlink route, a local address, a forwarded packet (iif), and each way a lookup fails, compared with what
 * `ip -j route get` and `ip -j route get fibmatch` report in the same namespace.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ip, ipJson, isNetlinkError, requireRoot, vtepHost } from '../helpers/netns.js';
import { NetlinkError, TULLE_ROUTE_PROTOCOL } from '../../src/netlink/index.js';
import { InvalidValueError } from '../../src/base/errors.js';
import { execIn } from '../../src/netns/netns.js';

requireRoot();

test("route get: flannel's onlink route, as ip route get and ip route get fibmatch read it", async (t) => {
  const { ns, nl } = await vtepHost(t, 'rget', { vtepAddress: true });
  await nl.replaceRoute({ dst: '10.244.2.0/24', via: '10.244.2.0', dev: 'flannel.1', onlink: true });
  const { result, entry } = await nl.getRoute({ dst: '10.244.2.7' });
  const j = (await ipJson(ns, 'route', 'get', '10.244.2.7'))[0];
  assert.deepEqual([result.dst, result.via, result.dev, result.src, result.type], [`${j.dst}/32`, j.gateway, j.dev, j.prefsrc, undefined]);
  const f = (await ipJson(ns, 'route', 'get', 'fibmatch', '10.244.2.7'))[0];
  assert.deepEqual([entry.dst, entry.via, entry.dev, entry.onlink, String(entry.protocol)], [f.dst, f.gateway, f.dev, f.flags.includes('onlink'), f.protocol]);
  assert.equal(entry.protocol, TULLE_ROUTE_PROTOCOL);

  // The underlay: a connected route, and this host's own address (type local, delivered here).
  const under = await nl.getRoute({ dst: '192.0.2.12', from: '192.0.2.11' });
  assert.deepEqual([under.result.dev, under.result.via, under.entry.dst, under.entry.scope], ['eth0', undefined, '192.0.2.0/24', 'link']);
  const local = await nl.getRoute({ dst: '10.244.1.0' });
  assert.equal(local.result.type, 'local');
  assert.equal((await ipJson(ns, 'route', 'get', '10.244.1.0'))[0].type, 'local');
});

test('route get: a forwarded packet (iif) is looked up as the kernel forwards it; errors name the lookup', async (t) => {
  const { ns, nl } = await vtepHost(t, 'rgetf', { vtepAddress: true });
  await nl.replaceRoute({ dst: '10.244.2.0/24', via: '10.244.2.0', dev: 'flannel.1', onlink: true });
  await ip(ns, 'link', 'set', 'eth0p', 'up');

  // Forwarding off: the kernel refuses to forward what comes in on eth0p (as `ip route get ... iif` says).
  await execIn(ns, ['sysctl', '-qw', 'net.ipv4.ip_forward=0']);
  await assert.rejects(
    nl.getRoute({ dst: '10.244.2.7', from: '192.0.2.99', iif: 'eth0p' }),
    (e: unknown) => e instanceof NetlinkError && e.command === 'route get 10.244.2.7 from 192.0.2.99 iif eth0p',
  );
  assert.notEqual(
    (await execIn(ns, ['ip', 'route', 'get', '10.244.2.7', 'from', '192.0.2.99', 'iif', 'eth0p'], { allowFailure: true })).status,
    0,
    'ip route get fails the same way',
  );

  await execIn(ns, ['sysctl', '-qw', 'net.ipv4.ip_forward=1']);
  const fwd = await nl.getRoute({ dst: '10.244.2.7', from: '192.0.2.99', iif: 'eth0p' });
  const j = (await ipJson(ns, 'route', 'get', '10.244.2.7', 'from', '192.0.2.99', 'iif', 'eth0p'))[0];
  assert.deepEqual([fwd.result.dev, fwd.result.via, fwd.result.iif, fwd.entry.dst], [j.dev, j.gateway, j.iif, '10.244.2.0/24']);

  await assert.rejects(nl.getRoute({ dst: '203.0.113.9' }), isNetlinkError('ENETUNREACH', /^route get 203\.0\.113\.9: ENETUNREACH/));
  await assert.rejects(nl.getRoute({ dst: '10.244.2.7', from: '192.0.2.99', iif: 'nosuch0' }), isNetlinkError('ENODEV', /Cannot find device "nosuch0"/));
  for (const [q, field] of [
    [{ dst: '10.244.2.300' }, 'route get dst'],
    [{ dst: '10.244.2.7', from: 'fd00::1' }, 'route get from'],
    [{ dst: '10.244.2.7', iif: 'x'.repeat(40) }, 'route get iif'],
    [{ dst: '10.244.2.7', mark: -1 }, 'route get mark'],
  ] as const) {
    await assert.rejects(nl.getRoute(q), (e: unknown) => e instanceof InvalidValueError && e.field === field, JSON.stringify(q));
  }
});
