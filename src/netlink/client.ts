/**
 * NetlinkClient: the kernel data plane of one network namespace, over rtnetlink. Every method equals an `ip` or
 * `bridge` command (named in its doc comment) and fails with a NetlinkError that names that command, the errno
 * and the kernel's explanation. Several clients, each bound to its own namespace, can be open at once.
 *
 * Changes go through `batch`: single-op methods are batches of one, so there is one code path for name
 * resolution, sending and error reporting.
 */
import { closeSync, openSync } from 'node:fs';
import { decodeAddress, encodeDumpAddresses, type Address } from './addr.js';
import { planOp, type IndexOf, type NetlinkOp, type OpResult, type PlannedOp } from './batch.js';
import { NDMSG_LEN, NLA_HDRLEN, NLMSG_HDRLEN, NLM_F_ACK } from './constants.js';
import { NetlinkError, fromSystemError } from './errors.js';
import { InvalidValueError } from '../base/errors.js';
import { subscribe, type EventKind, type NetlinkEvent, type SubscribeOptions, type Subscription } from './events.js';
import {
  checkVethOptions,
  checkVxlanOptions,
  checkLinkChanges,
  decodeLink,
  decodeLinkName,
  encodeCreateBridge,
  encodeCreateVeth,
  encodeCreateVxlan,
  encodeDumpLinks,
  encodeGetLink,
  encodeSetLink,
  encodeSetVxlanLearning,
  type BridgeOptions,
  type Link,
  type LinkChanges,
  type VethOptions,
  type VxlanOptions,
} from './link.js';
import type { Message, Request } from './message.js';
import { resolveNetns } from '../netns/resolve.js';
import { decodeFdb, decodeNeighbor, encodeDumpFdb, encodeDumpNeighbors, type Fdb, type Neighbor } from './neigh.js';
import { decodeRoute, decodeRouteAnswer, encodeDumpRoutes, encodeGetRoute, type Route, type RouteFilter, type RouteLookup, type RouteQuery } from './route.js';
import { EntryPacker, type EntryEncoder } from './packed.js';
import { NetlinkSocket } from './socket.js';
import { checkIfName } from './validate.js';

const ENODEV = 19;
const EINVAL = 22;
/** Ops per chunk of batchEach: one sendto each (the socket's own chunk size). */
const BATCH_CHUNK = 1024;
/**
 * Writes per packed chunk: small enough that the kernel starts on the first chunk soon after the call, large
 * enough that the hand-off to the pool thread is paid once per few hundred writes.
 */
const PACKED_CHUNK = 256;
/** Shared by every successful op of every batch: results are read, never changed. */
const OK: OpResult = Object.freeze({ ok: true as const });

export interface ClientOptions {
  /** Network namespace: a name under /run/netns, or a path like /proc/123/ns/net. Default: this process's. */
  netns?: string;
}

export class NetlinkClient {
  private constructor(
    private readonly socket: NetlinkSocket,
    /** The namespace as given (name or path); undefined = this process's. */
    readonly netns: string | undefined,
    private readonly nsPath: string | undefined,
  ) {}

  /** Open a client bound to one network namespace (the socket stays in it whatever the process does later). */
  static async open(options: ClientOptions = {}): Promise<NetlinkClient> {
    const nsPath = resolveNetns(options.netns);
    return new NetlinkClient(NetlinkSocket.open({ nsPath }), options.netns, nsPath);
  }

  /** Close the socket. Requests still waiting fail with EBADF. */
  close(): void {
    this.socket.close();
  }

  // ---------------------------------------------------------------------------------------------------------
  // Name resolution

  /**
   * name -> index for each name (one pipelined round of `ip link show dev NAME`); missing names are absent. A
   * lookup that failed for another reason than the name (the socket closed meanwhile) throws its error.
   */
  private async indexes(names: Iterable<string>): Promise<Map<string, number>> {
    const unique = [...new Set(names)];
    const found = new Map<string, number>();
    if (unique.length === 0) return found;
    const results = await this.socket.sendAll(
      unique.map((n) => encodeGetLink(n)),
      NLM_F_ACK,
    );
    results.forEach((r, i) => {
      if (r instanceof NetlinkError) {
        if (r.errnoNumber !== ENODEV && r.errnoNumber !== EINVAL) throw r;
      } else if (r[0]) {
        found.set(unique[i]!, decodeLinkName(r[0]).index);
      }
    });
    return found;
  }

