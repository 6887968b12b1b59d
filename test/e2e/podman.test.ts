/**
 * A real container runtime driving the plugin: Debian's podman 4.3.1 (CNI backend, crun) runs containers inside
 * the hosts of a 2-host lab, using only the files `tulle install --root` wrote (the plugin launcher and the
 * conflist; portmap from the reference plugins). Shown, in bridge mode (conflist 1.0.0) and then routed mode
 * (0.4.0): each container's address is in its host's subnet with subnet.env's MTU, containers reach each other
 * across hosts, `--ip` is honoured, `-p 8080:80` answers from the other host, and `podman rm -f` leaves no veth and
 * no reservation.
 *
 * Making podman run inside a lab host (facts of this sandbox): `ip netns exec` mounts a fresh /sys without cgroup
 * hierarchies, so each host gets a long-lived holder process (in the host's network namespace and in a mount
 * namespace of its own, never the root one) that mounts the cgroup v1 hierarchies again (not the cgroup2
 * `unified` one: crun 1.8 refuses the hybrid layout) and private tmpfs on /run, /var/lib and /dev/shm, so that
 * podman's state, locks and caches stay inside it; podman runs in it via nsenter. Storage (vfs), runroot, events
 * (to a file), tmp and config all live under the test's temporary root; the default ulimits are lowered (root
 * here lacks CAP_SYS_RESOURCE). The image is busybox-static imported with `podman import` (no registry).
 * Ending the holders (by PID) and `lab down` remove everything.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, existsSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../../src/base/exec.js';
import { waitFor } from '../../src/base/retry.js';
import { labHostFiles, type LabState } from '../../src/lab/index.js';
import { spawnIn } from '../../src/netns/netns.js';
import { TULLE } from '../helpers/agent.js';
import { overlayLab } from '../helpers/lab.js';
import { ipJson, requireRoot } from '../helpers/netns.js';

requireRoot();

const IMAGE = 'localhost/tulle-busybox';
const CGROUP_V1 = ['cpu', 'cpuacct', 'cpuset', 'memory', 'devices', 'freezer', 'blkio', 'pids'];

interface PodmanHost {
  name: string;
  ns: string;
  root: string;
  subnet: string;
  podman(args: string[], allowFailure?: boolean): Promise<{ stdout: string; stderr: string; status: number | null }>;
}

/** The holder: mounts for podman in a mount namespace of its own inside the host's network namespace. */
function startHolder(t: { after(fn: () => unknown): void }, ns: string): ChildProcess {
  const script = [
    'set -e',
    'mount -t tmpfs tulle-cgroup /sys/fs/cgroup',
    ...CGROUP_V1.map((c) => `mkdir /sys/fs/cgroup/${c} && mount -t cgroup -o ${c} cgroup /sys/fs/cgroup/${c}`),
    'mkdir /sys/fs/cgroup/systemd && mount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd',
    'mount -t tmpfs tulle-run /run && mkdir /run/netns && mount -t tmpfs tulle-varlib /var/lib && mount -t tmpfs tulle-shm /dev/shm',
    'echo ready',
    'exec sleep infinity',
  ].join('\n');
  const child = spawnIn(ns, ['sh', '-c', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const gone = new Promise((resolve) => child.once('close', resolve));
      process.kill(child.pid!, 'SIGTERM');
      await gone;
    }
  });
  return child;
}

