// The VXLAN guard against the real kernel, for each backend: a host namespace with two kernel VTEPs on port 8472
// (flannel.1 = VNI 1, the network's; flannel.2 = VNI 2, "someone else's tunnel"), a leased peer and a stranger
// on its underlay. Packets are codec-built VXLAN frames sent from those namespaces; what arrives is read from
// the VTEPs' rx counters, what the guard holds from `nft -j list` / `ipset list` / `iptables -S -v`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { run, runJson } from '../../src/base/exec.js';
import { waitFor } from '../../src/base/retry.js';
import { VxlanGuard } from '../../src/overlay/guard.js';
import { spawnIn } from '../../src/netns/netns.js';
import { freshNetns, ip, ipJson, requireRoot } from '../helpers/netns.js';
import { rxPackets, sendVxlan, type VxlanProbe } from '../helpers/vxlan.js';

const HOST = '192.0.2.11';
const PEER = '192.0.2.12';
const STRANGER = '192.0.2.66';
const EXTERNAL = '203.0.113.7'; // the stranger's second address, inside AllowedSources
const spec = { vni: 1, port: 8472, allowedSources: ['203.0.113.0/24'] };

/** Host, peer and stranger on one veth "switch" (a bridge in the host namespace keeps the test small). */
async function topology(t: Parameters<typeof freshNetns>[0]) {
  const host = await freshNetns(t, 'gh');
  const peer = await freshNetns(t, 'gp');
  const stranger = await freshNetns(t, 'gs');
  await ip(host, 'link', 'add', 'br0', 'type', 'bridge');
  await ip(host, 'addr', 'add', `${HOST}/24`, 'dev', 'br0');
  await ip(host, 'addr', 'add', '203.0.113.11/24', 'dev', 'br0');
  await ip(host, 'link', 'set', 'br0', 'up');
  for (const [ns, addrs, port] of [
    [peer, [PEER], 'p'],
    [stranger, [STRANGER, EXTERNAL], 's'],
  ] as const) {
    await ip(host, 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
    await ip(host, 'link', 'set', port, 'master', 'br0', 'up');
    for (const a of addrs) await ip(ns, 'addr', 'add', `${a}/24`, 'dev', 'eth0');
    await ip(ns, 'link', 'set', 'eth0', 'up');
  }
  for (const vni of [1, 2]) {
    await ip(host, 'link', 'add', `flannel.${vni}`, 'type', 'vxlan', 'id', String(vni), 'local', HOST, 'dev', 'br0', 'dstport', '8472', 'nolearning');
    await ip(host, 'addr', 'add', `10.244.${vni}.0/32`, 'dev', `flannel.${vni}`);
    await ip(host, 'link', 'set', `flannel.${vni}`, 'up');
  }
  const macs: Record<number, string> = {};
  for (const vni of [1, 2]) macs[vni] = (await ipJson<Array<{ address: string }>>(host, 'link', 'show', `flannel.${vni}`))[0]!.address;
  const probe = (srcIp: string, vni: number): VxlanProbe => ({
    srcIp,
    dstIp: HOST,
    port: 8472,
    vni,
    vtepMac: macs[vni]!,
    innerSrcIp: '10.244.9.2',
    innerDstIp: `10.244.${vni}.0`,
  });
  return { host, peer, stranger, probe };
}

async function nftDrops(ns: string): Promise<number> {
  const doc = await runJson<{ nftables: Array<{ counter?: { packets: number } }> }>([
    'ip',
    'netns',
    'exec',
    ns,
    'nft',
    '-j',
    'list',
    'counter',
    'ip',
    'tulle-guard',
    'unknown_source',
  ]);
  return doc.nftables.find((i) => i.counter)!.counter!.packets;
}

async function iptablesDrops(ns: string): Promise<number> {
  const out = (await run(['ip', 'netns', 'exec', ns, 'iptables', '-w', '-S', 'TULLE-VXLAN', '-v'])).stdout;
  return Number(/unknown_source -c (\d+) \d+ -j DROP/.exec(out)![1]);
}

/** The peers set as the kernel lists it: `nft -j list set ip tulle-guard peers` or `ipset list tulle-peers`. */
async function kernelMembers(backend: string, ns: string): Promise<string[]> {
  if (backend === 'nftables') {
    const doc = await runJson<{ nftables: Array<{ set?: { elem?: string[] } }> }>([
      'ip',
      'netns',
      'exec',
      ns,
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
  const out = (await run(['ip', 'netns', 'exec', ns, 'ipset', 'list', 'tulle-peers'])).stdout;
  return out.split('Members:\n')[1]!.split('\n').filter(Boolean).sort();
}

for (const backend of ['nftables', 'iptables'] as const) {
  test(`${backend}: a stranger's frame for the network's VNI is dropped and counted; a peer's arrives; another VNI passes`, { timeout: 180_000 }, async (t) => {
    requireRoot();
    const { host, peer, stranger, probe } = await topology(t);
    const drops = () => (backend === 'nftables' ? nftDrops(host) : iptablesDrops(host));
    const guard = new VxlanGuard(backend, host);
    t.after(() => guard.remove());
    await guard.apply(spec, [PEER]);
    assert.deepEqual(await kernelMembers(backend, host), [PEER]);

    // Stranger, VNI 1: dropped by the guard (the counter rises), so flannel.1 never decapsulates it.
    const rx1 = await rxPackets(host, 'flannel.1');
    await sendVxlan(stranger, probe(STRANGER, 1));
    await waitFor(async () => (await drops()) === 1, 30_000, "the stranger's frame counted as dropped");
    assert.equal(await rxPackets(host, 'flannel.1'), rx1);

    // Stranger, VNI 2 (another tunnel on the same port): not tulle's business, it arrives at flannel.2.
    const rx2 = await rxPackets(host, 'flannel.2');
    await sendVxlan(stranger, probe(STRANGER, 2));
    await waitFor(async () => (await rxPackets(host, 'flannel.2')) > rx2, 30_000, 'VNI 2 frame from the stranger at flannel.2');

    // The leased peer, VNI 1: arrives.
    await sendVxlan(peer, probe(PEER, 1));
    await waitFor(async () => (await rxPackets(host, 'flannel.1')) > rx1, 30_000, "the peer's frame at flannel.1");

    // A source inside Backend.AllowedSources: arrives.
    const rx1b = await rxPackets(host, 'flannel.1');
    await sendVxlan(stranger, probe(EXTERNAL, 1));
    await waitFor(async () => (await rxPackets(host, 'flannel.1')) > rx1b, 30_000, 'the AllowedSources frame at flannel.1');
    assert.equal(await drops(), 1);

    const s = await guard.status();
    assert.deepEqual([s.present, s.port, s.vni, s.members, s.drops.unknown_source.packets], [true, 8472, 1, [PEER], 1]);
    assert.equal(s.allowed.length, 1);
    assert.match(s.allowed[0]!, /^203\.0\.113\.0(\/24|-203\.0\.113\.255)?$/);

    // The stranger gets a lease: admitted at once. The peer loses its lease: its frames are dropped from now on.
    const change = await guard.setPeers([STRANGER]);
    assert.deepEqual([change.added, change.removed], [[STRANGER], [PEER]]);
    assert.deepEqual(await kernelMembers(backend, host), [STRANGER]);
    const rx1c = await rxPackets(host, 'flannel.1');
    await sendVxlan(stranger, probe(STRANGER, 1));
    await waitFor(async () => (await rxPackets(host, 'flannel.1')) > rx1c, 30_000, "the new member's frame at flannel.1");
    await sendVxlan(peer, probe(PEER, 1));
    await waitFor(async () => (await drops()) === 2, 30_000, "the former peer's frame counted as dropped");
    assert.equal(await guard.intact(), true);

    await guard.remove();
    if (backend === 'nftables') {
      assert.doesNotMatch((await run(['ip', 'netns', 'exec', host, 'nft', 'list', 'tables'])).stdout, /tulle-guard/);
    } else {
      assert.equal((await run(['ip', 'netns', 'exec', host, 'ipset', 'list', '-n'])).stdout.trim(), '');
      assert.doesNotMatch((await run(['ip', 'netns', 'exec', host, 'iptables', '-w', '-S'])).stdout, /TULLE-VXLAN/);
    }
  });

  test(`${backend}: hostile peer values are never written; a guard removed behind its back is rebuilt`, { timeout: 120_000 }, async (t) => {
    requireRoot();
    const host = await freshNetns(t, 'gx');
    const guard = new VxlanGuard(backend, host);
    t.after(() => guard.remove());
    await guard.apply(spec, []);
    const hostile = [
      '192.0.2.1 } ; flush ruleset ; add element ip tulle-guard peers { 198.51.100.1',
      '192.0.2.12\n',
      7,
      null,
      '::1',
      '',
      '192.0.2.012',
      'x'.repeat(10_000),
      '192.0.2.12',
    ];
    const r = await guard.setPeers(hostile);
    assert.deepEqual(r.added, ['192.0.2.12']);
    assert.equal(r.invalid.length, hostile.length - 1);
    assert.deepEqual(await kernelMembers(backend, host), ['192.0.2.12']);

    // Someone deletes the whole guard: the next change rebuilds it.
    if (backend === 'nftables') {
      await run(['ip', 'netns', 'exec', host, 'nft', 'delete', 'table', 'ip', 'tulle-guard']);
    } else {
      await run(['ip', 'netns', 'exec', host, 'iptables', '-w', '-D', 'INPUT', '-j', 'TULLE-VXLAN']);
      await run(['ip', 'netns', 'exec', host, 'iptables', '-w', '-F', 'TULLE-VXLAN']);
      await run(['ip', 'netns', 'exec', host, 'iptables', '-w', '-X', 'TULLE-VXLAN']);
      await run(['ip', 'netns', 'exec', host, 'ipset', 'destroy', 'tulle-peers']);
    }
    assert.equal(await guard.intact(), false);
    await guard.setPeers(['192.0.2.12', '192.0.2.13']);
    assert.equal(await guard.intact(), true);
    assert.deepEqual(await kernelMembers(backend, host), ['192.0.2.12', '192.0.2.13']);

    // A member or the rule's hook removed: repair() notices and rewrites.
    if (backend === 'nftables') await run(['ip', 'netns', 'exec', host, 'nft', 'delete', 'element', 'ip', 'tulle-guard', 'peers', '{ 192.0.2.13 }']);
    else await run(['ip', 'netns', 'exec', host, 'ipset', 'del', 'tulle-peers', '192.0.2.13']);
    assert.equal(await guard.repair(), true);
    assert.deepEqual(await kernelMembers(backend, host), ['192.0.2.12', '192.0.2.13']);
    if (backend === 'nftables') await run(['ip', 'netns', 'exec', host, 'nft', 'flush', 'chain', 'ip', 'tulle-guard', 'input']);
    else await run(['ip', 'netns', 'exec', host, 'iptables', '-w', '-D', 'INPUT', '-j', 'TULLE-VXLAN']);
    assert.equal(await guard.repair(), true);
    assert.equal((await guard.status()).present, true);
    assert.equal(await guard.repair(), false);
  });
}

test("nftables: only tulle-guard is touched; another table's rules and sets stay as they were", async (t) => {
  requireRoot();
  const host = await freshNetns(t, 'go');
  const other =
    'table ip other {\n\tset s {\n\t\ttype ipv4_addr\n\t\telements = { 192.0.2.99 }\n\t}\n\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t\tudp dport 8472 counter packets 0 bytes 0 accept\n\t}\n}\n';
  await run(['ip', 'netns', 'exec', host, 'nft', '-f', '-'], { input: other });
  const guard = new VxlanGuard('nftables', host);
  await guard.apply(spec, ['192.0.2.12']);
  await guard.setPeers([]);
  await guard.remove();
  assert.equal((await run(['ip', 'netns', 'exec', host, 'nft', 'list', 'table', 'ip', 'other'])).stdout, other);
});

/**
 * Every nf_tables commit in `ns` as `nft monitor` reports it ("# new generation N by process PID (name)"). `mark()`
 * commits a table of its own and waits until the monitor has printed it, so the commits counted up to it are all.
 */
async function commitMonitor(t: { after(fn: () => unknown): void }, ns: string) {
  const child = spawnIn(ns, ['nft', 'monitor'], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => void child.kill());
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  let marks = 0;
  const mark = async (): Promise<string> => {
    // The monitor may not listen yet at the first mark: a new mark table per try until one shows.
    await waitFor(
      async () => {
        const name = `mark${++marks}`;
        await run(['ip', 'netns', 'exec', ns, 'nft', 'add', 'table', 'ip', name]);
        return waitFor(() => new RegExp(`^add table ip ${name}\\n# new generation .*\\n`, 'm').test(out), 2000, `nft monitor to show ${name}`, 10).then(
          () => true,
          () => false,
        );
      },
      30_000,
      'nft monitor to report commits',
      0,
    );
    const text = out;
    out = '';
    return text;
  };
  // The commits since the last mark, without the marks' own (a slow monitor may have needed more than one).
  const commitsSince = async (): Promise<{ commits: number; text: string }> => {
    const text = await mark();
    // nft monitor prints a commit's changes, then its "# new generation" line.
    const commits = text.split(/^# new generation .*$/m).slice(0, -1);
    return { commits: commits.filter((c) => c.trim() && !/^add table ip mark\d+$/m.test(c)).length, text };
  };
  return { mark, commitsSince };
}

test(
  'nftables: setPeers writes only a change, one commit each; unchanged members (any order, duplicates, junk) no write at all',
  { timeout: 120_000 },
  async (t) => {
    requireRoot();
    const host = await freshNetns(t, 'gw');
    const guard = new VxlanGuard('nftables', host);
    t.after(() => guard.remove());
    await guard.apply(spec, ['192.0.2.12', '192.0.2.13']);
    const monitor = await commitMonitor(t, host);
    await monitor.mark();

    for (const same of [
      ['192.0.2.13', '192.0.2.12'],
      ['192.0.2.12', '192.0.2.12', '192.0.2.13'],
      ['192.0.2.13', 'x', null, '192.0.2.12'],
    ]) {
      const r = await guard.setPeers(same);
      assert.deepEqual([r.added, r.removed], [[], []], JSON.stringify(same));
    }
    assert.equal((await monitor.commitsSince()).commits, 0, 'unchanged members must not reach the kernel');

    let r = await guard.setPeers(['192.0.2.14', '192.0.2.12', '192.0.2.13', '192.0.2.9']);
    assert.deepEqual([r.added, r.removed], [['192.0.2.9', '192.0.2.14'], []]);
    let seen = await monitor.commitsSince();
    assert.equal(seen.commits, 1, seen.text);
    // nft monitor prints one line per element, then the one commit.
    assert.deepEqual(seen.text.match(/^(add|delete) element .*$/gm), [
      'add element ip tulle-guard peers { 192.0.2.9 }',
      'add element ip tulle-guard peers { 192.0.2.14 }',
    ]);

    r = await guard.setPeers(['192.0.2.14', '192.0.2.9', '192.0.2.12']);
    assert.deepEqual([r.added, r.removed], [[], ['192.0.2.13']]);
    seen = await monitor.commitsSince();
    assert.equal(seen.commits, 1, seen.text);
    assert.deepEqual(seen.text.match(/^(add|delete) element .*$/gm), ['delete element ip tulle-guard peers { 192.0.2.13 }']);

    // A member named twice is still one member: the ones not named leave, even when the list is as long as the set.
    r = await guard.setPeers(['192.0.2.14', '192.0.2.14', '192.0.2.12']);
    assert.deepEqual([r.added, r.removed], [[], ['192.0.2.9']]);
    r = await guard.setPeers(['192.0.2.14', '192.0.2.12', '192.0.2.9']);
    assert.deepEqual([r.added, r.removed], [['192.0.2.9'], []]);
    seen = await monitor.commitsSince();
    assert.equal(seen.commits, 2, seen.text);

    assert.deepEqual(await kernelMembers('nftables', host), ['192.0.2.12', '192.0.2.14', '192.0.2.9']);
    assert.deepEqual(guard.peers, ['192.0.2.9', '192.0.2.12', '192.0.2.14']);
    assert.equal(guard.size, 3);
    assert.equal(await guard.intact(), true);

    // Written without allowed sources, the guard does not list them back; one slipped in behind its back is still seen.
    await guard.apply({ ...spec, allowedSources: [] });
    assert.equal(await guard.intact(), true);
    await run(['ip', 'netns', 'exec', host, 'nft', 'add', 'element', 'ip', 'tulle-guard', 'allowed', '{ 198.51.100.0/24 }']);
    assert.equal(await guard.intact(), false);
    assert.equal(await guard.repair(), true);
    assert.deepEqual((await guard.status()).allowed, []);
  },
);

test(
  'nftables: changePeers counts peers per address; only an address reaching or leaving zero is written; a rebuild keeps the counts',
  { timeout: 120_000 },
  async (t) => {
    requireRoot();
    const host = await freshNetns(t, 'gc');
    const guard = new VxlanGuard('nftables', host);
    t.after(() => guard.remove());
    await guard.apply(spec, []);
    // Two subnets of one host (same public IP), and a third host.
    let r = await guard.setPeers(['192.0.2.12', '192.0.2.12', '192.0.2.13']);
    assert.deepEqual([r.added, r.removed], [['192.0.2.12', '192.0.2.13'], []]);
    const monitor = await commitMonitor(t, host);
    await monitor.mark();

    // One of the two subnets leaves: its address still has a peer, nothing is written.
    r = await guard.changePeers([], ['192.0.2.12']);
    assert.deepEqual([r.added, r.removed], [[], []]);
    // A rewritten lease (left and came back with the same address), a non-member, junk: nothing either.
    r = await guard.changePeers(['192.0.2.13'], ['192.0.2.13', '192.0.2.99', 'x']);
    assert.deepEqual([r.added, r.removed], [[], []]);
    // Admitted and gone again within one change: never written.
    r = await guard.changePeers(['192.0.2.50'], ['192.0.2.50']);
    assert.deepEqual([r.added, r.removed], [[], []]);
    assert.equal((await monitor.commitsSince()).commits, 0, 'no address reached or left zero');

    // The last subnet of 192.0.2.12 leaves and a new host joins (with junk beside it): one commit.
    r = await guard.changePeers(['192.0.2.14', null, '192.0.2.014'], ['192.0.2.12']);
    assert.deepEqual([r.added, r.removed, r.invalid], [['192.0.2.14'], ['192.0.2.12'], [null, '192.0.2.014']]);
    const seen = await monitor.commitsSince();
    assert.equal(seen.commits, 1, seen.text);
    assert.deepEqual(seen.text.match(/^(add|delete) element .*$/gm), [
      'add element ip tulle-guard peers { 192.0.2.14 }',
      'delete element ip tulle-guard peers { 192.0.2.12 }',
    ]);
    assert.deepEqual(await kernelMembers('nftables', host), ['192.0.2.13', '192.0.2.14']);

    // The table removed behind the guard's back: the next change rebuilds it, and the counts survive the rebuild.
    r = await guard.changePeers(['192.0.2.13'], []);
    assert.deepEqual([r.added, r.removed], [[], []], 'a second peer on 192.0.2.13');
    await run(['ip', 'netns', 'exec', host, 'nft', 'delete', 'table', 'ip', 'tulle-guard']);
    r = await guard.changePeers(['192.0.2.15'], []);
    assert.deepEqual(r.added, ['192.0.2.15']);
    assert.deepEqual(await kernelMembers('nftables', host), ['192.0.2.13', '192.0.2.14', '192.0.2.15']);
    r = await guard.changePeers([], ['192.0.2.13']);
    assert.deepEqual(r.removed, [], '192.0.2.13 had two peers before the rebuild and still has one');
    r = await guard.changePeers([], ['192.0.2.13']);
    assert.deepEqual(r.removed, ['192.0.2.13']);
    assert.deepEqual(await kernelMembers('nftables', host), ['192.0.2.14', '192.0.2.15']);
    assert.equal(await guard.intact(), true);
  },
);

test('nftables: repair() looks with `nft` only when the generation says someone else committed since its last look', { timeout: 60_000 }, async (t) => {
  requireRoot();
  const host = await freshNetns(t, 'grg');
  const commands: string[] = [];
  const counting: typeof run = (argv, options) => {
    commands.push(argv.join(' '));
    return run(argv, options);
  };
  const guard = new VxlanGuard('nftables', host, { runner: counting });
  t.after(() => guard.close());
  const looks = () => commands.filter((c) => / nft -j list table ip tulle-guard$/.test(c)).length;
  const members = async () =>
    (await run(['ip', 'netns', 'exec', host, 'nft', 'list', 'set', 'ip', 'tulle-guard', 'peers'])).stdout.match(/\d+\.\d+\.\d+\.\d+/g) ?? [];

  await guard.apply(spec, ['192.0.2.12']);
  const afterApply = looks();
  assert.equal(await guard.repair(), false);
  assert.equal(looks(), afterApply + 1, 'the first check after a write looks');
  assert.equal(await guard.repair(), false);
  assert.equal(looks(), afterApply + 1, 'nothing committed since: no look');
  await guard.changePeers(['192.0.2.13'], []);
  await guard.changePeers([], ['192.0.2.13']);
  assert.equal(await guard.repair(), false);
  assert.equal(looks(), afterApply + 1, "only the guard's own member changes committed since: no look");

  // Someone else's commit, harmless to the guard: one look, then quiet again.
  await run(['ip', 'netns', 'exec', host, 'nft', 'add', 'table', 'ip', 'other']);
  assert.equal(await guard.repair(), false);
  assert.equal(looks(), afterApply + 2);
  assert.equal(await guard.repair(), false);
  assert.equal(looks(), afterApply + 2);

  // A member deleted behind its back, after one of its own changes: seen, and put back.
  await guard.changePeers(['192.0.2.14'], []);
  await run(['ip', 'netns', 'exec', host, 'nft', 'delete', 'element', 'ip', 'tulle-guard', 'peers', '{ 192.0.2.12 }']);
  assert.deepEqual(await members(), ['192.0.2.14']);
  assert.equal(await guard.repair(), true);
  assert.deepEqual((await members()).sort(), ['192.0.2.12', '192.0.2.14']);
  const afterRewrite = looks();
  assert.equal(await guard.repair(), false);
  assert.equal(looks(), afterRewrite + 1, 'a rewrite is looked at once more');
  assert.equal(await guard.repair(), false);
  assert.equal(looks(), afterRewrite + 1);

  // The table deleted: the same.
  await run(['ip', 'netns', 'exec', host, 'nft', 'delete', 'table', 'ip', 'tulle-guard']);
  assert.equal(await guard.repair(), true);
  assert.deepEqual((await members()).sort(), ['192.0.2.12', '192.0.2.14']);
});
