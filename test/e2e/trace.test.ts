/**
 * `tulle lab trace` end to end, one 3-host lab per mode and many traces in each: bridge mode on a routed underlay,
 * routed (Calico-style) pods, and DirectRouting on one switch — each with values the seeds never use (VNI, port,
 * Network, SubnetLen). Delivered paths are checked hop by hop against what iproute2 reports and the leases, and
 * with --live every hop is confirmed by a capture. Then each piece is broken on purpose (the agent of that host
 * stopped first, so it does not repair) and the verdict and the vanishing point must name it. `tulle trace` on a
 * host asks the destination's agent for the remote half.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { run } from '../../src/base/exec.js';
import { TULLE_BIN, loadLabState, runTulleIn, stopAgent, type LabState } from '../../src/lab/index.js';
import type { Hop, TraceResult } from '../../src/trace/index.js';
import { requireRoot } from '../helpers/netns.js';
import { labRoot, overlayLab } from '../helpers/lab.js';
import { leasesOf } from './overlay-helpers.js';

requireRoot();

const env = { ...process.env, TULLE_LAB_DIR: labRoot };

async function labTrace(state: LabState, src: string, dst: string, ...extra: string[]): Promise<{ status: number; result: TraceResult }> {
  const r = await run([process.execPath, TULLE_BIN, 'lab', 'trace', state.name, src, dst, '--json', ...extra], { allowFailure: true, env });
  assert.equal(r.stderr, '', `lab trace ${src} ${dst} wrote to stderr`);
  return { status: r.status ?? -1, result: JSON.parse(r.stdout) as TraceResult };
}

const ipj = async (ns: string, ...args: string[]): Promise<any[]> => JSON.parse((await run(['ip', '-n', ns, '-j', ...args])).stdout || '[]');
const fdbj = async (ns: string, dev: string): Promise<any[]> => JSON.parse((await run(['bridge', '-n', ns, '-j', 'fdb', 'show', 'dev', dev])).stdout || '[]');
const nsOf = (s: LabState, host: string) => s.hosts.find((h) => h.name === host)!.namespace;
const pod = (s: LabState, name: string) => s.pods.find((p) => p.name === name)!;
const host = (s: LabState, name: string) => s.hosts.find((h) => h.name === name)!;
const dot0 = (subnet: string) => subnet.split('/')[0]!;
/** host/device per hop, without the bridge-port hop (cni0, or the pod's port once the kernel knows its MAC). */
const where = (hops: Hop[]) => hops.filter((h) => !/^(find the pod|bridge to the pod)/.test(h.action)).map((h) => `${h.host}/${h.device}`);
const describe = (r: TraceResult) =>
  `${r.verdict}: ${r.reason}\n${r.hops.map((h) => `  ${h.host} ${h.device} ${h.action}${h.seen === undefined ? '' : h.seen ? ' seen' : ' NOT seen'}`).join('\n')}`;

/** Delivered, and with --live every hop seen: 98-byte frames inside the overlay, `outerLength` on the underlay. */
function assertDeliveredLive(r: TraceResult, status: number, outer: { vni: number; port: number; src: string; dst: string } | null): void {
  assert.equal(r.verdict, 'delivered', describe(r));
  assert.equal(status, 0);
  assert.equal(r.vanishedAt, null, describe(r));
  for (const h of r.hops) {
    assert.equal(h.seen, true, `${h.host} ${h.device} seen\n${describe(r)}`);
    if (h.frame!.outer) {
      assert.ok(outer, `only VXLAN paths carry an outer header (${h.host} ${h.device})`);
      assert.equal(h.frame!.length, 148, `${h.host} ${h.device}: a 98-byte frame in 50 bytes of VXLAN`);
      assert.deepEqual([h.frame!.outer.vni, h.frame!.outer.dstPort, h.frame!.outer.src, h.frame!.outer.dst], [outer.vni, outer.port, outer.src, outer.dst]);
      assert.ok(
        h.frame!.outer.srcPort >= r.outer!.srcPortRange[0] && h.frame!.outer.srcPort <= r.outer!.srcPortRange[1],
        `source port ${h.frame!.outer.srcPort} in ${r.outer!.srcPortRange.join('-')}`,
      );
    } else {
      assert.equal(h.frame!.length, 98, `${h.host} ${h.device}: the ping frame itself`);
    }
  }
  if (outer)
    assert.ok(
      r.hops.some((h) => h.frame?.outer),
      'the probe was captured encapsulated on the underlay',
    );
}

