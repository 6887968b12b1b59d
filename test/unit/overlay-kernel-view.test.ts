/**
 * KernelView.holdsExactly: the resync's shortcut ("the kernel holds exactly the plans, nothing to write") must say
 * yes exactly when a full diff of the plans against the same view would write nothing. The diff is the oracle:
 * every case below is a kernel one step away from the plans (or equal to them, or differing only in what is not
 * tulle's), read from dump records as the binding makes them.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { hostContext } from '../helpers/leases.js';
import { ipv4Number, macNumber } from '../../src/base/ip.js';
import { fdbOf, neighborOf, planPeers, routeKey, routeOf, type PeerPlan } from '../../src/overlay/plan.js';
import { diffOverlay } from '../../src/overlay/diff.js';
import { KernelView, type PlannedEntries } from '../../src/overlay/kernel-view.js';
import { packNeighborRecords, packRouteRecords, type NeighborRecord, type RouteRecord } from '../../src/netlink/scan.js';

const PROTO = 84;
const VTEP = 7;
const ETH = 2;
const ctx = hostContext('10.244.1.0/24');
const leases = Array.from({ length: 6 }, (_, i) => ({
  subnet: `10.244.${10 + i}.0/24`,
  publicIP: `192.0.2.${20 + i}`,
  vtepMac: `02:00:00:00:00:${(16 + i).toString(16)}`,
}));
const plans = planPeers(ctx, leases);

function planned(p: ReadonlyMap<string, PeerPlan>): PlannedEntries {
  const routes = new Map<number, PeerPlan>();
  const neighbors = new Map<number, number>();
  const fdb = new Map<number, number>();
  for (const plan of p.values()) {
    routes.set(plan.numbers.route, plan);
    if (neighborOf(plan)) neighbors.set(plan.numbers.neighborIp, plan.numbers.mac);
    if (fdbOf(plan)) fdb.set(plan.numbers.mac, plan.numbers.fdbDst);
  }
  return { routes, neighbors, fdb };
}

interface Kernel {
  routes: RouteRecord[];
  neighbors: NeighborRecord[];
  fdb: NeighborRecord[];
}

const route = (dst: string, dstLen: number, via: string, over: Partial<RouteRecord> = {}): RouteRecord => ({
  family: 4,
  dst: ipv4Number(dst),
  dstLen,
  table: 254,
  protocol: PROTO,
  type: 1,
  onlink: true,
  via: ipv4Number(via),
  oif: VTEP,
  ...over,
});
const neighbor = (ip: string, mac: string, over: Partial<NeighborRecord> = {}): NeighborRecord => ({
  family: 2,
  ifindex: VTEP,
  state: 0x80,
  flags: 0,
  ip: ipv4Number(ip),
  mac: macNumber(mac),
  ...over,
});
const fdb = (mac: string, dst: string): NeighborRecord => ({ family: 7, ifindex: VTEP, state: 0x80, flags: 2, ip: ipv4Number(dst), mac: macNumber(mac) });

/** The kernel as the plans want it. */
function asPlanned(): Kernel {
  const k: Kernel = { routes: [], neighbors: [], fdb: [] };
  for (const p of plans.values()) {
    k.routes.push(route(routeOf(p).dst.split('/')[0]!, 24, routeOf(p).via));
    k.neighbors.push(neighbor(neighborOf(p)!.ip, neighborOf(p)!.mac));
    k.fdb.push(fdb(fdbOf(p)!.mac, fdbOf(p)!.dst));
  }
  return k;
}

function view(k: Kernel): KernelView {
  // Split as the binding splits a route dump: tulle's protocol's routes, and the other IPv4 routes' destinations.
  const others = k.routes.filter((r) => r.protocol !== PROTO && r.family === 4 && r.dstLen !== 0);
  const v = KernelView.fromRecords('flannel.1', PROTO, {
    routes: packRouteRecords(k.routes.filter((r) => r.protocol === PROTO)),
    foreign: new Float64Array(others.flatMap((r) => [r.dst, r.dstLen])),
    neighbors: packNeighborRecords(k.neighbors),
    fdb: packNeighborRecords(k.fdb),
  });
  v.nameDevice(VTEP, 'flannel.1');
  v.nameDevice(ETH, 'eth0');
  return v;
}

