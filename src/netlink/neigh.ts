/**
 * Neighbours (`ip neigh`) and forwarding database entries (`bridge fdb ... self`). Both are RTM_*NEIGH messages
 * (struct ndmsg + NDA_* attributes): neighbours in the AF_INET/AF_INET6 tables, FDB entries in AF_BRIDGE, where a
 * vxlan device keeps, per MAC, the remote VTEP(s) to send to (NDA_DST, NDA_VNI, NDA_PORT, NDA_IFINDEX).
 */
import { InvalidValueError } from '../base/errors.js';
import {
  AF_BRIDGE,
  AF_UNSPEC,
  NDA_DST,
  NDA_IFINDEX,
  NDA_LLADDR,
  NDA_MASTER,
  NDA_PORT,
  NDA_VLAN,
  NDA_VNI,
  NDMSG_LEN,
  NLM_F_APPEND,
  NLM_F_CREATE,
  NLM_F_REPLACE,
  NTF_EXT_LEARNED,
  NTF_MASTER,
  NTF_ROUTER,
  NTF_SELF,
  NUD_STATES,
  RTM_DELNEIGH,
  RTM_GETNEIGH,
  RTM_NEWNEIGH,
} from './constants.js';
import { addressFamily, formatAddress, parseAddress } from './inet.js';
import { Attrs, MessageWriter, lazyRequest, type Message, type Request } from './message.js';
import { checkBool, checkIfName, checkInt, checkOneOf, macBytes } from './validate.js';

export type NeighborState = keyof typeof NUD_STATES | 'none';
const SETTABLE_STATES = ['permanent', 'reachable', 'noarp', 'stale'] as const;

export interface Neighbor {
  dev: string;
  ip: string;
  /** Link-layer address; missing on incomplete/failed entries. */
  mac?: string;
  /** NUD state; `replaceNeighbor` defaults to 'permanent' (flannel's `nud permanent`). */
  state?: NeighborState;
  /** Listed entries only, when the neighbour announced itself as a router. */
  router?: true;
}

export interface Fdb {
  dev: string;
  mac: string;
  /** Remote VTEP address (vxlan devices). */
  dst?: string;
  /** Remote VNI; listed only when it differs from the device's own, as `bridge fdb` shows. */
  vni?: number;
  /** Remote UDP port; listed only when it differs from the device's own. */
  port?: number;
  /** Underlay device to send through (`via`). */
  via?: string;
  /** Static entry that never ages out; default true. */
  permanent?: boolean;
  /** The device's own table (`self`, default true) rather than its bridge's (`master`). */
  self?: boolean;
  /** Listed entries only: the bridge whose own table holds the entry (`master br0`), and its VLAN. */
  master?: string;
  vlan?: number;
  /** Listed entries only: learned by an external agent / the kernel rather than added by hand. */
  extLearned?: true;
}

// ---------------------------------------------------------------------------------------------------------
// Neighbours
//
// Requests are made in two steps: `prepare*` checks the input (throwing InvalidValueError) and returns a builder
// that only needs the device index. A batch checks every op first and resolves all names once in between.

function checkNeighborTarget(n: { dev: string; ip: string }): ReturnType<typeof parseAddress> {
  if (!n || typeof n !== 'object') throw new InvalidValueError('neighbor', n, 'must be an object like {dev, ip, mac}');
  checkIfName(n.dev, 'neighbor dev');
  return parseAddress(n.ip, 'neighbor ip');
}

function ndmsg(w: MessageWriter, family: number, index: number, state: number, flags: number): void {
  w.structU8(0, family).structU32(4, index).structU16(8, state).structU8(10, flags);
}

/** `ip neigh replace IP lladdr MAC dev DEV nud STATE` (state default permanent). */
export function prepareReplaceNeighbor(n: Neighbor): (index: number) => Request {
  const ip = checkNeighborTarget(n);
  const mac = macBytes(n.mac as string, 'neighbor mac');
  if (n.state !== undefined) checkOneOf(n.state as (typeof SETTABLE_STATES)[number], 'neighbor state', SETTABLE_STATES);
  const state = n.state ?? 'permanent';
  const stateBits = NUD_STATES[state as keyof typeof NUD_STATES];
  return (index) => {
    const w = new MessageWriter(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, NDMSG_LEN);
    ndmsg(w, addressFamily(ip.family), index, stateBits, 0);
    w.bytes(NDA_DST, ip.bytes);
    w.bytes(NDA_LLADDR, mac);
    return lazyRequest(w.finish(), () => `neigh replace ${n.ip} lladdr ${n.mac} dev ${n.dev} nud ${state}`);
  };
}

