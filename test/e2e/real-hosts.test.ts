/**
 * The README's "Running tulle on your hosts", step by step, on two namespace "hosts" joined by one link and an
 * etcd of their own (no lab): `tulle config put`, `tulle install --root` on each host, the agent started exactly
 * as the installed systemd unit starts it (its ExecStart with its EnvironmentFile), `tulle status`, then the
 * runtime side through the installed conflist only (the installed `tulle` plugin and the reference portmap,
 * found on CNI_PATH as a runtime finds them): pod addresses in each host's subnet with subnet.env's MTU, a
 * cross-host ping, `--ip` honoured, a published port reached from the other host, DEL leaving nothing; then
 * `tulle agent --cleanup` after subnet.env is gone, and `tulle status` while etcd is away.
 *
 * Everything lives in namespaces and a temporary directory this test makes and removes; processes are ended by PID.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../../src/base/exec.js';
import { waitFor } from '../../src/base/retry.js';
import { runConflist, type Conflist } from '../../src/cni/invoke.js';
import { spawnIn } from '../../src/netns/netns.js';
import { TULLE } from '../helpers/agent.js';
import { freshNetns, ip, ipJson, requireRoot } from '../helpers/netns.js';

requireRoot();

const ETCD = 'etcd://192.0.2.11:2379';

/** A long-running process in a namespace, ended by PID (SIGTERM) when the test ends. */
function startIn(t: { after(fn: () => unknown): void }, ns: string, argv: string[], env: NodeJS.ProcessEnv = process.env) {
  const child: ChildProcess = spawnIn(ns, argv, { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr!.on('data', (d) => (log = (log + d).slice(-20_000)));
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, 'SIGTERM');
    return exited;
  };
  t.after(stop);
  return { log: () => log, stop, exited };
}

/** systemd's EnvironmentFile: KEY=VALUE lines, values optionally in double quotes. */
function readEnvFile(path: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const m = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line);
    if (m) env[m[1]!] = m[2]!.startsWith('"') ? m[2]!.slice(1, -1).replace(/\\(.)/g, '$1') : m[2]!;
  }
  return env;
}

/** The unit's ExecStart as argv (its words are double-quoted by tulle install). */
function execStart(unitPath: string): string[] {
  const line = readFileSync(unitPath, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('ExecStart='))!;
  return [...line.slice('ExecStart='.length).matchAll(/"((?:[^"\\]|\\.)*)"|(\S+)/g)].map((m) => m[1] ?? m[2]!);
}

const tulleIn = (ns: string, args: string[], env: NodeJS.ProcessEnv = process.env) =>
  run(['ip', 'netns', 'exec', ns, process.execPath, TULLE, ...args], { allowFailure: true, env });

