/**
 * Seed 001 for real: Debian's dockerd 20.10 in each of two lab hosts (routed underlay, 192.0.2.11 and
 * 198.51.100.12), a user-defined bridge network `mylan` on the same subnet in each (fixed Linux bridge name, the
 * overlay's MTU), the two bridges joined by VXLAN, and real containers 10.47.0.8 (h1) and 10.47.0.9 (h2) pinging
 * each other at L2 with full-size packets, both ways. Values the seeds never use: subnet 10.47.0.0/24, VNI 47.
 *
 * For now the hosts are joined by seed 001's own commands (the block marked JOIN below); once tulle's agent has
 * its L2 mode, the integrator replaces that one block with the agent joining `br-mylan`, and everything else stays.
 *
 * Also shown: the root namespace's iptables/ip6tables/nft rulesets are byte-identical before and after (dockerd's
 * rules stayed in the lab hosts), no docker0 or other test link appeared there, and nothing docker started is left:
 * no process in the holders' mount namespaces, no cgroup, no mount.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../../src/base/exec.js';
import { labDown, labUp, type LabHost } from '../../src/lab/index.js';
import { bridgeOf, busyboxTarball, cgroupDirs, createBridgeNetwork, DockerUnsupportedError, importImage, pidsInMountNs, pingIn, runContainer, startDockerd, type DockerHost } from '../helpers/dockerd.js';
import { labRoot, uniqueLabName } from '../helpers/lab.js';
import { ip, ipJson, bridgeJson, requireRoot } from '../helpers/netns.js';

requireRoot();

const IMAGE = 'tulle-busybox:l2';
const NETWORK = 'mylan';
const SUBNET = '10.47.0.0/24';
const BRIDGE = 'br-mylan';
const VNI = 47;
const PORT = 4789;
const DEVICE = `vxlan${VNI}`;
/** VXLAN over IPv4 costs 50 bytes (outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8). */
const VXLAN_OVERHEAD = 50;
/** Per host: its bridge's gateway address (distinct, so the joined segment holds no duplicate address) and its container. */
const PLAN = [
  { gateway: '10.47.0.1', container: 'c8', ip: '10.47.0.8' },
  { gateway: '10.47.0.2', container: 'c9', ip: '10.47.0.9' },
] as const;

// ---------------------------------------------------------------------------------------------------------------
// JOIN — seed 001's manual setup. INTEGRATOR: replace this block with tulle's agent in L2 mode, e.g. the network
// config {"Network":"10.47.0.0/24","SubnetLen":28,"Backend":{"Type":"vxlan","Mode":"l2","VNI":47,"Port":4789,
// "Flood":"remote"}} under its own prefix, and on each host `tulle agent ... --bridge br-mylan`; then wait until
// `vxlan47` is a port of `br-mylan`. The assertions after the block read the kernel with iproute2 and hold for both.
async function joinBridges(hosts: readonly LabHost[]): Promise<void> {
  await Promise.all(
    hosts.map(async (h, i) => {
      const peer = hosts[1 - i]!;
      // ip link add vxlan47 type vxlan id 47 dstport 4789 remote <peer> dev eth0; brctl addif br-mylan vxlan47
      await ip(h.namespace, 'link', 'add', DEVICE, 'type', 'vxlan', 'id', String(VNI), 'dstport', String(PORT), 'remote', peer.address, 'dev', h.interface);
      await ip(h.namespace, 'link', 'set', DEVICE, 'master', BRIDGE);
      await ip(h.namespace, 'link', 'set', DEVICE, 'up');
    }),
  );
}
// END JOIN ------------------------------------------------------------------------------------------------------

/** The root namespace's packet filter as the tools print it (the *-save header/footer comments carry a time). */
async function rootFirewall(): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const argv of [['iptables-save'], ['ip6tables-save'], ['nft', 'list', 'ruleset']]) {
    const r = await run(argv);
    out[argv.join(' ')] = r.stdout.split('\n').filter((l) => !l.startsWith('#')).join('\n');
  }
  return out;
}

async function rootLinkNames(): Promise<string[]> {
  return (await run(['ip', '-j', 'link', 'show']).then((r) => JSON.parse(r.stdout) as Array<{ ifname: string }>)).map((l) => l.ifname);
}

/** `ip -d -j ARGS` inside a container's network namespace (entered by its init's PID, iproute2 of this machine). */
async function containerIp(pid: number, ...args: string[]): Promise<any[]> {
  return JSON.parse((await run(['nsenter', '-t', String(pid), '-n', 'ip', '-d', '-j', ...args])).stdout);
}

