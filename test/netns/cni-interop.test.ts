// IPAM interoperability: tulle-cni and the reference /usr/lib/cni/host-local share one allocation directory (same
// range, same network name, host-local configured through its own `ipam` section). Taking turns they continue each
// other's round robin; running at the same time they never hand out one address twice; each reads the other's files.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cniInvoke, type CniOutcome } from '../../src/cni/invoke.js';
import { freshNetns, requireRoot } from '../helpers/netns.js';

import { CNI_PATHS, cniRoute } from '../helpers/cni-paths.js';

requireRoot();

const HOST_LOCAL = '/usr/lib/cni/host-local';
const NETWORK = 'shared';

for (const path of CNI_PATHS) {
  test(`[${path}] tulle-cni and host-local share an allocation directory: alternating, concurrent, and reading each other's files`, async (t) => {
    assert.ok(existsSync(HOST_LOCAL), `${HOST_LOCAL} is missing: install containernetworking-plugins (bash scripts/install-deps.sh)`);
    const host = await freshNetns(t, 'host');
    const route = await cniRoute(t, host, path);
    const dir = mkdtempSync(join(tmpdir(), 'tulle-cni-interop-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const dataDir = join(dir, 'ipam');
    const subnetFile = join(dir, 'subnet.env');
    writeFileSync(subnetFile, 'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.5.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n');
    const tulleConfig = { cniVersion: '1.0.0', name: NETWORK, type: 'tulle', mode: 'bridge', subnetFile, dataDir };
    // host-local's own description of the same range: 10.244.5.0/24 with gateway .1.
    const hostLocalConfig = {
      cniVersion: '1.0.0',
      name: NETWORK,
      ipam: { type: 'host-local', dataDir, ranges: [[{ subnet: '10.244.5.0/24', gateway: '10.244.5.1' }]] },
    };
    const netDir = join(dataDir, NETWORK);

    const pods = await Promise.all(Array.from({ length: 25 }, (_, i) => freshNetns(t, `p${i}`)));
    const tulle = (command: 'ADD' | 'DEL', i: number): Promise<CniOutcome> =>
      cniInvoke({
        command,
        containerId: `tulle-${i}`,
        ifName: 'eth0',
        netns: `/run/netns/${pods[i]}`,
        config: tulleConfig,
        hostNetns: host,
        plugin: route.plugin,
        env: route.env,
      });
    const hostLocal = (command: 'ADD' | 'DEL' | 'CHECK', id: string): Promise<CniOutcome> =>
      cniInvoke({
        command,
        containerId: id,
        ifName: 'eth0',
        netns: `/run/netns/${host}`,
        config: hostLocalConfig,
        plugin: HOST_LOCAL,
        path: ['/usr/lib/cni'],
        hostNetns: host,
      });
    const address = (out: CniOutcome, who: string): string => {
      assert.equal(out.exitCode, 0, `${who}: ${out.stdout}${out.stderr}`);
      return (out.result as any).ips[0].address.split('/')[0];
    };

    // Taking turns: each continues after the other's last_reserved_ip.0, so the addresses are consecutive.
    const sequential: string[] = [];
    for (let i = 0; i < 5; i++) {
      sequential.push(address(await tulle('ADD', i), `tulle ADD ${i}`));
      sequential.push(address(await hostLocal('ADD', `hl-${i}`), `host-local ADD ${i}`));
    }
    assert.deepEqual(
      sequential,
      Array.from({ length: 10 }, (_, i) => `10.244.5.${i + 2}`),
    );

    // At the same time: 20 tulle ADDs (separate processes, each with its veth work) and 20 host-local ADDs.
    const [tulleOut, hostLocalOut] = await Promise.all([
      Promise.all(Array.from({ length: 20 }, (_, k) => tulle('ADD', k + 5))),
      Promise.all(Array.from({ length: 20 }, (_, k) => hostLocal('ADD', `hl-${k + 5}`))),
    ]);
    const concurrent = [...tulleOut.map((o, k) => address(o, `tulle ADD ${k + 5}`)), ...hostLocalOut.map((o, k) => address(o, `host-local ADD ${k + 5}`))];
    const all = [...sequential, ...concurrent];
    assert.equal(new Set(all).size, all.length, `no address twice: ${all.join(' ')}`);
    for (const a of all) assert.match(a, /^10\.244\.5\.(\d+)$/);
    assert.ok(!all.includes('10.244.5.1'), 'neither hands out the gateway');

    // One directory, one file per address, each naming its owner in host-local's format.
    const files = readdirSync(netDir).filter((f) => /^\d/.test(f) && !f.startsWith('last'));
    assert.equal(files.length, 50);
    const owners = new Map(files.map((f) => [f, readFileSync(join(netDir, f), 'utf8')]));
    assert.equal(owners.get(sequential[0]!), 'tulle-0\r\neth0');
    assert.equal(owners.get(sequential[1]!), 'hl-0\r\neth0');

    // host-local reads tulle's files: its CHECK finds tulle's reservation, and its DEL releases it.
    assert.equal((await hostLocal('CHECK', 'tulle-3')).exitCode, 0, 'host-local CHECK finds a tulle allocation');
    assert.notEqual((await hostLocal('CHECK', 'nobody')).exitCode, 0);
    assert.equal((await hostLocal('DEL', 'tulle-3')).exitCode, 0);
    assert.equal(existsSync(join(netDir, sequential[6]!)), false, "host-local released tulle-3's address");

    // Everyone leaves: only the lock and the round-robin marker stay.
    const dels = await Promise.all([...pods.map((_, i) => tulle('DEL', i)), ...Array.from({ length: 25 }, (_, i) => hostLocal('DEL', `hl-${i}`))]);
    for (const d of dels) assert.equal(d.exitCode, 0, d.stdout + d.stderr);
    assert.deepEqual(readdirSync(netDir).sort(), ['last_reserved_ip.0', 'lock']);
  });
}
