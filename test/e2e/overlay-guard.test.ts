/**
 * The VXLAN guard end to end (issue 17): a 4-host lab on one switch, agents on h1..h3 with their default guard,
 * a pod on each. A stranger namespace plugged into the underlay switch (no lease) sends a codec-built VXLAN frame
 * (the network's VNI, inner ping to h2's pod, inner destination MAC = h2's VTEP MAC): it never reaches the pod and
 * h2's drop counter (read by `tulle status --json`) rises; the same frame sent from h1's address arrives. Leases
 * drive the sets: h4 joining is a member on every host no later than its route; h3 leaving is gone within 1 s.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { run, runJson } from '../../src/base/exec.js';
import { addPod, removeHostFromOverlay, runTulleIn, startAgent, stopAgent, waitConverged, loadLabState, type LabState } from '../../src/lab/index.js';
import { freshNetns, ip, requireRoot } from '../helpers/netns.js';
import { agentLog, kernelView, labRoot, overlayLab } from '../helpers/lab.js';
import { sendVxlan } from '../helpers/vxlan.js';
import { leasesOf, podMatrix, within } from './overlay-helpers.js';

const fresh = (s: LabState) => loadLabState(s.name, { root: labRoot });
const host = (s: LabState, name: string) => s.hosts.find((h) => h.name === name)!;
const STRANGER_IP = '192.0.2.99';
const STRANGER_ID = 0x5354; // "ST": the stranger's echo id
const PEER_ID = 0x5045; // "PE": the leased peer's

/** `tulle status --json` in a host's namespace (exit 1 only means "not in sync"). */
async function statusOf(s: LabState, name: string): Promise<any> {
  const r = await runTulleIn(host(s, name).namespace, ['status', '--json', '--store', s.overlay!.store], { allowFailure: true });
  return JSON.parse(r.stdout);
}

/** The peers set as nft lists it on a host (`nft -j list set ip tulle-guard peers`). */
async function members(s: LabState, name: string): Promise<string[]> {
  const doc = await runJson<{ nftables: Array<{ set?: { elem?: string[] } }> }>([
    'ip',
    'netns',
    'exec',
    host(s, name).namespace,
    'nft',
    '-j',
    'list',
    'set',
    'ip',
    'tulle-guard',
    'peers',
  ]);
  return (doc.nftables.find((i) => i.set)!.set!.elem ?? []).slice().sort();
}