export function encodeReplaceNeighbor(n: Neighbor, index: number): Request {
  return prepareReplaceNeighbor(n)(index);
}

/** `ip neigh del IP dev DEV` (ENOENT when there is no such entry). */
export function prepareDeleteNeighbor(n: { dev: string; ip: string }): (index: number) => Request {
  const ip = checkNeighborTarget(n);
  return (index) => {
    const w = new MessageWriter(RTM_DELNEIGH, 0, NDMSG_LEN);
    ndmsg(w, addressFamily(ip.family), index, 0, 0);
    w.bytes(NDA_DST, ip.bytes);
    return lazyRequest(w.finish(), () => `neigh del ${n.ip} dev ${n.dev}`);
  };
}

/** `ip neigh show [dev DEV]` (IPv4 and IPv6); the kernel filters by device. */
export function encodeDumpNeighbors(index?: number, dev?: string): Request {
  const w = new MessageWriter(RTM_GETNEIGH, 0, NDMSG_LEN);
  ndmsg(w, AF_UNSPEC, 0, 0, 0);
  if (index) w.u32(NDA_IFINDEX, index);
  return { message: w.finish(), command: `neigh show${dev ? ` dev ${dev}` : ''}` };
}

const STATE_NAMES: NeighborState[] = [];
for (let state = 0; state < 256; state++) {
  const first = Object.entries(NUD_STATES).find(([, bit]) => state & bit);
  STATE_NAMES[state] = first ? (first[0] as NeighborState) : 'none';
}

export function decodeNeighbor(m: Message, nameOf: (index: number) => string | undefined): Neighbor | undefined {
  const p = m.payload;
  const index = p.readInt32LE(4);
  const a = new Attrs(p, NDMSG_LEN);
  const ip = a.address(NDA_DST);
  if (ip === undefined) return undefined;
  const n: Neighbor = { dev: nameOf(index) ?? `if${index}`, ip, state: STATE_NAMES[p.readUInt16LE(8) & 0xff] ?? 'none' };
  const mac = a.mac(NDA_LLADDR);
  if (mac !== undefined) n.mac = mac;
  if (p[10]! & NTF_ROUTER) n.router = true;
  return n;
}

// ---------------------------------------------------------------------------------------------------------
// FDB

export function checkFdb(f: Fdb): void {
  parseFdb(f);
}

/** checkFdb, and the MAC and remote as the kernel wants them (each parsed once). */
function parseFdb(f: Fdb): { mac: Buffer; dst: Buffer | undefined } {
  if (!f || typeof f !== 'object') throw new InvalidValueError('fdb', f, 'must be an object like {dev, mac, dst}');
  checkIfName(f.dev, 'fdb dev');
  const mac = macBytes(f.mac, 'fdb mac');
  const dst = f.dst !== undefined ? parseAddress(f.dst, 'fdb dst').bytes : undefined;
  if (f.vni !== undefined) checkInt(f.vni, 'fdb vni', 0, 0xffffff);
  if (f.port !== undefined) checkInt(f.port, 'fdb port', 1, 65535);
  if (f.via !== undefined) checkIfName(f.via, 'fdb via');
  checkBool(f.permanent, 'fdb permanent');
  checkBool(f.self, 'fdb self');
  return { mac, dst };
}

/** A requested FDB entry as `listFdb` reports it: `permanent` and `self` spelled out, MAC in lower case. */
export function normalizeFdb(f: Fdb): Fdb {
  checkFdb(f);
  const out: Fdb = { dev: f.dev, mac: f.mac.toLowerCase(), permanent: f.permanent ?? true, self: f.self ?? true };
  if (f.dst !== undefined) out.dst = formatAddress(parseAddress(f.dst, 'fdb dst').bytes);
  if (f.vni !== undefined) out.vni = f.vni;
  if (f.port !== undefined) out.port = f.port;
  if (f.via !== undefined) out.via = f.via;
  return out;
}

