/**
 * L2 networks (issue 13, seeds 001/002) in labs: every flood mode with pods of every host in one subnet, the
 * device and FDB read with iproute2, hosts joining and leaving, an existing bridge joined and left untouched, and
 * ARP broadcasts on the underlay decoded with `tulle decode`. Values the seeds never use: 10.33.0.0/24, VNI 4242.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { run, runJson } from '../../src/base/exec.js';
import { waitFor } from '../../src/base/retry.js';
import { TULLE_BIN, addPod, removeHostFromOverlay, runStoreCommand, runTulleIn, startAgent, stopAgent, type LabState } from '../../src/lab/index.js';
import { isAlive } from '../../src/lab/cluster.js';
import { l2HostStatus, readL2Device, waitL2Converged, type LabL2 } from '../../src/lab/l2.js';
import { startCapture, stopCapture } from '../helpers/capture.js';
import { deleteRaw, putRaw } from '../faults/helpers.js';
import { agentLog, overlayLab } from '../helpers/lab.js';
import { requireRoot } from '../helpers/netns.js';

requireRoot();

const VNI = 4242;
const DEV = `vxlan${VNI}`;
const config = (flood: string, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ Network: '10.33.0.0/24', SubnetLen: 28, Backend: { Type: 'vxlan', Mode: 'l2', VNI, Port: 4789, Flood: flood, ...extra } });

function host(state: LabState, name: string) {
  return state.hosts.find((h) => h.name === name)!;
}

/** `ip -d -j link show vxlan4242` on a host, the parts the design names. */
async function device(state: LabState, name: string) {
  const { link, floodTo } = await readL2Device(host(state, name).namespace, VNI);
  assert.ok(link, `${name} has no ${DEV}`);
  const d = (link.linkinfo?.info_data ?? {}) as Record<string, unknown>;
  return { master: link.master, id: d.id, port: d.port, group: d.group, remote: d.remote, learning: d.learning, proxy: d.proxy, local: d.local, floodTo };
}

/** Every pod pings every other pod (one subnet, no routes: ARP across the overlay). */
async function allPairsPing(state: LabState): Promise<void> {
  const pods = state.pods.filter((p) => p.address);
  for (const from of pods) {
    for (const to of pods) {
      if (from === to) continue;
      const r = await run(['ip', 'netns', 'exec', from.namespace, 'ping', '-c1', '-W3', to.address!], { allowFailure: true });
      assert.equal(r.status, 0, `${from.name} (${from.address}) cannot ping ${to.name} (${to.address}): ${r.stdout}${r.stderr}`);
    }
  }
}

interface Decoded {
  ip?: { dst: string };
  vxlan?: { vni: number };
  inner?: { eth?: { dst: string }; arp?: { op: number; targetIp: string } };
}

/**
 * Capture h1's underlay while a pod of h1 looks for an address no pod has (ARP broadcasts, unanswered), and
 * decode it with `tulle decode`: the VXLAN frames carrying those ARP requests, by outer destination.
 */
async function arpBroadcastCopies(state: LabState, missing: string): Promise<Map<string, number>> {
  const h1 = host(state, 'h1');
  const pod = state.pods.find((p) => p.host === 'h1')!;
  const file = join(state.dir, `arp-${Date.now()}.pcap`);
  const capture = await startCapture(h1.namespace, 'eth0', file);
  try {
    await run(['ip', 'netns', 'exec', pod.namespace, 'ping', '-c1', '-W1', missing], { allowFailure: true });
  } finally {
    await stopCapture(capture);
  }
  const out = await run([process.execPath, TULLE_BIN, 'decode', '--json', '--proto', 'arp', '--vni', String(VNI), file]);
  const copies = new Map<string, number>();
  for (const line of out.stdout.trim().split('\n').filter(Boolean)) {
    const f = JSON.parse(line) as Decoded;
    if (f.inner?.arp?.op !== 1 || f.inner.arp.targetIp !== missing || f.inner.eth?.dst !== 'ff:ff:ff:ff:ff:ff') continue;
    copies.set(f.ip!.dst, (copies.get(f.ip!.dst) ?? 0) + 1);
  }
  return copies;
}

