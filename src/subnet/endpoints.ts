/**
 * Pod endpoint records, for L2 networks with Flood "none": the store says where every pod's MAC lives, so that
 * no host ever has to flood an ARP request or an unknown frame over the underlay to find it.
 *
 *   <prefix>/endpoints/10.17.0.18   {"IP":"10.17.0.18","MAC":"0a:58:0a:11:00:12","PublicIP":"192.0.2.12"}
 *
 * The CNI plugin publishes a record when it attaches a pod and withdraws it on DEL (only while the stored MAC is
 * still that pod's: an address handed to the next pod must not lose the next pod's record). Records have no TTL:
 * a host that dies leaves them behind, but its lease expires and `admitEndpoints` then believes none of them.
 *
 * The store is writable by anyone who reaches it, so a record is a claim: parsing refuses hostile shapes (key and
 * IP disagree, a multicast or zero MAC, a PublicIP that cannot be a host, unknown fields, oversized values), and
 * admission believes a record only when its IP lies in the slice of an admitted lease of that same PublicIP.
 */
import { isIPv4 } from 'node:net';
import { formatValue, InvalidValueError, TulleError } from '../base/errors.js';
import { cidrContains, parseCidr4, parseIPv4, parseMac } from '../base/ip.js';
import { silentLogger, type Logger } from '../base/log.js';
import { Backoff } from '../base/retry.js';
import { getField, isJsonObject } from '../config/flannel-json.js';
import { normalizePrefix } from '../store/keys.js';
import { isStoreUnavailable, type Registry, type StoredValue, type WatchEvent, type WatchHandle } from '../store/registry.js';
import { retryWhileUnavailable } from '../store/retry.js';

export interface EndpointRecord {
  /** The pod's IPv4 address; also the last part of the key. */
  ip: string;
  /** The pod's MAC (its eth0), lower case. */
  mac: string;
  /** The underlay address of the pod's host: where frames for `mac` are sent. */
  publicIP: string;
}

/** A record as read from the store: with its key and the revisions that order conflicting records. */
export interface StoredEndpoint extends EndpointRecord {
  key: string;
  /** Revision of the write that produced this value. */
  revision: number;
  /** Revision at which the key was created: the older record wins a conflict, the same way on every host. */
  created: number;
}

/** A record not believed: `malformed` (unreadable), `no-lease` (no admitted lease vouches for it), `duplicate-mac`. */
export type EndpointRejectReason = 'malformed' | 'no-lease' | 'duplicate-mac';

export interface EndpointRejection {
  key: string;
  reason: EndpointRejectReason;
  /** Human words, with the values. */
  detail: string;
}

/** A stored endpoint value tulle refuses to use; names the key, the field, the value and the rule. */
export class MalformedEndpointError extends TulleError {
  constructor(
    readonly key: string,
    readonly field: string,
    detail: string,
  ) {
    super('TLE_MALFORMED_ENDPOINT', `malformed endpoint record at ${formatValue(key)}: ${field}: ${detail}`, { exitCode: 2 });
  }
}

/** Longest value a record may have: the three fields need under 100 bytes; more is someone else's junk. */
export const MAX_ENDPOINT_VALUE = 512;
const FIELDS = ['IP', 'MAC', 'PublicIP'] as const;
const ENDPOINTS_DIR = '/endpoints/';

/** The prefix every endpoint key starts with, e.g. "/tulle.io/l2/endpoints/". */
export function endpointsPrefix(prefix: string): string {
  return `${normalizePrefix(prefix, 'prefix')}${ENDPOINTS_DIR}`;
}

export function endpointKey(prefix: string, ip: string): string {
  return `${endpointsPrefix(prefix)}${ip}`;
}

/** Why `ip` cannot be a pod's address or a host's underlay address; undefined when it can. */
function unicastProblem(n: number): string | undefined {
  const first = n >>> 24;
  if (first === 0) return 'is in 0.0.0.0/8 ("this network")';
  if (first === 127) return 'is a loopback address';
  if (first >= 224) return first < 240 ? 'is a multicast address' : 'is a reserved or broadcast address';
  return undefined;
}

/** Why `value` cannot be a pod's (or, `linkLocalOk` false, a host's underlay) address; undefined when it can. */
function addressProblem(value: unknown, linkLocalOk: boolean): string | undefined {
  // node's isIPv4 accepts only the canonical dotted form: no leading zeros, no shorthand.
  if (typeof value !== 'string' || !isIPv4(value)) return 'is not an IPv4 address';
  const n = parseIPv4(value);
  return unicastProblem(n) ?? (!linkLocalOk && n >>> 16 === ((169 << 8) | 254) ? 'is a link-local address' : undefined);
}

