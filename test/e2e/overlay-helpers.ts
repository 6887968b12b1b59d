/** Assertions shared by the overlay end-to-end tests: the seed-000/003 kernel pattern, reachability, deadlines. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { run } from '../../src/base/exec.js';
import { formatIPv4, parseCidr4 } from '../../src/base/ip.js';
import { waitFor } from '../../src/base/retry.js';
import { runStoreCommand, type LabState } from '../../src/lab/index.js';
import { kernelView, type LeaseJson } from '../helpers/lab.js';

export async function leasesOf(state: LabState): Promise<LeaseJson[]> {
  return JSON.parse((await runStoreCommand(state, ['leases', '--json'])).stdout) as LeaseJson[];
}

const dotZero = (subnet: string) => formatIPv4(parseCidr4(subnet).network);

/**
 * On `host`, the kernel holds exactly the flannel layout for `peers` (read with iproute2): per peer one onlink
 * route via the peer's .0, one permanent neighbour .0 -> VtepMAC, one FDB entry VtepMAC -> public IP; and the
 * VTEP itself as seed 003 shows it.
 */
export async function assertSeedPattern(state: LabState, host: string, own: LeaseJson, peers: readonly LeaseJson[]): Promise<void> {
  const h = state.hosts.find((x) => x.name === host)!;
  const k = await kernelView(h.namespace);
  const where = `${host} (${h.namespace})`;
  assert.equal(k.link.linkinfo.info_kind, 'vxlan', `${where}: flannel.1 is a vxlan device`);
  const d = k.link.linkinfo.info_data;
  assert.deepEqual(
    [d.id, d.local, d.port, d.learning, k.link.mtu],
    [1, h.address, 8472, false, 1450],
    `${where}: vxlan id 1 local ${h.address} dstport 8472 nolearning mtu 1450`,
  );
  assert.equal(k.link.address, own.backendData.VtepMAC, `${where}: the VTEP MAC is the one in its lease`);
  assert.deepEqual(
    k.addrs.filter((a: any) => a.family === 'inet').map((a: any) => `${a.local}/${a.prefixlen}`),
    [`${dotZero(own.subnet)}/32`],
    `${where}: VTEP address`,
  );

  const sortBy = <T>(xs: T[], key: (x: T) => string) => [...xs].sort((a, b) => key(a).localeCompare(key(b)));
  assert.deepEqual(
    sortBy(k.routes, (r) => r.dst).map((r) => ({ dst: r.dst, gateway: r.gateway, dev: r.dev, onlink: (r.flags ?? []).includes('onlink') })),
    sortBy([...peers], (p) => p.subnet).map((p) => ({ dst: p.subnet, gateway: dotZero(p.subnet), dev: 'flannel.1', onlink: true })),
    `${where}: one onlink route per peer`,
  );
  assert.deepEqual(
    sortBy(
      k.neigh.filter((n) => n.dst.includes('.')),
      (n) => n.dst,
    ).map((n) => ({ dst: n.dst, lladdr: n.lladdr, state: n.state })),
    sortBy([...peers], (p) => dotZero(p.subnet)).map((p) => ({ dst: dotZero(p.subnet), lladdr: p.backendData.VtepMAC, state: ['PERMANENT'] })),
    `${where}: one permanent neighbour per peer`,
  );
  assert.deepEqual(
    sortBy(k.fdb, (f) => f.mac).map((f) => ({ mac: f.mac, dst: f.dst, self: (f.flags ?? []).includes('self'), state: f.state })),
    sortBy([...peers], (p) => p.backendData.VtepMAC).map((p) => ({ mac: p.backendData.VtepMAC, dst: p.publicIP, self: true, state: 'permanent' })),
    `${where}: one FDB entry per peer`,
  );
}

/** Check every host against the leases in the store. */
export async function assertClusterPattern(state: LabState, hosts: readonly string[]): Promise<LeaseJson[]> {
  const leases = await leasesOf(state);
  for (const host of hosts) {
    const address = state.hosts.find((h) => h.name === host)!.address;
    const own = leases.find((l) => l.publicIP === address);
    assert.ok(own, `${host} holds a lease (${address})`);
    const peers = leases.filter((l) => l !== own && hosts.some((x) => state.hosts.find((h) => h.name === x)!.address === l.publicIP));
    await assertSeedPattern(state, host, own, peers);
  }
  return leases;
}

export async function ping(fromNamespace: string, to: string): Promise<boolean> {
  return (await run(['ip', 'netns', 'exec', fromNamespace, 'ping', '-c1', '-W2', '-n', to], { allowFailure: true })).status === 0;
}

/** Every pod pings every other pod; returns the failed pairs. */
export async function podMatrix(state: LabState): Promise<string[]> {
  const failed: string[] = [];
  const pairs = state.pods.flatMap((a) => state.pods.filter((b) => b !== a).map((b) => [a, b] as const));
  await Promise.all(pairs.map(async ([a, b]) => void (!(await ping(a.namespace, b.address!)) && failed.push(`${a.name} -> ${b.name} (${b.address})`))));
  return failed;
}

/** Wait until `check` holds, at most `ms` (the deadline); the failure names what did not happen. */
export function within(ms: number, what: string, check: () => Promise<boolean> | boolean): Promise<unknown> {
  return waitFor(check, ms, what, 10);
}

/** `ping -i 0.01` from a namespace until stopped; resolves with the counts ping prints at the end. */
export function startFastPing(fromNamespace: string, to: string): { stop(): Promise<{ transmitted: number; received: number; output: string }> } {
  const child = spawn('ip', ['netns', 'exec', fromNamespace, 'ping', '-i', '0.01', '-n', '-q', to], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  const exited = new Promise<void>((resolve) => child.on('close', () => resolve()));
  return {
    async stop() {
      child.kill('SIGINT');
      await exited;
      const m = /(\d+) packets transmitted, (\d+) received/.exec(output);
      assert.ok(m, `ping summary in: ${output}`);
      return { transmitted: Number(m[1]), received: Number(m[2]), output };
    },
  };
}

/** `ip monitor` + `bridge monitor fdb` on a host namespace, collecting lines until stopped. */
export function startMonitor(namespace: string): { stop(): Promise<string[]> } {
  const children = [spawn('ip', ['-n', namespace, 'monitor', 'link', 'address', 'route', 'neigh']), spawn('bridge', ['-n', namespace, 'monitor', 'fdb'])];
  const lines: string[] = [];
  const closed = children.map((c) => new Promise<void>((resolve) => c.on('close', () => resolve())));
  for (const c of children) c.stdout.on('data', (d) => lines.push(...String(d).split('\n').filter(Boolean)));
  return {
    async stop() {
      for (const c of children) c.kill('SIGTERM');
      await Promise.all(closed);
      return lines;
    },
  };
}
