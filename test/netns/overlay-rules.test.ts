import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TrafficRules } from '../../src/overlay/rules.js';
import { run } from '../../src/base/exec.js';
import { freshNetns, requireRoot } from '../helpers/netns.js';

const spec = { network: '10.244.0.0/16', subnet: '10.244.1.0/24', ipMasq: true };

for (const backend of ['nftables', 'iptables'] as const) {
  test(`${backend}: rules are written in tulle's own chains, an edit is noticed, remove leaves nothing`, async (t) => {
    requireRoot();
    const ns = await freshNetns(t, 'rules');
    const rules = new TrafficRules(backend, ns);
    t.after(() => rules.close());
    await rules.apply(spec);
    const listing = await rules.listing();
    if (backend === 'nftables') {
      assert.match(listing, /ip saddr 10\.244\.0\.0\/16 accept/);
      assert.match(listing, /ip saddr 10\.244\.0\.0\/16 ip daddr != 224\.0\.0\.0\/4 masquerade fully-random/);
      assert.match(listing, /ip saddr != 10\.244\.0\.0\/16 ip daddr 10\.244\.1\.0\/24 return/);
    } else {
      assert.match(listing, /-A TULLE-FWD -s 10\.244\.0\.0\/16 -j ACCEPT/);
      assert.match(listing, /-A TULLE-POSTRTG -s 10\.244\.0\.0\/16 ! -d 224\.0\.0\.0\/4 -j MASQUERADE --random-fully/);
      assert.match(listing, /jump FORWARD->TULLE-FWD: true/);
    }
    assert.equal(await rules.intact(), true);

    // Applying again is idempotent: same listing, no duplicate jump.
    await rules.apply(spec);
    assert.equal(await rules.listing(), listing);

    // Someone deletes one of our rules: noticed.
    if (backend === 'nftables') {
      const handles = (await run(['ip', 'netns', 'exec', ns, 'nft', '-a', 'list', 'chain', 'ip', 'tulle', 'forward'])).stdout;
      const handle = /ip daddr 10\.244\.0\.0\/16 accept # handle (\d+)/.exec(handles)![1]!;
      await run(['ip', 'netns', 'exec', ns, 'nft', 'delete', 'rule', 'ip', 'tulle', 'forward', 'handle', handle]);
    } else {
      await run(['ip', 'netns', 'exec', ns, 'iptables', '-w', '-D', 'TULLE-FWD', '-d', '10.244.0.0/16', '-j', 'ACCEPT']);
    }
    assert.equal(await rules.intact(), false);
    await rules.apply(spec);
    assert.equal(await rules.intact(), true);

    await rules.remove();
    assert.equal(await rules.listing(), backend === 'nftables' ? '' : '\njump FORWARD->TULLE-FWD: false\n\njump POSTROUTING->TULLE-POSTRTG: false');
  });
}

test('without ip-masq there is no nat chain', async (t) => {
  requireRoot();
  const ns = await freshNetns(t, 'rules');
  const rules = new TrafficRules('nftables', ns);
  await rules.apply({ ...spec, ipMasq: false });
  const listing = await rules.listing();
  assert.match(listing, /chain forward/);
  assert.doesNotMatch(listing, /masquerade|postrouting/);
});

test('nftables: intact() lists the table only when the generation says someone else committed since it last matched', async (t) => {
  requireRoot();
  const ns = await freshNetns(t, 'rgen');
  const commands: string[] = [];
  let known = 0; // commits this process made elsewhere (as the VXLAN guard's member changes are)
  const rules = new TrafficRules('nftables', ns, {
    runner: (argv, options) => {
      commands.push(argv.join(' '));
      return run(argv, options);
    },
    knownCommits: () => known,
  });
  t.after(() => rules.close());
  const lists = () => commands.filter((c) => c.endsWith(' nft list table ip tulle')).length;
  await rules.apply(spec);
  const afterApply = lists();
  assert.equal(await rules.intact(), true);
  assert.equal(lists(), afterApply + 1, 'the first check lists');
  assert.equal(await rules.intact(), true);
  assert.equal(await rules.intact(), true);
  assert.equal(lists(), afterApply + 1, 'nothing committed since: no listing');

  // A commit it is told of (known, not someone else's): no listing either.
  await run(['ip', 'netns', 'exec', ns, 'nft', 'add', 'table', 'ip', 'known']);
  known++;
  assert.equal(await rules.intact(), true);
  assert.equal(lists(), afterApply + 1, 'a known commit: no listing');

  // Someone else's commit elsewhere: one listing, then quiet again.
  await run(['ip', 'netns', 'exec', ns, 'nft', 'add', 'table', 'ip', 'other']);
  assert.equal(await rules.intact(), true);
  assert.equal(await rules.intact(), true);
  assert.equal(lists(), afterApply + 2);

  // An edit of tulle's table is a commit too: noticed at the next check, every check until rewritten.
  await run(['ip', 'netns', 'exec', ns, 'nft', 'add', 'rule', 'ip', 'tulle', 'forward', 'ip', 'saddr', '192.0.2.1', 'accept']);
  assert.equal(await rules.intact(), false);
  assert.equal(await rules.intact(), false);
  assert.equal(lists(), afterApply + 4);
  await rules.apply(spec);
  assert.equal(await rules.intact(), true);
  await rules.remove();
  assert.equal(await rules.intact(), false);
});
