/**
 * Seed 003's master node, built with tulle's netlink calls only (no `ip` command changes anything), then read
 * back with iproute2 as the seed shows it: `ip -d link show flannel.1` reads `vxlan id 1 local 10.0.4.2 dev eth0
 * srcport 0 0 dstport 8472 nolearning ... noudpcsum`, MTU 1450, and the route, neighbour and FDB entry for the
 * node 10.0.4.14 (VtepMAC 0e:f0:b5:8c:28:f5, subnet 10.244.1.0/24).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { run } from '../../src/base/exec.js';
import { freshNetns, requireRoot } from '../helpers/netns.js';
import { NetlinkClient } from '../../src/netlink/index.js';

requireRoot();

test("seed 003's flannel VTEP, cni0 and per-node entries, built by tulle and read by iproute2", async (t) => {
  const ns = await freshNetns(t, 'seed003');
  const nl = await NetlinkClient.open({ netns: ns });
  t.after(() => nl.close());

  // Underlay eth0 (10.0.4.2/22), as on the seed's master node.
  await nl.createVeth({ name: 'eth0', peerName: 'eth0p' });
  await nl.addAddress('eth0', '10.0.4.2/22');
  await nl.setLink('eth0', { up: true });
  await nl.setLink('eth0p', { up: true });
  // The VTEP and its /32, the pod bridge.
  await nl.createVxlan({
    name: 'flannel.1',
    vni: 1,
    local: '10.0.4.2',
    dev: 'eth0',
    port: 8472,
    learning: false,
    udpCsum: false,
    mac: 'd2:ba:c1:db:b3:77',
    up: true,
  });
  await nl.addAddress('flannel.1', '10.244.0.0/32');
  await nl.createBridge({ name: 'cni0', mtu: 1450, up: true });
  await nl.addAddress('cni0', '10.244.0.1/24');
  // The node 10.0.4.14: neighbour, FDB, route, in flannel's order.
  const results = await nl.batch([
    { op: 'replaceNeighbor', args: { dev: 'flannel.1', ip: '10.244.1.0', mac: '0e:f0:b5:8c:28:f5' } },
    { op: 'replaceFdb', args: { dev: 'flannel.1', mac: '0e:f0:b5:8c:28:f5', dst: '10.0.4.14' } },
    { op: 'replaceRoute', args: { dst: '10.244.1.0/24', via: '10.244.1.0', dev: 'flannel.1', onlink: true } },
  ]);
  assert.deepEqual(results, [{ ok: true }, { ok: true }, { ok: true }]);

  const show = async (...argv: string[]) => (await run(argv)).stdout;
  const link = await show('ip', '-n', ns, '-d', 'link', 'show', 'flannel.1');
  assert.match(link, /flannel\.1: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450 /);
  assert.match(link, /link\/ether d2:ba:c1:db:b3:77 /);
  assert.match(link, /vxlan id 1 local 10\.0\.4\.2 dev eth0 srcport 0 0 dstport 8472 nolearning .*ageing 300 noudpcsum/);

  const routes = await show('ip', '-n', ns, 'route', 'show');
  assert.match(routes, /^10\.244\.1\.0\/24 via 10\.244\.1\.0 dev flannel\.1 proto 84 onlink $/m);
  assert.match(routes, /^10\.244\.0\.0\/24 dev cni0 proto kernel scope link src 10\.244\.0\.1 /m);
  assert.match(routes, /^10\.0\.4\.0\/22 dev eth0 proto kernel scope link src 10\.0\.4\.2 /m);
  assert.match(await show('ip', '-n', ns, 'neigh', 'show', 'dev', 'flannel.1'), /^10\.244\.1\.0 lladdr 0e:f0:b5:8c:28:f5 PERMANENT $/m);
  assert.match(await show('bridge', '-n', ns, 'fdb', 'show', 'dev', 'flannel.1'), /^0e:f0:b5:8c:28:f5 dst 10\.0\.4\.14 self permanent$/m);
  assert.match(await show('ip', '-n', ns, 'addr', 'show', 'dev', 'flannel.1'), /inet 10\.244\.0\.0\/32 scope global flannel\.1/);
});