  /** The index of `name`, or a NetlinkError for `command` worded like iproute2's `Cannot find device "X"`. */
  private async indexOf(name: string, command: string): Promise<number> {
    const index = (await this.indexes([name])).get(name);
    if (index === undefined) throw missingDevice(command, name);
    return index;
  }

  /**
   * Decode dumped messages, naming the links they refer to by index: from `known` (the filter's device) when it
   * can, else by one pipelined lookup of just the missing indexes, and a second decode. Cheaper than dumping
   * every link when, as usual, all entries are on the device the list was filtered by.
   */
  private async decodeNamed<T>(
    messages: readonly Message[],
    decode: (m: Message, nameOf: (i: number) => string | undefined) => T,
    known: Map<number, string>,
  ): Promise<T[]> {
    let missing: Set<number> | undefined;
    const first = messages.map((m) =>
      decode(m, (i) => {
        const name = known.get(i);
        if (name === undefined) (missing ??= new Set()).add(i);
        return name;
      }),
    );
    if (!missing) return first;
    const found = await this.namesOf([...missing]);
    for (const [i, name] of found) known.set(i, name);
    return messages.map((m) => decode(m, (i) => known.get(i)));
  }

  /** index -> name for the given indexes (those that exist). */
  private async namesOf(indexes: number[]): Promise<Map<number, string>> {
    const results = await this.socket.sendAll(
      indexes.map((i) => encodeGetLink(i)),
      NLM_F_ACK,
    );
    const names = new Map<number, string>();
    results.forEach((r) => {
      if (!(r instanceof NetlinkError) && r[0]) {
        const { index, name } = decodeLinkName(r[0]);
        names.set(index, name);
      }
    });
    return names;
  }

  /** index -> name of every link in the namespace. */
  private async names(): Promise<Map<number, string>> {
    const map = new Map<number, string>();
    for (const m of await this.socket.dump(encodeDumpLinks())) {
      const { index, name } = decodeLinkName(m);
      map.set(index, name);
    }
    return map;
  }

  // ---------------------------------------------------------------------------------------------------------
  // Links

  /** `ip -d link show dev NAME`; undefined when there is no such link. */
  async getLink(name: string): Promise<Link | undefined> {
    checkIfName(name, 'link name');
    let messages;
    try {
      messages = await this.socket.request(encodeGetLink(name));
    } catch (err) {
      if (err instanceof NetlinkError && err.errno === 'ENODEV') return undefined;
      throw err;
    }
    if (!messages[0]) return undefined;
    // Master and vxlan underlay are given by index: named by one more lookup when there are any.
    const [link] = await this.decodeNamed([messages[0]], decodeLink, new Map());
    return link;
  }

  /** `ip -d link show` */
  async listLinks(): Promise<Link[]> {
    const messages = await this.socket.dump(encodeDumpLinks());
    const names = new Map(messages.map((m) => [decodeLinkName(m).index, decodeLinkName(m).name] as const));
    return messages.map((m) => decodeLink(m, (i) => names.get(i)));
  }

  private async created(name: string, command: string): Promise<Link> {
    const link = await this.getLink(name);
    if (!link) throw new NetlinkError(command, ENODEV, 'the new link disappeared right after it was created');
    return link;
  }

  /**
   * `ip link add NAME [address MAC] [mtu N] [up] type vxlan id VNI [local IP] [remote IP | group IP] [dev DEV]
   * [ttl N] [dstport PORT] [no]learning [gbp] [no]udpcsum`. Without `mtu` the kernel takes the underlay's minus
   * the encapsulation (1450 on a 1500 IPv4 underlay). EEXIST if a link of that name exists.
   */
  async createVxlan(o: VxlanOptions): Promise<Link> {
    checkVxlanOptions(o);
    const command = encodeCreateVxlan(o, undefined).command;
    const devIndex = o.dev !== undefined ? await this.indexOf(o.dev, command) : undefined;
    await this.socket.request(encodeCreateVxlan(o, devIndex));
    return this.created(o.name, command);
  }

  /** `ip link add NAME [address MAC] [mtu N] [up] type bridge` */
  async createBridge(o: BridgeOptions): Promise<Link> {
    const req = encodeCreateBridge(o);
    await this.socket.request(req);
    return this.created(o.name, req.command);
  }

