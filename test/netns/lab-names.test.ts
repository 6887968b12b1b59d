// Pure rules of the lab (names, planned topology); no kernel needed. They live next to the lab's kernel tests.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { InvalidValueError } from '../../src/base/errors.js';
import { cidrContains, parseCidr4, parseIPv4 } from '../../src/base/ip.js';
import { assertNetnsName } from '../../src/netns/netns.js';
import { labNamespace, labOfNamespace, labPrefix, MAX_HOSTS, MAX_LAB_NAME_LENGTH, planTopology, validateLabName } from '../../src/lab/index.js';
import { topologyNamespaces } from '../../src/lab/topology.js';

const DOC_RANGES = ['192.0.2.0/24', '198.51.100.0/24', '203.0.113.0/24'].map((c) => parseCidr4(c));
const labName = fc.stringMatching(new RegExp(`^[a-z][a-z0-9]{0,${MAX_LAB_NAME_LENGTH - 1}}$`));

test('lab names: lower-case letters and digits, starting with a letter, at most 16; errors name the field', () => {
  for (const ok of ['demo', 'a', 't1f2e3', 'x'.repeat(MAX_LAB_NAME_LENGTH)]) assert.equal(validateLabName(ok), ok);
  for (const bad of ['', 'Demo', '1lab', 'a-b', 'a_b', 'a.b', 'lab name', 'x'.repeat(MAX_LAB_NAME_LENGTH + 1), 'läb']) {
    assert.throws(
      () => validateLabName(bad, '--name'),
      (e: unknown) =>
        e instanceof InvalidValueError && e.code === 'TLE_LAB_INVALID_NAME' && e.message.startsWith(`--name: ${JSON.stringify(bad)} is not a valid lab name`),
      bad,
    );
  }
});

test('the prefix of one lab never matches the namespaces of another', () => {
  fc.assert(
    fc.property(labName, labName, fc.constantFrom('h1', 'h128', 'rt', 'sw', 'sw2', 'h3-p1'), (a, b, target) => {
      const ns = labNamespace(b, target);
      assert.equal(labOfNamespace(ns), b);
      assert.equal(ns.startsWith(labPrefix(a)), a === b);
    }),
  );
  assert.equal(labOfNamespace('t-123-abc-ns'), undefined);
  assert.equal(labOfNamespace('tulle-'), undefined);
  assert.equal(labOfNamespace('tulle-demo-'), undefined);
});

test('every planned name is valid for any lab name and host count: namespaces, and interfaces of at most 15 bytes', () => {
  fc.assert(
    fc.property(labName, fc.integer({ min: 1, max: MAX_HOSTS }), fc.constantFrom('switch' as const, 'routed' as const), (name, n, underlay) => {
      const t = planTopology(name, n, underlay);
      for (const ns of topologyNamespaces(t)) {
        assertNetnsName(ns);
        assert.equal(labOfNamespace(ns), name);
      }
      const ifnames = [
        ...t.hosts.flatMap((h) => [h.interface, h.switchPort]),
        ...t.switches.map((s) => s.bridge),
        ...(t.router?.interfaces.flatMap((i) => [i.interface, i.switchPort]) ?? []),
      ];
      for (const ifname of ifnames) assert.ok(Buffer.byteLength(ifname) <= 15 && /^[a-z0-9]+$/.test(ifname), ifname);
    }),
    { numRuns: 200 },
  );
});

test('planned addresses: documentation ranges only, unique, hosts on their segment, routed hosts alternate segments', () => {
  for (const underlay of ['switch', 'routed'] as const) {
    const t = planTopology('demo', MAX_HOSTS, underlay);
    const all = [...t.hosts.map((h) => h.address), ...(t.router?.interfaces.map((i) => i.address) ?? [])];
    assert.equal(new Set(all).size, all.length, 'addresses are unique');
    for (const a of all)
      assert.ok(
        DOC_RANGES.some((r) => cidrContains(r, parseIPv4(a))),
        `${a} is in a documentation range`,
      );
    for (const h of t.hosts) {
      const seg = t.segments.find((s) => s.id === h.segment)!;
      assert.ok(cidrContains(parseCidr4(seg.cidr), parseIPv4(h.address)), `${h.name} ${h.address} in ${seg.cidr}`);
      assert.equal(h.gateway, seg.gateway);
      assert.equal(h.subnet, null);
    }
    assert.deepEqual(t.pods, []);
    if (underlay === 'switch') {
      assert.equal(t.router, null);
      assert.deepEqual(
        t.switches.map((s) => s.namespace),
        ['tulle-demo-sw'],
      );
      assert.ok(t.hosts.every((h) => h.segment === 1 && h.gateway === null));
    } else {
      assert.equal(t.router?.namespace, 'tulle-demo-rt');
      assert.deepEqual(
        t.switches.map((s) => s.namespace),
        ['tulle-demo-sw1', 'tulle-demo-sw2'],
      );
      assert.deepEqual(
        t.hosts.slice(0, 4).map((h) => [h.name, h.address, h.segment]),
        [
          ['h1', '192.0.2.11', 1],
          ['h2', '198.51.100.12', 2],
          ['h3', '192.0.2.13', 1],
          ['h4', '198.51.100.14', 2],
        ],
      );
    }
  }
});

test('host count and underlay are checked', () => {
  for (const n of [0, -1, MAX_HOSTS + 1, 1.5])
    assert.throws(
      () => planTopology('demo', n, 'switch'),
      (e: unknown) => e instanceof InvalidValueError && e.field === 'nodes',
      String(n),
    );
  assert.throws(
    () => planTopology('demo', 2, 'mesh' as never),
    (e: unknown) => e instanceof InvalidValueError && /underlay: "mesh" is not one of switch, routed/.test(e.message),
  );
});
