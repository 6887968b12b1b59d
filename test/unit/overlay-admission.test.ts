/**
 * Lease admission (src/overlay/admission.ts): every kind of hostile or careless lease is rejected with its
 * reason, good leases pass, and conflicts are settled the same way whatever order the leases come in.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parseCidr4 } from '../../src/base/ip.js';
import { AdmissionMemo, admitLeases, admittedChange, type AdmissionContext } from '../../src/overlay/admission.js';
import type { PeerLease } from '../../src/overlay/plan.js';
import { peerLease } from '../helpers/leases.js';

const ctx: AdmissionContext = {
  network: parseCidr4('10.244.0.0/16'),
  subnetLen: 24,
  vni: 1,
  ownSubnet: '10.244.1.0/24',
  ownVtepMac: '02:00:00:00:00:01',
  localAddresses: new Set(['192.0.2.11', '10.244.1.0']),
  foreignRoutes: [parseCidr4('192.0.2.0/24'), parseCidr4('10.244.77.0/24'), parseCidr4('10.244.88.16/28')],
};

const good = peerLease('10.244.2.0/24', '192.0.2.12', '02:00:00:00:00:02', 5);

test('a good lease is admitted with a lower-case MAC', () => {
  const r = admitLeases(ctx, [{ ...good, backendData: { VNI: 1, VtepMAC: '02:AA:00:00:00:02' } }]);
  assert.deepEqual(r.admitted, [
    {
      subnet: '10.244.2.0/24',
      publicIP: '192.0.2.12',
      vtepMac: '02:aa:00:00:00:02',
      numbers: { network: 0x0af40200, prefix: 24, publicIP: 0xc000020c, vtepMac: 0x02aa00000002 },
    },
  ]);
  assert.deepEqual(r.rejected, []);
});

const hostile: Array<[string, ReturnType<typeof peerLease>, string]> = [
  ['the underlay network', peerLease('192.0.2.0/24', '192.0.2.99', '02:00:00:00:00:19'), 'outside-network'],
  ['a subnet outside Network', peerLease('10.245.3.0/24', '192.0.2.13', '02:00:00:00:00:03'), 'outside-network'],
  ['the whole Network', peerLease('10.244.0.0/16', '192.0.2.13', '02:00:00:00:00:03'), 'subnet-length'],
  ['the default route', peerLease('0.0.0.0/0', '192.0.2.13', '02:00:00:00:00:03'), 'outside-network'],
  ["a /25 inside this host's subnet", peerLease('10.244.1.128/25', '192.0.2.13', '02:00:00:00:00:03'), 'subnet-length'],
  ["a /25 inside a peer's subnet", peerLease('10.244.2.128/25', '192.0.2.13', '02:00:00:00:00:03'), 'subnet-length'],
  ['a /26 that is not a SubnetLen', peerLease('10.244.9.64/26', '192.0.2.13', '02:00:00:00:00:03'), 'subnet-length'],
  [
    "this host's own subnet under another key",
    { ...peerLease('10.244.1.0/24', '192.0.2.13', '02:00:00:00:00:03'), subnet: '10.244.1.0/24', key: '/x/subnets/010.244.1.0-24' },
    'own-subnet',
  ],
  ['a subnet holding a route tulle does not own', peerLease('10.244.77.0/24', '192.0.2.13', '02:00:00:00:00:03'), 'foreign-route'],
  ['a subnet holding a more specific foreign route', peerLease('10.244.88.0/24', '192.0.2.13', '02:00:00:00:00:03'), 'foreign-route'],
  ['the all-zero MAC', peerLease('10.244.4.0/24', '192.0.2.14', '00:00:00:00:00:00'), 'vtep-mac'],
  ['the broadcast MAC', peerLease('10.244.4.0/24', '192.0.2.14', 'ff:ff:ff:ff:ff:ff'), 'vtep-mac'],
  ['a multicast MAC', peerLease('10.244.4.0/24', '192.0.2.14', '01:00:5e:00:00:01'), 'vtep-mac'],
  ['an upper-case multicast MAC', peerLease('10.244.4.0/24', '192.0.2.14', '03:AB:00:00:00:01'), 'vtep-mac'],
  ['a VtepMAC that is no MAC at all (a lease not read by decodeLease)', peerLease('10.244.4.0/24', '192.0.2.14', 'zz:zz:zz:zz:zz:zz'), 'vtep-mac'],
  ['a PublicIP that is no address at all', peerLease('10.244.4.0/24', '192.0.2.300', '02:00:00:00:00:04'), 'public-ip'],
  ["this host's own VTEP MAC", peerLease('10.244.4.0/24', '192.0.2.14', '02:00:00:00:00:01'), 'vtep-mac'],
  ["this host's own public IP", peerLease('10.244.4.0/24', '192.0.2.11', '02:00:00:00:00:04'), 'own-public-ip'],
  ['PublicIP 0.0.0.0', peerLease('10.244.4.0/24', '0.0.0.0', '02:00:00:00:00:04'), 'public-ip'],
  ['PublicIP 255.255.255.255', peerLease('10.244.4.0/24', '255.255.255.255', '02:00:00:00:00:04'), 'public-ip'],
  ['a multicast PublicIP', peerLease('10.244.4.0/24', '239.1.1.1', '02:00:00:00:00:04'), 'public-ip'],
  ['a loopback PublicIP', peerLease('10.244.4.0/24', '127.0.0.1', '02:00:00:00:00:04'), 'public-ip'],
  ['a link-local PublicIP', peerLease('10.244.4.0/24', '169.254.0.5', '02:00:00:00:00:04'), 'public-ip'],
  ['a PublicIP inside the overlay', peerLease('10.244.4.0/24', '10.244.2.5', '02:00:00:00:00:04'), 'public-ip'],
  ['another VNI', peerLease('10.244.4.0/24', '192.0.2.14', '02:00:00:00:00:04', 1, { backendData: { VNI: 2, VtepMAC: '02:00:00:00:00:04' } }), 'vni'],
  ['another backend type', peerLease('10.244.4.0/24', '192.0.2.14', '02:00:00:00:00:04', 1, { backendType: 'host-gw', backendData: {} }), 'backend-type'],
  ['no backend type', peerLease('10.244.4.0/24', '192.0.2.14', '02:00:00:00:00:04', 1, { backendType: '' }), 'backend-type'],
];

for (const [what, lease, reason] of hostile) {
  test(`rejected: ${what} (${reason})`, () => {
    const r = admitLeases(ctx, [good, lease]);
    assert.deepEqual(
      r.admitted.map((p) => p.subnet),
      ['10.244.2.0/24'],
      'the good lease stays admitted',
    );
    assert.equal(r.rejected.length, 1);
    assert.equal(r.rejected[0]!.reason, reason, r.rejected[0]!.detail);
    assert.equal(r.rejected[0]!.key, lease.key);
    assert.ok(r.rejected[0]!.detail.length > 10);
  });
}

test("a lease reusing a peer's VtepMAC: the older one keeps it, whichever comes first", () => {
  const older = peerLease('10.244.5.0/24', '192.0.2.15', '02:00:00:00:00:05', 3);
  const newer = peerLease('10.244.6.0/24', '192.0.2.16', '02:00:00:00:00:05', 9);
  for (const order of [
    [older, newer],
    [newer, older],
  ]) {
    const r = admitLeases(ctx, order);
    assert.deepEqual(
      r.admitted.map((p) => p.subnet),
      ['10.244.5.0/24'],
    );
    assert.deepEqual(
      r.rejected.map((x) => [x.subnet, x.reason]),
      [['10.244.6.0/24', 'duplicate-vtep-mac']],
    );
  }
});

test('two keys naming one subnet: the older one wins, whichever comes first', () => {
  const older = peerLease('10.244.5.0/24', '192.0.2.15', '02:00:00:00:00:05', 3);
  const twin = { ...peerLease('10.244.5.0/24', '192.0.2.16', '02:00:00:00:00:06', 9), key: '/coreos.com/network/subnets/10.244.005.0-24' };
  for (const order of [
    [older, twin],
    [twin, older],
  ]) {
    const r = admitLeases(ctx, order);
    assert.deepEqual(
      r.admitted.map((p) => p.publicIP),
      ['192.0.2.15'],
    );
    assert.deepEqual(
      r.rejected.map((x) => x.reason),
      ['overlaps-peer'],
    );
  }
});

test('property: admission does not depend on the order of the leases, and admitted peers never overlap or share a MAC', () => {
  const lease = fc.record({
    third: fc.integer({ min: 0, max: 12 }),
    prefix: fc.constantFrom(24, 24, 24, 25, 16),
    ip: fc.integer({ min: 10, max: 14 }),
    mac: fc.integer({ min: 0, max: 5 }),
    created: fc.integer({ min: 1, max: 20 }),
  });
  fc.assert(
    fc.property(fc.array(lease, { maxLength: 12 }), fc.integer(), (specs, seed) => {
      const leases = specs.map((s, i) =>
        peerLease(
          `10.244.${s.third}.0/${s.prefix}`.replace('.0/16', '.0/16').replace(/^10\.244\.\d+\.0\/16$/, '10.244.0.0/16'),
          `192.0.2.${s.ip}`,
          `02:00:00:00:00:0${s.mac}`,
          s.created,
          { key: `/k/${i}` },
        ),
      );
      const a = admitLeases(ctx, leases);
      const shuffled = [...leases].sort(
        (x, y) => ((x.key.length * 31 + seed) % 7) - ((y.key.length * 31 + seed) % 7) || x.key.localeCompare(y.key) * (seed % 2 ? 1 : -1),
      );
      const b = admitLeases(ctx, shuffled);
      const key = (r: typeof a) => r.admitted.map((p) => `${p.subnet} ${p.publicIP} ${p.vtepMac}`).sort();
      assert.deepEqual(key(a), key(b));
      const subnets = a.admitted.map((p) => parseCidr4(p.subnet));
      for (let i = 0; i < subnets.length; i++) for (let j = i + 1; j < subnets.length; j++) assert.notEqual(subnets[i]!.network, subnets[j]!.network);
      assert.equal(new Set(a.admitted.map((p) => p.vtepMac)).size, a.admitted.length);
      assert.equal(a.admitted.length + a.rejected.length, leases.length);
    }),
  );
});

/** A lease that notes its key in `reads` when its BackendData is read: only a lease's own checks read it. */
function counted(lease: ReturnType<typeof peerLease>, reads: Set<string>): ReturnType<typeof peerLease> {
  const backendData = lease.backendData;
  const out = { ...lease };
  Object.defineProperty(out, 'backendData', {
    enumerable: true,
    get: () => {
      reads.add(lease.key);
      return backendData;
    },
  });
  return out;
}

