// tulle-cni as the first plugin of a configuration list, followed by the reference `tuning` (a sysctl inside the
// pod) and `portmap` (a host port DNATed to the pod, with iptables in the host namespace), driven the way libcni
// drives a list: ADD in order with each result passed on as prevResult, CHECK with the cached result, DEL in
// reverse order. The Go plugins parse tulle's result with the reference library, so they also check its format.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../../src/base/exec.js';
import { spawnIn } from '../../src/netns/netns.js';
import { runConflist, type Conflist } from '../../src/cni/invoke.js';
import { hostVethName } from '../../src/cni/names.js';
import { resultViolations } from '../../src/cni/validate-result.js';
import { freshNetns, ipJson, requireRoot } from '../helpers/netns.js';

import { CNI_PATHS, cniRoute, type CniPath } from '../helpers/cni-paths.js';

requireRoot();

/** Connect from inside `ns` to address:port and return what the server sends before closing. */
async function fetchBanner(ns: string, address: string, port: number): Promise<string> {
  const script = `const s=require('net').connect(${port},'${address}');let d='';s.on('data',c=>d+=c);s.on('end',()=>{process.stdout.write(d)});s.on('error',e=>{console.error(e.message);process.exit(1)});setTimeout(()=>process.exit(2),5000).unref()`;
  const r = await run(['ip', 'netns', 'exec', ns, process.execPath, '-e', script], { allowFailure: true });
  return r.status === 0 ? r.stdout : `failed (${r.status}): ${r.stderr.trim()}`;
}

