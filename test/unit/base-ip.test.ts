import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cidrContainsCidr, cidrsOverlap, formatCidr4, formatIPv4, nthAddress, parseCidr4, parseIPv4, parseMac, randomMac } from '../../src/base/ip.js';
import { InvalidValueError } from '../../src/base/errors.js';

test('IPv4 parse/format round trip and CIDR arithmetic', () => {
  assert.equal(formatIPv4(parseIPv4('10.244.1.63')), '10.244.1.63');
  assert.equal(parseIPv4('255.255.255.255'), 0xffffffff);
  const net = parseCidr4('10.244.0.0/16', 'Network');
  const sub = parseCidr4('10.244.2.0/24');
  assert.ok(cidrContainsCidr(net, sub));
  assert.ok(!cidrContainsCidr(sub, net));
  assert.ok(cidrsOverlap(net, sub));
  assert.ok(!cidrsOverlap(sub, parseCidr4('10.244.3.0/24')));
  assert.equal(formatIPv4(nthAddress(sub, 1)), '10.244.2.1');
  assert.equal(formatCidr4(parseCidr4('10.244.1.7/24', 'x', true)), '10.244.1.0/24');
});

test('bad addresses name the field, the value and the rule', () => {
  assert.throws(() => parseCidr4('10.244.1.7/24', 'Network'), (e: unknown) => e instanceof InvalidValueError && e.field === 'Network' && /host bits set.*10\.244\.1\.0\/24/.test(e.message));
  assert.throws(() => parseCidr4('10.244.0.0/33', 'Network'), /Network: "10.244.0.0\/33" is not an IPv4 CIDR/);
  assert.throws(() => parseIPv4('300.1.1.1', 'PublicIP'), /PublicIP: "300.1.1.1" is not an IPv4 address/);
  assert.throws(() => parseMac('0e:f0:b5:8c:28', 'VtepMAC'), /VtepMAC: .* is not a MAC address/);
});

test('MACs normalise to lower case; random MACs are locally administered unicast', () => {
  assert.equal(parseMac('0E:F0:B5:8C:28:F5'), '0e:f0:b5:8c:28:f5');
  for (let i = 0; i < 50; i++) {
    const first = parseInt(randomMac((n) => Buffer.from(Array.from({ length: n }, () => Math.floor(Math.random() * 256)))).slice(0, 2), 16);
    assert.equal(first & 0x03, 0x02);
  }
});