/** The MAC in lower case, or why it cannot be a pod's. */
function checkMac(value: unknown): { mac: string } | { problem: string } {
  let mac: string;
  try {
    mac = parseMac(value as string, 'MAC');
  } catch {
    return { problem: 'is not a MAC address (like 0a:58:0a:11:00:12)' };
  }
  if (mac === '00:00:00:00:00:00') return { problem: 'is the all-zero MAC (the flood entry, never a pod)' };
  if (parseInt(mac.slice(0, 2), 16) & 1) return { problem: 'is a multicast or broadcast MAC (the first octet is odd)' };
  return { mac };
}

/** Check what this host is about to write (InvalidValueError naming the field); the same rules as reading. */
export function checkEndpointRecord(rec: EndpointRecord): EndpointRecord {
  if (!isJsonObject(rec)) throw new InvalidValueError('endpoint', rec, 'is not an object like {ip, mac, publicIP}');
  const ipProblem = addressProblem(rec.ip, true);
  if (ipProblem) throw new InvalidValueError('endpoint ip', rec.ip, ipProblem);
  const mac = checkMac(rec.mac);
  if ('problem' in mac) throw new InvalidValueError('endpoint mac', rec.mac, mac.problem);
  const publicProblem = addressProblem(rec.publicIP, false);
  if (publicProblem) throw new InvalidValueError('endpoint publicIP', rec.publicIP, publicProblem);
  return { ip: rec.ip, mac: mac.mac, publicIP: rec.publicIP };
}

/**
 * Read one stored record. The key must end in `/endpoints/<IP>` with the value's own IP; the value is a JSON object
 * with exactly IP, MAC and PublicIP (keys matched case-insensitively, as flannel reads its JSON), each a string.
 */
export function parseEndpointRecord(key: string, value: string): EndpointRecord {
  if (typeof key !== 'string' || !key.includes(ENDPOINTS_DIR))
    throw new MalformedEndpointError(String(key), 'key', `${formatValue(key)} is not an endpoint key (like /tulle.io/l2/endpoints/10.17.0.18)`);
  if (typeof value !== 'string') throw new MalformedEndpointError(key, 'value', `${formatValue(value)} is not a string`);
  if (value.length > MAX_ENDPOINT_VALUE) throw new MalformedEndpointError(key, 'value', `is ${value.length} characters long (at most ${MAX_ENDPOINT_VALUE})`);
  let doc: unknown;
  try {
    doc = JSON.parse(value);
  } catch {
    throw new MalformedEndpointError(key, 'value', `${formatValue(value)} is not JSON`);
  }
  if (!isJsonObject(doc)) throw new MalformedEndpointError(key, 'value', `${formatValue(value)} is not a JSON object like {"IP":…,"MAC":…,"PublicIP":…}`);
  const known = new Set(FIELDS.map((f) => f.toLowerCase()));
  const extra = Object.keys(doc).find((k) => !known.has(k.toLowerCase()));
  if (extra !== undefined) throw new MalformedEndpointError(key, formatValue(extra), `is not a field of an endpoint record (only ${FIELDS.join(', ')})`);
  for (const f of FIELDS) if (getField(doc, f) === undefined) throw new MalformedEndpointError(key, f, 'is missing');
  const [ip, macValue, publicIP] = FIELDS.map((f) => getField(doc, f));
  const ipProblem = addressProblem(ip, true);
  if (ipProblem) throw new MalformedEndpointError(key, 'IP', `${formatValue(ip)} ${ipProblem}`);
  const mac = checkMac(macValue);
  if ('problem' in mac) throw new MalformedEndpointError(key, 'MAC', `${formatValue(macValue)} ${mac.problem}`);
  const publicProblem = addressProblem(publicIP, false);
  if (publicProblem) throw new MalformedEndpointError(key, 'PublicIP', `${formatValue(publicIP)} ${publicProblem}`);
  const rec = { ip: ip as string, mac: mac.mac, publicIP: publicIP as string };
  const keyIP = key.slice(key.lastIndexOf(ENDPOINTS_DIR) + ENDPOINTS_DIR.length);
  if (keyIP !== rec.ip) throw new MalformedEndpointError(key, 'IP', `${formatValue(rec.ip)} does not match the key's address ${formatValue(keyIP)}`);
  return rec;
}

/** The stored JSON value, in the contract's spelling and order. */
export function encodeEndpointValue(rec: EndpointRecord): string {
  return JSON.stringify({ IP: rec.ip, MAC: rec.mac, PublicIP: rec.publicIP });
}

function decodeStored(stored: StoredValue): StoredEndpoint {
  return {
    ...parseEndpointRecord(stored.key, stored.value),
    key: stored.key,
    revision: stored.modRevision,
    created: stored.createRevision ?? stored.modRevision,
  };
}