async function timed(what: () => Promise<void>): Promise<number> {
  const started = Date.now();
  await what();
  return Date.now() - started;
}

test('unicast on the routed underlay: one all-zero FDB entry per peer, pods ping, a 4th host joins and one leaves', async (t) => {
  const state = await overlayLab(t, { nodes: 4, agents: 3, underlay: 'routed', pods: 1, configText: config('unicast') });
  const addr = (n: string) => host(state, n).address;
  for (const h of ['h1', 'h2', 'h3']) {
    const d = await device(state, h);
    const others = ['h1', 'h2', 'h3']
      .filter((x) => x !== h)
      .map(addr)
      .sort();
    assert.deepEqual(
      { master: d.master, id: d.id, port: d.port, group: d.group, remote: d.remote, local: d.local, learning: d.learning },
      { master: `tl${VNI}`, id: VNI, port: 4789, group: undefined, remote: undefined, local: addr(h), learning: true },
      h,
    );
    assert.deepEqual(d.floodTo, others, `${h}'s flood list`);
    const fdb = await runJson<Array<{ mac: string; dst?: string; state?: string; flags?: string[] }>>([
      'bridge',
      '-n',
      host(state, h).namespace,
      '-j',
      'fdb',
      'show',
      'dev',
      DEV,
    ]);
    for (const e of fdb.filter((x) => x.mac === '00:00:00:00:00:00')) assert.equal(e.state, 'permanent', JSON.stringify(e));
  }
  await allPairsPing(state);

  const copies = await arpBroadcastCopies(state, '10.33.0.3');
  assert.deepEqual([...copies.keys()].sort(), [addr('h2'), addr('h3')].sort(), 'an ARP broadcast leaves once toward each peer, to no one else');
  assert.ok(copies.get(addr('h2'))! >= 1 && copies.get(addr('h2')) === copies.get(addr('h3')), `one copy per peer per request: ${JSON.stringify([...copies])}`);

  // Drift: an entry deleted and the device taken off its bridge by hand are put back from the kernel's events.
  const l2: LabL2 = state.overlay!.l2!;
  const three = state.hosts.filter((h) => h.name !== 'h4');
  await run(['bridge', '-n', host(state, 'h1').namespace, 'fdb', 'del', '00:00:00:00:00:00', 'dev', DEV, 'dst', addr('h2')]);
  await run(['ip', '-n', host(state, 'h1').namespace, 'link', 'set', DEV, 'nomaster']);
  await waitL2Converged(three, l2, 20_000);
  assert.equal((await device(state, 'h1')).master, `tl${VNI}`);
  assert.deepEqual((await device(state, 'h1')).floodTo, [addr('h2'), addr('h3')].sort());

  // A restarted agent keeps the device as it is (same interface, same entries): traffic is not disturbed.
  const ifindex = async () => (await runJson<Array<{ ifindex: number }>>(['ip', '-n', host(state, 'h1').namespace, '-j', 'link', 'show', DEV]))[0]!.ifindex;
  const indexBefore = await ifindex();
  await stopAgent(state, 'h1');
  startAgent(state, 'h1');
  await waitFor(() => (agentLog(state, 'h1').match(/"msg":"ready"/g) ?? []).length >= 2, 20_000, "h1's agent to be ready again");
  assert.equal(await ifindex(), indexBefore, 'the device was kept');
  await waitL2Converged(three, l2, 20_000);

  startAgent(state, 'h4');
  const joined = await timed(() => waitL2Converged(state.hosts, l2, 20_000));
  t.diagnostic(`h4 joined: every host's flood list had it after ${joined} ms (agent start included)`);

  const before = Date.now();
  await removeHostFromOverlay(state, 'h2');
  const left = await timed(() =>
    waitL2Converged(
      state.hosts.filter((h) => h.name !== 'h2'),
      l2,
      20_000,
    ),
  );
  t.diagnostic(`h2 left: removed from every flood list ${left} ms after its lease was released (${Date.now() - before} ms with the agent's stop and cleanup)`);
  for (const h of ['h1', 'h3', 'h4']) assert.ok(!(await device(state, h)).floodTo.includes(addr('h2')), `${h} still floods to h2`);
  assert.equal((await readL2Device(host(state, 'h2').namespace, VNI)).link, undefined, "--cleanup removed h2's device");
  assert.notEqual(
    (await run(['ip', '-n', host(state, 'h2').namespace, 'link', 'show', `tl${VNI}`], { allowFailure: true })).status,
    0,
    '--cleanup removed the bridge tulle made',
  );
});

