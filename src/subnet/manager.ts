/**
 * The LeaseManager: a host's side of the subnet registry, following flannel's LocalManager.
 *
 *  - acquire: first the lease already held for this public IP (a restarted host gets its subnet back), then
 *    the subnet of the previous subnet.env if it is still free and fits the config, then a random free
 *    subnet. A subnet is only ever created if its key does not exist; when another host wins the race the
 *    choice is made again (up to 10 times).
 *  - renew: rewrite the lease with a fresh TTL (24 h), compare-and-swap on the revision read last, so that a
 *    lease someone else took over is never overwritten. keepRenewed() does it in a loop, `renewMargin`
 *    (1 h, flannel's default) before expiry, retrying with backoff while the store is away.
 *  - revoke: delete the lease, only if it is still ours.
 *
 * Every store operation that fails because the store is unreachable is retried with backoff and logged as
 * `store unreachable, retrying in N ms`.
 */
import { InvalidValueError, TulleError } from '../base/errors.js';
import { formatCidr4, parseCidr4, type Cidr4 } from '../base/ip.js';
import { silentLogger, type Logger } from '../base/log.js';
import { Backoff, sleep } from '../base/retry.js';
import { isSubnetInRange, parseNetworkConfig, type NetworkConfig } from '../config/network.js';
import { checkPrefixForMode, configKey, DEFAULT_PREFIX, normalizePrefix, subnetKey, subnetsPrefix } from '../store/keys.js';
import { isStoreUnavailable, systemClock, type Clock, type Registry, type StoredValue } from '../store/registry.js';
import type { StoreOutage } from '../store/outage.js';
import { retryWhileUnavailable } from '../store/retry.js';
import { isSubnetFree, pickFreeSubnet, type TakenSubnet } from './allocator.js';
import { checkLeaseAttrs, decodeLease, encodeLeaseValue, MalformedLeaseError, type BackendData, type Lease, type LeaseAttrs } from './lease.js';
import { LeaseWatcher, type LeaseWatcherOptions } from './watcher.js';

/** flannel's lease lifetime and renewal margin. */
export const LEASE_TTL_SECONDS = 24 * 60 * 60;
export const RENEW_MARGIN_SECONDS = 60 * 60;
const RACE_RETRIES = 10;

export interface LeaseManagerOptions {
  prefix?: string;
  logger?: Logger;
  /** Time source for expiry arithmetic (the store's own clock decides what has expired). */
  clock?: Clock;
  /** Random source in [0, 1) for picking a free subnet. */
  random?: () => number;
  ttlSeconds?: number;
  /** Renew this long before the lease expires. */
  renewMarginSeconds?: number;
  /** Report the store's unavailability here (a few lines per outage) instead of one line per retry. */
  outage?: StoreOutage;
}

export interface AcquireRequest {
  /** The host's underlay IPv4 address. */
  publicIP: string;
  /** "vxlan" unless told otherwise. */
  backendType?: string;
  /** For vxlan: {VNI, VtepMAC}. */
  backendData: BackendData;
  /** The subnet from the previous subnet.env (FLANNEL_SUBNET=10.244.1.1/24 is accepted as written). */
  previousSubnet?: string;
  /** Stops the retries while the store is unreachable. */
  signal?: AbortSignal;
  /** Called with every store error met on the way (the store is retried). */
  onStoreError?: (err: Error) => void;
}

export interface LeaseListing {
  /** Valid leases and reservations, by key. */
  leases: Lease[];
  /** Values that could not be read (reported in the log, skipped). */
  malformed: MalformedLeaseError[];
  revision: number;
}

export interface KeepRenewedOptions {
  signal?: AbortSignal;
  onRenewed?: (lease: Lease) => void;
  /** Every failed renewal (e.g. to count store errors); the loop goes on. */
  onError?: (err: Error) => void;
}

/** The network config key does not exist (yet). */
export class NetworkConfigMissingError extends TulleError {
  constructor(key: string, url: string) {
    super('TLE_NO_NETWORK_CONFIG', `no network config at ${key} in ${url} (write one with: tulle config put --store ${url} FILE)`);
  }
}

