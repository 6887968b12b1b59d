// tulle-cni with "mode": "l2" (issue 13): the pod joins the L2 network's bridge with an address from the host's
// slice and the whole Network's prefix, no gateway and no route; the bridge is never changed; DEL undoes ADD.
// Called as a runtime calls the plugin, in a fresh host namespace; kernel state read back with `ip -j`/`bridge -j`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cniInvoke, type CniOutcome } from '../../src/cni/invoke.js';
import { hostVethName } from '../../src/cni/names.js';
import { resultViolations } from '../../src/cni/validate-result.js';
import { CNI_PATHS, SHIM, cniRoute, startCniServer, type CniPath, type CniRoute, ipamFiles } from '../helpers/cni-paths.js';
import { freshNetns, ip, ipJson, requireRoot, uniqueName } from '../helpers/netns.js';

requireRoot();

interface Host {
  ns: string;
  route: CniRoute;
  subnetFile: string;
  dataDir: string;
  bridge: string;
  config(extra?: Record<string, unknown>): Record<string, unknown>;
}

/** A host with the L2 agent's subnet.env (slice 10.33.0.16/28 of 10.33.0.0/24) and its bridge holding a foreign address. */
async function makeHost(t: Parameters<typeof freshNetns>[0], path: CniPath, env?: string): Promise<Host> {
  const ns = await freshNetns(t, 'host');
  const dir = mkdtempSync(join(tmpdir(), 'tulle-cni-l2-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const bridge = uniqueName('b').slice(0, 15);
  await ip(ns, 'link', 'add', bridge, 'address', '02:42:0a:21:00:01', 'type', 'bridge');
  await ip(ns, 'addr', 'add', '10.33.0.1/24', 'dev', bridge);
  await ip(ns, 'link', 'set', bridge, 'up');
  const subnetFile = join(dir, 'subnet.env');
  writeFileSync(
    subnetFile,
    env ?? `FLANNEL_NETWORK=10.33.0.0/24\nFLANNEL_SUBNET=10.33.0.17/28\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\nTULLE_L2_BRIDGE=${bridge}\n`,
  );
  const dataDir = join(dir, 'ipam');
  return {
    ns,
    bridge,
    route: await cniRoute(t, ns, path),
    subnetFile,
    dataDir,
    config: (extra = {}) => ({ cniVersion: '1.1.0', name: 'tulle', type: 'tulle', mode: 'l2', subnetFile, dataDir, ...extra }),
  };
}

function call(host: Host, command: 'ADD' | 'DEL', containerId: string, podNs: string, config: Record<string, unknown>): Promise<CniOutcome> {
  return cniInvoke({
    command,
    containerId,
    ifName: 'eth0',
    netns: `/run/netns/${podNs}`,
    config,
    hostNetns: host.ns,
    plugin: host.route.plugin,
    env: host.route.env,
  });
}

for (const path of CNI_PATHS) {
  test(`[${path}] l2 mode: the pod joins the network's bridge with the whole Network on-link and no route; the bridge is untouched; DEL undoes ADD`, async (t) => {
    const host = await makeHost(t, path);
    const pod = await freshNetns(t, 'pod');
    const bridgeAddrs = async () =>
      (await ipJson<Array<{ addr_info: Array<{ local: string; prefixlen: number }> }>>(host.ns, '-4', 'addr', 'show', 'dev', host.bridge))[0]!.addr_info.map(
        (a) => `${a.local}/${a.prefixlen}`,
      );
    const before = await bridgeAddrs();

    const out = await call(host, 'ADD', 'c1', pod, host.config());
    assert.equal(out.exitCode, 0, out.stdout + out.stderr);
    const result = out.result as { ips: Array<{ address: string; gateway?: string }>; routes?: unknown[]; interfaces: Array<{ name: string }> };
    assert.deepEqual(resultViolations(result, '1.1.0'), []);
    assert.equal(result.ips.length, 1);
    assert.match(result.ips[0]!.address, /^10\.33\.0\.(1[7-9]|2\d|30)\/24$/, "an address of the slice, with the Network's prefix");
    assert.equal(result.ips[0]!.gateway, undefined);
    assert.deepEqual(result.routes ?? [], []);

    const [eth0] = await ipJson<Array<{ addr_info: Array<{ local: string; prefixlen: number }> }>>(pod, '-4', 'addr', 'show', 'dev', 'eth0');
    assert.deepEqual(
      eth0!.addr_info.map((a) => `${a.local}/${a.prefixlen}`),
      [result.ips[0]!.address],
    );
    const routes = await ipJson<Array<{ dst: string; gateway?: string }>>(pod, 'route', 'show');
    assert.deepEqual(
      routes.map((r) => [r.dst, r.gateway]),
      [['10.33.0.0/24', undefined]],
      'only the on-link Network, no default route',
    );
    const veth = hostVethName('c1', 'eth0');
    const [port] = await ipJson<Array<{ master?: string }>>(host.ns, 'link', 'show', veth);
    assert.equal(port!.master, host.bridge);
    assert.deepEqual(await bridgeAddrs(), before, 'the bridge keeps its addresses');
    // The pod reaches what else is on the bridge (here the bridge's own foreign address).
    await ip(host.ns, 'neigh', 'flush', 'dev', host.bridge);
    assert.equal(await cniPing(pod, '10.33.0.1'), true);

    const del = await call(host, 'DEL', 'c1', pod, host.config());
    assert.equal(del.exitCode, 0, del.stdout + del.stderr);
    assert.equal((await ipJson<unknown[]>(host.ns, 'link', 'show', 'master', host.bridge)).length, 0, 'the veth is gone');
    assert.deepEqual(ipamFiles(host), [], 'the address is released');
    assert.deepEqual(await bridgeAddrs(), before);
    assert.equal((await call(host, 'DEL', 'c1', pod, host.config())).exitCode, 0, 'DEL again is fine');
  });
}

test('l2 mode, wrong setups: a clear error naming the field, nothing left behind', async (t) => {
  const [path] = CNI_PATHS;
  const host = await makeHost(t, path!);
  const pod = await freshNetns(t, 'pod');
  const linksBefore = (await ipJson<Array<{ ifname: string }>>(host.ns, 'link', 'show')).map((l) => l.ifname).sort();

  const missing = await call(host, 'ADD', 'c2', pod, host.config({ bridge: 'tlnonexistent' }));
  assert.equal(missing.exitCode, 1);
  assert.equal(missing.error?.code, 11);
  assert.match(missing.error?.msg ?? '', /bridge: tlnonexistent does not exist: is the tulle agent running/);

  const bridgeMode = await call(host, 'ADD', 'c3', pod, host.config({ mode: 'bridge' }));
  assert.equal(bridgeMode.error?.code, 7);
  assert.match(bridgeMode.error?.msg ?? '', /^mode: "bridge" does not fit .*describes an l2 network \(TULLE_L2_BRIDGE=/);

  const notL2 = await makeHost(t, path!, 'FLANNEL_NETWORK=10.33.0.0/24\nFLANNEL_SUBNET=10.33.0.17/28\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n');
  const noBridge = await call(notL2, 'ADD', 'c4', pod, notL2.config());
  assert.equal(noBridge.error?.code, 7);
  assert.match(noBridge.error?.msg ?? '', /^mode: "l2" needs the bridge/);

  const hostile = await makeHost(
    t,
    path!,
    `FLANNEL_NETWORK=10.33.0.0/24\nFLANNEL_SUBNET=10.33.0.17/28\nFLANNEL_MTU=1450\nTULLE_L2_BRIDGE=${'x'.repeat(300)}\n`,
  );
  const bad = await call(hostile, 'ADD', 'c5', pod, hostile.config());
  assert.notEqual(bad.exitCode, 0);
  assert.match(bad.error?.msg ?? '', /TULLE_L2_BRIDGE: "x{61}…" is 300 bytes long/);

  assert.deepEqual((await ipJson<Array<{ ifname: string }>>(host.ns, 'link', 'show')).map((l) => l.ifname).sort(), linksBefore, 'no veth left behind');
  assert.deepEqual(ipamFiles(host), []);
  assert.deepEqual(await ipJson<unknown[]>(pod, 'link', 'show', 'eth0').catch(() => []), []);
});

test('l2 Flood "none" through the agent\'s CNI server: ADD publishes the pod (undone when that fails), DEL withdraws it first (and keeps everything when that fails)', async (t) => {
  const ns = await freshNetns(t, 'host');
  const dir = mkdtempSync(join(tmpdir(), 'tulle-cni-l2none-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const bridge = uniqueName('b').slice(0, 15);
  await ip(ns, 'link', 'add', bridge, 'type', 'bridge');
  await ip(ns, 'link', 'set', bridge, 'up');
  const subnetFile = join(dir, 'subnet.env');
  writeFileSync(
    subnetFile,
    `FLANNEL_NETWORK=10.33.0.0/24\nFLANNEL_SUBNET=10.33.0.17/28\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\nTULLE_L2_BRIDGE=${bridge}\nTULLE_L2_FLOOD=none\n`,
  );
  // The hooks the agent would pass (its store side), recording each call to a file instead of writing a store.
  const hooksFile = join(dir, 'hooks.jsonl');
  const server = await startCniServer(t, ns, { hooksFile });
  const host: Host = {
    ns,
    bridge,
    route: { plugin: SHIM, env: { TULLE_CNI_SOCKET: server.socket } },
    subnetFile,
    dataDir: join(dir, 'ipam'),
    config: (extra = {}) => ({ cniVersion: '1.1.0', name: 'tulle', type: 'tulle', mode: 'l2', subnetFile, dataDir: join(dir, 'ipam'), ...extra }),
  };
  const calls = () =>
    existsSync(hooksFile)
      ? readFileSync(hooksFile, 'utf8')
          .trim()
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l) as Record<string, string>)
      : [];
  const ports = async () => (await ipJson<Array<{ ifname: string }>>(ns, 'link', 'show', 'master', bridge)).map((l) => l.ifname);
  const pod = await freshNetns(t, 'pod');

  const added = await call(host, 'ADD', 'n1', pod, host.config());
  assert.equal(added.exitCode, 0, added.stdout + added.stderr);
  const result = added.result as { ips: Array<{ address: string }>; interfaces: Array<{ name: string; mac: string; sandbox?: string }> };
  const mac = result.interfaces.find((i) => i.sandbox)!.mac;
  const [eth0] = await ipJson<Array<{ address: string }>>(pod, 'link', 'show', 'eth0');
  assert.equal(mac, eth0!.address, "the result names the pod's real MAC");
  const address = result.ips[0]!.address.split('/')[0]!;
  assert.deepEqual(calls(), [{ op: 'publish', ip: address, mac }]);

  // DEL while the store is away: a retryable error, and nothing removed (veth, address file), so the retry can work.
  writeFileSync(`${hooksFile}.fail`, 'withdraw');
  const failedDel = await call(host, 'DEL', 'n1', pod, host.config());
  assert.equal(failedDel.exitCode, 1);
  assert.equal(failedDel.error?.code, 11);
  assert.match(
    failedDel.error?.msg ?? '',
    new RegExp(`cannot withdraw the endpoint record of ${address.replace(/\./g, '\\.')}; nothing was removed, try DEL again: the store is away`),
  );
  assert.deepEqual(await ports(), [hostVethName('n1', 'eth0')]);
  assert.deepEqual(ipamFiles(host), [address]);
  // The retry, without prevResult: the address comes from the IPAM file, the MAC is not known.
  writeFileSync(`${hooksFile}.fail`, '');
  assert.equal((await call(host, 'DEL', 'n1', pod, host.config())).exitCode, 0);
  assert.deepEqual(calls().slice(1), [{ op: 'withdraw', ip: address }]);
  assert.deepEqual(await ports(), []);
  assert.deepEqual(ipamFiles(host), []);

  // ADD while the store is away: error 108 naming the address, the attachment undone, the address free again.
  writeFileSync(`${hooksFile}.fail`, 'publish');
  const failedAdd = await call(host, 'ADD', 'n2', pod, host.config());
  assert.equal(failedAdd.exitCode, 1);
  assert.equal(failedAdd.error?.code, 108);
  assert.match(
    failedAdd.error?.msg ?? '',
    /^cannot publish the endpoint record of 10\.33\.0\.\d+ \(Backend\.Flood "none" needs it to reach the pod\), so the attachment was undone: the store is away/,
  );
  assert.deepEqual(await ports(), []);
  assert.deepEqual(ipamFiles(host), []);
  assert.deepEqual(await ipJson<unknown[]>(pod, 'link', 'show', 'eth0').catch(() => []), [], 'no interface left in the pod');

  // DEL with prevResult withdraws exactly that pod (IP and MAC).
  writeFileSync(`${hooksFile}.fail`, '');
  const again = await call(host, 'ADD', 'n3', pod, host.config());
  assert.equal(again.exitCode, 0, again.stdout);
  const prev = again.result as typeof result;
  const n3 = { ip: prev.ips[0]!.address.split('/')[0]!, mac: prev.interfaces.find((i) => i.sandbox)!.mac };
  assert.equal((await call(host, 'DEL', 'n3', pod, host.config({ prevResult: prev }))).exitCode, 0);
  assert.deepEqual(calls().slice(-2), [
    { op: 'publish', ...n3 },
    { op: 'withdraw', ...n3 },
  ]);

  // A prevResult that says nothing usable about the pod: the address comes from the IPAM files instead.
  const n4 = await call(host, 'ADD', 'n4', pod, host.config());
  assert.equal(n4.exitCode, 0, n4.stdout);
  const n4ip = (n4.result as typeof result).ips[0]!.address.split('/')[0]!;
  const odd = await call(
    host,
    'DEL',
    'n4',
    pod,
    host.config({ prevResult: { cniVersion: '1.1.0', interfaces: [{ name: 'other0', sandbox: '/x' }], ips: [] } }),
  );
  assert.equal(odd.exitCode, 0, odd.stdout);
  assert.deepEqual(calls().at(-1), { op: 'withdraw', ip: n4ip });
  assert.deepEqual(ipamFiles(host), []);
});

async function cniPing(ns: string, address: string): Promise<boolean> {
  const { run } = await import('../../src/base/exec.js');
  return (await run(['ip', 'netns', 'exec', ns, 'ping', '-c1', '-W2', address], { allowFailure: true })).status === 0;
}
