/**
 * The native binding's own guarantees, called directly: no fd left behind by a call refused for a bad argument,
 * a name for every errno (and no memory kept per unknown one), and namespace file reads/writes that leave the
 * event loop free while they wait. Needs no root: a NETLINK_ROUTE socket and a FIFO in a temporary directory.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { BINDING_PATH, native } from '../../src/sys/native.js';

const NETLINK_ROUTE = 0;
const FLAGS = { extAck: true, capAck: true, strict: true };

const openFds = (): number => readdirSync('/proc/self/fd').length;

test('open() refused for a bad argument leaves no socket behind', () => {
  const bad: Array<[string, unknown[]]> = [
    ['a group that is not a number', [null, NETLINK_ROUTE, ['x'], 0, 0, FLAGS]],
    ['groups that are not an array', [null, NETLINK_ROUTE, 'x', 0, 0, FLAGS]],
    ['too many groups', [null, NETLINK_ROUTE, Array.from({ length: 1000 }, () => 1), 0, 0, FLAGS]],
    ['a flag that is not a boolean', [null, NETLINK_ROUTE, [], 0, 0, { extAck: 'yes', capAck: true, strict: true }]],
  ];
  for (const [what, args] of bad) {
    const before = openFds();
    for (let i = 0; i < 20; i++) {
      assert.throws(
        () => (native().open as (...a: unknown[]) => unknown)(...args),
        (e: unknown) => e instanceof TypeError || e instanceof RangeError,
        what,
      );
    }
    assert.equal(openFds(), before, `${what}: file descriptors before and after 20 refused calls`);
  }
  // The same socket with good arguments opens and closes cleanly.
  const before = openFds();
  const h = native().open(null, NETLINK_ROUTE, [1], 0, 0, FLAGS);
  assert.equal(openFds(), before + 1);
  native().close(h);
  assert.equal(openFds(), before);
});

test('receiveNow: null on an empty socket, the ACK queued by send() right after it, and clear errors for a closed or watched socket', () => {
  const h = native().open(null, NETLINK_ROUTE, [], 0, 0, FLAGS);
  try {
    assert.equal(native().receiveNow(h), null);
    // RTM_GETLINK for ifindex 1 (lo) with NLM_F_REQUEST|NLM_F_ACK: the kernel answers inside the send.
    const req = Buffer.alloc(32);
    req.writeUInt32LE(32, 0);
    req.writeUInt16LE(18, 4);
    req.writeUInt16LE(0x1 | 0x4, 6);
    req.writeUInt32LE(77, 8);
    req.writeInt32LE(1, 20);
    native().send(h, req);
    const replies = native().receiveNow(h);
    assert.ok(replies && replies.length >= 32, 'the link and its ACK were queued before send() returned');
    assert.equal(replies.readUInt32LE(8), 77);
    assert.equal(native().receiveNow(h), null, 'nothing left');
  } finally {
    native().close(h);
  }
  assert.throws(
    () => native().receiveNow(h),
    (e: NodeJS.ErrnoException) => e.code === 'EBADF',
  );
  const watched = native().open(null, NETLINK_ROUTE, [], 0, 0, FLAGS);
  native().startReading(watched, () => {});
  try {
    assert.throws(() => native().receiveNow(watched), /startReading/);
  } finally {
    native().close(watched);
  }
});

test("every errno has a name: libuv's, glibc's, or E<number> for one nobody knows", () => {
  assert.deepEqual(native().describeErrno(101), ['ENETUNREACH', 'Network is unreachable']);
  // Known to glibc but not to libuv: uv_err_name() called these "Unknown system error".
  assert.equal(native().describeErrno(132)[0], 'ERFKILL');
  assert.equal(native().describeErrno(4000)[0], 'E4000');
  assert.match(native().describeErrno(4000)[1], /4000/);
});

test('naming unknown errnos keeps no memory per call', () => {
  // In a child, so this process's heap does not blur the figure: a million names of an unknown errno against a
  // million of a known one. uv_err_name() kept ~32 bytes per unknown name (tens of MB here); now both are flat.
  const script = `
    const b = require(${JSON.stringify(BINDING_PATH)});
    function grow(n) {
      for (let i = 0; i < 3; i++) { for (let j = 0; j < 100000; j++) b.describeErrno(n); global.gc(); }
      const start = process.memoryUsage().rss;
      for (let i = 0; i < 10; i++) { for (let j = 0; j < 100000; j++) b.describeErrno(n); global.gc(); }
      return process.memoryUsage().rss - start;
    }
    const known = grow(2), unknown = grow(4000);
    process.stdout.write(JSON.stringify({ known, unknown }));`;
  const r = spawnSync(process.execPath, ['--expose-gc', '-e', script], { encoding: 'utf8', timeout: 240_000 });
  assert.equal(r.status, 0, r.stderr);
  const { known, unknown } = JSON.parse(r.stdout) as { known: number; unknown: number };
  const MB = 1024 * 1024;
  assert.ok(unknown - known < 8 * MB, `rss grew ${(unknown / MB).toFixed(1)} MB for 1e6 unknown errno names, ${(known / MB).toFixed(1)} MB for known ones`);
});

test('readFile and writeFile leave the event loop free while the file blocks, and answer when it is done', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 't-native-'));
  const fifo = join(dir, 'fifo');
  spawnSync('mkfifo', [fifo]);
  // Unblocks a call that wrongly held the event loop, so a regression fails the assertions below instead of
  // hanging the run; it is ended by PID whatever happens.
  const rescuer = spawn('sh', ['-c', `sleep 60; echo rescuer > ${fifo}`], { stdio: 'ignore', detached: true });
  t.after(() => {
    try {
      process.kill(-rescuer.pid!, 'SIGKILL'); // its process group: the shell and its sleep
    } catch {
      /* already gone */
    }
    rmSync(dir, { recursive: true, force: true });
  });

  // Read: the binding waits in open() for a writer; this loop is that writer.
  const reading = native().readFile(null, fifo);
  assert.ok(reading instanceof Promise);
  let fd = -1;
  for (const deadline = Date.now() + 30_000; fd < 0 && Date.now() < deadline;) {
    try {
      fd = openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK); // ENXIO until the reader has it open
    } catch {
      await sleep(20);
    }
  }
  assert.ok(fd >= 0, 'the binding opened the FIFO for reading while JS kept running');
  writeSync(fd, 'from js\n');
  closeSync(fd);
  assert.equal(await reading, 'from js\n');

  // Write: the binding waits in open() for a reader; JS reads.
  const writing = native().writeFile(null, fifo, 'to js\n');
  assert.ok(writing instanceof Promise);
  const rfd = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
  let got = '';
  for (const deadline = Date.now() + 30_000; !got.endsWith('\n') && Date.now() < deadline;) {
    try {
      got += readFileSync(rfd, 'utf8');
    } catch {
      /* EAGAIN: the writer has not written yet */
    }
    if (!got.endsWith('\n')) await sleep(20);
  }
  closeSync(rfd);
  await writing;
  assert.equal(got, 'to js\n');
});

test('readFile and writeFile errors name the step and the errno', async () => {
  await assert.rejects(
    native().readFile(null, '/nonexistent-t-native/x'),
    (e: NodeJS.ErrnoException) => e.code === 'ENOENT' && e.syscall === 'read /nonexistent-t-native/x',
  );
  await assert.rejects(
    native().writeFile('/nonexistent-t-native/ns', '/proc/sys/net/ipv4/ip_forward', '1\n'),
    (e: NodeJS.ErrnoException) => e.code === 'ENOENT' && e.syscall === 'open network namespace',
  );
  assert.throws(() => native().readFile(null, 42 as never), TypeError);
});
