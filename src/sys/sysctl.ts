/**
 * Per-namespace sysctls (`ip netns exec NS sysctl -w net.ipv4.conf.veth1.proxy_arp=1`): /proc/sys/net shows the
 * namespace of whoever opens the file, so the binding opens it from inside the namespace. Only keys under
 * `net.` are accepted: every other sysctl is machine-wide, and tulle never changes the machine.
 */
import { InvalidValueError, TulleError } from '../base/errors.js';
import { resolveNetns } from '../netns/resolve.js';
import { describeErrno } from './errno.js';
import { native } from './native.js';

/**
 * A sysctl the kernel refused or that could not be reached. The message reads like the sysctl(8) command, then
 * the errno name and its text, then the step that failed:
 *   `ip netns exec t-x sysctl -w net.ipv4.conf.nosuch.forwarding=1: ENOENT (No such file or directory): write /proc/sys/...`
 * Callers branch on `errno`, never on the text.
 */
export class SysctlError extends TulleError {
  /** errno name, e.g. 'ENOENT'. */
  readonly errno: string;
  readonly errnoNumber: number;
  /** The sysctl(8) command that failed. */
  readonly command: string;
  constructor(command: string, errnoNumber: number, step: string | undefined, options?: { cause?: unknown }) {
    const [name, text] = describeErrno(errnoNumber);
    super('TLE_SYSCTL', `${command}: ${name} (${text})${step ? `: ${step}` : ''}`, options);
    this.errno = name;
    this.errnoNumber = errnoNumber;
    this.command = command;
  }
}

/**
 * 'net.ipv4.conf.veth1.proxy_arp' -> /proc/sys/net/ipv4/conf/veth1/proxy_arp. As with sysctl(8), a '/' inside a
 * dotted key stands for a '.' in a name ('net.ipv4.conf.flannel/1.forwarding' is flannel.1's), and a key written
 * with slashes ('net/ipv4/conf/flannel.1/forwarding') is taken as a path.
 */
export function sysctlPath(key: string): string {
  if (typeof key !== 'string') throw new InvalidValueError('sysctl key', key, 'must be a string like net.ipv4.conf.veth1.proxy_arp');
  const parts = key.startsWith('net/') ? key.split('/') : key.split('.').map((p) => p.replaceAll('/', '.'));
  if (parts[0] !== 'net' || parts.length < 2 || parts.some((p) => p === '' || p === '.' || p === '..' || !/^[A-Za-z0-9_.:@-]+$/.test(p))) {
    throw new InvalidValueError('sysctl key', key, 'must name a per-namespace setting under net. (like net.ipv4.conf.veth1.proxy_arp)');
  }
  return `/proc/sys/${parts.join('/')}`;
}

function where(netns: string | undefined): string {
  return netns === undefined ? '' : `ip netns exec ${netns} `;
}

/** `ip netns exec NS sysctl -w KEY=VALUE` (netns undefined: this process's namespace). */
export async function setSysctl(netns: string | undefined, key: string, value: string | number): Promise<void> {
  const path = sysctlPath(key);
  if ((typeof value !== 'string' && typeof value !== 'number') || /[\n\0]/.test(String(value))) {
    throw new InvalidValueError(`sysctl ${key}`, value, 'must be a single-line string or a number');
  }
  const command = `${where(netns)}sysctl -w ${key}=${value}`;
  try {
    await native().writeFile(resolveNetns(netns) ?? null, path, `${value}\n`);
  } catch (err) {
    throw toSysctlError(command, err);
  }
}

/** `ip netns exec NS sysctl -n KEY`, without the trailing newline. */
export async function getSysctl(netns: string | undefined, key: string): Promise<string> {
  const path = sysctlPath(key);
  const command = `${where(netns)}sysctl -n ${key}`;
  try {
    return (await native().readFile(resolveNetns(netns) ?? null, path)).replace(/\n$/, '');
  } catch (err) {
    throw toSysctlError(command, err);
  }
}

function toSysctlError(command: string, err: unknown): unknown {
  const e = err as NodeJS.ErrnoException;
  // The binding reports errno as a positive number and names the failed step ('open network namespace',
  // 'write /proc/sys/...') as its syscall; keep that as the detail.
  if (e && typeof e.errno === 'number' && e.errno !== 0)
    return new SysctlError(command, Math.abs(e.errno), typeof e.syscall === 'string' ? e.syscall : undefined, { cause: err });
  return err;
}
