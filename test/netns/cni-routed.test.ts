// tulle-cni in routed mode (Calico's attachment, seed 004): the pod has <ip>/32, "169.254.1.1 dev eth0 scope link"
// and "default via 169.254.1.1"; the host end has proxy_arp=1, proxy_delay=0, forwarding=1 and the host route
// "<ip>/32 dev <veth>". The host namespace has an underlay address (192.0.2.11/24 on eth0) like a real node.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../../src/base/exec.js';
import { cniInvoke, type CniInvocation, type CniOutcome } from '../../src/cni/invoke.js';
import { hostVethName } from '../../src/cni/names.js';
import { resultViolations } from '../../src/cni/validate-result.js';
import { freshNetns, ip, ipJson, requireRoot, underlay } from '../helpers/netns.js';
import { CNI_PATHS, cniRoute, type CniPath, type CniRoute, ipamFiles } from '../helpers/cni-paths.js';

requireRoot();

interface Host {
  ns: string;
  route: CniRoute;
  dataDir: string;
  config(extra?: Record<string, unknown>): Record<string, unknown>;
}

async function makeHost(t: Parameters<typeof freshNetns>[0], path: CniPath): Promise<Host> {
  const ns = await freshNetns(t, 'host');
  // The node's own underlay interface: one end of a veth pair (the other end stays in the namespace, up).
  await underlay(ns, 'eth0', '192.0.2.11/24');
  const dir = mkdtempSync(join(tmpdir(), 'tulle-cni-routed-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const subnetFile = join(dir, 'subnet.env');
  writeFileSync(subnetFile, 'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.2.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n');
  const dataDir = join(dir, 'ipam');
  return {
    ns,
    route: await cniRoute(t, ns, path),
    dataDir,
    config: (extra = {}) => ({ cniVersion: '1.1.0', name: 'tulle', type: 'tulle', mode: 'routed', subnetFile, dataDir, ...extra }),
  };
}

function call(
  host: Host,
  command: CniInvocation['command'],
  containerId: string,
  pod: string | undefined,
  config: Record<string, unknown>,
): Promise<CniOutcome> {
  return cniInvoke({
    command,
    containerId,
    ifName: 'eth0',
    netns: pod === undefined ? undefined : `/run/netns/${pod}`,
    config,
    hostNetns: host.ns,
    plugin: host.route.plugin,
    env: host.route.env,
  });
}

const sysctl = async (ns: string, key: string) => (await run(['ip', 'netns', 'exec', ns, 'sysctl', '-n', key])).stdout.trim();
const ping = async (ns: string, address: string) =>
  (await run(['ip', 'netns', 'exec', ns, 'ping', '-c', '1', '-W', '2', address], { allowFailure: true })).status === 0;

for (const path of CNI_PATHS) {
  test(`[${path}] routed mode: kernel state of seed 004 on both sides, valid results, pods reach each other and the node`, async (t) => {
    const host = await makeHost(t, path);
    const [p1, p2] = await Promise.all([freshNetns(t, 'pod1'), freshNetns(t, 'pod2')]);
    const results: Array<Record<string, any>> = [];
    for (const [i, [pod, v]] of (
      [
        [p1, '1.0.0'],
        [p2, '0.4.0'],
      ] as const
    ).entries()) {
      const out = await call(host, 'ADD', `routed-${i}`, pod, host.config({ cniVersion: v }));
      assert.equal(out.exitCode, 0, out.stdout + out.stderr);
      assert.deepEqual(resultViolations(out.result, v), [], JSON.stringify(out.result));
      results.push(out.result!);
    }
    const addrs = results.map((r) => r.ips[0].address.split('/')[0] as string);
    for (const [i, pod] of [p1, p2].entries()) {
      const r = results[i]!;
      const veth = hostVethName(`routed-${i}`, 'eth0');
      assert.match(r.ips[0].address, /^10\.244\.2\.\d+\/32$/);
      assert.deepEqual(r.routes, [{ dst: '0.0.0.0/0', gw: '169.254.1.1' }]);
      assert.deepEqual(
        r.interfaces.map((x: any) => x.name),
        [veth, 'eth0'],
      );

      // Pod: <ip>/32 on eth0, the two routes of seed 004, and 169.254.1.1 resolved to the host end's MAC.
      const [eth0] = await ipJson(pod, 'addr', 'show', 'dev', 'eth0');
      assert.deepEqual(
        eth0.addr_info.filter((a: any) => a.family === 'inet').map((a: any) => `${a.local}/${a.prefixlen}`),
        [r.ips[0].address],
      );
      assert.equal(eth0.mtu, 1450);
      const routes = await ipJson(pod, 'route', 'show');
      assert.ok(
        routes.some((x: any) => x.dst === 'default' && x.gateway === '169.254.1.1' && x.dev === 'eth0'),
        JSON.stringify(routes),
      );
      assert.ok(
        routes.some((x: any) => x.dst === '169.254.1.1' && x.scope === 'link' && x.dev === 'eth0'),
        JSON.stringify(routes),
      );
      const neigh = await ipJson(pod, 'neigh', 'show', 'dev', 'eth0');
      assert.ok(
        neigh.some((n: any) => n.dst === '169.254.1.1' && n.lladdr === r.interfaces[0].mac),
        JSON.stringify(neigh),
      );

      // Host: the veth is up with proxy ARP, no proxy delay, forwarding, and the /32 route; no bridge.
      const [hostEnd] = await ipJson(host.ns, 'link', 'show', 'dev', veth);
      assert.ok(hostEnd.flags.includes('UP'));
      assert.equal(hostEnd.master, undefined);
      assert.equal(await sysctl(host.ns, `net.ipv4.conf.${veth}.proxy_arp`), '1');
      assert.equal(await sysctl(host.ns, `net.ipv4.neigh.${veth}.proxy_delay`), '0');
      assert.equal(await sysctl(host.ns, `net.ipv4.conf.${veth}.forwarding`), '1');
      const hostRoutes = await ipJson(host.ns, 'route', 'show', 'dev', veth);
      assert.deepEqual(
        hostRoutes.map((x: any) => [x.dst, x.scope]),
        [[addrs[i], 'link']],
      );
    }
    assert.equal(
      (await ipJson(host.ns, 'link', 'show')).some((l: any) => l.ifname === 'cni0'),
      false,
    );

    assert.ok(await ping(p1, addrs[1]!), 'pod 1 -> pod 2 through the host');
    assert.ok(await ping(p2, addrs[0]!), 'pod 2 -> pod 1');
    assert.ok(await ping(p1, '192.0.2.11'), 'pod -> node address');
    for (const a of addrs) assert.ok(await ping(host.ns, a), `node -> ${a}`);

    for (const [i, pod] of [p1, p2].entries()) {
      const out = await call(host, 'DEL', `routed-${i}`, pod, host.config({ prevResult: results[i] }));
      assert.equal(out.exitCode, 0, out.stdout);
    }
    const left = await ipJson(host.ns, 'route', 'show');
    assert.deepEqual(
      left.map((x: any) => x.dst),
      ['192.0.2.0/24'],
      'no /32 host route left',
    );
    assert.deepEqual((await ipJson(host.ns, 'link', 'show')).map((l: any) => l.ifname).sort(), ['eth0', 'eth0p', 'lo']);
    assert.deepEqual(ipamFiles(host), []);
  });

  test(`[${path}] routed mode: the host end answers ARP for 169.254.1.1 by proxy ARP (Calico's way) once the node has a default route`, async (t) => {
    const host = await makeHost(t, path);
    const [p1, p2] = await Promise.all([freshNetns(t, 'pod1'), freshNetns(t, 'pod2')]);
    const r1 = (await call(host, 'ADD', 'arp-1', p1, host.config())).result as any;
    const r2 = (await call(host, 'ADD', 'arp-2', p2, host.config())).result as any;
    // Proxy ARP answers for an address the node routes out of another interface: a default route makes 169.254.1.1 such.
    await ip(host.ns, 'route', 'add', 'default', 'via', '192.0.2.1', 'dev', 'eth0', 'onlink');
    await ip(p1, 'neigh', 'del', '169.254.1.1', 'dev', 'eth0');
    assert.ok(await ping(p1, r2.ips[0].address.split('/')[0]), 'pod 1 -> pod 2 with the gateway learnt by ARP');
    const neigh = await ipJson(p1, 'neigh', 'show', 'dev', 'eth0');
    const learnt = neigh.find((n: any) => n.dst === '169.254.1.1');
    assert.ok(learnt, JSON.stringify(neigh));
    assert.equal(learnt.lladdr, r1.interfaces[0].mac, 'the host end of pod 1 answered');
    assert.ok(!learnt.state.includes('PERMANENT'), 'learnt, not the static entry');
  });

  test(`[${path}] routed mode: CHECK fails with the reasons once the host route, then the pod's gateway route, are gone`, async (t) => {
    const host = await makeHost(t, path);
    const pod = await freshNetns(t, 'pod');
    const result = (await call(host, 'ADD', 'routed-check', pod, host.config())).result as any;
    const withPrev = host.config({ prevResult: result });
    assert.equal((await call(host, 'CHECK', 'routed-check', pod, withPrev)).exitCode, 0);
    const veth = hostVethName('routed-check', 'eth0');
    const address = result.ips[0].address;
    await ip(host.ns, 'route', 'del', address, 'dev', veth);
    const bad = await call(host, 'CHECK', 'routed-check', pod, withPrev);
    assert.equal(bad.error?.code, 104);
    assert.equal(bad.error?.msg, `CHECK routed-check eth0: host route ${address} dev ${veth} is missing`);
    await ip(pod, 'route', 'del', '169.254.1.1', 'dev', 'eth0');
    const worse = await call(host, 'CHECK', 'routed-check', pod, withPrev);
    assert.equal(
      worse.error?.msg,
      `CHECK routed-check eth0: route 169.254.1.1 dev eth0 scope link is missing in the container; host route ${address} dev ${veth} is missing`,
    );
  });
}
