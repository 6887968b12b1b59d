/**
 * Watching, from outside the agents, when a host's kernel holds a peer's three entries (route, neighbour, FDB
 * entry on flannel.1). One netlink event socket per host namespace (what `ip monitor route neigh` and
 * `bridge monitor fdb` read), opened by the benchmark process itself: an entry counts from the moment the kernel
 * announced it, so nothing is polled and no process start-up sits inside the measurement. Announcements are read
 * as numbers (the subscription's records), not decoded into objects: this process shares the machine's cores
 * with what it measures, so it should cost as little as it can.
 */
import { performance } from 'node:perf_hooks';
import { formatIPv4, formatMacNumber, ipv4Number, macNumber, parseCidr4 } from '../src/base/ip.js';
import { NetlinkClient, type NetlinkEvent, type Subscription } from '../src/netlink/index.js';

const AF_BRIDGE = 7;

export const VTEP = 'flannel.1';

export interface PeerEntries {
  /** The peer's subnet, like 10.244.7.0/24. */
  subnet: string;
  /** The peer's VTEP MAC. */
  mac: string;
  /** The peer's underlay address (the FDB entry's dst). */
  publicIP: string;
}

/** The three announcements that together program a peer (each as the observer names it: kind letter and numbers). */
export function entryKeys(p: PeerEntries): string[] {
  const subnet = parseCidr4(p.subnet, 'subnet');
  const mac = macNumber(p.mac);
  return [routeKeyText(subnet.network, subnet.prefix), neighborKeyText(subnet.network, mac), fdbKeyText(mac, ipv4Number(p.publicIP))];
}

const routeKeyText = (network: number, prefix: number): string => `r${network}/${prefix}`;
const neighborKeyText = (ip: number, mac: number): string => `n${ip}/${mac}`;
const fdbKeyText = (mac: number, dst: number): string => `f${mac}/${dst}`;

/** A key in words, for errors: "route 10.244.7.0/24", "neigh 10.244.7.0 02:..", "fdb 02:.. 192.0.2.7". */
function describeKey(key: string): string {
  const [a, b] = key.slice(1).split('/').map(Number) as [number, number];
  if (key[0] === 'r') return `route ${formatIPv4(a)}/${b}`;
  if (key[0] === 'n') return `neigh ${formatIPv4(a)} ${formatMacNumber(b)}`;
  return `fdb ${formatMacNumber(a)} ${formatIPv4(b)}`;
}

interface Expectation {
  wanted: Set<string>;
  seen: Set<string>;
  /** performance.now() of the last wanted announcement, once all arrived. */
  doneAt?: number;
  done: () => void;
}

interface Host {
  client: NetlinkClient;
  subscription: Subscription | undefined;
  /** The index of the host's flannel.1 now (it changes when the VTEP is made again); 0 while there is none. */
  vtep: number;
  /** First announcement of each key since the last reset, in performance.now() ms. */
  first: Map<string, number>;
  expectation?: Expectation;
  overflowed: boolean;
}

export class PeerObserver {
  private constructor(private readonly hosts: Map<string, Host>) {}

  /** Subscribe in every namespace; resolves once all sockets listen. */
  static async open(namespaces: readonly string[]): Promise<PeerObserver> {
    const hosts = new Map<string, Host>();
    const observer = new PeerObserver(hosts);
    try {
      await Promise.all(
        namespaces.map(async (ns) => {
          const client = await NetlinkClient.open({ netns: ns });
          const host: Host = { client, subscription: undefined, vtep: 0, first: new Map(), overflowed: false };
          hosts.set(ns, host);
          // A big receive buffer: at 5000 peers the agent announces 15000 entries in about a second.
          host.subscription = await client.subscribe(['link', 'route', 'neighbor'], (e) => observer.onEvent(host, e), {
            receiveBufferBytes: 32 * 2 ** 20,
            records: {
              route: (deleted, r) => {
                if (!deleted && r.family === 4 && r.oif === host.vtep && host.vtep !== 0) observer.announced(host, routeKeyText(r.dst, r.dstLen));
              },
              neighbor: (deleted, n) => {
                if (deleted || n.ifindex !== host.vtep || host.vtep === 0 || n.ip !== n.ip || n.mac !== n.mac) return;
                observer.announced(host, n.family === AF_BRIDGE ? fdbKeyText(n.mac, n.ip) : neighborKeyText(n.ip, n.mac));
              },
            },
          });
          // After subscribing, so that a VTEP made meanwhile is seen either here or as a link event.
          host.vtep ||= (await client.linkIndexes([VTEP])).get(VTEP) ?? 0;
        }),
      );
    } catch (err) {
      observer.close();
      throw err;
    }
    return observer;
  }

  private onEvent(host: Host, e: NetlinkEvent): void {
    if (e.kind === 'overflow') host.overflowed = true;
    else if (e.kind === 'link' && e.link.name === VTEP) host.vtep = e.action === 'new' ? e.link.index : 0;
  }

  private announced(host: Host, key: string): void {
    if (host.first.has(key)) return;
    const now = performance.now();
    host.first.set(key, now);
    const x = host.expectation;
    if (x && x.wanted.has(key) && !x.seen.has(key)) {
      x.seen.add(key);
      if (x.seen.size === x.wanted.size) {
        x.doneAt = now;
        x.done();
      }
    }
  }

  /** Forget every announcement and expectation (before the next measurement). */
  reset(): void {
    for (const h of this.hosts.values()) {
      h.first.clear();
      h.expectation = undefined;
      h.overflowed = false;
    }
  }

  /** Whether the kernel dropped events for `ns` since the last reset (the times are then not trustworthy). */
  overflowed(ns: string): boolean {
    return this.host(ns).overflowed;
  }

  /**
   * Resolve with the performance.now() time at which `ns` had announced every key (counting announcements made
   * before this call too), or reject after `timeoutMs` naming how many are missing.
   */
  async complete(ns: string, keys: readonly string[], timeoutMs: number): Promise<number> {
    const host = this.host(ns);
    let done!: () => void;
    const finished = new Promise<void>((resolve) => (done = resolve));
    const x: Expectation = { wanted: new Set(keys), seen: new Set(), done };
    let last = -Infinity;
    for (const k of x.wanted) {
      const t = host.first.get(k);
      if (t !== undefined) {
        x.seen.add(k);
        last = Math.max(last, t);
      }
    }
    if (x.seen.size === x.wanted.size) return last;
    host.expectation = x;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new Error(
              `${ns}: ${x.wanted.size - x.seen.size} of ${x.wanted.size} expected entries not announced after ${timeoutMs} ms (e.g. ${describeKey([...x.wanted].find((k) => !x.seen.has(k))!)})`,
            ),
          ),
        timeoutMs,
      );
    });
    try {
      await Promise.race([finished, timeout]);
    } finally {
      clearTimeout(timer);
      host.expectation = undefined;
    }
    let latest = x.doneAt!;
    for (const k of x.wanted) latest = Math.max(latest, host.first.get(k) ?? -Infinity);
    return latest;
  }

  close(): void {
    for (const h of this.hosts.values()) {
      h.subscription?.close();
      h.client.close();
    }
  }

  private host(ns: string): Host {
    const h = this.hosts.get(ns);
    if (!h) throw new Error(`not observing namespace ${ns}`);
    return h;
  }
}