/** Our lease was deleted and its subnet taken by another host, or rewritten by someone else. */
export class LeaseLostError extends TulleError {
  constructor(subnet: string, detail: string) {
    super('TLE_LEASE_LOST', `lease ${subnet} lost: ${detail}`);
  }
}

export class LeaseManager {
  readonly prefix: string;
  private readonly logger: Logger;
  private readonly clock: Clock;
  private readonly random: () => number;
  private readonly ttlSeconds: number;
  private readonly renewMarginMs: number;
  private readonly outage: StoreOutage | undefined;

  constructor(
    readonly registry: Registry,
    options: LeaseManagerOptions = {},
  ) {
    this.prefix = normalizePrefix(options.prefix ?? DEFAULT_PREFIX, 'prefix');
    this.logger = (options.logger ?? silentLogger).child({ component: 'lease', store: registry.url });
    this.clock = options.clock ?? systemClock;
    this.random = options.random ?? Math.random;
    this.ttlSeconds = options.ttlSeconds ?? LEASE_TTL_SECONDS;
    this.renewMarginMs = (options.renewMarginSeconds ?? RENEW_MARGIN_SECONDS) * 1000;
    this.outage = options.outage;
  }

  /** Say that the store is away: to the outage reporter when there is one, else one line per retry. */
  private unavailable(operation: string, err: Error, delay: number, fields: Record<string, unknown> = {}): void {
    if (this.outage) this.outage.failed(operation, err);
    else this.logger.warn(`store unreachable, retrying in ${delay} ms`, { operation, ...fields, error: err.message });
  }

  /** The network config, validated with flannel's rules; NetworkConfigMissingError when there is none. */
  async getNetworkConfig(): Promise<NetworkConfig> {
    const key = configKey(this.prefix);
    const stored = await this.registry.get(key);
    if (!stored) throw new NetworkConfigMissingError(key, this.registry.url);
    const config = parseNetworkConfig(stored.value);
    checkPrefixForMode(config.Backend.mode, this.prefix);
    return config;
  }

  /** Wait until a valid network config exists, logging why it is not there yet (once per reason). */
  async waitForNetworkConfig(options: { signal?: AbortSignal; pollMs?: number } = {}): Promise<NetworkConfig> {
    const backoff = new Backoff({ initialMs: options.pollMs ?? 1000, maxMs: 5000 });
    let lastReason = '';
    for (;;) {
      options.signal?.throwIfAborted();
      try {
        const config = await this.getNetworkConfig();
        this.outage?.succeeded();
        return config;
      } catch (err) {
        if (!(err instanceof TulleError)) throw err;
        const delay = backoff.next();
        if (isStoreUnavailable(err)) this.unavailable('read network config', err, delay);
        else if (err.message !== lastReason) {
          const waiting =
            err instanceof NetworkConfigMissingError ? 'waiting for the network config' : 'the network config is invalid; waiting for a valid one';
          this.logger[err instanceof NetworkConfigMissingError ? 'info' : 'error'](waiting, { key: configKey(this.prefix), reason: err.message });
        }
        lastReason = err.message;
        await sleep(delay, options.signal);
      }
    }
  }

  /** Every lease and reservation; malformed values are logged and left out. */
  async listLeases(): Promise<LeaseListing> {
    const listing = await this.registry.list(subnetsPrefix(this.prefix));
    const leases: Lease[] = [];
    const malformed: MalformedLeaseError[] = [];
    for (const item of listing.items) {
      try {
        leases.push(decodeLease(this.prefix, item));
      } catch (err) {
        if (!(err instanceof MalformedLeaseError)) throw err;
        malformed.push(err);
        this.logger.warn('skipping a malformed lease', { key: item.key, reason: err.message });
      }
    }
    return { leases, malformed, revision: listing.revision };
  }

