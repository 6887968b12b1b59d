/**
 * scripts/install-deps.sh installing docker.io: its daemons must never start on this machine. Each case runs the
 * real script as root in a private mount namespace (no network namespace is needed, but root is) where /usr/sbin is
 * a tmpfs of links to the real one without `dockerd` (so docker.io counts as missing) and without the machine's
 * `policy-rc.d`; apt-get, dpkg, systemctl and debconf-set-selections are stand-ins first in PATH that record how
 * they were called (apt-get also runs the policy-rc.d it finds, as invoke-rc.d would). Nothing is installed and the
 * machine's /usr/sbin is never changed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run, type RunResult } from '../../src/base/exec.js';
import { requireRoot } from '../helpers/netns.js';

requireRoot();

const SCRIPT = fileURLToPath(new URL('../../../scripts/install-deps.sh', import.meta.url));

const STAND_INS: Record<string, string> = {
  'apt-get': [
    'echo "apt-get $*" >>"$FAKE_LOG"',
    'if [ "$1" = install ]; then',
    '  if [ -x /usr/sbin/policy-rc.d ]; then /usr/sbin/policy-rc.d docker.service start; echo "policy-rc.d answered $?" >>"$FAKE_LOG"; else echo "no policy-rc.d" >>"$FAKE_LOG"; fi',
    '  exit "${FAKE_APT_STATUS:-0}"',
    'fi',
  ].join('\n'),
  // `dpkg -s containerd`: installed or not, as the case says
  dpkg: 'echo "dpkg $*" >>"$FAKE_LOG"; [ "${FAKE_CONTAINERD:-absent}" = installed ]',
  systemctl: ['echo "systemctl $*" >>"$FAKE_LOG"', 'case "$1" in', '  is-enabled) [ -n "$FAKE_STILL_ENABLED" ] && exit 0; exit 1 ;;', 'esac'].join('\n'),
  'debconf-set-selections': 'cat >/dev/null',
};

interface Outcome {
  result: RunResult;
  calls: string[];
  /** The policy-rc.d left in the namespace's /usr/sbin afterwards, or null. */
  policyAfter: string | null;
}

async function installDeps(t: { after(fn: () => unknown): void }, o: { policy?: string; env?: Record<string, string> }): Promise<Outcome> {
  const dir = mkdtempSync(join(tmpdir(), 'tulle-install-deps-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const bin = join(dir, 'bin');
  mkdirSync(bin);
  mkdirSync(join(dir, 'sbin-orig'));
  for (const [name, body] of Object.entries(STAND_INS)) {
    writeFileSync(join(bin, name), `#!/bin/sh\n${body}\n`);
    chmodSync(join(bin, name), 0o755);
  }
  if (o.policy !== undefined) writeFileSync(join(dir, 'policy'), o.policy);
  const setup = [
    'set -e',
    'dir=$1',
    'mount --bind /usr/sbin "$dir/sbin-orig"',
    'mount -t tmpfs tulle-sbin /usr/sbin',
    'for f in "$dir"/sbin-orig/*; do',
    '  case "${f##*/}" in dockerd|policy-rc.d) continue ;; esac',
    '  ln -s "$f" "/usr/sbin/${f##*/}"',
    'done',
    'if [ -e "$dir/policy" ]; then cp "$dir/policy" /usr/sbin/policy-rc.d; chmod 0755 /usr/sbin/policy-rc.d; fi',
    'set +e',
    'PATH="$dir/bin:$PATH" bash "$2"',
    'rc=$?',
    'if [ -e /usr/sbin/policy-rc.d ]; then cp /usr/sbin/policy-rc.d "$dir/policy-after"; fi',
    'exit $rc',
  ].join('\n');
  const result = await run(['unshare', '--mount', '--propagation', 'private', 'sh', '-c', setup, 'setup', dir, SCRIPT], {
    env: { ...process.env, FAKE_LOG: join(dir, 'calls'), ...o.env },
    allowFailure: true,
    timeoutMs: 60_000,
  });
  const calls = existsSync(join(dir, 'calls')) ? readFileSync(join(dir, 'calls'), 'utf8').trim().split('\n') : [];
  const policyAfter = existsSync(join(dir, 'policy-after')) ? readFileSync(join(dir, 'policy-after'), 'utf8') : null;
  return { result, calls, policyAfter };
}

test('install-deps: docker.io is installed under a policy-rc.d that forbids starting daemons, removed afterwards; the units it enabled are disabled', async (t) => {
  const { result, calls, policyAfter } = await installDeps(t, {});
  assert.equal(result.status, 0, result.stderr);
  assert.match(result.stderr, /installing missing system packages: docker\.io \(for: \/usr\/sbin\/dockerd\)/);
  const install = calls.find((c) => c.startsWith('apt-get install'));
  assert.ok(install?.endsWith(' docker.io'), `apt-get install docker.io only: ${calls.join(' | ')}`);
  assert.ok(calls.includes('policy-rc.d answered 101'), `apt-get ran under a policy-rc.d answering 101: ${calls.join(' | ')}`);
  assert.ok(calls.includes('systemctl disable --quiet docker.service docker.socket containerd.service'), calls.join(' | '));
  assert.equal(policyAfter, null, 'the policy-rc.d it wrote is gone');
});

test('install-deps: a policy-rc.d that was there is used and kept as it was; containerd installed before keeps its unit state', async (t) => {
  const mine = "#!/bin/sh\n# the operator's own\nexit 101\n";
  const { result, calls, policyAfter } = await installDeps(t, { policy: mine, env: { FAKE_CONTAINERD: 'installed' } });
  assert.equal(result.status, 0, result.stderr);
  assert.ok(calls.includes('policy-rc.d answered 101'), calls.join(' | '));
  assert.ok(calls.includes('systemctl disable --quiet docker.service docker.socket'), calls.join(' | '));
  assert.equal(policyAfter, mine);
});

test('install-deps: a failing apt-get fails the script and still removes the policy-rc.d it wrote', async (t) => {
  const { result, calls, policyAfter } = await installDeps(t, { env: { FAKE_APT_STATUS: '100' } });
  assert.equal(result.status, 100, result.stderr);
  assert.ok(calls.includes('policy-rc.d answered 101'), calls.join(' | '));
  assert.ok(!calls.some((c) => c.startsWith('systemctl disable')), 'nothing to disable after a failed install');
  assert.equal(policyAfter, null);
});

test('install-deps: a unit that stays enabled is an error naming it and the command to run; the policy-rc.d is removed', async (t) => {
  const { result, policyAfter } = await installDeps(t, { env: { FAKE_STILL_ENABLED: '1' } });
  assert.equal(result.status, 1);
  assert.match(result.stderr, /could not disable docker\.service after installing it; disable it with: systemctl disable docker\.service/);
  assert.equal(policyAfter, null);
});

test('install-deps: a policy-rc.d that would let the daemons start stops the script before apt-get, naming the file, its answer and what to do; the file is kept', async (t) => {
  const permissive = '#!/bin/sh\nexit 0\n';
  const { result, calls, policyAfter } = await installDeps(t, { policy: permissive });
  assert.equal(result.status, 1);
  assert.match(
    result.stderr,
    /\/usr\/sbin\/policy-rc\.d answers 0 \(not 101, "forbidden"\) for "docker start", so installing docker\.io would start docker on this machine; make it answer 101 during the install, or install docker\.io yourself and run: systemctl disable --now docker\.service docker\.socket containerd\.service/,
  );
  assert.deepEqual(
    calls.filter((c) => c.startsWith('apt-get')),
    [],
    'apt-get never ran',
  );
  assert.equal(policyAfter, permissive);
});
