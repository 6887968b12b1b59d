/**
 * Which network namespace a client, a veth peer or a sysctl refers to: a name under /run/netns (what `ip netns`
 * makes) or a path to a namespace file (/proc/PID/ns/net, a bind mount elsewhere).
 */
import { InvalidValueError } from '../base/errors.js';
import { netnsPath } from './netns.js';

/** The namespace file for `netns`; undefined means this process's own namespace. */
export function resolveNetns(netns: string | undefined): string | undefined {
  if (netns === undefined) return undefined;
  if (typeof netns !== 'string' || netns === '') throw new InvalidValueError('netns', netns, 'must be a namespace name (under /run/netns) or a path');
  if (netns.includes('/')) {
    if (!netns.startsWith('/')) throw new InvalidValueError('netns', netns, 'must be an absolute path or a plain namespace name');
    return netns;
  }
  return netnsPath(netns);
}
