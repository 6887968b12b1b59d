import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidValueError } from '../../src/base/errors.js';
import { parseNetworkConfig, subnetRange, validateNetworkConfig } from '../../src/config/network.js';

const DEFAULT_BACKEND = { Type: 'vxlan', VNI: 1, Port: 8472, MTU: 0, GBP: false, DirectRouting: false, Learning: false };

test('flannel defaults: SubnetLen 24, SubnetMin the second subnet, SubnetMax the last, vxlan VNI 1 port 8472', () => {
  assert.deepEqual(parseNetworkConfig('{"Network":"10.244.0.0/16"}'), {
    Network: '10.244.0.0/16',
    SubnetLen: 24,
    SubnetMin: '10.244.1.0',
    SubnetMax: '10.244.255.0',
    Backend: DEFAULT_BACKEND,
  });
});

test('the ARCHITECTURE.md config reads back as written', () => {
  const text =
    '{"Network":"10.244.0.0/16","SubnetLen":24,"SubnetMin":"10.244.1.0","SubnetMax":"10.244.255.0","Backend":{"Type":"vxlan","VNI":1,"Port":8472,"MTU":0,"GBP":false,"DirectRouting":false,"Learning":false}}';
  assert.deepEqual(parseNetworkConfig(text), JSON.parse(text));
});

test('keys are read case-insensitively, the last spelling winning, as Go does', () => {
  const c = parseNetworkConfig('{"network":"10.3.0.0/16","SUBNETLEN":20,"backend":{"type":"VXLAN","vni":42,"port":0,"directrouting":true,"Gbp":true}}');
  assert.equal(c.Network, '10.3.0.0/16');
  assert.equal(c.SubnetLen, 20);
  assert.equal(c.SubnetMin, '10.3.16.0');
  assert.equal(c.SubnetMax, '10.3.240.0');
  assert.deepEqual(c.Backend, { ...DEFAULT_BACKEND, VNI: 42, DirectRouting: true, GBP: true });
  assert.equal(parseNetworkConfig('{"Network":"10.1.0.0/16","network":"10.2.0.0/16"}').Network, '10.2.0.0/16');
});

test('small networks get smaller subnets (prefix + 2); host bits in Network are cleared like net.ParseCIDR', () => {
  assert.equal(parseNetworkConfig('{"Network":"10.0.0.0/22"}').SubnetLen, 24);
  const c = parseNetworkConfig('{"Network":"192.168.7.0/24"}');
  assert.deepEqual([c.SubnetLen, c.SubnetMin, c.SubnetMax], [26, '192.168.7.64', '192.168.7.192']);
  assert.equal(parseNetworkConfig('{"Network":"10.0.0.0/28"}').SubnetLen, 30);
  assert.equal(parseNetworkConfig('{"Network":"10.244.7.9/16"}').Network, '10.244.0.0/16');
});

test("flannel's documented example (Network 10.0.0.0/8, SubnetLen 20, SubnetMin/Max) is accepted", () => {
  const c = parseNetworkConfig(
    '{"Network":"10.0.0.0/8","SubnetLen":20,"SubnetMin":"10.10.0.0","SubnetMax":"10.99.0.0","Backend":{"Type":"vxlan","Port":7890}}',
  );
  assert.deepEqual([c.SubnetMin, c.SubnetMax, c.Backend.Port], ['10.10.0.0', '10.99.0.0', 7890]);
  const r = subnetRange(c);
  assert.equal(r.count, (0x0a630000 - 0x0a0a0000) / 4096 + 1);
});

