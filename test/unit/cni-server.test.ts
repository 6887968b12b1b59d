// The CNI server's socket, spoken to directly: hostile and broken clients (garbage, oversize, half a request, a
// client that never finishes, malformed entries) each get CNI error 6 naming what was wrong, while a good request
// sent meanwhile is answered; callers from another namespace are handed back; the socket is 0600, a stale one is
// replaced, a live one or a non-socket file is refused; metrics and the request log. Only VERSION and STATUS
// reach the plugin code here (STATUS reads a subnet.env file): nothing touches the kernel, so no root is needed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from '../../src/base/exec.js';
import { createLogger } from '../../src/base/log.js';
import { CniServer, STATUS_REFUSED, encodeRequest, ownNetnsId } from '../../src/cni/server.js';
import { IpamStore } from '../../src/cni/ipam.js';

const dir = mkdtempSync(join(tmpdir(), 'tulle-cni-server-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
const subnetFile = join(dir, 'subnet.env');
writeFileSync(subnetFile, 'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n');
const statusConfig = JSON.stringify({ cniVersion: '1.1.0', name: 'tulle-test', type: 'tulle', subnetFile, dataDir: join(dir, 'ipam') });
let n = 0;

async function server(t: { after(fn: () => unknown): void }, o: { readTimeoutMs?: number; maxRequestBytes?: number } = {}) {
  const lines: Array<Record<string, any>> = [];
  const log = createLogger({ component: 'cni' }, { format: 'json', write: (l) => lines.push(JSON.parse(l)) });
  const s = await CniServer.start({ path: join(dir, `s${n++}.sock`), log, ...o });
  t.after(() => s.close());
  return { s, lines };
}

interface Reply {
  status: number;
  body: string;
  json?: Record<string, any>;
}

/** Send raw bytes (optionally leaving the connection open), and read the answer until the server closes. */
function exchange(path: string, data: Buffer, o: { end?: boolean } = {}): { reply: Promise<Reply>; socket: Socket } {
  const socket = connect(path);
  const reply = new Promise<Reply>((resolve, reject) => {
    const chunks: Buffer[] = [];
    socket.on('data', (c) => chunks.push(c));
    socket.on('error', reject);
    socket.on('close', () => {
      const all = Buffer.concat(chunks);
      if (all.length < 10 || !all.subarray(0, 4).equals(Buffer.from('TCNI')))
        return reject(new Error(`no answer frame: ${JSON.stringify(all.toString('latin1'))}`));
      assert.equal(all.readUInt32BE(6), all.length - 10, 'answer length matches its body');
      const body = all.subarray(10).toString('utf8');
      let json;
      try {
        json = JSON.parse(body);
      } catch {
        // refusals carry plain text
      }
      resolve({ status: all[5]!, body, json });
    });
  });
  socket.write(data);
  if (o.end !== false) socket.end();
  return { reply, socket };
}

const statusRequest = () => encodeRequest({ CNI_COMMAND: 'STATUS', CNI_PATH: '/opt/cni/bin' }, statusConfig);

async function expectBad(path: string, data: Buffer, msg: RegExp, o: { end?: boolean } = {}) {
  const r = await exchange(path, data, o).reply;
  assert.equal(r.status, 1);
  assert.equal(r.json?.code, 6, r.body);
  assert.match(r.json?.msg, msg);
  assert.doesNotMatch(r.body, /\n\s+at /, 'no stack trace');
}

test('VERSION and STATUS are answered exactly as the plugin process answers them; the socket is 0600', async (t) => {
  const { s, lines } = await server(t);
  assert.equal(statSync(s.path).mode & 0o777, 0o600);
  const v = await exchange(s.path, encodeRequest({ CNI_COMMAND: 'VERSION' }, '')).reply;
  assert.equal(v.status, 0);
  assert.deepEqual(v.json, { cniVersion: '1.1.0', supportedVersions: ['0.4.0', '1.0.0', '1.1.0'] });
  const ok = await exchange(s.path, statusRequest()).reply;
  assert.deepEqual([ok.status, ok.body], [0, '']);
  // The same errors as the plugin: a missing subnet.env is STATUS error 50, a bad command error 4.
  const missing = await exchange(s.path, encodeRequest({ CNI_COMMAND: 'STATUS' }, statusConfig.replace(subnetFile, join(dir, 'nope', 'subnet.env')))).reply;
  assert.equal(missing.status, 1);
  assert.equal(missing.json?.code, 50);
  const badCommand = await exchange(s.path, encodeRequest({ CNI_COMMAND: 'MOVE' }, statusConfig)).reply;
  assert.equal(badCommand.json?.code, 4);
  assert.match(badCommand.json?.msg, /^CNI_COMMAND: "MOVE" is not a CNI command/);
  // A 100 KB container ID is refused as the plugin refuses it, and logged cut short.
  const longId = await exchange(s.path, encodeRequest({ CNI_COMMAND: 'DEL', CNI_CONTAINERID: `-${'x'.repeat(100_000)}`, CNI_IFNAME: 'eth0' }, statusConfig))
    .reply;
  assert.equal(longId.json?.code, 4);
  // The log names each request: command, container ID, result code, duration.
  const logged = lines.filter((l) => l.msg === 'cni request' || l.msg === 'cni request failed');
  assert.deepEqual(
    logged.map((l) => [l.command, l.code]),
    [
      ['VERSION', 0],
      ['STATUS', 0],
      ['STATUS', 50],
      ['MOVE', 4],
      ['DEL', 4],
    ],
  );
  for (const l of logged) assert.equal(typeof l.durationMs, 'number');
  assert.equal(logged[4]!.containerId.length, 100);
  assert.ok(logged[4]!.containerId.endsWith('…'));
  assert.ok(JSON.stringify(logged[4]).length < 2000, 'the log line stays short');
  // Per-command latency histograms and counters; a hostile command name becomes the label "invalid".
  const metrics = await s.metrics.registry.metrics();
  assert.match(metrics, /tulle_cni_request_duration_seconds_count\{command="STATUS",result="ok"\} 1/);
  assert.match(metrics, /tulle_cni_request_duration_seconds_count\{command="STATUS",result="error"\} 1/);
  assert.match(metrics, /tulle_cni_requests_total\{command="invalid",code="4"\} 1/);
});

test('garbage, oversize, malformed entries, half a request and a silent client get error 6 naming the problem; a good request meanwhile is answered', async (t) => {
  const { s, lines } = await server(t, { readTimeoutMs: 1500, maxRequestBytes: 4096 });
  // A client that sends part of a header and then nothing: it holds its connection while others are served.
  const silent = exchange(s.path, Buffer.from('TCN'), { end: false });
  await expectBad(
    s.path,
    Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'),
    /^request: not a tulle CNI request \(it must start with "TCNI" and version 1; got "GET \/"\)/,
  );
  await expectBad(s.path, Buffer.concat([Buffer.from('TCNI\x07'), Buffer.alloc(4)]), /not a tulle CNI request/);
  const huge = Buffer.from('TCNI\x01\xff\xff\xff\xff', 'latin1');
  await expectBad(s.path, huge, /^request: 4294967295 bytes is over the limit of 4096/, { end: false });
  const good = statusRequest();
  await expectBad(s.path, good.subarray(0, good.length - 3), /^request: the connection ended after \d+ bytes of \d+/);
  await expectBad(s.path, good.subarray(0, 4), /^request: the connection ended after 4 bytes \(the header alone is 9\)/);
  await expectBad(s.path, Buffer.concat([good, Buffer.from('xx')]), /^request: 2 bytes more than its length/);
  const frame = (body: Buffer) => {
    const h = Buffer.from('TCNI\x01\0\0\0\0', 'latin1');
    h.writeUInt32BE(body.length, 5);
    return Buffer.concat([h, body]);
  };
  await expectBad(s.path, frame(Buffer.from('CNI_COMMAND=STATUS')), /^request: entry 1 has no terminating NUL/);
  await expectBad(s.path, frame(Buffer.from('PATH=/bin\0\0{}')), /^request: entry 1 "PATH=\/bin" is not KEY=VALUE with KEY netns or CNI_\*/);
  await expectBad(s.path, frame(Buffer.from(`${'A'.repeat(500)}\0\0`)), /^request: entry 1 "A+… is not KEY=VALUE/);
  await expectBad(s.path, frame(Buffer.from(`netns=${ownNetnsId()}\0CNI_COMMAND=STATUS\0CNI_COMMAND=ADD\0\0{}`)), /^request: CNI_COMMAND is given twice/);
  await expectBad(
    s.path,
    frame(Buffer.concat([Buffer.from(`netns=${ownNetnsId()}\0CNI_COMMAND=STATUS\0\0`), Buffer.from([0xff, 0xfe])])),
    /^request: stdin is not valid UTF-8/,
  );
  // Served while the silent client still holds its connection.
  const ok = await exchange(s.path, statusRequest()).reply;
  assert.equal(ok.status, 0, ok.body);
  const timedOut = await silent.reply;
  assert.equal(timedOut.json?.code, 6);
  assert.match(timedOut.json?.msg, /^request: incomplete after 1500 ms \(3 bytes received\)/);
  const reasons = lines.filter((l) => l.msg === 'bad CNI request').map((l) => l.reason);
  assert.ok(reasons.includes('timeout') && reasons.includes('oversize') && reasons.includes('truncated') && reasons.includes('format'), reasons.join());
  assert.match(await s.metrics.registry.metrics(), /tulle_cni_bad_requests_total\{reason="timeout"\} 1/);
});

test('a caller from another network namespace (or one that does not say) is handed back to do the work itself', async (t) => {
  const { s } = await server(t);
  const other = await exchange(s.path, encodeRequest({ CNI_COMMAND: 'STATUS' }, statusConfig, '4:1')).reply;
  assert.equal(other.status, STATUS_REFUSED);
  assert.match(other.body, /the caller's network namespace \(4:1\) is not the agent's/);
  const none = await exchange(s.path, encodeRequest({ CNI_COMMAND: 'STATUS' }, statusConfig, null)).reply;
  assert.equal(none.status, STATUS_REFUSED);
  assert.match(await s.metrics.registry.metrics(), /tulle_cni_refused_total\{reason="netns"\} 2/);
});

test('socket path: a stale socket is replaced, a live one or a non-socket file is refused, a bad path is named; close removes the socket', async (t) => {
  const quiet = createLogger({}, { write: () => {} });
  await assert.rejects(CniServer.start({ path: 'relative.sock', log: quiet }), {
    code: 'TLE_INVALID_VALUE',
    message: /^--cni-socket: "relative.sock" must be an absolute path of at most 107 bytes/,
  });
  await assert.rejects(CniServer.start({ path: `/tmp/${'x'.repeat(120)}`, log: quiet }), { message: /must be an absolute path of at most 107 bytes/ });
  const file = join(dir, 'plain-file');
  writeFileSync(file, 'mine');
  await assert.rejects(CniServer.start({ path: file, log: quiet }), { code: 'TLE_CNI_SOCKET', message: /exists and is not a socket/ });
  assert.equal(statSync(file).isFile(), true, 'the file is left alone');

  // A live socket, then a stale one: its server process is killed and the file stays behind.
  const stale = join(dir, 'stale.sock');
  const other = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(stale)}, () => console.log('up'))`], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.after(() => other.kill('SIGKILL'));
  await new Promise((r) => other.stdout.once('data', r));
  await assert.rejects(CniServer.start({ path: stale, log: quiet }), { code: 'TLE_CNI_SOCKET_IN_USE', message: /another process already serves/ });
  other.kill('SIGKILL');
  await new Promise((r) => other.once('exit', r));
  assert.ok(existsSync(stale));
  const s = await CniServer.start({ path: stale, log: quiet });
  const v = await exchange(s.path, encodeRequest({ CNI_COMMAND: 'VERSION' }, '')).reply;
  assert.equal(v.status, 0);
  await s.close();
  assert.equal(existsSync(stale), false);
});

test('closing cuts idle connections and removes the socket; later callers find no socket (the shim then falls back)', async (t) => {
  const { s } = await server(t);
  assert.equal((await exchange(s.path, statusRequest()).reply).status, 0);
  const idle = exchange(s.path, Buffer.from('TC'), { end: false });
  await new Promise((r) => idle.socket.once('connect', r));
  await s.close();
  await assert.rejects(idle.reply, /no answer frame|ECONNRESET/, 'cut without an answer');
  assert.equal(existsSync(s.path), false);
  await assert.rejects(exchange(s.path, statusRequest()).reply, { code: 'ENOENT' });
});

test('tulle agent refuses a malformed --cni-socket (or TULLE_CNI_SOCKET) before it starts anything: exit 2 naming it', async () => {
  const tulle = fileURLToPath(new URL('../../../bin/tulle', import.meta.url));
  const store = `sqlite:${join(dir, 'never', 'store.db')}`;
  for (const [args, env] of [
    [['--cni-socket', 'cni.sock'], {}],
    [[], { TULLE_CNI_SOCKET: `/${'x'.repeat(200)}` }],
  ] as const) {
    const r = await run([process.execPath, tulle, 'agent', '--store', store, '--health-addr', '127.0.0.1:0', ...args], {
      allowFailure: true,
      env: { ...process.env, ...env },
    });
    assert.equal(r.status, 2, r.stderr);
    assert.match(
      r.stderr,
      /^tulle: --cni-socket: ".+"(… \(\d+ characters\))? must be an absolute path of at most 107 bytes \(or "" for no CNI socket\) \[TLE_INVALID_VALUE\]$/m,
    );
    assert.doesNotMatch(r.stderr, /\n\s+at /);
  }
  assert.equal(existsSync(join(dir, 'never')), false, 'the store was never opened');
});

test('the IPAM lock under many concurrent requests of one process (as in the server): one holder at a time, every request gets its turn', async () => {
  const stores = Array.from({ length: 40 }, () => IpamStore.open(join(dir, 'ipam-lock'), 'net'));
  let holders = 0;
  let most = 0;
  const order: number[] = [];
  await Promise.all(
    stores.map((s, i) =>
      s.withLock(async () => {
        most = Math.max(most, ++holders);
        await new Promise((r) => setTimeout(r, 1));
        order.push(i);
        holders--;
      }),
    ),
  );
  for (const s of stores) s.close();
  assert.equal(most, 1);
  assert.equal(order.length, 40);
});
