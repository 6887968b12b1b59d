import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatSubnetEnv, parseSubnetEnv, previousSubnet, readSubnetEnv, writeSubnetEnv } from '../../src/config/subnet-env.js';
import { TulleError } from '../../src/base/errors.js';

test("subnet.env is written with flannel's names and read back", (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tulle-subnetenv-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'run/flannel/subnet.env');
  const env = { network: '10.244.0.0/16', subnet: '10.244.1.0/24', gateway: '10.244.1.1', mtu: 1450, ipMasq: true };
  writeSubnetEnv(path, env);
  assert.equal(readFileSync(path, 'utf8'), 'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n');
  assert.deepEqual(readSubnetEnv(path), env);
  assert.equal(previousSubnet(path), '10.244.1.0/24');
  assert.equal(previousSubnet(join(dir, 'nope')), undefined);
});

test('a missing or broken subnet.env is a clear error naming the variable', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tulle-subnetenv-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  assert.throws(
    () => readSubnetEnv(join(dir, 'subnet.env')),
    (e: unknown) => e instanceof TulleError && e.code === 'TLE_SUBNET_ENV_MISSING' && /is the tulle agent running/.test(e.message),
  );
  assert.throws(() => parseSubnetEnv('FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_MTU=1450\n'), /FLANNEL_SUBNET: \(missing\) is required/);
  assert.throws(
    () => parseSubnetEnv('FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=huge\n'),
    /FLANNEL_MTU: "huge" must be a whole number/,
  );
  writeFileSync(join(dir, 'bad.env'), 'FLANNEL_NETWORK=10.244.0.0/99\n');
  assert.throws(() => readSubnetEnv(join(dir, 'bad.env')), /FLANNEL_NETWORK: "10.244.0.0\/99" is not an IPv4 CIDR/);
  assert.equal(
    formatSubnetEnv({ network: '10.1.0.0/16', subnet: '10.1.7.0/24', gateway: '10.1.7.1', mtu: 1400, ipMasq: false }).split('\n')[1],
    'FLANNEL_SUBNET=10.1.7.1/24',
  );
});

test("an L2 network's subnet.env names its bridge and flood mode; a hostile TULLE_L2_FLOOD is refused by name", () => {
  const env = {
    network: '10.20.0.0/24',
    subnet: '10.20.0.16/28',
    gateway: '10.20.0.17',
    mtu: 1450,
    ipMasq: false,
    l2Bridge: 'tl120',
    l2Flood: 'none' as const,
  };
  const text = formatSubnetEnv(env);
  assert.match(text, /\nTULLE_L2_BRIDGE=tl120\nTULLE_L2_FLOOD=none\n$/);
  assert.deepEqual(parseSubnetEnv(text), env);
  const base = 'FLANNEL_NETWORK=10.20.0.0/24\nFLANNEL_SUBNET=10.20.0.17/28\nFLANNEL_MTU=1450\nTULLE_L2_BRIDGE=tl120\n';
  assert.equal(parseSubnetEnv(base).l2Flood, undefined, 'a file written before TULLE_L2_FLOOD existed reads as before');
  for (const bad of ['NONE', 'flood', 'none;rm -rf /', 'x'.repeat(300)]) {
    assert.throws(
      () => parseSubnetEnv(`${base}TULLE_L2_FLOOD=${bad}\n`, '/run/flannel/subnet.env'),
      (e: unknown) =>
        e instanceof TulleError &&
        /^\/run\/flannel\/subnet\.env: TULLE_L2_FLOOD: ".* is not a flood mode \(one of unicast, multicast, remote, none\)$/.test(e.message) &&
        e.message.length < 250,
      bad,
    );
  }
});
