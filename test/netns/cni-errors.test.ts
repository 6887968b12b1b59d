// A failed ADD answers with the right CNI error code and leaves nothing behind: no veth in the host, no interface
// in the pod, no address file. Every case runs the real plugin in a fresh host namespace against a fresh pod.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../../src/base/exec.js';
import { cniInvoke, type CniOutcome } from '../../src/cni/invoke.js';
import { hostVethName } from '../../src/cni/names.js';
import { freshNetns, ip, ipJson, requireRoot } from '../helpers/netns.js';

import { CNI_PATHS, cniRoute, type CniPath, type CniRoute, ipamFiles } from '../helpers/cni-paths.js';

requireRoot();

interface Host {
  ns: string;
  route: CniRoute;
  dir: string;
  subnetFile: string;
  dataDir: string;
  config(extra?: Record<string, unknown>): Record<string, unknown>;
}

async function makeHost(t: Parameters<typeof freshNetns>[0], path: CniPath, subnet: string, mode = 'bridge'): Promise<Host> {
  const ns = await freshNetns(t, 'host');
  const dir = mkdtempSync(join(tmpdir(), 'tulle-cni-errors-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const subnetFile = join(dir, 'subnet.env');
  writeFileSync(subnetFile, `FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=${subnet}\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n`);
  const dataDir = join(dir, 'ipam');
  return {
    ns,
    route: await cniRoute(t, ns, path),
    dir,
    subnetFile,
    dataDir,
    config: (extra = {}) => ({ cniVersion: '1.1.0', name: 'tulle', type: 'tulle', mode, subnetFile, dataDir, ...extra }),
  };
}

const add = (host: Host, containerId: string, pod: string, config = host.config()): Promise<CniOutcome> =>
  cniInvoke({
    command: 'ADD',
    containerId,
    ifName: 'eth0',
    netns: `/run/netns/${pod}`,
    config,
    hostNetns: host.ns,
    plugin: host.route.plugin,
    env: host.route.env,
  });

const linkNames = async (ns: string) => (await ipJson<Array<{ ifname: string }>>(ns, 'link', 'show')).map((l) => l.ifname).sort();

function assertError(out: CniOutcome, code: number, msg: RegExp): void {
  assert.equal(out.exitCode, 1, out.stdout + out.stderr);
  assert.equal(out.error?.code, code, out.stdout);
  assert.match(out.error.msg, msg);
  assert.doesNotMatch(out.stdout + out.stderr, /\n\s+at /, 'no stack trace');
}

for (const path of CNI_PATHS) {
  test(`[${path}] exhausted subnet: error 100 naming the range; the pod that did not fit leaves nothing behind`, async (t) => {
    // 10.244.9.8/29: .9 is the gateway, .10-.14 are the five pod addresses.
    const host = await makeHost(t, path, '10.244.9.9/29');
    const pods = await Promise.all([0, 1, 2, 3, 4, 5].map((i) => freshNetns(t, `p${i}`)));
    for (let i = 0; i < 5; i++) assert.equal((await add(host, `full-${i}`, pods[i]!)).exitCode, 0);
    assert.equal(ipamFiles(host).length, 5);
    const before = await linkNames(host.ns);

    const out = await add(host, 'full-5', pods[5]!);
    assertError(out, 100, /^no free address in 10\.244\.9\.8\/29 \(10\.244\.9\.9-10\.244\.9\.14 without the gateway 10\.244\.9\.9\): all are in use$/);
    assert.deepEqual(await linkNames(host.ns), before, 'no new host link');
    assert.ok(!before.includes(hostVethName('full-5', 'eth0')));
    assert.deepEqual(await linkNames(pods[5]!), ['lo'], 'nothing in the pod');
    assert.equal(ipamFiles(host).length, 5);
  });

  test(`[${path}] CNI_IFNAME already in the pod: error 101, no veth, no address kept`, async (t) => {
    const host = await makeHost(t, path, '10.244.1.1/24');
    const pod = await freshNetns(t, 'pod');
    await ip(pod, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'other');
    const out = await add(host, 'dup-if', pod);
    assertError(out, 101, /^CNI_IFNAME: eth0 already exists in \/run\/netns\/t-.*-pod/);
    assert.deepEqual(await linkNames(pod), ['eth0', 'lo', 'other'], 'the pod is as it was');
    assert.ok(!(await linkNames(host.ns)).includes(hostVethName('dup-if', 'eth0')));
    assert.deepEqual(ipamFiles(host), []);
  });

  test(`[${path}] subnet.env missing (the agent is not up): error 11 and not even the bridge is made`, async (t) => {
    const host = await makeHost(t, path, '10.244.1.1/24');
    const pod = await freshNetns(t, 'pod');
    rmSync(host.subnetFile);
    assertError(await add(host, 'early', pod), 11, /does not exist: is the tulle agent running on this host\?$/);
    assert.deepEqual(await linkNames(host.ns), ['lo']);
    assert.deepEqual(await linkNames(pod), ['lo']);
    assert.deepEqual(ipamFiles(host), []);
  });

  test(`[${path}] ADD twice for one attachment: error 102, the first one keeps working`, async (t) => {
    const host = await makeHost(t, path, '10.244.1.1/24');
    const pod = await freshNetns(t, 'pod');
    const first = await add(host, 'twice', pod);
    assert.equal(first.exitCode, 0, first.stdout);
    const address = (first.result as any).ips[0].address.split('/')[0];
    assertError(await add(host, 'twice', pod), 102, /^twice eth0 already holds 10\.244\.1\.\d+ in 10\.244\.1\.0\/24 \(ADD again without DEL\)$/);
    assert.deepEqual(ipamFiles(host), [address]);
    assert.equal((await run(['ip', 'netns', 'exec', host.ns, 'ping', '-c1', '-W2', address], { allowFailure: true })).status, 0);
  });

  test(`[${path}] a bridge name taken by another kind of device: error 103 naming it, nothing left`, async (t) => {
    const host = await makeHost(t, path, '10.244.1.1/24');
    const pod = await freshNetns(t, 'pod');
    await ip(host.ns, 'link', 'add', 'cni0', 'type', 'veth', 'peer', 'name', 'cni0p');
    assertError(await add(host, 'conflict', pod), 103, /^bridge: cni0 exists but is a veth device \(choose another "bridge" name\)$/);
    assert.deepEqual(await linkNames(host.ns), ['cni0', 'cni0p', 'lo']);
    assert.deepEqual(ipamFiles(host), []);
  });

  test(`[${path}] the host got a new subnet: cni0 moves to it when no pod is attached; with pods it is error 103 saying why; a foreign address is never touched`, async (t) => {
    const host = await makeHost(t, path, '10.244.1.1/24');
    const [a, b] = await Promise.all([freshNetns(t, 'poda'), freshNetns(t, 'podb')]);
    assert.equal((await add(host, 'old-pod', a)).exitCode, 0);
    // The agent restarted after --cleanup and leased 10.244.7.0/24.
    writeFileSync(host.subnetFile, 'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.7.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n');
    assertError(
      await add(host, 'new-pod', b),
      103,
      /^bridge: cni0 still has 10\.244\.1\.1\/24 of this host's previous subnet, and 1 pod \(veth[0-9a-f]+\) still uses it; the host's subnet is now 10\.244\.7\.1\/24: remove or restart those pods/,
    );
    const cni0 = async () =>
      (await ipJson<Array<{ addr_info: Array<{ family: string; local: string; prefixlen: number }> }>>(host.ns, 'addr', 'show', 'dev', 'cni0'))[0]!.addr_info
        .filter((x) => x.family === 'inet')
        .map((x) => `${x.local}/${x.prefixlen}`);
    assert.deepEqual(await cni0(), ['10.244.1.1/24'], 'untouched while a pod uses it');
    assert.equal(
      (
        await cniInvoke({
          command: 'DEL',
          containerId: 'old-pod',
          ifName: 'eth0',
          netns: `/run/netns/${a}`,
          config: host.config(),
          hostNetns: host.ns,
          plugin: host.route.plugin,
          env: host.route.env,
        })
      ).exitCode,
      0,
    );
    const moved = await add(host, 'new-pod', b);
    assert.equal(moved.exitCode, 0, moved.stdout + moved.stderr);
    assert.deepEqual(await cni0(), ['10.244.7.1/24']);
    // The plugin says so on its stderr; through the agent the line goes to the agent's log instead.
    if (path === 'fallback') assert.match(moved.stderr, /moved cni0 from 10\.244\.1\.1\/24 to 10\.244\.7\.1\/24/);

    // A bridge of that name holding an address outside the cluster network is someone else's: never changed.
    const other = await makeHost(t, path, '10.244.1.1/24');
    const c = await freshNetns(t, 'podc');
    await ip(other.ns, 'link', 'add', 'cni0', 'type', 'bridge');
    await ip(other.ns, 'addr', 'add', '172.17.0.1/16', 'dev', 'cni0');
    assertError(
      await add(other, 'foreign', c),
      103,
      /^bridge: cni0 has 172\.17\.0\.1\/16, outside the cluster network 10\.244\.0\.0\/16: it is not tulle's bridge/,
    );
    assert.deepEqual(ipamFiles(other), []);
  });

  test(`[${path}] a kernel failure after the veth pair exists (gateway on the broadcast address): error 110 naming the command, the pair and the address are undone`, async (t) => {
    // A subnet.env whose gateway is the subnet's broadcast address: the pod's route via it is refused by the kernel
    // only after the veth pair, the bridge port and the pod address are in place.
    const host = await makeHost(t, path, '10.244.1.255/24');
    const pod = await freshNetns(t, 'pod');
    const out = await add(host, 'late-fail', pod);
    assertError(
      out,
      110,
      /^route replace 10\.244\.0\.0\/16 via 10\.244\.1\.255 dev eth0 proto boot: EINVAL \(Invalid argument\): Nexthop has invalid gateway$/,
    );
    assert.deepEqual(await linkNames(host.ns), ['cni0', 'lo'], 'the veth is gone; the shared bridge stays');
    assert.deepEqual(await linkNames(pod), ['lo'], 'the pod end went with it');
    assert.deepEqual(ipamFiles(host), [], 'the address was released');
  });

  test(`[${path}] DEL of an attachment that never existed, with a namespace that is gone, succeeds and changes nothing`, async (t) => {
    const host = await makeHost(t, path, '10.244.1.1/24');
    const out = await cniInvoke({
      command: 'DEL',
      containerId: 'never',
      ifName: 'eth0',
      netns: '/run/netns/tulle-gone-long-ago',
      config: host.config(),
      hostNetns: host.ns,
      plugin: host.route.plugin,
      env: host.route.env,
    });
    assert.equal(out.exitCode, 0, out.stdout);
    assert.deepEqual(await linkNames(host.ns), ['lo']);
  });
}
