/**
 * A real dockerd (Debian's docker.io 20.10) inside a lab host, for seed 001's "containers on two hosts' Docker
 * bridges" test. Everything it writes lives under one temporary root the caller owns; `stop()` (also run after the
 * test, whether it passed or failed) ends exactly what was started: the processes by PID, the containers by their
 * cgroup, then removes that cgroup tree.
 *
 * Facts of this sandbox that shape it (found by hand, issue 13):
 * - `ip netns exec` mounts a fresh /sys without cgroup hierarchies ("Devices cgroup isn't mounted"), so each host
 *   gets a long-lived holder process, in the host's network namespace and a mount namespace of its own, that mounts
 *   the cgroup v1 hierarchies again (not the cgroup2 `unified` one: runc refuses the hybrid layout); dockerd runs
 *   in it through `nsenter -t <holder> -m -n`.
 * - dockerd 20.10 writes /etc/docker/key.json, /run/docker/plugins and containerd's /run/containerd/s whatever
 *   --data-root/--exec-root say, so the holder mounts a private tmpfs on /run and binds a directory of the temporary
 *   root on /etc/docker: nothing reaches the machine's own /run or /etc.
 * - The re-mounted hierarchies are the machine's own, so containers get `--cgroup-parent` with a name unique to
 *   this host and run: their cgroups are found, emptied and removed exactly.
 * - Root here lacks CAP_SYS_RESOURCE: `--oom-score-adjust 0` and `--default-ulimit nofile=1024:<hard limit>`.
 * - Images come from `docker import` of a busybox-static tarball (no registry); /usr/bin/docker and
 *   /usr/sbin/dockerd are called by path (another docker CLI may come first in PATH).
 */
import { randomBytes } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, openSync, closeSync, readFileSync, readdirSync, readlinkSync, rmdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { run, type RunResult } from '../../src/base/exec.js';
import { sleep, waitFor } from '../../src/base/retry.js';
import { spawnIn } from '../../src/netns/netns.js';

export const DOCKER = '/usr/bin/docker';
export const DOCKERD = '/usr/sbin/dockerd';
/** The cgroup v1 controllers dockerd's cgroupfs driver needs (plus the named `systemd` hierarchy). */
export const CGROUP_V1 = ['cpu', 'cpuacct', 'cpuset', 'memory', 'devices', 'freezer', 'blkio', 'pids'] as const;
const CGROUP_HIERARCHIES = [...CGROUP_V1, 'systemd'];

/** This kernel cannot run dockerd as the test needs it (the one reason such a test skips instead of failing). */
export class DockerUnsupportedError extends Error {}

export interface DockerHost {
  /** The lab host, e.g. `h1`. */
  name: string;
  /** Its network namespace. */
  ns: string;
  /** This host's part of the temporary root. */
  root: string;
  /** Parent cgroup of every container of this host (the same name in each hierarchy). */
  cgroupParent: string;
  /** The holder's mount namespace (`mnt:[inode]`): dockerd, containerd and the shims live in it. */
  mountNs: string;
  holderPid: number;
  dockerdPid: number;
  /** `/usr/bin/docker` against this host's daemon. */
  docker(args: readonly string[], options?: { allowFailure?: boolean; timeoutMs?: number }): Promise<RunResult>;
  /** The daemon's log so far (for failure messages). */
  log(): string;
  /** End everything this host started; safe to call more than once. */
  stop(): Promise<void>;
}

/** busybox-static as a rootfs tarball for `docker import` (the applets the tests use as symlinks). */
export async function busyboxTarball(dir: string): Promise<string> {
  const rootfs = join(dir, 'rootfs');
  mkdirSync(join(rootfs, 'bin'), { recursive: true });
  copyFileSync('/bin/busybox', join(rootfs, 'bin/busybox'));
  for (const applet of ['sh', 'ip', 'ping', 'sleep', 'cat']) symlinkSync('busybox', join(rootfs, 'bin', applet));
  const tarball = join(dir, 'busybox.tar');
  await run(['tar', '-C', rootfs, '-cf', tarball, '.']);
  return tarball;
}

/** The holder: the cgroup hierarchies, a private /run and /etc/docker, then sleep until ended by PID. */
function startHolder(ns: string, etcDocker: string): ChildProcess {
  const script = [
    'set -e',
    'mount -t tmpfs tulle-cgroup /sys/fs/cgroup',
    // A kernel whose controllers are all bound to cgroup2 (cgroup_no_v1=...) refuses these: said on one line.
    ...[...CGROUP_V1.map((c) => [c, c]), ['systemd', 'none,name=systemd']].map(
      ([dir, opts]) => `mkdir /sys/fs/cgroup/${dir} && mount -t cgroup -o ${opts} cgroup /sys/fs/cgroup/${dir} || { echo "no-cgroup-v1 ${dir}"; exit 3; }`,
    ),
    'mount -t tmpfs tulle-docker-run /run',
    `mount --bind "$1" /etc/docker`,
    'echo ready',
    'exec sleep infinity',
  ].join('\n');
  return spawnIn(ns, ['sh', '-c', script, 'holder', etcDocker], { stdio: ['ignore', 'pipe', 'pipe'] });
}