test('a lease with several problems is rejected for the first of the rule list: a foreign route comes between its own checks', () => {
  const routed = { ...ctx, foreignRoutes: [parseCidr4('10.244.0.0/16'), parseCidr4('10.244.30.0/24'), parseCidr4('10.244.31.7/32')] };
  const reasons = admitLeases(routed, [
    peerLease('10.244.30.0/24', '192.0.2.30', '01:00:5e:00:00:01'), // foreign route and a multicast MAC
    peerLease('10.244.31.0/24', '127.0.0.1', '02:00:00:00:00:31'), // a foreign host route and a loopback PublicIP
    peerLease('10.244.32.0/23', '192.0.2.32', '01:00:5e:00:00:02'), // wrong length and a multicast MAC
    peerLease('10.244.33.0/24', '192.0.2.33', '01:00:5e:00:00:03'), // only the covering /16 route, and a multicast MAC
    peerLease('10.244.34.0/24', '192.0.2.34', '02:00:00:00:00:34'), // only the covering /16 route: admitted
  ]);
  assert.deepEqual(
    reasons.rejected.map((r) => [r.subnet, r.reason]),
    [
      ['10.244.30.0/24', 'foreign-route'],
      ['10.244.31.0/24', 'foreign-route'],
      ['10.244.32.0/23', 'subnet-length'],
      ['10.244.33.0/24', 'vtep-mac'],
    ],
  );
  assert.match(reasons.rejected[1]!.detail, /holds the route 10\.244\.31\.7\/32/);
  assert.deepEqual(
    reasons.admitted.map((p) => p.subnet),
    ['10.244.34.0/24'],
  );
});