/** The VXLAN hops of h1 -> peer name the exact entries iproute2 shows on h1, and those agree with the peer's lease. */
async function assertVxlanEntries(state: LabState, r: TraceResult, from: string, to: string, vni: number, port: number): Promise<void> {
  const leases = await leasesOf(state);
  const lease = leases.find((l) => l.publicIP === host(state, to).address)!;
  const ns = nsOf(state, from);
  const dev = `flannel.${vni}`;
  const neigh = (await ipj(ns, 'neigh', 'show', 'dev', dev)).find((n) => n.dst === dot0(lease.subnet));
  assert.equal(neigh.lladdr, lease.backendData.VtepMAC, 'iproute2: the neighbour holds the peer lease VtepMAC');
  const fdb = (await fdbj(ns, dev)).find((f) => f.mac === neigh.lladdr);
  assert.equal(fdb.dst, lease.publicIP, 'iproute2: the FDB entry points at the peer lease PublicIP');
  const fib = (await ipj(ns, 'route', 'get', 'fibmatch', r.probe.dst))[0];
  const hops = r.hops.filter((h) => h.host === from && h.device === dev);
  assert.match(hops.find((h) => h.action.startsWith('route into'))!.entry, new RegExp(`${fib.dst} via ${fib.gateway} dev ${fib.dev} proto 84 onlink`));
  assert.ok(
    hops.some((h) => h.entry === `ip neigh: ${neigh.dst} dev ${dev} lladdr ${neigh.lladdr} PERMANENT`),
    describe(r),
  );
  assert.ok(
    hops.some((h) => h.entry === `bridge fdb: ${fdb.mac} dev ${dev} dst ${fdb.dst} self permanent`),
    describe(r),
  );
  const range = (await run(['ip', 'netns', 'exec', ns, 'sysctl', '-n', 'net.ipv4.ip_local_port_range'])).stdout.trim().split(/\s+/).map(Number);
  assert.deepEqual(r.outer, {
    src: host(state, from).address,
    dst: lease.publicIP,
    dstPort: port,
    srcPortRange: range,
    vni,
    innerSrcMac: (await ipj(ns, 'link', 'show', dev))[0].address,
    innerDstMac: lease.backendData.VtepMAC,
  });
  const decap = r.hops.find((h) => h.host === to && h.action === 'decapsulate')!;
  assert.equal(decap.device, dev);
}

