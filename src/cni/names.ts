/**
 * The host end of a pod's veth pair is named from the attachment alone, so that DEL and GC find it without any
 * state: `veth` + 11 hex digits of a 64-bit FNV-1a hash of "<containerID>/<ifname>", 15 bytes, Linux's limit.
 * 44 bits keep a collision between two live pods on one host below one in ten million even at a thousand pods (a
 * collision would let one pod's DEL remove the other's link). FNV rather than node:crypto: loading crypto would
 * cost every plugin start several milliseconds, and the names need spread, not secrecy.
 */
export const HOST_VETH_PREFIX = 'veth';

const FNV_OFFSET = 0xcbf29ce484222325n;
const FNV_PRIME = 0x100000001b3n;
const MASK64 = 0xffffffffffffffffn;

/** 64-bit FNV-1a over the UTF-8 bytes of `text`. */
export function fnv1a64(text: string): bigint {
  let h = FNV_OFFSET;
  for (const byte of Buffer.from(text, 'utf8')) h = ((h ^ BigInt(byte)) * FNV_PRIME) & MASK64;
  return h;
}

export function hostVethName(containerId: string, ifName: string): string {
  return HOST_VETH_PREFIX + fnv1a64(`${containerId.trim()}/${ifName}`).toString(16).padStart(16, '0').slice(0, 11);
}
