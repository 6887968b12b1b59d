/**
 * Links (`ip link`): requests for vxlan, bridge and veth devices and for changing any link, and the decoder of
 * RTM_NEWLINK messages. IFLA_LINKINFO / IFLA_INFO_DATA (IFLA_VXLAN_*, VETH_INFO_PEER) are encoded here by hand.
 * Builders are pure: names of other devices arrive already resolved to indexes (the client does that).
 */
import { InvalidValueError } from '../base/errors.js';
import { macToBytes } from '../base/ip.js';
import {
  IFF_LOWER_UP,
  IFF_UP,
  IFINFOMSG_LEN,
  IFLA_ADDRESS,
  IFLA_EXT_MASK,
  IFLA_IFNAME,
  IFLA_INFO_DATA,
  IFLA_INFO_KIND,
  IFLA_LINK,
  IFLA_LINKINFO,
  IFLA_LINK_NETNSID,
  IFLA_MASTER,
  IFLA_MTU,
  IFLA_NET_NS_FD,
  IFLA_OPERSTATE,
  IFLA_VXLAN_GBP,
  IFLA_VXLAN_GROUP,
  IFLA_VXLAN_GROUP6,
  IFLA_VXLAN_ID,
  IFLA_VXLAN_LEARNING,
  IFLA_VXLAN_LINK,
  IFLA_VXLAN_LOCAL,
  IFLA_VXLAN_LOCAL6,
  IFLA_VXLAN_PORT,
  IFLA_VXLAN_PORT_RANGE,
  IFLA_VXLAN_PROXY,
  IFLA_VXLAN_TTL,
  IFLA_VXLAN_UDP_CSUM,
  NLM_F_CREATE,
  NLM_F_EXCL,
  OPER_STATES,
  RTEXT_FILTER_SKIP_STATS,
  RTM_DELLINK,
  RTM_GETLINK,
  RTM_NEWLINK,
  VETH_INFO_PEER,
} from './constants.js';
import { parseAddress } from './inet.js';
import { Attrs, MessageWriter, type Message, type Request } from './message.js';
import { checkBool, checkIfName, checkInt, checkMac } from './validate.js';

export interface VxlanInfo {
  vni: number;
  /** Source address of the outer packets (`local`). */
  local?: string;
  /** Underlay device (`dev`): its index, and its name when it is in this namespace. */
  link?: number;
  dev?: string;
  /** UDP destination port (`dstport`). */
  port: number;
  learning: boolean;
  /** ARP/ND answered by the device from its own neighbour table (`proxy`), instead of sent to the remotes. */
  proxy: boolean;
  gbp: boolean;
  /** 0 means "inherit from the inner packet" is off and the kernel default (64 via route) applies. */
  ttl: number;
  udpCsum: boolean;
  /** Outer UDP source ports (`srcport LOW HIGH`); absent when unset (`srcport 0 0`): the namespace's ip_local_port_range then. */
  srcPortRange?: [number, number];
  /** Unicast peer (`remote`) or multicast group (`group`): the kernel keeps one address and its kind decides. */
  remote?: string;
  group?: string;
}

export interface Link {
  index: number;
  name: string;
  /** IFLA_INFO_KIND: 'vxlan', 'bridge', 'veth', 'dummy', ...; undefined for devices without one (lo, NICs). */
  kind: string | undefined;
  mtu: number;
  mac: string | undefined;
  /** Administratively up (IFF_UP), as `ip link set up` sets it. */
  up: boolean;
  /** Carrier present (IFF_LOWER_UP). */
  lowerUp: boolean;
  operState: string;
  /** The bridge this link is a port of (`master`). */
  master: string | undefined;
  masterIndex: number | undefined;
  /** IFLA_LINK: a veth's peer index (in `linkNetnsId`'s namespace when that is set). */
  linkIndex: number | undefined;
  linkNetnsId: number | undefined;
  vxlan?: VxlanInfo;
}

export interface VxlanOptions {
  name: string;
  vni: number;
  local?: string;
  dev?: string;
  port?: number;
  learning?: boolean;
  /** Answer ARP/ND from the device's neighbour table; the kernel takes it at creation only. */
  proxy?: boolean;
  gbp?: boolean;
  ttl?: number;
  udpCsum?: boolean;
  remote?: string;
  group?: string;
  mtu?: number;
  mac?: string;
  up?: boolean;
}

export interface BridgeOptions {
  name: string;
  mtu?: number;
  mac?: string;
  up?: boolean;
}