test('bridge mode on a routed underlay (VNI 4242, port 7799, 10.77.0.0/16 in /26s): walks, live captures, and every break named', async (t) => {
  // Agents serve /trace on their underlay address (inside their own namespaces), so `tulle trace` can ask them.
  const health = process.env.TULLE_HEALTH_ADDR;
  process.env.TULLE_HEALTH_ADDR = '0.0.0.0:9465';
  let state: LabState;
  try {
    state = await overlayLab(t, {
      nodes: 3,
      underlay: 'routed',
      mode: 'bridge',
      pods: 2,
      configText: '{"Network":"10.77.0.0/16","SubnetLen":26,"Backend":{"Type":"vxlan","VNI":4242,"Port":7799}}',
    });
  } finally {
    if (health === undefined) delete process.env.TULLE_HEALTH_ADDR;
    else process.env.TULLE_HEALTH_ADDR = health;
  }
  const VNI = 4242;
  const PORT = 7799;
  const DEV = `flannel.${VNI}`;
  const [h1, h2, h3] = [host(state, 'h1'), host(state, 'h2'), host(state, 'h3')];

  await t.test('pod -> pod on another host: every entry on the path, as iproute2 and the leases say; --live sees 98 -> 148 -> 98', async () => {
    const { status, result } = await labTrace(state, 'h1-p1', 'h2-p1', '--live');
    assertDeliveredLive(result, status, { vni: VNI, port: PORT, src: h1.address, dst: h2.address });
    assert.deepEqual(where(result.hops), [
      'h1-p1/eth0',
      'h1/cni0',
      `h1/${DEV}`,
      `h1/${DEV}`,
      `h1/${DEV}`,
      'h1/eth0',
      'rt/eth1',
      'rt/eth2',
      'h2/eth0',
      `h2/${DEV}`,
      'h2/cni0',
      'h2-p1/eth0',
    ]);
    await assertVxlanEntries(state, result, 'h1', 'h2', VNI, PORT);
    // The router forwards the outer packet between the segments, looked up for the outer addresses.
    const rt = result.hops.find((h) => h.host === 'rt')!;
    assert.equal(rt.entry, `ip route get ${h2.address} from ${h1.address} iif eth1 -> 198.51.100.0/24 dev eth2 proto kernel scope link src 198.51.100.1`);
    assert.match(
      result.hops[0]!.entry,
      new RegExp(`via ${(await ipj(pod(state, 'h1-p1').namespace, 'route', 'get', pod(state, 'h2-p1').address!))[0].gateway} dev eth0`),
    );
  });

  await t.test('pod -> pod on the same host: switched by cni0, never routed, never the VTEP', async () => {
    const { status, result } = await labTrace(state, 'h1-p1', 'h1-p2', '--live');
    assertDeliveredLive(result, status, null);
    assert.equal(result.outer, null);
    assert.ok(!result.hops.some((h) => h.device === DEV), describe(result));
    assert.deepEqual(where(result.hops), ['h1-p1/eth0', 'h1/cni0', 'h1-p2/eth0']);
    assert.match(result.hops[1]!.action, /^switch the frame on cni0 \(no routing\)/);
  });

  await t.test('host -> pod on a remote host', async () => {
    const { status, result } = await labTrace(state, 'h1', 'h3-p1', '--live');
    assertDeliveredLive(result, status, { vni: VNI, port: PORT, src: h1.address, dst: h3.address });
    await assertVxlanEntries(state, result, 'h1', 'h3', VNI, PORT);
  });

  await t.test(
    'pod -> remote host: the lab pods route only the cluster network, so it breaks at the pod; with a default route it crosses the router',
    async () => {
      const before = await labTrace(state, 'h1-p1', 'h2');
      assert.equal(before.result.verdict, 'no-route', describe(before.result));
      assert.equal(before.status, 1);
      assert.match(before.result.reason, /^h1-p1: no route to 198\.51\.100\.12/);
      const p = pod(state, 'h1-p1');
      const gw = (await ipj(p.namespace, 'route', 'get', pod(state, 'h2-p1').address!))[0].gateway;
      await run(['ip', '-n', p.namespace, 'route', 'add', 'default', 'via', gw]);
      const { status, result } = await labTrace(state, 'h1-p1', 'h2', '--live');
      assertDeliveredLive(result, status, null);
      assert.deepEqual(where(result.hops), ['h1-p1/eth0', 'h1/cni0', 'h1/eth0', 'rt/eth1', 'rt/eth2', 'h2/eth0']);
    },
  );

  await t.test("tulle trace on a host: the local half from its kernel, the remote half from the destination agent's /trace", async () => {
    const p = pod(state, 'h1-p1');
    const args = ['trace', '--from', p.namespace, pod(state, 'h2-p1').address!, '--json', '--store', state.overlay!.store];
    const r = await runTulleIn(h1.namespace, args, { allowFailure: true });
    const result = JSON.parse(r.stdout) as TraceResult;
    assert.equal(result.verdict, 'delivered', describe(result));
    assert.equal(r.status, 0);
    const remote = result.hops.filter((h) => h.host === h2.address);
    assert.deepEqual(
      where(remote).map((w) => w.split('/')[1]),
      ['eth0', DEV, 'cni0'],
      describe(result),
    );
    assert.match(result.reason, /^handed to \S+ on 198\.51\.100\.12, the port of the pod holding/);
    // The endpoint rejects hostile queries with a 400 naming the field.
    const url = `http://${h2.address}:9465/trace?src=10.77.0.1&dst=1.2.3.4&arrival=vxlan&osrc=1.1.1.1&odst=2.2.2.2&dport=99999&vni=1&imac=00:00:00:00:00:01`;
    const bad = await run([
      'ip',
      'netns',
      'exec',
      h1.namespace,
      process.execPath,
      '-e',
      `fetch(${JSON.stringify(url)}).then(async (r) => console.log(r.status, await r.text()))`,
    ]);
    assert.match(bad.stdout, /^400 \{"error":"dport: \\"99999\\" must be a whole number 1\.\.65535","code":"TLE_INVALID_VALUE"\}/);
    // From a pod IP: the walk starts where that pod's packet enters h1 (cni0). A probe needs the pod's namespace.
    const byIpArgs = ['trace', '--from', p.address!, pod(state, 'h2-p1').address!, '--json', '--store', state.overlay!.store];
    const byIp = JSON.parse((await runTulleIn(h1.namespace, byIpArgs, { allowFailure: true })).stdout) as TraceResult;
    assert.equal(byIp.verdict, 'delivered', describe(byIp));
    assert.deepEqual([byIp.hops[0]!.device, byIp.hops[0]!.action], ['cni0', 'receive and route']);
    const noProbe = await runTulleIn(h1.namespace, [...byIpArgs, '--live'], { allowFailure: true });
    assert.equal(noProbe.status, 2);
    assert.match(noProbe.stderr, /--live needs --from NETNS/);
    // From the pod's namespace, --live captures the hops on this host; the remote ones are not visible from here.
    const captured = JSON.parse((await runTulleIn(h1.namespace, [...args, '--live'], { allowFailure: true })).stdout) as TraceResult;
    assert.equal(captured.vanishedAt, null, describe(captured));
    assert.ok(
      captured.hops.filter((h) => h.host !== h2.address).every((h) => h.seen === true),
      describe(captured),
    );
    assert.ok(
      captured.hops.filter((h) => h.host === h2.address).every((h) => h.seen === undefined),
      'remote hops are not captured from here',
    );
    assert.ok(
      captured.hops.some((h) => h.frame?.outer?.vni === VNI && h.frame.outer.dstPort === PORT && h.frame.length === 148),
      describe(captured),
    );

    // With h2's agent gone, the trace says what it could not check.
    await stopAgent(state, 'h2');
    const gone = await runTulleIn(h1.namespace, args, { allowFailure: true });
    const g = JSON.parse(gone.stdout) as TraceResult;
    assert.equal(g.verdict, 'remote-unknown');
    assert.equal(gone.status, 1);
    assert.match(g.reason, new RegExp(`agent at http://${h2.address.replace(/\./g, '\\.')}:9465 did not answer /trace`));
  });

  await t.test('breaks on h1 (its agent stopped first): each verdict names the hop and entry, and --live shows where the probe vanishes', async () => {
    await stopAgent(state, 'h1');
    state = loadLabState(state.name, { root: labRoot });
    const ns = h1.namespace;
    const leases = await leasesOf(state);
    const peer = leases.find((l) => l.publicIP === h2.address)!;
    const mac = peer.backendData.VtepMAC;
    const traceH2 = (...extra: string[]) => labTrace(state, 'h1-p1', 'h2-p1', '--live', ...extra);
    const vanished = (r: TraceResult, at: string) => assert.equal(r.vanishedAt && `${r.vanishedAt.host}/${r.vanishedAt.device}`, at, describe(r));

    await run(['ip', '-n', ns, 'neigh', 'del', dot0(peer.subnet), 'dev', DEV]);
    let r = await traceH2();
    assert.equal(r.result.verdict, 'neighbour-missing', describe(r.result));
    assert.equal(r.status, 1);
    assert.ok(r.result.reason.includes(`ip neigh replace ${dot0(peer.subnet)} lladdr ${mac} dev ${DEV} nud permanent`), r.result.reason);
    vanished(r.result, `h1/${DEV}`);
    await run(['ip', '-n', ns, 'neigh', 'replace', dot0(peer.subnet), 'lladdr', mac, 'dev', DEV, 'nud', 'permanent']);

    await run(['ip', '-n', ns, 'neigh', 'replace', dot0(peer.subnet), 'lladdr', '02:00:00:00:00:99', 'dev', DEV, 'nud', 'permanent']);
    r = await traceH2();
    assert.equal(r.result.verdict, 'neighbour-wrong-mac', describe(r.result));
    assert.ok(r.result.reason.includes(`lladdr 02:00:00:00:00:99 PERMANENT but the lease of ${peer.subnet} says VtepMAC ${mac}`), r.result.reason);
    vanished(r.result, 'h2/eth0');
    await run(['ip', '-n', ns, 'neigh', 'replace', dot0(peer.subnet), 'lladdr', mac, 'dev', DEV, 'nud', 'permanent']);

    await run(['bridge', '-n', ns, 'fdb', 'del', mac, 'dev', DEV, 'dst', h2.address]);
    r = await traceH2();
    assert.equal(r.result.verdict, 'fdb-missing', describe(r.result));
    vanished(r.result, 'h1/eth0');

    await run(['bridge', '-n', ns, 'fdb', 'replace', mac, 'dev', DEV, 'dst', h3.address, 'self', 'permanent']);
    r = await traceH2();
    assert.equal(r.result.verdict, 'fdb-wrong-host', describe(r.result));
    assert.ok(
      r.result.reason.includes(`bridge fdb sends ${mac} to ${h3.address}, but the lease of ${peer.subnet} says PublicIP ${h2.address}`),
      r.result.reason,
    );
    vanished(r.result, 'h2/eth0');
    await run(['bridge', '-n', ns, 'fdb', 'replace', mac, 'dev', DEV, 'dst', h2.address, 'self', 'permanent']);
    assert.equal((await traceH2()).result.verdict, 'delivered');

    await run(['ip', '-n', ns, 'link', 'set', DEV, 'mtu', '1400']);
    const podMtu = (await ipj(pod(state, 'h1-p1').namespace, 'link', 'show', 'eth0'))[0].mtu as number;
    r = await traceH2('--size', String(podMtu - 28));
    assert.equal(r.result.verdict, 'mtu', describe(r.result));
    assert.ok(r.result.reason.includes(`the pod's MTU ${podMtu} is larger than ${DEV}'s 1400`), r.result.reason);
    vanished(r.result, `h1/${DEV}`);
    await run(['ip', '-n', ns, 'link', 'set', DEV, 'mtu', String(podMtu)]);

    const added = await run([
      'ip',
      'netns',
      'exec',
      ns,
      'nft',
      '--echo',
      '--handle',
      'insert',
      'rule',
      'ip',
      'tulle',
      'forward',
      'ip',
      'daddr',
      pod(state, 'h2-p1').address!,
      'drop',
    ]);
    const handle = /# handle (\d+)/.exec(added.stdout)![1]!;
    r = await traceH2();
    assert.equal(r.result.verdict, 'firewall-drop', describe(r.result));
    assert.ok(r.result.reason.includes(`ip daddr ${pod(state, 'h2-p1').address} drop`), r.result.reason);
    vanished(r.result, `h1/${DEV}`);
    await run(['ip', 'netns', 'exec', ns, 'nft', 'delete', 'rule', 'ip', 'tulle', 'forward', 'handle', handle]);
    assert.equal((await traceH2()).result.verdict, 'delivered');

    // Down: the kernel also drops the routes and neighbours through the VTEP; the verdict still names the VTEP.
    await run(['ip', '-n', ns, 'link', 'set', DEV, 'down']);
    r = await traceH2();
    assert.equal(r.result.verdict, 'vtep-down', describe(r.result));
    assert.match(r.result.reason, new RegExp(`^h1: ${DEV.replace('.', '\\.')} \\(vxlan id ${VNI}\\) is down`));
    vanished(r.result, `h1/${DEV}`);
  });

  await t.test("a peer's VTEP with a new MAC, then with another VNI (h2's agent stopped): the packet arrives and is dropped at h2", async () => {
    const ns = h2.namespace;
    const link = (await ipj(ns, '-d', 'link', 'show', DEV))[0];
    await run(['ip', '-n', ns, 'link', 'set', DEV, 'address', '02:00:00:00:00:42']);
    const stale = await labTrace(state, 'h3-p1', 'h2-p1', '--live');
    assert.equal(stale.result.verdict, 'stale-vtep-mac', describe(stale.result));
    assert.ok(stale.result.reason.includes(`the inner frame is addressed to ${link.address} but ${DEV} has MAC 02:00:00:00:00:42`), stale.result.reason);
    assert.equal(stale.result.vanishedAt && `${stale.result.vanishedAt.host}/${stale.result.vanishedAt.device}`, 'h2/cni0', describe(stale.result));
    // The VNI of a VXLAN device cannot be changed in place: make it again with the same MAC and addresses.
    await run(['ip', '-n', ns, 'link', 'del', DEV]);
    await run([
      'ip',
      '-n',
      ns,
      'link',
      'add',
      DEV,
      'address',
      link.address,
      'type',
      'vxlan',
      'id',
      '4243',
      'local',
      h2.address,
      'dev',
      'eth0',
      'dstport',
      String(PORT),
      'nolearning',
    ]);
    await run(['ip', '-n', ns, 'link', 'set', DEV, 'up']);
    const { status, result } = await labTrace(state, 'h3-p1', 'h2-p1', '--live');
    assert.equal(result.verdict, 'vni-mismatch', describe(result));
    assert.equal(status, 1);
    assert.ok(result.reason.includes(`no VXLAN device here takes VNI ${VNI} on UDP port ${PORT} (${DEV} is vxlan id 4243 dstport ${PORT})`), result.reason);
    assert.equal(result.vanishedAt && `${result.vanishedAt.host}/${result.vanishedAt.device}`, `h2/${DEV}`, describe(result));
    assert.ok(
      result.hops.some((h) => h.host === 'h2' && h.device === 'eth0' && h.seen && h.frame?.outer?.vni === VNI),
      'the VNI 4242 packet reached h2',
    );
  });

  await t.test('hostile arguments: a clear error naming the field, exit 2, no stack trace', async () => {
    for (const [args, pattern] of [
      [['lab', 'trace', 'NoSuch!', 'h1', 'h2'], /LAB: "NoSuch!" /],
      [['lab', 'trace', state.name, 'h9-p1', 'h2'], /SRC: "h9-p1" is not a pod or host of lab/],
      [['lab', 'trace', state.name, 'h1', `${'x'.repeat(300)}`], /DST: "x{40}…" is not a pod or host/],
      [['lab', 'trace', state.name, 'h1', '10.77.0.999'], /DST: "10\.77\.0\.999"/],
      [['lab', 'trace', state.name, 'h1', 'h2', '--proto', 'udp'], /--proto udp needs --port N/],
      [['lab', 'trace', state.name, 'h1', 'h2', '--proto', 'sctp'], /--proto/],
      [['lab', 'trace', state.name, 'h1', 'h2', '--size', '-5'], /--size/],
      [['trace', '10.77.0.2'], /--from NETNS\|POD-IP is required/],
      [['trace', '--from', 'no-such-netns', '10.77.0.2', '--store', 'memory:'], /--from: "no-such-netns" is neither an IPv4 address nor a network namespace/],
    ] as const) {
      const r = await run([process.execPath, TULLE_BIN, ...args], { allowFailure: true, env });
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, pattern);
      assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
    }
  });
});