test('multicast on the switch underlay: the group on the device, learning, one multicast frame per ARP broadcast', async (t) => {
  const group = '239.42.42.42';
  const state = await overlayLab(t, { nodes: 3, underlay: 'switch', pods: 1, configText: config('multicast', { Group: group }) });
  for (const h of ['h1', 'h2', 'h3']) {
    const d = await device(state, h);
    assert.deepEqual(
      { master: d.master, id: d.id, port: d.port, group: d.group, remote: d.remote, learning: d.learning, floodTo: d.floodTo },
      { master: `tl${VNI}`, id: VNI, port: 4789, group, remote: undefined, learning: true, floodTo: [] },
      h,
    );
  }
  await allPairsPing(state);
  const copies = await arpBroadcastCopies(state, '10.33.0.3');
  assert.deepEqual([...copies.keys()], [group], `ARP broadcasts go to the group only: ${JSON.stringify([...copies])}`);
});

test('multicast where the underlay cannot carry it (behind a router): the agent says so, naming the peers', async (t) => {
  const state = await overlayLab(t, { nodes: 3, underlay: 'routed', pods: 0, configText: config('multicast', { Group: '239.42.42.43' }) });
  const far = host(state, 'h2').address;
  await waitFor(() => /cannot carry group 239\.42\.42\.43/.test(agentLog(state, 'h1')), 20_000, 'h1 to report the unreachable group');
  const line = agentLog(state, 'h1')
    .split('\n')
    .find((l) => l.includes('cannot carry group'))!;
  assert.match(line, new RegExp(`to ${far.replace(/\./g, '\\.')} \\(not on this host's underlay network 192\\.0\\.2\\.0/24`));
  assert.match(line, /use Backend\.Flood \\"unicast\\"/);
});

