/**
 * Links over netlink in fresh namespaces: vxlan, bridge and veth creation, every `ip link set` change, deletion,
 * and each error path, all read back with `ip -d -j link`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { freshNetns, ipJson, isNetlinkError, requireRoot, underlayHost } from '../helpers/netns.js';
import { NetlinkClient } from '../../src/netlink/index.js';
import { InvalidValueError } from '../../src/base/errors.js';

requireRoot();

/** A namespace with an underlay `eth0` (a veth end, up, 192.0.2.11/24), and a client bound to it. */
const host = (t: Parameters<typeof freshNetns>[0], label = 'host') => underlayHost(t, label);

async function linkJson(ns: string, name: string): Promise<any> {
  return (await ipJson(ns, 'link', 'show', 'dev', name))[0];
}

test('createVxlan makes the VTEP as asked, and getLink/listLinks report it as ip does', async (t) => {
  const { ns, nl } = await host(t);
  const link = await nl.createVxlan({
    name: 'vxlan.calico',
    vni: 4096,
    local: '192.0.2.11',
    dev: 'eth0',
    port: 4789,
    learning: false,
    gbp: true,
    ttl: 32,
    udpCsum: false,
    mtu: 1410,
    mac: '66:0a:7b:9f:d4:11',
    up: true,
  });
  const j = await linkJson(ns, 'vxlan.calico');
  const d = j.linkinfo.info_data;
  assert.equal(j.linkinfo.info_kind, 'vxlan');
  assert.deepEqual([d.id, d.local, d.link, d.port, d.learning, d.ttl, d.udp_csum, d.gbp], [4096, '192.0.2.11', 'eth0', 4789, false, 32, false, true]);
  assert.equal(j.mtu, 1410);
  assert.equal(j.address, '66:0a:7b:9f:d4:11');
  assert.ok(j.flags.includes('UP'));
  const eth0 = await linkJson(ns, 'eth0');
  assert.deepEqual(link.vxlan, {
    vni: 4096,
    local: '192.0.2.11',
    link: eth0.ifindex,
    dev: 'eth0',
    port: 4789,
    learning: false,
    proxy: false,
    gbp: true,
    ttl: 32,
    udpCsum: false,
  });
  assert.deepEqual([link.index, link.name, link.kind, link.mtu, link.mac, link.up], [j.ifindex, 'vxlan.calico', 'vxlan', 1410, '66:0a:7b:9f:d4:11', true]);
  assert.deepEqual(await nl.getLink('vxlan.calico'), link);
  const names = (await nl.listLinks()).map((l) => l.name).sort();
  assert.deepEqual(names, (await ipJson(ns, 'link', 'show')).map((l: any) => l.ifname).sort());
});

test('vxlan with a unicast remote or a multicast group (seed 001), and the defaults the kernel picks', async (t) => {
  const { ns, nl } = await host(t);
  const p2p = await nl.createVxlan({ name: 'vxlan0', vni: 120, remote: '192.0.2.29', dev: 'eth0', port: 4789 });
  assert.equal(p2p.vxlan!.remote, '192.0.2.29');
  assert.equal((await linkJson(ns, 'vxlan0')).linkinfo.info_data.remote, '192.0.2.29');
  const mc = await nl.createVxlan({ name: 'vxlan1', vni: 121, group: '229.1.1.1', dev: 'eth0', port: 4789 });
  assert.equal(mc.vxlan!.group, '229.1.1.1');
  assert.equal((await linkJson(ns, 'vxlan1')).linkinfo.info_data.group, '229.1.1.1');
  assert.equal(mc.mtu, 1450, 'underlay MTU 1500 minus the 50 bytes of IPv4 VXLAN encapsulation');
  assert.equal(mc.up, false);
  assert.equal(mc.vxlan!.learning, true, 'the kernel learns by default');
});

test('createVxlan errors: missing underlay, existing name, invalid values (nothing created)', async (t) => {
  const { ns, nl } = await host(t);
  await assert.rejects(
    nl.createVxlan({ name: 'flannel.1', vni: 1, local: '192.0.2.11', dev: 'nosuch', port: 8472, learning: false }),
    isNetlinkError(
      'ENODEV',
      'link add flannel.1 type vxlan id 1 local 192.0.2.11 dev nosuch dstport 8472 nolearning: ENODEV (No such device): Cannot find device "nosuch"',
    ),
  );
  await nl.createVxlan({ name: 'flannel.1', vni: 1, dev: 'eth0', port: 8472 });
  await assert.rejects(
    nl.createVxlan({ name: 'flannel.1', vni: 2, dev: 'eth0', port: 8472 }),
    isNetlinkError('EEXIST', /^link add flannel\.1 type vxlan id 2 dev eth0 dstport 8472: EEXIST \(File exists\)/),
  );
  await assert.rejects(nl.createVxlan({ name: 'vx9', vni: 1 << 24 }), (e: unknown) => e instanceof InvalidValueError && e.field === 'vxlan vni');
  await assert.rejects(
    nl.createVxlan({ name: 'vx9', vni: 9, local: '192.0.2.300' }),
    (e: unknown) => e instanceof InvalidValueError && e.field === 'vxlan local',
  );
  assert.equal(
    (await ipJson(ns, 'link', 'show')).some((l: any) => l.ifname === 'vx9'),
    false,
  );
});

