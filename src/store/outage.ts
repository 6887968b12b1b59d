/**
 * How a long-lived process tells its operator that the store is away: one line when it goes, one reminder a
 * minute at most while it stays away, one line when it is back (with how long it was away). Every retry loop
 * reports here instead of logging each attempt, so an outage of any length costs a handful of lines, and
 * `tulle_store_up` follows `up`.
 */
import type { Logger } from '../base/log.js';

export interface StoreOutageOptions {
  /** Least time between two "still unreachable" reminders. */
  remindEveryMs?: number;
  now?: () => number;
  /** Called on every change between up and down. */
  onChange?: (up: boolean) => void;
}

export class StoreOutage {
  private downSince: number | undefined;
  private lastLine = 0;
  private failures = 0;
  private readonly remindEveryMs: number;
  private readonly now: () => number;

  constructor(
    private readonly log: Logger,
    private readonly url: string,
    private readonly options: StoreOutageOptions = {},
  ) {
    this.remindEveryMs = options.remindEveryMs ?? 60_000;
    this.now = options.now ?? Date.now;
  }

  get up(): boolean {
    return this.downSince === undefined;
  }

  /** An operation failed because the store could not be reached (or did not answer in time). */
  failed(operation: string, err: Error): void {
    const now = this.now();
    this.failures++;
    if (this.downSince === undefined) {
      this.downSince = now;
      this.lastLine = now;
      this.log.warn('store unreachable; the data plane stays as it is, retrying in the background', { store: this.url, operation, error: err.message });
      this.options.onChange?.(false);
    } else if (now - this.lastLine >= this.remindEveryMs) {
      this.lastLine = now;
      this.log.warn('store still unreachable', {
        store: this.url,
        forSeconds: Math.round((now - this.downSince) / 1000),
        failedOperations: this.failures,
        operation,
        error: err.message,
      });
    }
  }

  /** An operation reached the store. */
  succeeded(): void {
    if (this.downSince === undefined) return;
    const seconds = Math.round((this.now() - this.downSince) / 100) / 10;
    this.log.info('store reachable again', { store: this.url, afterSeconds: seconds, failedOperations: this.failures });
    this.downSince = undefined;
    this.failures = 0;
    this.options.onChange?.(true);
  }
}
