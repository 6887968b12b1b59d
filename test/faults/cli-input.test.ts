/**
 * Fault: a careless operator's command lines. Each is a clear error naming what is wrong, a non-zero exit, and
 * nothing made or removed: `agent --cleanup` with a bogus store leaves the host's overlay as it is; an SQLite path
 * in a directory tree that does not exist creates no directories; a store file that does not exist is not read as
 * an empty store.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../../src/base/exec.js';
import { TULLE_BIN } from '../../src/lab/index.js';
import { underlay } from '../helpers/agent.js';
import { freshNetns, ip, requireRoot } from '../helpers/netns.js';

const tulle = (args: string[], input = '') => run([process.execPath, TULLE_BIN, ...args], { allowFailure: true, input });
const oneLine = (r: { stderr: string; stdout: string }) => {
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  assert.doesNotMatch(r.stderr, /\n\s+at /);
};

test('agent --cleanup with a bogus --store: exit 2 naming it, and the VTEP and routes of the host stay', async (t) => {
  requireRoot();
  const ns = await freshNetns(t, 'cli');
  await underlay(ns, 'eth0', '192.0.2.11/24');
  await ip(ns, 'link', 'add', 'flannel.1', 'type', 'vxlan', 'id', '1', 'dstport', '8472', 'dev', 'eth0', 'nolearning');
  await ip(ns, 'route', 'add', '10.244.2.0/24', 'via', '192.0.2.12', 'dev', 'eth0', 'proto', '84');
  const dir = mkdtempSync(join(tmpdir(), 'tulle-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  for (const store of ['bogus', 'http://192.0.2.10:2379', 'sqlite:']) {
    const r = await run(
      [
        'ip',
        'netns',
        'exec',
        ns,
        process.execPath,
        TULLE_BIN,
        'agent',
        '--cleanup',
        '--store',
        store,
        '--subnet-file',
        join(dir, 'subnet.env'),
        '--state-dir',
        dir,
      ],
      { allowFailure: true },
    );
    assert.equal(r.status, 2, `${store}: ${r.stderr}`);
    assert.match(r.stderr, /^tulle: --store: /);
    oneLine(r);
  }
  assert.equal((await run(['ip', '-n', ns, 'link', 'show', 'flannel.1'], { allowFailure: true })).status, 0, 'the VTEP is still there');
  assert.match((await run(['ip', '-n', ns, 'route', 'show', 'proto', '84'])).stdout, /10\.244\.2\.0\/24/, 'the route is still there');
});

test('an SQLite store in a directory tree that does not exist: an error naming the missing directory, nothing created', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tulle-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const deep = join(dir, 'typo', 'dir', 'x.db');
  const r = await tulle(['config', 'put', '--store', `sqlite:${deep}`, '-'], '{"Network":"10.244.0.0/16"}');
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, new RegExp(`the directory ${join(dir, 'typo').replace(/[/.]/g, '\\$&')} does not exist`));
  oneLine(r);
  assert.equal(existsSync(join(dir, 'typo')), false, 'no directory was created');
  // One missing level (the default /var/lib/tulle on a new host) is made.
  const shallow = join(dir, 'tulle', 'x.db');
  assert.equal((await tulle(['config', 'put', '--store', `sqlite:${shallow}`, '-'], '{"Network":"10.244.0.0/16"}')).status, 0);
  assert.ok(existsSync(shallow));
});

test('reading a store file that does not exist is an error, not an empty table', async () => {
  for (const cmd of [['leases'], ['config', 'get']]) {
    const r = await tulle([...cmd, '--store', 'sqlite:/nonexistent-tulle-dir/store.db']);
    assert.equal(r.status, 1, r.stdout);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /\/nonexistent-tulle-dir\/store\.db does not exist/);
    oneLine(r);
  }
  assert.equal(existsSync('/nonexistent-tulle-dir'), false);
});