test('createBridge and createVeth with the peer created straight in another namespace', async (t) => {
  const { ns, nl } = await host(t);
  const pod = await freshNetns(t, 'pod');
  const br = await nl.createBridge({ name: 'cni0', mtu: 1450, mac: '02:11:22:33:44:55', up: true });
  assert.deepEqual([br.kind, br.mtu, br.mac, br.up], ['bridge', 1450, '02:11:22:33:44:55', true]);
  assert.equal((await linkJson(ns, 'cni0')).linkinfo.info_kind, 'bridge');

  const veth = await nl.createVeth({ name: 'veth1', peerName: 'eth0', peerNetns: pod, mtu: 1450, mac: '02:00:00:00:00:0a', peerMac: '02:00:00:00:00:0b' });
  assert.deepEqual([veth.kind, veth.mtu, veth.mac], ['veth', 1450, '02:00:00:00:00:0a']);
  const peer = await linkJson(pod, 'eth0');
  assert.deepEqual([peer.linkinfo.info_kind, peer.mtu, peer.address], ['veth', 1450, '02:00:00:00:00:0b']);
  assert.equal(veth.linkIndex, peer.ifindex, "the host end's IFLA_LINK is the peer's index in the pod namespace");
  assert.equal(typeof veth.linkNetnsId, 'number');

  await assert.rejects(
    nl.createVeth({ name: 'veth2', peerName: 'eth0', peerNetns: 't-no-such-namespace' }),
    isNetlinkError('ENOENT', /^link add veth2 type veth peer name eth0 netns t-no-such-namespace: ENOENT/),
  );
  assert.equal(await nl.getLink('veth2'), undefined, 'nothing left behind');
  await assert.rejects(nl.createBridge({ name: 'cni0' }), isNetlinkError('EEXIST', /^link add cni0 type bridge: EEXIST \(File exists\)/));
});

test('setLink: up/down, mtu, mac, master/nomaster, rename, move to another namespace', async (t) => {
  const { ns, nl } = await host(t);
  const other = await freshNetns(t, 'other');
  await nl.createBridge({ name: 'br0' });
  await nl.createVeth({ name: 'veth1', peerName: 'veth1p' });

  await nl.setLink('veth1', { up: true, mtu: 1400, mac: '02:aa:bb:cc:dd:ee', master: 'br0' });
  let j = await linkJson(ns, 'veth1');
  assert.ok(j.flags.includes('UP'));
  assert.deepEqual([j.mtu, j.address, j.master], [1400, '02:aa:bb:cc:dd:ee', 'br0']);
  assert.equal((await nl.getLink('veth1'))!.master, 'br0');

  await nl.setLink('veth1', { up: false, master: null });
  j = await linkJson(ns, 'veth1');
  assert.equal(j.flags.includes('UP'), false);
  assert.equal(j.master, undefined);

  await nl.setLink('veth1', { newName: 'eth1' });
  assert.equal(await nl.getLink('veth1'), undefined);
  assert.equal((await nl.getLink('eth1'))!.mtu, 1400);

  await nl.setLink('eth1', { netns: other });
  assert.equal(await nl.getLink('eth1'), undefined);
  assert.equal((await linkJson(other, 'eth1')).mtu, 1400);

  await assert.rejects(nl.setLink('nosuch', { up: true }), isNetlinkError('ENODEV', /^link set dev nosuch up: ENODEV \(No such device\)/));
  await assert.rejects(
    nl.setLink('veth1p', { master: 'nosuch' }),
    isNetlinkError('ENODEV', 'link set dev veth1p master nosuch: ENODEV (No such device): Cannot find device "nosuch"'),
  );
  await assert.rejects(nl.setLink('veth1p', { mtu: 10 }), (e: unknown) => e instanceof InvalidValueError && e.field === 'link mtu');
});

test('deleteLink removes the link (and a veth its peer); a missing one is ENODEV', async (t) => {
  const { ns, nl } = await host(t);
  await nl.createVeth({ name: 'veth1', peerName: 'veth1p' });
  await nl.deleteLink('veth1');
  const names = (await ipJson(ns, 'link', 'show')).map((l: any) => l.ifname);
  assert.equal(names.includes('veth1') || names.includes('veth1p'), false);
  await assert.rejects(nl.deleteLink('veth1'), isNetlinkError('ENODEV', /^link del veth1: ENODEV \(No such device\)/));
  assert.equal(await nl.getLink('veth1'), undefined);
});

test('clients bound to different namespaces work side by side', async (t) => {
  const a = await host(t, 'a');
  const b = await host(t, 'b');
  await a.nl.createBridge({ name: 'only-in-a' });
  await b.nl.createBridge({ name: 'only-in-b' });
  assert.ok(await a.nl.getLink('only-in-a'));
  assert.equal(await a.nl.getLink('only-in-b'), undefined);
  assert.ok(await b.nl.getLink('only-in-b'));
  assert.equal(await b.nl.getLink('only-in-a'), undefined);
  // The root namespace never saw either.
  const root = await NetlinkClient.open();
  t.after(() => root.close());
  assert.equal(await root.getLink('only-in-a'), undefined);
});

test('opening a client in a missing namespace, and using a closed one, fail with the errno', async (t) => {
  await assert.rejects(
    NetlinkClient.open({ netns: 't-no-such-namespace' }),
    isNetlinkError('ENOENT', 'open netlink socket in /run/netns/t-no-such-namespace: ENOENT (No such file or directory): open network namespace'),
  );
  await assert.rejects(NetlinkClient.open({ netns: 'bad name' }), (e: unknown) => e instanceof Error && /namespace name "bad name" is invalid/.test(e.message));
  const { nl } = await host(t);
  nl.close();
  await assert.rejects(nl.getLink('lo'), isNetlinkError('EBADF', /^link show dev lo: EBADF/));
  await assert.rejects(
    nl.batch([{ op: 'deleteLink', args: { name: 'lo' } }]).then((r) => {
      if (!r[0]!.ok) throw r[0]!.error;
    }),
    isNetlinkError('EBADF', /^link del lo: EBADF/),
  );
});