export interface VethOptions {
  name: string;
  peerName: string;
  /** Namespace the peer end is created in (name under /run/netns or a path). */
  peerNetns?: string;
  mtu?: number;
  mac?: string;
  peerMac?: string;
}

export interface LinkChanges {
  up?: boolean;
  mtu?: number;
  mac?: string;
  /** A bridge to enslave to, or null to leave the current one (`nomaster`). */
  master?: string | null;
  /** Move to this namespace (name under /run/netns or a path). */
  netns?: string;
  newName?: string;
}

function ifinfo(w: MessageWriter, fields: { index?: number; up?: boolean }): void {
  const s = w.struct;
  if (fields.index) s.writeInt32LE(fields.index, 4);
  if (fields.up !== undefined) {
    s.writeUInt32LE(fields.up ? IFF_UP : 0, 8); // ifi_flags
    s.writeUInt32LE(IFF_UP, 12); // ifi_change: only touch IFF_UP
  }
}

function checkMtu(mtu: number | undefined, field: string): number | undefined {
  return mtu === undefined ? undefined : checkInt(mtu, field, 68, 65535);
}

function commonAddArgs(o: { mac?: string; mtu?: number; up?: boolean }): string {
  return `${o.mac ? ` address ${o.mac}` : ''}${o.mtu !== undefined ? ` mtu ${o.mtu}` : ''}${o.up ? ' up' : ''}`;
}

/** Check a vxlan spec; `dev` is resolved by the caller and passed to `encodeCreateVxlan`. */
export function checkVxlanOptions(o: VxlanOptions): void {
  checkIfName(o.name, 'vxlan name');
  checkInt(o.vni, 'vxlan vni', 0, 0xffffff);
  if (o.local !== undefined) parseAddress(o.local, 'vxlan local');
  if (o.dev !== undefined) checkIfName(o.dev, 'vxlan dev');
  if (o.port !== undefined) checkInt(o.port, 'vxlan port', 1, 65535);
  if (o.ttl !== undefined) checkInt(o.ttl, 'vxlan ttl', 0, 255);
  checkMtu(o.mtu, 'vxlan mtu');
  if (o.mac !== undefined) checkMac(o.mac, 'vxlan mac');
  for (const f of ['learning', 'proxy', 'gbp', 'udpCsum', 'up'] as const) checkBool(o[f], `vxlan ${f}`);
  if (o.remote !== undefined && o.group !== undefined)
    throw new InvalidValueError('vxlan remote', o.remote, 'cannot be combined with group (a device has one or the other)');
  if (o.remote !== undefined && isMulticast(parseAddress(o.remote, 'vxlan remote').bytes))
    throw new InvalidValueError('vxlan remote', o.remote, 'must be a unicast address (use group for multicast)');
  if (o.group !== undefined && !isMulticast(parseAddress(o.group, 'vxlan group').bytes))
    throw new InvalidValueError('vxlan group', o.group, 'must be a multicast address (use remote for unicast)');
}

