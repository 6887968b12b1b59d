// Bad input to the tulle-cni executable, called as a runtime calls it: each mistake gets the spec's error code, a
// message naming the variable or field, exit 1, and no stack trace. Every case here fails before the plugin would
// touch the kernel, so this suite needs no root and no namespace (the netns suite covers the rest).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cniInvoke, type CniInvocation } from '../../src/cni/invoke.js';

const dir = mkdtempSync(join(tmpdir(), 'tulle-cni-input-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
const missingSubnetFile = join(dir, 'no-agent', 'subnet.env');
const subnetFile = join(dir, 'subnet.env');
writeFileSync(subnetFile, 'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/30\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n');

const config = (extra: Record<string, unknown> = {}) => ({
  cniVersion: '1.1.0',
  name: 'tulle-test',
  type: 'tulle',
  subnetFile: missingSubnetFile,
  dataDir: join(dir, 'ipam'),
  ...extra,
});
/** An ADD whose environment is valid: /proc/self/ns/net is a real network namespace file. */
const add = (over: Partial<CniInvocation> = {}): CniInvocation => ({
  command: 'ADD',
  containerId: 'c1',
  netns: '/proc/self/ns/net',
  ifName: 'eth0',
  config: config(),
  ...over,
});

async function expectError(inv: CniInvocation, code: number, msg: RegExp, cniVersion = '1.1.0') {
  const out = await cniInvoke(inv);
  assert.equal(out.exitCode, 1, `exit code; stdout ${out.stdout}`);
  assert.ok(out.error, `an error object on stdout, got ${JSON.stringify(out.stdout)}`);
  assert.equal(out.error.code, code, `code for ${out.error.msg}`);
  assert.match(out.error.msg, msg);
  assert.equal(out.error.cniVersion, cniVersion);
  assert.doesNotMatch(out.stdout + out.stderr, /\n\s+at /, 'no stack trace');
}

test('VERSION lists the spec versions tulle-cni speaks', async () => {
  const out = await cniInvoke({ command: 'VERSION', config: '' });
  assert.equal(out.exitCode, 0);
  assert.deepEqual(out.result, { cniVersion: '1.1.0', supportedVersions: ['0.4.0', '1.0.0', '1.1.0'] });
});

test('bad CNI_COMMAND, CNI_CONTAINERID, CNI_IFNAME, CNI_NETNS, CNI_ARGS: error 4 naming the variable (3 for a namespace that is gone)', async () => {
  await expectError(
    { ...add(), command: 'MOVE' as never },
    4,
    /^CNI_COMMAND: "MOVE" is not a CNI command \(must be one of ADD, DEL, CHECK, STATUS, GC, VERSION\)/,
  );
  await expectError(add({ containerId: '' }), 4, /^CNI_CONTAINERID: "" is not a container ID/);
  await expectError(add({ containerId: '-x' }), 4, /^CNI_CONTAINERID: "-x"/);
  await expectError(add({ ifName: 'eth/0' }), 4, /^CNI_IFNAME: "eth\/0" is not an interface name/);
  await expectError(add({ ifName: 'a-very-long-name0' }), 4, /^CNI_IFNAME: "a-very-long-name0"/);
  await expectError(add({ netns: undefined }), 4, /^CNI_NETNS: \(missing\) is required for this command/);
  await expectError(add({ netns: 'run/netns/x' }), 4, /^CNI_NETNS: "run\/netns\/x" must be an absolute path/);
  await expectError(add({ netns: '/etc/hostname' }), 4, /^CNI_NETNS: "\/etc\/hostname" is not a network namespace file/);
  await expectError(add({ netns: '/run/netns/tulle-no-such-namespace' }), 3, /^CNI_NETNS: "\/run\/netns\/tulle-no-such-namespace" does not exist/);
  await expectError(add({ args: 'IgnoreUnknown=1;oops' }), 4, /^CNI_ARGS: .* has a pair without "KEY="/);
});

test('stdin that is not a JSON object: error 6', async () => {
  await expectError(add({ config: '{"cniVersion": "1.1.0", ' }), 6, /^network configuration: stdin is not JSON/);
  await expectError(add({ config: '' }), 6, /^network configuration: stdin is empty/);
  await expectError(add({ config: '[1,2]' }), 6, /stdin holds an array, not a JSON object/);
});

test('missing or wrong fields: error 7 naming field, value and rule; version and unsupported keys have their own codes', async () => {
  const without = (key: string) => {
    const c: Record<string, unknown> = config();
    delete c[key];
    return c;
  };
  await expectError(add({ config: without('name') }), 7, /^name: \(missing\) is required$/);
  await expectError(add({ config: without('type') }), 7, /^type: \(missing\) is required$/);
  await expectError(add({ config: without('cniVersion') }), 7, /^cniVersion: \(missing\) is required \(one of 0\.4\.0, 1\.0\.0, 1\.1\.0\)$/);
  await expectError(add({ config: config({ mode: 'vxlan' }) }), 7, /^mode: "vxlan" is not a mode \(must be "bridge", "routed" or "l2"\)$/);
  await expectError(add({ config: config({ name: '../etc' }) }), 7, /^name: "\.\.\/etc" is not a network name/);
  await expectError(add({ config: config({ mtu: 10 }) }), 7, /^mtu: 10 is out of range \(must be an integer 68\.\.65535\)$/);
  await expectError(add({ config: config({ bridge: 'a-bridge-name-too-long' }) }), 7, /^bridge: "a-bridge-name-too-long" is not an interface name/);
  await expectError(add({ config: config({ hairpinMode: 'yes' }) }), 7, /^hairpinMode: "yes" must be true or false$/);
  await expectError(add({ config: config({ dataDir: 'relative/dir' }) }), 7, /^dataDir: "relative\/dir" must be an absolute path$/);
  await expectError(add({ config: config({ prevResult: [1] }) }), 7, /^prevResult: \[1\] must be a CNI result object$/);
  await expectError(
    add({ config: config({ cniVersion: '0.3.1' }) }),
    1,
    /^cniVersion: "0\.3\.1" is not supported \(tulle-cni speaks 0\.4\.0, 1\.0\.0, 1\.1\.0\)$/,
  );
  await expectError(add({ config: config({ ipam: { type: 'host-local' } }) }), 2, /^ipam: \{"type":"host-local"\} is not supported/);
});

test('errors answer in the version the config asked for', async () => {
  await expectError(add({ config: config({ cniVersion: '0.4.0', mode: 'x' }) }), 7, /^mode:/, '0.4.0');
  await expectError(add({ config: config({ cniVersion: '1.0.0' }), ifName: '' }), 4, /^CNI_IFNAME/, '1.0.0');
});

test('ADD before the agent wrote subnet.env: error 11 "try again later", naming the file', async () => {
  await expectError(add(), 11, new RegExp(`^${missingSubnetFile.replaceAll('/', '\\/')} does not exist: is the tulle agent running on this host\\?`));
});

test('a subnet.env that cannot be parsed: error 105 naming the file and variable', async () => {
  const broken = join(dir, 'broken.env');
  writeFileSync(broken, 'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=banana\nFLANNEL_MTU=1450\n');
  await expectError(add({ config: config({ subnetFile: broken }) }), 105, /FLANNEL_SUBNET: "banana" is not an IPv4 CIDR/);
});

test('none of the failed calls above touched the IPAM directory', () => {
  assert.equal(existsSync(join(dir, 'ipam')), false);
});

test('STATUS: 50 without subnet.env or without a free address, success otherwise; only for 1.1.0 configs', async () => {
  const status = (extra: Record<string, unknown>) => cniInvoke({ command: 'STATUS', config: config(extra) });
  let out = await status({});
  assert.equal(out.error?.code, 50);
  assert.match(out.error.msg, /^not available: .*does not exist: is the tulle agent running/);

  const dataDir = join(dir, 'status-ipam');
  out = await status({ subnetFile, dataDir });
  assert.equal(out.exitCode, 0, out.stdout);
  assert.equal(out.stdout, '', 'STATUS prints nothing on success');
  // 10.244.3.0/30 has one address besides the gateway: once it is taken, ADD cannot succeed.
  mkdirSync(join(dataDir, 'tulle-test'), { recursive: true });
  writeFileSync(join(dataDir, 'tulle-test', '10.244.3.2'), 'someone\r\neth0');
  out = await status({ subnetFile, dataDir });
  assert.equal(out.error?.code, 50);
  assert.match(out.error.msg, /^not available: no free address in 10\.244\.3\.0\/30/);

  out = await status({ cniVersion: '1.0.0', subnetFile, dataDir });
  assert.equal(out.error?.code, 1);
  assert.match(out.error.msg, /"1\.0\.0" has no STATUS \(it came with 1\.1\.0\)/);
});

test('GC needs cni.dev/valid-attachments and a 1.1.0 config', async () => {
  await expectError({ command: 'GC', config: config() }, 7, /^cni\.dev\/valid-attachments: \(missing\) is required for GC/);
  await expectError(
    { command: 'GC', config: config({ 'cni.dev/valid-attachments': [{ ifname: 'eth0' }] }) },
    7,
    /^cni\.dev\/valid-attachments\[0\]: .* must be an object \{"containerID"/,
  );
  await expectError({ command: 'GC', config: config({ cniVersion: '1.0.0', 'cni.dev/valid-attachments': [] }) }, 1, /has no GC/, '1.0.0');
});

test('a near miss of a known key (case, one typo) is error 7 naming both; unknown keys are still ignored', async () => {
  await expectError(
    add({ config: config({ subnetfile: subnetFile }) }),
    7,
    /^subnetfile: ".*" is not a tulle-cni key: did you mean "subnetFile"\? \(keys are case-sensitive/,
  );
  await expectError(add({ config: config({ hairpinmode: true }) }), 7, /^hairpinmode: true is not a tulle-cni key: did you mean "hairpinMode"/);
  await expectError(add({ config: config({ isDefaultGatway: true }) }), 7, /^isDefaultGatway: true .* did you mean "isDefaultGateway"/);
  await expectError(add({ config: config({ Mode: 'routed' }) }), 7, /^Mode: "routed" .* did you mean "mode"/);
  await expectError(add({ config: config({ runtimeconfig: {} }) }), 7, /did you mean "runtimeConfig"/);
  // Far from every known key: an extension the spec lets a plugin ignore (the error is the missing subnet.env).
  await expectError(add({ config: config({ myOwnSetting: 1, ipMasq: true }) }), 11, /does not exist/);
});

test('a missing subnet.env at the default path: the message says the default was used and what it must be', async () => {
  const c: Record<string, unknown> = config();
  delete c.subnetFile;
  const out = await cniInvoke(add({ config: c }));
  assert.equal(out.error?.code, 11);
  assert.match(out.error.msg, /the config has no "subnetFile", so the default \/run\/flannel\/subnet\.env was used; it must be the agent's --subnet-file/);
  await expectError(add(), 11, /is the tulle agent running on this host\?$/);
});

test('CNI_ARGS IP=/MAC= and runtimeConfig ips/mac: malformed, out of the subnet, not usable, conflicting, or taken are clear errors', async () => {
  const ok = config({ subnetFile, dataDir: join(dir, 'req-ipam') });
  await expectError(add({ config: ok, args: 'IP=10.244.3.300' }), 4, /^CNI_ARGS IP: "10\.244\.3\.300" is not an IPv4 address/);
  await expectError(add({ config: ok, args: 'IP=10.244.3.2,fd00::2' }), 4, /^CNI_ARGS IP: .* asks for more than one address/);
  await expectError(add({ config: ok, args: 'MAC=01:00:5e:00:00:01' }), 4, /^CNI_ARGS MAC: "01:00:5e:00:00:01" is a multicast MAC address/);
  await expectError(add({ config: ok, args: 'MAC=zz' }), 4, /^CNI_ARGS MAC: "zz" is not a MAC address/);
  await expectError(add({ config: { ...ok, runtimeConfig: { ips: ['banana'] } } }), 7, /^runtimeConfig\.ips\[0\]: "banana" is not an IPv4 address/);
  await expectError(add({ config: { ...ok, runtimeConfig: { ips: ['10.244.3.2/30', '10.244.3.1/30'] } } }), 7, /^runtimeConfig\.ips: .* more than one address/);
  await expectError(add({ config: { ...ok, runtimeConfig: { mac: '00:00:00:00:00:00' } } }), 7, /^runtimeConfig\.mac: .* is the all-zero MAC address/);
  await expectError(add({ config: { ...ok, runtimeConfig: 'x' } }), 7, /^runtimeConfig: "x" must be an object/);
  await expectError(
    add({ config: { ...ok, runtimeConfig: { ips: ['10.244.3.2/30'] } }, args: 'IP=10.244.3.1' }),
    4,
    /^CNI_ARGS IP: "10\.244\.3\.1" differs from runtimeConfig\.ips/,
  );
  // subnet.env gives 10.244.3.0/30: .1 is the gateway, .2 the only pod address, .3 the broadcast.
  await expectError(add({ config: ok, args: 'IP=10.244.9.2' }), 7, /^CNI_ARGS IP: "10\.244\.9\.2" is not in this host's subnet 10\.244\.3\.0\/30/);
  await expectError(add({ config: ok, args: 'IP=10.244.3.1' }), 7, /^CNI_ARGS IP: "10\.244\.3\.1" cannot be given to a pod \(usable: 10\.244\.3\.0\/30/);
  await expectError(add({ config: { ...ok, runtimeConfig: { ips: ['10.244.3.3/30'] } } }), 7, /^runtimeConfig\.ips: "10\.244\.3\.3" cannot be given to a pod/);
  mkdirSync(join(dir, 'req-ipam', 'tulle-test'), { recursive: true });
  writeFileSync(join(dir, 'req-ipam', 'tulle-test', '10.244.3.2'), 'other\r\neth0');
  await expectError(add({ config: ok, args: 'IgnoreUnknown=1;IP=10.244.3.2' }), 106, /^CNI_ARGS IP: "10\.244\.3\.2" is already in use by other eth0/);
});

test('a 1 MB field value is cut in the message, not quoted back whole', async () => {
  const huge = 'x'.repeat(1 << 20);
  const out = await cniInvoke(add({ config: config({ mode: huge }) }));
  assert.equal(out.exitCode, 1);
  assert.equal(out.error?.code, 7, out.stdout.slice(0, 300));
  assert.match(out.error?.msg ?? '', /^mode: "x{120}"… \(1048576 characters\) is not a mode/);
  assert.ok(out.stdout.length < 2000, `the answer is short (${out.stdout.length} bytes)`);
});
