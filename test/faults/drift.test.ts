/**
 * Fault: someone changes what the agent owns — each kernel entry deleted, and rewritten in place (another
 * gateway, another MAC, another FDB destination), the VTEP's MTU, state, MAC and address changed, a foreign route
 * put inside a peer's subnet. Expected: each is repaired within 1 s (a foreign route instead makes the peer
 * rejected, and its removal re-admits it), and `tulle lab status` sees a VTEP attribute that is wrong while the
 * agent is stopped.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { run } from '../../src/base/exec.js';
import { formatIPv4, parseCidr4 } from '../../src/base/ip.js';
import { labStatus, loadLabState, startAgent, stopAgent } from '../../src/lab/index.js';
import { requireRoot } from '../helpers/netns.js';
import { agentLog, kernelView, labRoot, overlayLab } from '../helpers/lab.js';
import { assertClusterPattern, leasesOf, podMatrix, within } from '../e2e/overlay-helpers.js';

test('drift: every entry and VTEP attribute changed by someone else is put back within 1 s', async (t) => {
  requireRoot();
  const state = await overlayLab(t, { nodes: 3, underlay: 'switch', store: 'sqlite', mode: 'bridge', pods: 1 });
  const leases = await leasesOf(state);
  const h1 = state.hosts[0]!.namespace;
  const peer = leases.find((l) => l.publicIP === state.hosts[1]!.address)!;
  const other = leases.find((l) => l.publicIP === state.hosts[2]!.address)!;
  const own = leases.find((l) => l.publicIP === state.hosts[0]!.address)!;
  const dot0 = formatIPv4(parseCidr4(peer.subnet).network);
  const mac = peer.backendData.VtepMAC;
  const figures: string[] = [];

  const right = async () => {
    const k = await kernelView(h1);
    const route = k.routes.find((r) => r.dst === peer.subnet);
    return (
      route?.gateway === dot0 &&
      route.dev === 'flannel.1' &&
      k.neigh.some((n) => n.dst === dot0 && n.lladdr === mac && n.state.includes('PERMANENT')) &&
      k.fdb
        .filter((f) => f.mac === mac)
        .map((f) => f.dst)
        .join() === peer.publicIP &&
      k.link?.mtu === 1450 &&
      k.link?.address === own.backendData.VtepMAC &&
      (k.link?.flags ?? []).includes('UP') &&
      k.addrs
        .filter((a: { family: string }) => a.family === 'inet')
        .map((a: { local: string; prefixlen: number }) => `${a.local}/${a.prefixlen}`)
        .join() === `${formatIPv4(parseCidr4(own.subnet).network)}/32`
    );
  };
  assert.ok(await right(), 'h1 starts right');

  const cases: Array<[string, string[][]]> = [
    ['route deleted', [['ip', '-n', h1, 'route', 'del', peer.subnet]]],
    ['neighbour deleted', [['ip', '-n', h1, 'neigh', 'del', dot0, 'dev', 'flannel.1']]],
    ['FDB entry deleted', [['bridge', '-n', h1, 'fdb', 'del', mac, 'dev', 'flannel.1', 'dst', peer.publicIP]]],
    [
      'route rewritten in place (another gateway)',
      [['ip', '-n', h1, 'route', 'replace', peer.subnet, 'via', formatIPv4(parseCidr4(other.subnet).network), 'dev', 'flannel.1', 'onlink', 'proto', '84']],
    ],
    [
      'neighbour rewritten in place (another MAC)',
      [['ip', '-n', h1, 'neigh', 'replace', dot0, 'lladdr', '02:00:00:00:0d:01', 'dev', 'flannel.1', 'nud', 'permanent']],
    ],
    [
      'FDB entry pointed at another host',
      [['bridge', '-n', h1, 'fdb', 'replace', mac, 'dev', 'flannel.1', 'dst', state.hosts[2]!.address, 'self', 'permanent']],
    ],
    ['VTEP MTU lowered', [['ip', '-n', h1, 'link', 'set', 'flannel.1', 'mtu', '1400']]],
    ['VTEP set down', [['ip', '-n', h1, 'link', 'set', 'flannel.1', 'down']]],
    ['VTEP MAC changed', [['ip', '-n', h1, 'link', 'set', 'flannel.1', 'address', '02:00:00:00:0d:02']]],
    ['VTEP address removed', [['ip', '-n', h1, 'addr', 'flush', 'dev', 'flannel.1']]],
    ['VTEP given another address', [['ip', '-n', h1, 'addr', 'add', '10.244.250.7/32', 'dev', 'flannel.1']]],
  ];
  for (const [what, commands] of cases) {
    const t0 = performance.now();
    for (const c of commands) await run(c);
    await within(1000, `h1 to repair: ${what}`, right);
    figures.push(`${what}: ${Math.round(performance.now() - t0)} ms`);
  }
  assert.match(agentLog(state, 'h1'), /"msg":"repairing VTEP".*"why":"VTEP mtu 1400 != 1450"/);

  // A route someone else puts inside the peer's subnet: the peer is rejected and tulle's route goes, theirs stays;
  // once theirs is gone, the peer is programmed again.
  const quarter = `${formatIPv4(parseCidr4(peer.subnet).network + 64)}/26`;
  let t0 = performance.now();
  await run(['ip', '-n', h1, 'route', 'add', quarter, 'dev', 'eth0', 'proto', 'static']);
  await within(
    1000,
    'h1 to withdraw the peer whose subnet now holds a foreign route',
    async () => !(await kernelView(h1)).routes.some((r) => r.dst === peer.subnet),
  );
  figures.push(`foreign route in a peer subnet, peer withdrawn: ${Math.round(performance.now() - t0)} ms`);
  assert.match((await run(['ip', '-n', h1, 'route', 'show', quarter])).stdout, /dev eth0 proto static/, 'their route stays');
  assert.match(
    agentLog(state, 'h1'),
    new RegExp(`"reason":"foreign-route","detail":"subnet ${peer.subnet.replace(/\./g, '\\.')} holds the route ${quarter.replace(/\./g, '\\.')}`),
  );
  t0 = performance.now();
  await run(['ip', '-n', h1, 'route', 'del', quarter]);
  await within(1000, 'h1 to program the peer again', right);
  figures.push(`foreign route removed, peer back: ${Math.round(performance.now() - t0)} ms`);

  // With the agent stopped, `lab status` reads the VTEP's attributes and says what is wrong.
  await stopAgent(state, 'h3');
  await run(['ip', '-n', state.hosts[2]!.namespace, 'link', 'set', 'flannel.1', 'mtu', '1300']);
  const h3 = (await labStatus(loadLabState(state.name, { root: labRoot }))).find((h) => h.host === 'h3')!;
  assert.equal(h3.inSync, false);
  assert.ok(h3.pending.includes('ip link set flannel.1 mtu 1450 (is 1300)'), JSON.stringify(h3.pending));
  startAgent(loadLabState(state.name, { root: labRoot }), 'h3');
  await within(20_000, 'h3 to put its MTU back after a restart', async () => (await kernelView(state.hosts[2]!.namespace)).link?.mtu === 1450);

  await assertClusterPattern(loadLabState(state.name, { root: labRoot }), ['h1', 'h2', 'h3']);
  assert.deepEqual(await podMatrix(state), []);
  t.diagnostic(`repairs: ${figures.join(', ')}`);
});