/** `ip link add NAME [address MAC] [mtu N] [up] type vxlan id VNI [local IP] [remote IP | group IP] [dev DEV] [ttl N] dstport PORT [no]learning [proxy] [gbp] [no]udpcsum` */
export function encodeCreateVxlan(o: VxlanOptions, devIndex: number | undefined): Request {
  checkVxlanOptions(o);
  const w = new MessageWriter(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, IFINFOMSG_LEN);
  ifinfo(w, { up: o.up });
  w.string(IFLA_IFNAME, o.name);
  if (o.mtu !== undefined) w.u32(IFLA_MTU, o.mtu);
  if (o.mac !== undefined) w.bytes(IFLA_ADDRESS, macToBytes(o.mac));
  const info = w.beginNest(IFLA_LINKINFO);
  w.string(IFLA_INFO_KIND, 'vxlan');
  const data = w.beginNest(IFLA_INFO_DATA);
  w.u32(IFLA_VXLAN_ID, o.vni);
  if (o.local !== undefined) {
    const a = parseAddress(o.local, 'vxlan local');
    w.bytes(a.family === 4 ? IFLA_VXLAN_LOCAL : IFLA_VXLAN_LOCAL6, a.bytes);
  }
  const peer = o.remote ?? o.group;
  if (peer !== undefined) {
    const a = parseAddress(peer, 'vxlan remote');
    w.bytes(a.family === 4 ? IFLA_VXLAN_GROUP : IFLA_VXLAN_GROUP6, a.bytes);
  }
  if (devIndex !== undefined) w.u32(IFLA_VXLAN_LINK, devIndex);
  if (o.ttl !== undefined) w.u8(IFLA_VXLAN_TTL, o.ttl);
  if (o.port !== undefined) w.be16(IFLA_VXLAN_PORT, o.port);
  if (o.learning !== undefined) w.u8(IFLA_VXLAN_LEARNING, o.learning ? 1 : 0);
  if (o.proxy !== undefined) w.u8(IFLA_VXLAN_PROXY, o.proxy ? 1 : 0);
  if (o.gbp) w.flag(IFLA_VXLAN_GBP);
  if (o.udpCsum !== undefined) w.u8(IFLA_VXLAN_UDP_CSUM, o.udpCsum ? 1 : 0);
  w.endNest(data);
  w.endNest(info);
  const args =
    `id ${o.vni}${o.local ? ` local ${o.local}` : ''}${o.remote ? ` remote ${o.remote}` : ''}${o.group ? ` group ${o.group}` : ''}` +
    `${o.dev ? ` dev ${o.dev}` : ''}${o.ttl !== undefined ? ` ttl ${o.ttl}` : ''}${o.port !== undefined ? ` dstport ${o.port}` : ''}` +
    `${o.learning === false ? ' nolearning' : o.learning ? ' learning' : ''}${o.proxy ? ' proxy' : o.proxy === false ? ' noproxy' : ''}${o.gbp ? ' gbp' : ''}` +
    `${o.udpCsum === false ? ' noudpcsum' : o.udpCsum ? ' udpcsum' : ''}`;
  return { message: w.finish(), command: `link add ${o.name}${commonAddArgs(o)} type vxlan ${args}` };
}

/** `ip link add NAME [address MAC] [mtu N] [up] type bridge` */
export function encodeCreateBridge(o: BridgeOptions): Request {
  checkIfName(o.name, 'bridge name');
  checkMtu(o.mtu, 'bridge mtu');
  if (o.mac !== undefined) checkMac(o.mac, 'bridge mac');
  checkBool(o.up, 'bridge up');
  const w = new MessageWriter(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, IFINFOMSG_LEN);
  ifinfo(w, { up: o.up });
  w.string(IFLA_IFNAME, o.name);
  if (o.mtu !== undefined) w.u32(IFLA_MTU, o.mtu);
  if (o.mac !== undefined) w.bytes(IFLA_ADDRESS, macToBytes(o.mac));
  const info = w.beginNest(IFLA_LINKINFO);
  w.string(IFLA_INFO_KIND, 'bridge');
  w.endNest(info);
  return { message: w.finish(), command: `link add ${o.name}${commonAddArgs(o)} type bridge` };
}

export function checkVethOptions(o: VethOptions): void {
  checkIfName(o.name, 'veth name');
  checkIfName(o.peerName, 'veth peerName');
  checkMtu(o.mtu, 'veth mtu');
  if (o.mac !== undefined) checkMac(o.mac, 'veth mac');
  if (o.peerMac !== undefined) checkMac(o.peerMac, 'veth peerMac');
}

/**
 * `ip link add NAME [address MAC] [mtu N] type veth peer name PEER [address MAC] [netns NS]`. Both ends get the
 * MTU; `peerNsFd` is an open fd of the peer's namespace file, held open by the caller until the ACK.
 */
export function encodeCreateVeth(o: VethOptions, peerNsFd: number | undefined): Request {
  checkVethOptions(o);
  const w = new MessageWriter(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, IFINFOMSG_LEN);
  w.string(IFLA_IFNAME, o.name);
  if (o.mtu !== undefined) w.u32(IFLA_MTU, o.mtu);
  if (o.mac !== undefined) w.bytes(IFLA_ADDRESS, macToBytes(o.mac));
  const info = w.beginNest(IFLA_LINKINFO);
  w.string(IFLA_INFO_KIND, 'veth');
  const data = w.beginNest(IFLA_INFO_DATA);
  const peer = w.beginNest(VETH_INFO_PEER);
  w.raw(Buffer.alloc(IFINFOMSG_LEN)); // the peer's own ifinfomsg, then its attributes
  w.string(IFLA_IFNAME, o.peerName);
  if (o.mtu !== undefined) w.u32(IFLA_MTU, o.mtu);
  if (o.peerMac !== undefined) w.bytes(IFLA_ADDRESS, macToBytes(o.peerMac));
  if (peerNsFd !== undefined) w.u32(IFLA_NET_NS_FD, peerNsFd);
  w.endNest(peer);
  w.endNest(data);
  w.endNest(info);
  const peerArgs = `${o.peerMac ? ` address ${o.peerMac}` : ''}${o.peerNetns ? ` netns ${o.peerNetns}` : ''}`;
  return { message: w.finish(), command: `link add ${o.name}${commonAddArgs(o)} type veth peer name ${o.peerName}${peerArgs}` };
}