  /**
   * `ip link add NAME [address MAC] [mtu N] type veth peer name PEER [address MAC] [netns NS]`: both ends at once,
   * the peer straight into its namespace (name under /run/netns or a path). Returns this namespace's end.
   */
  async createVeth(o: VethOptions): Promise<Link> {
    checkVethOptions(o);
    const command = encodeCreateVeth(o, undefined).command;
    const nsFd = o.peerNetns !== undefined ? openNamespace(o.peerNetns, command) : undefined;
    try {
      await this.socket.request(encodeCreateVeth(o, nsFd));
    } finally {
      if (nsFd !== undefined) closeSync(nsFd);
    }
    return this.created(o.name, command);
  }

  /** `ip link del NAME` (ENODEV if there is none). */
  async deleteLink(name: string): Promise<void> {
    await this.one({ op: 'deleteLink', args: { name } });
  }

  /**
   * `ip link set dev NAME [up|down] [mtu N] [address MAC] [master BR | nomaster] [netns NS] [name NEW]`, all in one
   * request. After a move to another namespace the link is no longer visible to this client.
   */
  async setLink(name: string, o: LinkChanges): Promise<void> {
    if (o?.netns === undefined) {
      await this.one({ op: 'setLink', args: { ...o, name } });
      return;
    }
    checkLinkChanges(name, o);
    const command = encodeSetLink(name, o, { index: 1, masterIndex: 0 }).command;
    const needed = [...(o.newName !== undefined ? [name] : []), ...(typeof o.master === 'string' ? [o.master] : [])];
    const found = await this.indexes(needed);
    for (const n of needed) if (!found.has(n)) throw missingDevice(command, n);
    const nsFd = openNamespace(o.netns, command);
    try {
      await this.socket.request(
        encodeSetLink(name, o, { index: found.get(name), masterIndex: typeof o.master === 'string' ? found.get(o.master) : undefined, nsFd }),
      );
    } finally {
      closeSync(nsFd);
    }
  }

  /** `ip link set dev NAME type vxlan [no]learning` (EOPNOTSUPP if NAME is not a vxlan device). */
  async setVxlanLearning(name: string, learning: boolean): Promise<void> {
    await this.socket.request(encodeSetVxlanLearning(name, learning));
  }

  // ---------------------------------------------------------------------------------------------------------
  // Addresses

  /** `ip addr add CIDR dev DEV` (EEXIST if already there). */
  async addAddress(dev: string, cidr: string): Promise<void> {
    await this.one({ op: 'addAddress', args: { dev, cidr } });
  }

  /** `ip addr del CIDR dev DEV` (EADDRNOTAVAIL if not there). */
  async deleteAddress(dev: string, cidr: string): Promise<void> {
    await this.one({ op: 'deleteAddress', args: { dev, cidr } });
  }

  /** `ip addr show [dev DEV]` (IPv4 and IPv6). */
  async listAddresses(dev?: string): Promise<Address[]> {
    const req = encodeDumpAddresses(undefined, dev);
    const index = dev !== undefined ? await this.indexOf(checkIfName(dev, 'address dev'), req.command) : undefined;
    const messages = await this.socket.dump(encodeDumpAddresses(index, dev));
    const addresses = await this.decodeNamed(messages, decodeAddress, knownName(index, dev));
    return addresses.filter((a) => index === undefined || a.dev === dev);
  }

  // ---------------------------------------------------------------------------------------------------------
  // Routes

  /**
   * `ip route replace DST [via GW] [dev DEV] [onlink] [scope S] [table T] [proto P] [src A] [metric M]`. The route
   * carries `protocol`, by default TULLE_ROUTE_PROTOCOL (84), which marks it as tulle's.
   */
  async replaceRoute(r: Route): Promise<void> {
    await this.one({ op: 'replaceRoute', args: r });
  }

  /** `ip route add DST ...`: EEXIST instead of overwriting an existing route to DST (someone else's, perhaps). */
  async addRoute(r: Route): Promise<void> {
    await this.one({ op: 'addRoute', args: r });
  }

  /** `ip route del DST [via GW] [dev DEV] [table T] ...` (ESRCH if there is no such route). */
  async deleteRoute(r: Route): Promise<void> {
    await this.one({ op: 'deleteRoute', args: r });
  }

