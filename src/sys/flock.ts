/**
 * flock(2) on an open file descriptor, for the CNI plugin to share host-local's IPAM lock file
 * (/var/lib/cni/networks/<name>/lock). A blocking lock waits on a libuv pool thread, never on the event loop.
 */
import { InvalidValueError, TulleError } from '../base/errors.js';
import { describeErrno } from './errno.js';
import { native } from './native.js';

export type LockMode = 'exclusive' | 'shared' | 'unlock';

export class LockError extends TulleError {
  /** errno name, e.g. 'EBADF'. */
  readonly errno: string;
  constructor(fd: number, mode: LockMode, errnoNumber: number, options?: { cause?: unknown }) {
    const [name, text] = describeErrno(errnoNumber);
    super('TLE_LOCK', `flock fd ${fd} ${mode}: ${name} (${text})`, options);
    this.errno = name;
  }
}

function check(fd: number, mode: LockMode): void {
  if (!Number.isInteger(fd) || fd < 0) throw new InvalidValueError('flock fd', fd, 'must be an open file descriptor (a non-negative integer)');
  if (mode !== 'exclusive' && mode !== 'shared' && mode !== 'unlock') throw new InvalidValueError('flock mode', mode, 'must be exclusive, shared or unlock');
}

function wrap(fd: number, mode: LockMode, err: unknown): unknown {
  const e = err as NodeJS.ErrnoException;
  return typeof e?.errno === 'number' ? new LockError(fd, mode, e.errno, { cause: err }) : err;
}

/** flock(fd, LOCK_EX | LOCK_SH | LOCK_UN): waits until the lock is granted. */
export async function flock(fd: number, mode: LockMode): Promise<void> {
  check(fd, mode);
  try {
    await native().flock(fd, mode);
  } catch (err) {
    throw wrap(fd, mode, err);
  }
}

/** flock(fd, mode | LOCK_NB): true if granted now, false if another holder conflicts. */
export function tryFlock(fd: number, mode: LockMode): boolean {
  check(fd, mode);
  try {
    return native().tryFlock(fd, mode);
  } catch (err) {
    throw wrap(fd, mode, err);
  }
}