/** `ip link del NAME` */
export function encodeDeleteLink(name: string): Request {
  checkIfName(name, 'link name');
  const w = new MessageWriter(RTM_DELLINK, 0, IFINFOMSG_LEN);
  w.string(IFLA_IFNAME, name);
  return { message: w.finish(), command: `link del ${name}` };
}

export function checkLinkChanges(name: string, o: LinkChanges): void {
  checkIfName(name, 'link name');
  checkBool(o.up, 'link up');
  checkMtu(o.mtu, 'link mtu');
  if (o.mac !== undefined) checkMac(o.mac, 'link mac');
  if (o.master !== undefined && o.master !== null) checkIfName(o.master, 'link master');
  if (o.newName !== undefined) checkIfName(o.newName, 'link newName');
}

/**
 * `ip link set dev NAME [up|down] [mtu N] [address MAC] [master BR | nomaster] [netns NS] [name NEW]`. The link is
 * found by index when renaming (IFLA_IFNAME then carries the new name), else by name.
 */
export function encodeSetLink(name: string, o: LinkChanges, resolved: { index?: number; masterIndex?: number; nsFd?: number }): Request {
  checkLinkChanges(name, o);
  if (o.newName !== undefined && !resolved.index) throw new Error('encodeSetLink: renaming needs the link index');
  const w = new MessageWriter(RTM_NEWLINK, 0, IFINFOMSG_LEN);
  ifinfo(w, { index: o.newName !== undefined ? resolved.index : undefined, up: o.up });
  if (o.newName !== undefined) {
    w.string(IFLA_IFNAME, o.newName);
  } else {
    w.string(IFLA_IFNAME, name);
  }
  if (o.mtu !== undefined) w.u32(IFLA_MTU, o.mtu);
  if (o.mac !== undefined) w.bytes(IFLA_ADDRESS, macToBytes(o.mac));
  if (o.master === null) w.u32(IFLA_MASTER, 0);
  else if (o.master !== undefined) w.u32(IFLA_MASTER, resolved.masterIndex ?? 0);
  if (resolved.nsFd !== undefined) w.u32(IFLA_NET_NS_FD, resolved.nsFd);
  const args =
    `${o.up === true ? ' up' : o.up === false ? ' down' : ''}${o.mtu !== undefined ? ` mtu ${o.mtu}` : ''}` +
    `${o.mac ? ` address ${o.mac}` : ''}${o.master === null ? ' nomaster' : o.master ? ` master ${o.master}` : ''}` +
    `${o.netns ? ` netns ${o.netns}` : ''}${o.newName ? ` name ${o.newName}` : ''}`;
  return { message: w.finish(), command: `link set dev ${name}${args}` };
}

/**
 * `ip link set dev NAME type vxlan [no]learning`: the one vxlan attribute tulle changes on a live device (the
 * kernel refuses to change most others, `proxy` among them, with EOPNOTSUPP: those need a new device).
 */
export function encodeSetVxlanLearning(name: string, learning: boolean): Request {
  checkIfName(name, 'link name');
  checkBool(learning, 'vxlan learning');
  const w = new MessageWriter(RTM_NEWLINK, 0, IFINFOMSG_LEN);
  w.string(IFLA_IFNAME, name);
  const info = w.beginNest(IFLA_LINKINFO);
  w.string(IFLA_INFO_KIND, 'vxlan');
  const data = w.beginNest(IFLA_INFO_DATA);
  w.u8(IFLA_VXLAN_LEARNING, learning ? 1 : 0);
  w.endNest(data);
  w.endNest(info);
  return { message: w.finish(), command: `link set dev ${name} type vxlan ${learning ? 'learning' : 'nolearning'}` };
}

/** `ip link show dev NAME` (by name) or the link with that index. */
export function encodeGetLink(nameOrIndex: string | number): Request {
  const w = new MessageWriter(RTM_GETLINK, 0, IFINFOMSG_LEN);
  if (typeof nameOrIndex === 'number') {
    ifinfo(w, { index: nameOrIndex });
  } else {
    checkIfName(nameOrIndex, 'link name');
    w.string(IFLA_IFNAME, nameOrIndex);
  }
  w.u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
  return { message: w.finish(), command: `link show dev ${nameOrIndex}` };
}