test('routed pods on a routed underlay (VNI 77, port 4790, 172.20.0.0/18 in /25s): /32 routes to the veths, the router on the underlay', async (t) => {
  const state = await overlayLab(t, {
    nodes: 3,
    underlay: 'routed',
    mode: 'routed',
    pods: 2,
    configText: '{"Network":"172.20.0.0/18","SubnetLen":25,"Backend":{"Type":"vxlan","VNI":77,"Port":4790}}',
  });
  const [h1, h2] = [host(state, 'h1'), host(state, 'h2')];

  await t.test('pod -> pod on another host', async () => {
    const { status, result } = await labTrace(state, 'h1-p1', 'h2-p1', '--live');
    assertDeliveredLive(result, status, { vni: 77, port: 4790, src: h1.address, dst: h2.address });
    await assertVxlanEntries(state, result, 'h1', 'h2', 77, 4790);
    assert.match(result.hops[0]!.entry, /default via 169\.254\.1\.1 dev eth0/);
    const delivery = result.hops.find((h) => h.action === "route to the pod's veth")!;
    const route = (await ipj(h2.namespace, 'route', 'get', 'fibmatch', pod(state, 'h2-p1').address!))[0];
    assert.equal(delivery.device, route.dev, 'the /32 route names the veth iproute2 shows');
  });

  await t.test('pod -> pod on the same host: from one veth to the other', async () => {
    const { status, result } = await labTrace(state, 'h1-p1', 'h1-p2', '--live');
    assertDeliveredLive(result, status, null);
    assert.equal(result.hops.filter((h) => h.host === 'h1').length, 2, describe(result));
  });

  await t.test('pod -> remote host: forwarded by the router from one segment to the other', async () => {
    const { status, result } = await labTrace(state, 'h1-p1', 'h2', '--live');
    assertDeliveredLive(result, status, null);
    assert.deepEqual(where(result.hops).slice(-3), ['rt/eth1', 'rt/eth2', 'h2/eth0']);
  });

  await t.test('host -> remote pod, and udp/tcp probes', async () => {
    const icmp = await labTrace(state, 'h2', 'h1-p2', '--live');
    assertDeliveredLive(icmp.result, icmp.status, { vni: 77, port: 4790, src: h2.address, dst: h1.address });
    const udp = await labTrace(state, 'h1-p1', 'h2-p2', '--live', '--proto', 'udp', '--port', '5353');
    assert.equal(udp.result.verdict, 'delivered');
    assert.ok(
      udp.result.hops.every((h) => h.seen),
      describe(udp.result),
    );
    const tcp = await labTrace(state, 'h1-p1', 'h2-p2', '--live', '--proto', 'tcp', '--port', '8080');
    assert.equal(tcp.result.verdict, 'delivered');
    assert.ok(
      tcp.result.hops.every((h) => h.seen),
      describe(tcp.result),
    );
  });

  await t.test('an address in the network that no host leases', async () => {
    const leased = new Set((await leasesOf(state)).map((l) => l.subnet));
    const free = Array.from({ length: 127 }, (_, i) => `172.20.${(i + 1) >> 1}.${((i + 1) & 1) * 128}/25`).find((s) => !leased.has(s))!;
    const { status, result } = await labTrace(state, 'h1-p1', free.replace(/0\/25$/, '9').replace(/128\/25$/, '137'));
    assert.equal(result.verdict, 'not-leased', describe(result));
    assert.equal(status, 1);
  });
});