  /** Take a subnet for this host (see the module comment for the order of preference). */
  async acquire(request: AcquireRequest): Promise<Lease> {
    const attrs = checkLeaseAttrs({ publicIP: request.publicIP, backendType: request.backendType ?? 'vxlan', backendData: request.backendData });
    const previous = request.previousSubnet ? parsePrevious(request.previousSubnet) : undefined;
    const retry = {
      logger: this.logger,
      outage: this.outage,
      ...(request.signal ? { signal: request.signal } : {}),
      ...(request.onStoreError ? { onError: request.onStoreError } : {}),
    };
    const config = await retryWhileUnavailable('read network config', () => this.getNetworkConfig(), retry);
    for (let attempt = 1; attempt <= RACE_RETRIES; attempt++) {
      const lease = await retryWhileUnavailable('acquire a lease', () => this.tryAcquire(config, attrs, previous), retry);
      if (lease) return lease;
      this.logger.info('another host took the chosen subnet first; choosing again', { attempt });
    }
    throw new TulleError('TLE_ACQUIRE_RACE', `could not acquire a subnet: other hosts took the chosen subnet ${RACE_RETRIES} times in a row`);
  }

  /** One round of acquire; undefined when another host won a race and the choice must be made again. */
  private async tryAcquire(config: NetworkConfig, attrs: LeaseAttrs, previous: Cidr4 | undefined): Promise<Lease | undefined> {
    const { leases } = await this.listLeases();

    const held = leases.find((l) => l.publicIP === attrs.publicIP);
    if (held) {
      if (isSubnetInRange(config, parseCidr4(held.subnet))) {
        // A reservation stays a reservation; a lease gets a fresh TTL. Fields we do not interpret stay.
        const stored = await this.registry.update(
          held.key,
          encodeLeaseValue({ ...attrs, extra: held.extra }),
          held.revision,
          this.writeOptions(held.expiration === null),
        );
        if (!stored) return undefined;
        this.logger.info('found the lease of this public IP, reusing it', {
          subnet: held.subnet,
          publicIP: attrs.publicIP,
          reservation: held.expiration === null,
        });
        return this.decodeOwn(stored);
      }
      this.logger.info('the lease of this public IP does not fit the network config any more; deleting it', { subnet: held.subnet, network: config.Network });
      if (!(await this.registry.delete(held.key, held.revision))) return undefined;
      leases.splice(leases.indexOf(held), 1);
    }

    const taken: TakenSubnet[] = leases.map((l) => ({ subnet: parseCidr4(l.subnet), reservation: l.expiration === null }));
    let subnet: Cidr4 | undefined;
    if (previous) {
      if (!isSubnetInRange(config, previous)) {
        this.logger.warn('the previous subnet (subnet.env) does not fit the network config; ignoring it', {
          subnet: formatCidr4(previous),
          network: config.Network,
        });
      } else if (!isSubnetFree(previous, taken)) {
        this.logger.info('the previous subnet (subnet.env) is taken by another host; choosing a free one', { subnet: formatCidr4(previous) });
      } else {
        subnet = previous;
      }
    }
    const fromPrevious = subnet !== undefined;
    subnet ??= pickFreeSubnet(config, taken, this.random);

    const stored = await this.registry.create(subnetKey(this.prefix, subnet), encodeLeaseValue(attrs), this.writeOptions(false));
    if (!stored) return undefined;
    this.logger.info(fromPrevious ? 'reacquired the previous subnet (subnet.env)' : 'allocated a new subnet', {
      subnet: formatCidr4(subnet),
      publicIP: attrs.publicIP,
    });
    return this.decodeOwn(stored);
  }