function mountNsOf(pid: number): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/ns/mnt`);
  } catch {
    return undefined;
  }
}

/** Every PID whose mount namespace is `mountNs` (processes started in the holder; nothing else can be there). */
export function pidsInMountNs(mountNs: string): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .map(Number)
    .filter((pid) => pid !== process.pid && mountNsOf(pid) === mountNs);
}

/** Directories of `parent` in every hierarchy mounted in this (the root) mount namespace, deepest first. */
export function cgroupDirs(parent: string): string[] {
  const dirs: string[] = [];
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) walk(join(dir, e.name));
    dirs.push(dir);
  };
  for (const h of CGROUP_HIERARCHIES) {
    const top = join('/sys/fs/cgroup', h, parent);
    if (existsSync(top)) walk(top);
  }
  return dirs;
}

function cgroupPids(parent: string): number[] {
  const pids = new Set<number>();
  for (const dir of cgroupDirs(parent)) {
    try {
      for (const line of readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n')) if (line) pids.add(Number(line));
    } catch {
      // removed meanwhile
    }
  }
  return [...pids];
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function killAll(pids: readonly number[], signal: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  }
}

async function waitGone(pids: () => number[], ms: number): Promise<number[]> {
  const deadline = Date.now() + ms;
  let left = pids();
  while (left.length && Date.now() < deadline) {
    await sleep(50);
    left = pids();
  }
  return left;
}

/**
 * Start dockerd in lab host `o.name` (network namespace `o.ns`), its files under `o.root` (created here, removed by
 * the caller). Resolves once the daemon answers; `t.after` stops it (also when the test failed).
 */
export async function startDockerd(
  t: { after(fn: () => unknown): void },
  o: { name: string; ns: string; root: string; hardNofile: string },
): Promise<DockerHost> {
  const root = o.root;
  for (const d of ['etc-docker', 'data', 'cli']) mkdirSync(join(root, d), { recursive: true });
  const cgroupParent = `tulle-docker-${process.pid.toString(36)}-${randomBytes(3).toString('hex')}-${o.name}`;
  const socket = join(root, 'docker.sock');
  // The CLI talks to this host's socket and keeps its config here, never in ~/.docker.
  const env = { ...process.env, DOCKER_CONFIG: join(root, 'cli'), DOCKER_HOST: `unix://${socket}` };
  const docker = (args: readonly string[], options: { allowFailure?: boolean; timeoutMs?: number } = {}) =>
    run([DOCKER, ...args], { env, allowFailure: options.allowFailure ?? false, timeoutMs: options.timeoutMs ?? 120_000 });
  const logFile = join(root, 'dockerd.log');
  const log = () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : '');

  const holder = startHolder(o.ns, join(root, 'etc-docker'));
  let holderOut = '';
  holder.stdout!.on('data', (d) => (holderOut += d));
  holder.stderr!.on('data', (d) => (holderOut += d));
  // Filled in as they start; stop() may run before (a failed start) and ends only what exists.
  const started: { dockerd?: ChildProcess } = {};
  let mountNs = '';
  let stopped: Promise<void> | undefined;

  const stop = () =>
    (stopped ??= (async () => {
      const dockerd = started.dockerd;
      if (dockerd?.pid && alive(dockerd.pid)) {
        // Containers first, by force: on SIGTERM with containers still running, dockerd took 11 s to exit here
        // (1 s after `rm -f`).
        const ids = (await docker(['ps', '-aq'], { allowFailure: true, timeoutMs: 10_000 })).stdout.split('\n').filter(Boolean);
        if (ids.length) await docker(['rm', '-f', ...ids], { allowFailure: true, timeoutMs: 30_000 });
        killAll([dockerd.pid], 'SIGTERM');
        if ((await waitGone(() => (alive(dockerd.pid!) ? [dockerd.pid!] : []), 20_000)).length) killAll([dockerd.pid], 'SIGKILL');
      }
      // Whatever is left: containers by their cgroup, containerd and shims by the holder's mount namespace.
      const leftovers = () => [...cgroupPids(cgroupParent), ...(mountNs ? pidsInMountNs(mountNs) : [])].filter((p) => p !== holder.pid);
      killAll(leftovers(), 'SIGTERM');
      if ((await waitGone(leftovers, 5_000)).length) {
        killAll(leftovers(), 'SIGKILL');
        await waitGone(leftovers, 10_000);
      }
      if (holder.pid && holder.exitCode === null && holder.signalCode === null) {
        const gone = new Promise((resolve) => holder.once('close', resolve));
        killAll([holder.pid], 'SIGKILL');
        await gone;
      }
      // An emptied cgroup can take a moment to become removable; children go before parents.
      await waitFor(
        () => {
          for (const dir of cgroupDirs(cgroupParent)) {
            try {
              rmdirSync(dir);
            } catch {
              // still busy: tried again
            }
          }
          return cgroupDirs(cgroupParent).length === 0;
        },
        10_000,
        `the cgroups ${cgroupParent} of ${o.name} to be removable`,
      );
    })());
  t.after(stop);

  await waitFor(() => holderOut.includes('ready') || holder.exitCode !== null, 20_000, `the docker holder in ${o.ns}`);
  const noV1 = /^no-cgroup-v1 (\S+)$/m.exec(holderOut);
  if (noV1) throw new DockerUnsupportedError(`the kernel cannot mount the cgroup v1 hierarchy ${noV1[1]} that dockerd 20.10 needs: ${holderOut.trim()}`);
  if (!holderOut.includes('ready')) throw new Error(`the docker holder in ${o.ns} failed: ${holderOut}`);
  mountNs = mountNsOf(holder.pid!)!;

  const logFd = openSync(logFile, 'a');
  // nsenter without -p execs dockerd, so this child's PID is the daemon's.
  const dockerd = (started.dockerd = spawn(
    'nsenter',
    [
      '-t',
      String(holder.pid),
      '-m',
      '-n',
      DOCKERD,
      '--host',
      `unix://${socket}`,
      '--data-root',
      join(root, 'data'),
      '--exec-root',
      '/run/docker',
      '--pidfile',
      join(root, 'dockerd.pid'),
      // vfs: a plain copy per layer, works on any filesystem (the image is one 2 MB layer).
      '--storage-driver',
      'vfs',
      '--cgroup-parent',
      cgroupParent,
      '--oom-score-adjust',
      '0',
      '--default-ulimit',
      `nofile=1024:${o.hardNofile}`,
      '--log-level',
      'warn',
      // A container's `sleep` as PID 1 ignores SIGTERM: do not wait the default 15 s for it at shutdown.
      '--shutdown-timeout',
      '2',
    ],
    { stdio: ['ignore', logFd, logFd] },
  ));
  closeSync(logFd);

  await waitFor(
    async () => {
      if (dockerd.exitCode !== null || dockerd.signalCode !== null) throw new Error(`dockerd in ${o.ns} exited: ${log().slice(-2000)}`);
      return (await docker(['version', '--format', '{{.Server.Version}}'], { allowFailure: true, timeoutMs: 10_000 })).status === 0;
    },
    60_000,
    `dockerd in ${o.ns} to answer`,
    200,
  ).catch((err) => {
    throw new Error(`${(err as Error).message}\ndockerd log:\n${log().slice(-2000)}`);
  });

  return { name: o.name, ns: o.ns, root, cgroupParent, mountNs, holderPid: holder.pid!, dockerdPid: dockerd.pid!, docker, log, stop };
}

