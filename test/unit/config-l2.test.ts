import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidValueError } from '../../src/base/errors.js';
import { parseNetworkConfig } from '../../src/config/network.js';
import { checkPrefixForMode } from '../../src/store/keys.js';
import { checkL2Lab, defaultL2Underlay, validateFlood } from '../../src/lab/l2.js';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const l2 = (backend: Record<string, unknown>) =>
  JSON.stringify({ Network: '10.33.0.0/24', SubnetLen: 28, Backend: { Type: 'vxlan', Mode: 'l2', VNI: 4242, Port: 4789, ...backend } });

/** The error names the field, and its message holds every fragment given. */
function refused(text: string, field: string, ...fragments: string[]): void {
  assert.throws(
    () => parseNetworkConfig(text),
    (err: unknown) => {
      assert.ok(err instanceof InvalidValueError, String(err));
      assert.equal(err.field, field);
      for (const f of fragments) assert.ok(err.message.includes(f), `${err.message} lacks ${f}`);
      return true;
    },
  );
}

test('an l2 config gets its defaults: flood unicast, bridge tl<VNI>, slices of the one Network', () => {
  const c = parseNetworkConfig(l2({}));
  assert.equal(c.Backend.mode, 'l2');
  assert.equal(c.Backend.flood, 'unicast');
  assert.equal(c.Backend.bridge, 'tl4242');
  assert.equal(c.Backend.group, undefined);
  assert.deepEqual([c.Network, c.SubnetLen, c.SubnetMin, c.SubnetMax], ['10.33.0.0/24', 28, '10.33.0.16', '10.33.0.240']);
});

test('Mode, Flood, Group and Bridge are read case-insensitively, keys and enum values alike', () => {
  const c = parseNetworkConfig('{"network":"10.33.0.0/24","backend":{"mode":"L2","flood":"Multicast","group":"239.42.0.1","bridge":"br-mylan","vni":4242}}');
  assert.deepEqual([c.Backend.mode, c.Backend.flood, c.Backend.group, c.Backend.bridge], ['l2', 'multicast', '239.42.0.1', 'br-mylan']);
  assert.equal(parseNetworkConfig(l2({ Flood: 'remote' })).Backend.flood, 'remote');
  assert.equal(parseNetworkConfig(l2({ Flood: 'none' })).Backend.flood, 'none');
});

test('an l3 config reads and prints as flannel wrote it: the l2 fields are there but not enumerable', () => {
  const text = '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","VNI":7}}';
  const c = parseNetworkConfig(text);
  assert.equal(c.Backend.mode, 'l3');
  assert.equal(c.Backend.bridge, 'tl7');
  assert.equal(JSON.stringify(c.Backend), '{"Type":"vxlan","VNI":7,"Port":8472,"MTU":0,"GBP":false,"DirectRouting":false,"Learning":false}');
  assert.equal(parseNetworkConfig('{"Network":"10.244.0.0/16","Backend":{"Mode":"l3"}}').Backend.mode, 'l3');
});

test('hostile and wrong values: an error naming the field, the value and the rule', () => {
  refused(l2({ Mode: 'l4' }), 'Backend.Mode', '"l4"', 'l3, l2');
  refused(l2({ Mode: 2 }), 'Backend.Mode', 'l3, l2');
  refused(l2({ Flood: 'broadcast' }), 'Backend.Flood', 'unicast, multicast, remote, none');
  refused(l2({ Flood: 'multicast' }), 'Backend.Group', 'is required');
  refused(l2({ Flood: 'multicast', Group: '10.33.0.1' }), 'Backend.Group', '10.33.0.1', 'not a multicast address');
  refused(l2({ Flood: 'multicast', Group: '224.0.0.5' }), 'Backend.Group', 'reserved');
  refused(l2({ Flood: 'multicast', Group: 'x'.repeat(5000) }), 'Backend.Group', '…');
  refused(l2({ Flood: 'unicast', Group: '239.1.1.1' }), 'Backend.Group', 'only meaningful');
  refused(l2({ Bridge: 'a-bridge-name-too-long' }), 'Backend.Bridge', '22 bytes', 'at most 15');
  refused(l2({ Bridge: 'brücke-über-xx' }), 'Backend.Bridge', 'at most 15');
  refused(l2({ Bridge: 'br/0' }), 'Backend.Bridge', 'not a valid interface name');
  refused(l2({ Bridge: 'br 0' }), 'Backend.Bridge', 'not a valid interface name');
  refused(l2({ Bridge: '..' }), 'Backend.Bridge', 'not a valid interface name');
  refused(l2({ Bridge: 42 }), 'Backend.Bridge', 'not a string');
  refused(l2({ DirectRouting: true }), 'Backend.DirectRouting', 'l3 feature');
  refused('{"Network":"10.244.0.0/16","Backend":{"Bridge":"br0"}}', 'Backend.Bridge', 'Mode "l2"');
  refused('{"Network":"10.244.0.0/16","Backend":{"Flood":"unicast"}}', 'Backend.Flood', 'Mode "l2"');
});

