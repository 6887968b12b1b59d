/**
 * The host end of a pod's veth pair is named from the attachment alone, so that DEL and GC find it without any
 * state: `veth` + the first 11 hex digits of sha256("<containerID>/<ifname>"), 15 bytes, Linux's limit. 44 bits
 * keep a collision between two live pods on one host below one in ten million even at a thousand pods (a
 * collision would let one pod's DEL remove the other's link).
 */
import { createHash } from 'node:crypto';

export const HOST_VETH_PREFIX = 'veth';

export function hostVethName(containerId: string, ifName: string): string {
  return HOST_VETH_PREFIX + createHash('sha256').update(`${containerId.trim()}/${ifName}`).digest('hex').slice(0, 11);
}
