/**
 * Address parsing and formatting for netlink: agree with node:net on what is an address, round-trip bytes, and
 * format IPv6 the canonical (RFC 5952) way that iproute2 prints.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isIPv4 } from 'node:net';
import fc from 'fast-check';
import { formatAddress, parseAddress, parsePrefix } from '../../src/netlink/inet.js';
import { InvalidValueError } from '../../src/base/errors.js';

test('parseAddress reads as IPv4 exactly what node:net accepts as IPv4 (property)', () => {
  const text = fc.oneof(
    fc.ipV4(),
    fc.string({ maxLength: 16 }),
    fc
      .array(fc.oneof(fc.integer({ min: 0, max: 300 }).map(String), fc.constantFrom('01', '00', '', '-1', '1a')), { minLength: 1, maxLength: 5 })
      .map((p) => p.join('.')),
  );
  fc.assert(
    fc.property(text, (s) => {
      let v4: boolean;
      try {
        v4 = parseAddress(s, 'address').family === 4;
      } catch {
        v4 = false;
      }
      assert.equal(v4, isIPv4(s), s);
    }),
    { numRuns: 2000 },
  );
});

test('IPv4 and IPv6 addresses round-trip through bytes (property)', () => {
  fc.assert(
    fc.property(fc.oneof(fc.ipV4(), fc.ipV6()), (addr) => {
      const parsed = parseAddress(addr, 'address');
      assert.equal(parsed.bytes.length, parsed.family === 4 ? 4 : 16);
      const text = formatAddress(parsed.bytes);
      assert.deepEqual(parseAddress(text, 'address').bytes, parsed.bytes);
    }),
    { numRuns: 1000 },
  );
});

test('IPv6 text is canonical: lower case, longest zero run compressed, single zero group kept', () => {
  // The URL parser implements the same WHATWG/RFC 5952 serialisation; compare with it (property) ...
  fc.assert(
    fc.property(fc.ipV6(), (addr) => {
      const expected = new URL(`http://[${addr}]/`).hostname.slice(1, -1);
      const ours = formatAddress(parseAddress(addr, 'a').bytes);
      if (!ours.includes('.')) assert.equal(ours, expected, addr);
    }),
    { numRuns: 1000 },
  );
  // ... and on known cases, including an IPv4-mapped one.
  assert.equal(formatAddress(parseAddress('FD00:0:0:0:0:0:0:1', 'a').bytes), 'fd00::1');
  assert.equal(formatAddress(parseAddress('2001:db8:0:1:0:0:0:1', 'a').bytes), '2001:db8:0:1::1');
  assert.equal(formatAddress(parseAddress('2001:db8:0:1:1:1:1:1', 'a').bytes), '2001:db8:0:1:1:1:1:1');
  assert.equal(formatAddress(parseAddress('::ffff:192.0.2.1', 'a').bytes), '::ffff:192.0.2.1');
  assert.equal(formatAddress(parseAddress('::', 'a').bytes), '::');
});

test('prefixes: host bits rejected for routes (naming the network), kept for interface addresses', () => {
  assert.equal(parsePrefix('10.244.2.0/24', 'route dst', 'reject').prefix, 24);
  const kept = parsePrefix('10.244.1.1/24', 'address', 'keep');
  assert.equal(formatAddress(kept.bytes), '10.244.1.1');
  assert.throws(
    () => parsePrefix('10.244.2.1/24', 'route dst', 'reject'),
    (e: unknown) => e instanceof InvalidValueError && e.field === 'route dst' && /host bits set \(the network is 10\.244\.2\.0\/24\)/.test(e.message),
  );
  assert.equal(parsePrefix('192.0.2.7', 'address', 'keep').prefix, 32);
  assert.equal(parsePrefix('fd00::/64', 'route dst', 'reject').prefix, 64);
  for (const bad of ['10.244.2.0/33', '10.244.2.0/', '10.244.2/24', 'x/8', '10.0.0.0/8/8', '']) {
    assert.throws(() => parsePrefix(bad, 'route dst', 'reject'), InvalidValueError, bad);
  }
});
