/**
 * The agent end to end on a real etcd server (running in h1's namespace), with routed-mode (Calico-style)
 * pods: a host configured by hand with `ip` and announced by a lease written by hand in flannel's format
 * (seed 002), a lease with garbage backend data, and etcd going away while the data plane must stay.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { run } from '../../src/base/exec.js';
import { formatIPv4, parseCidr4 } from '../../src/base/ip.js';
import { loadLabState, startEtcd, type LabState } from '../../src/lab/index.js';
import { requireRoot } from '../helpers/netns.js';
import { agentLog, kernelView, labRoot, overlayLab } from '../helpers/lab.js';
import { assertClusterPattern, leasesOf, podMatrix, ping, within } from './overlay-helpers.js';

const ns = (s: LabState, host: string) => s.hosts.find((h) => h.name === host)!.namespace;
const dot = (subnet: string, n: number) => formatIPv4(parseCidr4(subnet).network + n);

/** etcdctl inside the store host's namespace: an independent writer, as flanneld or an operator would be. */
function etcdctl(state: LabState, ...args: string[]) {
  return run(['ip', 'netns', 'exec', ns(state, 'h1'), 'etcdctl', '--endpoints', 'http://127.0.0.1:2379', ...args]);
}

test('etcd store: routed-mode pods, a hand-made flannel host, a garbage lease, and etcd away', async (t) => {
  requireRoot();
  const state = await overlayLab(t, { nodes: 4, store: 'etcd', mode: 'routed', pods: 1, agents: 3 });
  assert.match(state.overlay!.store, /^etcd:\/\/192\.0\.2\.11:2379$/);

  await t.test('pods on 3 routed hosts reach each other; each host holds the seed pattern for every peer', async () => {
    assert.equal(state.pods.length, 3);
    assert.deepEqual(await podMatrix(state), []);
    await assertClusterPattern(state, ['h1', 'h2', 'h3']);
    // Calico's routed attachment (seed 004) inside a pod.
    const pod = state.pods[0]!;
    const routes = JSON.parse((await run(['ip', '-n', pod.namespace, '-j', 'route'])).stdout) as Array<{ dst: string; gateway?: string }>;
    assert.deepEqual(
      routes.map((r) => [r.dst, r.gateway ?? null]),
      [
        ['default', '169.254.1.1'],
        ['169.254.1.1', null],
      ],
    );
  });

  // The agents picked their subnets at random: the hand-made host and the garbage leases take ones none of them holds
  // (a garbage value written over an agent's own lease would be a different test).
  const taken = new Set((await leasesOf(state)).map((l) => l.subnet));
  const [handSubnet, garbageSubnet, notJsonSubnet] = Array.from({ length: 256 }, (_, i) => `10.244.${255 - i}.0/24`).filter((c) => !taken.has(c));
  const keyOf = (subnet: string) => `/coreos.com/network/subnets/${subnet.replace('/', '-')}`;

  await t.test('a host set up by hand as in seed 002, announced by a flannel-format lease written with etcdctl, is programmed and reachable', async () => {
    const hand = state.hosts[3]!; // h4, the host without an agent
    const subnet = handSubnet!;
    const mac = '0e:f0:b5:8c:28:f5';
    // h4 by hand: the VTEP, its address, a bridge holding the subnet's gateway, and the way back to each agent host.
    const ip = (...a: string[]) => run(['ip', '-n', hand.namespace, ...a]);
    await ip('link', 'add', 'flannel.1', 'address', mac, 'type', 'vxlan', 'id', '1', 'local', hand.address, 'dev', 'eth0', 'dstport', '8472', 'nolearning');
    await ip('link', 'set', 'flannel.1', 'mtu', '1450', 'up');
    await ip('addr', 'add', `${dot(subnet, 0)}/32`, 'dev', 'flannel.1');
    await ip('link', 'add', 'cni0', 'type', 'bridge');
    await ip('link', 'set', 'cni0', 'up');
    await ip('addr', 'add', `${dot(subnet, 1)}/24`, 'dev', 'cni0');
    for (const peer of await leasesOf(state)) {
      await ip('neigh', 'add', dot(peer.subnet, 0), 'lladdr', peer.backendData.VtepMAC, 'dev', 'flannel.1', 'nud', 'permanent');
      await run(['bridge', '-n', hand.namespace, 'fdb', 'append', peer.backendData.VtepMAC, 'dev', 'flannel.1', 'dst', peer.publicIP]);
      await ip('route', 'add', peer.subnet, 'via', dot(peer.subnet, 0), 'dev', 'flannel.1', 'onlink');
    }
    // The lease exactly as flanneld writes it (lower-case keys read case-insensitively would work too), with a TTL.
    const grant = (await etcdctl(state, 'lease', 'grant', '600')).stdout;
    const leaseId = /lease ([0-9a-f]+) granted/.exec(grant)![1]!;
    const value = JSON.stringify({ PublicIP: hand.address, PublicIPv6: null, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: mac } });
    await etcdctl(state, 'put', '--lease', leaseId, keyOf(subnet), value);

    await within(5000, 'h1..h3 to program the hand-made host', async () => {
      for (const h of ['h1', 'h2', 'h3']) {
        const k = await kernelView(ns(state, h));
        if (!k.routes.some((r) => r.dst === subnet && r.gateway === dot(subnet, 0)) || !k.fdb.some((f) => f.mac === mac && f.dst === hand.address))
          return false;
      }
      return true;
    });
    for (const pod of state.pods) {
      assert.ok(await ping(pod.namespace, dot(subnet, 0)), `${pod.name} reaches h4's VTEP address`);
      assert.ok(await ping(pod.namespace, dot(subnet, 1)), `${pod.name} reaches h4's cni0 address`);
    }
  });

  await t.test('a lease with garbage backend data is logged and skipped; everything else stays programmed', async () => {
    await etcdctl(state, 'put', keyOf(garbageSubnet!), '{"PublicIP":"192.0.2.99","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"not-a-mac"}}');
    await etcdctl(state, 'put', keyOf(notJsonSubnet!), 'this is not json');
    const named = (subnet: string) => agentLog(state, 'h1').includes(keyOf(subnet));
    await within(5000, 'the agents to log the malformed leases', () => named(garbageSubnet!) && named(notJsonSubnet!));
    for (const h of ['h1', 'h2', 'h3']) {
      const k = await kernelView(ns(state, h));
      assert.ok(!k.routes.some((r) => r.dst === garbageSubnet || r.dst === notJsonSubnet), `${h} programmed no garbage`);
    }
    assert.deepEqual(await podMatrix(state), []);
    await etcdctl(state, 'del', keyOf(garbageSubnet!));
    await etcdctl(state, 'del', keyOf(notJsonSubnet!));
  });

  await t.test('etcd stops: agents keep the data plane and retry; etcd returns: they carry on', async () => {
    const before = await Promise.all(['h1', 'h2', 'h3'].map((h) => kernelView(ns(state, h))));
    const etcd = loadLabState(state.name, { root: labRoot }).processes.find((p) => p.role === 'etcd')!;
    process.kill(etcd.pid, 'SIGKILL');
    await within(30_000, 'an agent to report the store unreachable', () =>
      /unreachable|store error|UNAVAILABLE/i.test(agentLog(state, 'h1') + agentLog(state, 'h2')),
    );
    await new Promise((r) => setTimeout(r, 1000));
    const during = await Promise.all(['h1', 'h2', 'h3'].map((h) => kernelView(ns(state, h))));
    assert.deepEqual(
      during.map((k) => k.routes),
      before.map((k) => k.routes),
      'routes unchanged while etcd is away',
    );
    assert.deepEqual(
      during.map((k) => k.fdb),
      before.map((k) => k.fdb),
      'FDB unchanged while etcd is away',
    );
    assert.deepEqual(await podMatrix(state), [], 'pods still reach each other');
    for (const p of loadLabState(state.name, { root: labRoot }).processes.filter((x) => x.role === 'agent')) process.kill(p.pid, 0); // still running

    startEtcd(loadLabState(state.name, { root: labRoot }), 'h1');
    // After etcd is back a new lease change is seen again: delete the hand-made host's lease.
    await within(
      30_000,
      'etcd to answer again',
      async () =>
        (
          await run(['ip', 'netns', 'exec', ns(state, 'h1'), 'etcdctl', '--endpoints', 'http://127.0.0.1:2379', 'del', keyOf(handSubnet!)], {
            allowFailure: true,
          })
        ).status === 0,
    );
    await within(20_000, 'h1..h3 to drop the deleted lease', async () => {
      for (const h of ['h1', 'h2', 'h3']) if ((await kernelView(ns(state, h))).routes.some((r) => r.dst === handSubnet)) return false;
      return true;
    });
    await assertClusterPattern(state, ['h1', 'h2', 'h3']);
  });
});