async function setUpHost(t: { after(fn: () => unknown): void }, state: LabState, dir: string, host: string, hardNofile: string): Promise<PodmanHost> {
  const files = labHostFiles(state).find((f) => f.host === host)!;
  const ns = state.hosts.find((h) => h.name === host)!.namespace;
  const root = join(dir, host);
  mkdirSync(root);
  const podmanConf = join(root, 'podman');
  mkdirSync(podmanConf);
  writeFileSync(join(podmanConf, 'storage.conf'), `[storage]\ndriver = "vfs"\ngraphroot = "${root}/storage"\nrunroot = "${root}/run"\n`);
  writeFileSync(
    join(podmanConf, 'containers.conf'),
    [
      '[containers]',
      // The re-mounted hierarchies are the root namespace's own: no cgroup for containers, nothing left there.
      'cgroups = "disabled"',
      `default_ulimits = ["nofile=${hardNofile}:${hardNofile}", "nproc=32768:32768"]`,
      '[engine]',
      'cgroup_manager = "cgroupfs"',
      'events_logger = "file"',
      `events_logfile_path = "${root}/events.log"`,
      `tmp_dir = "${root}/tmp"`,
      `static_dir = "${root}/libpod"`,
      `volume_path = "${root}/volumes"`,
      '[network]',
      'network_backend = "cni"',
      // Only what tulle install wrote, plus the reference plugins (portmap).
      `cni_plugin_dirs = ["${root}/opt/cni/bin", "/usr/lib/cni"]`,
      `network_config_dir = "${root}/etc/cni/net.d"`,
      '',
    ].join('\n'),
  );
  const holder = startHolder(t, ns);
  let out = '';
  holder.stdout!.on('data', (d) => (out += d));
  holder.stderr!.on('data', (d) => (out += d));
  await waitFor(() => out.includes('ready') || holder.exitCode !== null, 20_000, `the podman holder in ${ns}`);
  assert.ok(out.includes('ready'), `holder mounts: ${out}`);
  const env = { ...process.env, CONTAINERS_CONF: join(podmanConf, 'containers.conf'), CONTAINERS_STORAGE_CONF: join(podmanConf, 'storage.conf') };
  const podman = (args: string[], allowFailure = false) =>
    run(['nsenter', '-t', String(holder.pid), '-m', '-n', 'podman', '--root', `${root}/storage`, '--runroot', `${root}/run`, ...args], {
      env,
      allowFailure,
      timeoutMs: 120_000,
    });
  const subnet = /^FLANNEL_SUBNET=(.*)$/m.exec(readFileSync(files.subnetFile, 'utf8'))![1]!;
  return { name: host, ns, root, subnet, podman };
}

/** tulle install for one mode: rewrites the conflist in place (idempotent otherwise). */
async function install(state: LabState, h: PodmanHost, mode: 'bridge' | 'routed', cniVersion: string): Promise<void> {
  const files = labHostFiles(state).find((f) => f.host === h.name)!;
  const r = await run(
    [
      process.execPath,
      TULLE,
      'install',
      '--root',
      h.root,
      '--no-systemd',
      '--mode',
      mode,
      '--cni-version',
      cniVersion,
      '--store',
      files.store,
      '--subnet-file',
      files.subnetFile,
      '--cni-data-dir',
      join(h.root, 'var/lib/cni/networks'),
    ],
    { allowFailure: true },
  );
  assert.equal(r.status, 0, r.stderr);
}

/** busybox-static as a one-layer image, with a page for httpd to serve. */
function imageTarball(dir: string): string {
  const rootfs = join(dir, 'rootfs');
  mkdirSync(join(rootfs, 'bin'), { recursive: true });
  mkdirSync(join(rootfs, 'www'));
  copyFileSync('/bin/busybox', join(rootfs, 'bin/busybox'));
  for (const applet of ['sh', 'ip', 'ping', 'httpd', 'sleep', 'cat']) symlinkSync('busybox', join(rootfs, 'bin', applet));
  writeFileSync(join(rootfs, 'www/index.html'), 'served by a podman container on tulle\n');
  return join(dir, 'busybox.tar');
}

const prefixOf = (subnet: string) => subnet.replace(/\.1\/24$/, '.');

