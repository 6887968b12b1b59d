// `tulle lab ...` as a user runs it (`node bin/tulle`): bad input gives one clear line and a non-zero exit with
// nothing left behind; --json, list, exec and down behave as documented.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { listNetns } from '../../src/netns/netns.js';
import { labDown, labPrefix } from '../../src/lab/index.js';
import { requireRoot } from '../helpers/netns.js';

requireRoot();
let root: string;
before(() => void (root = mkdtempSync(join(tmpdir(), 'tulle-lab-cli-'))));
after(() => rmSync(root, { recursive: true, force: true }));

const uniqueLabName = (): string => `t${randomBytes(4).toString('hex')}`;
const TULLE = fileURLToPath(new URL('../../../bin/tulle', import.meta.url));

interface CliResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

function tulle(...args: string[]): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const env: NodeJS.ProcessEnv = { ...process.env, TULLE_LAB_DIR: root, TULLE_LOG_FORMAT: 'json' };
    delete env.TULLE_LAB_NAME;
    const child = spawn(process.execPath, [TULLE, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

/** Exactly one line on stderr, the CLI's `tulle: ...` error, never a stack trace. */
function assertOneLineError(r: CliResult, pattern: RegExp, what: string): void {
  assert.notEqual(r.status, 0, `${what}: non-zero exit`);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `${what}: one line on stderr, got ${JSON.stringify(r.stderr)}`);
  assert.match(lines[0]!, /^tulle( lab \w+)?: /, what);
  assert.match(lines[0]!, pattern, what);
  assert.doesNotMatch(r.stderr, /\n\s+at /, `${what}: no stack trace`);
}

test('bad input to lab up: one clear line naming the option, non-zero exit, nothing created', async () => {
  const name = uniqueLabName();
  const cases: Array<[string[], RegExp, number]> = [
    [['--nodes', '0'], /--nodes: 0 is out of range \(must be 1\.\.128\)/, 2],
    [['--nodes', '129'], /--nodes: 129 is out of range \(must be 1\.\.128\)/, 2],
    [['--nodes', '1000000'], /--nodes: 1000000 is out of range/, 2],
    [['--nodes', 'three'], /--nodes: "three" is not a whole number/, 2],
    [['--underlay', 'mesh'], /--underlay: "mesh" is not one of switch, routed/, 2],
    [['--pods', '17'], /--pods: 17 is out of range \(must be 0\.\.16\)/, 2],
    [['--bare', '--pods', '2'], /--bare builds no overlay, so --pods cannot go with it/, 2],
    [['--store', 'consul'], /--store: "consul" is not one of sqlite, etcd/, 2],
    [['--mode', 'ipip'], /--mode: "ipip" is not one of bridge, routed/, 2],
    [['--config', '/nonexistent/net-conf.json'], /--config: "\/nonexistent\/net-conf.json" cannot be read \(ENOENT\)/, 2],
    [['--pods=-1'], /--pods: -1 is out of range/, 2],
    [['--bogus'], /unknown option '--bogus'/, 2],
  ];
  for (const [extra, pattern, status] of cases) {
    const r = await tulle('lab', 'up', '--name', name, ...extra);
    assertOneLineError(r, pattern, extra.join(' '));
    assert.equal(r.status, status, extra.join(' '));
    assert.equal(r.stdout, '', extra.join(' '));
  }
  assert.deepEqual(listNetns(labPrefix(name)), []);
  assert.equal(existsSync(join(root, name)), false);

  // names that would not make valid (or unambiguous) namespace and interface names
  for (const bad of ['Bad', 'a-b', '9lab', 'averyveryverylongname', '../x', '']) {
    const r = await tulle('lab', 'up', '--name', bad);
    assertOneLineError(
      r,
      new RegExp(`--name: ${JSON.stringify(bad).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is not a valid lab name \\(1\\.\\.16 lower-case letters and digits`),
      `--name ${bad}`,
    );
    assert.equal(r.status, 2);
  }
  assert.deepEqual(listNetns('tulle-a-b'), []);
  assert.equal(existsSync(join(root, '..', 'x')), false);
});

test('lab up --json, list, exec and down through the CLI', async (t) => {
  const name = uniqueLabName();
  t.after(() => labDown(name, { root }));
  const up = await tulle('lab', 'up', '--name', name, '--nodes', '3', '--underlay', 'routed', '--bare', '--json');
  assert.equal(up.status, 0, up.stderr);
  const topo = JSON.parse(up.stdout);
  assert.equal(topo.name, name);
  assert.equal(topo.underlay, 'routed');
  assert.deepEqual(
    topo.hosts.map((h: any) => [h.name, h.namespace, h.interface, h.address, h.subnet]),
    [
      ['h1', `tulle-${name}-h1`, 'eth0', '192.0.2.11', null],
      ['h2', `tulle-${name}-h2`, 'eth0', '198.51.100.12', null],
      ['h3', `tulle-${name}-h3`, 'eth0', '192.0.2.13', null],
    ],
  );
  assert.equal(topo.router.namespace, `tulle-${name}-rt`);
  assert.deepEqual(
    topo.router.interfaces.map((i: any) => i.address),
    ['192.0.2.1', '198.51.100.1'],
  );
  assert.deepEqual(topo.pods, []);
  assert.deepEqual(topo.hostFiles, [], 'a bare lab has no agents and no store');
  // not a terminal: progress comes as log lines, one per step
  const logs = up.stderr
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  assert.deepEqual(
    logs.map((l) => l.msg),
    [
      'step 1/5 done: create namespaces',
      'step 2/5 done: create switches',
      'step 3/5 done: wire hosts and router to the switches',
      'step 4/5 done: address hosts and router',
      'step 5/5 done: turn on forwarding',
    ],
  );

  const again = await tulle('lab', 'up', '--name', name, '--bare');
  assertOneLineError(again, new RegExp(`lab "${name}" already exists .*tulle lab down --name ${name} \\[TLE_LAB_EXISTS\\]`), 'second up');
  assert.equal(listNetns(labPrefix(name)).length, 6, 'the existing lab is untouched');

  const list = await tulle('lab', 'list', '--json');
  assert.equal(list.status, 0);
  const mine = JSON.parse(list.stdout).find((l: any) => l.name === name);
  assert.deepEqual([mine.status, mine.underlay, mine.hosts, mine.namespaces.length], ['ready', 'routed', ['h1', 'h2', 'h3'], 6]);
  const listText = await tulle('lab', 'list');
  assert.match(listText.stdout, new RegExp(`^${name}\\s+ready\\s+routed\\s+3\\s+6\\s+0\\s`, 'm'));

  const ping = await tulle('lab', 'exec', name, 'h1', '--', 'ping', '-c1', '-W2', '-n', '198.51.100.12');
  assert.equal(ping.status, 0, ping.stderr);
  assert.match(ping.stdout, /ttl=63/, 'the reply crossed the router');
  const exit7 = await tulle('lab', 'exec', name, 'rt', '--', 'sh', '-c', 'exit 7');
  assert.equal(exit7.status, 7, 'the exit code is passed through');
  const where = await tulle('lab', 'exec', name, 'h2', '--', 'ip', '-j', 'addr', 'show', 'dev', 'eth0');
  assert.equal(JSON.parse(where.stdout)[0].addr_info[0].local, '198.51.100.12', 'the command ran in h2');
  const noTarget = await tulle('lab', 'exec', name, 'h9', '--', 'true');
  assertOneLineError(noTarget, new RegExp(`lab "${name}" has no "h9"; targets: h1, h2, h3, rt, sw1, sw2`), 'unknown target');
  const noLab = await tulle('lab', 'exec', 'nosuchlab', 'h1', '--', 'true');
  assertOneLineError(noLab, /lab "nosuchlab" does not exist .*\[TLE_LAB_NOT_FOUND\]/, 'unknown lab');
  const noCmd = await tulle('lab', 'exec', name, 'h1');
  assertOneLineError(noCmd, /missing COMMAND/, 'no command');

  const down = await tulle('lab', 'down', '--name', name);
  assert.equal(down.status, 0, down.stderr);
  assert.equal(down.stdout, `lab ${name} removed: 6 namespaces, 0 processes stopped\n`);
  assert.deepEqual(listNetns(labPrefix(name)), []);
  const downAgain = await tulle('lab', 'down', '--name', name);
  assert.equal(downAgain.status, 0);
  assert.equal(downAgain.stdout, `lab ${name} does not exist; nothing to remove\n`);
  const badDown = await tulle('lab', 'down', '--name', 'a-b');
  assertOneLineError(badDown, /--name: "a-b" is not a valid lab name/, 'down with a bad name');
});

test('lab up without --json prints a summary table of the hosts, their leased subnets and the store', async (t) => {
  const name = uniqueLabName();
  t.after(() => labDown(name, { root }));
  const up = await tulle('lab', 'up', '--name', name, '--nodes', '2');
  assert.equal(up.status, 0, up.stderr);
  assert.match(up.stdout, new RegExp(`^lab ${name} is up: 2 hosts on a switch underlay`));
  const subnets = [1, 2].map(
    (i) => new RegExp(`^h${i}\\s+tulle-${name}-h${i}\\s+eth0\\s+192\\.0\\.2\\.1${i}/24\\s+-\\s+(10\\.244\\.\\d+\\.0/24)$`, 'm').exec(up.stdout)?.[1],
  );
  assert.ok(subnets[0] && subnets[1] && subnets[0] !== subnets[1], `two distinct leased subnets in:\n${up.stdout}`);
  assert.match(up.stdout, new RegExp(`^store: sqlite:${root.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/${name}/store\\.db; agents: 2; pod mode: bridge$`, 'm'));
  assert.match(up.stdout, new RegExp(`tulle lab down --name ${name}`));

  // Where each host's files are, for a runtime's config or `tail -f`: they exist where the JSON says.
  const list = JSON.parse((await tulle('lab', 'list', '--json')).stdout).find((l: any) => l.name === name);
  assert.equal(list.store, `sqlite:${root}/${name}/store.db`);
  assert.deepEqual(
    list.hostFiles.map((f: any) => [f.host, f.subnetFile, f.agentLog, f.store]),
    [1, 2].map((i) => [`h${i}`, `${root}/${name}/h${i}/subnet.env`, `${root}/${name}/h${i}/agent.log`, list.store]),
  );
  for (const f of list.hostFiles) assert.ok(existsSync(f.subnetFile) && existsSync(f.agentLog), JSON.stringify(f));
});
