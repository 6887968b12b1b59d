/**
 * `tulle agent` facing bad hosts and faults, one fresh namespace per case: no underlay, an ambiguous one, a VNI
 * that clashes with another device, an incompatible existing VTEP, a store that cannot be reached; plus health,
 * metrics and --cleanup. Each run is a real agent process inside the namespace.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { run } from '../../src/base/exec.js';
import { waitFor } from '../../src/base/retry.js';
import { TULLE, agentExits, agentRuns, host, lastLine, noVtep, underlay } from '../helpers/agent.js';
import { ip, ipJson, requireRoot } from '../helpers/netns.js';

test('no underlay interface: one clear error, non-zero exit, nothing made', async (t) => {
  requireRoot();
  const h = await host(t, 'nounder');
  const r = await agentExits(h);
  assert.notEqual(r.status, 0);
  assert.match(lastLine(r.stderr), /^tulle: no interface can carry the overlay: none is up with an IPv4 address .*--iface \[TLE_UNDERLAY_NOT_FOUND\]$/);
  assert.doesNotMatch(r.stderr, /\n\s+at /);
  assert.ok(await noVtep(h.ns));
  assert.equal(existsSync(join(h.dir, 'subnet.env')), false);
});

test('two candidate interfaces and no default route: the error lists them; --iface picks one', async (t) => {
  requireRoot();
  const h = await host(t, 'ambig');
  await underlay(h.ns, 'eth0', '192.0.2.11/24');
  await underlay(h.ns, 'eth1', '198.51.100.11/24');
  const r = await agentExits(h);
  assert.notEqual(r.status, 0);
  assert.match(
    lastLine(r.stderr),
    /several interfaces could carry the overlay \((eth0p?, )+eth1(, eth1p)?\).*name one with --iface \[TLE_UNDERLAY_AMBIGUOUS\]/,
  );
  assert.ok(await noVtep(h.ns));

  const bad = await agentExits(h, ['--iface', 'eth9']);
  assert.match(lastLine(bad.stderr), /--iface: "eth9" is neither an interface nor an address on this host/);

  const agent = agentRuns(h, ['--iface', 'eth1']);
  await waitFor(() => /"msg":"ready"/.test(agent.log()), 20_000, 'the agent to be ready');
  const [link] = await ipJson(h.ns, 'link', 'show', 'flannel.1');
  assert.equal(link.linkinfo.info_data.local, '198.51.100.11');
  assert.equal(await agent.stop(), 0, 'SIGTERM ends the agent cleanly');
});

test('a VNI already used by another VXLAN device: clear error naming the clash, no lease taken', async (t) => {
  requireRoot();
  const h = await host(t, 'vniclash');
  await underlay(h.ns, 'eth0', '192.0.2.11/24');
  await ip(h.ns, 'link', 'add', 'vx0', 'type', 'vxlan', 'id', '1', 'dstport', '8472', 'dev', 'eth0', 'local', '192.0.2.11', 'nolearning');
  const r = await agentExits(h);
  assert.notEqual(r.status, 0);
  assert.match(lastLine(r.stderr), /cannot create flannel\.1 \(VNI 1, port 8472\): another VXLAN device already uses this VNI and port .* \[TLE_VTEP\]/);
  assert.ok(await noVtep(h.ns));
  const leases = await run([process.execPath, TULLE, 'leases', '--json', '--store', h.store]);
  assert.deepEqual(JSON.parse(leases.stdout), []);
});

test('an incompatible existing flannel.1 is recreated with the reason logged; a compatible one is kept', async (t) => {
  requireRoot();
  const h = await host(t, 'recreate');
  await underlay(h.ns, 'eth0', '192.0.2.11/24');
  await ip(h.ns, 'link', 'add', 'flannel.1', 'type', 'vxlan', 'id', '1', 'dstport', '4789', 'dev', 'eth0', 'local', '192.0.2.11', 'nolearning');
  const agent = agentRuns(h);
  await waitFor(() => /"msg":"ready"/.test(agent.log()), 20_000, 'the agent to be ready');
  assert.match(agent.log(), /"msg":"recreating VTEP: existing device is incompatible".*"reason":"flannel\.1 has dstport 4789 != 8472"/);
  const [link] = await ipJson(h.ns, 'link', 'show', 'flannel.1');
  assert.equal(link.linkinfo.info_data.port, 8472);
  assert.equal(link.mtu, 1450);
  const mac = link.address;
  assert.equal(await agent.stop(), 0);

  const again = agentRuns(h);
  await waitFor(() => /"msg":"ready"/.test(again.log()), 20_000, 'the agent to be ready again');
  assert.match(again.log(), /"msg":"VTEP kept"/);
  assert.equal((await ipJson(h.ns, 'link', 'show', 'flannel.1'))[0].address, mac, 'the VtepMAC survives the restart');
  assert.equal(readFileSync(join(h.dir, 'state', 'flannel.1.mac'), 'utf8').trim(), mac);
  await again.stop();
});

test('a store that cannot be reached: the agent waits and retries with log lines, never exits, stops on SIGTERM', async (t) => {
  requireRoot();
  const h = await host(t, 'nostore');
  await underlay(h.ns, 'eth0', '192.0.2.11/24');
  // Port 1 on the namespace's own loopback: nothing listens, and no packet leaves the namespace.
  const agent = agentRuns({ ...h, args: ['--store', 'etcd://127.0.0.1:1', ...h.args.slice(2)] });
  await waitFor(() => /unreachable|retrying/i.test(agent.log()), 20_000, 'a retry log line');
  await new Promise((r) => setTimeout(r, 1500));
  assert.doesNotMatch(agent.log(), /"level":"error","msg":"agent failed"/);
  assert.equal(await agent.stop(), 0, 'still running until SIGTERM, then a clean exit');
  assert.ok(await noVtep(h.ns), 'no VTEP before the config could be read');
});

test('/healthz, /metrics and --cleanup', async (t) => {
  requireRoot();
  const h = await host(t, 'health');
  await underlay(h.ns, 'eth0', '192.0.2.11/24');
  const agent = agentRuns(h, ['--ip-masq', '--rules-interval', '1']);
  await waitFor(() => /"msg":"ready"/.test(agent.log()), 20_000, 'the agent to be ready');
  const fetchIn = async (path: string) =>
    (
      await run([
        'ip',
        'netns',
        'exec',
        h.ns,
        process.execPath,
        '-e',
        `fetch('http://127.0.0.1:9465${path}').then(async r => console.log(r.status, await r.text()))`,
      ])
    ).stdout;
  assert.match(await fetchIn('/healthz'), /^200 \{"status":"ok","reason":"programmed","subnet":"10\.244\.\d+\.0\/24","peers":0\}/);
  const metrics = await fetchIn('/metrics');
  for (const name of [
    'tulle_peers_programmed 0',
    'tulle_reconciles_total 1',
    'tulle_lease_expiry_timestamp_seconds',
    'tulle_store_errors_total 0',
    'tulle_repairs_total 0',
  ]) {
    assert.ok(metrics.includes(name), `metrics have ${name}`);
  }
  assert.match((await run(['ip', 'netns', 'exec', h.ns, 'nft', 'list', 'table', 'ip', 'tulle'])).stdout, /masquerade fully-random/);
  // Someone flushes tulle's rules: the periodic check puts them back.
  await run(['ip', 'netns', 'exec', h.ns, 'nft', 'delete', 'table', 'ip', 'tulle']);
  await waitFor(
    async () => (await run(['ip', 'netns', 'exec', h.ns, 'nft', 'list', 'table', 'ip', 'tulle'], { allowFailure: true })).status === 0,
    10_000,
    'the rules to be rewritten',
  );
  assert.match(agent.log(), /"msg":"traffic rules changed by someone else; rewriting them"/);
  assert.equal(await agent.stop(), 0);
  assert.ok(existsSync(join(h.dir, 'subnet.env')), 'SIGTERM leaves subnet.env and the kernel state');
  assert.equal(await noVtep(h.ns), false);

  const c = await agentExits(h, ['--cleanup']);
  assert.equal(c.status, 0, c.stderr);
  assert.ok(await noVtep(h.ns), 'cleanup removed the VTEP');
  assert.equal(existsSync(join(h.dir, 'subnet.env')), false, 'cleanup removed subnet.env');
  assert.equal(
    (await run(['ip', 'netns', 'exec', h.ns, 'nft', 'list', 'table', 'ip', 'tulle'], { allowFailure: true })).status,
    1,
    'cleanup removed the rules',
  );
  const leases = await run([process.execPath, TULLE, 'leases', '--json', '--store', h.store]);
  assert.deepEqual(JSON.parse(leases.stdout), [], 'cleanup released the lease');
  assert.equal((await agentExits(h, ['--cleanup'])).status, 0, 'cleanup twice is fine');
});
