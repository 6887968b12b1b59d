/**
 * Watching, from outside the agents, when a host's kernel holds a peer's three entries (route, neighbour, FDB
 * entry on flannel.1). One netlink event socket per host namespace (what `ip monitor route neigh` and
 * `bridge monitor fdb` read), opened by the benchmark process itself: an entry counts from the moment the kernel
 * announced it, so nothing is polled and no process start-up sits inside the measurement.
 */
import { performance } from 'node:perf_hooks';
import { formatIPv4, parseCidr4 } from '../src/base/ip.js';
import { NetlinkClient, type NetlinkEvent, type Subscription } from '../src/netlink/index.js';

export const VTEP = 'flannel.1';

export interface PeerEntries {
  /** The peer's subnet, like 10.244.7.0/24. */
  subnet: string;
  /** The peer's VTEP MAC. */
  mac: string;
  /** The peer's underlay address (the FDB entry's dst). */
  publicIP: string;
}

/** The three announcements that together program a peer (each as the observer names it). */
export function entryKeys(p: PeerEntries): string[] {
  const vtepIP = formatIPv4(parseCidr4(p.subnet, 'subnet').network);
  const mac = p.mac.toLowerCase();
  return [`route ${p.subnet}`, `neigh ${vtepIP} ${mac}`, `fdb ${mac} ${p.publicIP}`];
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
  subscription: Subscription;
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
          const host: Host = { client, subscription: { close: () => {} }, first: new Map(), overflowed: false };
          hosts.set(ns, host);
          // A big receive buffer: at 5000 peers the agent announces 15000 entries in about a second.
          host.subscription = await client.subscribe(['route', 'neighbor'], (e) => observer.onEvent(host, e), { receiveBufferBytes: 32 * 2 ** 20 });
        }),
      );
    } catch (err) {
      observer.close();
      throw err;
    }
    return observer;
  }

  private onEvent(host: Host, e: NetlinkEvent): void {
    const now = performance.now();
    let key: string | undefined;
    if (e.kind === 'overflow') {
      host.overflowed = true;
      return;
    }
    if (e.kind === 'route' && e.action === 'new' && e.route.dev === VTEP) key = `route ${e.route.dst}`;
    else if (e.kind === 'neighbor' && e.action === 'new' && e.neighbor.dev === VTEP && e.neighbor.mac)
      key = `neigh ${e.neighbor.ip} ${e.neighbor.mac.toLowerCase()}`;
    else if (e.kind === 'fdb' && e.action === 'new' && e.fdb.dev === VTEP && e.fdb.dst) key = `fdb ${e.fdb.mac.toLowerCase()} ${e.fdb.dst}`;
    if (key === undefined || host.first.has(key)) return;
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
              `${ns}: ${x.wanted.size - x.seen.size} of ${x.wanted.size} expected entries not announced after ${timeoutMs} ms (e.g. ${[...x.wanted].find((k) => !x.seen.has(k))})`,
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
      h.subscription.close();
      h.client.close();
    }
  }

  private host(ns: string): Host {
    const h = this.hosts.get(ns);
    if (!h) throw new Error(`not observing namespace ${ns}`);
    return h;
  }
}
