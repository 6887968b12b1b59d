/**
 * The pure parts of L2 networks (src/overlay/l2.ts): the flood list a host keeps, the words for the flood modes'
 * limits, the device compatibility check, and slices of one L2 Network judged by the same lease admission.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseCidr4 } from '../../src/base/ip.js';
import type { Link } from '../../src/netlink/index.js';
import { admitLeases } from '../../src/overlay/admission.js';
import { deviceFlags, l2DeviceName, l2Incompatibility, multicastReachProblem, planFloodList, remoteProblem, type L2DeviceSpec } from '../../src/overlay/l2.js';
import { peerLease } from '../helpers/leases.js';

const peer = (publicIP: string, subnet = '10.33.0.32/28') => ({ subnet, publicIP, vtepMac: '02:00:00:00:00:02' });

test('unicast floods to each admitted peer once, sorted by address; the other modes keep no flood list', () => {
  const admitted = [peer('198.51.100.12'), peer('192.0.2.13'), peer('192.0.2.13', '10.33.0.48/28'), peer('192.0.2.9')];
  assert.deepEqual(planFloodList('unicast', admitted), ['192.0.2.9', '192.0.2.13', '198.51.100.12']);
  for (const flood of ['multicast', 'remote', 'none'] as const) assert.deepEqual(planFloodList(flood, admitted), []);
  assert.deepEqual(planFloodList('unicast', []), []);
});

test('remote joins exactly two hosts: a third is named with every host', () => {
  assert.equal(remoteProblem([], '192.0.2.11'), undefined);
  assert.equal(remoteProblem([peer('192.0.2.12')], '192.0.2.11'), undefined);
  const words = remoteProblem([peer('192.0.2.12'), peer('192.0.2.13')], '192.0.2.11')!;
  assert.match(words, /^Backend\.Flood "remote" joins exactly two hosts, but 3 hold leases \(192\.0\.2\.11, 192\.0\.2\.12, 192\.0\.2\.13\)/);
});

test('multicast needs every peer on the underlay segment: a peer behind a router is named', () => {
  const nets = [parseCidr4('192.0.2.0/24')];
  assert.equal(multicastReachProblem([peer('192.0.2.12'), peer('192.0.2.13')], nets, '239.1.1.1'), undefined);
  const words = multicastReachProblem([peer('192.0.2.12'), peer('198.51.100.12')], nets, '239.1.1.1')!;
  assert.match(words, /group 239\.1\.1\.1 to 198\.51\.100\.12 \(not on this host's underlay network 192\.0\.2\.0\/24; multicast does not cross routers\)/);
  assert.ok(!words.includes('192.0.2.12'));
});

test('learning as the mode needs: none alone is told (nolearning, proxy)', () => {
  assert.deepEqual(deviceFlags('none'), { learning: false, proxy: true });
  for (const flood of ['unicast', 'multicast', 'remote'] as const) assert.deepEqual(deviceFlags(flood), { learning: true, proxy: false });
  assert.equal(l2DeviceName(4242), 'vxlan4242');
});

test('an existing device is kept only when every VXLAN attribute matches the mode', () => {
  const spec: L2DeviceSpec = {
    name: 'vxlan4242',
    vni: 4242,
    local: '192.0.2.11',
    dev: 'eth0',
    port: 4789,
    mtu: 1450,
    mac: '02:00:00:00:00:01',
    flood: 'remote',
    remote: '192.0.2.12',
    bridge: 'tl4242',
  };
  const link: Link = {
    index: 7,
    name: 'vxlan4242',
    kind: 'vxlan',
    mtu: 1400,
    mac: '02:00:00:00:00:09',
    up: false,
    lowerUp: false,
    operState: 'down',
    master: undefined,
    masterIndex: undefined,
    linkIndex: undefined,
    linkNetnsId: undefined,
    vxlan: { vni: 4242, local: '192.0.2.11', link: 2, port: 4789, learning: true, proxy: false, gbp: false, ttl: 0, udpCsum: false, remote: '192.0.2.12' },
  };
  assert.equal(l2Incompatibility(link, spec, 2), undefined, 'MTU, MAC, state and master are adjusted, not reasons');
  assert.match(l2Incompatibility(link, { ...spec, remote: '192.0.2.13' }, 2)!, /remote 192\.0\.2\.12 != 192\.0\.2\.13/);
  assert.match(l2Incompatibility(link, { ...spec, flood: 'none' }, 2)!, /learning true != false, proxy false != true/);
  assert.match(l2Incompatibility({ ...link, vxlan: { ...link.vxlan!, udpCsum: true } }, spec, 2)!, /udpcsum/);
  assert.match(l2Incompatibility({ ...link, vxlan: { ...link.vxlan!, remote: undefined, group: '239.1.1.1' } }, spec, 2)!, /group 239\.1\.1\.1 != none/);
  assert.match(l2Incompatibility({ ...link, kind: 'bridge' }, spec, 2)!, /is a bridge device/);
  assert.match(l2Incompatibility(link, spec, 3)!, /dev index 2 != 3/);
});

test('slices of one L2 Network: overlapping or mis-sized slices are refused by the same lease admission', () => {
  const ctx = {
    network: parseCidr4('10.33.0.0/24'),
    subnetLen: 28,
    vni: 4242,
    ownSubnet: '10.33.0.16/28',
    ownVtepMac: '02:00:00:00:00:01',
    localAddresses: new Set(['192.0.2.11']),
    foreignRoutes: [],
  };
  const vni = (l: ReturnType<typeof peerLease>) => ({ ...l, backendData: { ...l.backendData, VNI: 4242 } });
  const older = vni(peerLease('10.33.0.32/28', '192.0.2.12', '02:00:00:00:00:02', 5));
  const sameSlice = { ...vni(peerLease('10.33.0.32/28', '192.0.2.13', '02:00:00:00:00:03', 9)), key: '/tulle.io/l2/subnets/010.33.0.32-28' };
  const wider = vni(peerLease('10.33.0.32/27', '192.0.2.14', '02:00:00:00:00:04', 3));
  const mine = vni(peerLease('10.33.0.16/28', '192.0.2.15', '02:00:00:00:00:05', 2));
  const r = admitLeases(ctx, [sameSlice, wider, older, mine]);
  assert.deepEqual(
    r.admitted.map((p) => p.publicIP),
    ['192.0.2.12'],
  );
  assert.deepEqual(
    r.rejected.map((x) => [x.subnet, x.reason]).sort(),
    [
      ['10.33.0.16/28', 'own-subnet'],
      ['10.33.0.32/27', 'subnet-length'],
      ['10.33.0.32/28', 'overlaps-peer'],
    ].sort(),
  );
});
