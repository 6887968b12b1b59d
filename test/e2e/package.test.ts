/**
 * The package a user installs: `npm pack` of this checkout, then `npm install -g` of the tarball into a clean
 * prefix (native modules built there), puts `tulle` and `tulle-cni` on that prefix's PATH, and the installed copy
 * works: its version, its native netlink binding (status in a fresh namespace), and `tulle install` writing a
 * plugin launcher that points into the installed package and answers with an empty environment. The tarball
 * holds the dist/ that `npm test` built (pack runs no scripts: rebuilding dist/ here would change files that
 * tests running in parallel import). npm reads packages from its cache when it has them (--prefer-offline); the
 * slow part is compiling the native modules.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from '../../src/base/exec.js';
import { freshNetns, requireRoot } from '../helpers/netns.js';

requireRoot();

const CHECKOUT = fileURLToPath(new URL('../../../', import.meta.url));

test(
  'npm pack + npm install -g on a clean prefix: tulle and tulle-cni on PATH, native binding built, tulle install points into the package',
  { timeout: 1_200_000 },
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'tulle-package-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const pack = await run(['npm', 'pack', '--ignore-scripts', '--pack-destination', dir], { cwd: CHECKOUT, timeoutMs: 600_000, allowFailure: true });
    assert.equal(pack.status, 0, pack.stderr);
    const tarball = readdirSync(dir).find((f) => /^tulle-.*\.tgz$/.test(f));
    assert.ok(tarball, `a tarball in ${readdirSync(dir).join(', ')}`);
    const listing = (await run(['tar', 'tzf', join(dir, tarball)])).stdout.split('\n');
    for (const f of ['package/bin/tulle', 'package/bin/tulle-cni', 'package/dist/src/cni/main.js', 'package/native/tulle_native.c', 'package/binding.gyp'])
      assert.ok(listing.includes(f), `${f} is packed`);
    assert.ok(!listing.some((f) => f.startsWith('package/dist/test/') || f.startsWith('package/build/')), 'no tests and no local build in the package');

    const prefix = join(dir, 'prefix');
    const install = await run(['npm', 'install', '-g', '--prefer-offline', '--no-audit', '--no-fund', '--prefix', prefix, join(dir, tarball)], {
      timeoutMs: 900_000,
      allowFailure: true,
      cwd: dir,
    });
    assert.equal(install.status, 0, install.stderr);
    const bin = join(prefix, 'bin');
    const pkg = join(prefix, 'lib/node_modules/tulle');
    const version = JSON.parse(readFileSync(join(CHECKOUT, 'package.json'), 'utf8')).version;
    const env = { PATH: `${bin}:/usr/sbin:/usr/bin:/sbin:/bin` };
    assert.equal((await run(['tulle', '--version'], { env })).stdout, `tulle ${version}\n`);
    assert.ok(existsSync(join(pkg, 'build/Release/tulle_native.node')), 'the native binding was built on install');

    // The native netlink binding and SQLite work from the installed copy.
    const ns = await freshNetns(t, 'pkg');
    const store = `sqlite:${join(dir, 'store.db')}`;
    assert.equal((await run(['tulle', 'config', 'put', '--store', store], { env, input: '{"Network":"10.244.0.0/16"}' })).status, 0);
    const status = await run(['ip', 'netns', 'exec', ns, join(bin, 'tulle'), 'status', '--store', store], { env, allowFailure: true });
    assert.equal(status.status, 1, status.stderr);
    assert.match(status.stdout, /^agent: +NOT running/m);
    assert.match(status.stdout, /^VTEP: +missing$/m);

    // tulle install from the installed copy: the launcher names the installed package, and works with no environment.
    const root = join(dir, 'root');
    await run(['mkdir', root]);
    assert.equal((await run(['tulle', 'install', '--root', root, '--no-systemd'], { env })).status, 0);
    assert.match(readFileSync(join(root, 'opt/cni/bin/tulle'), 'utf8'), new RegExp(`'${pkg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/bin/tulle-cni'`));
    const v = await run(['env', '-i', 'CNI_COMMAND=VERSION', join(root, 'opt/cni/bin/tulle')]);
    assert.equal(JSON.parse(v.stdout).cniVersion, '1.1.0');
    const cni = await run(['env', '-i', 'CNI_COMMAND=VERSION', join(bin, 'tulle-cni')]);
    assert.equal(JSON.parse(cni.stdout).cniVersion, '1.1.0');
  },
);