test(
  'podman (CNI backend) in a 2-host lab, from the installed files only: subnets, MTU, cross-host ping, --ip, -p, rm -f; bridge and routed',
  { timeout: 900_000 },
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'tulle-podman-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const tarball = imageTarball(dir);
    await run(['tar', '-C', join(dir, 'rootfs'), '-cf', tarball, '.']);
    const hardNofile = (await run(['sh', '-c', 'ulimit -Hn'])).stdout.trim();

    const state = await overlayLab(t, { nodes: 2, underlay: 'switch', store: 'sqlite', pods: 0 });
    const hosts = [await setUpHost(t, state, dir, 'h1', hardNofile), await setUpHost(t, state, dir, 'h2', hardNofile)];
    for (const h of hosts) {
      const r = await h.podman(['import', tarball, IMAGE], true);
      assert.equal(r.status, 0, r.stderr);
    }
    const [h1, h2] = hosts as [PodmanHost, PodmanHost];

    // Both conflist versions podman 4.3.1 reads: the default 1.0.0, and 0.4.0.
    for (const [mode, cniVersion] of [
      ['bridge', '1.0.0'],
      ['routed', '0.4.0'],
    ] as const) {
      await t.test(`${mode} mode, cniVersion ${cniVersion}`, async () => {
        for (const h of hosts) await install(state, h, mode, cniVersion);
        const wanted = `${prefixOf(h1.subnet)}${mode === 'bridge' ? 77 : 78}`;
        const c1 = await h1.podman(
          ['run', '-d', '--name', `web-${mode}`, '--network', 'tulle', '--ip', wanted, '-p', '8080:80', IMAGE, 'httpd', '-f', '-p', '80', '-h', '/www'],
          true,
        );
        assert.equal(c1.status, 0, c1.stderr);
        const c2 = await h2.podman(['run', '-d', '--name', `client-${mode}`, '--network', 'tulle', IMAGE, 'sleep', '600'], true);
        assert.equal(c2.status, 0, c2.stderr);

        // Addresses in each host's subnet (the one asked for on h1), MTU from subnet.env.
        const eth0 = async (h: PodmanHost, name: string) => {
          const r = await h.podman(['exec', name, 'ip', '-o', '-4', 'addr', 'show', 'dev', 'eth0']);
          const link = await h.podman(['exec', name, 'ip', '-o', 'link', 'show', 'dev', 'eth0']);
          return { address: /inet (\S+)/.exec(r.stdout)![1]!, mtu: Number(/mtu (\d+)/.exec(link.stdout)![1]) };
        };
        const a1 = await eth0(h1, `web-${mode}`);
        const a2 = await eth0(h2, `client-${mode}`);
        assert.equal(a1.address, `${wanted}/${mode === 'bridge' ? 24 : 32}`, '--ip honoured');
        assert.ok(a2.address.startsWith(prefixOf(h2.subnet)), `${a2.address} in ${h2.subnet}`);
        assert.deepEqual([a1.mtu, a2.mtu], [1450, 1450]);

        // Across hosts, container to container.
        const ping = await h2.podman(['exec', `client-${mode}`, 'ping', '-c', '1', '-W', '5', wanted], true);
        assert.equal(ping.status, 0, ping.stdout + ping.stderr);

        // -p 8080:80 on h1, from h2's own namespace (a client outside the cluster network).
        const page = await waitFor(
          async () => {
            const r = await run(
              [
                'ip',
                'netns',
                'exec',
                h2.ns,
                'python3',
                '-c',
                "import urllib.request; print(urllib.request.urlopen('http://192.0.2.11:8080/', timeout=5).read().decode(), end='')",
              ],
              { allowFailure: true },
            );
            return r.status === 0 ? r.stdout : undefined;
          },
          60_000,
          'the published port to answer from h2',
        );
        assert.equal(page, 'served by a podman container on tulle\n');

        // podman rm -f (CNI DEL) leaves no veth and no reservation.
        for (const [h, name] of [
          [h1, `web-${mode}`],
          [h2, `client-${mode}`],
        ] as const) {
          const rm = await h.podman(['rm', '-f', name], true);
          assert.equal(rm.status, 0, rm.stderr);
          const links = (await ipJson<Array<{ ifname: string }>>(h.ns, 'link', 'show')).map((l) => l.ifname);
          assert.deepEqual(
            links.filter((n) => n.startsWith('veth')),
            [],
            `no pod veth left on ${h.name}`,
          );
          const ipam = join(h.root, 'var/lib/cni/networks/tulle');
          assert.deepEqual(existsSync(ipam) ? readdirSync(ipam).filter((f) => /^\d/.test(f)) : [], [], `no reservation left on ${h.name}`);
        }
      });
    }
    // Containers ran without cgroups: nothing was added to the (shared) cgroup hierarchies.
    assert.deepEqual(
      CGROUP_V1.filter((c) => existsSync(`/sys/fs/cgroup/${c}/libpod_parent`)),
      [],
    );
  },
);