/** `docker import` the busybox tarball as `image`. */
export async function importImage(h: DockerHost, tarball: string, image: string): Promise<void> {
  await h.docker(['import', tarball, image]);
}

/**
 * `docker network create --driver bridge` with a fixed Linux bridge name (so another part can join it) and the
 * overlay's MTU (so full-size frames fit the VXLAN port).
 */
export async function createBridgeNetwork(h: DockerHost, o: { name: string; subnet: string; gateway: string; bridge: string; mtu: number }): Promise<void> {
  await h.docker([
    'network',
    'create',
    '--driver',
    'bridge',
    '--subnet',
    o.subnet,
    '--gateway',
    o.gateway,
    '-o',
    `com.docker.network.bridge.name=${o.bridge}`,
    '-o',
    `com.docker.network.driver.mtu=${o.mtu}`,
    o.name,
  ]);
}

/**
 * The Linux bridge of a bridge network on this host: the `com.docker.network.bridge.name` option when given, else
 * the name dockerd generates, `br-` and the first 12 hex digits of the network ID (seed 001's `br-23de81e9cde3`).
 */
export async function bridgeOf(h: DockerHost, network: string): Promise<string> {
  const [info] = JSON.parse((await h.docker(['network', 'inspect', network])).stdout) as Array<{ Id: string; Options?: Record<string, string> }>;
  return info!.Options?.['com.docker.network.bridge.name'] ?? `br-${info!.Id.slice(0, 12)}`;
}

/** `docker run -d` a container with a fixed address on `network`, sleeping; resolves with its init's PID. */
export async function runContainer(h: DockerHost, o: { name: string; network: string; ip: string; image: string }): Promise<number> {
  await h.docker(['run', '-d', '--name', o.name, '--network', o.network, '--ip', o.ip, o.image, 'sleep', '3600']);
  return Number((await h.docker(['inspect', '--format', '{{.State.Pid}}', o.name])).stdout.trim());
}

/** `docker exec NAME ping -c COUNT -W 5 [-s SIZE] TARGET` (busybox ping), never throwing: the caller checks. */
export function pingIn(h: DockerHost, container: string, target: string, o: { size?: number; count?: number } = {}): Promise<RunResult> {
  return h.docker(['exec', container, 'ping', '-c', String(o.count ?? 1), '-W', '5', ...(o.size !== undefined ? ['-s', String(o.size)] : []), target], {
    allowFailure: true,
  });
}
