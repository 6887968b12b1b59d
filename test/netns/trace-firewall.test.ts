/**
 * The kernel-side helpers of `tulle trace` in a fresh namespace: tulle's nftables forward chain followed rule by
 * rule for a packet's addresses (drop, reject, accept first, policy drop, rules it cannot read skipped), and the
 * VXLAN source-port range the outer header is drawn from, as `ip -d link` shows it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ip, ipJson, requireRoot, vtepHost } from '../helpers/netns.js';
import { execIn } from '../../src/netns/netns.js';
import { findFirewallDrop } from '../../src/trace/index.js';

requireRoot();

async function nft(ns: string, ruleset: string): Promise<void> {
  await execIn(ns, ['nft', '-f', '-'], { input: ruleset });
}

test("tulle's forward chain: the first rule that matches decides; only drops and rejects are reported", async (t) => {
  const { ns } = await vtepHost(t, 'trfw');
  assert.equal(await findFirewallDrop(ns, '10.244.1.2', '10.244.2.3'), undefined, 'no tulle table: nothing drops');
  await nft(
    ns,
    `table ip tulle {
  chain forward {
    type filter hook forward priority filter; policy accept;
    ip saddr 10.244.1.9 accept
    meta l4proto udp drop
    ip daddr 10.244.2.3 counter drop
    ip saddr != 10.244.0.0/16 ip daddr 10.244.0.0/16 reject
    ip saddr 10.244.0.0/16 accept
    ip daddr 10.244.0.0/16 accept
  }
}`,
  );
  assert.deepEqual(await findFirewallDrop(ns, '10.244.1.2', '10.244.2.3'), { rule: 'ip daddr 10.244.2.3 drop', chain: 'forward' });
  assert.equal(await findFirewallDrop(ns, '10.244.1.9', '10.244.2.3'), undefined, 'an earlier accept wins');
  assert.equal(await findFirewallDrop(ns, '10.244.1.2', '10.244.2.4'), undefined, 'accepted by the cluster rule');
  assert.deepEqual(await findFirewallDrop(ns, '192.0.2.50', '10.244.2.4'), {
    rule: 'ip saddr != 10.244.0.0/16 ip daddr 10.244.0.0/16 reject',
    chain: 'forward',
  });
  await execIn(ns, ['nft', 'flush', 'chain', 'ip', 'tulle', 'forward']);
  await execIn(ns, ['nft', 'add', 'chain', 'ip', 'tulle', 'forward', '{ policy drop; }']);
  assert.deepEqual(await findFirewallDrop(ns, '10.244.1.2', '10.244.2.3'), { rule: 'policy drop', chain: 'forward' });
});

test('VXLAN source ports: unset reads as absent (the namespace range applies), srcport LOW HIGH as given', async (t) => {
  const { ns, nl } = await vtepHost(t, 'trsp');
  assert.equal((await nl.getLink('flannel.1'))!.vxlan!.srcPortRange, undefined);
  await ip(ns, 'link', 'add', 'vx9', 'type', 'vxlan', 'id', '9', 'dstport', '4789', 'srcport', '40000', '40100', 'local', '192.0.2.11', 'dev', 'eth0');
  const shown = (await ipJson(ns, 'link', 'show', 'vx9'))[0].linkinfo.info_data.port_range;
  assert.deepEqual((await nl.getLink('vx9'))!.vxlan!.srcPortRange, [shown.low, shown.high]);
  assert.deepEqual([shown.low, shown.high], [40000, 40100]);
});