test('every broken rule is an InvalidValueError naming the field, the value and the rule', () => {
  const cases: Array<[string, string, RegExp]> = [
    ['[1,2]', 'network config', /is not a JSON object/],
    ['{"Network":', 'network config', /is not valid JSON/],
    ['{}', 'Network', /Network: \(missing\) is required/],
    ['{"Network":"10.244.0.0"}', 'Network', /"10\.244\.0\.0" is not an IPv4 CIDR/],
    ['{"Network":"fd00::/64"}', 'Network', /is not an IPv4 CIDR/],
    ['{"Network":17}', 'Network', /17 is not an IPv4 CIDR/],
    ['{"Network":"10.0.0.0/29"}', 'Network', /too small.*\/28 or shorter/],
    ['{"Network":"10.244.0.0/16","SubnetLen":31}', 'SubnetLen', /SubnetLen: 31 is out of range \(must be 18\.\.30/],
    ['{"Network":"10.244.0.0/16","SubnetLen":17}', 'SubnetLen', /17 is out of range \(must be 18\.\.30/],
    ['{"Network":"10.244.0.0/16","SubnetLen":-1}', 'SubnetLen', /out of range/],
    ['{"Network":"10.244.0.0/16","SubnetLen":"24"}', 'SubnetLen', /"24" is not a whole number/],
    ['{"Network":"10.244.0.0/16","SubnetLen":24.5}', 'SubnetLen', /24\.5 is not a whole number/],
    ['{"Network":"10.0.0.0/29","SubnetLen":30}', 'SubnetLen', /no SubnetLen fits/],
    ['{"Network":"10.244.0.0/16","SubnetMin":"10.245.1.0"}', 'SubnetMin', /"10\.245\.1\.0" is outside Network 10\.244\.0\.0\/16/],
    ['{"Network":"10.244.0.0/16","SubnetMin":"10.244.1.128"}', 'SubnetMin', /is not on a SubnetLen boundary \(a \/24 starts at 10\.244\.1\.0\)/],
    ['{"Network":"10.244.0.0/16","SubnetMax":"10.244.1.1"}', 'SubnetMax', /not on a SubnetLen boundary/],
    ['{"Network":"10.244.0.0/16","SubnetMax":"nope"}', 'SubnetMax', /"nope" is not an IPv4 address/],
    ['{"Network":"10.244.0.0/16","SubnetMin":"10.244.9.0","SubnetMax":"10.244.8.0"}', 'SubnetMin', /above SubnetMax 10\.244\.8\.0/],
    ['{"Network":"10.244.0.0/16","Backend":"vxlan"}', 'Backend', /is not a JSON object/],
    ['{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}', 'Backend.Type', /"host-gw" is not a supported backend type \(tulle supports: vxlan\)/],
    ['{"Network":"10.244.0.0/16","Backend":{"Type":"udp"}}', 'Backend.Type', /"udp" is not a supported/],
    ['{"Network":"10.244.0.0/16","Backend":{"VNI":0}}', 'Backend.VNI', /0 is out of range \(must be 1\.\.16777215\)/],
    ['{"Network":"10.244.0.0/16","Backend":{"VNI":16777216}}', 'Backend.VNI', /16777216 is out of range/],
    ['{"Network":"10.244.0.0/16","Backend":{"Port":65536}}', 'Backend.Port', /65536 is out of range \(must be 1\.\.65535, or 0 for the default 8472\)/],
    ['{"Network":"10.244.0.0/16","Backend":{"Port":-5}}', 'Backend.Port', /out of range/],
    ['{"Network":"10.244.0.0/16","Backend":{"MTU":40}}', 'Backend.MTU', /40 is out of range \(must be 68\.\.65535, or 0/],
    ['{"Network":"10.244.0.0/16","Backend":{"GBP":"yes"}}', 'Backend.GBP', /"yes" is not a boolean/],
    ['{"Network":"10.244.0.0/16","EnableIPv6":true}', 'EnableIPv6', /not supported/],
  ];
  for (const [text, field, rule] of cases) {
    assert.throws(
      () => parseNetworkConfig(text),
      (e: unknown) => e instanceof InvalidValueError && e.field === field && rule.test(e.message) && e.code === 'TLE_INVALID_VALUE',
      `${text} should fail on ${field} with ${rule}`,
    );
  }
});

test('zero values mean "default", as for a Go struct: Port 0, SubnetLen 0, SubnetMin "0.0.0.0", null fields', () => {
  const c = validateNetworkConfig({ Network: '10.244.0.0/16', SubnetLen: 0, SubnetMin: '0.0.0.0', SubnetMax: null, Backend: { Port: 0, MTU: null, Type: '' } });
  assert.deepEqual(
    [c.SubnetLen, c.SubnetMin, c.SubnetMax, c.Backend.Port, c.Backend.MTU, c.Backend.Type],
    [24, '10.244.1.0', '10.244.255.0', 8472, 0, 'vxlan'],
  );
});

test('Backend.AllowedSources: CIDRs in canonical form, a bare address is a /32, absent when not given', () => {
  const c = parseNetworkConfig('{"Network":"10.244.0.0/16","Backend":{"AllowedSources":["203.0.113.0/24","198.51.100.7"]}}');
  assert.deepEqual(c.Backend.AllowedSources, ['203.0.113.0/24', '198.51.100.7/32']);
  assert.equal('AllowedSources' in parseNetworkConfig('{"Network":"10.244.0.0/16"}').Backend, false);
  assert.deepEqual(parseNetworkConfig('{"Network":"10.244.0.0/16","backend":{"allowedsources":[]}}').Backend.AllowedSources, []);
});

test('Backend.AllowedSources: hostile values name the entry, the value and the rule; long values are cut', () => {
  const long = 'x'.repeat(5000);
  const cases: Array<[unknown, string, RegExp]> = [
    ['203.0.113.0/24', 'Backend.AllowedSources', /"203\.0\.113\.0\/24" is not a list of IPv4 CIDRs/],
    [{ a: 1 }, 'Backend.AllowedSources', /is not a list/],
    [['203.0.113.0/24', 7], 'Backend.AllowedSources[1]', /^Backend\.AllowedSources\[1\]: 7 is not an IPv4 CIDR string/],
    [['203.0.113.1/24'], 'Backend.AllowedSources[0]', /has host bits set \(the network address is 203\.0\.113\.0\/24\)/],
    [['203.0.113.0/33'], 'Backend.AllowedSources[0]', /is not an IPv4 CIDR/],
    [['2001:db8::/64'], 'Backend.AllowedSources[0]', /is not an IPv4 CIDR/],
    [['203.0.113.0/24; flush ruleset'], 'Backend.AllowedSources[0]', /is not an IPv4 CIDR/],
    [['0.0.0.0/0'], 'Backend.AllowedSources[0]', /allows every source, which turns the VXLAN guard off \(run the agents with --vxlan-guard=false instead\)/],
    [[long], 'Backend.AllowedSources[0]', /^Backend\.AllowedSources\[0\]: "x{61}…" is not an IPv4 CIDR/],
    [Array(1025).fill('203.0.113.0/24'), 'Backend.AllowedSources', /"1025 entries" is too long \(at most 1024/],
  ];
  for (const [value, field, rule] of cases) {
    assert.throws(
      () => validateNetworkConfig({ Network: '10.244.0.0/16', Backend: { AllowedSources: value } }),
      (e: unknown) => e instanceof InvalidValueError && e.field === field && rule.test(e.message) && e.message.length < 300,
      `${JSON.stringify(value).slice(0, 80)} should fail on ${field} with ${rule}`,
    );
  }
});
