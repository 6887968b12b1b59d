/** Flood "none": the plan of FDB + neighbour entries per remote pod, and the diff against what the device holds. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  diffEndpointEntries,
  endpointOpCommand,
  endpointStatus,
  ensureEndpointDevice,
  EndpointDeviceError,
  L2_NONE_VXLAN_ATTRS,
  planEndpointEntries,
} from '../../src/overlay/l2-endpoints.js';
import type { Fdb, Link, Neighbor } from '../../src/netlink/index.js';

const DEV = 'vxlan120';
const OWN = '192.0.2.11';
const pods = [
  { ip: '10.17.0.18', mac: '0a:00:00:00:00:01', publicIP: OWN },
  { ip: '10.17.0.34', mac: '0a:00:00:00:00:02', publicIP: '192.0.2.12' },
  { ip: '10.17.0.50', mac: '0a:00:00:00:00:03', publicIP: '192.0.2.13' },
];

test("the plan: one FDB entry and one permanent neighbour per remote pod, none for this host's own", () => {
  assert.deepEqual(planEndpointEntries(DEV, pods, OWN), {
    fdb: [
      { dev: DEV, mac: '0a:00:00:00:00:02', dst: '192.0.2.12' },
      { dev: DEV, mac: '0a:00:00:00:00:03', dst: '192.0.2.13' },
    ],
    neighbors: [
      { dev: DEV, ip: '10.17.0.34', mac: '0a:00:00:00:00:02' },
      { dev: DEV, ip: '10.17.0.50', mac: '0a:00:00:00:00:03' },
    ],
  });
  assert.deepEqual(planEndpointEntries(DEV, [], OWN), { fdb: [], neighbors: [] });
});

const fdb = (mac: string, dst: string | undefined, over: Partial<Fdb> = {}): Fdb => ({
  dev: DEV,
  mac,
  ...(dst ? { dst } : {}),
  permanent: true,
  self: true,
  ...over,
});
const neigh = (ip: string, mac: string, state: Neighbor['state'] = 'permanent', dev = DEV): Neighbor => ({ dev, ip, mac, state });

test('the diff writes nothing for an unchanged set, 2 writes per added endpoint and 2 deletes per removed one', () => {
  const want = planEndpointEntries(DEV, pods, OWN);
  const inKernel = {
    fdb: [fdb('0a:00:00:00:00:02', '192.0.2.12'), fdb('0a:00:00:00:00:03', '192.0.2.13')],
    neighbors: [neigh('10.17.0.34', '0a:00:00:00:00:02'), neigh('10.17.0.50', '0a:00:00:00:00:03')],
  };
  assert.deepEqual(diffEndpointEntries(want, inKernel, DEV), []);
  const added = planEndpointEntries(DEV, [...pods, { ip: '10.17.0.51', mac: '0a:00:00:00:00:04', publicIP: '192.0.2.13' }], OWN);
  assert.deepEqual(diffEndpointEntries(added, inKernel, DEV), [
    { op: 'replaceFdb', args: { dev: DEV, mac: '0a:00:00:00:00:04', dst: '192.0.2.13', self: true, permanent: true } },
    { op: 'replaceNeighbor', args: { dev: DEV, ip: '10.17.0.51', mac: '0a:00:00:00:00:04', state: 'permanent' } },
  ]);
  const removed = planEndpointEntries(DEV, pods.slice(0, 2), OWN);
  assert.deepEqual(diffEndpointEntries(removed, inKernel, DEV), [
    { op: 'deleteNeighbor', args: { dev: DEV, ip: '10.17.0.50' } },
    { op: 'deleteFdb', args: { dev: DEV, mac: '0a:00:00:00:00:03', dst: '192.0.2.13', self: true } },
  ]);
});

test("a pod that moved host or changed MAC is rewritten in place; what is not tulle's kind of entry is never touched", () => {
  const want = planEndpointEntries(
    DEV,
    [
      { ip: '10.17.0.34', mac: '0a:00:00:00:00:09', publicIP: '192.0.2.12' },
      { ip: '10.17.0.50', mac: '0a:00:00:00:00:03', publicIP: '192.0.2.14' },
    ],
    OWN,
  );
  const view = {
    fdb: [
      fdb('0a:00:00:00:00:02', '192.0.2.12'),
      fdb('0a:00:00:00:00:03', '192.0.2.13'),
      fdb('00:00:00:00:00:00', '192.0.2.12'), // a flood entry (another mode's)
      fdb('0a:00:00:00:00:aa', undefined, { master: 'tl120', self: false }), // the bridge's own entry for the port
      fdb('0a:00:00:00:00:bb', '192.0.2.99', { vni: 7 }), // someone's entry with its own VNI
      fdb('0a:00:00:00:00:cc', '192.0.2.99', { permanent: false }), // learned
      fdb('0a:00:00:00:00:dd', '192.0.2.99', { dev: 'vxlan7' }), // another device
    ],
    neighbors: [
      neigh('10.17.0.34', '0a:00:00:00:00:02'),
      neigh('10.17.0.50', '0a:00:00:00:00:03'),
      neigh('10.17.0.60', '0a:00:00:00:00:ee', 'stale'),
      neigh('fe80::1', '0a:00:00:00:00:ef'),
      neigh('10.17.0.70', '0a:00:00:00:00:ef', 'permanent', 'eth0'),
    ],
  };
  assert.deepEqual(diffEndpointEntries(want, view, DEV), [
    { op: 'deleteFdb', args: { dev: DEV, mac: '0a:00:00:00:00:02', dst: '192.0.2.12', self: true } },
    { op: 'replaceFdb', args: { dev: DEV, mac: '0a:00:00:00:00:09', dst: '192.0.2.12', self: true, permanent: true } },
    { op: 'replaceFdb', args: { dev: DEV, mac: '0a:00:00:00:00:03', dst: '192.0.2.14', self: true, permanent: true } },
    { op: 'replaceNeighbor', args: { dev: DEV, ip: '10.17.0.34', mac: '0a:00:00:00:00:09', state: 'permanent' } },
  ]);
  // A MAC with two remotes (someone appended one): both go, then the one wanted.
  const two = { fdb: [fdb('0a:00:00:00:00:03', '192.0.2.13'), fdb('0a:00:00:00:00:03', '192.0.2.99')], neighbors: [neigh('10.17.0.50', '0a:00:00:00:00:03')] };
  assert.deepEqual(diffEndpointEntries(planEndpointEntries(DEV, [pods[2]!], OWN), two, DEV), [
    { op: 'deleteFdb', args: { dev: DEV, mac: '0a:00:00:00:00:03', self: true } },
    { op: 'replaceFdb', args: { dev: DEV, mac: '0a:00:00:00:00:03', dst: '192.0.2.13', self: true, permanent: true } },
  ]);
  // A non-permanent neighbour for a wanted IP is made permanent.
  const stale = { fdb: [fdb('0a:00:00:00:00:03', '192.0.2.13')], neighbors: [neigh('10.17.0.50', '0a:00:00:00:00:03', 'stale')] };
  assert.deepEqual(diffEndpointEntries(planEndpointEntries(DEV, [pods[2]!], OWN), stale, DEV), [
    { op: 'replaceNeighbor', args: { dev: DEV, ip: '10.17.0.50', mac: '0a:00:00:00:00:03', state: 'permanent' } },
  ]);
});

function vxlanLink(over: Partial<NonNullable<Link['vxlan']>>, kind = 'vxlan'): Link {
  return {
    index: 5,
    name: DEV,
    kind,
    mtu: 1450,
    mac: '0a:00:00:00:00:f0',
    up: true,
    lowerUp: true,
    operState: 'unknown',
    master: 'tl120',
    masterIndex: 4,
    linkIndex: undefined,
    linkNetnsId: undefined,
    ...(kind === 'vxlan' ? { vxlan: { vni: 120, port: 4789, learning: false, proxy: true, gbp: false, ttl: 0, udpCsum: true, ...over } } : {}),
  };
}

test('the device check: proxy is required (fixed at creation), learning is switched off, a wrong device is named', async () => {
  assert.deepEqual(L2_NONE_VXLAN_ATTRS, { proxy: true, learning: false });
  const calls: string[] = [];
  const nl = (link: Link | undefined) => ({ getLink: async () => link, setVxlanLearning: async (n: string, l: boolean) => void calls.push(`${n} ${l}`) });
  assert.deepEqual(await ensureEndpointDevice(nl(vxlanLink({})), DEV), []);
  assert.deepEqual(await ensureEndpointDevice(nl(vxlanLink({ learning: true })), DEV), ['ip link set dev vxlan120 type vxlan nolearning']);
  assert.deepEqual(calls, ['vxlan120 false']);
  const refused = async (link: Link | undefined, rule: RegExp) =>
    assert.rejects(
      ensureEndpointDevice(nl(link), DEV),
      (e: unknown) => e instanceof EndpointDeviceError && e.code === 'TLE_L2_ENDPOINT_DEVICE' && rule.test(e.message),
    );
  await refused(
    vxlanLink({ proxy: false }),
    /^vxlan120: has proxy off, .* recreate it with proxy nolearning \(ip link add vxlan120 type vxlan id 120 \.\.\. proxy nolearning\)/,
  );
  await refused(vxlanLink({}, 'bridge'), /^vxlan120: is a bridge device, not a vxlan device/);
  await refused(undefined, /^vxlan120: there is no such device/);
});

test('status: the writes still missing, as the iproute2 commands they equal; none once the device holds the plan', async () => {
  const fdb: Fdb[] = [];
  const neighbors: Neighbor[] = [];
  const view = { listFdb: async () => fdb, listNeighbors: async () => neighbors };
  const missing = await endpointStatus(view, DEV, pods, OWN);
  assert.deepEqual(missing, {
    remote: 2,
    pending: [
      'bridge fdb replace 0a:00:00:00:00:02 dev vxlan120 dst 192.0.2.12 self permanent',
      'bridge fdb replace 0a:00:00:00:00:03 dev vxlan120 dst 192.0.2.13 self permanent',
      'ip neigh replace 10.17.0.34 lladdr 0a:00:00:00:00:02 dev vxlan120 nud permanent',
      'ip neigh replace 10.17.0.50 lladdr 0a:00:00:00:00:03 dev vxlan120 nud permanent',
    ],
  });
  for (const p of pods.slice(1)) {
    fdb.push({ dev: DEV, mac: p.mac, dst: p.publicIP, self: true, permanent: true });
    neighbors.push({ dev: DEV, ip: p.ip, mac: p.mac, state: 'permanent' });
  }
  assert.deepEqual(await endpointStatus(view, DEV, pods, OWN), { remote: 2, pending: [] });
  // A pod gone from the store: its entries are what is left to delete.
  assert.deepEqual((await endpointStatus(view, DEV, pods.slice(0, 2), OWN)).pending, [
    'ip neigh del 10.17.0.50 dev vxlan120',
    'bridge fdb del 0a:00:00:00:00:03 dev vxlan120 dst 192.0.2.13 self',
  ]);
  assert.equal(
    endpointOpCommand({ op: 'deleteFdb', args: { dev: DEV, mac: '0a:00:00:00:00:09', self: true } }),
    'bridge fdb del 0a:00:00:00:00:09 dev vxlan120 self',
  );
});
