/**
 * Riding out a store that is away: repeat an operation with capped exponential backoff while it fails with
 * StoreUnavailableError, saying on each attempt `store unreachable, retrying in N ms` (or, given a StoreOutage,
 * reporting to it, which says so once). Other errors end the
 * operation unless `retryAll` is set (loops that must never stop, such as a lease watch).
 */
import type { Logger } from '../base/log.js';
import { Backoff, sleep } from '../base/retry.js';
import type { StoreOutage } from './outage.js';
import { isStoreUnavailable } from './registry.js';

export interface RetryOptions {
  logger: Logger;
  signal?: AbortSignal;
  backoff?: Backoff;
  /** Called with every failure, e.g. to count store errors. */
  onError?: (err: Error) => void;
  /** Retry every error, not only unavailability. */
  retryAll?: boolean;
  /** Report unavailability here (a few lines per outage) instead of logging every attempt. */
  outage?: StoreOutage;
}

export async function retryWhileUnavailable<T>(what: string, fn: () => Promise<T>, options: RetryOptions): Promise<T> {
  const backoff = options.backoff ?? new Backoff({ initialMs: 250, maxMs: 5000 });
  for (;;) {
    options.signal?.throwIfAborted();
    try {
      const result = await fn();
      backoff.reset();
      options.outage?.succeeded();
      return result;
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err));
      const unavailable = isStoreUnavailable(error);
      if (options.signal?.aborted || (!unavailable && !options.retryAll)) throw error;
      options.onError?.(error);
      const delay = backoff.next();
      if (unavailable && options.outage) options.outage.failed(what, error);
      else if (unavailable) options.logger.warn(`store unreachable, retrying in ${delay} ms`, { operation: what, error: error.message });
      else options.logger.error(`${what} failed, retrying in ${delay} ms`, { error: error.message });
      await sleep(delay, options.signal);
    }
  }
}
