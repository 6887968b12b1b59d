/**
 * L2 Flood "none" end to end (issue 13): pods attached by tulle-cni through each host's agent publish their
 * endpoint records, every agent programs `<pod MAC> dst <its host>` and a permanent neighbour per remote pod on
 * vxlan<VNI> (proxy, nolearning, no all-zero entry), and the pods of every host ping each other with not one
 * broadcast or ARP frame on the underlay (captures decoded with `tulle decode`). A pod deleted (CNI DEL) leaves
 * every host; a 4th host's pod arrives; the store holds one record per live pod. Without the agent, the Node
 * plugin refuses ADD. Values the seeds never use: 10.34.0.0/24, VNI 4243.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { run, runJson } from '../../src/base/exec.js';
import { waitFor } from '../../src/base/retry.js';
import { cniInvoke, cniInvokeOk, TULLE_CNI_SHIM } from '../../src/cni/invoke.js';
import {
  TULLE_BIN,
  addPod,
  cniSocketOf,
  podNetconf,
  runStoreCommand,
  runTulleIn,
  startAgent,
  stopAgent,
  waitConverged,
  type LabState,
} from '../../src/lab/index.js';
import { expectedL2Endpoints, labEndpoints, readL2Device, readL2Endpoints, waitL2Endpoints } from '../../src/lab/l2.js';
import { openRegistry } from '../../src/store/index.js';
import { listEndpoints } from '../../src/subnet/endpoints.js';
import { startCapture, stopCapture } from '../helpers/capture.js';
import { deleteRaw, putRaw } from '../faults/helpers.js';
import { agentLog, overlayLab } from '../helpers/lab.js';
import { freshNetns, requireRoot } from '../helpers/netns.js';

requireRoot();

const VNI = 4243;
const DEV = `vxlan${VNI}`;
const PREFIX = '/tulle.io/l2';
const config = (flood: string) =>
  JSON.stringify({ Network: '10.34.0.0/24', SubnetLen: 28, Backend: { Type: 'vxlan', Mode: 'l2', VNI, Port: 4789, Flood: flood } });

type Pod = LabState['pods'][number];

async function allPairsPing(pods: readonly Pod[]): Promise<void> {
  for (const from of pods) {
    for (const to of pods) {
      if (from === to) continue;
      const r = await run(['ip', 'netns', 'exec', from.namespace, 'ping', '-c1', '-W3', to.address!], { allowFailure: true });
      assert.equal(r.status, 0, `${from.name} (${from.address}) cannot ping ${to.name} (${to.address}): ${r.stdout}${r.stderr}`);
    }
  }
}

/** The store's endpoint records, read with the store's own reader: "ip mac publicIP", sorted. */
async function storedEndpoints(state: LabState): Promise<string[]> {
  const registry = await openRegistry(state.overlay!.store);
  try {
    const { records, malformed } = await listEndpoints(registry, PREFIX);
    assert.deepEqual(malformed, []);
    return records.map((r) => `${r.ip} ${r.mac} ${r.publicIP}`).sort();
  } finally {
    await registry.close();
  }
}

/**
 * The underlay's own ARP is a broadcast too (a host looking for its router or a neighbour host): after one round
 * of traffic, every neighbour the hosts and the router know on the underlay is made permanent, so that what is
 * measured is the overlay alone.
 */
async function pinUnderlayNeighbours(namespaces: readonly string[]): Promise<void> {
  for (const ns of namespaces) {
    const neigh = await runJson<Array<{ dst: string; dev: string; lladdr?: string }>>(['ip', '-n', ns, '-4', '-j', 'neigh', 'show']);
    for (const n of neigh) {
      if (!n.lladdr || n.dev.startsWith('vxlan') || n.dev.startsWith('tl')) continue;
      await run(['ip', '-n', ns, 'neigh', 'replace', n.dst, 'lladdr', n.lladdr, 'dev', n.dev, 'nud', 'permanent']);
    }
  }
}

interface Decoded {
  eth?: { dst: string };
  arp?: unknown;
  vxlan?: { vni: number };
  inner?: { eth?: { dst: string }; arp?: unknown; icmp?: { type: number } };
}

