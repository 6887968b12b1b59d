/**
 * Address allocation in the reference host-local plugin's on-disk format, so that tulle-cni and host-local can
 * share one directory (`<dataDir>/<network name>/`) and never hand out the same address:
 *
 *   lock                one flock(2) LOCK_EX around every read-modify-write (host-local's go-filemutex)
 *   10.244.1.2          one file per address in use, created O_EXCL, holding "<containerID>\r\n<ifname>"
 *   last_reserved_ip.0  the last address handed out in range set 0; the next search starts after it
 *
 * The range is the host's subnet from subnet.env without its network, gateway and broadcast addresses, searched
 * round robin exactly as host-local does (start after the last reserved address, wrap once, skip the gateway).
 */
import { closeSync, constants, mkdirSync, openSync, readFileSync, readdirSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { isIPv4 } from 'node:net';
import { join } from 'node:path';
import { cidrContains, cidrSize, formatCidr4, formatIPv4, parseCidr4, parseIPv4, type Cidr4 } from '../base/ip.js';
import { flock, tryFlock } from '../sys/flock.js';
import { CNI_CODES, CniError } from './errors.js';

/** host-local's separator between container ID and interface name inside an address file. */
const LINE_BREAK = '\r\n';
/** Range set 0: tulle has one range, as a host-local config with one `ranges` entry would. */
const LAST_RESERVED_FILE = 'last_reserved_ip.0';

export interface AddressRange {
  subnet: Cidr4;
  /** First and last usable addresses, inclusive, as unsigned 32-bit numbers. */
  start: number;
  end: number;
  /** Never handed out. */
  gateway: number;
}

/** The host subnet's usable addresses: network + 1 .. broadcast - 1, without the gateway. */
export function hostRange(subnet: string, gateway: string): AddressRange {
  const c = parseCidr4(subnet, 'subnet');
  return { subnet: c, start: c.network + 1, end: c.network + cidrSize(c) - 2, gateway: parseIPv4(gateway, 'gateway') };
}

export function describeRange(r: AddressRange): string {
  return `${formatCidr4(r.subnet)} (${formatIPv4(r.start)}-${formatIPv4(r.end)} without the gateway ${formatIPv4(r.gateway)})`;
}

/** Addresses in the order host-local tries them: after `last` (if it is in the range) round robin, else from the start. */
export function* candidateAddresses(r: AddressRange, last: number | undefined): Generator<number> {
  const size = r.end - r.start + 1;
  if (size <= 0) return;
  const first = last !== undefined && last >= r.start && last <= r.end ? (last === r.end ? r.start : last + 1) : r.start;
  for (let i = 0; i < size; i++) {
    const a = r.start + ((first - r.start + i) % size);
    if (a !== r.gateway) yield a;
  }
}

export interface Allocation {
  ip: string;
  containerId: string;
  /** Empty for files written by host-local versions that stored only the container ID. */
  ifName: string;
}

/** File contents -> owner, as host-local reads them (surrounding whitespace ignored). */
export function parseOwner(text: string): { containerId: string; ifName: string } {
  const t = text.trim();
  const i = t.indexOf(LINE_BREAK);
  return i < 0 ? { containerId: t, ifName: '' } : { containerId: t.slice(0, i), ifName: t.slice(i + LINE_BREAK.length) };
}

/** Does an allocation belong to (containerId, ifName)? Old-format files (ID only) match any interface, as in host-local. */
export function ownedBy(a: Allocation, containerId: string, ifName: string): boolean {
  return a.containerId === containerId.trim() && (a.ifName === ifName || a.ifName === '');
}

/** Per allocation directory, the end of this process's queue for its lock. */
const inProcessQueue = new Map<string, Promise<void>>();

/** One network's allocation directory with its lock file open. Call `close()` when done (it also drops the lock). */
export class IpamStore {
  private locked = false;

  private constructor(
    readonly dir: string,
    private fd: number | undefined,
  ) {}

  /** `mkdir -p <dataDir>/<network>` and open its `lock` file. */
  static open(dataDir: string, network: string): IpamStore {
    const dir = join(dataDir, network);
    mkdirSync(dir, { recursive: true, mode: 0o755 });
    const fd = openSync(join(dir, 'lock'), constants.O_RDWR | constants.O_CREAT, 0o644);
    return new IpamStore(dir, fd);
  }

  /**
   * Run `fn` holding the directory's exclusive lock (shared with host-local). Requests of one process (the agent's
   * CNI server) queue here first, so at most one of them waits in flock(): each waiter holds a libuv pool thread,
   * and a hundred concurrent ADDs must not starve the agent's other file and DNS work.
   */
  async withLock<T>(fn: () => T | Promise<T>): Promise<T> {
    const before = inProcessQueue.get(this.dir) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    const tail = before.then(() => mine);
    inProcessQueue.set(this.dir, tail);
    try {
      await before;
      await flock(this.fdOrThrow(), 'exclusive');
      this.locked = true;
      try {
        return await fn();
      } finally {
        this.locked = false;
        tryFlock(this.fdOrThrow(), 'unlock');
      }
    } finally {
      release();
      if (inProcessQueue.get(this.dir) === tail) inProcessQueue.delete(this.dir);
    }
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }

  /** Every address file (names that are IPv4 addresses; `lock` and `last_reserved_ip.*` are not). */
  allocations(): Allocation[] {
    const out: Allocation[] = [];
    for (const name of readdirSync(this.dir)) {
      if (!isIPv4(name)) continue;
      let text: string;
      try {
        text = readFileSync(join(this.dir, name), 'utf8');
      } catch {
        continue; // released meanwhile by a process that does not lock (none should exist), or unreadable
      }
      out.push({ ip: name, ...parseOwner(text) });
    }
    return out;
  }

  /** Create the address file if no one holds it (O_EXCL); remember it as the last reserved. False if taken. */
  reserve(ip: number, containerId: string, ifName: string): boolean {
    this.assertLocked();
    const text = formatIPv4(ip);
    let fd: number;
    try {
      fd = openSync(join(this.dir, text), constants.O_RDWR | constants.O_CREAT | constants.O_EXCL, 0o644);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw err;
    }
    try {
      writeSync(fd, containerId.trim() + LINE_BREAK + ifName);
      closeSync(fd);
    } catch (err) {
      try {
        closeSync(fd);
      } catch {
        // closing failed after all; the file goes anyway
      }
      removeIfPresent(join(this.dir, text));
      throw err;
    }
    writeFileSync(join(this.dir, LAST_RESERVED_FILE), text, { mode: 0o644 });
    return true;
  }

  lastReserved(): number | undefined {
    try {
      const text = readFileSync(join(this.dir, LAST_RESERVED_FILE), 'utf8').trim();
      return isIPv4(text) ? parseIPv4(text) : undefined;
    } catch {
      return undefined;
    }
  }

  /** Remove every address file of (containerId, ifName); the addresses released. */
  release(containerId: string, ifName: string): string[] {
    this.assertLocked();
    const released: string[] = [];
    for (const a of this.allocations()) {
      if (!ownedBy(a, containerId, ifName)) continue;
      removeIfPresent(join(this.dir, a.ip));
      released.push(a.ip);
    }
    return released;
  }

  /** Remove one address file (GC). */
  releaseAddress(ip: string): void {
    this.assertLocked();
    if (!isIPv4(ip)) throw new Error(`releaseAddress: ${JSON.stringify(ip)} is not an address`);
    removeIfPresent(join(this.dir, ip));
  }

  private fdOrThrow(): number {
    if (this.fd === undefined) throw new Error(`IPAM store ${this.dir} is closed`);
    return this.fd;
  }

  private assertLocked(): void {
    if (!this.locked) throw new Error('IPAM store: changes need the lock (use withLock)');
  }
}

function removeIfPresent(path: string): void {
  try {
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/**
 * Reserve one address for (containerId, ifName) under the lock. An attachment that already holds an address in
 * the range is an error (ADD twice without DEL), as in host-local; a full range is error 100.
 */
export async function allocate(store: IpamStore, range: AddressRange, containerId: string, ifName: string, requested?: Requested): Promise<number> {
  return store.withLock(() => {
    const held = store.allocations().find((a) => a.containerId === containerId.trim() && a.ifName === ifName && cidrContains(range.subnet, parseIPv4(a.ip)));
    if (held) {
      throw new CniError(
        CNI_CODES.ALREADY_ALLOCATED,
        `${containerId} ${ifName} already holds ${held.ip} in ${formatCidr4(range.subnet)} (ADD again without DEL)`,
      );
    }
    if (requested) return reserveRequested(store, range, containerId, ifName, requested);
    for (const ip of candidateAddresses(range, store.lastReserved())) {
      if (store.reserve(ip, containerId, ifName)) return ip;
    }
    throw new CniError(CNI_CODES.ADDRESS_EXHAUSTED, `no free address in ${describeRange(range)}: all are in use`);
  });
}

/** An address the runtime asked for (CNI_ARGS IP=, runtimeConfig.ips), and where it came from, for messages. */
export interface Requested {
  ip: string;
  source: string;
}

/**
 * The requested address, as host-local treats one: it must be a usable address of the host's subnet (not its
 * network, broadcast or gateway address) and free; it is then reserved like any other and released on DEL.
 */
function reserveRequested(store: IpamStore, range: AddressRange, containerId: string, ifName: string, requested: Requested): number {
  const ip = parseIPv4(requested.ip, requested.source);
  const where = `${requested.source}: ${JSON.stringify(requested.ip)}`;
  if (!cidrContains(range.subnet, ip)) {
    throw new CniError(
      CNI_CODES.INVALID_CONFIG,
      `${where} is not in this host's subnet ${formatCidr4(range.subnet)} (a pod can only have an address of the subnet its host leased)`,
    );
  }
  if (ip < range.start || ip > range.end || ip === range.gateway) {
    throw new CniError(CNI_CODES.INVALID_CONFIG, `${where} cannot be given to a pod (usable: ${describeRange(range)})`);
  }
  if (!store.reserve(ip, containerId, ifName)) {
    const owner = store.allocations().find((a) => a.ip === requested.ip);
    throw new CniError(
      CNI_CODES.ADDRESS_IN_USE,
      `${where} is already in use${owner ? ` by ${owner.containerId} ${owner.ifName}`.trimEnd() : ''} (in ${store.dir})`,
    );
  }
  return ip;
}

/** How many addresses of the range are free (STATUS). */
export function freeAddresses(store: IpamStore, range: AddressRange): number {
  const used = new Set(store.allocations().map((a) => a.ip));
  let free = 0;
  for (const ip of candidateAddresses(range, undefined)) if (!used.has(formatIPv4(ip))) free++;
  return free;
}
