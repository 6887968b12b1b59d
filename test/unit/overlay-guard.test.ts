// The guard's ruleset text and its input checks (pure: no kernel). What the kernel does with it is in
// test/netns/overlay-guard.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidValueError } from '../../src/base/errors.js';
import { GuardError, VxlanGuard, iptablesGuardRule, nftGuardRuleset, normalizePeers } from '../../src/overlay/guard.js';

test("the nft ruleset matches the VNI raw after the UDP header, and only on the network's port", () => {
  const text = nftGuardRuleset({ vni: 4096, port: 4789, allowedSources: ['203.0.113.0/24'] }, ['192.0.2.12', '192.0.2.11', '192.0.2.12']);
  assert.match(text, /udp dport 4789 ip saddr != @peers @th,96,24 4096 ip saddr != @allowed counter name "unknown_source" drop/);
  assert.match(text, /set peers \{\n {4}type ipv4_addr;\n {4}elements = \{ 192\.0\.2\.11, 192\.0\.2\.12 \}/);
  assert.match(text, /flags interval; auto-merge;\n {4}elements = \{ 203\.0\.113\.0\/24 \}/);
  assert.match(text, /^add table ip tulle-guard\ndelete table ip tulle-guard\n/);
  assert.doesNotMatch(nftGuardRuleset({ vni: 1, port: 8472, allowedSources: [] }, []), /elements/);
});

test('the iptables rule reads the VNI with u32 past the IP header, on unfragmented packets only', () => {
  const rule = iptablesGuardRule({ vni: 42, port: 8472, allowedSources: [] }).join(' ');
  assert.equal(
    rule,
    '-p udp --dport 8472 -m set ! --match-set tulle-peers src -m u32 --u32 4&0x1FFF=0 && 0>>22&0x3C@12>>8=42 -m set ! --match-set tulle-allowed src -m comment --comment unknown_source -j DROP',
  );
});

test('hostile spec values never reach nft: each names the field', () => {
  const cases: Array<[Record<string, unknown>, string]> = [
    [{ vni: 0 }, 'Backend.VNI'],
    [{ vni: 16_777_216 }, 'Backend.VNI'],
    [{ vni: 1.5 }, 'Backend.VNI'],
    [{ vni: '1; flush ruleset' }, 'Backend.VNI'],
    [{ port: 0 }, 'Backend.Port'],
    [{ port: 70000 }, 'Backend.Port'],
    [{ allowedSources: ['203.0.113.0/24 } ; flush ruleset ; set x {'] }, 'Backend.AllowedSources[0]'],
    [{ allowedSources: ['203.0.113.0/24', '203.0.113.1/24'] }, 'Backend.AllowedSources[1]'],
  ];
  for (const [change, field] of cases) {
    const spec = { vni: 1, port: 8472, allowedSources: [], ...change } as never;
    assert.throws(
      () => nftGuardRuleset(spec, []),
      (e: unknown) => e instanceof InvalidValueError && e.field === field,
      `${JSON.stringify(change)} -> ${field}`,
    );
    assert.throws(
      () => iptablesGuardRule(spec),
      (e: unknown) => e instanceof InvalidValueError && e.field === field,
    );
  }
});

test('peer addresses: only canonical IPv4 addresses are kept, sorted and unique; everything else is set aside', () => {
  const { valid, invalid } = normalizePeers([
    '198.51.100.12',
    '192.0.2.11',
    '192.0.2.11',
    ' 192.0.2.1',
    '192.0.2.1 } ; flush ruleset',
    '::1',
    '',
    7,
    null,
    '192.0.2.011',
    '300.1.1.1',
  ]);
  assert.deepEqual(valid, ['192.0.2.11', '198.51.100.12']);
  assert.equal(invalid.length, 8);
  // Hostile text is dropped before it could be written into a ruleset.
  assert.doesNotMatch(nftGuardRuleset({ vni: 1, port: 8472, allowedSources: [] }, ['192.0.2.1 } ; flush ruleset']), /flush/);
});

test('a change of peers before the guard is set up is refused and counts nothing', async () => {
  const guard = new VxlanGuard('nftables', 'tulle-no-such-netns');
  await assert.rejects(guard.changePeers(['192.0.2.12'], []), (e: unknown) => e instanceof GuardError && /not set up/.test(e.message));
  await assert.rejects(guard.setPeers(['192.0.2.12']), (e: unknown) => e instanceof GuardError);
  assert.equal(guard.size, 0);
  assert.deepEqual(guard.peers, []);
});
