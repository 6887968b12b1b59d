import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { cidrsOverlap, formatCidr4, parseCidr4 } from '../../src/base/ip.js';
import { parseNetworkConfig } from '../../src/config/network.js';
import { countFreeSubnets, freeSubnets, isSubnetFree, OutOfSubnetsError, pickFreeSubnet, type TakenSubnet } from '../../src/subnet/allocator.js';

const lease = (cidr: string): TakenSubnet => ({ subnet: parseCidr4(cidr), reservation: false });
const reserved = (cidr: string): TakenSubnet => ({ subnet: parseCidr4(cidr), reservation: true });
const names = (list: ReturnType<typeof freeSubnets>): string[] => list.map(formatCidr4);

// 10.5.0.0/26 in /28s: candidates 10.5.0.16, .32, .48 (the first subnet is never handed out).
const small = parseNetworkConfig('{"Network":"10.5.0.0/26","SubnetLen":28}');

test('free = the config range minus every lease and reservation, whatever their size', () => {
  assert.deepEqual(names(freeSubnets(small, [])), ['10.5.0.16/28', '10.5.0.32/28', '10.5.0.48/28']);
  assert.deepEqual(names(freeSubnets(small, [lease('10.5.0.32/28')])), ['10.5.0.16/28', '10.5.0.48/28']);
  // A /27 lease written by a host with another config covers two candidates; a /30 blocks the one it is in.
  assert.deepEqual(names(freeSubnets(small, [lease('10.5.0.32/27')])), ['10.5.0.16/28']);
  assert.deepEqual(names(freeSubnets(small, [reserved('10.5.0.20/30')])), ['10.5.0.32/28', '10.5.0.48/28']);
  // Leases outside the range (the skipped first subnet, another network) block nothing.
  assert.deepEqual(names(freeSubnets(small, [lease('10.5.0.0/28'), lease('10.9.0.0/16')])), ['10.5.0.16/28', '10.5.0.32/28', '10.5.0.48/28']);
  assert.equal(countFreeSubnets(small, [lease('10.5.0.16/28'), lease('10.5.0.16/28')]), 2);
});

test('the random source picks among the free subnets (first, last, middle)', () => {
  const taken = [lease('10.5.0.32/28')];
  assert.equal(formatCidr4(pickFreeSubnet(small, taken, () => 0)), '10.5.0.16/28');
  assert.equal(formatCidr4(pickFreeSubnet(small, taken, () => 0.99999)), '10.5.0.48/28');
  const big = parseNetworkConfig('{"Network":"10.244.0.0/16"}');
  assert.equal(formatCidr4(pickFreeSubnet(big, [lease('10.244.1.0/24'), lease('10.244.2.0/24')], () => 0)), '10.244.3.0/24');
  assert.equal(formatCidr4(pickFreeSubnet(big, [], () => 0.5)), '10.244.128.0/24');
});

test('a full network gives "out of subnets" with the counts', () => {
  assert.throws(
    () => pickFreeSubnet(small, [lease('10.5.0.16/28'), reserved('10.5.0.32/28'), lease('10.5.0.48/28'), lease('10.5.0.0/28')]),
    (e: unknown) =>
      e instanceof OutOfSubnetsError &&
      e.code === 'TLE_OUT_OF_SUBNETS' &&
      e.total === 3 &&
      e.leases === 3 &&
      e.reservations === 1 &&
      e.message.startsWith(
        'out of subnets: all 3 subnets between 10.5.0.16/28 and 10.5.0.48/28 of 10.5.0.0/26 are taken (3 leases and 1 reservation in the store)',
      ),
  );
});

test('a huge range is counted, not listed: 10.0.0.0/8 in /30s', () => {
  const huge = parseNetworkConfig('{"Network":"10.0.0.0/8","SubnetLen":30}');
  const taken = [lease('10.0.0.4/30'), lease('10.128.0.0/9')];
  assert.equal(countFreeSubnets(huge, taken), 2 ** 22 - 1 - 1 - 2 ** 21);
  for (const r of [0, 0.25, 0.5, 0.999999]) {
    const s = pickFreeSubnet(huge, taken, () => r);
    assert.ok(isSubnetFree(s, taken) && s.prefix === 30 && s.network < parseCidr4('10.128.0.0/9').network, formatCidr4(s));
  }
});

test('property: a pick is always inside SubnetMin..SubnetMax, aligned, and overlaps nothing taken', () => {
  const config = parseNetworkConfig('{"Network":"10.244.0.0/20","SubnetLen":26,"SubnetMin":"10.244.1.0","SubnetMax":"10.244.14.192"}');
  const min = parseCidr4('10.244.1.0/26').network;
  const max = parseCidr4('10.244.14.192/26').network;
  const takenArb = fc.array(fc.record({ offset: fc.integer({ min: 0, max: 4095 }), prefix: fc.integer({ min: 22, max: 30 }), reservation: fc.boolean() }), {
    maxLength: 40,
  });
  fc.assert(
    fc.property(takenArb, fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), (raw, r) => {
      const base = parseCidr4('10.244.0.0/20').network;
      const taken = raw.map((t) => ({
        subnet: parseCidr4(formatCidr4({ network: (base + t.offset) >>> 0, prefix: 32 }).replace('/32', `/${t.prefix}`), 'x', true),
        reservation: t.reservation,
      }));
      const free = countFreeSubnets(config, taken);
      assert.equal(free, freeSubnets(config, taken).length);
      if (free === 0) {
        assert.throws(() => pickFreeSubnet(config, taken, () => r), OutOfSubnetsError);
        return;
      }
      const s = pickFreeSubnet(config, taken, () => r);
      assert.equal(s.prefix, 26);
      assert.ok(s.network >= min && s.network <= max);
      assert.equal(s.network % 64, 0);
      for (const t of taken) assert.ok(!cidrsOverlap(s, t.subnet), `${formatCidr4(s)} overlaps ${formatCidr4(t.subnet)}`);
    }),
    { numRuns: 300 },
  );
});