test("an l2 network is refused under flannel's prefix, with the option that fixes it", () => {
  assert.throws(
    () => checkPrefixForMode('l2', '/coreos.com/network/'),
    (err: unknown) => err instanceof InvalidValueError && err.field === 'Backend.Mode' && /--prefix \/tulle\.io\/l2/.test(err.message),
  );
  checkPrefixForMode('l2', '/tulle.io/l2');
  checkPrefixForMode('l3', '/coreos.com/network');
});

test('lab up --l2: a lab the flood mode cannot serve, or a --config of another mode, is refused before anything is built', () => {
  const fails = (f: () => unknown, field: string, re: RegExp) =>
    assert.throws(f, (err: unknown) => err instanceof InvalidValueError && err.field === field && re.test(err.message));
  assert.equal(parseNetworkConfig(checkL2Lab('multicast', 3, 'switch', undefined)).Backend.group, '239.1.1.120');
  fails(() => checkL2Lab('multicast', 3, 'routed', undefined), '--underlay', /cannot carry --l2 multicast/);
  fails(() => checkL2Lab('remote', 3, 'switch', undefined), '--nodes', /must be 2 with --l2 remote/);
  fails(() => checkL2Lab('unicast', 3, 'routed', '{"Network":"10.244.0.0/16"}'), 'Backend.Mode', /"Mode":"l2"/);
  fails(() => checkL2Lab('unicast', 3, 'routed', l2({ Flood: 'none' })), 'Backend.Flood', /"none" in --config does not go with --l2 unicast/);
  fails(() => validateFlood('flood-everything'), '--l2', /one of unicast, multicast, remote, none/);
  assert.equal(defaultL2Underlay('multicast'), 'switch');
  assert.equal(defaultL2Underlay('unicast'), 'routed');
});

/**
 * `tulle agent ARGS` that must be refused before it touches anything. Were a refusal ever lost, the agent would
 * still touch nothing here: no store it could lease from, its files in a temporary directory, and a deadline
 * instead of a wait for the store.
 */
function refusedAgent(t: TestContext, label: string) {
  const dir = mkdtempSync(join(tmpdir(), `tulle-l2-${label}-`));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const bin = fileURLToPath(new URL('../../../bin/tulle', import.meta.url));
  const safe = [
    '--store',
    'sqlite:/nonexistent/tulle-test.db',
    '--state-dir',
    dir,
    '--subnet-file',
    join(dir, 'subnet.env'),
    '--cni-socket',
    join(dir, 'cni.sock'),
    '--health-addr',
    '127.0.0.1:0',
  ];
  return { dir, run: (...args: string[]) => spawnSync(process.execPath, [bin, 'agent', ...args, ...safe], { encoding: 'utf8', timeout: 60_000 }) };
}

test('tulle agent --bridge: a name that is no interface name is refused before anything is touched (exit 2)', (t) => {
  const r = refusedAgent(t, 'bridge').run('--bridge', 'b'.repeat(200));
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /--bridge: "b{61}…" is 200 bytes long \(a Linux interface name has at most 15\)/);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
});

test('tulle agent --cni-ipam-dir: a relative or control-character path is refused before anything is touched (exit 2)', (t) => {
  const agent = refusedAgent(t, 'ipamdir');
  const cases: Array<[string, RegExp]> = [
    ['ipam/tulle', /--cni-ipam-dir: "ipam\/tulle" must be an absolute path/],
    ['/var/lib/cni/networks/tu\nlle', /--cni-ipam-dir: "\/var\/lib\/cni\/networks\/tu\\nlle" must be an absolute path without control characters/],
    ['x'.repeat(500), /--cni-ipam-dir: "x+"… \(500 characters\) must be an absolute path/],
  ];
  for (const [value, message] of cases) {
    const r = agent.run('--cni-ipam-dir', value);
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, message);
    assert.ok(r.stderr.length < 400, `the value is cut: ${r.stderr.length} characters`);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  }
  assert.deepEqual(readdirSync(agent.dir), [], 'nothing written');
});
