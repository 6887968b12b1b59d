/**
 * Request builders without a kernel: the bytes each one puts on the wire (read back field by field), the iproute2
 * command each one names in errors, input validation that names field, value and rule, and the normal forms that
 * make listed entries comparable with requested ones.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidValueError } from '../../src/base/errors.js';
import { Attrs } from '../../src/netlink/message.js';
import * as C from '../../src/netlink/constants.js';
import { encodeDeleteRoute, encodeReplaceRoute, normalizeRoute, TULLE_ROUTE_PROTOCOL } from '../../src/netlink/route.js';
import { encodeFdb, encodeReplaceNeighbor, normalizeFdb } from '../../src/netlink/neigh.js';
import { encodeCreateVeth, encodeCreateVxlan, encodeSetLink } from '../../src/netlink/link.js';
import { planOp } from '../../src/netlink/batch.js';
import { prepareAddAddress } from '../../src/netlink/addr.js';
import { NetlinkError } from '../../src/netlink/errors.js';
import { sysctlPath } from '../../src/sys/sysctl.js';

const HDR = 16;

test("flannel's route: rtmsg fields, onlink flag, gateway, device and tulle's protocol", () => {
  const req = encodeReplaceRoute({ dst: '10.244.2.0/24', via: '10.244.2.0', dev: 'flannel.1', onlink: true }, 7);
  const m = req.message;
  assert.equal(m.readUInt16LE(4), C.RTM_NEWROUTE);
  assert.equal(m.readUInt16LE(6) & (C.NLM_F_CREATE | C.NLM_F_REPLACE), C.NLM_F_CREATE | C.NLM_F_REPLACE);
  assert.deepEqual([m[HDR], m[HDR + 1], m[HDR + 4], m[HDR + 5], m[HDR + 6], m[HDR + 7]], [C.AF_INET, 24, 254, TULLE_ROUTE_PROTOCOL, 0, C.RTN_UNICAST]);
  assert.equal(m.readUInt32LE(HDR + 8), C.RTNH_F_ONLINK);
  const a = new Attrs(m, HDR + C.RTMSG_LEN);
  assert.equal(a.address(C.RTA_DST), '10.244.2.0');
  assert.equal(a.address(C.RTA_GATEWAY), '10.244.2.0');
  assert.equal(a.u32(C.RTA_OIF), 7);
  assert.equal(a.u32(C.RTA_TABLE), 254);
  assert.equal(req.command, 'route replace 10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink');
});

test('a route delete matches any protocol and scope unless named, like `ip route del`', () => {
  const m = encodeDeleteRoute({ dst: '10.244.2.0/24', dev: 'flannel.1' }, 7).message;
  assert.equal(m.readUInt16LE(4), C.RTM_DELROUTE);
  assert.deepEqual([m[HDR + 5], m[HDR + 6], m[HDR + 7]], [0, C.SCOPES.nowhere, 0]);
  const p = encodeDeleteRoute({ dst: 'default', via: '192.0.2.1', protocol: 84, table: 1000 }, undefined).message;
  assert.deepEqual([p[HDR + 1], p[HDR + 4], p[HDR + 5]], [0, 0, 84]);
  assert.equal(new Attrs(p, HDR + C.RTMSG_LEN).u32(C.RTA_TABLE), 1000);
  assert.equal(new Attrs(p, HDR + C.RTMSG_LEN).has(C.RTA_DST), false);
});

test('normalizeRoute fills in what the kernel reports, so listed and requested routes compare equal', () => {
  assert.deepEqual(normalizeRoute({ dst: '10.244.2.0/24', via: '10.244.2.0', dev: 'flannel.1', onlink: true }), {
    dst: '10.244.2.0/24',
    via: '10.244.2.0',
    dev: 'flannel.1',
    onlink: true,
    scope: 'universe',
    table: 254,
    protocol: TULLE_ROUTE_PROTOCOL,
  });
  assert.deepEqual(normalizeRoute({ dst: '10.244.1.0/24', dev: 'cni0', onlink: false, metric: 0, protocol: 3 }), {
    dst: '10.244.1.0/24',
    dev: 'cni0',
    scope: 'link',
    table: 254,
    protocol: 3,
  });
  assert.equal(normalizeRoute({ dst: '0.0.0.0/0', via: '169.254.1.1' }).dst, 'default');
});

test('neighbour replace: ndmsg with NUD_PERMANENT, NDA_DST and NDA_LLADDR', () => {
  const req = encodeReplaceNeighbor({ dev: 'flannel.1', ip: '10.244.2.0', mac: '0E:F0:B5:8C:28:F5' }, 9);
  const m = req.message;
  assert.equal(m.readUInt16LE(4), C.RTM_NEWNEIGH);
  assert.equal(m[HDR], C.AF_INET);
  assert.equal(m.readInt32LE(HDR + 4), 9);
  assert.equal(m.readUInt16LE(HDR + 8), C.NUD_STATES.permanent);
  const a = new Attrs(m, HDR + C.NDMSG_LEN);
  assert.equal(a.address(C.NDA_DST), '10.244.2.0');
  assert.equal(a.mac(C.NDA_LLADDR), '0e:f0:b5:8c:28:f5');
  assert.equal(req.command, 'neigh replace 10.244.2.0 lladdr 0E:F0:B5:8C:28:F5 dev flannel.1 nud permanent');
});

test('FDB entries: AF_BRIDGE, NTF_SELF, permanent, remote, VNI, port (network order) and via device', () => {
  const req = encodeFdb('append', { dev: 'vxlan0', mac: '00:00:00:00:00:00', dst: '192.0.2.12', vni: 42, port: 4789, via: 'eth0' }, { dev: 5, via: 2 });
  const m = req.message;
  assert.equal(m.readUInt16LE(6) & (C.NLM_F_CREATE | C.NLM_F_APPEND), C.NLM_F_CREATE | C.NLM_F_APPEND);
  assert.equal(m[HDR], C.AF_BRIDGE);
  assert.equal(m.readInt32LE(HDR + 4), 5);
  assert.equal(m.readUInt16LE(HDR + 8), C.NUD_STATES.permanent);
  assert.equal(m[HDR + 10], C.NTF_SELF);
  const a = new Attrs(m, HDR + C.NDMSG_LEN);
  assert.equal(a.mac(C.NDA_LLADDR), '00:00:00:00:00:00');
  assert.equal(a.address(C.NDA_DST), '192.0.2.12');
  assert.equal(a.u32(C.NDA_VNI), 42);
  assert.equal(a.be16(C.NDA_PORT), 4789);
  assert.equal(a.u32(C.NDA_IFINDEX), 2);
  assert.equal(req.command, 'fdb append 00:00:00:00:00:00 dev vxlan0 dst 192.0.2.12 vni 42 port 4789 via eth0 self permanent');
  assert.deepEqual(normalizeFdb({ dev: 'vxlan0', mac: 'AA:BB:CC:DD:EE:FF', dst: '192.0.2.12' }), {
    dev: 'vxlan0',
    mac: 'aa:bb:cc:dd:ee:ff',
    dst: '192.0.2.12',
    permanent: true,
    self: true,
  });
});

test("vxlan create: IFLA_LINKINFO with kind vxlan and IFLA_VXLAN_* as flannel's VTEP needs", () => {
  const req = encodeCreateVxlan(
    { name: 'flannel.1', vni: 1, local: '192.0.2.11', dev: 'eth0', port: 8472, learning: false, gbp: true, ttl: 16, udpCsum: false, up: true },
    3,
  );
  const m = req.message;
  assert.equal(m.readUInt16LE(6) & (C.NLM_F_CREATE | C.NLM_F_EXCL), C.NLM_F_CREATE | C.NLM_F_EXCL);
  assert.equal(m.readUInt32LE(HDR + 8), C.IFF_UP);
  assert.equal(m.readUInt32LE(HDR + 12), C.IFF_UP);
  const a = new Attrs(m, HDR + C.IFINFOMSG_LEN);
  assert.equal(a.string(C.IFLA_IFNAME), 'flannel.1');
  const info = a.nested(C.IFLA_LINKINFO)!;
  assert.equal(info.string(C.IFLA_INFO_KIND), 'vxlan');
  const d = info.nested(C.IFLA_INFO_DATA)!;
  assert.equal(d.u32(C.IFLA_VXLAN_ID), 1);
  assert.equal(d.address(C.IFLA_VXLAN_LOCAL), '192.0.2.11');
  assert.equal(d.u32(C.IFLA_VXLAN_LINK), 3);
  assert.equal(d.be16(C.IFLA_VXLAN_PORT), 8472);
  assert.equal(d.u8(C.IFLA_VXLAN_LEARNING), 0);
  assert.equal(d.has(C.IFLA_VXLAN_GBP), true);
  assert.equal(d.u8(C.IFLA_VXLAN_TTL), 16);
  assert.equal(d.u8(C.IFLA_VXLAN_UDP_CSUM), 0);
  assert.equal(req.command, 'link add flannel.1 up type vxlan id 1 local 192.0.2.11 dev eth0 ttl 16 dstport 8472 nolearning gbp noudpcsum');
  const group = encodeCreateVxlan({ name: 'vxlan0', vni: 120, group: '229.1.1.1', port: 4789 }, undefined);
  assert.equal(new Attrs(group.message, HDR + C.IFINFOMSG_LEN).nested(C.IFLA_LINKINFO)!.nested(C.IFLA_INFO_DATA)!.address(C.IFLA_VXLAN_GROUP), '229.1.1.1');
});

test('veth create: the peer is an ifinfomsg with its own name, MAC and namespace fd inside VETH_INFO_PEER', () => {
  const m = encodeCreateVeth({ name: 'veth1', peerName: 'eth0', mtu: 1450, peerMac: '02:00:00:00:00:01', peerNetns: 'pod1' }, 33).message;
  const data = new Attrs(m, HDR + C.IFINFOMSG_LEN).nested(C.IFLA_LINKINFO)!.nested(C.IFLA_INFO_DATA)!;
  const peerRaw = data.bytes(C.VETH_INFO_PEER)!;
  const peer = new Attrs(peerRaw, C.IFINFOMSG_LEN);
  assert.equal(peer.string(C.IFLA_IFNAME), 'eth0');
  assert.equal(peer.u32(C.IFLA_MTU), 1450);
  assert.equal(peer.mac(C.IFLA_ADDRESS), '02:00:00:00:00:01');
  assert.equal(peer.u32(C.IFLA_NET_NS_FD), 33);
});

test('link set: up/down only touches IFF_UP; master null is IFLA_MASTER 0 (nomaster); rename goes by index', () => {
  const down = encodeSetLink('veth1', { up: false, master: null }, {}).message;
  assert.equal(down.readUInt32LE(HDR + 8), 0);
  assert.equal(down.readUInt32LE(HDR + 12), C.IFF_UP);
  assert.equal(new Attrs(down, HDR + C.IFINFOMSG_LEN).u32(C.IFLA_MASTER), 0);
  const rename = encodeSetLink('veth1', { newName: 'eth1' }, { index: 12 });
  assert.equal(rename.message.readInt32LE(HDR + 4), 12);
  assert.equal(new Attrs(rename.message, HDR + C.IFINFOMSG_LEN).string(C.IFLA_IFNAME), 'eth1');
  assert.equal(rename.command, 'link set dev veth1 name eth1');
});

test('bad input is refused before anything is built, naming field, value and rule', () => {
  const cases: Array<[() => unknown, string, RegExp]> = [
    [() => planOp({ op: 'replaceRoute', args: { dst: '10.244.2.1/24', dev: 'flannel.1' } }), 'route dst', /host bits/],
    [() => planOp({ op: 'replaceRoute', args: { dst: '10.244.2.0/24', via: 'fd00::1' } }), 'route via', /address family/],
    [() => planOp({ op: 'replaceNeighbor', args: { dev: 'flannel.1', ip: '10.244.2.0', mac: '0e:f0:b5:8c:28' } }), 'neighbor mac', /not a MAC/],
    [() => planOp({ op: 'replaceFdb', args: { dev: 'flannel.1', mac: '0e:f0:b5:8c:28:f5', vni: 1 << 24 } }), 'fdb vni', /0\.\.16777215/],
    [() => planOp({ op: 'addAddress', args: { dev: 'a/b', cidr: '10.0.0.1/24' } }), 'address dev', /interface name/],
    [() => encodeCreateVxlan({ name: 'vx', vni: 1, remote: '229.1.1.1' }, undefined), 'vxlan remote', /unicast/],
    [() => encodeCreateVxlan({ name: 'this-name-is-too-long', vni: 1 }, undefined), 'vxlan name', /1-15 characters/],
    [() => planOp({ op: 'fly' } as never), 'batch fly args', /must be an object/],
    [() => planOp({ op: 'fly', args: {} } as never), 'batch op', /not a known operation/],
  ];
  for (const [fn, field, rule] of cases) {
    assert.throws(fn, (e: unknown) => e instanceof InvalidValueError && e.field === field && rule.test(e.message), field);
  }
});

test('address add: IFA_LOCAL and IFA_ADDRESS both hold the address; the prefix length is in ifaddrmsg', () => {
  const req = prepareAddAddress('flannel.1', '10.244.1.0/32')(4);
  const m = req.message;
  assert.deepEqual([m[HDR], m[HDR + 1]], [C.AF_INET, 32]);
  assert.equal(m.readUInt32LE(HDR + 4), 4);
  const a = new Attrs(m, HDR + C.IFADDRMSG_LEN);
  assert.equal(a.address(C.IFA_LOCAL), '10.244.1.0');
  assert.equal(a.address(C.IFA_ADDRESS), '10.244.1.0');
  assert.equal(req.command, 'addr add 10.244.1.0/32 dev flannel.1');
});

test('NetlinkError reads like the iproute2 command, then errno name, strerror text and the kernel message', () => {
  const e = new NetlinkError('route replace 10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink', 101);
  assert.equal(e.message, 'route replace 10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink: ENETUNREACH (Network is unreachable)');
  assert.equal(e.code, 'TLE_NETLINK');
  assert.equal(e.errno, 'ENETUNREACH');
  const x = new NetlinkError('addr add 10.244.1.0/32 dev flannel.1', 17, 'ipv4: Address already assigned');
  assert.equal(x.message, 'addr add 10.244.1.0/32 dev flannel.1: EEXIST (File exists): ipv4: Address already assigned');
});

test('sysctl keys map to /proc/sys/net paths; "/" stands for "." in a name; only net.* is accepted', () => {
  assert.equal(sysctlPath('net.ipv4.conf.veth1.proxy_arp'), '/proc/sys/net/ipv4/conf/veth1/proxy_arp');
  assert.equal(sysctlPath('net.ipv4.conf.flannel/1.forwarding'), '/proc/sys/net/ipv4/conf/flannel.1/forwarding');
  assert.equal(sysctlPath('net/ipv4/conf/flannel.1/forwarding'), '/proc/sys/net/ipv4/conf/flannel.1/forwarding');
  assert.equal(sysctlPath('net.ipv4.neigh.veth1.proxy_delay'), '/proc/sys/net/ipv4/neigh/veth1/proxy_delay');
  for (const bad of ['kernel.hostname', 'net', 'net..ipv4', 'net/ipv4/../../kernel/hostname', 'net.ipv4.conf.a b.forwarding', 'vm.swappiness']) {
    assert.throws(
      () => sysctlPath(bad),
      (e: unknown) => e instanceof InvalidValueError && e.field === 'sysctl key',
      bad,
    );
  }
});
