import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidValueError } from '../../src/base/errors.js';
import { parseCidr4 } from '../../src/base/ip.js';
import { configKey, normalizePrefix, parseSubnetKey, subnetKey } from '../../src/store/keys.js';
import { parseStoreUrl } from '../../src/store/url.js';

test('store URLs: sqlite:PATH, etcd://HOST:PORT[,...], memory:', () => {
  assert.deepEqual(parseStoreUrl('sqlite:/var/lib/tulle/tulle.db'), { kind: 'sqlite', path: '/var/lib/tulle/tulle.db' });
  assert.deepEqual(parseStoreUrl('sqlite:///var/x.db'), { kind: 'sqlite', path: '/var/x.db' });
  assert.deepEqual(parseStoreUrl('sqlite:rel/x.db'), { kind: 'sqlite', path: 'rel/x.db' });
  assert.deepEqual(parseStoreUrl('etcd://10.0.0.1:2379,etcd-2.example:2379,[2001:db8::1]:2379'), {
    kind: 'etcd',
    endpoints: ['10.0.0.1:2379', 'etcd-2.example:2379', '[2001:db8::1]:2379'],
  });
  assert.deepEqual(parseStoreUrl('memory:'), { kind: 'memory', name: '' });
});

test('a bad store URL names the option and what is wrong', () => {
  const cases: Array<[string, RegExp]> = [
    ['postgres://x', /--store: "postgres:\/\/x" is not a store URL \(sqlite:PATH, etcd:\/\/HOST:PORT/],
    ['sqlite:', /the SQLite file path is missing/],
    ['etcd://', /no etcd endpoint given/],
    ['etcd://127.0.0.1', /endpoint "127\.0\.0\.1" is not HOST:PORT/],
    ['etcd://127.0.0.1:0', /port 0 of "127\.0\.0\.1:0" is out of range/],
    ['etcd://127.0.0.1:2379,,x:1', /endpoint "" is not HOST:PORT/],
    ['etcd://[zz]:2379', /\[zz\] is not an IPv6 address/],
    // etcd's own form of an endpoint, and a bare endpoint, are answered with tulle's.
    ['http://192.0.2.10:2379', /^--store: "http:\/\/192\.0\.2\.10:2379" is not a store URL: write etcd endpoints as etcd:\/\/192\.0\.2\.10:2379$/],
    ['http://192.0.2.10:2379,http://192.0.2.11:2379/', /write etcd endpoints as etcd:\/\/192\.0\.2\.10:2379,192\.0\.2\.11:2379$/],
    ['https://etcd.example:2379', /as etcd:\/\/etcd\.example:2379 \(TLS: add --etcd-cafile/],
    ['192.0.2.10:2379', /is not a store URL: for etcd write etcd:\/\/192\.0\.2\.10:2379$/],
  ];
  for (const [url, rule] of cases)
    assert.throws(
      () => parseStoreUrl(url),
      (e: unknown) => e instanceof InvalidValueError && e.field === '--store' && rule.test(e.message),
      url,
    );
});

test("flannel's key layout", () => {
  assert.equal(normalizePrefix('/coreos.com/network/'), '/coreos.com/network');
  assert.throws(
    () => normalizePrefix('coreos.com/network'),
    (e: unknown) => e instanceof InvalidValueError && e.field === '--prefix',
  );
  assert.throws(() => normalizePrefix('/'), InvalidValueError);
  assert.equal(configKey('/coreos.com/network'), '/coreos.com/network/config');
  assert.equal(subnetKey('/coreos.com/network', parseCidr4('10.244.1.0/24')), '/coreos.com/network/subnets/10.244.1.0-24');
  assert.deepEqual(parseSubnetKey('/p', '/p/subnets/10.244.1.0-24'), { subnet: parseCidr4('10.244.1.0/24') });
  assert.deepEqual(parseSubnetKey('/p', '/p/subnets/10.244.1.0-24&fc00::-64'), { subnet: parseCidr4('10.244.1.0/24'), ipv6Subnet: 'fc00::/64' });
  assert.deepEqual(parseSubnetKey('/p', '/p/subnets/0.0.0.0-0'), { subnet: parseCidr4('0.0.0.0/0') });
  assert.deepEqual(parseSubnetKey('/p', '/p/subnets/10.244.1.7-32'), { subnet: parseCidr4('10.244.1.7/32') });
  assert.deepEqual(parseSubnetKey('/p', '/p/subnets/10.0.0.0-08'), { subnet: parseCidr4('10.0.0.0/8') }); // a length is one or two digits
  for (const k of [
    '/p/subnets/10.244.1.0',
    '/p/subnets/10.244.1.0-24/x',
    '/q/subnets/10.244.1.0-24',
    '/p/subnets/300.1.1.0-24',
    '/p/config',
    '/p/subnets/010.244.1.0-24', // a leading zero: not how tulle or flannel write an address
    '/p/subnets/10.244.1.1-24', // host bits set
    '/p/subnets/10.244.1.0-33',
    '/p/subnets/10.244.1.0-024',
    '/p/subnets/10.244.1.0-',
    '/p/subnets/10.244.1.0-2x',
    '/p/subnets/10.244.1.0--24',
    '/p/subnets/10.244.1.0-24&',
    '/p/subnets/10.244.1.0-24&fc00::-64&x',
    '/p/subnets/10.244.1.0-24&fc00::-1234',
    '/p/subnets/10.244.1.0 -24',
    '/p/subnets/-24',
    '/p/subnetsX/10.244.1.0-24',
  ])
    assert.equal(parseSubnetKey('/p', k), undefined, k);
  // The prefix is remembered between calls: a second prefix must not be confused with the first.
  assert.deepEqual(parseSubnetKey('/q', '/q/subnets/10.244.1.0-24'), { subnet: parseCidr4('10.244.1.0/24') });
  assert.equal(parseSubnetKey('/p', '/q/subnets/10.244.1.0-24'), undefined);
});
