/**
 * The agent end to end on the SQLite store: a routed 4-host lab (agents on 3 hosts, the 4th joins later) with
 * bridge-mode pods. Kernel state is read with iproute2, leases with `tulle leases`, reachability with ping.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { run } from '../../src/base/exec.js';
import { TULLE_BIN, addPod, labDown, labStatus, removeHostFromOverlay, startAgent, stopAgent, waitConverged, type LabState } from '../../src/lab/index.js';
import { requireRoot } from '../helpers/netns.js';
import { agentLog, kernelView, labRoot, overlayLab } from '../helpers/lab.js';
import { assertClusterPattern, leasesOf, podMatrix, ping, startFastPing, startMonitor, within } from './overlay-helpers.js';
import { labNamespace, loadLabState } from '../../src/lab/index.js';

const fresh = (s: LabState) => loadLabState(s.name, { root: labRoot });
const ns = (s: LabState, host: string) => s.hosts.find((h) => h.name === host)!.namespace;

test('sqlite store: pods on 3 routed hosts reach each other; a 4th host joins, drift is repaired, restarts are invisible, leavers vanish', async (t) => {
  requireRoot();
  let state = await overlayLab(t, { nodes: 4, store: 'sqlite', mode: 'bridge', pods: 1, agents: 3 });

  await t.test('every pod reaches every other pod across the router', async () => {
    assert.equal(state.pods.length, 3);
    assert.deepEqual(await podMatrix(state), []);
  });

  await t.test('each host holds the seed pattern for every peer, as iproute2 reads it', async () => {
    await assertClusterPattern(state, ['h1', 'h2', 'h3']);
  });

  await t.test('a 4th host joins: every other host has its route, neighbour and FDB entry within 1 s of its lease', async () => {
    startAgent(state, 'h4');
    await within(20_000, 'h4 to write its lease', async () => (await leasesOf(state)).some((l) => l.publicIP === state.hosts[3]!.address));
    const lease = (await leasesOf(state)).find((l) => l.publicIP === state.hosts[3]!.address)!;
    const t0 = Date.now();
    await within(1000, `h1..h3 to program h4's ${lease.subnet}`, async () => {
      for (const h of ['h1', 'h2', 'h3']) {
        const k = await kernelView(ns(state, h));
        if (
          !k.routes.some((r) => r.dst === lease.subnet) ||
          !k.neigh.some((n) => n.lladdr === lease.backendData.VtepMAC) ||
          !k.fdb.some((f) => f.mac === lease.backendData.VtepMAC)
        )
          return false;
      }
      return true;
    });
    t.diagnostic(`h4's entries on all other hosts ${Date.now() - t0} ms after its lease was visible`);
    state = await waitConverged(fresh(state), ['h1', 'h2', 'h3', 'h4']);
    await assertClusterPattern(state, ['h1', 'h2', 'h3', 'h4']);
    await addPod(state, 'h4', 'h4-p1');
    state = fresh(state);
    assert.deepEqual(await podMatrix(state), []);
  });

  await t.test('drift: a deleted route, neighbour and FDB entry are back within 1 s', async () => {
    const peer = (await leasesOf(state)).find((l) => l.publicIP === state.hosts[1]!.address)!;
    const h1 = ns(state, 'h1');
    const dot0 = peer.subnet.replace(/\.0\/\d+$/, '.0');
    await run(['ip', '-n', h1, 'route', 'del', peer.subnet]);
    await run(['ip', '-n', h1, 'neigh', 'del', dot0, 'dev', 'flannel.1']);
    await run(['bridge', '-n', h1, 'fdb', 'del', peer.backendData.VtepMAC, 'dev', 'flannel.1', 'dst', peer.publicIP]);
    await within(1000, 'h1 to restore the route, neighbour and FDB entry', async () => {
      const k = await kernelView(h1);
      return (
        k.routes.some((r) => r.dst === peer.subnet) &&
        k.neigh.some((n) => n.dst === dot0 && n.lladdr === peer.backendData.VtepMAC) &&
        k.fdb.some((f) => f.mac === peer.backendData.VtepMAC && f.dst === peer.publicIP)
      );
    });
    await assertClusterPattern(state, ['h1', 'h2', 'h3', 'h4']);
    assert.match(agentLog(state, 'h1'), /"reason":"drift"/);
  });

  await t.test('drift: a deleted VTEP comes back with the same MAC, its address and every peer entry', async () => {
    const h2 = ns(state, 'h2');
    await run(['ip', '-n', h2, 'link', 'del', 'flannel.1']);
    await within(3000, 'h2 to recreate flannel.1 and reprogram its peers', async () => {
      const k = await kernelView(h2);
      return Boolean(k.link) && k.routes.length === 3 && k.neigh.length === 3 && k.fdb.length === 3;
    });
    await assertClusterPattern(state, ['h1', 'h2', 'h3', 'h4']); // includes: the MAC is still the one in h2's lease
    assert.match(agentLog(state, 'h2'), /"msg":"repairing VTEP".*"why":"VTEP (deleted|down)"/);
    assert.deepEqual(await podMatrix(state), []);
  });

  await t.test('agent restarted while a pod pings across it every 10 ms: no packet lost, no kernel write', async () => {
    const from = state.pods.find((p) => p.host === 'h1')!;
    const to = state.pods.find((p) => p.host === 'h2')!;
    const monitor = startMonitor(ns(state, 'h1'));
    // The ping runs for a fixed time on both sides of the restart (not for a count of packets, which would
    // depend on how fast this machine restarts an agent); what is asserted is the loss.
    const pinger = startFastPing(from.namespace, to.address!);
    await new Promise((r) => setTimeout(r, 1000));
    const readyBefore = (agentLog(state, 'h1').match(/"msg":"ready"/g) ?? []).length;
    await stopAgent(state, 'h1');
    startAgent(fresh(state), 'h1');
    await within(20_000, 'the restarted agent to be ready', () => (agentLog(state, 'h1').match(/"msg":"ready"/g) ?? []).length > readyBefore);
    await new Promise((r) => setTimeout(r, 1000));
    const counts = await pinger.stop();
    const events = await monitor.stop();
    assert.ok(counts.transmitted > 0, `ping ran (${counts.transmitted} sent)`);
    t.diagnostic(`${counts.transmitted} pings sent across the restart, ${counts.received} answered`);
    assert.equal(counts.received, counts.transmitted, `no loss: ${counts.output.trim().split('\n').slice(-2).join(' ')}`);
    // The kernel's own IPv6 link-local traffic on the VTEP (its fe80:: address finishing duplicate address
    // detection, neighbour discovery) is not tulle's doing and may fall into the window.
    const ours = events.filter((l) => /flannel\.1|proto 84/.test(l) && !/\b(fe80|ff02)::/.test(l));
    assert.deepEqual(ours, [], 'no route, neighbour, FDB, link or address event touched the overlay');
    const lastReady = agentLog(state, 'h1')
      .split('\n')
      .filter((l) => l.includes('"msg":"ready"'))
      .pop()!;
    assert.equal(JSON.parse(lastReady).writes, 0, 'the restarted agent reconciled with zero writes');
    assert.match(agentLog(state, 'h1'), /"msg":"VTEP kept"/);
  });

  await t.test('a host that left while an agent was down is removed from that host when its agent starts', async () => {
    const h3lease = (await leasesOf(state)).find((l) => l.publicIP === state.hosts[2]!.address)!;
    await stopAgent(state, 'h1');
    await removeHostFromOverlay(fresh(state), 'h3');
    // The others drop h3 at once ...
    await within(1000, 'h2 and h4 to drop h3', async () => {
      for (const h of ['h2', 'h4']) if ((await kernelView(ns(state, h))).routes.some((r) => r.dst === h3lease.subnet)) return false;
      return true;
    });
    // ... h1, whose agent is down, still has them.
    assert.ok(
      (await kernelView(ns(state, 'h1'))).routes.some((r) => r.dst === h3lease.subnet),
      'h1 still routes to h3 while its agent is down',
    );
    // `lab status` sees it: h1 out of sync, with the stale entries named as the commands that would remove them.
    const status = await run([process.execPath, TULLE_BIN, 'lab', 'status', '--name', state.name, '--json'], {
      allowFailure: true,
      env: { ...process.env, TULLE_LAB_DIR: labRoot },
    });
    assert.equal(status.status, 1, 'lab status exits 1 when a host is out of sync');
    const byHost = Object.fromEntries((JSON.parse(status.stdout) as Array<{ host: string; inSync: boolean; pending: string[] }>).map((h) => [h.host, h]));
    assert.equal(byHost.h1!.inSync, false);
    assert.ok(
      byHost.h1!.pending.includes(`ip route del ${h3lease.subnet} via ${h3lease.subnet.replace(/\/24$/, '')} dev flannel.1 onlink proto 84`),
      JSON.stringify(byHost.h1!.pending),
    );
    assert.equal(byHost.h2!.inSync, true);
    startAgent(fresh(state), 'h1');
    await within(20_000, 'h1 to drop h3 after its agent starts', async () => {
      const k = await kernelView(ns(state, 'h1'));
      return (
        !k.routes.some((r) => r.dst === h3lease.subnet) &&
        !k.neigh.some((n) => n.lladdr === h3lease.backendData.VtepMAC) &&
        !k.fdb.some((f) => f.mac === h3lease.backendData.VtepMAC)
      );
    });
    await assertClusterPattern(fresh(state), ['h1', 'h2', 'h4']);
    assert.ok(
      (await labStatus(fresh(state))).filter((h) => h.host !== 'h3').every((h) => h.inSync),
      'in sync again',
    );
    // h3 itself is clean: no VTEP, no tulle route, no subnet.env.
    const h3 = ns(state, 'h3');
    assert.equal((await run(['ip', '-n', h3, 'link', 'show', 'flannel.1'], { allowFailure: true })).status, 1);
    assert.deepEqual((await kernelView(h3)).routes, []);
    assert.ok(await ping(state.pods.find((p) => p.host === 'h1')!.namespace, state.pods.find((p) => p.host === 'h4')!.address!));
  });

  await labDown(state.name, { root: labRoot });
  assert.equal((await run(['ip', 'netns', 'list'])).stdout.includes(labNamespace(state.name, 'h1')), false);
});