test('README real-host walk-through: install on two hosts, agents from the unit, pods talk, --ip, -p, cleanup, status', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tulle-real-hosts-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  // Two hosts on one link, like two machines on a LAN.
  const [h1, h2] = await Promise.all([freshNetns(t, 'h1'), freshNetns(t, 'h2')]);
  await ip(h1, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', h2);
  for (const [ns, addr] of [
    [h1, '192.0.2.11/24'],
    [h2, '192.0.2.12/24'],
  ] as const) {
    await ip(ns, 'addr', 'add', addr, 'dev', 'eth0');
    await ip(ns, 'link', 'set', 'eth0', 'up');
  }

  // etcd on h1, reachable from both hosts.
  const etcdData = join(dir, 'etcd');
  const etcd = startIn(t, h1, [
    'etcd',
    '--name',
    'e1',
    '--data-dir',
    etcdData,
    '--listen-client-urls',
    'http://192.0.2.11:2379',
    '--advertise-client-urls',
    'http://192.0.2.11:2379',
    '--listen-peer-urls',
    'http://127.0.0.1:2380',
    '--initial-advertise-peer-urls',
    'http://127.0.0.1:2380',
    '--initial-cluster',
    'e1=http://127.0.0.1:2380',
    '--log-level',
    'error',
  ]);
  await waitFor(
    async () =>
      (await run(['ip', 'netns', 'exec', h2, 'etcdctl', '--endpoints=http://192.0.2.11:2379', 'endpoint', 'health'], { allowFailure: true })).status === 0,
    30_000,
    'etcd to be healthy',
  );

  // Step 1: the network config, once.
  const put = await run(['ip', 'netns', 'exec', h1, process.execPath, TULLE, 'config', 'put', '--store', ETCD], {
    input: '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}',
    allowFailure: true,
  });
  assert.equal(put.status, 0, put.stderr);

  // Step 2: tulle install on each host (under a root of its own; paths inside the files point into `dir`).
  const hosts = [h1, h2].map((ns, i) => {
    const root = join(dir, `root${i + 1}`);
    mkdirSync(root);
    return { ns, root, subnetFile: join(root, 'run/tulle/subnet.env'), dataDir: join(root, 'var/lib/cni/networks'), stateDir: join(root, 'var/lib/tulle') };
  });
  for (const h of hosts) {
    const r = await tulleIn(h.ns, [
      'install',
      '--root',
      h.root,
      '--store',
      ETCD,
      '--iface',
      'eth0',
      '--subnet-file',
      h.subnetFile,
      '--cni-data-dir',
      h.dataDir,
      '--state-dir',
      h.stateDir,
    ]);
    assert.equal(r.status, 0, r.stderr);
  }

  // Step 3: start the agent as systemd would: the unit's ExecStart with its EnvironmentFile (and nothing else).
  const agents = hosts.map((h) => {
    const env = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', ...readEnvFile(join(h.root, 'etc/default/tulle')), TULLE_LOG_FORMAT: 'json' };
    return startIn(t, h.ns, execStart(join(h.root, 'etc/systemd/system/tulle-agent.service')), env);
  });
  for (const h of hosts) await waitFor(() => existsSync(h.subnetFile), 30_000, `${h.subnetFile} to be written`);
  const subnets = hosts.map((h) => /^FLANNEL_SUBNET=(.*)$/m.exec(readFileSync(h.subnetFile, 'utf8'))![1]!);
  assert.notEqual(subnets[0], subnets[1]);
  assert.match(readFileSync(hosts[0]!.subnetFile, 'utf8'), /^FLANNEL_MTU=1450$/m);

  // Step 4: tulle status on each host (once both agents have programmed each other).
  for (const h of hosts) {
    const env = { ...process.env, ...readEnvFile(join(h.root, 'etc/default/tulle')) };
    const s = await waitFor(
      async () => {
        const r = await tulleIn(h.ns, ['status'], env);
        return r.status === 0 ? r : undefined;
      },
      30_000,
      `tulle status in ${h.ns} to report in sync`,
    );
    assert.match(s.stdout, /^agent: +running, ready$/m);
    assert.match(s.stdout, /^peers: +1\/1 programmed$/m);
    assert.match(s.stdout, /^in sync: +yes$/m);
  }

  // Step 5: the runtime side, from the installed conflist and CNI bin dir only.
  const list = (h: (typeof hosts)[number]) => JSON.parse(readFileSync(join(h.root, 'etc/cni/net.d/10-tulle.conflist'), 'utf8')) as Conflist;
  const cniPath = (h: (typeof hosts)[number]) => [join(h.root, 'opt/cni/bin'), '/usr/lib/cni'];
  const pods = await Promise.all([freshNetns(t, 'pod1'), freshNetns(t, 'pod2')]);
  const attach = (i: number, args?: string, capabilityArgs?: Record<string, unknown>) =>
    runConflist(list(hosts[i]!), 'ADD', {
      containerId: `rh-pod${i + 1}`,
      ifName: 'eth0',
      netns: `/run/netns/${pods[i]}`,
      path: cniPath(hosts[i]!),
      hostNetns: hosts[i]!.ns,
      args,
      capabilityArgs,
    });
  const detach = (i: number, prevResult: Record<string, unknown>, capabilityArgs?: Record<string, unknown>) =>
    runConflist(list(hosts[i]!), 'DEL', {
      containerId: `rh-pod${i + 1}`,
      ifName: 'eth0',
      netns: `/run/netns/${pods[i]}`,
      path: cniPath(hosts[i]!),
      hostNetns: hosts[i]!.ns,
      prevResult,
      capabilityArgs,
    });
  const ports = { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }] };
  const wanted = subnets[0]!.replace(/\.1\/24$/, '.77');
  const r1 = (await attach(0, `IgnoreUnknown=1;IP=${wanted}`, ports))!;
  const r2 = (await attach(1))!;
  const addr = (r: Record<string, unknown>) => (r.ips as Array<{ address: string }>)[0]!.address;
  assert.equal(addr(r1), `${wanted}/24`, '--ip honoured');
  assert.equal(addr(r2).replace(/\.\d+\/24$/, ''), subnets[1]!.replace(/\.1\/24$/, ''), 'in its host subnet');
  const [link] = await ipJson<Array<{ mtu: number }>>(pods[1], 'link', 'show', 'dev', 'eth0');
  assert.equal(link!.mtu, 1450, "subnet.env's MTU");
  const ping = await run(['ip', 'netns', 'exec', pods[1], 'ping', '-c', '1', '-W', '5', wanted], { allowFailure: true });
  assert.equal(ping.status, 0, `cross-host ping: ${ping.stdout}`);

  // A published port (-p 8080:80) on h1, reached from h2 across the underlay: the pod answers a client outside
  // the cluster network, which needs the default route isDefaultGateway gives it.
  const server = startIn(t, pods[0], ['python3', '-m', 'http.server', '80', '--bind', '0.0.0.0']);
  const fetchScript = "import urllib.request,sys; print(urllib.request.urlopen('http://192.0.2.11:8080/', timeout=5).status)";
  const got = await waitFor(
    async () => {
      const r = await run(['ip', 'netns', 'exec', h2, 'python3', '-c', fetchScript], { allowFailure: true });
      return r.status === 0 ? r.stdout.trim() : undefined;
    },
    30_000,
    'the published port to answer from the other host',
  );
  assert.equal(got, '200');
  await server.stop();

  // DEL (podman rm -f) leaves no veth and no reservation.
  await detach(0, r1, ports);
  await detach(1, r2);
  for (const [i, h] of hosts.entries()) {
    const links = (await ipJson<Array<{ ifname: string }>>(h.ns, 'link', 'show')).map((l) => l.ifname);
    assert.deepEqual(
      links.filter((n) => n.startsWith('veth')),
      [],
      `no veth left on host ${i + 1}`,
    );
    assert.deepEqual(
      readdirSync(join(h.dataDir, 'tulle')).filter((f) => /^\d/.test(f)),
      [],
      `no reservation left on host ${i + 1}`,
    );
  }

  // Step 6: host 2 leaves after a "reboot": agent stopped, subnet.env gone; --cleanup still finds and releases its lease.
  assert.equal(await agents[1]!.stop(), 0);
  rmSync(hosts[1]!.subnetFile);
  const env2 = { ...process.env, ...readEnvFile(join(hosts[1]!.root, 'etc/default/tulle')) };
  const cleanup = await tulleIn(h2, ['agent', '--cleanup'], env2);
  assert.equal(cleanup.status, 0, cleanup.stderr);
  assert.equal(cleanup.stdout, `lease ${subnets[1]!.replace(/\.1\/24$/, '.0/24')} released (found by the VTEP address)\n`);
  const leases = JSON.parse((await tulleIn(h1, ['leases', '--json', '--store', ETCD])).stdout) as Array<{ subnet: string }>;
  assert.deepEqual(
    leases.map((l) => l.subnet),
    [subnets[0]!.replace(/\.1\/24$/, '.0/24')],
  );
  const stopped = await tulleIn(h2, ['status'], env2);
  assert.equal(stopped.status, 1);
  assert.match(stopped.stdout, /^agent: +NOT running \(nothing answers at 127\.0\.0\.1:9465\)$/m);

  // Step 7: etcd away: status on host 1 still shows the local side, and says the store is unreachable.
  await etcd.stop();
  const env1 = { ...process.env, ...readEnvFile(join(hosts[0]!.root, 'etc/default/tulle')) };
  const away = await tulleIn(h1, ['status'], env1);
  assert.equal(away.status, 1, away.stderr);
  assert.match(away.stdout, /^store: +unreachable: /m);
  assert.match(away.stdout, /^agent: +running, ready$/m);
  assert.match(away.stdout, new RegExp(`^lease: +${subnets[0]!.replace(/\.1\/24$/, '.0/24').replaceAll('.', '\\.')} \\(from `, 'm'));
  assert.match(away.stdout, /^VTEP: +flannel\.1 10\.244\.\d+\.0\/32$/m);
  assert.match(away.stdout, /^routes: +0 to other hosts/m);
  assert.equal(await agents[0]!.stop(), 0);
});