/** `ip link show` */
export function encodeDumpLinks(): Request {
  const w = new MessageWriter(RTM_GETLINK, 0, IFINFOMSG_LEN);
  w.u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
  return { message: w.finish(), command: 'link show' };
}

function isMulticast(bytes: Buffer): boolean {
  return bytes.length === 4 ? (bytes[0]! & 0xf0) === 0xe0 : bytes[0] === 0xff;
}

/** Index and name only: cheap enough to build name maps from every link of a dump. */
export function decodeLinkName(m: Message): { index: number; name: string } {
  return { index: m.payload.readInt32LE(4), name: new Attrs(m.payload, IFINFOMSG_LEN).string(IFLA_IFNAME) ?? '' };
}

/** Decode RTM_NEWLINK/RTM_DELLINK; `nameOf` names other links (master, vxlan dev) by index. */
export function decodeLink(m: Message, nameOf: (index: number) => string | undefined): Link {
  const p = m.payload;
  const index = p.readInt32LE(4);
  const flags = p.readUInt32LE(8);
  const a = new Attrs(p, IFINFOMSG_LEN);
  const masterIndex = a.u32(IFLA_MASTER) || undefined;
  const info = a.nested(IFLA_LINKINFO);
  const kind = info?.string(IFLA_INFO_KIND);
  const link: Link = {
    index,
    name: a.string(IFLA_IFNAME) ?? '',
    kind,
    mtu: a.u32(IFLA_MTU) ?? 0,
    mac: a.mac(IFLA_ADDRESS),
    up: (flags & IFF_UP) !== 0,
    lowerUp: (flags & IFF_LOWER_UP) !== 0,
    operState: OPER_STATES[a.u8(IFLA_OPERSTATE) ?? 0] ?? 'unknown',
    master: masterIndex ? nameOf(masterIndex) : undefined,
    masterIndex,
    linkIndex: a.u32(IFLA_LINK) || undefined,
    linkNetnsId: a.i32(IFLA_LINK_NETNSID),
  };
  const data = kind === 'vxlan' ? info?.nested(IFLA_INFO_DATA) : undefined;
  if (data) link.vxlan = decodeVxlan(data, nameOf);
  return link;
}

function isZero(a: Attrs, type: number): boolean {
  const b = a.bytes(type);
  return !b || b.every((x) => x === 0);
}

function decodeVxlan(d: Attrs, nameOf: (index: number) => string | undefined): VxlanInfo {
  const devIndex = d.u32(IFLA_VXLAN_LINK) || undefined;
  const localType = d.has(IFLA_VXLAN_LOCAL) ? IFLA_VXLAN_LOCAL : IFLA_VXLAN_LOCAL6;
  const peerType = d.has(IFLA_VXLAN_GROUP) ? IFLA_VXLAN_GROUP : IFLA_VXLAN_GROUP6;
  const info: VxlanInfo = {
    vni: d.u32(IFLA_VXLAN_ID) ?? 0,
    port: d.be16(IFLA_VXLAN_PORT) ?? 0,
    learning: (d.u8(IFLA_VXLAN_LEARNING) ?? 0) !== 0,
    proxy: (d.u8(IFLA_VXLAN_PROXY) ?? 0) !== 0,
    gbp: d.has(IFLA_VXLAN_GBP),
    ttl: d.u8(IFLA_VXLAN_TTL) ?? 0,
    udpCsum: (d.u8(IFLA_VXLAN_UDP_CSUM) ?? 0) !== 0,
  };
  if (!isZero(d, localType)) info.local = d.address(localType);
  const range = d.bytes(IFLA_VXLAN_PORT_RANGE);
  if (range && range.length >= 4 && (range.readUInt16BE(0) || range.readUInt16BE(2))) info.srcPortRange = [range.readUInt16BE(0), range.readUInt16BE(2)];
  if (devIndex !== undefined) {
    info.link = devIndex;
    const dev = nameOf(devIndex);
    if (dev !== undefined) info.dev = dev;
  }
  if (!isZero(d, peerType)) {
    const peer = d.bytes(peerType)!;
    if (isMulticast(peer)) info.group = d.address(peerType);
    else info.remote = d.address(peerType);
  }
  return info;
}