test(
  'none: pods of 4 hosts reach each other from endpoint records alone; no broadcast crosses the underlay; pods leave and arrive',
  { timeout: 120_000 },
  async (t) => {
    const state = await overlayLab(t, { nodes: 4, agents: 3, underlay: 'routed', pods: 1, configText: config('none') });
    const hosts = state.hosts.filter((h) => h.name !== 'h4');
    const pods = state.pods.filter((p) => p.address);
    assert.equal(pods.length, 3);

    // The device: proxy, nolearning, on tulle's bridge, no all-zero flood entry (iproute2 as the reader).
    for (const h of hosts) {
      const { link, floodTo } = await readL2Device(h.namespace, VNI);
      const d = (link?.linkinfo?.info_data ?? {}) as Record<string, unknown>;
      assert.deepEqual(
        { master: link?.master, id: d.id, learning: d.learning, proxy: d.proxy, floodTo },
        { master: `tl${VNI}`, id: VNI, learning: false, proxy: true, floodTo: [] },
        h.name,
      );
      const fdb = await runJson<Array<{ mac: string }>>(['bridge', '-n', h.namespace, '-j', 'fdb', 'show', 'dev', DEV]);
      assert.ok(!fdb.some((f) => f.mac === '00:00:00:00:00:00'), `${h.name} has an all-zero entry: ${JSON.stringify(fdb)}`);
    }
    // Exactly the remote pods' entries on every host (lab up waited for them; here they are compared line by line).
    const endpoints = await labEndpoints(state.hosts, pods);
    for (const h of hosts) {
      const have = await readL2Endpoints(h.namespace, VNI);
      const want = expectedL2Endpoints(endpoints, h.address);
      assert.equal(want.fdb.length, 2);
      assert.deepEqual(have, want, `${h.name}'s endpoint entries`);
    }
    assert.deepEqual(await storedEndpoints(state), endpoints.map((e) => `${e.ip} ${e.mac} ${e.publicIP}`).sort(), 'one record per pod');
    // Hostile records (anyone reaching the store can write one): an address of h1's slice claimed for h2's
    // underlay, and junk. No host programs them; each agent says which and why; the kernel stays as it was.
    const h1Pod = endpoints.find((e) => e.publicIP === hosts[0]!.address)!;
    const stolen = `${PREFIX}/endpoints/${h1Pod.ip.replace(/\d+$/, (n) => String(Number(n) + 1))}`;
    await putRaw(state, stolen, JSON.stringify({ IP: stolen.split('/').pop(), MAC: '02:00:00:00:66:01', PublicIP: hosts[1]!.address }));
    await putRaw(state, `${PREFIX}/endpoints/10.34.0.250`, '{"IP":"10.34.0.250","MAC":"ff:ff:ff:ff:ff:ff","PublicIP":"192.0.2.11","Extra":1}');
    // The two records arrive as two store events: wait for every agent to have reported both.
    await waitFor(
      () => hosts.every((h) => [stolen, `${PREFIX}/endpoints/10.34.0.250`].every((key) => agentLog(state, h.name).includes(`"key":"${key}"`))),
      10_000,
      'every agent to report the stolen address and the malformed record',
    );
    assert.match(agentLog(state, 'h3'), /not programming an endpoint record.*lies in the slice of the host 192\.0\.2\.11, not of PublicIP 198\.51\.100\.12/);
    assert.match(agentLog(state, 'h3'), /not programming an endpoint record.*10\.34\.0\.250.*malformed/);
    for (const h of hosts)
      assert.deepEqual(await readL2Endpoints(h.namespace, VNI), expectedL2Endpoints(endpoints, h.address), `${h.name} programmed a hostile record`);
    await deleteRaw(state, stolen);
    await deleteRaw(state, `${PREFIX}/endpoints/10.34.0.250`);

    const status = await runTulleIn(hosts[0]!.namespace, ['status', '--store', state.overlay!.store, '--prefix', PREFIX], { allowFailure: true });
    assert.match(status.stdout, /^pods: {5}2 remote pod\(s\) from the store's endpoint records$/m);
    assert.match(status.stdout, /^in sync: {2}yes$/m);
    assert.equal(status.status, 0, status.stdout + status.stderr);

    // No broadcast: warm the underlay up, pin its neighbours, forget what the pods know, then capture every host's
    // underlay interface during an all-pairs ping (each ping starts with an ARP request the device answers itself).
    await allPairsPing(pods);
    await pinUnderlayNeighbours([...hosts.map((h) => h.namespace), state.router!.namespace]);
    for (const p of pods) await run(['ip', '-n', p.namespace, 'neigh', 'flush', 'dev', 'eth0']);
    const captures = await Promise.all(
      hosts.map(async (h) => ({
        host: h.name,
        file: join(state.dir, `underlay-${h.name}.pcap`),
        child: await startCapture(h.namespace, 'eth0', join(state.dir, `underlay-${h.name}.pcap`)),
      })),
    );
    try {
      await allPairsPing(pods);
    } finally {
      for (const c of captures) await stopCapture(c.child);
    }
    let echoes = 0;
    for (const c of captures) {
      const out = await run([process.execPath, TULLE_BIN, 'decode', '--json', c.file]);
      const frames = out.stdout
        .trim()
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Decoded);
      const flooded = frames.filter(
        (f) => f.eth?.dst === 'ff:ff:ff:ff:ff:ff' || f.arp || f.inner?.arp || (f.inner?.eth && parseInt(f.inner.eth.dst.slice(0, 2), 16) & 1),
      );
      assert.deepEqual(flooded, [], `broadcast or ARP frames on ${c.host}'s underlay`);
      echoes += frames.filter((f) => f.vxlan?.vni === VNI && f.inner?.icmp).length;
    }
    // 6 pairs, request and reply, each seen leaving one host and arriving at another.
    assert.equal(echoes, 24, 'every echo crossed the underlay as VXLAN');
    t.diagnostic(`all-pairs ping of 3 pods: ${echoes} VXLAN frames on the hosts' underlay interfaces, 0 broadcast/ARP`);

    // CNI DEL of h2's pod (through h2's agent, no prevResult): its record and every host's entries for it go.
    const h2 = state.hosts.find((h) => h.name === 'h2')!;
    const gone = pods.find((p) => p.host === 'h2')!;
    await cniInvokeOk({
      command: 'DEL',
      containerId: `${state.name}-${gone.name}`,
      ifName: 'eth0',
      config: podNetconf(state, 'h2'),
      hostNetns: h2.namespace,
      plugin: TULLE_CNI_SHIM,
      env: { TULLE_CNI_SOCKET: cniSocketOf(state, 'h2') },
    });
    const live = pods.filter((p) => p !== gone);
    const started = Date.now();
    await waitL2Endpoints(hosts, live, VNI, 10_000);
    t.diagnostic(`h2's pod deleted: gone from every host's entries ${Date.now() - started} ms after DEL returned`);
    assert.deepEqual(await storedEndpoints(state), (await labEndpoints(state.hosts, live)).map((e) => `${e.ip} ${e.mac} ${e.publicIP}`).sort());

    // A 4th host joins with a pod: every host gets its entries, and it gets everyone's.
    startAgent(state, 'h4');
    await waitConverged(
      state,
      state.hosts.map((h) => h.name),
      20_000,
    );
    const newcomer = await addPod(state, 'h4', 'h4-p1');
    const now = [...live, newcomer];
    await waitL2Endpoints(state.hosts, now, VNI, 10_000);
    assert.deepEqual(
      await storedEndpoints(state),
      (await labEndpoints(state.hosts, now)).map((e) => `${e.ip} ${e.mac} ${e.publicIP}`).sort(),
      'exactly one record per live pod',
    );
    await allPairsPing(now);
  },
);