/** A host namespace with the agent's subnet.env (10.244.4.0/24), a CNI route to tulle on `path`, and a pod namespace. */
async function chainHost(t: Parameters<typeof freshNetns>[0], path: CniPath) {
  const host = await freshNetns(t, 'host');
  const route = await cniRoute(t, host, path);
  const pod = await freshNetns(t, 'pod');
  const dir = mkdtempSync(join(tmpdir(), 'tulle-cni-chain-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const subnetFile = join(dir, 'subnet.env');
  writeFileSync(subnetFile, 'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.4.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n');
  return { host, route, pod, subnetFile, dataDir: join(dir, 'ipam') };
}

for (const path of CNI_PATHS) {
  test(`[${path}] a conflist tulle -> tuning -> portmap: ADD, CHECK and DEL work, the sysctl and the port mapping take effect, DEL leaves nothing`, async (t) => {
    for (const p of ['tuning', 'portmap']) assert.ok(existsSync(`/usr/lib/cni/${p}`), `/usr/lib/cni/${p} is missing: install containernetworking-plugins`);
    const { host, route, pod, subnetFile, dataDir } = await chainHost(t, path);

    // The reference plugins speak up to 1.0.0: the list says 1.0.0, and every plugin is called with it.
    const list: Conflist = {
      cniVersion: '1.0.0',
      name: 'tulle-chain',
      plugins: [
        { type: 'tulle', mode: 'bridge', subnetFile, dataDir },
        { type: 'tuning', sysctl: { 'net.core.somaxconn': '512' } },
        { type: 'portmap', capabilities: { portMappings: true } },
      ],
    };
    const options = {
      containerId: 'chain-pod',
      ifName: 'eth0',
      netns: `/run/netns/${pod}`,
      path: ['/usr/lib/cni'],
      plugins: { tulle: route.plugin },
      env: route.env,
      hostNetns: host,
      capabilityArgs: { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }] },
    };

    const result = (await runConflist(list, 'ADD', options)) as any;
    // The last plugin's result is tulle's, passed through tuning and portmap (re-encoded by the Go library).
    assert.deepEqual(resultViolations(result, '1.0.0'), [], JSON.stringify(result));
    assert.deepEqual(
      result.interfaces.map((i: any) => i.name),
      ['cni0', hostVethName('chain-pod', 'eth0'), 'eth0'],
    );
    const podIp = result.ips[0].address.split('/')[0];
    assert.match(podIp, /^10\.244\.4\.\d+$/);

    // tuning set its sysctl inside the pod (a new namespace starts with the kernel default, 4096).
    assert.equal((await run(['ip', 'netns', 'exec', pod, 'sysctl', '-n', 'net.core.somaxconn'])).stdout.trim(), '512');

    // portmap: a connection from the node to its own address, port 8080, reaches the pod's port 80.
    const server = spawnIn(
      pod,
      [process.execPath, '-e', `require('net').createServer(s=>s.end('hello from the pod')).listen(80,'${podIp}',()=>console.log('ready'))`],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    t.after(() => server.kill());
    await new Promise<void>((resolve, reject) => {
      server.stdout!.once('data', () => resolve());
      server.once('exit', (code) => reject(new Error(`pod server exited ${code}`)));
    });
    assert.equal(await fetchBanner(host, '10.244.4.1', 8080), 'hello from the pod');
    assert.equal(await fetchBanner(host, podIp, 80), 'hello from the pod', 'and directly');

    // CHECK runs the plugins against the cached result: tulle checks its links, addresses and routes, tuning its
    // sysctl. The installed portmap (1.1.1) fails CHECK for IPv4-only pods by looking for an ip6tables chain it never
    // made (containernetworking/plugins#819), so CHECK runs on the list without it.
    const checkable: Conflist = { ...list, plugins: list.plugins.filter((p) => p.type !== 'portmap') };
    assert.equal(await runConflist(checkable, 'CHECK', { ...options, prevResult: result }), undefined);

    // DEL in reverse order: portmap's rules, then tulle's veth and address.
    await runConflist(list, 'DEL', { ...options, prevResult: result });
    const links = (await ipJson(host, 'link', 'show')).map((l: any) => l.ifname).sort();
    assert.deepEqual(links, ['cni0', 'lo']);
    assert.deepEqual(
      readdirSync(join(dataDir, 'tulle-chain')).filter((f) => /^\d/.test(f) && !f.startsWith('last')),
      [],
    );
    const nat = (await run(['ip', 'netns', 'exec', host, 'iptables', '-t', 'nat', '-S'])).stdout;
    assert.doesNotMatch(nat, /--dport 8080/, 'portmap removed its DNAT rule');
    assert.notEqual(await fetchBanner(host, '10.244.4.1', 8080), 'hello from the pod');
  });

  test(`[${path}] tulle after another interface plugin (the reference loopback): its result is kept and tulle's interface indexes follow it`, async (t) => {
    const { host, route, pod, subnetFile, dataDir } = await chainHost(t, path);
    const list: Conflist = {
      cniVersion: '1.0.0',
      name: 'lo-then-tulle',
      plugins: [{ type: 'loopback' }, { type: 'tulle', mode: 'routed', subnetFile, dataDir }],
    };
    const options = {
      containerId: 'lo-pod',
      ifName: 'eth0',
      netns: `/run/netns/${pod}`,
      path: ['/usr/lib/cni'],
      plugins: { tulle: route.plugin },
      env: route.env,
      hostNetns: host,
    };
    const result = (await runConflist(list, 'ADD', options)) as any;
    assert.deepEqual(resultViolations(result, '1.0.0'), [], JSON.stringify(result));
    assert.deepEqual(
      result.interfaces.map((i: any) => i.name),
      ['lo', hostVethName('lo-pod', 'eth0'), 'eth0'],
    );
    const own = result.ips.find((i: any) => i.address.startsWith('10.244.4.'));
    assert.equal(own.interface, 2, "tulle's address points at eth0 after loopback's lo");
    assert.ok(
      result.ips.some((i: any) => i.address === '127.0.0.1/8' && i.interface === 0),
      "loopback's address is kept",
    );
    await runConflist(list, 'CHECK', { ...options, prevResult: result });
    await runConflist(list, 'DEL', { ...options, prevResult: result });
    assert.deepEqual(
      (await ipJson(host, 'link', 'show')).map((l: any) => l.ifname),
      ['lo'],
    );
  });
}
