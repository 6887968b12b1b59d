/**
 * Subscriptions to kernel change notifications, like `ip monitor link address route neigh`: a socket of its own
 * that joins rtnetlink's multicast groups, so a burst of events can never crowd out the ACKs of requests.
 * Link events are always received, even when not asked for, to keep the index -> name map that events of the
 * other kinds are decoded with.
 */
import { decodeAddress, type Address } from './addr.js';
import {
  AF_BRIDGE,
  NLMSG_HDRLEN,
  RTM_DELADDR,
  RTM_DELLINK,
  RTM_DELNEIGH,
  RTM_DELROUTE,
  RTM_NEWADDR,
  RTM_NEWLINK,
  RTM_NEWNEIGH,
  RTM_NEWROUTE,
  RTNLGRP_IPV4_IFADDR,
  RTNLGRP_IPV4_ROUTE,
  RTNLGRP_IPV6_IFADDR,
  RTNLGRP_IPV6_ROUTE,
  RTNLGRP_LINK,
  RTNLGRP_NEIGH,
} from './constants.js';
import type { NetlinkError } from './errors.js';
import { decodeLink, type Link } from './link.js';
import type { Message } from './message.js';
import { decodeFdb, decodeNeighbor, type Fdb, type Neighbor } from './neigh.js';
import { decodeRoute, type Route } from './route.js';
import { neighborRecord, readNeighbor, readRoute, routeRecord, type NeighborRecord, type RouteRecord } from './scan.js';
import { NetlinkSocket } from './socket.js';

export type EventKind = 'link' | 'address' | 'route' | 'neighbor' | 'fdb';
export type EventAction = 'new' | 'del';

export type NetlinkEvent =
  | { kind: 'link'; action: EventAction; link: Link }
  | { kind: 'address'; action: EventAction; address: Address }
  | { kind: 'route'; action: EventAction; route: Route }
  | { kind: 'neighbor'; action: EventAction; neighbor: Neighbor }
  | { kind: 'fdb'; action: EventAction; fdb: Fdb }
  /** The kernel dropped events (ENOBUFS: they came faster than they were read). List again to resync. */
  | { kind: 'overflow'; error: NetlinkError };

export interface Subscription {
  close(): void;
}

export interface SubscribeOptions {
  /**
   * Socket receive buffer in bytes (default 8 MiB, doubled by the kernel): how many events may queue while the
   * process is busy before the kernel drops them and an 'overflow' event says so.
   */
  receiveBufferBytes?: number;
  /**
   * Deliver address, route, neighbour and FDB events only for deletions (link events always come). The
   * messages of everything else are dropped before they are decoded: a process programming thousands of
   * entries then does not pay for decoding the announcements of its own writes.
   */
  deletionsOnly?: boolean;
  /**
   * Route, neighbour and FDB announcements handed over as numbers (scan.ts records, reused for every message)
   * instead of as NetlinkEvents: nothing is decoded into objects or strings. For a process that watches thousands
   * of its own writes go by; link and address events still come as events.
   */
  records?: RecordHandlers;
  /**
   * The port id of a socket whose writes need not be announced here (NetlinkClient.portId() of the client that
   * writes): the kernel drops the route and neighbour announcements of that socket's requests before queueing
   * them (a socket filter), so a process programming thousands of entries is not woken once per entry to hear
   * its own writes. FDB announcements of a VXLAN device carry no port id and still come. The port id must stay
   * that socket's while the subscription lives: another socket given the same id later would go unheard.
   */
  ignoreAnnouncementsOf?: number;
}

/** Receivers of announcements as records (SubscribeOptions.records); `deleted` for RTM_DEL*. */
export interface RecordHandlers {
  route(deleted: boolean, r: RouteRecord): void;
  /** A neighbour, or an FDB entry (family AF_BRIDGE). */
  neighbor(deleted: boolean, n: NeighborRecord): void;
}

const GROUPS: Record<EventKind, number[]> = {
  link: [RTNLGRP_LINK],
  address: [RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR],
  route: [RTNLGRP_IPV4_ROUTE, RTNLGRP_IPV6_ROUTE],
  neighbor: [RTNLGRP_NEIGH],
  fdb: [RTNLGRP_NEIGH],
};

/**
 * Open the event socket in `nsPath` and deliver events of `kinds` ('neighbor' includes FDB changes, which the
 * kernel announces in the same group). `loadNames` is called after the socket is open, so no link is missed
 * between the name snapshot and the first event.
 */
