/**
 * Seed 001 for real: Debian's dockerd 20.10 in each of two lab hosts (routed underlay, 192.0.2.11 and
 * 198.51.100.12), a user-defined bridge network `mylan` on the same subnet in each (fixed Linux bridge name, the
 * overlay's MTU), the two bridges joined by tulle's agent in L2 mode (Flood "remote": the `vxlan47` it makes
 * joins Docker's `br-mylan`), and real containers 10.47.0.8 (h1) and 10.47.0.9 (h2) pinging each other at L2 with
 * full-size packets, both ways. Values the seeds never use: subnet 10.47.0.0/24, VNI 47.
 *
 * Also shown: Docker's bridge keeps its addresses, MAC, MTU, settings and container port while tulle's device is
 * on it and after `tulle agent --cleanup` took the device off (the host's rulesets are then as dockerd left them);
 * the root namespace's iptables/ip6tables/nft rulesets are byte-identical before and after (dockerd's and tulle's
 * rules stayed in the lab hosts), no docker0 or other test link appeared there, and nothing docker started is left:
 * no process in the holders' mount namespaces, no cgroup, no mount.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../../src/base/exec.js';
import {
  hostDir,
  labDown,
  labUp,
  overlaySteps,
  runStoreCommand,
  runTulleIn,
  startAgent,
  stopAgent,
  subnetFileOf,
  waitConverged,
  type LabState,
} from '../../src/lab/index.js';
import {
  bridgeOf,
  busyboxTarball,
  cgroupDirs,
  createBridgeNetwork,
  DockerUnsupportedError,
  importImage,
  pidsInMountNs,
  pingIn,
  runContainer,
  startDockerd,
  type DockerHost,
} from '../helpers/dockerd.js';
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

/**
 * The L2 network that joins the two bridges: seed 001's point-to-point device (`remote <peer>`), because the seed
 * shows exactly that between two hosts, and its Docker step's `group 229.1.1.1` cannot cross the lab's routed
 * underlay. Written once with `tulle config put --prefix /tulle.io/l2` (the lab's overlay step, SQLite store).
 */
const CONFIG = JSON.stringify({ Network: SUBNET, SubnetLen: 28, Backend: { Type: 'vxlan', Mode: 'l2', VNI, Port: PORT, Flood: 'remote' } });

/** The options every `tulle agent` of this test gets besides the lab's own (store, prefix, files under the host's dir). */
const AGENT_ARGS = ['--bridge', BRIDGE] as const;

/**
 * JOIN: one `tulle agent --bridge br-mylan` per host, in the host's namespace (after `docker network create`: the
 * bridge exists only then), recorded in the lab state so that `lab down` ends it by PID also when the test fails;
 * resolves once each host leased a slice and its vxlan47 names the other host as `remote` and sits on a bridge.
 */
async function joinBridges(state: LabState): Promise<void> {
  for (const h of state.hosts) startAgent(state, h.name, AGENT_ARGS);
  await waitConverged(
    state,
    state.hosts.map((h) => h.name),
    30_000,
  );
}

/** The agent leaves: SIGTERM by PID, then `tulle agent --cleanup` with the same options. */
async function leave(state: LabState, host: string): Promise<void> {
  await stopAgent(state, host);
  const h = state.hosts.find((x) => x.name === host)!;
  const o = state.overlay!;
  await runTulleIn(h.namespace, [
    'agent',
    '--cleanup',
    '--store',
    o.store,
    '--prefix',
    o.prefix!,
    '--subnet-file',
    subnetFileOf(state, host),
    '--state-dir',
    hostDir(state, host),
    ...AGENT_ARGS,
  ]);
}

/**
 * A namespace's packet filter as the tools print it: the root namespace's (`ns` undefined) or a lab host's. The
 * *-save header/footer comments carry a time, and `nft -s` leaves out the counters that traffic moves.
 */
async function firewall(ns?: string): Promise<{ iptables: string; ip6tables: string; nft: string }> {
  const read = async (argv: string[]) =>
    (await run(ns ? ['ip', 'netns', 'exec', ns, ...argv] : argv)).stdout
      .split('\n')
      .filter((l) => !l.startsWith('#'))
      .join('\n');
  return { iptables: await read(['iptables-save']), ip6tables: await read(['ip6tables-save']), nft: await read(['nft', '-s', 'list', 'ruleset']) };
}

/** A bridge's or bridge port's settings as `ip -d -j` reports them, without the timers that run by themselves. */
function withoutTimers(data: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(data).filter(([k]) => !k.endsWith('_timer')));
}

/**
 * What dockerd set on its bridge, as iproute2 reports it: the link (MAC, MTU, flags, the bridge's settings without
 * its running timers), its addresses and its container ports with their bridge-port settings. tulle's device
 * joining is the only difference allowed while the agent runs, and none after it left.
 */
