// Many pods into one host at once, through both paths (the agent's socket, and the Node plugin the shim falls back
// to): separate plugin processes racing for the IPAM lock (and, in bridge mode, to create cni0); distinct
// addresses, every pod answering the host's ping; then as many DELs at once leave no veth, no address file and no
// host route. Routed mode takes 100 pods (each with its /32 host route); bridge mode 30 (enough to race for cni0,
// and the suite stays short: every fallback call costs a Node start-up). Timings are reported as diagnostics,
// never asserted.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { run } from '../../src/base/exec.js';
import { cniInvoke, type CniOutcome } from '../../src/cni/invoke.js';
import { freshNetns, ipJson, requireRoot, underlay } from '../helpers/netns.js';

import { CNI_PATHS, cniRoute } from '../helpers/cni-paths.js';

requireRoot();

const PODS = { routed: 100, bridge: 30 } as const;

/** Run `fn` over `items` with at most `limit` in flight (namespace creation and pings; the CNI calls all go at once). */
async function pool<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i]!);
      }
    }),
  );
  return out;
}

for (const path of CNI_PATHS)
  for (const mode of ['routed', 'bridge'] as const) {
    const n = PODS[mode];
    test(`[${path}] ${mode} mode: ${n} concurrent ADDs get ${n} distinct reachable addresses; ${n} concurrent DELs leave nothing`, async (t) => {
      const host = await freshNetns(t, 'host');
      const route = await cniRoute(t, host, path);
      // The node's underlay address (one end of a veth pair): the source of its pings in routed mode, as on a real node.
      await underlay(host, 'eth0', '192.0.2.11/24');
      const dir = mkdtempSync(join(tmpdir(), 'tulle-cni-scale-'));
      t.after(() => rmSync(dir, { recursive: true, force: true }));
      const subnetFile = join(dir, 'subnet.env');
      writeFileSync(subnetFile, 'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.6.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n');
      const dataDir = join(dir, 'ipam');
      const config = { cniVersion: '1.1.0', name: 'scale', type: 'tulle', mode, subnetFile, dataDir };
      const pods = await pool(
        Array.from({ length: n }, (_, i) => i),
        16,
        (i) => freshNetns(t, `p${i}`),
      );
      const call = (command: 'ADD' | 'DEL', i: number): Promise<CniOutcome> =>
        cniInvoke({
          command,
          containerId: `scale-${mode}-${i}`,
          ifName: 'eth0',
          netns: `/run/netns/${pods[i]}`,
          config,
          hostNetns: host,
          timeoutMs: 120_000,
          plugin: route.plugin,
          env: route.env,
        });

      let started = performance.now();
      const added = await Promise.all(pods.map((_, i) => call('ADD', i)));
      const addSeconds = (performance.now() - started) / 1000;
      for (const [i, o] of added.entries()) assert.equal(o.exitCode, 0, `ADD ${i}: ${o.stdout}${o.stderr}`);
      const addresses = added.map((o) => (o.result as any).ips[0].address.split('/')[0] as string);
      assert.equal(new Set(addresses).size, n, 'distinct addresses');
      assert.equal(readdirSync(join(dataDir, 'scale')).filter((f) => /^\d/.test(f) && !f.startsWith('last')).length, n);

      const unreachable = (
        await pool(addresses, 25, async (a) =>
          (await run(['ip', 'netns', 'exec', host, 'ping', '-c', '1', '-W', '2', a], { allowFailure: true })).status === 0 ? undefined : a,
        )
      ).filter(Boolean);
      assert.deepEqual(unreachable, [], 'every pod answers the host');

      started = performance.now();
      const deleted = await Promise.all(pods.map((_, i) => call('DEL', i)));
      const delSeconds = (performance.now() - started) / 1000;
      for (const [i, o] of deleted.entries()) assert.equal(o.exitCode, 0, `DEL ${i}: ${o.stdout}${o.stderr}`);

      const links = (await ipJson(host, 'link', 'show')).map((l: any) => l.ifname).sort();
      assert.deepEqual(links, mode === 'bridge' ? ['cni0', 'eth0', 'eth0p', 'lo'] : ['eth0', 'eth0p', 'lo'], 'no pod veth left');
      assert.deepEqual(
        existsSync(join(dataDir, 'scale')) ? readdirSync(join(dataDir, 'scale')).sort() : [],
        ['last_reserved_ip.0', 'lock'],
        'no address file left',
      );
      const routes = (await ipJson(host, 'route', 'show')).map((r: any) => `${r.dst} dev ${r.dev}`);
      assert.deepEqual(routes, mode === 'bridge' ? ['10.244.6.0/24 dev cni0', '192.0.2.0/24 dev eth0'] : ['192.0.2.0/24 dev eth0'], 'no host route left');
      t.diagnostic(`${mode}: ${n} concurrent ADDs ${addSeconds.toFixed(1)} s, ${n} concurrent DELs ${delSeconds.toFixed(1)} s`);
    });
  }