test('remote: the point-to-point device of seed 001 between two hosts; a third host is refused and builds nothing', async (t) => {
  const state = await overlayLab(t, { nodes: 3, agents: 2, underlay: 'switch', pods: 1, configText: config('remote') });
  const [a, b] = [host(state, 'h1'), host(state, 'h2')];
  assert.deepEqual(await device(state, 'h1').then((d) => [d.remote, d.group, d.master, d.id, d.port, d.learning]), [
    b.address,
    undefined,
    `tl${VNI}`,
    VNI,
    4789,
    true,
  ]);
  assert.deepEqual(await device(state, 'h2').then((d) => [d.remote, d.master]), [a.address, `tl${VNI}`]);
  await allPairsPing(state);

  const pid = startAgent(state, 'h3');
  await waitFor(() => !isAlive(pid), 20_000, "the third host's agent to refuse and exit");
  assert.match(agentLog(state, 'h3'), /TLE_L2_REMOTE_HOSTS|exactly two hosts/);
  const h3 = host(state, 'h3').namespace;
  assert.equal((await readL2Device(h3, VNI)).link, undefined, 'no device on the third host');
  assert.equal((await run(['ip', '-n', h3, 'link', 'show', `tl${VNI}`], { allowFailure: true })).status !== 0, true, 'no bridge on the third host');
  const leases = JSON.parse((await runStoreCommand(state, ['leases', '--json'])).stdout) as Array<{ publicIP: string }>;
  assert.deepEqual(leases.map((l) => l.publicIP).sort(), [a.address, b.address].sort(), 'the third host took no lease');
  assert.equal((await device(state, 'h1')).remote, b.address, 'the first two hosts are unchanged');

  // A third lease appearing in the store (written by hand here): the running hosts say so and change nothing.
  const taken = new Set(leases.map((l) => (l as { subnet?: string }).subnet));
  const slice = ['10.33.0.224/28', '10.33.0.208/28', '10.33.0.192/28'].find((x) => !taken.has(x))!;
  const key = `/tulle.io/l2/subnets/${slice.replace('/', '-')}`;
  await putRaw(state, key, JSON.stringify({ PublicIP: '192.0.2.99', BackendType: 'vxlan', BackendData: { VNI, VtepMAC: '02:00:00:00:99:01' } }));
  await waitFor(() => /joins exactly two hosts, but 3 hold leases/.test(agentLog(state, 'h1')), 20_000, 'h1 to report the third lease');
  assert.equal((await device(state, 'h1')).remote, b.address, 'h1 keeps its device');
  await deleteRaw(state, key);
  await waitFor(() => /serves the peers again/.test(agentLog(state, 'h1')), 20_000, 'h1 to see the third lease gone');
  assert.equal((await device(state, 'h1')).remote, b.address);
  await allPairsPing(state);

  // Bad configs at the CLI: the field named, exit 2, nothing written.
  const long = await runStoreCommand(state, ['config', 'put'], { input: config('remote', { Bridge: 'a-bridge-name-too-long' }), allowFailure: true });
  assert.equal(long.status, 2);
  assert.match(long.stderr, /Backend\.Bridge: "a-bridge-name-too-long" is 22 bytes long/);
  const noGroup = await runStoreCommand(state, ['config', 'put'], { input: config('multicast'), allowFailure: true });
  assert.match(noGroup.stderr, /Backend\.Group: .*is required/);
  const flannel = await runTulleIn(a.namespace, ['config', 'put', '--store', state.overlay!.store], { input: config('unicast'), allowFailure: true });
  assert.equal(flannel.status, 2);
  assert.match(flannel.stderr, /Backend\.Mode: "l2" cannot live under flannel's prefix \/coreos\.com\/network/);
  assert.equal((await device(state, 'h2')).remote, a.address);
});

test("an existing bridge (a Docker network's) is joined: its addresses, ports and MAC stay, also after the agent leaves", async (t) => {
  const state = await overlayLab(t, { nodes: 2, agents: 1, underlay: 'routed', pods: 0, configText: config('unicast') });
  const ns = host(state, 'h2').namespace;
  const br = 'br-t2mylan';
  for (const argv of [
    ['link', 'add', br, 'address', '02:42:0a:21:00:01', 'type', 'bridge'],
    ['addr', 'add', '10.33.0.1/24', 'dev', br],
    ['link', 'add', 'fport0', 'address', '02:42:0a:21:00:02', 'type', 'veth', 'peer', 'name', 'fport1'],
    ['link', 'set', 'fport0', 'master', br, 'up'],
    ['link', 'set', br, 'up'],
  ]) {
    await run(['ip', '-n', ns, ...argv]);
  }
  const snapshot = async () => {
    const [link] = await runJson<Array<{ address: string; flags: string[] }>>(['ip', '-n', ns, '-j', 'link', 'show', br]);
    const [addr] = await runJson<Array<{ addr_info: Array<{ local: string; prefixlen: number }> }>>(['ip', '-n', ns, '-4', '-j', 'addr', 'show', 'dev', br]);
    const ports = (await runJson<Array<{ ifname: string }>>(['ip', '-n', ns, '-j', 'link', 'show', 'master', br])).map((p) => p.ifname).sort();
    return { mac: link!.address, up: link!.flags.includes('UP'), addrs: addr!.addr_info.map((a) => `${a.local}/${a.prefixlen}`).sort(), ports };
  };
  const before = await snapshot();

  // A vxlan4242 made by hand (seed 001's way) is someone else's: refused, left exactly as it was.
  await run(['ip', '-n', ns, 'link', 'add', DEV, 'type', 'vxlan', 'id', String(VNI), 'dstport', '4789', 'dev', 'eth0']);
  const foreign = await runJson<Array<{ ifindex: number; master?: string }>>(['ip', '-n', ns, '-j', 'link', 'show', DEV]);
  const refusedPid = startAgent(state, 'h2', ['--bridge', br]);
  await waitFor(() => !isAlive(refusedPid), 20_000, 'the agent to refuse the hand-made device');
  assert.match(agentLog(state, 'h2'), new RegExp(`${DEV} exists and tulle did not make it`));
  assert.deepEqual(await runJson(['ip', '-n', ns, '-j', 'link', 'show', DEV]), foreign, 'the hand-made device is untouched (not on the bridge either)');
  assert.deepEqual(await snapshot(), before);
  await run(['ip', '-n', ns, 'link', 'del', DEV]);

  // --bridge naming a device that is no bridge: refused, nothing built, the subnet just taken given back.
  const wrong = startAgent(state, 'h2', ['--bridge', 'eth0']);
  await waitFor(() => !isAlive(wrong), 20_000, 'the agent with --bridge eth0 to exit');
  assert.match(agentLog(state, 'h2'), /bridge eth0: the device exists but is a veth device/);
  assert.equal((await readL2Device(ns, VNI)).link, undefined);
  const leases = JSON.parse((await runStoreCommand(state, ['leases', '--json'])).stdout) as Array<{ publicIP: string }>;
  assert.deepEqual(
    leases.map((l) => l.publicIP),
    [host(state, 'h1').address],
    'h2 holds no lease',
  );

  startAgent(state, 'h2', ['--bridge', br]);
  await waitL2Converged(state.hosts, state.overlay!.l2!, 20_000);
  assert.equal((await device(state, 'h2')).master, br);
  assert.deepEqual(await snapshot(), { ...before, ports: [...before.ports, DEV].sort() }, "only tulle's device joined");
  assert.notEqual((await run(['ip', '-n', ns, 'link', 'show', `tl${VNI}`], { allowFailure: true })).status, 0, 'tulle made no bridge of its own');
  assert.match(readFileSync(join(state.dir, 'h2', 'subnet.env'), 'utf8'), new RegExp(`TULLE_L2_BRIDGE=${br}`));

  const onH1 = await addPod(state, 'h1', 'h1-p1');
  const withPod = await addPod(state, 'h2', 'h2-p1');
  const r = await run(['ip', 'netns', 'exec', onH1.namespace, 'ping', '-c1', '-W3', withPod.address!], { allowFailure: true });
  assert.equal(r.status, 0, `a pod on h1 cannot reach the pod on the joined bridge: ${r.stdout}`);
  await run(['ip', 'netns', 'exec', withPod.namespace, 'ping', '-c1', '-W3', '10.33.0.1']);

  await removeHostFromOverlay(state, 'h2');
  const after = await snapshot();
  assert.equal((await readL2Device(ns, VNI)).link, undefined, 'the device left');
  assert.deepEqual({ ...after, ports: after.ports.filter((p) => p === 'fport0') }, before, 'the bridge keeps its MAC, state, addresses and own port');
  assert.ok(!after.ports.includes(DEV));
  assert.ok(existsSync(join(state.dir, 'h2')));
});

test('none, no pods yet: the device answers ARP itself (proxy) and learns nothing; no flood list (pods: test/e2e/l2-none.test.ts)', async (t) => {
  const state = await overlayLab(t, { nodes: 2, underlay: 'routed', pods: 0, configText: config('none') });
  for (const h of ['h1', 'h2']) {
    const d = await device(state, h);
    assert.deepEqual(
      { master: d.master, id: d.id, learning: d.learning, proxy: d.proxy, floodTo: d.floodTo, group: d.group, remote: d.remote },
      { master: `tl${VNI}`, id: VNI, learning: false, proxy: true, floodTo: [], group: undefined, remote: undefined },
      h,
    );
    const status = await l2HostStatus(host(state, h), state.hosts, state.overlay!.l2!);
    assert.deepEqual([status.device, status.bridge, status.flood, status.lacking], [DEV, `tl${VNI}`, '-', null]);
  }
  const st = await runTulleIn(host(state, 'h1').namespace, ['status', '--store', state.overlay!.store, '--prefix', '/tulle.io/l2'], { allowFailure: true });
  assert.match(st.stdout, new RegExp(`device:   ${DEV} vni ${VNI} local ${host(state, 'h1').address} dstport 4789 mtu 1450 on bridge tl${VNI}`));
  assert.match(st.stdout, /in sync: {2}yes/);
  assert.equal(st.status, 0, st.stdout + st.stderr);
});