async function dockerBridge(ns: string) {
  const [link] = await ipJson(ns, 'link', 'show', BRIDGE);
  const settings = withoutTimers(link.linkinfo.info_data);
  const [addr] = await ipJson(ns, 'addr', 'show', 'dev', BRIDGE);
  const ports = (
    await ipJson<Array<{ ifname: string; address: string; mtu: number; linkinfo: { info_slave_data: Record<string, unknown> } }>>(
      ns,
      'link',
      'show',
      'master',
      BRIDGE,
    )
  )
    .filter((p) => p.ifname !== DEVICE)
    .map((p) => ({ ifname: p.ifname, address: p.address, mtu: p.mtu, port: withoutTimers(p.linkinfo.info_slave_data) }));
  return {
    mac: link.address,
    mtu: link.mtu,
    flags: [...link.flags].sort(),
    settings,
    addrs: (addr.addr_info as Array<{ family: string; local: string; prefixlen: number }>).map((a) => `${a.local}/${a.prefixlen}`).sort(),
    ports,
  };
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

test(
  "seed 001 for real: dockerd in two lab hosts, mylan bridges joined by tulle's L2 agent, containers ping at L2 with full-size DF packets both ways; Docker's bridge untouched also after the agent leaves; root namespace untouched, nothing left",
  { timeout: 300_000 },
  async (t) => {
    const started = Date.now();
    const firewallBefore = await firewall();
    const rootLinksBefore = await rootLinkNames();
    const dir = mkdtempSync(join(tmpdir(), 'tulle-docker-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const tarball = await busyboxTarball(dir);
    const hardNofile = (await run(['sh', '-c', 'ulimit -Hn'])).stdout.trim();

    const lab = uniqueLabName('d');
    t.after(() => labDown(lab, { root: labRoot, graceMs: 2000 }));
    // The lab's SQLite store with the L2 network config (`tulle config put --prefix /tulle.io/l2`), no agent yet.
    const state = await labUp({
      name: lab,
      nodes: 2,
      underlay: 'routed',
      root: labRoot,
      afterUnderlay: overlaySteps({ store: 'sqlite', mode: 'bridge', pods: 0, agents: 0, configText: CONFIG }),
    });
    assert.equal(state.overlay?.prefix, '/tulle.io/l2');
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
    const dockerBefore = await Promise.all(labHosts.map((h) => dockerBridge(h.namespace)));
    const hostFirewallBefore = await Promise.all(labHosts.map((h) => firewall(h.namespace)));
    assert.ok(
      dockerBefore.every((b) => b.ports.length === 1 && b.ports[0]!.ifname.startsWith('veth')),
      `one container port per bridge: ${JSON.stringify(dockerBefore.map((b) => b.ports))}`,
    );
    assert.match(hostFirewallBefore[0]!.iptables, /-A POSTROUTING -s 10\.47\.0\.0\/24 ! -o br-mylan -j MASQUERADE/, "dockerd's own rules are in the lab host");

    await joinBridges(state);

    // The kernel state the join must leave, read with iproute2 on each host.
    for (const [i, h] of labHosts.entries()) {
      const peer = labHosts[1 - i]!;
      const [link] = await ipJson(h.namespace, 'link', 'show', DEVICE);
      assert.equal(link.linkinfo.info_kind, 'vxlan', `${h.name}: ${DEVICE} kind`);
      const vx = link.linkinfo.info_data;
      // As src/overlay/l2.ts designs "remote": ip link add vxlan47 type vxlan id 47 local <own> remote <peer> dev eth0
      // dstport 4789 learning noudpcsum; ip link set vxlan47 mtu <underlay - 50> master br-mylan up.
      const got = {
        id: vx.id,
        port: vx.port,
        local: vx.local,
        remote: vx.remote,
        group: vx.group,
        link: vx.link,
        learning: vx.learning,
        udpCsum: vx.udp_csum,
        master: link.master,
        mtu: link.mtu,
        up: link.flags.includes('UP'),
      };
      assert.deepEqual(
        got,
        {
          id: VNI,
          port: PORT,
          local: h.address,
          remote: peer.address,
          group: undefined,
          link: h.interface,
          learning: true,
          udpCsum: false,
          master: BRIDGE,
          mtu,
          up: true,
        },
        `${h.name}: ${DEVICE}`,
      );
      const ports = (await ipJson<Array<{ ifname: string; mtu: number }>>(h.namespace, 'link', 'show', 'master', BRIDGE)).map((p) => p.ifname).sort();
      assert.deepEqual(ports, [dockerBefore[i]!.ports[0]!.ifname, DEVICE].sort(), `${h.name}: ${BRIDGE} has its container veth and tulle's device`);
      assert.deepEqual(await dockerBridge(h.namespace), dockerBefore[i], `${h.name}: ${BRIDGE} itself is as dockerd made it while tulle's device is on it`);
      // The flood entry of a point-to-point device is the kernel's own default entry, the one toward the peer.
      const flood = (await bridgeJson<Array<{ mac: string; dst?: string; state?: string }>>(h.namespace, 'fdb', 'show', 'dev', DEVICE)).filter(
        (e) => e.mac === '00:00:00:00:00:00',
      );
      assert.deepEqual(
        flood.map((e) => ({ dst: e.dst, state: e.state })),
        [{ dst: peer.address, state: 'permanent' }],
        `${h.name}: one flood entry, to ${peer.address}`,
      );
      // What dockerd wrote in the host stays; tulle's rules come on top.
      const rules = await firewall(h.namespace);
      for (const line of hostFirewallBefore[i]!.iptables.split('\n').filter((l) => l.startsWith('-A')))
        assert.ok(rules.iptables.includes(line), `${h.name}: dockerd's rule ${line} is still there`);
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
      assert.equal(
        busybox.status,
        0,
        `${PLAN[i]!.container} -> ${target} (busybox ping -s ${payload}): ${busybox.stdout}${busybox.stderr}\n${h.log().slice(-1000)}`,
      );
      assert.match(busybox.stdout, new RegExp(`${payload + 8} bytes from ${target.replace(/\./g, '\\.')}`));
      const df = await run(['nsenter', '-t', String(pids[i]), '-n', 'ping', '-M', 'do', '-s', String(payload), '-c', '1', '-W', '5', target], {
        allowFailure: true,
      });
      assert.equal(df.status, 0, `${PLAN[i]!.container} -> ${target} (ping -M do -s ${payload}): ${df.stdout}${df.stderr}`);
      const over = await run(['nsenter', '-t', String(pids[i]), '-n', 'ping', '-M', 'do', '-s', String(payload + 1), '-c', '1', '-W', '1', target], {
        allowFailure: true,
      });
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
    // The agents leave (SIGTERM by PID, then `tulle agent --cleanup` with the same options): tulle's device is gone,
    // Docker's bridge, its container port and the host's rulesets are as dockerd left them, the leases are released.
    for (const h of labHosts) await leave(state, h.name);
    for (const [i, h] of labHosts.entries()) {
      assert.notEqual((await run(['ip', '-n', h.namespace, 'link', 'show', DEVICE], { allowFailure: true })).status, 0, `${h.name}: ${DEVICE} is gone`);
      assert.deepEqual(
        await dockerBridge(h.namespace),
        dockerBefore[i],
        `${h.name}: ${BRIDGE}, its addresses, settings and container port are as dockerd made them`,
      );
      assert.deepEqual(await firewall(h.namespace), hostFirewallBefore[i], `${h.name}: the host's rulesets are as dockerd left them`);
    }
    assert.deepEqual(JSON.parse((await runStoreCommand(state, ['leases', '--json'])).stdout), [], 'both leases released');
    // The containers are on one segment no more: the join was tulle's alone.
    const apart = await run(['nsenter', '-t', String(pids[0]), '-n', 'ping', '-c', '1', '-W', '1', PLAN[1].ip], { allowFailure: true });
    assert.notEqual(apart.status, 0, `${PLAN[0].container} still reaches ${PLAN[1].ip} without tulle's device: ${apart.stdout}`);
    t.diagnostic(`agents left after ${Date.now() - started} ms`);
    // Stop both daemons (the same as after a failure), then nothing of theirs may be left.
    await Promise.all(hosts.map((h) => h.stop()));
    t.diagnostic(`daemons stopped after ${Date.now() - started} ms`);
    for (const h of hosts) {
      assert.deepEqual(pidsInMountNs(h.mountNs), [], `${h.name}: no process left in the holder's mount namespace`);
      assert.deepEqual(cgroupDirs(h.cgroupParent), [], `${h.name}: no cgroup ${h.cgroupParent} left`);
    }
    const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .filter((l) => l.includes(dir) || l.includes('tulle-docker') || /docker|containerd/.test(l.split(' ')[4] ?? ''));
    assert.deepEqual(mounts, [], 'no docker mount in the root mount namespace');
    const rootLinksAfter = await rootLinkNames();
    assert.deepEqual(
      rootLinksAfter.filter((n) => !rootLinksBefore.includes(n) && /^(docker0|br-|veth|vxlan)/.test(n)),
      [],
      'no docker0, bridge, veth or vxlan device in the root namespace',
    );
    assert.deepEqual(await firewall(), firewallBefore, 'the root namespace rulesets are unchanged');
    const active = await run(['systemctl', 'is-active', 'docker'], { allowFailure: true });
    assert.notEqual(active.stdout.trim(), 'active', 'the packaged docker service is not running');
    t.diagnostic(`whole run ${Date.now() - started} ms`);
  },
);
