/**
 * Compact readers of route and neighbour dumps, for code that reads thousands of entries and needs a few numbers
 * of each (the reconciler's full resync, `tulle status`): the fields are read straight from the received bytes
 * and handed to a sink as numbers — IPv4 addresses as unsigned 32-bit numbers, MACs as 48-bit numbers, devices as
 * indexes. The generic decoders (route.ts, neigh.ts) make a Message, an object and several strings per entry; at
 * 5000 peers that garbage was most of a resync's time. What `ip route show` / `ip neigh
 * show` / `bridge fdb show` print is still what these records mean; the netns tests hold the two readers equal.
 */
import {
  AF_INET,
  NDA_DST,
  NDA_LLADDR,
  NDMSG_LEN,
  NLA_HDRLEN,
  NLA_TYPE_MASK,
  NLMSG_HDRLEN,
  RTA_DST,
  RTA_GATEWAY,
  RTA_OIF,
  RTA_TABLE,
  RTM_F_CLONED,
  RTMSG_LEN,
  RTNH_F_ONLINK,
} from './constants.js';
import type { RawDump } from './socket.js';

/** Receives the routes of a dump, one call each: IPv4 fields as numbers, NaN where the route has no such field. */
export interface RouteSink {
  /**
   * family 4 or 6; dst the destination network (0 for the default route, NaN when IPv6); table; protocol; type
   * (rtm_type: 1 unicast, 2 local, ...); onlink (RTNH_F_ONLINK); via the IPv4 gateway; oif the output device
   * index, 0 without one.
   */
  route(family: number, dst: number, dstLen: number, table: number, protocol: number, type: number, onlink: boolean, via: number, oif: number): void;
}

/** Receives the entries of a neighbour or FDB dump, one call each. */
export interface NeighborSink {
  /**
   * family AF_INET, AF_INET6 or AF_BRIDGE (an FDB entry); state the NUD_* bits (permanent 0x80); flags the NTF_*
   * bits (self 0x02); ip NDA_DST as IPv4 (a neighbour's address, an FDB entry's remote), NaN when absent or IPv6;
   * mac NDA_LLADDR as a 48-bit number, NaN when absent or not 6 bytes long.
   */
  neighbor(family: number, ifindex: number, state: number, flags: number, ip: number, mac: number): void;
}

// Fields are read byte by byte in place: these loops run once per entry of dumps of thousands, often in a process
// that has just started, where every call through Buffer's read methods still costs.

/**
 * The routes of a raw dump (RTM_NEWROUTE: struct rtmsg + attributes), table `table` only (0 = all), cached clones
 * left out (they are not configuration; `ip route show` leaves them out too).
 */
export function scanRouteDump(raw: RawDump, table: number, sink: RouteSink): void {
  const spans = raw.spans;
  for (let i = 0; i < spans.length; i += 3) {
    const b = raw.buffers[spans[i]!]!;
    const start = spans[i + 1]! + NLMSG_HDRLEN;
    const end = spans[i + 1]! + spans[i + 2]!;
    if (end - start < RTMSG_LEN) continue;
    const flags = b[start + 8]! | (b[start + 9]! << 8);
    if (flags & RTM_F_CLONED) continue;
    let dst = 0;
    let via = NaN;
    let oif = 0;
    let t = b[start + 4]!;
    let off = start + RTMSG_LEN;
    while (off + NLA_HDRLEN <= end) {
      const len = b[off]! | (b[off + 1]! << 8);
      if (len < NLA_HDRLEN || off + len > end) break;
      const type = (b[off + 2]! | (b[off + 3]! << 8)) & NLA_TYPE_MASK;
      const v = off + NLA_HDRLEN;
      if (type === RTA_DST) dst = len === 8 ? b[v]! * 0x1000000 + ((b[v + 1]! << 16) | (b[v + 2]! << 8) | b[v + 3]!) : NaN;
      else if (type === RTA_GATEWAY) via = len === 8 ? b[v]! * 0x1000000 + ((b[v + 1]! << 16) | (b[v + 2]! << 8) | b[v + 3]!) : NaN;
      else if (type === RTA_OIF && len >= 8) oif = (b[v]! | (b[v + 1]! << 8) | (b[v + 2]! << 16)) + b[v + 3]! * 0x1000000;
      else if (type === RTA_TABLE && len >= 8) t = (b[v]! | (b[v + 1]! << 8) | (b[v + 2]! << 16)) + b[v + 3]! * 0x1000000;
      off += (len + 3) & ~3;
    }
    if (table !== 0 && t !== table) continue;
    sink.route(b[start] === AF_INET ? 4 : 6, dst, b[start + 1]!, t, b[start + 5]!, b[start + 7]!, (flags & RTNH_F_ONLINK) !== 0, via, oif);
  }
}

/** The entries of a raw neighbour or FDB dump (RTM_NEWNEIGH: struct ndmsg + attributes) on device `ifindex` only. */
export function scanNeighborDump(raw: RawDump, ifindex: number, sink: NeighborSink): void {
  const spans = raw.spans;
  for (let i = 0; i < spans.length; i += 3) {
    const b = raw.buffers[spans[i]!]!;
    const start = spans[i + 1]! + NLMSG_HDRLEN;
    const end = spans[i + 1]! + spans[i + 2]!;
    if (end - start < NDMSG_LEN) continue;
    const index = (b[start + 4]! | (b[start + 5]! << 8) | (b[start + 6]! << 16)) + b[start + 7]! * 0x1000000;
    if (index !== ifindex) continue;
    let ip = NaN;
    let mac = NaN;
    let off = start + NDMSG_LEN;
    while (off + NLA_HDRLEN <= end) {
      const len = b[off]! | (b[off + 1]! << 8);
      if (len < NLA_HDRLEN || off + len > end) break;
      const type = (b[off + 2]! | (b[off + 3]! << 8)) & NLA_TYPE_MASK;
      const v = off + NLA_HDRLEN;
      if (type === NDA_DST) ip = len === 8 ? b[v]! * 0x1000000 + ((b[v + 1]! << 16) | (b[v + 2]! << 8) | b[v + 3]!) : NaN;
      else if (type === NDA_LLADDR)
        mac = len === 10 ? (b[v]! * 0x100 + b[v + 1]!) * 0x100000000 + b[v + 2]! * 0x1000000 + ((b[v + 3]! << 16) | (b[v + 4]! << 8) | b[v + 5]!) : NaN;
      off += (len + 3) & ~3;
    }
    sink.neighbor(b[start]!, index, b[start + 8]! | (b[start + 9]! << 8), b[start + 10]!, ip, mac);
  }
}
