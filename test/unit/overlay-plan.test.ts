import { test } from 'node:test';
import assert from 'node:assert/strict';
import { hostContext } from '../helpers/leases.js';
import { macNumber, parseIPv4 } from '../../src/base/ip.js';
import { fdbOf, neighborOf, planMatches, planPeer, planPeers, routeOf, type PeerPlan } from '../../src/overlay/plan.js';
import { diffOverlay, describeWrite, rollbackWrites } from '../../src/overlay/diff.js';
import { KernelView } from '../../src/overlay/kernel-view.js';

const ctx = hostContext('10.244.1.0/24');
/** What a plan stands for: its entries in words and its numbers (the entries are made when asked). */
function entriesOf(p: PeerPlan) {
  return { subnet: p.subnet, route: routeOf(p), neighbor: neighborOf(p), fdb: fdbOf(p), numbers: p.numbers };
}

const leases = [
  { subnet: '10.244.1.0/24', publicIP: '192.0.2.11', vtepMac: '1a:8b:21:85:a9:3a' },
  { subnet: '10.244.2.0/24', publicIP: '192.0.2.12', vtepMac: '86:EE:F2:6C:FF:32' },
  { subnet: '10.244.3.0/24', publicIP: '198.51.100.13', vtepMac: '2a:d1:57:50:83:74' },
];

test('each peer gets the seed-000 neighbour, FDB and onlink route; the own lease is skipped', () => {
  const plans = planPeers(ctx, leases);
  assert.deepEqual([...plans.keys()], ['10.244.2.0/24', '10.244.3.0/24']);
  const writes = diffOverlay(plans, KernelView.of('flannel.1', 84, {}))
    .peers.get('10.244.2.0/24')!
    .map(describeWrite);
  assert.deepEqual(writes, [
    'ip neigh replace 10.244.2.0 lladdr 86:ee:f2:6c:ff:32 dev flannel.1 nud permanent',
    'bridge fdb replace 86:ee:f2:6c:ff:32 dev flannel.1 dst 192.0.2.12 self permanent',
    'ip route add 10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink proto 84',
  ]);
});

test('DirectRouting: a peer on the same segment gets a route via its public IP and no neighbour/FDB', () => {
  const plans = planPeers({ ...ctx, directRouting: true }, leases);
  assert.deepEqual(entriesOf(plans.get('10.244.2.0/24')!), {
    subnet: '10.244.2.0/24',
    route: { dst: '10.244.2.0/24', via: '192.0.2.12', dev: 'eth0', onlink: false, protocol: 84 },
    neighbor: undefined,
    fdb: undefined,
    numbers: { route: parseIPv4('10.244.2.0') * 64 + 24, via: parseIPv4('192.0.2.12'), neighborIp: NaN, mac: NaN, fdbDst: NaN },
  });
  assert.deepEqual(plans.get('10.244.3.0/24')!.numbers, {
    route: parseIPv4('10.244.3.0') * 64 + 24,
    via: parseIPv4('10.244.3.0'),
    neighborIp: parseIPv4('10.244.3.0'),
    mac: macNumber('2a:d1:57:50:83:74'),
    fdbDst: parseIPv4('198.51.100.13'),
  });
  assert.ok(fdbOf(plans.get('10.244.3.0/24')!), 'a peer behind a router still goes over VXLAN');
});

test('a kernel that already matches produces no writes at all', () => {
  const plans = planPeers(ctx, leases);
  const all = [...plans.values()];
  const view = KernelView.of('flannel.1', 84, { neighbors: all.map((p) => neighborOf(p)!), fdb: all.map((p) => fdbOf(p)!), routes: all.map(routeOf) });
  const d = diffOverlay(plans, view);
  assert.equal(d.removals.length, 0);
  assert.equal(d.peers.size, 0);
});