/** Can this kernel make a VXLAN device at all? (The only reason to skip.) */
async function vxlanUnsupported(ns: string): Promise<string | undefined> {
  const probe = 'tlprobe0';
  const r = await run(['ip', '-n', ns, 'link', 'add', probe, 'type', 'vxlan', 'id', '1', 'dstport', String(PORT)], { allowFailure: true });
  if (r.status !== 0) return `the kernel cannot create a VXLAN device: ${r.stderr.trim()}`;
  await ip(ns, 'link', 'del', probe);
  return undefined;
}

test('seed 001 for real: dockerd in two lab hosts, mylan bridges joined by VXLAN, containers ping at L2 with full-size DF packets both ways; root namespace untouched, nothing left', { timeout: 300_000 }, async (t) => {
  const started = Date.now();
  const firewallBefore = await rootFirewall();
  const rootLinksBefore = await rootLinkNames();
  const dir = mkdtempSync(join(tmpdir(), 'tulle-docker-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const tarball = await busyboxTarball(dir);
  const hardNofile = (await run(['sh', '-c', 'ulimit -Hn'])).stdout.trim();

  const lab = uniqueLabName('d');
  t.after(() => labDown(lab, { root: labRoot, graceMs: 2000 }));
  const state = await labUp({ name: lab, nodes: 2, underlay: 'routed', root: labRoot });
  const labHosts = state.hosts;
  const skip = await vxlanUnsupported(labHosts[0]!.namespace);
  if (skip) return t.skip(skip);

  const underlayMtu = (await ipJson(labHosts[0]!.namespace, 'link', 'show', labHosts[0]!.interface))[0].mtu as number;
  const mtu = underlayMtu - VXLAN_OVERHEAD;
  let hosts: DockerHost[];
  try {
    hosts = await Promise.all(labHosts.map((h) => startDockerd(t, { name: h.name, ns: h.namespace, root: join(dir, h.name), hardNofile })));
  } catch (err) {
    if (err instanceof DockerUnsupportedError) return t.skip(err.message);
    throw err;
  }
  const pids = await Promise.all(
    hosts.map(async (h, i) => {
      await importImage(h, tarball, IMAGE);
      await createBridgeNetwork(h, { name: NETWORK, subnet: SUBNET, gateway: PLAN[i]!.gateway, bridge: BRIDGE, mtu });
      assert.equal(await bridgeOf(h, NETWORK), BRIDGE, `${h.name}: docker reports the fixed bridge name`);
      return runContainer(h, { name: PLAN[i]!.container, network: NETWORK, ip: PLAN[i]!.ip, image: IMAGE });
    }),
  );
  // Without the option dockerd names the bridge itself (seed 001's br-<id>): what a per-host bridge override names.
  await hosts[0]!.docker(['network', 'create', '--driver', 'bridge', '--subnet', '10.48.0.0/24', 'generated']);
  const generated = await bridgeOf(hosts[0]!, 'generated');
  assert.match(generated, /^br-[0-9a-f]{12}$/);
  assert.equal((await ipJson(labHosts[0]!.namespace, 'link', 'show', generated))[0].linkinfo.info_kind, 'bridge');
  t.diagnostic(`dockerd up, images imported, containers running after ${Date.now() - started} ms`);

  await joinBridges(labHosts);

  // The kernel state the join must leave, read with iproute2 on each host.
  for (const [i, h] of labHosts.entries()) {
    const peer = labHosts[1 - i]!;
    const [link] = await ipJson(h.namespace, 'link', 'show', DEVICE);
    assert.equal(link.linkinfo.info_kind, 'vxlan', `${h.name}: ${DEVICE} kind`);
    const vx = link.linkinfo.info_data;
    assert.deepEqual({ id: vx.id, port: vx.port, remote: vx.remote, link: vx.link, master: link.master, mtu: link.mtu, up: link.flags.includes('UP') }, { id: VNI, port: PORT, remote: peer.address, link: h.interface, master: BRIDGE, mtu, up: true }, `${h.name}: ${DEVICE}`);
    const ports = ((await ipJson<Array<{ ifname: string; mtu: number }>>(h.namespace, 'link', 'show', 'master', BRIDGE))).map((p) => p.ifname).sort();
    assert.equal(ports.length, 2, `${h.name}: ${BRIDGE} has the VXLAN device and one container veth: ${ports.join(' ')}`);
    assert.ok(ports.includes(DEVICE) && ports.some((p) => p.startsWith('veth')), `${h.name}: ${BRIDGE} ports ${ports.join(' ')}`);
    const fdb = (await bridgeJson<Array<{ mac: string; dst?: string }>>(h.namespace, 'fdb', 'show', 'dev', DEVICE)).filter((e) => e.dst);
    assert.ok(fdb.some((e) => e.mac === '00:00:00:00:00:00' && e.dst === peer.address), `${h.name}: flood entry to ${peer.address}: ${JSON.stringify(fdb)}`);
    const [eth0] = await containerIp(pids[i]!, 'link', 'show', 'eth0');
    assert.equal(eth0.mtu, mtu, `${h.name}: ${PLAN[i]!.container} eth0 has the overlay MTU`);
  }

  t.diagnostic(`bridges joined and kernel state checked after ${Date.now() - started} ms`);
  // Full-size packets both ways: busybox ping in the container (docker exec), then iputils ping with DF forced
  // (-M do) in the same container's network namespace, and one byte more refused locally (the MTU is the overlay's).
  const payload = mtu - 28;
  for (const [i, h] of hosts.entries()) {
    const target = PLAN[1 - i]!.ip;
    // A lost first packet on a loaded machine is not a failure: asked again until a generous deadline.
    let busybox = await pingIn(h, PLAN[i]!.container, target, { size: payload });
    const deadline = Date.now() + 30_000;
    while (busybox.status !== 0 && Date.now() < deadline) busybox = await pingIn(h, PLAN[i]!.container, target, { size: payload });
    assert.equal(busybox.status, 0, `${PLAN[i]!.container} -> ${target} (busybox ping -s ${payload}): ${busybox.stdout}${busybox.stderr}\n${h.log().slice(-1000)}`);
    assert.match(busybox.stdout, new RegExp(`${payload + 8} bytes from ${target.replace(/\./g, '\\.')}`));
    const df = await run(['nsenter', '-t', String(pids[i]), '-n', 'ping', '-M', 'do', '-s', String(payload), '-c', '1', '-W', '5', target], { allowFailure: true });
    assert.equal(df.status, 0, `${PLAN[i]!.container} -> ${target} (ping -M do -s ${payload}): ${df.stdout}${df.stderr}`);
    const over = await run(['nsenter', '-t', String(pids[i]), '-n', 'ping', '-M', 'do', '-s', String(payload + 1), '-c', '1', '-W', '1', target], { allowFailure: true });
    assert.notEqual(over.status, 0, `one byte over the MTU must not pass with DF: ${over.stdout}`);
    assert.match(over.stdout + over.stderr, /message too long|mtu/i);
  }
  // L2, not routed: each container learned the other's MAC by ARP on the joined segment.
  const macs = await Promise.all(pids.map(async (pid) => (await containerIp(pid, 'link', 'show', 'eth0'))[0].address as string));
  for (const [i, pid] of pids.entries()) {
    const neigh = await containerIp(pid, 'neigh', 'show', PLAN[1 - i]!.ip);
    assert.equal(neigh[0]?.lladdr, macs[1 - i], `${PLAN[i]!.container} reached ${PLAN[1 - i]!.ip} at its own MAC: ${JSON.stringify(neigh)}`);
  }

  t.diagnostic(`pings done after ${Date.now() - started} ms`);
  // Stop both daemons (the same as after a failure), then nothing of theirs may be left.
  await Promise.all(hosts.map((h) => h.stop()));
  t.diagnostic(`daemons stopped after ${Date.now() - started} ms`);
  for (const h of hosts) {
    assert.deepEqual(pidsInMountNs(h.mountNs), [], `${h.name}: no process left in the holder's mount namespace`);
    assert.deepEqual(cgroupDirs(h.cgroupParent), [], `${h.name}: no cgroup ${h.cgroupParent} left`);
  }
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.includes(dir) || l.includes('tulle-docker') || /docker|containerd/.test(l.split(' ')[4] ?? ''));
  assert.deepEqual(mounts, [], 'no docker mount in the root mount namespace');
  const rootLinksAfter = await rootLinkNames();
  assert.deepEqual(rootLinksAfter.filter((n) => !rootLinksBefore.includes(n) && /^(docker0|br-|veth|vxlan)/.test(n)), [], 'no docker0, bridge, veth or vxlan device in the root namespace');
  assert.deepEqual(await rootFirewall(), firewallBefore, 'the root namespace rulesets are unchanged');
  const active = await run(['systemctl', 'is-active', 'docker'], { allowFailure: true });
  assert.notEqual(active.stdout.trim(), 'active', 'the packaged docker service is not running');
  t.diagnostic(`whole run ${Date.now() - started} ms`);
});