  /**
   * `ip route show [table T] [proto P] [dev DEV]` (table main unless `table` says otherwise; 0 = all tables;
   * IPv4 unless `family: 6`). Results have the shape `normalizeRoute` gives a requested route.
   */
  async listRoutes(filter: RouteFilter = {}): Promise<Route[]> {
    const probe = encodeDumpRoutes(filter, undefined);
    const oif = filter.dev !== undefined ? await this.indexOf(checkIfName(filter.dev, 'route filter dev'), probe.command) : undefined;
    const messages = await this.socket.dump(encodeDumpRoutes(filter, oif));
    const routes: Route[] = [];
    for (const r of await this.decodeNamed(messages, decodeRoute, knownName(oif, filter.dev))) {
      // The kernel filters with strict checking; filter again for kernels that ignore some of the filter.
      if (!r) continue;
      if (filter.dev !== undefined && r.dev !== filter.dev) continue;
      if (filter.protocol !== undefined && r.protocol !== filter.protocol) continue;
      if (filter.table !== 0 && r.table !== (filter.table ?? 254)) continue;
      routes.push(r);
    }
    return routes;
  }

  /**
   * `ip route get DST [from SRC] [iif DEV] [oif DEV] [mark M]` and `ip route get fibmatch ...` at once: the path
   * the kernel itself picks for a packet with these addresses, and the FIB entry that decided it. Fails like
   * `ip` does: ENETUNREACH when no route matches, EHOSTUNREACH/EACCES for unreachable/prohibit routes, EINVAL
   * for a forwarded packet (iif) the host would not forward.
   */
  async getRoute(q: RouteQuery): Promise<RouteLookup> {
    const probe = encodeGetRoute(q, {}, false);
    const devices = [q.iif, q.oif].filter((d): d is string => d !== undefined);
    const found = await this.indexes(devices);
    for (const d of devices) if (!found.has(d)) throw missingDevice(probe.command, d);
    const indexes = { iif: q.iif !== undefined ? found.get(q.iif) : undefined, oif: q.oif !== undefined ? found.get(q.oif) : undefined };
    const answers = await this.socket.sendAll([encodeGetRoute(q, indexes, false), encodeGetRoute(q, indexes, true)], NLM_F_ACK);
    const known = new Map<number, string>();
    for (const d of devices) known.set(found.get(d)!, d);
    const [result, entry] = await Promise.all(
      answers.map(async (a) => {
        if (a instanceof NetlinkError) throw a;
        if (!a[0]) throw new NetlinkError(probe.command, 61, 'the kernel sent no route');
        return (await this.decodeNamed([a[0]], decodeRouteAnswer, known))[0]!;
      }),
    );
    return { result: result!, entry: entry! };
  }

  // ---------------------------------------------------------------------------------------------------------
  // Neighbours

  /** `ip neigh replace IP lladdr MAC dev DEV nud permanent` (or the `state` given). */
  async replaceNeighbor(n: Neighbor): Promise<void> {
    await this.one({ op: 'replaceNeighbor', args: n });
  }

  /** `ip neigh del IP dev DEV` (ENOENT if there is no such entry). */
  async deleteNeighbor(n: { dev: string; ip: string }): Promise<void> {
    await this.one({ op: 'deleteNeighbor', args: n });
  }

  /**
   * `ip neigh show [dev DEV]` (IPv4 and IPv6). Like `ip`, entries in state noarp or none (the kernel's own
   * multicast entries) are left out unless `all` (`ip neigh show nud all`).
   */
  async listNeighbors(filter: { dev?: string; all?: boolean } = {}): Promise<Neighbor[]> {
    const probe = encodeDumpNeighbors(undefined, filter.dev);
    const index = filter.dev !== undefined ? await this.indexOf(checkIfName(filter.dev, 'neighbor filter dev'), probe.command) : undefined;
    const messages = await this.socket.dump(encodeDumpNeighbors(index, filter.dev));
    const out: Neighbor[] = [];
    for (const n of await this.decodeNamed(messages, decodeNeighbor, knownName(index, filter.dev))) {
      if (!n || (filter.dev !== undefined && n.dev !== filter.dev)) continue;
      if (!filter.all && (n.state === 'noarp' || n.state === 'none')) continue;
      out.push(n);
    }
    return out;
  }

