// `labDown` after crashes and with processes in the lab, and `labUp` undoing itself when it fails midway.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { waitFor } from '../../src/base/retry.js';
import { createNetns, listNetns, netnsPids, spawnIn } from '../../src/netns/netns.js';
import { labDown, labPrefix, labUp, listLabs, readLabState, registerLabProcess, stateFilePath, LabExistsError } from '../../src/lab/index.js';
import { requireRoot } from '../helpers/netns.js';

requireRoot();
let root: string;
before(() => void (root = mkdtempSync(join(tmpdir(), 'tulle-lab-down-'))));
after(() => rmSync(root, { recursive: true, force: true }));

const uniqueLabName = (): string => `t${randomBytes(4).toString('hex')}`;
const TULLE = fileURLToPath(new URL('../../../bin/tulle', import.meta.url));

interface Started {
  child: ChildProcess;
  pid: number;
  /** Resolves with the signal that ended the process (null for a normal exit). */
  ended: Promise<NodeJS.Signals | null>;
}

/** Start `argv` (default `sleep 1000`) in a namespace, or in the root namespace when `ns` is null; ended in t.after. */
async function start(t: { after(fn: () => unknown): void }, ns: string | null, argv = ['sleep', '1000']): Promise<Started> {
  const child = ns ? spawnIn(ns, argv, { stdio: 'ignore' }) : spawn(argv[0]!, argv.slice(1), { stdio: 'ignore' });
  const ended = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  await new Promise((r) => child.once('spawn', r));
  // `ip netns exec` enters the namespace, then execs the program under the same PID
  if (ns) await waitFor(async () => (await netnsPids(ns)).includes(child.pid!), 5000, `pid ${child.pid} in ${ns}`);
  return { child, pid: child.pid!, ended };
}

/** Is any live (non-zombie) process in process group `pgid`? Read from /proc/PID/stat (fields: state, ppid, pgrp). */
function processGroupAlive(pgid: number): boolean {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // exited while we looked
    }
    const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(pgrp) === pgid && state !== 'Z') return true;
  }
  return false;
}

function assertGone(name: string): void {
  assert.deepEqual(listNetns(labPrefix(name)), [], 'no namespace of the lab is left');
  assert.equal(existsSync(join(root, name)), false, 'the lab directory is removed');
}

test('lab down ends recorded and unrecorded processes even after the state file was deleted', async (t) => {
  const name = uniqueLabName();
  t.after(() => labDown(name, { root, graceMs: 200 }));
  const lab = await labUp({ name, nodes: 2, underlay: 'routed', root });
  const recorded = await start(t, lab.hosts[0]!.namespace);
  registerLabProcess(name, { pid: recorded.pid, role: 'test-sleeper', host: 'h1' }, { root });
  const stray = await start(t, lab.router!.namespace);
  assert.deepEqual(
    readLabState(name, root)!.processes.map((p) => [p.pid, p.role, p.host]),
    [[recorded.pid, 'test-sleeper', 'h1']],
  );

  unlinkSync(stateFilePath(name, root)); // as if the state was lost in a crash
  const result = await labDown(name, { root });
  assert.equal(result.existed, true);
  assert.deepEqual(
    result.stopped,
    [recorded.pid, stray.pid].sort((a, b) => a - b),
  );
  assert.equal(await recorded.ended, 'SIGTERM');
  assert.equal(await stray.ended, 'SIGTERM');
  assertGone(name);
});

test('a recorded PID that no longer lives in the lab (reused) is never signalled', async (t) => {
  const name = uniqueLabName();
  t.after(() => labDown(name, { root, graceMs: 200 }));
  await labUp({ name, nodes: 1, underlay: 'switch', root });
  const inLab = await start(t, `${labPrefix(name)}h1`);
  const outside = await start(t, null); // stands for an unrelated process that got a recorded PID
  registerLabProcess(name, { pid: inLab.pid, role: 'agent', host: 'h1' }, { root });
  registerLabProcess(name, { pid: outside.pid, role: 'agent', host: 'h1' }, { root });

  const result = await labDown(name, { root });
  assert.deepEqual(result.stopped, [inLab.pid]);
  assert.deepEqual(result.ignored, [outside.pid]);
  assert.equal(await inLab.ended, 'SIGTERM');
  assert.equal(outside.child.exitCode, null, 'the outside process still runs');
  assert.equal(outside.child.signalCode, null);
  process.kill(outside.pid, 'SIGTERM');
  assertGone(name);
});

test('a process that ignores SIGTERM is killed after the grace period', async (t) => {
  const name = uniqueLabName();
  t.after(() => labDown(name, { root, graceMs: 200 }));
  const lab = await labUp({ name, nodes: 1, underlay: 'switch', root });
  // an ignored signal stays ignored across exec, so sleep ignores SIGTERM too
  const stubborn = await start(t, lab.hosts[0]!.namespace, ['sh', '-c', 'trap "" TERM; exec sleep 1000']);
  registerLabProcess(name, { pid: stubborn.pid, role: 'stubborn', host: 'h1' }, { root });
  const result = await labDown(name, { root, graceMs: 200 });
  assert.deepEqual(result.stopped, [stubborn.pid]);
  assert.equal(await stubborn.ended, 'SIGKILL');
  assertGone(name);
});

