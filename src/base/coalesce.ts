/**
 * One run at a time, and no pile-up: asking while a run is in progress schedules exactly one more run, which every
 * request made meanwhile shares (the reconciler and the L2 sync: a burst of lease events costs two runs, not one
 * run per event).
 */
export class Coalescer<T> {
  private running: Promise<T> | undefined;
  private pending: Promise<T> | undefined;

  /** Run `job` now, or once right after the run in progress (with the job of the first request made meanwhile). */
  run(job: () => Promise<T>): Promise<T> {
    if (!this.running) {
      this.running = job().finally(() => {
        this.running = undefined;
      });
      return this.running;
    }
    this.pending ??= this.running
      .catch(() => undefined)
      .then(() => {
        this.pending = undefined;
        return this.run(job);
      });
    return this.pending;
  }
}