function fdbArgs(f: Fdb): string {
  return (
    `${f.mac} dev ${f.dev}${f.dst !== undefined ? ` dst ${f.dst}` : ''}${f.vni !== undefined ? ` vni ${f.vni}` : ''}` +
    `${f.port !== undefined ? ` port ${f.port}` : ''}${f.via !== undefined ? ` via ${f.via}` : ''}` +
    `${f.self === false ? ' master' : ' self'}${f.permanent === false ? ' dynamic' : ' permanent'}`
  );
}

export type FdbAction = 'replace' | 'append' | 'del';

/**
 * `bridge fdb replace|append|del MAC dev DEV [dst IP] [vni N] [port P] [via DEV] self permanent`. The builder takes
 * the device's index and, when `via` is given, the underlay device's.
 */
export function prepareFdb(action: FdbAction, f: Fdb): (indexes: { dev: number; via?: number }) => Request {
  const { mac, dst } = parseFdb(f);
  const type = action === 'del' ? RTM_DELNEIGH : RTM_NEWNEIGH;
  const flags = action === 'replace' ? NLM_F_CREATE | NLM_F_REPLACE : action === 'append' ? NLM_F_CREATE | NLM_F_APPEND : 0;
  const state = f.permanent === false ? NUD_STATES.reachable : NUD_STATES.permanent;
  return (indexes) => {
    const w = new MessageWriter(type, flags, NDMSG_LEN);
    ndmsg(w, AF_BRIDGE, indexes.dev, state, f.self === false ? NTF_MASTER : NTF_SELF);
    w.bytes(NDA_LLADDR, mac);
    if (dst) w.bytes(NDA_DST, dst);
    if (f.vni !== undefined) w.u32(NDA_VNI, f.vni);
    if (f.port !== undefined) w.be16(NDA_PORT, f.port);
    if (indexes.via !== undefined) w.u32(NDA_IFINDEX, indexes.via);
    return lazyRequest(w.finish(), () => `fdb ${action} ${fdbArgs(f)}`);
  };
}

export function encodeFdb(action: FdbAction, f: Fdb, indexes: { dev: number; via?: number }): Request {
  return prepareFdb(action, f)(indexes);
}

/** `bridge fdb show [dev DEV]`; the kernel filters by device. */
export function encodeDumpFdb(index?: number, dev?: string): Request {
  const w = new MessageWriter(RTM_GETNEIGH, 0, NDMSG_LEN);
  ndmsg(w, AF_BRIDGE, index ?? 0, 0, 0);
  return { message: w.finish(), command: `fdb show${dev ? ` dev ${dev}` : ''}` };
}

export function decodeFdb(m: Message, nameOf: (index: number) => string | undefined): Fdb {
  const p = m.payload;
  const index = p.readInt32LE(4);
  const state = p.readUInt16LE(8);
  const flags = p[10]!;
  const a = new Attrs(p, NDMSG_LEN);
  const f: Fdb = {
    dev: nameOf(index) ?? `if${index}`,
    mac: a.mac(NDA_LLADDR) ?? '',
    permanent: (state & NUD_STATES.permanent) !== 0,
    self: (flags & NTF_SELF) !== 0,
  };
  const dst = a.address(NDA_DST);
  if (dst !== undefined) f.dst = dst;
  const vni = a.u32(NDA_VNI);
  if (vni !== undefined) f.vni = vni;
  const port = a.be16(NDA_PORT);
  if (port !== undefined) f.port = port;
  const via = a.u32(NDA_IFINDEX);
  if (via !== undefined) f.via = nameOf(via) ?? `if${via}`;
  const master = a.u32(NDA_MASTER);
  // The bridge marks its own entries with NDA_MASTER (not the NTF_MASTER flag), as `bridge fdb` reads them.
  if (master) f.master = nameOf(master) ?? `if${master}`;
  const vlan = a.u16(NDA_VLAN);
  if (vlan !== undefined) f.vlan = vlan;
  if (flags & NTF_EXT_LEARNED) f.extLearned = true;
  return f;
}
