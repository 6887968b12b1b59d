// tulle-cni in bridge mode (flannel's cni0, seeds 000 and 003), called exactly as a runtime calls it: the plugin
// process runs inside a fresh "host" namespace (ip netns exec), CNI_NETNS is a fresh pod namespace, the config
// points at a subnet.env and an IPAM directory the test wrote. Kernel state is read back with `ip -j`/`bridge -j`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../../src/base/exec.js';
import { cniInvoke, type CniInvocation, type CniOutcome } from '../../src/cni/invoke.js';
import { hostVethName } from '../../src/cni/names.js';
import { resultViolations } from '../../src/cni/validate-result.js';
import { CNI_PATHS, cniRoute, type CniPath, type CniRoute, ipamFiles } from '../helpers/cni-paths.js';
import { bridgeJson, freshNetns, ip, ipJson, requireRoot } from '../helpers/netns.js';

requireRoot();

interface Host {
  ns: string;
  route: CniRoute;
  subnetFile: string;
  dataDir: string;
  config(extra?: Record<string, unknown>): Record<string, unknown>;
}

/** A host namespace plus the agent's subnet.env (10.244.1.0/24 of 10.244.0.0/16, MTU 1450) and an IPAM dir. */
async function makeHost(t: Parameters<typeof freshNetns>[0], path: CniPath, subnet = '10.244.1.1/24'): Promise<Host> {
  const ns = await freshNetns(t, 'host');
  const dir = mkdtempSync(join(tmpdir(), 'tulle-cni-bridge-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const subnetFile = join(dir, 'subnet.env');
  writeFileSync(subnetFile, `FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=${subnet}\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n`);
  const dataDir = join(dir, 'ipam');
  return {
    ns,
    route: await cniRoute(t, ns, path),
    subnetFile,
    dataDir,
    config: (extra = {}) => ({ cniVersion: '1.1.0', name: 'tulle', type: 'tulle', mode: 'bridge', subnetFile, dataDir, ...extra }),
  };
}

function call(
  host: Host,
  command: CniInvocation['command'],
  containerId: string,
  podNs: string | undefined,
  config: Record<string, unknown>,
  ifName = 'eth0',
): Promise<CniOutcome> {
  return cniInvoke({
    command,
    containerId,
    ifName,
    netns: podNs === undefined ? undefined : `/run/netns/${podNs}`,
    config,
    hostNetns: host.ns,
    plugin: host.route.plugin,
    env: host.route.env,
  });
}

async function addOk(host: Host, containerId: string, podNs: string, config: Record<string, unknown>): Promise<Record<string, any>> {
  const out = await call(host, 'ADD', containerId, podNs, config);
  assert.equal(out.exitCode, 0, `ADD ${containerId}: ${out.stdout}${out.stderr}`);
  return out.result!;
}

async function ping(fromNs: string, address: string): Promise<boolean> {
  const r = await run(['ip', 'netns', 'exec', fromNs, 'ping', '-c', '1', '-W', '2', address], { allowFailure: true });
  return r.status === 0;
}

const linkNames = async (ns: string) => (await ipJson<Array<{ ifname: string }>>(ns, 'link', 'show')).map((l) => l.ifname).sort();

for (const path of CNI_PATHS) {
  test(`[${path}] bridge mode: pods get cni0, a veth, an address and the cluster route; results in each version pass the spec; pods reach each other and the host`, async (t) => {
    const host = await makeHost(t, path);
    const versions = ['0.4.0', '1.0.0', '1.1.0'] as const;
    const pods = await Promise.all(versions.map((_, i) => freshNetns(t, `pod${i}`)));
    const results: Array<Record<string, any>> = [];
    for (const [i, v] of versions.entries()) results.push(await addOk(host, `bridge-pod-${i}`, pods[i]!, host.config({ cniVersion: v })));

    const addresses = results.map((r) => r.ips[0].address as string);
    assert.equal(new Set(addresses).size, 3, `distinct addresses: ${addresses.join(', ')}`);
    for (const [i, v] of versions.entries()) {
      const r = results[i]!;
      assert.deepEqual(resultViolations(r, v), [], `result ${i} (${v}): ${JSON.stringify(r)}`);
      assert.match(r.ips[0].address, /^10\.244\.1\.\d+\/24$/);
      assert.equal(r.ips[0].gateway, '10.244.1.1');
      assert.deepEqual(
        r.interfaces.map((x: any) => x.name),
        ['cni0', hostVethName(`bridge-pod-${i}`, 'eth0'), 'eth0'],
      );
      assert.equal(r.interfaces[2].sandbox, `/run/netns/${pods[i]}`);
      assert.deepEqual(r.routes, [{ dst: '10.244.0.0/16', gw: '10.244.1.1' }]);
    }

    // Host side, as in seed 000: cni0 is a bridge with 10.244.1.1/24 and MTU 1450, each veth is its port.
    const [cni0] = await ipJson(host.ns, 'addr', 'show', 'dev', 'cni0');
    assert.equal(cni0.linkinfo.info_kind, 'bridge');
    assert.equal(cni0.mtu, 1450);
    assert.ok(cni0.flags.includes('UP'));
    assert.deepEqual(
      cni0.addr_info.filter((a: any) => a.family === 'inet').map((a: any) => `${a.local}/${a.prefixlen}`),
      ['10.244.1.1/24'],
    );
    assert.equal(cni0.address, results[2]!.interfaces[0].mac, 'the result names the bridge MAC');
    assert.equal((await run(['ip', 'netns', 'exec', host.ns, 'sysctl', '-n', 'net.ipv4.ip_forward'])).stdout.trim(), '1');
    for (const [i, r] of results.entries()) {
      const [veth] = await ipJson(host.ns, 'link', 'show', 'dev', hostVethName(`bridge-pod-${i}`, 'eth0'));
      assert.equal(veth.linkinfo.info_kind, 'veth');
      assert.equal(veth.master, 'cni0');
      assert.equal(veth.mtu, 1450);
      assert.equal(veth.address, r.interfaces[1].mac);
      // Pod side: eth0 with its address, the MAC the result names, and the route to the cluster network.
      const [eth0] = await ipJson(pods[i]!, 'addr', 'show', 'dev', 'eth0');
      assert.equal(eth0.mtu, 1450);
      assert.equal(eth0.address, r.interfaces[2].mac);
      assert.deepEqual(
        eth0.addr_info.filter((a: any) => a.family === 'inet').map((a: any) => `${a.local}/${a.prefixlen}`),
        [r.ips[0].address],
      );
      const routes = await ipJson(pods[i]!, 'route', 'show');
      assert.ok(
        routes.some((x: any) => x.dst === '10.244.0.0/16' && x.gateway === '10.244.1.1' && x.dev === 'eth0'),
        JSON.stringify(routes),
      );
      assert.ok(!routes.some((x: any) => x.dst === 'default'), 'no default route unless isDefaultGateway');
    }
    // host-local's format: one file per address holding "<containerID>\r\n<ifname>".
    assert.deepEqual(ipamFiles(host), addresses.map((a) => a.split('/')[0]!).sort());
    assert.equal(readFileSync(join(host.dataDir, 'tulle', addresses[1]!.split('/')[0]!), 'utf8'), 'bridge-pod-1\r\neth0');

    const ips = addresses.map((a) => a.split('/')[0]!);
    assert.ok(await ping(pods[0]!, ips[1]!), 'pod 0 -> pod 1');
    assert.ok(await ping(pods[2]!, ips[0]!), 'pod 2 -> pod 0');
    assert.ok(await ping(pods[1]!, '10.244.1.1'), 'pod 1 -> gateway (the host)');
    for (const a of ips) assert.ok(await ping(host.ns, a), `host -> ${a}`);

    // DEL (with the ADD result as prevResult, as libcni does) takes the veth and the address; a second DEL is fine.
    for (const [i, v] of versions.entries()) {
      const out = await call(host, 'DEL', `bridge-pod-${i}`, pods[i], host.config({ cniVersion: v, prevResult: results[i] }));
      assert.equal(out.exitCode, 0, out.stdout);
      assert.equal(out.stdout, '', 'DEL prints nothing');
      const again = await call(host, 'DEL', `bridge-pod-${i}`, pods[i], host.config({ cniVersion: v }));
      assert.equal(again.exitCode, 0, `second DEL: ${again.stdout}`);
    }
    assert.deepEqual(await linkNames(host.ns), ['cni0', 'lo'], 'only the shared bridge stays');
    assert.deepEqual(ipamFiles(host), []);
    for (const p of pods) assert.deepEqual(await linkNames(p), ['lo']);
  });

  test(`[${path}] bridge mode options: isDefaultGateway adds a default route via the gateway, hairpinMode sets the port flag, mtu overrides subnet.env`, async (t) => {
    const host = await makeHost(t, path);
    const pod = await freshNetns(t, 'pod');
    const r = await addOk(host, 'opts-pod', pod, host.config({ isDefaultGateway: true, hairpinMode: true, mtu: 1400 }));
    assert.deepEqual(r.routes, [
      { dst: '10.244.0.0/16', gw: '10.244.1.1' },
      { dst: '0.0.0.0/0', gw: '10.244.1.1' },
    ]);
    const routes = await ipJson(pod, 'route', 'show');
    assert.ok(
      routes.some((x: any) => x.dst === 'default' && x.gateway === '10.244.1.1' && x.dev === 'eth0'),
      JSON.stringify(routes),
    );
    const veth = hostVethName('opts-pod', 'eth0');
    const [port] = await bridgeJson(host.ns, '-d', 'link', 'show', 'dev', veth);
    assert.equal(port.hairpin, true);
    assert.equal((await ipJson(pod, 'link', 'show', 'dev', 'eth0'))[0].mtu, 1400);
    assert.equal((await ipJson(host.ns, 'link', 'show', 'dev', veth))[0].mtu, 1400);
  });

  test(`[${path}] CHECK passes on a good pod, fails with the reason once its route is deleted; DEL releases the address after the pod namespace is gone`, async (t) => {
    const host = await makeHost(t, path);
    const pod = await freshNetns(t, 'pod');
    const result = await addOk(host, 'check-pod', pod, host.config());
    const withPrev = host.config({ prevResult: result });

    const good = await call(host, 'CHECK', 'check-pod', pod, withPrev);
    assert.equal(good.exitCode, 0, good.stdout);
    assert.equal(good.stdout, '');

    const missingPrev = await call(host, 'CHECK', 'check-pod', pod, host.config());
    assert.equal(missingPrev.error?.code, 7);
    assert.match(missingPrev.error.msg, /^prevResult: \(missing\) is required for CHECK/);

    await ip(pod, 'route', 'del', '10.244.0.0/16', 'dev', 'eth0');
    const bad = await call(host, 'CHECK', 'check-pod', pod, withPrev);
    assert.equal(bad.exitCode, 1);
    assert.equal(bad.error?.code, 104);
    assert.equal(bad.error?.msg, 'CHECK check-pod eth0: route 10.244.0.0/16 via 10.244.1.1 is missing in the container (dev eth0)');

    // The runtime lost the namespace (the pod died): DEL must still release the address.
    await run(['ip', 'netns', 'del', pod]);
    assert.equal(ipamFiles(host).length, 1);
    const del = await call(host, 'DEL', 'check-pod', undefined, withPrev);
    assert.equal(del.exitCode, 0, del.stdout);
    assert.deepEqual(ipamFiles(host), []);
    assert.deepEqual(await linkNames(host.ns), ['cni0', 'lo']);
  });

  test(`[${path}] GC releases the attachments the runtime no longer lists, with their veths, and keeps the rest`, async (t) => {
    const host = await makeHost(t, path);
    const [p1, p2] = await Promise.all([freshNetns(t, 'pod1'), freshNetns(t, 'pod2')]);
    const r1 = await addOk(host, 'gc-keep', p1, host.config());
    await addOk(host, 'gc-stale', p2, host.config());
    assert.equal(ipamFiles(host).length, 2);

    const out = await cniInvoke({
      command: 'GC',
      config: host.config({ 'cni.dev/valid-attachments': [{ containerID: 'gc-keep', ifname: 'eth0' }] }),
      hostNetns: host.ns,
      plugin: host.route.plugin,
      env: host.route.env,
    });
    assert.equal(out.exitCode, 0, out.stdout);
    assert.equal(out.stdout, '');
    assert.deepEqual(ipamFiles(host), [r1.ips[0].address.split('/')[0]]);
    assert.deepEqual(await linkNames(host.ns), ['cni0', hostVethName('gc-keep', 'eth0'), 'lo'].sort());
    assert.deepEqual(await linkNames(p2), ['lo'], 'the stale pod lost its eth0 with the veth pair');
    assert.ok(await ping(host.ns, r1.ips[0].address.split('/')[0]), 'the kept pod still answers');
  });
}