test('DirectRouting on one switch (VNI 9, port 4444, 10.123.0.0/17 in /24s): routes straight to the peer, no encapsulation', async (t) => {
  const state = await overlayLab(t, {
    nodes: 3,
    underlay: 'switch',
    mode: 'bridge',
    pods: 1,
    configText: '{"Network":"10.123.0.0/17","Backend":{"Type":"vxlan","VNI":9,"Port":4444,"DirectRouting":true}}',
  });
  const [h1, h2] = [host(state, 'h1'), host(state, 'h2')];

  await t.test('pod -> pod on another host: one underlay route via the peer, the 98-byte frame itself on eth0', async () => {
    const { status, result } = await labTrace(state, 'h1-p1', 'h2-p1', '--live');
    assertDeliveredLive(result, status, null);
    assert.equal(result.outer, null);
    assert.deepEqual(where(result.hops), ['h1-p1/eth0', 'h1/cni0', 'h1/eth0', 'h2/eth0', 'h2/cni0', 'h2-p1/eth0']);
    const direct = result.hops.find((h) => h.action.startsWith('DirectRouting'))!;
    const fib = (await ipj(h1.namespace, 'route', 'get', 'fibmatch', pod(state, 'h2-p1').address!))[0];
    assert.equal(fib.gateway, h2.address);
    assert.equal(direct.entry, `ip route: ${fib.dst} via ${h2.address} dev eth0 proto 84`);
  });

  await t.test('host -> remote pod', async () => {
    const { status, result } = await labTrace(state, 'h3', 'h1-p1', '--live');
    assertDeliveredLive(result, status, null);
  });

  await t.test('text output reads like seed 003: numbered hops, then the verdict', async () => {
    const r = await run([process.execPath, TULLE_BIN, 'lab', 'trace', state.name, 'h1-p1', 'h2-p1'], { env });
    assert.match(r.stdout, /^trace icmp \S+ -> \S+\n\n 1 {2}h1-p1 \(\S+\) eth0: route out of the pod\n/);
    assert.match(r.stdout, /\ndelivered: \S+ is an address of h2-p1/);
  });
});
