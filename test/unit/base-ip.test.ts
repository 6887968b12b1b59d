import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  cidrContainsCidr,
  cidrsOverlap,
  formatCidr4,
  formatIPv4,
  formatMacNumber,
  ipv4Number,
  macNumber,
  nthAddress,
  parseCidr4,
  parseIPv4,
  parseMac,
  randomMac,
} from '../../src/base/ip.js';
import { InvalidValueError } from '../../src/base/errors.js';
import { isIPv4 } from 'node:net';

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
  assert.throws(
    () => parseCidr4('10.244.1.7/24', 'Network'),
    (e: unknown) => e instanceof InvalidValueError && e.field === 'Network' && /host bits set.*10\.244\.1\.0\/24/.test(e.message),
  );
  assert.throws(() => parseCidr4('10.244.0.0/33', 'Network'), /Network: "10.244.0.0\/33" is not an IPv4 CIDR/);
  assert.throws(() => parseIPv4('300.1.1.1', 'PublicIP'), /PublicIP: "300.1.1.1" is not an IPv4 address/);
  assert.throws(() => parseMac('0e:f0:b5:8c:28', 'VtepMAC'), /VtepMAC: .* is not a MAC address/);
});

test('parseIPv4 accepts exactly what node:net isIPv4 accepts, and CIDRs follow it', () => {
  const hostile = [
    '',
    '.',
    '1.2.3',
    '1.2.3.4.',
    '.1.2.3.4',
    '1.2.3.4.5',
    '01.2.3.4',
    '1.2.3.04',
    '1.2.3.00',
    '0.0.0.0',
    '256.1.1.1',
    '1.1.1.255',
    '1.1.1.256',
    '1..2.3',
    ' 1.2.3.4',
    '1.2.3.4 ',
    '1.2.3.4\n',
    '1.2.3.-4',
    '+1.2.3.4',
    '1.2.3.4/24',
    '1.2.3.0x1',
    '１.2.3.4',
    '1.2.3.4\u0000',
    '999.999.999.999',
    '1.2.3.1000',
    '1e2.1.1.1',
  ];
  // Valid addresses and near-misses: each one a random address with one character inserted, dropped or changed.
  const alphabet = '0123456789.';
  let seed = 7;
  const pick = (n: number) => Math.floor(((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * n);
  for (let i = 0; i < 20000; i++) {
    const address = Array.from({ length: 4 }, () => String(pick(4) === 0 ? pick(10) : pick(300))).join('.');
    const at = pick(address.length + 1);
    const c = alphabet[pick(alphabet.length)]!;
    hostile.push(
      [address, address.slice(0, at) + c + address.slice(at), address.slice(0, at) + address.slice(at + 1), address.slice(0, at) + c + address.slice(at + 1)][
        pick(4)
      ]!,
    );
  }
  let accepted = 0;
  for (const text of hostile) {
    let parsed: number | undefined;
    try {
      parsed = parseIPv4(text);
    } catch (err) {
      assert.ok(err instanceof InvalidValueError, text);
    }
    assert.equal(parsed !== undefined, isIPv4(text), JSON.stringify(text));
    if (parsed !== undefined) {
      accepted++;
      assert.equal(formatIPv4(parsed), text);
      assert.equal(formatCidr4(parseCidr4(`${text}/32`)), `${text}/32`);
    } else {
      assert.throws(() => parseCidr4(`${text}/32`), InvalidValueError, JSON.stringify(text));
    }
  }
  assert.ok(accepted > 1000, `the random strings hit valid addresses too (${accepted})`);
  for (const bad of ['10.0.0.0', '10.0.0.0/', '10.0.0.0/33', '10.0.0.0/-1', '10.0.0.0/1.5', '10.0.0.0/ 8', '/8', '10.0.0.0/8/8', '10.0.0.0/100'])
    assert.throws(() => parseCidr4(bad), InvalidValueError, bad);
  assert.deepEqual(parseCidr4('10.0.0.0/08'), { network: 0x0a000000, prefix: 8 });
});

test('MACs normalise to lower case; random MACs are locally administered unicast', () => {
  assert.equal(parseMac('0E:F0:B5:8C:28:F5'), '0e:f0:b5:8c:28:f5');
  for (let i = 0; i < 50; i++) {
    const first = parseInt(randomMac((n) => Buffer.from(Array.from({ length: n }, () => Math.floor(Math.random() * 256)))).slice(0, 2), 16);
    assert.equal(first & 0x03, 0x02);
  }
});

test('macNumber / formatMacNumber: colon MACs of either case round-trip; anything else is NaN', () => {
  for (const mac of ['00:00:00:00:00:00', '02:5c:00:00:13:88', 'ff:ff:ff:ff:ff:ff', '0e:f0:b5:8c:28:f5']) assert.equal(formatMacNumber(macNumber(mac)), mac);
  assert.equal(macNumber('0E:F0:B5:8C:28:F5'), macNumber('0e:f0:b5:8c:28:f5'));
  assert.equal(macNumber('ff:ff:ff:ff:ff:ff'), 2 ** 48 - 1);
  for (const bad of [
    '',
    '0e:f0:b5:8c:28',
    '0e:f0:b5:8c:28:f5:00',
    '0e-f0-b5-8c-28-f5',
    '0e:f0:b5:8c:28:g5',
    ' e:f0:b5:8c:28:f5',
    '0ef0b58c28f5aaaaa',
    42,
    null,
  ])
    assert.ok(Number.isNaN(macNumber(bad as string)), `macNumber(${JSON.stringify(bad)})`);
});

test('ipv4Number: what parseIPv4 accepts, NaN for the rest', () => {
  assert.equal(ipv4Number('198.51.100.7'), parseIPv4('198.51.100.7'));
  assert.equal(ipv4Number('255.255.255.255'), 2 ** 32 - 1);
  for (const bad of ['', '1.2.3', '1.2.3.4.5', '01.2.3.4', '256.1.1.1', '1.2.3.4 ', 'fd00::1', 7])
    assert.ok(Number.isNaN(ipv4Number(bad as string)), `ipv4Number(${JSON.stringify(bad)})`);
});