test('the memo checks only new or changed leases again, and admits exactly what a call without it admits', () => {
  const reads = new Set<string>();
  const memo = new AdmissionMemo();
  const peers = Array.from({ length: 20 }, (_, i) =>
    counted(peerLease(`10.244.${10 + i}.0/24`, `192.0.2.${100 + i}`, `02:00:00:00:01:${(16 + i).toString(16)}`, 10 + i), reads),
  );
  const judge = (c: AdmissionContext, leases: ReturnType<typeof peerLease>[]) => {
    reads.clear();
    const withMemo = admitLeases(c, leases, memo);
    const checked = reads.size;
    assert.deepEqual(withMemo, admitLeases(c, leases));
    return { result: withMemo, checked };
  };
  assert.equal(judge(ctx, peers).checked, 20);
  assert.equal(judge(ctx, peers).checked, 0, 'nothing changed: no lease is checked again');
  // A join: one new lease, and it takes an older peer's VtepMAC — the conflict is still settled over all of them.
  const thief = counted(peerLease('10.244.50.0/24', '192.0.2.50', '02:00:00:00:01:10', 99), reads);
  const joined = judge(ctx, [...peers, thief]);
  assert.equal(joined.checked, 1);
  assert.deepEqual(
    joined.result.rejected.map((r) => [r.subnet, r.reason]),
    [['10.244.50.0/24', 'duplicate-vtep-mac']],
  );
  // The older holder leaves: the newcomer wins the MAC now, without being checked again.
  const left = judge(ctx, [...peers.slice(1), thief]);
  assert.equal(left.checked, 0);
  assert.ok(left.result.admitted.some((p) => p.subnet === '10.244.50.0/24'));
  // A changed lease is a new object: it alone is checked again.
  const moved = counted(peerLease('10.244.11.0/24', '198.51.100.7', '02:00:00:00:01:11', 11), reads);
  assert.equal(judge(ctx, [peers[0]!, moved, ...peers.slice(2)]).checked, 1);
  // A foreign route appearing judges no lease again (the routes are looked up per call), yet rejects the lease whose
  // subnet now holds it; when it goes, that lease is admitted again.
  const routed = judge({ ...ctx, foreignRoutes: [...ctx.foreignRoutes, parseCidr4('10.244.12.0/24')] }, peers);
  assert.equal(routed.checked, 0);
  assert.deepEqual(
    routed.result.rejected.map((r) => [r.subnet, r.reason]),
    [['10.244.12.0/24', 'foreign-route']],
  );
  const unrouted = judge(ctx, peers);
  assert.equal(unrouted.checked, 0);
  assert.deepEqual(unrouted.result.rejected, []);
  // Another context (here: another VNI) forgets every result: all are judged again.
  assert.equal(judge({ ...ctx, vni: ctx.vni + 1 }, peers).checked, 20);
});

