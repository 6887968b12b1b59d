// The resident path's own cases, with the compiled shim run as a runtime runs it (ip netns exec HOST shim): the
// agent dying mid-run (calls go on through the fallback; a new server takes over the stale socket), a caller in
// another namespace (handed back, so the work happens in the caller's namespace), a config too large for the
// socket, and a server that takes a request and vanishes or hangs (ADD answers 11, DEL falls back).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cniInvoke, type CniInvocation, type CniOutcome } from '../../src/cni/invoke.js';
import { hostVethName } from '../../src/cni/names.js';
import { SHIM, startCniServer } from '../helpers/cni-paths.js';
import { freshNetns, ipJson, requireRoot } from '../helpers/netns.js';

requireRoot();

function setup(t: { after(fn: () => unknown): void }, subnet = '10.244.7.1/24') {
  const dir = mkdtempSync(join(tmpdir(), 'tulle-cni-resident-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const subnetFile = join(dir, 'subnet.env');
  writeFileSync(subnetFile, `FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=${subnet}\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n`);
  const dataDir = join(dir, 'ipam');
  return { dir, dataDir, config: { cniVersion: '1.1.0', name: 'tulle', type: 'tulle', mode: 'routed', subnetFile, dataDir } };
}

const ok = (out: CniOutcome, what: string) => assert.equal(out.exitCode, 0, `${what}: ${out.stdout}${out.stderr}`);
const requests = (log: string[]) => log.map((l) => JSON.parse(l)).filter((l) => l.msg === 'cni request');
const links = async (ns: string) => (await ipJson<Array<{ ifname: string }>>(ns, 'link', 'show')).map((l) => l.ifname).sort();

test('the agent killed mid-run: later calls work through the fallback, and a restarted server takes over the stale socket', async (t) => {
  const host = await freshNetns(t, 'host');
  const { dir, dataDir, config } = setup(t);
  const socket = join(dir, 'cni.sock');
  const pods = await Promise.all(Array.from({ length: 6 }, (_, i) => freshNetns(t, `p${i}`)));
  const call = (command: 'ADD' | 'DEL', i: number): Promise<CniOutcome> =>
    cniInvoke({
      command,
      containerId: `res-${i}`,
      ifName: 'eth0',
      netns: `/run/netns/${pods[i]}`,
      config,
      hostNetns: host,
      plugin: SHIM,
      env: { TULLE_CNI_SOCKET: socket },
    });

  const first = await startCniServer(t, host, { socket });
  for (const i of [0, 1]) ok(await call('ADD', i), `ADD ${i}`);
  assert.deepEqual(
    requests(first.log()).map((r) => [r.command, r.containerId, r.code]),
    [
      ['ADD', 'res-0', 0],
      ['ADD', 'res-1', 0],
    ],
  );
  assert.ok(requests(first.log()).every((r) => typeof r.durationMs === 'number'));

  await first.kill();
  assert.ok(existsSync(socket), 'a killed agent leaves its socket file behind');
  for (const i of [2, 3]) ok(await call('ADD', i), `ADD ${i} with the agent dead`);
  ok(await call('DEL', 0), 'DEL 0 with the agent dead');

  const second = await startCniServer(t, host, { socket });
  ok(await call('ADD', 4), 'ADD 4 after the restart');
  for (const i of [1, 2, 3, 4]) ok(await call('DEL', i), `DEL ${i}`);
  assert.deepEqual(
    requests(second.log()).map((r) => `${r.command} ${r.containerId}`),
    ['ADD res-4', 'DEL res-1', 'DEL res-2', 'DEL res-3', 'DEL res-4'],
  );
  assert.deepEqual(await links(host), ['lo'], 'every veth is gone');
  assert.deepEqual(readdirSync(join(dataDir, 'tulle')).sort(), ['last_reserved_ip.0', 'lock']);
});

test('a caller in another network namespace is handed back: the shim does the work itself, in its own namespace', async (t) => {
  const agentHost = await freshNetns(t, 'agenthost');
  const otherHost = await freshNetns(t, 'otherhost');
  const pod = await freshNetns(t, 'pod');
  const { config } = setup(t);
  const server = await startCniServer(t, agentHost);
  const inv: CniInvocation = {
    command: 'ADD',
    containerId: 'elsewhere',
    ifName: 'eth0',
    netns: `/run/netns/${pod}`,
    config,
    hostNetns: otherHost,
    plugin: SHIM,
    env: { TULLE_CNI_SOCKET: server.socket },
  };
  ok(await cniInvoke(inv), 'ADD from another namespace');
  const veth = hostVethName('elsewhere', 'eth0');
  assert.ok((await links(otherHost)).includes(veth), "the host end is in the caller's namespace");
  assert.deepEqual(await links(agentHost), ['lo'], "nothing in the agent's");
  const handedBack = server
    .log()
    .map((l) => JSON.parse(l))
    .filter((l) => l.msg === 'CNI request handed back to the plugin');
  assert.deepEqual(
    handedBack.map((l) => [l.reason, l.containerId]),
    [['netns', 'elsewhere']],
  );
  ok(await cniInvoke({ ...inv, command: 'DEL' }), 'DEL');
});

test('a config larger than the socket takes goes to the Node plugin; so does every call when TULLE_CNI_SOCKET is ""', async (t) => {
  const host = await freshNetns(t, 'host');
  const { config } = setup(t);
  const server = await startCniServer(t, host);
  // 1.5 MiB of JSON whitespace: a valid config, over the server's 1 MiB.
  const big = JSON.stringify(config).replace('{', `{${' '.repeat(1536 * 1024)}`);
  const out = await cniInvoke({ command: 'STATUS', config: big, hostNetns: host, plugin: SHIM, env: { TULLE_CNI_SOCKET: server.socket } });
  assert.deepEqual([out.exitCode, out.stdout], [0, '']);
  const off = await cniInvoke({
    command: 'STATUS',
    config: { ...config, subnetFile: '/nonexistent/subnet.env' },
    hostNetns: host,
    plugin: SHIM,
    env: { TULLE_CNI_SOCKET: '' },
  });
  assert.equal(off.error?.code, 50, off.stdout);
  assert.deepEqual(requests(server.log()), [], 'neither reached the server');
});

test('a server that takes the request and closes without answering: ADD answers 11 (try again), DEL falls back and succeeds', async (t) => {
  const host = await freshNetns(t, 'host');
  const { dir, config } = setup(t);
  const socket = join(dir, 'mute.sock');
  const mute = createServer((c) => {
    c.once('data', () => c.destroy());
  });
  await new Promise<void>((r) => mute.listen(socket, r));
  t.after(() => mute.close());
  const pod = await freshNetns(t, 'pod');
  const base = { containerId: 'mute-1', ifName: 'eth0', netns: `/run/netns/${pod}`, config, hostNetns: host, plugin: SHIM, env: { TULLE_CNI_SOCKET: socket } };
  const add = await cniInvoke({ ...base, command: 'ADD' });
  assert.equal(add.exitCode, 1);
  assert.equal(add.error?.code, 11, add.stdout);
  assert.match(add.error.msg, /the agent's CNI socket closed before ADD was answered/);
  assert.deepEqual(await links(host), ['lo'], 'the shim itself made nothing');
  ok(await cniInvoke({ ...base, command: 'DEL' }), 'DEL through the fallback');
});

test('a server that takes the request and never answers: the shim gives up after TULLE_CNI_ANSWER_TIMEOUT, ADD with 11, DEL through the fallback', async (t) => {
  const host = await freshNetns(t, 'host');
  const { dir, config } = setup(t);
  const socket = join(dir, 'hung.sock');
  const held: Array<{ destroy(): void }> = [];
  const hung = createServer((c) => void held.push(c));
  await new Promise<void>((r) => hung.listen(socket, r));
  t.after(() => {
    for (const c of held) c.destroy();
    hung.close();
  });
  const pod = await freshNetns(t, 'pod');
  const base = {
    containerId: 'hung-1',
    ifName: 'eth0',
    netns: `/run/netns/${pod}`,
    config,
    hostNetns: host,
    plugin: SHIM,
    env: { TULLE_CNI_SOCKET: socket, TULLE_CNI_ANSWER_TIMEOUT: '1' },
  };
  const add = await cniInvoke({ ...base, command: 'ADD' });
  assert.equal(add.error?.code, 11, add.stdout);
  assert.match(add.error.msg, /gave no answer in time/);
  ok(await cniInvoke({ ...base, command: 'DEL' }), 'DEL through the fallback');
});

test('a server answering garbage (wrong magic, a length over 16 MiB, a status it does not know): ADD answers a clear error, DEL falls back', async (t) => {
  const host = await freshNetns(t, 'host');
  const { dir, config } = setup(t);
  const pod = await freshNetns(t, 'pod');
  const answers: Array<[Buffer, number, RegExp]> = [
    [Buffer.from('HTTP/1.1 400 Bad Request\r\n\r\n'), 11, /closed before ADD was answered/],
    [Buffer.from([0x54, 0x43, 0x4e, 0x49, 1, 0, 0xff, 0xff, 0xff, 0xff]), 11, /closed before ADD was answered/],
    [Buffer.from([0x54, 0x43, 0x4e, 0x49, 1, 7, 0, 0, 0, 0]), 999, /answered with an unknown status/],
  ];
  for (const [i, [reply, code, msg]] of answers.entries()) {
    const socket = join(dir, `liar${i}.sock`);
    const liar = createServer((c) => {
      c.on('error', () => {}); // the shim hangs up on a liar
      c.once('data', () => c.end(reply));
    });
    await new Promise<void>((r) => liar.listen(socket, r));
    t.after(() => liar.close());
    const base = {
      containerId: `liar-${i}`,
      ifName: 'eth0',
      netns: `/run/netns/${pod}`,
      config,
      hostNetns: host,
      plugin: SHIM,
      env: { TULLE_CNI_SOCKET: socket },
    };
    const add = await cniInvoke({ ...base, command: 'ADD' });
    assert.equal(add.exitCode, 1);
    assert.equal(add.error?.code, code, add.stdout);
    assert.match(add.error.msg, msg);
    if (code === 11) ok(await cniInvoke({ ...base, command: 'DEL' }), `DEL ${i} through the fallback`);
  }
  assert.deepEqual(await links(host), ['lo'], 'nothing was made from a garbage answer');
});