test('none: without the agent, the Node plugin refuses ADD, naming why, and leaves nothing behind', async (t) => {
  const state = await overlayLab(t, { nodes: 1, underlay: 'routed', pods: 0, configText: config('none') });
  const h1 = state.hosts[0]!;
  const podNs = await freshNetns(t, 'l2nonepod');
  const before = await storedEndpoints(state);
  const r = await cniInvoke({
    command: 'ADD',
    containerId: `${state.name}-alone`,
    netns: `/run/netns/${podNs}`,
    ifName: 'eth0',
    config: podNetconf(state, 'h1'),
    hostNetns: h1.namespace,
  });
  assert.equal(r.exitCode, 1, r.stdout);
  const error = JSON.parse(r.stdout) as { code: number; msg: string };
  assert.equal(error.code, 107);
  assert.match(error.msg, /Backend\.Flood "none" \(TULLE_L2_FLOOD=none\)/);
  assert.match(error.msg, /ADD needs the agent running on this host/);
  assert.equal(r.stderr, '', 'no stack trace');
  const ipam = join(state.dir, 'h1', 'ipam', 'tulle');
  assert.deepEqual(existsSync(ipam) ? readdirSync(ipam).filter((f) => /^\d/.test(f)) : [], [], 'no address reserved');
  assert.deepEqual(await runJson(['ip', '-n', podNs, '-j', 'link', 'show', 'eth0']).catch(() => []), [], 'no interface in the pod');
  assert.deepEqual(await storedEndpoints(state), before, 'no record');
  // DEL of that never-attached pod is fine (idempotent), with or without the agent.
  const del = await cniInvoke({
    command: 'DEL',
    containerId: `${state.name}-alone`,
    netns: `/run/netns/${podNs}`,
    ifName: 'eth0',
    config: podNetconf(state, 'h1'),
    hostNetns: h1.namespace,
  });
  assert.equal(del.exitCode, 0, del.stdout);
  assert.equal((await runStoreCommand(state, ['config', 'get'])).status, 0);
});