  // ---------------------------------------------------------------------------------------------------------
  // FDB

  /** `bridge fdb replace MAC dev DEV [dst IP] [vni N] [port P] [via DEV] self permanent` */
  async replaceFdb(f: Fdb): Promise<void> {
    await this.one({ op: 'replaceFdb', args: f });
  }

  /**
   * `bridge fdb append MAC dev DEV dst IP ... self permanent`: adds another remote to a MAC (the all-zero MAC
   * with several `dst`s floods to every one of them). Appending a remote that is already there changes nothing.
   */
  async appendFdb(f: Fdb): Promise<void> {
    await this.one({ op: 'appendFdb', args: f });
  }

  /**
   * `bridge fdb del MAC dev DEV [dst IP] [vni N] [port P] [via DEV] self`: without `dst` the MAC with all its
   * remotes, with it only the remote matching dst, port, VNI and via together. ENOENT when the MAC is not there;
   * a remote that matches none succeeds without change (the kernel's rule, `bridge` behaves the same).
   */
  async deleteFdb(f: Fdb): Promise<void> {
    await this.one({ op: 'deleteFdb', args: f });
  }

  /** `bridge fdb show [dev DEV]`: one entry per remote. Results have the shape `normalizeFdb` gives. */
  async listFdb(filter: { dev?: string } = {}): Promise<Fdb[]> {
    const probe = encodeDumpFdb(undefined, filter.dev);
    const index = filter.dev !== undefined ? await this.indexOf(checkIfName(filter.dev, 'fdb filter dev'), probe.command) : undefined;
    const messages = await this.socket.dump(encodeDumpFdb(index, filter.dev));
    const entries = await this.decodeNamed(messages, decodeFdb, knownName(index, filter.dev));
    return entries.filter((f) => filter.dev === undefined || f.dev === filter.dev);
  }

  // ---------------------------------------------------------------------------------------------------------
  // Compact dumps: records of numbers made by a pool thread (socket.dumpRecords), for readers of thousands of entries

  /**
   * `ip route show table T` (0 = every table) as records of numbers (socket.dumpRecords; scan.ts reads them):
   * the routes of `protocol`, and the destinations of every other IPv4 route but the default, [dst, length] each.
   * Cached clones are left out, as `ip route show` does.
   */
  async routeRecords(table: number, protocol: number): Promise<{ records: Float64Array; others: Float64Array }> {
    // The kernel filters by table with strict checking; the records are filtered again for kernels that ignore it.
    const { records, others } = await this.socket.dumpRecords(encodeDumpRoutes({ table }, undefined), 'route', table, { splitProtocol: protocol });
    return { records, others };
  }

  /**
   * `ip neigh show dev DEV` in every state (IPv4 and IPv6) as records of numbers, with the device's index; fails
   * like `ip` when there is no such device. The pool thread that dumps looks the device up, so the dump starts
   * at once, with no lookup on the event loop first.
   */
  neighborRecords(dev: string): Promise<{ index: number; records: Float64Array }> {
    // The device's index goes into the request's first attribute (NDA_IFINDEX), after the headers.
    return this.deviceRecords(encodeDumpNeighbors(PLACEHOLDER_INDEX, dev), dev, 'neighbor filter dev', NLMSG_HDRLEN + NDMSG_LEN + NLA_HDRLEN);
  }

  /** `bridge fdb show dev DEV` as records of numbers, with the device's index (looked up as neighborRecords does). */
  fdbRecords(dev: string): Promise<{ index: number; records: Float64Array }> {
    // The device's index goes into the request's struct ndmsg (ndm_ifindex).
    return this.deviceRecords(encodeDumpFdb(PLACEHOLDER_INDEX, dev), dev, 'fdb filter dev', NLMSG_HDRLEN + 4);
  }

  private async deviceRecords(req: Request, dev: string, field: string, indexAt: number): Promise<{ index: number; records: Float64Array }> {
    checkIfName(dev, field);
    try {
      const { records, filter } = await this.socket.dumpRecords(req, 'neighbor', 0, { device: { name: dev, indexAt } });
      return { index: filter, records };
    } catch (err) {
      if (err instanceof NetlinkError && err.errnoNumber === ENODEV) throw missingDevice(req.command, dev);
      throw err;
    }
  }