test('admittedChange: a join, a leave, a rewritten lease are found by identity, one peer each', () => {
  const [a, b, c, d] = ['10.244.2.0/24', '10.244.3.0/24', '10.244.4.0/24', '10.244.5.0/24'].map((subnet): PeerLease => ({
    subnet,
    publicIP: '192.0.2.12',
    vtepMac: '02:00:00:00:00:02',
  }));
  const b2 = { ...b! };
  assert.deepEqual(admittedChange([a!, b!, c!], [a!, b!, c!]), { added: [], removed: [] });
  assert.deepEqual(admittedChange([a!, b!, c!], [a!, b!, c!, d!]), { added: [d], removed: [] });
  assert.deepEqual(admittedChange([a!, b!, c!], [a!, c!]), { added: [], removed: [b] });
  assert.deepEqual(admittedChange([a!, b!, c!], [d!, a!, b!, c!]), { added: [d], removed: [] });
  const rewritten = admittedChange([a!, b!, c!], [a!, b2, c!]);
  assert.equal(rewritten.added.length, 1);
  assert.equal(rewritten.added[0], b2);
  assert.equal(rewritten.removed[0], b);
  assert.deepEqual(admittedChange([], [a!, b!]), { added: [a, b], removed: [] });
  assert.deepEqual(admittedChange([a!, b!], []), { added: [], removed: [a, b] });
});

test('property: admittedChange is exact — after = before - removed + added, peer by peer — for any two lists', () => {
  const pool: PeerLease[] = Array.from({ length: 12 }, (_, i) => ({ subnet: `10.244.${i}.0/24`, publicIP: `192.0.2.${i % 4}`, vtepMac: '02:00:00:00:00:02' }));
  const list = fc.array(fc.nat({ max: pool.length - 1 }), { maxLength: 20 }).map((is) => is.map((i) => pool[i]!));
  const counts = (xs: readonly PeerLease[]) => {
    const m = new Map<PeerLease, number>();
    for (const x of xs) m.set(x, (m.get(x) ?? 0) + 1);
    return m;
  };
  fc.assert(
    fc.property(list, list, (before, after) => {
      const { added, removed } = admittedChange(before, after);
      const want = counts(before);
      for (const x of removed) {
        assert.ok((want.get(x) ?? 0) > 0, 'removed only what was there');
        want.set(x, want.get(x)! - 1);
      }
      for (const x of added) want.set(x, (want.get(x) ?? 0) + 1);
      for (const [x, n] of counts(after)) assert.equal(want.get(x) ?? 0, n);
      for (const [x, n] of want) assert.equal(counts(after).get(x) ?? 0, n);
      assert.ok(added.length <= after.length && removed.length <= before.length);
    }),
  );
});