test('unicast switched to none (config rewritten, agents restarted): the device is recreated with proxy, no all-zero entry stays; entries removed by hand come back', async (t) => {
  const state = await overlayLab(t, { nodes: 2, underlay: 'routed', pods: 0, configText: config('unicast') });
  const [h1, h2] = state.hosts as [LabState['hosts'][number], LabState['hosts'][number]];
  assert.deepEqual((await readL2Device(h1.namespace, VNI)).floodTo, [h2.address], 'unicast: the flood entry toward h2');
  await runStoreCommand(state, ['config', 'put'], { input: config('none') });
  for (const h of ['h1', 'h2']) {
    await stopAgent(state, h);
    startAgent(state, h);
  }
  await waitFor(
    async () => {
      const devices = await Promise.all([h1, h2].map((h) => readL2Device(h.namespace, VNI)));
      return devices.every((d) => (d.link?.linkinfo?.info_data as { proxy?: boolean } | undefined)?.proxy === true && d.floodTo.length === 0);
    },
    20_000,
    'both devices to be recreated for Flood none',
  );
  for (const h of [h1, h2]) {
    const fdb = await runJson<Array<{ mac: string }>>(['bridge', '-n', h.namespace, '-j', 'fdb', 'show', 'dev', DEV]);
    assert.ok(!fdb.some((f) => f.mac === '00:00:00:00:00:00'), `${h.name} kept an all-zero entry: ${JSON.stringify(fdb)}`);
  }
  assert.match(agentLog(state, 'h1'), /recreating the L2 device: the existing one is incompatible.*proxy false != true/);

  const pods = [await addPod(state, 'h1', 'h1-p1'), await addPod(state, 'h2', 'h2-p1')];
  await waitL2Endpoints(state.hosts, pods, VNI, 10_000);
  await allPairsPing(pods);
  // Someone removes h1's entries for h2's pod (and adds an all-zero one): the agent puts the store's view back.
  const remote = pods[1]!;
  const [{ address: mac }] = (await runJson<Array<{ address: string }>>(['ip', '-n', remote.namespace, '-j', 'link', 'show', 'eth0'])) as [{ address: string }];
  await run(['bridge', '-n', h1.namespace, 'fdb', 'del', mac, 'dev', DEV, 'dst', h2.address, 'self']);
  await run(['ip', '-n', h1.namespace, 'neigh', 'del', remote.address!, 'dev', DEV]);
  await run(['bridge', '-n', h1.namespace, 'fdb', 'append', '00:00:00:00:00:00', 'dev', DEV, 'dst', h2.address]);
  await waitL2Endpoints(state.hosts, pods, VNI, 10_000);
  await waitFor(async () => (await readL2Device(h1.namespace, VNI)).floodTo.length === 0, 10_000, 'the all-zero entry to go');
  await allPairsPing(pods);

  // With h1's agent stopped, an entry deleted by hand stays deleted, and `tulle status` names the command that is missing.
  await stopAgent(state, 'h1');
  await run(['ip', '-n', h1.namespace, 'neigh', 'del', remote.address!, 'dev', DEV]);
  const st = await runTulleIn(h1.namespace, ['status', '--store', state.overlay!.store, '--prefix', PREFIX], { allowFailure: true });
  assert.equal(st.status, 1);
  assert.match(st.stdout, /^in sync: {2}NO$/m);
  assert.match(st.stdout, new RegExp(`^ {2}ip neigh replace ${remote.address!.replace(/\./g, '\\.')} lladdr ${mac} dev ${DEV} nud permanent$`, 'm'));
  startAgent(state, 'h1');
  await waitL2Endpoints(state.hosts, pods, VNI, 20_000);

  // DEL while h2's agent is down runs the Node plugin alone: the pod goes, its record cannot. h2's agent, started
  // again, finds no reservation for that address in its IPAM directory and deletes the record; h1 follows.
  await stopAgent(state, 'h2');
  const del = await cniInvoke({
    command: 'DEL',
    containerId: `${state.name}-h2-p1`,
    ifName: 'eth0',
    config: podNetconf(state, 'h2'),
    hostNetns: h2.namespace,
    plugin: TULLE_CNI_SHIM,
    env: { TULLE_CNI_SOCKET: cniSocketOf(state, 'h2') },
  });
  assert.equal(del.exitCode, 0, del.stdout + del.stderr);
  assert.equal((await storedEndpoints(state)).length, 2, 'the record stays while no agent runs');
  startAgent(state, 'h2');
  await waitL2Endpoints(state.hosts, [pods[0]!], VNI, 20_000);
  assert.deepEqual(
    await storedEndpoints(state),
    (await labEndpoints(state.hosts, [pods[0]!])).map((e) => `${e.ip} ${e.mac} ${e.publicIP}`),
  );
  assert.match(agentLog(state, 'h2'), /removed records of pods this host no longer has/);
});