export async function subscribe(
  nsPath: string | undefined,
  kinds: readonly EventKind[],
  onEvent: (e: NetlinkEvent) => void,
  loadNames: () => Promise<Map<number, string>>,
  options: SubscribeOptions = {},
): Promise<Subscription> {
  const wanted = new Set<EventKind>(kinds);
  if (wanted.has('neighbor')) wanted.add('fdb');
  const groups = [...new Set([RTNLGRP_LINK, ...[...wanted].flatMap((k) => GROUPS[k])])];
  let names = new Map<number, string>();
  const nameOf = (index: number): string | undefined => names.get(index);
  let ready = false;

  const handle = (m: Message): void => {
    const action: EventAction = m.type === RTM_NEWLINK || m.type === RTM_NEWADDR || m.type === RTM_NEWROUTE || m.type === RTM_NEWNEIGH ? 'new' : 'del';
    if (options.deletionsOnly && action === 'new' && m.type !== RTM_NEWLINK) return;
    switch (m.type) {
      case RTM_NEWLINK:
      case RTM_DELLINK: {
        const link = decodeLink(m, nameOf);
        // Keep the name after deletion: events about the link's routes and neighbours may still follow.
        if (link.name) names.set(link.index, link.name);
        if (wanted.has('link')) onEvent({ kind: 'link', action, link });
        return;
      }
      case RTM_NEWADDR:
      case RTM_DELADDR:
        if (wanted.has('address')) onEvent({ kind: 'address', action, address: decodeAddress(m, nameOf) });
        return;
      case RTM_NEWROUTE:
      case RTM_DELROUTE: {
        const route = wanted.has('route') ? decodeRoute(m, nameOf) : undefined;
        if (route) onEvent({ kind: 'route', action, route });
        return;
      }
      case RTM_NEWNEIGH:
      case RTM_DELNEIGH:
        if (m.payload[0] === AF_BRIDGE) {
          if (wanted.has('fdb')) onEvent({ kind: 'fdb', action, fdb: decodeFdb(m, nameOf) });
        } else if (wanted.has('neighbor')) {
          const neighbor = decodeNeighbor(m, nameOf);
          if (neighbor) onEvent({ kind: 'neighbor', action, neighbor });
        }
        return;
    }
  };

  const records = options.records;
  const route = routeRecord();
  const neighbor = neighborRecord();
  /** One buffer of one or more datagrams: each message to `records` or, decoded, to `handle`. */
  const handleData = (data: Buffer): void => {
    let off = 0;
    while (off + NLMSG_HDRLEN <= data.length) {
      const len = (data[off]! | (data[off + 1]! << 8) | (data[off + 2]! << 16)) + data[off + 3]! * 0x1000000;
      if (len < NLMSG_HDRLEN || off + len > data.length) break;
      const at = off;
      const type = data[at + 4]! | (data[at + 5]! << 8);
      const start = at + NLMSG_HDRLEN;
      const end = at + len;
      off += (len + 3) & ~3;
      if (records && (type === RTM_NEWROUTE || type === RTM_DELROUTE)) {
        if (wanted.has('route') && !(options.deletionsOnly && type === RTM_NEWROUTE) && readRoute(data, start, end, route))
          records.route(type === RTM_DELROUTE, route);
      } else if (records && (type === RTM_NEWNEIGH || type === RTM_DELNEIGH)) {
        if (!(options.deletionsOnly && type === RTM_NEWNEIGH) && readNeighbor(data, start, end, neighbor)) {
          if (neighbor.family === AF_BRIDGE ? wanted.has('fdb') : wanted.has('neighbor')) records.neighbor(type === RTM_DELNEIGH, neighbor);
        }
      } else {
        const flags = data[at + 6]! | (data[at + 7]! << 8);
        handle({ type, flags, seq: data.readUInt32LE(at + 8), pid: data.readUInt32LE(at + 12), payload: data.subarray(start, end) });
      }
    }
  };
  const queued: Buffer[] = [];
  const socket = NetlinkSocket.open({
    nsPath,
    groups,
    receiveBufferBytes: options.receiveBufferBytes,
    onDatagrams: (error, data) => {
      if (error) onEvent({ kind: 'overflow', error });
      else if (!ready) queued.push(data);
      else handleData(data);
    },
  });
  try {
    if (options.ignoreAnnouncementsOf !== undefined) socket.ignoreAnnouncementsOf(options.ignoreAnnouncementsOf);
    names = await loadNames();
  } catch (err) {
    socket.close();
    throw err;
  }
  ready = true;
  for (const data of queued.splice(0)) handleData(data);
  return { close: () => socket.close() };
}