/** Write (or overwrite) the record of `rec.ip`, without TTL: `<prefix>/endpoints/<ip>`. */
export async function publishEndpoint(store: Registry, prefix: string, rec: EndpointRecord): Promise<StoredValue> {
  const checked = checkEndpointRecord(rec);
  return store.put(endpointKey(prefix, checked.ip), encodeEndpointValue(checked));
}

/**
 * Delete the record of `ip` only while it still names `mac` (compare-and-delete on its revision): a record that a
 * newer pod with this address wrote, or one tulle cannot read, stays. True when a record was deleted.
 */
export async function withdrawEndpoint(store: Registry, prefix: string, ip: string, mac: string): Promise<boolean> {
  const ipProblem = addressProblem(ip, true);
  if (ipProblem) throw new InvalidValueError('endpoint ip', ip, ipProblem);
  const checked = checkMac(mac);
  if ('problem' in checked) throw new InvalidValueError('endpoint mac', mac, checked.problem);
  const want = checked.mac;
  const key = endpointKey(prefix, ip);
  const stored = await store.get(key);
  if (!stored) return false;
  let rec: StoredEndpoint;
  try {
    rec = decodeStored(stored);
  } catch {
    return false;
  }
  if (rec.mac !== want) return false;
  return store.delete(key, stored.modRevision);
}

export interface EndpointListing {
  records: StoredEndpoint[];
  /** Keys under endpoints/ whose value cannot be read, each with the reason. */
  malformed: EndpointRejection[];
  revision: number;
}

function readAll(items: readonly StoredValue[]): Omit<EndpointListing, 'revision'> {
  const records: StoredEndpoint[] = [];
  const malformed: EndpointRejection[] = [];
  for (const item of items) {
    try {
      records.push(decodeStored(item));
    } catch (err) {
      if (!(err instanceof MalformedEndpointError)) throw err;
      malformed.push({ key: item.key, reason: 'malformed', detail: err.message });
    }
  }
  return { records, malformed };
}

/** Every record under `<prefix>/endpoints/`, the unreadable ones apart. */
export async function listEndpoints(store: Registry, prefix: string): Promise<EndpointListing> {
  const listing = await store.list(endpointsPrefix(prefix));
  return { ...readAll(listing.items), revision: listing.revision };
}

/**
 * At an agent's start: delete this host's records (PublicIP = `ownPublicIP`) whose IP no local pod holds any more
 * (`heldIPs`, e.g. the CNI's IPAM reservations): a pod whose DEL never ran (the host crashed) leaves a record that
 * would send its MAC here forever. Each delete is conditional on the revision read. Returns the deleted keys.
 */
export async function pruneOwnEndpoints(store: Registry, prefix: string, ownPublicIP: string, heldIPs: ReadonlySet<string>): Promise<string[]> {
  const { records } = await listEndpoints(store, prefix);
  const removed: string[] = [];
  for (const rec of records) {
    if (rec.publicIP !== ownPublicIP || heldIPs.has(rec.ip)) continue;
    if (await store.delete(rec.key, rec.revision)) removed.push(rec.key);
  }
  return removed;
}

/** A lease as admission sees it: a host's slice and its underlay address (overlay's PeerLease fits). */
export interface EndpointLease {
  subnet: string;
  publicIP: string;
}

export interface EndpointAdmission {
  accepted: StoredEndpoint[];
  rejected: EndpointRejection[];
}

function olderFirst(a: StoredEndpoint, b: StoredEndpoint): number {
  return a.created - b.created || parseIPv4(a.ip) - parseIPv4(b.ip) || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);
}

/**
 * Which records to believe. A record is accepted only when its IP lies inside the subnet of an admitted lease
 * whose PublicIP is the record's (so a host can only place pods in its own slice). Pass this host's own lease
 * among `admittedLeases` so that its pods take part in MAC conflicts; planEndpointEntries leaves them out of the
 * kernel. Two records with one MAC (on different IPs or hosts): the older key wins (lower create revision, then
 * lower IP, then key), the same on every host; the other is rejected as `duplicate-mac`. Pure.
 */