test("VXLAN guard in a lab: a stranger's frame never reaches a pod; leases add and remove members in time", { timeout: 300_000 }, async (t) => {
  requireRoot();
  let state = await overlayLab(t, { nodes: 4, underlay: 'switch', store: 'sqlite', mode: 'bridge', pods: 1, agents: 3 });
  const addr = (name: string) => host(state, name).address;

  await t.test("every host's set holds exactly its peers' public IPs; tulle status shows them", async () => {
    for (const [h, peers] of [
      ['h1', ['h2', 'h3']],
      ['h2', ['h1', 'h3']],
      ['h3', ['h1', 'h2']],
    ] as const) {
      await within(10_000, `${h}'s guard to hold ${peers.join(', ')}`, async () => (await members(state, h)).join() === peers.map(addr).sort().join());
    }
    const s = await statusOf(state, 'h2');
    assert.deepEqual(
      [s.guard.present, s.guard.vni, s.guard.port, s.guard.members, s.guard.missing, s.guard.extra],
      [true, 1, 8472, [addr('h1'), addr('h3')].sort(), [], []],
    );
  });

  await t.test('a stranger on the underlay: its frame is dropped and counted; the same frame from h1 reaches the pod', async () => {
    // The stranger: a namespace with a veth into the lab's switch, an address on the underlay, no lease.
    const stranger = await freshNetns(t, 'stranger');
    const sw = state.switches[0]!.namespace;
    await ip(stranger, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'hx', 'netns', sw);
    await ip(sw, 'link', 'set', 'hx', 'master', state.switches[0]!.bridge, 'up');
    await ip(stranger, 'addr', 'add', `${STRANGER_IP}/24`, 'dev', 'eth0');
    await ip(stranger, 'link', 'set', 'eth0', 'up');

    const pod = state.pods.find((p) => p.host === 'h2')!;
    const h2 = (await leasesOf(state)).find((l) => l.publicIP === addr('h2'))!;
    const h1 = (await leasesOf(state)).find((l) => l.publicIP === addr('h1'))!;
    const innerSrc = h1.subnet.replace(/\.0\/\d+$/, '.250'); // an address of h1's pod subnet, routed back via flannel.1
    // Counters inside the pod: which echo requests reached it, told apart by their id.
    await run(['ip', 'netns', 'exec', pod.namespace, 'nft', '-f', '-'], {
      input: `table ip probe {
  counter stranger {
  }
  counter peer {
  }
  chain input {
    type filter hook input priority filter; policy accept;
    icmp type echo-request icmp id ${STRANGER_ID} counter name "stranger"
    icmp type echo-request icmp id ${PEER_ID} counter name "peer"
  }
}
`,
    });
    const podCount = async (name: string) =>
      (
        await runJson<{ nftables: Array<{ counter?: { packets: number } }> }>([
          'ip',
          'netns',
          'exec',
          pod.namespace,
          'nft',
          '-j',
          'list',
          'counter',
          'ip',
          'probe',
          name,
        ])
      ).nftables.find((i) => i.counter)!.counter!.packets;
    const probe = (srcIp: string, id: number) => ({
      srcIp,
      dstIp: addr('h2'),
      port: 8472,
      vni: 1,
      vtepMac: h2.backendData.VtepMAC,
      innerSrcIp: innerSrc,
      innerDstIp: pod.address!,
      id,
    });

    const before = (await statusOf(state, 'h2')).guard.drops.unknown_source.packets;
    await sendVxlan(stranger, probe(STRANGER_IP, STRANGER_ID));
    await within(
      30_000,
      "h2 to count the stranger's frame as dropped",
      async () => (await statusOf(state, 'h2')).guard.drops.unknown_source.packets === before + 1,
    );
    // The very same frame from a leased peer's address (sent from h1's namespace) arrives at the pod.
    await sendVxlan(host(state, 'h1').namespace, probe(addr('h1'), PEER_ID));
    await within(30_000, "the peer's frame to reach the pod", async () => (await podCount('peer')) === 1);
    assert.equal(await podCount('stranger'), 0, "the stranger's frame never reached the pod");
    assert.equal((await statusOf(state, 'h2')).guard.drops.unknown_source.packets, before + 1);
    // The agent's /metrics (served on h2's own loopback) exports the kernel counter.
    const scrape = "fetch('http://127.0.0.1:9465/metrics').then((r) => r.text()).then((t) => process.stdout.write(t))";
    const metrics = (await run(['ip', 'netns', 'exec', host(state, 'h2').namespace, process.execPath, '-e', scrape])).stdout;
    assert.match(metrics, new RegExp(`tulle_vxlan_guard_drops_total\\{reason="unknown_source"\\} ${before + 1}\\n`));
    assert.match(metrics, /tulle_vxlan_guard_members 2\n/);
  });

  await t.test('a restarted agent keeps the guard as it is: members and drop counter', async () => {
    const before = (await statusOf(state, 'h2')).guard;
    await stopAgent(state, 'h2');
    startAgent(fresh(state), 'h2');
    await within(20_000, 'h2\'s agent to log "VXLAN guard kept"', () => /"msg":"VXLAN guard kept"/.test(agentLog(state, 'h2')));
    await waitConverged(fresh(state), ['h1', 'h2', 'h3']);
    const after = (await statusOf(state, 'h2')).guard;
    assert.deepEqual([after.members, after.drops.unknown_source.packets], [before.members, before.drops.unknown_source.packets]);
    assert.match(agentLog(state, 'h2'), /"msg":"reconciled"[^\n]*"guard":\{"added":\["/, 'members were logged as they came');
    assert.doesNotMatch(agentLog(state, 'h2'), /"guard":\{[^}]*"removed":\["/, 'no member was ever removed');
  });

  await t.test('an agent restarted with the guard off removes the guard an earlier run left; on again, it is rebuilt with the peers', async () => {
    const tables = async () => (await run(['ip', 'netns', 'exec', host(state, 'h2').namespace, 'nft', 'list', 'tables'])).stdout;
    assert.match(await tables(), /tulle-guard/);
    await stopAgent(state, 'h2');
    process.env.TULLE_VXLAN_GUARD = 'false';
    try {
      startAgent(fresh(state), 'h2');
    } finally {
      delete process.env.TULLE_VXLAN_GUARD;
    }
    // A stale member set would drop a new peer's VXLAN: the table goes, and h2 stays in the overlay.
    await within(20_000, "h2's guard-less agent to remove tulle-guard", async () => !/tulle-guard/.test(await tables()));
    await waitConverged(fresh(state), ['h1', 'h2', 'h3']);
    await stopAgent(state, 'h2');
    startAgent(fresh(state), 'h2');
    await within(
      20_000,
      "h2's guard to hold h1 and h3 again",
      async () => /tulle-guard/.test(await tables()) && (await members(state, 'h2')).join() === [addr('h1'), addr('h3')].sort().join(),
    );
    await waitConverged(fresh(state), ['h1', 'h2', 'h3']);
  });

  await t.test('a new host is a member on every host no later than its route; pods reach it', async () => {
    startAgent(state, 'h4');
    await within(20_000, 'h4 to write its lease', async () => (await leasesOf(state)).some((l) => l.publicIP === addr('h4')));
    const lease = (await leasesOf(state)).find((l) => l.publicIP === addr('h4'))!;
    await within(1000, 'h1..h3 to route to h4', async () => {
      for (const h of ['h1', 'h2', 'h3']) if (!(await kernelView(host(state, h).namespace)).routes.some((r) => r.dst === lease.subnet)) return false;
      return true;
    });
    // The set was written before the routes: with the routes in place, the member must already be there.
    for (const h of ['h1', 'h2', 'h3']) assert.ok((await members(state, h)).includes(addr('h4')), `${h} lets h4 in once it routes to it`);
    state = await waitConverged(fresh(state), ['h1', 'h2', 'h3', 'h4']);
    await addPod(state, 'h4', 'h4-p1');
    state = fresh(state);
    assert.deepEqual(await podMatrix(state), []);
  });

  await t.test('a host whose lease is deleted leaves every set within 1 s', async () => {
    await removeHostFromOverlay(fresh(state), 'h3');
    await within(1000, 'h3 to leave the sets of h1, h2 and h4', async () => {
      for (const h of ['h1', 'h2', 'h4']) if ((await members(state, h)).includes(addr('h3'))) return false;
      return true;
    });
    // `tulle agent --cleanup` removed h3's own guard with the rest.
    assert.doesNotMatch((await run(['ip', 'netns', 'exec', host(state, 'h3').namespace, 'nft', 'list', 'tables'])).stdout, /tulle-guard/);
  });
});