test('stale entries are removed route first; a changed VtepMAC leaves no stale FDB entry', () => {
  const plans = planPeers(ctx, leases.slice(0, 2)); // 10.244.3.0/24 left
  const view = KernelView.of('flannel.1', 84, {
    neighbors: [
      { dev: 'flannel.1', ip: '10.244.2.0', mac: '00:11:22:33:44:55' }, // old MAC
      { dev: 'flannel.1', ip: '10.244.3.0', mac: '2a:d1:57:50:83:74' },
    ],
    fdb: [
      { dev: 'flannel.1', mac: '00:11:22:33:44:55', dst: '192.0.2.12' },
      { dev: 'flannel.1', mac: '2a:d1:57:50:83:74', dst: '198.51.100.13' },
    ],
    routes: [
      { dst: '10.244.2.0/24', via: '10.244.2.0', dev: 'flannel.1', onlink: true, protocol: 84 },
      { dst: '10.244.3.0/24', via: '10.244.3.0', dev: 'flannel.1', onlink: true, protocol: 84 },
    ],
  });
  const d = diffOverlay(plans, view);
  assert.deepEqual(d.removals.map(describeWrite), [
    'ip route del 10.244.3.0/24 via 10.244.3.0 dev flannel.1 onlink proto 84',
    'ip neigh del 10.244.3.0 dev flannel.1',
    'bridge fdb del 00:11:22:33:44:55 dev flannel.1 dst 192.0.2.12 self',
    'bridge fdb del 2a:d1:57:50:83:74 dev flannel.1 dst 198.51.100.13 self',
  ]);
  assert.deepEqual(
    d.peers.get('10.244.2.0/24')!.map((w) => `${w.op} ${w.kind}`),
    ['replace neighbor', 'replace fdb'],
  );
});

test('rollback deletes what a peer had written, last first', () => {
  const writes = diffOverlay(planPeers(ctx, leases), KernelView.of('flannel.1', 84, {})).peers.get('10.244.3.0/24')!;
  assert.deepEqual(
    rollbackWrites(writes.slice(0, 2)).map((w) => `${w.op} ${w.kind}`),
    ['delete fdb', 'delete neighbor'],
  );
});

test('planMatches says whether planPeer would make the same plan again, for VXLAN and DirectRouting peers alike', () => {
  const contexts = [ctx, { ...ctx, directRouting: true }];
  const base = { subnet: '10.244.2.0/24', publicIP: '192.0.2.12', vtepMac: '86:ee:f2:6c:ff:32' };
  const variants = [
    base,
    { ...base }, // the same lease as another object (read again from the store)
    { ...base, vtepMac: '86:EE:F2:6C:FF:32' }, // the same MAC, upper case
    { ...base, vtepMac: '86:ee:f2:6c:ff:33' },
    { ...base, publicIP: '192.0.2.13' }, // same segment: direct for DirectRouting
    { ...base, publicIP: '198.51.100.12' }, // behind a router: VXLAN even with DirectRouting
    { ...base, subnet: '10.244.3.0/24' },
  ];
  for (const c of contexts)
    for (const a of variants)
      for (const b of variants) {
        const same = JSON.stringify(entriesOf(planPeer(c, a))) === JSON.stringify(entriesOf(planPeer(c, b)));
        assert.equal(planMatches(planPeer(c, a), b), same, `${JSON.stringify(a)} -> ${JSON.stringify(b)}, directRouting ${c.directRouting}`);
      }
});

test('a lease decoded with its numbers is planned exactly as the same lease read from its text', () => {
  const decoded = (l: (typeof leases)[number]) => {
    const [net, prefix] = l.subnet.split('/');
    return { ...l, numbers: { network: parseIPv4(net!), prefix: Number(prefix), publicIP: parseIPv4(l.publicIP), vtepMac: macNumber(l.vtepMac) } };
  };
  for (const c of [ctx, { ...ctx, directRouting: true }]) {
    for (const l of leases) assert.deepEqual(entriesOf(planPeer(c, decoded(l))), entriesOf(planPeer(c, l)), `${l.subnet}, DirectRouting ${c.directRouting}`);
  }
});