test('lab up that fails in a later step removes everything it built, processes included', async (t) => {
  const name = uniqueLabName();
  t.after(() => labDown(name, { root, graceMs: 200 }));
  let sleeper: Started | undefined;
  let recordedNamespaces: string[] = [];
  const failure = new Error('agent failed to start');
  await assert.rejects(
    labUp({
      name,
      nodes: 3,
      underlay: 'routed',
      root,
      graceMs: 500,
      afterUnderlay: [
        {
          title: 'start a helper',
          run: async (ctx) => {
            sleeper = await start(t, ctx.state().hosts[2]!.namespace);
            ctx.registerProcess({ pid: sleeper.pid, role: 'helper', host: 'h3' });
            recordedNamespaces = ctx.state().namespaces;
          },
        },
        { title: 'fail', run: async () => Promise.reject(failure) },
      ],
    }),
    (e: unknown) => e === failure,
  );
  assert.equal(recordedNamespaces.length, 6, 'the underlay was up when the failure came');
  assert.equal(await sleeper!.ended, 'SIGTERM');
  assertGone(name);
});

test('an aborted lab up removes what it built', async (t) => {
  const name = uniqueLabName();
  t.after(() => labDown(name, { root }));
  const abort = new AbortController();
  const seen: string[] = [];
  await assert.rejects(
    labUp({
      name,
      nodes: 2,
      underlay: 'switch',
      root,
      signal: abort.signal,
      onProgress: (p) => {
        seen.push(`${p.index}/${p.total} ${p.phase} ${p.step}`);
        if (p.index === 2 && p.phase === 'done') {
          assert.equal(listNetns(labPrefix(name)).length, 3, 'namespaces exist when the abort comes');
          abort.abort(new Error('stop'));
        }
      },
    }),
    /stop/,
  );
  assert.deepEqual(seen, ['1/5 start create namespaces', '1/5 done create namespaces', '2/5 start create switches', '2/5 done create switches']);
  assertGone(name);
});

test('a lab that exists, or left namespaces behind, is refused and left as it was', async (t) => {
  const name = uniqueLabName();
  t.after(() => labDown(name, { root }));
  await labUp({ name, nodes: 2, underlay: 'switch', root });
  const before = listNetns(labPrefix(name));
  await assert.rejects(
    labUp({ name, nodes: 3, underlay: 'routed', root }),
    (e: unknown) => e instanceof LabExistsError && e.code === 'TLE_LAB_EXISTS' && e.message.includes(`tulle lab down --name ${name}`),
  );
  assert.deepEqual(listNetns(labPrefix(name)), before, 'the existing lab is untouched');
  assert.equal(readLabState(name, root)!.status, 'ready');

  // a leftover namespace without any state file: found by prefix, refused, listed, removed
  const other = uniqueLabName();
  t.after(() => labDown(other, { root }));
  await createNetns(`${labPrefix(other)}h7`);
  await assert.rejects(labUp({ name: other, root }), (e: unknown) => e instanceof LabExistsError && e.message.includes(`${labPrefix(other)}h7`));
  assert.deepEqual(listNetns(labPrefix(other)), [`${labPrefix(other)}h7`], 'the leftover is not removed by the refused up');
  const listed = listLabs({ root }).find((l) => l.name === other);
  assert.deepEqual(listed && [listed.status, listed.hosts, listed.dir], ['leftover', ['h7'], null]);
  const result = await labDown(other, { root });
  assert.deepEqual(result.namespaces, [`${labPrefix(other)}h7`]);
  assertGone(other);
  assert.equal((await labDown(other, { root })).existed, false, 'down is idempotent');
});

test('a lab up killed mid-way (SIGKILL) has recorded every namespace it made, and lab down removes it all', async (t) => {
  const name = uniqueLabName();
  t.after(() => labDown(name, { root }));
  // its own process group, so the crash takes its `ip` children with it (as a killed service's cgroup would)
  const child = spawn(process.execPath, [TULLE, 'lab', 'up', '--name', name, '--nodes', '8', '--underlay', 'routed'], {
    env: { ...process.env, TULLE_LAB_DIR: root },
    stdio: 'ignore',
    detached: true,
  });
  const ended = new Promise((r) => child.once('exit', r));
  const killGroup = (): void => {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // the group is already gone
    }
  };
  t.after(killGroup);
  await waitFor(() => listNetns(labPrefix(name)).length >= 3, 10_000, 'the first namespaces', 2);
  killGroup();
  await ended;
  await waitFor(() => !processGroupAlive(child.pid!), 5000, 'the process group to end');

  const state = readLabState(name, root)!;
  const present = listNetns(labPrefix(name));
  assert.ok(present.length >= 3);
  for (const ns of present) assert.ok(state.namespaces.includes(ns), `${ns} was recorded before it was created`);
  const result = await labDown(name, { root });
  assert.deepEqual([...result.namespaces].sort(), present);
  assertGone(name);
});
