// Host veth names: deterministic from (container ID, ifname), within Linux's 15 bytes, and well spread.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fnv1a64, hostVethName } from '../../src/cni/names.js';

test('FNV-1a 64 matches the published test vectors', () => {
  assert.equal(fnv1a64(''), 0xcbf29ce484222325n);
  assert.equal(fnv1a64('a'), 0xaf63dc4c8601ec8cn);
  assert.equal(fnv1a64('foobar'), 0x85944171f73967e8n);
});

test('the host veth name is veth + 11 hex digits, the same for the same attachment, different per interface', () => {
  const id = '3f6940ab5ab43bc522569d15b23f8c1bbde1d7678b080398506924fc01d72755';
  const a = hostVethName(id, 'eth0');
  assert.match(a, /^veth[0-9a-f]{11}$/);
  assert.equal(Buffer.byteLength(a), 15);
  assert.equal(hostVethName(id, 'eth0'), a);
  assert.equal(hostVethName(` ${id}\n`, 'eth0'), a, 'the ID is trimmed, as host-local trims it');
  assert.notEqual(hostVethName(id, 'net1'), a);
});

test('no two of 20000 container IDs share a name', () => {
  const seen = new Set<string>();
  for (let i = 0; i < 20000; i++) seen.add(hostVethName(`pod-${i}-${(i * 2654435761) % 1000003}`, 'eth0'));
  assert.equal(seen.size, 20000);
});
