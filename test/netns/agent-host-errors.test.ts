/**
 * What a user meets running `tulle agent` on a real host, each in plain words: a second agent on the same host
 * (health port taken), loopback as the underlay, and `--cleanup` after a reboot (subnet.env gone with /run, the
 * VTEP gone with the kernel state): the lease is still found, by the VTEP address or by the public IP, and the
 * command says whether it released one. Each case is a real agent process in a fresh namespace.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { run } from '../../src/base/exec.js';
import { waitFor } from '../../src/base/retry.js';
import { TULLE, agentExits, agentRuns, host, lastLine, noVtep, underlay } from '../helpers/agent.js';
import { ip, requireRoot } from '../helpers/netns.js';

requireRoot();

const leasesOf = async (store: string) =>
  JSON.parse((await run([process.execPath, TULLE, 'leases', '--json', '--store', store])).stdout) as Array<{ subnet: string }>;

test('a second agent on the host: "another tulle agent is running?", not an internal error', async (t) => {
  const h = await host(t, 'twice');
  await underlay(h.ns, 'eth0', '192.0.2.11/24');
  const first = agentRuns(h);
  t.after(() => first.stop());
  await waitFor(() => /"msg":"ready"/.test(first.log()), 20_000, 'the first agent to be ready');
  const second = await agentExits(h);
  assert.equal(second.status, 1, second.stderr);
  assert.match(
    lastLine(second.stderr),
    /^tulle: --health-addr: 127\.0\.0\.1:9465 is already in use: is another tulle agent running on this host\? \(stop it, or give this one another --health-addr\) \[TLE_HEALTH_LISTEN\]$/,
  );
  assert.doesNotMatch(second.stderr, /internal error|EADDRINUSE|\n\s+at /);
  assert.equal(await first.stop(), 0, 'the first agent was not disturbed');
});

test('loopback as the underlay is refused by name, address and public IP', async (t) => {
  const h = await host(t, 'lo');
  await underlay(h.ns, 'eth0', '192.0.2.11/24');
  for (const [extra, pattern] of [
    [
      ['--iface', 'lo'],
      /^tulle: --iface: "lo" is the loopback interface lo: packets on it never leave this host, so it cannot carry the overlay to other hosts/,
    ],
    [['--iface', '127.0.0.1'], /^tulle: --iface: "127\.0\.0\.1" is the loopback interface lo/],
    [['--public-ip', '127.0.0.1'], /^tulle: --public-ip: "127\.0\.0\.1" is a loopback address: other hosts cannot send VXLAN packets to it/],
  ] as const) {
    const r = await agentExits(h, [...extra]);
    assert.equal(r.status, 1, r.stderr);
    assert.match(lastLine(r.stderr), pattern);
    assert.doesNotMatch(lastLine(r.stderr), /no IPv4 address|--public-ip$/);
  }
  assert.ok(await noVtep(h.ns));
  assert.deepEqual(await leasesOf(h.store), []);
});

test('--cleanup after a reboot: the lease is found by the VTEP address, or by the public IP, and the outcome is said', async (t) => {
  const h = await host(t, 'reboot');
  await underlay(h.ns, 'eth0', '192.0.2.11/24');
  const start = async () => {
    const agent = agentRuns(h);
    await waitFor(() => /"msg":"ready"/.test(agent.log()), 20_000, 'the agent to be ready');
    assert.equal(await agent.stop(), 0);
    return (await leasesOf(h.store)).map((l) => l.subnet);
  };

  // subnet.env gone (tmpfs /run), VTEP still there: found by its address.
  const [first] = await start();
  rmSync(join(h.dir, 'subnet.env'));
  let c = await agentExits(h, ['--cleanup']);
  assert.equal(c.status, 0, c.stderr);
  assert.equal(c.stdout, `lease ${first} released (found by the VTEP address)\n`);
  assert.deepEqual(await leasesOf(h.store), []);
  assert.ok(await noVtep(h.ns));

  // Both gone: found by the public IP of the underlay.
  const [second] = await start();
  rmSync(join(h.dir, 'subnet.env'));
  await ip(h.ns, 'link', 'del', 'flannel.1');
  c = await agentExits(h, ['--cleanup']);
  assert.equal(c.status, 0, c.stderr);
  assert.equal(c.stdout, `lease ${second} released (found by public IP 192.0.2.11)\n`);
  assert.deepEqual(await leasesOf(h.store), []);

  // Nothing left: said so, still exit 0.
  c = await agentExits(h, ['--cleanup']);
  assert.equal(c.status, 0, c.stderr);
  assert.match(c.stdout, /^no lease released: no lease of this host found \(no subnet\.env at .*, no VTEP, no lease with public IP 192\.0\.2\.11\)\n$/);
  assert.equal(existsSync(join(h.dir, 'subnet.env')), false);
});