  /** name -> index of the given devices (those that exist): `ip link show dev NAME` for just these. */
  linkIndexes(names: Iterable<string>): Promise<Map<string, number>> {
    return this.indexes(names);
  }

  /** index -> name of the given device indexes (those that exist): `ip link show` for just these. */
  linkNames(indexes: Iterable<number>): Promise<Map<number, string>> {
    return this.namesOf([...new Set(indexes)]);
  }

  // ---------------------------------------------------------------------------------------------------------
  // Batch and events

  /**
   * Apply many operations pipelined: every op is checked first (bad input throws InvalidValueError and nothing
   * is sent), device names are resolved in one round, then all requests go out in a few large writes and all
   * ACKs come back together. One result per op, in order; a failed op never stops the others, and the batch
   * itself does not throw for one. Ops are independent: a device created by an earlier op cannot be named by a
   * later one in the same batch.
   */
  async batch(ops: readonly NetlinkOp[]): Promise<OpResult[]> {
    const given: unknown = ops; // callers from plain JS may pass anything
    if (!Array.isArray(given)) throw new TypeError('batch: ops must be an array');
    const planned = ops.map((op) => planOp(op));
    const devices = new Set<string>();
    for (const p of planned) for (const d of p.devices) devices.add(d);
    const found = await this.indexes(devices);
    const indexOf: IndexOf = (name) => found.get(name) ?? 0;
    const results = new Array<OpResult>(ops.length);
    const positions: number[] = [];
    for (let i = 0; i < planned.length; i++) {
      const p = planned[i]!;
      let missing: string | undefined;
      for (const d of p.devices) if (!found.has(d)) missing ??= d;
      if (missing !== undefined) results[i] = { ok: false, error: missingDevice(p.build(indexOf).command, missing) };
      else positions.push(i);
    }
    // Built as they go out: the kernel takes the first chunk while the next is built.
    const answers = await this.socket.sendEach(positions.length, (k) => planned[positions[k]!]!.build(indexOf), NLM_F_ACK);
    for (let k = 0; k < answers.length; k++) {
      const a = answers[k]!;
      results[positions[k]!] = a instanceof NetlinkError ? { ok: false, error: a } : OK;
    }
    return results;
  }

  /**
   * `batch` for thousands of ops: each op is checked as its chunk is built, and each chunk goes to the kernel as
   * soon as it is built (sent from a pool thread, see socket.ts), so the kernel works through one chunk while the
   * next is checked and built. An op with bad input fails alone — its result is an EINVAL NetlinkError with the
   * InvalidValueError's words — instead of the whole call throwing before anything is sent.
   */
  async batchEach(ops: readonly NetlinkOp[]): Promise<OpResult[]> {
    const given: unknown = ops; // callers from plain JS may pass anything
    if (!Array.isArray(given)) throw new TypeError('batchEach: ops must be an array');
    const found = await this.indexes(deviceNames(ops));
    const indexOf: IndexOf = (name) => found.get(name) ?? 0;
    const results = new Array<OpResult>(ops.length);
    const chunks: Array<Promise<void>> = [];
    for (let start = 0; start < ops.length; start += BATCH_CHUNK) {
      const requests: Request[] = [];
      const positions: number[] = [];
      for (let i = start; i < Math.min(ops.length, start + BATCH_CHUNK); i++) {
        const op = ops[i]!;
        let p: PlannedOp;
        try {
          p = planOp(op);
        } catch (err) {
          if (!(err instanceof InvalidValueError)) throw err;
          results[i] = { ok: false, error: new NetlinkError(`batch ${String(op?.op)}`, EINVAL, err.message) };
          continue;
        }
        let missing: string | undefined;
        for (const d of p.devices) if (!found.has(d)) missing ??= d;
        if (missing !== undefined) {
          results[i] = { ok: false, error: missingDevice(p.build(indexOf).command, missing) };
          continue;
        }
        requests.push(p.build(indexOf));
        positions.push(i);
      }
      chunks.push(
        this.socket.sendAll(requests, NLM_F_ACK).then((answers) => {
          answers.forEach((a, k) => (results[positions[k]!] = a instanceof NetlinkError ? { ok: false, error: a } : OK));
        }),
      );
    }
    await Promise.all(chunks);
    return results;
  }