const cases: Array<[string, (k: Kernel) => void]> = [
  ['exactly the plans', () => {}],
  [
    'plus routes and entries that are not tulle’s',
    (k) => {
      k.routes.push(route('10.244.12.0', 26, '192.0.2.1', { protocol: 4, oif: ETH, onlink: false })); // foreign, in a peer's subnet
      k.routes.push(route('0.0.0.0', 0, '192.0.2.1', { protocol: PROTO, oif: ETH })); // a default route, even of tulle's protocol
      k.routes.push({ ...route('10.244.50.0', 24, '10.244.50.0'), family: 6, dst: NaN, via: NaN }); // IPv6
      k.neighbors.push(neighbor('10.244.99.0', '02:00:00:00:99:99', { state: 0x02 })); // not permanent
      k.neighbors.push(neighbor('10.244.98.0', '02:00:00:00:99:98', { family: 10, ip: NaN })); // IPv6
      k.fdb.push({ ...fdb('02:00:00:00:99:97', '192.0.2.1'), ip: NaN }); // no IPv4 remote
    },
  ],
  ['a route missing', (k) => void k.routes.pop()],
  ['a neighbour missing', (k) => void k.neighbors.shift()],
  ['an FDB entry missing', (k) => void k.fdb.splice(2, 1)],
  ['an extra route of tulle’s', (k) => void k.routes.push(route('10.244.60.0', 24, '10.244.60.0'))],
  ['an extra permanent neighbour', (k) => void k.neighbors.push(neighbor('10.244.60.0', '02:00:00:00:60:00'))],
  ['an extra FDB entry', (k) => void k.fdb.push(fdb('02:00:00:00:60:00', '192.0.2.60'))],
  ['a second remote for a planned MAC', (k) => void k.fdb.push({ ...k.fdb[0]!, ip: ipv4Number('192.0.2.99') })],
  ['a route via another gateway', (k) => void (k.routes[1]!.via = ipv4Number('10.244.11.1'))],
  ['a route on another device', (k) => void (k.routes[1]!.oif = ETH)],
  ['a route without onlink', (k) => void (k.routes[1]!.onlink = false)],
  ['a neighbour with another MAC', (k) => void (k.neighbors[3]!.mac = macNumber('02:00:00:00:aa:aa'))],
  ['a planned neighbour that is not permanent', (k) => void (k.neighbors[3]!.state = 0x02)],
  ['an FDB entry with another remote', (k) => void (k.fdb[4]!.ip = ipv4Number('192.0.2.99'))],
  ['a route twice (another metric), another one missing', (k) => void k.routes.splice(2, 1, k.routes[1]!)],
];

for (const [name, change] of cases) {
  test(`holdsExactly agrees with a full diff: ${name}`, () => {
    const k = asPlanned();
    change(k);
    const quiet = (d: ReturnType<typeof diffOverlay>) => d.removals.length === 0 && d.peers.size === 0;
    const expected = quiet(diffOverlay(plans, view(k)));
    // Two views: holdsExactly reads the records, the diff made the maps of the other (after which it says false).
    assert.equal(view(k).holdsExactly(planned(plans)), expected);
    assert.equal(expected, name.startsWith('exactly') || name.startsWith('plus'), 'the diff itself: quiet only when nothing of tulle’s differs');
  });
}

test('a view whose maps were made (by a diff) is not held exact any more: the caller diffs', () => {
  const v = view(asPlanned());
  assert.equal(v.routes.size, plans.size);
  assert.equal(v.holdsExactly(planned(plans)), false);
  assert.equal(routeKey(ipv4Number('10.244.10.0'), 24), plans.get('10.244.10.0/24')!.numbers.route);
});
