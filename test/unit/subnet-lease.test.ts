import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidValueError } from '../../src/base/errors.js';
import { DEFAULT_PREFIX } from '../../src/store/keys.js';
import { checkLeaseAttrs, decodeLease, encodeLeaseValue, MalformedLeaseError, sameLeaseAttrs } from '../../src/subnet/lease.js';

const key = `${DEFAULT_PREFIX}/subnets/10.244.1.0-24`;
const stored = (value: string, k = key, expiresAt: number | null = 1_700_000_000_000) => ({ key: k, value, modRevision: 7, expiresAt });

test("flannel's own lease value (PublicIPv6 null, upper-case MAC) decodes, and unknown fields survive re-encoding", () => {
  const lease = decodeLease(
    DEFAULT_PREFIX,
    stored('{"PublicIP":"192.0.2.11","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VtepMAC":"C6:D2:32:6F:8F:44","VNI":1}}'),
  );
  assert.deepEqual(lease, {
    subnet: '10.244.1.0/24',
    key,
    publicIP: '192.0.2.11',
    backendType: 'vxlan',
    backendData: { VNI: 1, VtepMAC: 'c6:d2:32:6f:8f:44' },
    expiration: new Date(1_700_000_000_000),
    revision: 7,
    created: 7,
    extra: { PublicIPv6: null },
    // Its addresses as numbers, read once here (admission and planning parse no text per lease).
    numbers: { network: 0x0af40100, prefix: 24, publicIP: 0xc000020b, vtepMac: 0xc6d2326f8f44 },
  });
  assert.equal(
    encodeLeaseValue(lease),
    '{"PublicIP":"192.0.2.11","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"},"PublicIPv6":null}',
  );
});

test('keys are read case-insensitively; extra backend fields are kept; a key without TTL is a reservation', () => {
  const lease = decodeLease(
    DEFAULT_PREFIX,
    stored('{"publicip":"192.0.2.12","backendtype":"vxlan","backenddata":{"vni":4096,"vtepmac":"0e:00:00:00:00:01","Future":true}}', key, null),
  );
  assert.equal(lease.publicIP, '192.0.2.12');
  assert.deepEqual(lease.backendData, { VNI: 4096, VtepMAC: '0e:00:00:00:00:01', Future: true });
  assert.equal(lease.expiration, null);
  assert.deepEqual(lease.extra, {});
  assert.equal(
    encodeLeaseValue(lease),
    '{"PublicIP":"192.0.2.12","BackendType":"vxlan","BackendData":{"VNI":4096,"VtepMAC":"0e:00:00:00:00:01","Future":true}}',
  );
});

test('a dual-stack flannel key and another backend type are read as they are', () => {
  const l = decodeLease(DEFAULT_PREFIX, stored('{"PublicIP":"192.0.2.13","BackendType":"host-gw"}', `${DEFAULT_PREFIX}/subnets/10.244.3.0-24&fc00:0:0:3::-64`));
  assert.equal(l.subnet, '10.244.3.0/24');
  assert.equal(l.backendType, 'host-gw');
  assert.deepEqual(l.backendData, {});
});

test('malformed values name the key and the problem', () => {
  const cases: Array<[string, string, RegExp]> = [
    ['not json', key, /the value is not JSON/],
    ['[1]', key, /not a JSON object/],
    ['{"BackendType":"vxlan"}', key, /PublicIP \(missing\) is not an IPv4 address/],
    ['{"PublicIP":"2001:db8::1"}', key, /PublicIP "2001:db8::1" is not an IPv4 address/],
    ['{"PublicIP":"192.0.2.1","BackendType":7}', key, /BackendType 7 is not a string/],
    ['{"PublicIP":"192.0.2.1","BackendType":"vxlan","BackendData":[]}', key, /BackendData \[\] is not a JSON object/],
    ['{"PublicIP":"192.0.2.1","BackendType":"vxlan","BackendData":{"VtepMAC":"0e:00:00:00:00:01"}}', key, /BackendData\.VNI \(missing\) is not a VNI/],
    ['{"PublicIP":"192.0.2.1","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"zz"}}', key, /BackendData\.VtepMAC "zz" is not a MAC address/],
    ['{"PublicIP":"192.0.2.1"}', `${DEFAULT_PREFIX}/subnets/garbage`, /not a subnet key/],
    ['{"PublicIP":"192.0.2.1"}', `${DEFAULT_PREFIX}/subnets/10.244.1.5-24`, /not a subnet key/],
  ];
  for (const [value, k, rule] of cases) {
    assert.throws(
      () => decodeLease(DEFAULT_PREFIX, stored(value, k)),
      (e: unknown) => e instanceof MalformedLeaseError && e.code === 'TLE_MALFORMED_LEASE' && e.message.includes(k) && rule.test(e.message),
      value,
    );
  }
});

test('what a host publishes is checked and normalised; renewals are not changes', () => {
  assert.equal(
    checkLeaseAttrs({ publicIP: '192.0.2.1', backendType: 'vxlan', backendData: { VNI: 1, VtepMAC: 'AA:BB:CC:DD:EE:FF' } }).backendData.VtepMAC,
    'aa:bb:cc:dd:ee:ff',
  );
  const bad: Array<[Parameters<typeof checkLeaseAttrs>[0], string]> = [
    [{ publicIP: '2001:db8::1', backendType: 'vxlan', backendData: { VNI: 1, VtepMAC: '0e:00:00:00:00:01' } }, 'publicIP'],
    [{ publicIP: '192.0.2.1', backendType: 'vxlan', backendData: { VNI: 0, VtepMAC: '0e:00:00:00:00:01' } }, 'backendData.VNI'],
    [{ publicIP: '192.0.2.1', backendType: 'vxlan', backendData: { VNI: 1, VtepMAC: 'nope' } }, 'backendData.VtepMAC'],
  ];
  for (const [attrs, field] of bad)
    assert.throws(
      () => checkLeaseAttrs(attrs),
      (e: unknown) => e instanceof InvalidValueError && e.field === field,
    );
  const a = decodeLease(DEFAULT_PREFIX, stored('{"PublicIP":"192.0.2.1","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:00:01"}}'));
  assert.ok(sameLeaseAttrs(a, { ...a, revision: 99, expiration: new Date(0) }));
  assert.ok(!sameLeaseAttrs(a, { ...a, backendData: { VNI: 1, VtepMAC: '0e:00:00:00:00:02' } }));
});

test('several spellings of one field: the last one wins, as in Go; other fields keep their document order', () => {
  const key = '/coreos.com/network/subnets/10.244.2.0-24';
  const lease = decodeLease(
    '/coreos.com/network',
    stored(
      '{"Z":1,"PublicIP":"192.0.2.99","publicip":"192.0.2.12","BackendType":"vxlan","A":2,"BackendData":{"VNI":1,"vni":7,"VtepMAC":"0e:00:00:00:00:01"}}',
      key,
      null,
    ),
  );
  assert.equal(lease.publicIP, '192.0.2.12');
  assert.equal(lease.backendData.VNI, 7);
  assert.deepEqual(Object.keys(lease.extra), ['Z', 'A']);
});