  /**
   * Extend the lease by a full TTL. If the lease expired meanwhile and nobody took the subnet, it is
   * recreated; if another host holds it now, LeaseLostError. A reservation never expires: returned as is.
   */
  async renew(lease: Lease): Promise<Lease> {
    if (lease.expiration === null) return lease;
    const attrs: LeaseAttrs = { publicIP: lease.publicIP, backendType: lease.backendType, backendData: lease.backendData, extra: lease.extra };
    const options = this.writeOptions(false);
    const stored = await this.registry.update(lease.key, encodeLeaseValue(attrs), lease.revision, options);
    if (stored) return this.decodeOwn(stored);

    // Someone wrote the key since we last did, or it is gone: look before deciding.
    const current = await this.registry.get(lease.key);
    if (!current) {
      const recreated = await this.registry.create(lease.key, encodeLeaseValue(attrs), options);
      if (!recreated) throw new LeaseLostError(lease.subnet, 'it expired and another host took the subnet');
      this.logger.warn('the lease had expired; recreated it', { subnet: lease.subnet });
      return this.decodeOwn(recreated);
    }
    let theirs: Lease;
    try {
      theirs = decodeLease(this.prefix, current);
    } catch (err) {
      throw new LeaseLostError(lease.subnet, `someone overwrote it with a value that cannot be read (${(err as Error).message})`);
    }
    if (theirs.publicIP !== lease.publicIP) throw new LeaseLostError(lease.subnet, `it now belongs to ${theirs.publicIP}`);
    const again = await this.registry.update(
      lease.key,
      encodeLeaseValue({ ...attrs, extra: theirs.extra }),
      theirs.revision,
      this.writeOptions(theirs.expiration === null),
    );
    if (!again) throw new LeaseLostError(lease.subnet, 'it keeps changing under us');
    return this.decodeOwn(again);
  }

  /**
   * Renew `lease` `renewMargin` before each expiry until `signal` aborts (then it resolves). Failures are
   * retried with backoff; it rejects only with LeaseLostError.
   */
  async keepRenewed(lease: Lease, options: KeepRenewedOptions = {}): Promise<void> {
    const { signal } = options;
    const backoff = new Backoff({ initialMs: 1000, maxMs: 10_000 });
    let current = lease;
    try {
      for (;;) {
        signal?.throwIfAborted();
        if (current.expiration === null) {
          await sleep(2 ** 31 - 1, signal); // a reservation: nothing to renew, ever
          continue;
        }
        await sleep(Math.max(0, current.expiration.getTime() - this.renewMarginMs - this.clock.now()), signal);
        try {
          current = await this.renew(current);
          backoff.reset();
          this.outage?.succeeded();
          this.logger.info('lease renewed', { subnet: current.subnet, expiration: current.expiration?.toISOString() });
          options.onRenewed?.(current);
        } catch (err) {
          if (err instanceof LeaseLostError || signal?.aborted) throw err;
          const error = err instanceof Error ? err : new Error(String(err));
          options.onError?.(error);
          const delay = backoff.next();
          if (isStoreUnavailable(error)) this.unavailable('renew lease', error, delay, { subnet: current.subnet });
          else this.logger.error(`lease renewal failed, retrying in ${delay} ms`, { subnet: current.subnet, error: error.message });
          await sleep(delay, signal);
        }
      }
    } catch (err) {
      if (signal?.aborted) return;
      throw err;
    }
  }

  /** Delete the lease if it is still ours (never a reservation); true when it was deleted. */
  async revoke(lease: Lease): Promise<boolean> {
    if (lease.expiration === null) {
      this.logger.info('not revoking a reservation', { subnet: lease.subnet });
      return false;
    }
    if (await this.registry.delete(lease.key, lease.revision)) return true;
    const current = await this.registry.get(lease.key);
    if (!current) return false;
    let theirs: Lease;
    try {
      theirs = decodeLease(this.prefix, current);
    } catch {
      return false;
    }
    if (theirs.publicIP !== lease.publicIP) return false;
    return this.registry.delete(lease.key, theirs.revision);
  }

  /** A stream of peer lease events starting with the current snapshot (see LeaseWatcher). */
  watch(options: Omit<LeaseWatcherOptions, 'prefix'> = {}): LeaseWatcher {
    return new LeaseWatcher(this.registry, { logger: this.logger, ...(this.outage ? { outage: this.outage } : {}), ...options, prefix: this.prefix });
  }

  private writeOptions(reservation: boolean): { ttlSeconds?: number } {
    return reservation ? {} : { ttlSeconds: this.ttlSeconds };
  }

  private decodeOwn(stored: StoredValue): Lease {
    return decodeLease(this.prefix, stored);
  }
}

function parsePrevious(text: string): Cidr4 {
  try {
    return parseCidr4(text, 'previousSubnet', true);
  } catch (err) {
    if (err instanceof InvalidValueError) throw err;
    throw new InvalidValueError('previousSubnet', text, 'is not an IPv4 CIDR (like 10.244.1.1/24)');
  }
}