  /**
   * Thousands of the overlay's writes given as numbers (packed.ts): `encode(k, to)` makes write k with one call
   * of `to` — a device by its index, addresses and MACs as numbers. They go out in chunks, each sent (from a pool
   * thread) as soon as it is packed, and the kernel answers only the writes it refuses (socket.sendPacked), so a
   * write costs a few dozen bytes put in place rather than an op object, parsed text and an ACK. One result per
   * write, in order: undefined when the kernel took it, else its NetlinkError worded by `describe(k)`; a write
   * whose numbers are out of range fails alone with EINVAL, and a device index of 0 (unknown) with ENODEV.
   */
  async writeEntries(count: number, encode: (k: number, to: EntryEncoder) => void, describe: (k: number) => string): Promise<Array<NetlinkError | undefined>> {
    const results = new Array<NetlinkError | undefined>(count);
    const sends: Array<Promise<void>> = [];
    let k = 0;
    while (k < count) {
      const packer = new EntryPacker(PACKED_CHUNK);
      const writes: number[] = []; // which write each packed message is
      for (; k < count && packer.count < PACKED_CHUNK; k++) {
        const before = packer.count;
        try {
          encode(k, packer);
        } catch (err) {
          if (!(err instanceof InvalidValueError)) throw err;
          const unknownDevice = err.value === 0 && err.field.endsWith('dev index');
          results[k] = new NetlinkError(describe(k), unknownDevice ? ENODEV : EINVAL, unknownDevice ? 'no such device' : err.message);
          continue;
        }
        if (packer.count !== before + 1) throw new TypeError(`writeEntries: write ${k} must be encoded as exactly one message`);
        writes.push(k);
      }
      sends.push(
        this.socket
          .sendPacked(packer.data, packer.offsets, (j) => describe(writes[j]!))
          .then((errors) => {
            for (let j = 0; j < errors.length; j++) results[writes[j]!] = errors[j];
          }),
      );
    }
    await Promise.all(sends);
    return results;
  }

  private async one(op: NetlinkOp): Promise<void> {
    const [result] = await this.batch([op]);
    if (result && !result.ok) throw result.error;
  }

  /** The port id of this client's socket: announcements of its writes carry it (SubscribeOptions.ignoreAnnouncementsOf). */
  portId(): number {
    return this.socket.portId();
  }

  /**
   * Watch changes, like `ip monitor link address route neigh`. 'neighbor' also brings FDB changes (kind 'fdb').
   * An event of kind 'overflow' means the kernel dropped events: list again to resync. The subscription keeps
   * the process alive until closed.
   */
  async subscribe(kinds: ReadonlyArray<EventKind>, onEvent: (e: NetlinkEvent) => void, options?: SubscribeOptions): Promise<Subscription> {
    return subscribe(this.nsPath, kinds, onEvent, () => this.names(), options);
  }
}

/** The one index -> name pair a filtered list already knows. */
/** Every device name the ops may name (unchecked: an op whose name is bad fails its own check later). */
function deviceNames(ops: readonly NetlinkOp[]): Set<string> {
  const names = new Set<string>();
  for (const op of ops) {
    const a = op?.args as Record<string, unknown> | undefined;
    if (!a || typeof a !== 'object') continue;
    for (const field of ['dev', 'via', 'name', 'master'] as const) {
      const v = a[field];
      if (typeof v === 'string' && !names.has(v) && (field !== 'via' || op.op.endsWith('Fdb')) && isIfName(v)) names.add(v);
    }
  }
  return names;
}

function isIfName(name: string): boolean {
  try {
    checkIfName(name, 'name');
    return true;
  } catch {
    return false;
  }
}

function knownName(index: number | undefined, name: string | undefined): Map<number, string> {
  return index !== undefined && name !== undefined ? new Map([[index, name]]) : new Map<number, string>();
}

/** The device index a dump request is encoded with before the pool thread writes the real one in. */
const PLACEHOLDER_INDEX = 0xffffffff;

function missingDevice(command: string, name: string): NetlinkError {
  return new NetlinkError(command, ENODEV, `Cannot find device "${name}"`);
}

/** An fd of a namespace file, for IFLA_NET_NS_FD; the caller closes it once the kernel has answered. */
function openNamespace(netns: string, command: string): number {
  try {
    return openSync(resolveNetns(netns)!, 'r');
  } catch (err) {
    const e = fromSystemError(command, err);
    throw e instanceof NetlinkError ? e : err;
  }
}
