/**
 * `tulle install` / `tulle uninstall` run as a user runs them (bin/tulle in a child process) into a temporary
 * root: the files and their modes, the conflist as the plugin reads it, idempotence, refusal to overwrite what
 * tulle did not write, uninstall removing exactly what was written, the unit checked by systemd-analyze, the
 * installed plugin launcher answering with an empty environment, and a clear line for every bad setting.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from '../../src/base/exec.js';
import { assertOneLineError } from '../helpers/cli.js';

const TULLE = fileURLToPath(new URL('../../../bin/tulle', import.meta.url));
const TULLE_CNI = fileURLToPath(new URL('../../../bin/tulle-cni', import.meta.url));

const tulle = (args: string[]) => run([process.execPath, TULLE, ...args], { allowFailure: true, env: { ...process.env, TULLE_STORE: '' } });

function tempRoot(t: { after(fn: () => unknown): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'tulle-install-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Every regular file and symlink under `root`, relative, sorted. */
function filesUnder(root: string, dir = ''): string[] {
  const out: string[] = [];
  for (const e of readdirSync(join(root, dir), { withFileTypes: true })) {
    const rel = dir ? `${dir}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...filesUnder(root, rel));
    else out.push(rel);
  }
  return out.sort();
}

const mode = (path: string) => lstatSync(path).mode & 0o777;

const BASE = ['--store', 'etcd://192.0.2.10:2379', '--iface', 'eth0', '--subnet-file', '/run/tulle/subnet.env', '--cni-data-dir', '/var/lib/tulle/cni'];

test('install writes the plugin, the conflist, the agent settings and the unit with their modes; again changes nothing', async (t) => {
  const root = tempRoot(t);
  const r = await tulle(['install', '--root', root, ...BASE, '--ip-masq']);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(filesUnder(root), [
    'etc/cni/net.d/10-tulle.conflist',
    'etc/default/tulle',
    'etc/systemd/system/tulle-agent.service',
    'opt/cni/bin/tulle',
    'var/lib/tulle/install.json',
  ]);
  assert.equal(mode(join(root, 'opt/cni/bin/tulle')), 0o755);
  assert.equal(mode(join(root, 'etc/cni/net.d/10-tulle.conflist')), 0o644);
  assert.equal(mode(join(root, 'etc/default/tulle')), 0o600, 'the settings may hold an etcd password');
  assert.match(r.stdout, /^written +.*\/opt\/cni\/bin\/tulle$/m);

  const list = JSON.parse(readFileSync(join(root, 'etc/cni/net.d/10-tulle.conflist'), 'utf8'));
  assert.equal(list.cniVersion, '1.0.0');
  assert.equal(list.name, 'tulle');
  assert.deepEqual(
    list.plugins.map((p: { type: string }) => p.type),
    ['tulle', 'portmap'],
  );
  assert.deepEqual(list.plugins[0], {
    type: 'tulle',
    mode: 'bridge',
    subnetFile: '/run/tulle/subnet.env',
    dataDir: '/var/lib/tulle/cni',
    isDefaultGateway: true,
    hairpinMode: true,
    capabilities: { ips: true, mac: true },
  });
  assert.deepEqual(list.plugins[1].capabilities, { portMappings: true });

  const env = readFileSync(join(root, 'etc/default/tulle'), 'utf8');
  for (const line of [
    'TULLE_SUBNET_FILE=/run/tulle/subnet.env',
    'TULLE_CNI_IPAM_DIR=/var/lib/tulle/cni/tulle',
    'TULLE_STORE=etcd://192.0.2.10:2379',
    'TULLE_IFACE=eth0',
    'TULLE_IP_MASQ=true',
  ])
    assert.match(env, new RegExp(`^${line}$`, 'm'));
  const unit = readFileSync(join(root, 'etc/systemd/system/tulle-agent.service'), 'utf8');
  assert.match(unit, /^After=network-online\.target$/m);
  assert.match(unit, /^Restart=always$/m);
  assert.match(unit, /^EnvironmentFile=\/etc\/default\/tulle$/m);
  assert.match(unit, /^ExecStart=".*node" ".*\/bin\/tulle" agent$/m);

  const before = filesUnder(root).map((f) => [f, readFileSync(join(root, f), 'utf8')]);
  const again = await tulle(['install', '--root', root, ...BASE, '--ip-masq']);
  assert.equal(again.status, 0, again.stderr);
  assert.equal(again.stdout.split('\n').filter((l) => l.startsWith('unchanged')).length, 4, again.stdout);
  assert.deepEqual(
    filesUnder(root).map((f) => [f, readFileSync(join(root, f), 'utf8')]),
    before,
  );

  // A changed setting rewrites tulle's own files in place.
  const routed = await tulle(['install', '--root', root, ...BASE, '--mode', 'routed', '--cni-version', '1.1.0', '--network-name', 'pods']);
  assert.equal(routed.status, 0, routed.stderr);
  const list2 = JSON.parse(readFileSync(join(root, 'etc/cni/net.d/10-tulle.conflist'), 'utf8'));
  assert.deepEqual([list2.cniVersion, list2.name, list2.plugins[0].mode, list2.plugins[0].isDefaultGateway], ['1.1.0', 'pods', 'routed', undefined]);
  // The agent's view of the plugin's reservations follows the network name (its Flood "none" prune reads there).
  assert.match(readFileSync(join(root, 'etc/default/tulle'), 'utf8'), /^TULLE_CNI_IPAM_DIR=\/var\/lib\/tulle\/cni\/pods$/m);
});

test('the unit passes systemd-analyze verify', async (t) => {
  const root = tempRoot(t);
  assert.equal((await tulle(['install', '--root', root, ...BASE])).status, 0);
  const r = await run(['systemd-analyze', 'verify', join(root, 'etc/systemd/system/tulle-agent.service')], { allowFailure: true });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr.trim(), '', 'no warnings');
});

test('the installed plugin answers with an empty environment; a copy of bin/tulle-cni says what to do; bin/tulle acts as the plugin when a runtime runs it', async (t) => {
  const root = tempRoot(t);
  assert.equal((await tulle(['install', '--root', root, ...BASE, '--no-systemd'])).status, 0);
  assert.equal(existsSync(join(root, 'etc/systemd/system/tulle-agent.service')), false, '--no-systemd');
  const version = await run(['env', '-i', 'CNI_COMMAND=VERSION', join(root, 'opt/cni/bin/tulle')], { allowFailure: true });
  assert.equal(version.status, 0, version.stdout + version.stderr);
  assert.deepEqual(JSON.parse(version.stdout).supportedVersions, ['0.4.0', '1.0.0', '1.1.0']);
  // The launcher hands calls to the compiled shim (the agent's resident path), which comes back to it for node.
  assert.match(readFileSync(join(root, 'opt/cni/bin/tulle'), 'utf8'), /TULLE_CNI_FALLBACK="\$0" exec '[^']+\/build\/Release\/tulle-cni-shim' "\$@"/);
  const viaNode = await run(['env', '-i', 'CNI_COMMAND=VERSION', 'TULLE_CNI_VIA_NODE=1', join(root, 'opt/cni/bin/tulle')], { allowFailure: true });
  assert.equal(viaNode.status, 0, viaNode.stdout + viaNode.stderr);
  // A config error through the launcher: the plugin's own error object, not a shell or node failure.
  const bad = await run(
    ['env', '-i', 'CNI_COMMAND=ADD', 'CNI_CONTAINERID=c1', 'CNI_IFNAME=eth0', 'CNI_NETNS=/proc/self/ns/net', join(root, 'opt/cni/bin/tulle')],
    { allowFailure: true, input: '{"cniVersion":"1.0.0","name":"n","type":"tulle","subnetfile":"/x"}' },
  );
  assert.equal(bad.status, 1);
  assert.equal(JSON.parse(bad.stdout).code, 7);

  const copy = join(root, 'copied-tulle');
  writeFileSync(copy, readFileSync(TULLE_CNI), { mode: 0o755 });
  const copied = await run(['env', '-i', 'CNI_COMMAND=VERSION', process.execPath, copy], { allowFailure: true });
  assert.equal(copied.status, 1);
  assert.doesNotMatch(copied.stdout + copied.stderr, /\n\s+at /);
  assert.match(JSON.parse(copied.stdout).msg, /cannot find the tulle installation it belongs to .* run `tulle install`/);
  const linked = join(root, 'linked-tulle');
  symlinkSync(TULLE_CNI, linked);
  assert.equal((await run(['env', '-i', 'CNI_COMMAND=VERSION', process.execPath, linked], { allowFailure: true })).status, 0);

  const cli = await run(['env', '-i', 'CNI_COMMAND=VERSION', process.execPath, TULLE], { allowFailure: true });
  assert.equal(cli.status, 0, cli.stdout);
  assert.equal(JSON.parse(cli.stdout).cniVersion, '1.1.0');
});

test('a file tulle did not write is never overwritten (nothing is written then) unless --force; uninstall removes exactly what was written', async (t) => {
  const root = tempRoot(t);
  mkdirSync(join(root, 'etc/cni/net.d'), { recursive: true });
  writeFileSync(join(root, 'etc/cni/net.d/10-tulle.conflist'), '{"mine": true}\n');
  writeFileSync(join(root, 'etc/cni/net.d/87-podman.conflist'), '{}\n');
  const refused = await tulle(['install', '--root', root, ...BASE]);
  assertOneLineError(
    refused,
    1,
    /10-tulle\.conflist exists and was not written by tulle install \(or changed since\): not overwritten; move it away or use --force \[TLE_INSTALL_CONFLICT\]/,
  );
  assert.deepEqual(filesUnder(root), ['etc/cni/net.d/10-tulle.conflist', 'etc/cni/net.d/87-podman.conflist']);
  assert.equal(readFileSync(join(root, 'etc/cni/net.d/10-tulle.conflist'), 'utf8'), '{"mine": true}\n');

  const forced = await tulle(['install', '--root', root, ...BASE, '--force']);
  assert.equal(forced.status, 0, forced.stderr);
  assert.match(forced.stdout, /^replaced +.*10-tulle\.conflist$/m);

  // A symlink where the plugin goes is replaced by the file, its target left alone.
  const victim = join(root, 'victim');
  writeFileSync(victim, 'precious\n');
  rmSync(join(root, 'opt/cni/bin/tulle'));
  symlinkSync(victim, join(root, 'opt/cni/bin/tulle'));
  assert.equal((await tulle(['install', '--root', root, ...BASE])).status, 1, 'a symlink is not ours');
  assert.equal((await tulle(['install', '--root', root, ...BASE, '--force'])).status, 0);
  assert.equal(readFileSync(victim, 'utf8'), 'precious\n');
  assert.equal(lstatSync(join(root, 'opt/cni/bin/tulle')).isFile(), true);

  // A file changed after install is kept by uninstall (exit 1, named); the rest goes, other files stay.
  writeFileSync(join(root, 'etc/default/tulle'), 'TULLE_STORE=etcd://198.51.100.1:2379\n');
  const un = await tulle(['uninstall', '--root', root]);
  assert.equal(un.status, 1);
  assert.match(un.stdout, /^kept +.*\/etc\/default\/tulle \(changed since tulle install wrote it/m);
  assert.deepEqual(filesUnder(root), ['etc/cni/net.d/87-podman.conflist', 'etc/default/tulle', 'var/lib/tulle/install.json', 'victim']);
  const un2 = await tulle(['uninstall', '--root', root, '--force']);
  assert.equal(un2.status, 0, un2.stdout);
  assert.deepEqual(filesUnder(root), ['etc/cni/net.d/87-podman.conflist', 'victim']);
  const un3 = await tulle(['uninstall', '--root', root]);
  assert.equal(un3.status, 0, 'uninstall twice is fine');
  assert.equal(un3.stdout, '');
});

test('bad settings: one line naming the option, the value and the rule; nothing written', async (t) => {
  const root = tempRoot(t);
  assertOneLineError(
    await tulle(['install', '--root', join(root, 'missing')]),
    1,
    /^tulle: --root: ".*missing" does not exist \(it must be an existing directory\)/,
  );
  assertOneLineError(await tulle(['install', '--root', root, '--network-name', '../etc']), 2, /^tulle: --network-name: "\.\.\/etc" is not a network name/);
  assertOneLineError(
    await tulle(['install', '--root', root, '--subnet-file', 'run/subnet.env']),
    2,
    /^tulle: --subnet-file: "run\/subnet\.env" must be an absolute path/,
  );
  assertOneLineError(await tulle(['install', '--root', root, '--cni-data-dir', 'x']), 2, /^tulle: --cni-data-dir: "x" must be an absolute path/);
  assertOneLineError(await tulle(['install', '--root', root, '--cni-bin-dir', 'opt/cni']), 2, /^tulle: --cni-bin-dir: "opt\/cni" must be an absolute path/);
  assertOneLineError(await tulle(['install', '--root', root, '--cni-version', '0.3.1']), 2, /--cni-version: "0\.3\.1" is not one of 0\.4\.0, 1\.0\.0, 1\.1\.0/);
  assertOneLineError(await tulle(['install', '--root', root, '--mode', 'l2']), 2, /--mode: "l2" is not one of bridge, routed/);
  assertOneLineError(
    await tulle(['install', '--root', root, '--store', 'http://192.0.2.10:2379']),
    2,
    /^tulle: --store: "http:\/\/192\.0\.2\.10:2379" .*etcd:\/\/192\.0\.2\.10:2379/,
  );
  assertOneLineError(await tulle(['install', '--root', root, '--public-ip', '300.1.1.1']), 2, /^tulle: --public-ip: "300\.1\.1\.1" is not an IPv4 address/);
  assertOneLineError(await tulle(['install', '--root', root, '--health-addr', 'localhost']), 2, /^tulle: --health-addr: "localhost" must be HOST:PORT/);
  assertOneLineError(
    await tulle(['install', '--root', root, '--iface', 'eth0\nTULLE_STORE=evil']),
    2,
    /^tulle: TULLE_IFACE: "eth0\\nTULLE_STORE=evil" holds a newline or control character/,
  );
  assert.deepEqual(filesUnder(root), []);
});

test('etcd TLS and password settings go into the agent settings; an edited manifest cannot make uninstall reach outside the root', async (t) => {
  const root = tempRoot(t);
  const r = await tulle([
    'install',
    '--root',
    root,
    ...BASE,
    '--etcd-cafile',
    '/etc/tulle/ca.pem',
    '--etcd-username',
    'tulle',
    '--etcd-password',
    'pa ss$word',
  ]);
  assert.equal(r.status, 0, r.stderr);
  const env = readFileSync(join(root, 'etc/default/tulle'), 'utf8');
  assert.match(env, /^TULLE_ETCD_CAFILE=\/etc\/tulle\/ca\.pem$/m);
  assert.match(env, /^TULLE_ETCD_USERNAME=tulle$/m);
  assert.match(env, /^TULLE_ETCD_PASSWORD="pa ss\\\$word"$/m);

  // Someone adds entries pointing out of the root (with the right hash) to the manifest: uninstall ignores them.
  const outside = join(root, '..', `tulle-install-victim-${process.pid}`);
  writeFileSync(outside, 'keep me\n');
  t.after(() => rmSync(outside, { force: true }));
  const manifestPath = join(root, 'var/lib/tulle/install.json');
  const manifest = JSON.parse(readFileSync(manifestPath, 'utf8'));
  const hash = (await run(['sha256sum', outside])).stdout.split(' ')[0];
  manifest.files[`/../${outside.split('/').pop()}`] = hash;
  manifest.files[`/etc/../../${outside.split('/').pop()}`] = hash;
  writeFileSync(manifestPath, JSON.stringify(manifest));
  const un = await tulle(['uninstall', '--root', root]);
  assert.equal(un.status, 0, un.stdout + un.stderr);
  assert.equal(readFileSync(outside, 'utf8'), 'keep me\n');
  assert.equal(un.stdout.split('\n').filter((l) => l.startsWith('removed')).length, 4);
});
