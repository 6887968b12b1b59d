// CNI results per version: what tulle writes passes the spec checker, and the checker catches real mistakes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SUPPORTED_VERSIONS } from '../../src/cni/errors.js';
import { appendResult, formatResult, parseResult } from '../../src/cni/result.js';
import { resultViolations } from '../../src/cni/validate-result.js';

const bridgeResult = {
  interfaces: [
    { name: 'cni0', mac: '02:11:22:33:44:55', mtu: 1450 },
    { name: 'veth0123456789a', mac: '02:aa:bb:cc:dd:ee', mtu: 1450 },
    { name: 'eth0', mac: '02:00:00:00:00:01', mtu: 1450, sandbox: '/run/netns/pod' },
  ],
  ips: [{ address: '10.244.1.2/24', gateway: '10.244.1.1', interface: 2 }],
  routes: [{ dst: '10.244.0.0/16', gw: '10.244.1.1' }],
  dns: { nameservers: ['10.96.0.10'] },
};

test('formatResult writes each version in its own shape, and each passes the spec checker', () => {
  for (const v of SUPPORTED_VERSIONS) {
    const out = formatResult(bridgeResult, v);
    assert.deepEqual(resultViolations(out, v), [], `version ${v}`);
    assert.equal(out.cniVersion, v);
  }
  const v04 = formatResult(bridgeResult, '0.4.0') as any;
  assert.equal(v04.ips[0].version, '4');
  assert.equal(v04.interfaces[0].mtu, undefined, '0.4.0 has no interface mtu');
  const v10 = formatResult(bridgeResult, '1.0.0') as any;
  assert.equal(v10.ips[0].version, undefined, '1.0.0 dropped ips[].version');
  assert.equal(v10.interfaces[2].mtu, undefined, 'interface mtu came with 1.1.0');
  const v11 = formatResult(bridgeResult, '1.1.0') as any;
  assert.equal(v11.interfaces[2].mtu, 1450);
  assert.equal(v11.interfaces[2].sandbox, '/run/netns/pod');
});

test('the checker rejects what a runtime of that version would not accept', () => {
  const good = formatResult(bridgeResult, '1.0.0') as any;
  const broken = (mutate: (r: any) => void, version = '1.0.0') => {
    const r = structuredClone(formatResult(bridgeResult, version as any)) as any;
    mutate(r);
    return resultViolations(r, version);
  };
  assert.deepEqual(resultViolations(good, '1.0.0'), []);
  assert.match(broken((r) => (r.ips[0].version = '4')).join(), /ips\[0\] has key "version", which 1\.0\.0 does not define/);
  assert.match(broken((r) => delete r.ips[0].version, '0.4.0').join(), /ips\[0\]\.version undefined must be "4" or "6" in 0\.4\.0/);
  assert.match(broken((r) => (r.ips[0].version = '6'), '0.4.0').join(), /does not match the address family/);
  assert.match(broken((r) => (r.interfaces[0].mtu = 1450)).join(), /interfaces\[0\] has key "mtu", which 1\.0\.0 does not define/);
  assert.match(broken((r) => (r.ips[0].interface = 3)).join(), /ips\[0\]\.interface 3 is not an index into interfaces \(3 entries\)/);
  assert.match(broken((r) => (r.ips[0].address = '10.244.1.2')).join(), /is not an address with prefix length/);
  assert.match(broken((r) => (r.routes[0].dst = '10.244.0.0/33')).join(), /routes\[0\]\.dst "10\.244\.0\.0\/33" is not a prefix/);
  assert.match(broken((r) => (r.interfaces[1].mac = 'zz:zz')).join(), /is not a MAC address/);
  assert.match(broken((r) => (r.cniVersion = '1.1.0')).join(), /cniVersion is "1\.1\.0", the config asked for "1\.0\.0"/);
  assert.match(broken((r) => (r.extra = 1)).join(), /unknown top-level key "extra"/);
});

test('a prevResult of any version reads back to the same content', () => {
  for (const v of SUPPORTED_VERSIONS) {
    const back = parseResult(formatResult(bridgeResult, v));
    assert.deepEqual(back.ips, bridgeResult.ips, v);
    assert.deepEqual(back.routes, bridgeResult.routes, v);
    assert.equal(back.interfaces[2]!.sandbox, '/run/netns/pod');
  }
  assert.throws(() => parseResult({ ips: [{ address: '10.0.0.1/24', interface: 5 }], interfaces: [] }), /prevResult\.ips\[0\]\.interface: 5 is not an index/);
  assert.throws(() => parseResult({ interfaces: [{ mac: '02:00:00:00:00:01' }] }), /prevResult\.interfaces\[0\]\.name: \(missing\) is required/);
  assert.throws(() => parseResult('x'), /prevResult: "x" must be a CNI result object/);
});

test("appendResult keeps an earlier plugin's interfaces and shifts our interface indexes past them", () => {
  const prev = parseResult({
    cniVersion: '1.0.0',
    interfaces: [{ name: 'lo', sandbox: '/run/netns/pod' }],
    ips: [{ address: '127.0.0.1/8', interface: 0 }],
    dns: { domain: 'a' },
  });
  const merged = appendResult(prev, bridgeResult, { search: ['b'] });
  assert.equal(merged.interfaces.length, 4);
  assert.deepEqual(
    merged.ips.map((i) => i.interface),
    [0, 3],
  );
  assert.equal(merged.interfaces[3]!.name, 'eth0');
  assert.deepEqual(merged.dns, { domain: 'a', search: ['b'] });
  assert.deepEqual(resultViolations(formatResult(merged, '1.1.0'), '1.1.0'), []);
});