export function admitEndpoints(records: Iterable<StoredEndpoint>, admittedLeases: Iterable<EndpointLease>, ownPublicIP: string): EndpointAdmission {
  const slices = [...admittedLeases].map((l) => ({ subnet: parseCidr4(l.subnet, 'lease subnet'), publicIP: l.publicIP }));
  const rejected: EndpointRejection[] = [];
  const candidates: StoredEndpoint[] = [];
  for (const rec of records) {
    const ip = parseIPv4(rec.ip);
    if (slices.some((s) => s.publicIP === rec.publicIP && cidrContains(s.subnet, ip))) {
      candidates.push(rec);
      continue;
    }
    const holder = slices.find((s) => cidrContains(s.subnet, ip));
    const detail = holder
      ? `IP ${rec.ip} lies in the slice of the host ${holder.publicIP}, not of PublicIP ${rec.publicIP}`
      : `IP ${rec.ip} lies in no admitted lease${rec.publicIP === ownPublicIP ? " (this host's own lease was not given)" : ` of PublicIP ${rec.publicIP}`}`;
    rejected.push({ key: rec.key, reason: 'no-lease', detail });
  }
  candidates.sort(olderFirst);
  const macOwner = new Map<string, StoredEndpoint>();
  const accepted: StoredEndpoint[] = [];
  for (const rec of candidates) {
    const owner = macOwner.get(rec.mac);
    if (owner) {
      rejected.push({
        key: rec.key,
        reason: 'duplicate-mac',
        detail: `MAC ${rec.mac} is already used by the older record of ${owner.ip} on ${owner.publicIP}`,
      });
      continue;
    }
    macOwner.set(rec.mac, rec);
    accepted.push(rec);
  }
  return { accepted, rejected };
}

export interface EndpointSnapshot {
  records: StoredEndpoint[];
  malformed: EndpointRejection[];
  revision: number;
}

export interface EndpointWatchOptions {
  logger?: Logger;
  /** Called with every store error (the watch retries by itself). */
  onStoreError?: (err: Error) => void;
}

/**
 * Watch the records: `onSnapshot` gets the whole current set first and then after every change (the consumer runs
 * admission, plan and reconcile on the whole set, which writes only differences). Like the LeaseWatcher, a watch
 * that fell behind (etcd compaction, SQLite log trimmed) lists again, and store errors are retried forever.
 */
export class EndpointWatcher {
  private readonly logger: Logger;
  private readonly onStoreError: (err: Error) => void;
  private readonly abort = new AbortController();
  private readonly known = new Map<string, StoredValue>();
  private revision = 0;
  private handle: WatchHandle | undefined;
  private closed = false;
  /** Resolves when the first snapshot has been delivered. */
  readonly ready: Promise<void>;

  constructor(
    private readonly store: Registry,
    private readonly prefix: string,
    private readonly onSnapshot: (snapshot: EndpointSnapshot) => void,
    options: EndpointWatchOptions = {},
  ) {
    endpointsPrefix(prefix); // check it now: a bad prefix is the caller's error, not a retry
    this.logger = (options.logger ?? silentLogger).child({ component: 'endpoint-watch' });
    this.onStoreError = options.onStoreError ?? (() => {});
    this.ready = this.resync();
  }

  /** The records as last delivered. */
  get snapshot(): EndpointSnapshot {
    return { ...readAll([...this.known.values()]), revision: this.revision };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.abort.abort(new Error('endpoint watcher closed'));
    const handle = this.handle;
    this.handle = undefined;
    await handle?.close();
  }

  private deliver(): void {
    if (!this.closed) this.onSnapshot(this.snapshot);
  }

  private async resync(): Promise<void> {
    let listing;
    try {
      listing = await retryWhileUnavailable('list endpoints', () => this.store.list(endpointsPrefix(this.prefix)), {
        logger: this.logger,
        signal: this.abort.signal,
        onError: this.onStoreError,
        retryAll: true,
        backoff: new Backoff({ initialMs: 250, maxMs: 5000 }),
      });
    } catch {
      return; // closed while waiting for the store
    }
    if (this.closed) return;
    this.known.clear();
    for (const item of listing.items) this.known.set(item.key, item);
    this.revision = listing.revision;
    this.deliver();
    this.handle = this.store.watch(endpointsPrefix(this.prefix), this.revision, {
      events: (events, revision) => this.apply(events, revision),
      lost: (reason) => {
        this.handle = undefined;
        this.logger.warn('the endpoint watch fell behind; listing again', { reason, revision: this.revision });
        void this.resync();
      },
      error: (err) => {
        this.onStoreError(err);
        if (!isStoreUnavailable(err)) this.logger.warn('endpoint watch error', { error: err.message });
      },
    });
  }

  private apply(events: WatchEvent[], revision: number): void {
    if (this.closed) return;
    for (const e of events) {
      if (e.type === 'delete') this.known.delete(e.key);
      else
        this.known.set(e.key, {
          key: e.key,
          value: e.value,
          modRevision: e.modRevision,
          createRevision: this.known.get(e.key)?.createRevision ?? e.modRevision,
          expiresAt: e.expiresAt,
        });
    }
    this.revision = revision;
    if (events.length) this.deliver();
  }
}
