/**
 * NetlinkError: a kernel operation failed. The message reads like the iproute2 command that would have done the
 * same, then the errno name and its strerror text, then the kernel's own explanation when it sent one:
 *   `route replace 10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink: ENETUNREACH (Network is unreachable)`
 * Callers branch on `errno` ('EEXIST', 'ENODEV', ...), never on the text.
 */
import { TulleError } from '../base/errors.js';
import { describeErrno } from '../sys/errno.js';

export class NetlinkError extends TulleError {
  /** errno name, e.g. 'ENETUNREACH'. */
  readonly errno: string;
  /** errno number, e.g. 101. */
  readonly errnoNumber: number;
  /** The iproute2-style command that failed, e.g. `route replace 10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink`. */
  readonly command: string;
  /** The kernel's extended ACK message, when it gave one (e.g. 'Nexthop has invalid gateway'). */
  readonly kernelMessage: string | undefined;

  constructor(command: string, errnoNumber: number, kernelMessage?: string, options?: { cause?: unknown }) {
    const [name, text] = describeErrno(errnoNumber);
    super('TLE_NETLINK', `${command}: ${name} (${text})${kernelMessage ? `: ${kernelMessage}` : ''}`, options);
    this.errno = name;
    this.errnoNumber = errnoNumber;
    this.command = command;
    this.kernelMessage = kernelMessage || undefined;
  }
}

/** Wrap a system error (from the binding or node:fs) as a NetlinkError for `command`; anything else is returned as is. */
export function fromSystemError(command: string, err: unknown): unknown {
  const e = err as NodeJS.ErrnoException;
  // The binding reports errno as a positive number, node:fs as a negative one.
  if (e && typeof e.errno === 'number' && e.errno !== 0) {
    const detail = typeof e.syscall === 'string' ? `${e.syscall}${e.path ? ` ${e.path}` : ''}` : undefined;
    return new NetlinkError(command, Math.abs(e.errno), detail, { cause: err });
  }
  return err;
}
