/**
 * flannel's key layout, used unchanged by every store so that tulle and flanneld hosts can share one etcd:
 *
 *   <prefix>/config                  the network config (net-conf.json)
 *   <prefix>/subnets/10.244.1.0-24   one lease per host; a dual-stack flannel lease is 10.244.1.0-24&fc00::-64
 */
import { InvalidValueError } from '../base/errors.js';
import { formatIPv4, maskOf, scanIPv4, scanPrefixLength, type Cidr4 } from '../base/ip.js';

export const DEFAULT_PREFIX = '/coreos.com/network';
/** Where L2 networks (Backend.Mode "l2") live by default: never under flannel's prefix, so they cannot mix. */
export const DEFAULT_L2_PREFIX = '/tulle.io/l2';

/**
 * An L2 network config under flannel's prefix would be read by flanneld hosts as a routed network (and the
 * other way round): refused, naming both the field and the option that fixes it.
 */
export function checkPrefixForMode(mode: string, prefix: string): void {
  if (mode === 'l2' && normalizePrefix(prefix) === DEFAULT_PREFIX) {
    throw new InvalidValueError(
      'Backend.Mode',
      'l2',
      `cannot live under flannel's prefix ${DEFAULT_PREFIX} (flanneld hosts would read it as a routed network): give --prefix ${DEFAULT_L2_PREFIX}`,
    );
  }
}

/** Check and normalise a key prefix: starts with "/", no trailing "/". */
export function normalizePrefix(prefix: string, field = '--prefix'): string {
  if (typeof prefix !== 'string' || !prefix.startsWith('/') || /\s/.test(prefix)) {
    throw new InvalidValueError(field, prefix, 'is not a key prefix (it starts with "/" and has no spaces, like /coreos.com/network)');
  }
  const trimmed = prefix.replace(/\/+$/, '');
  if (trimmed === '') throw new InvalidValueError(field, prefix, 'is not a key prefix (it names a directory under "/", like /coreos.com/network)');
  return trimmed;
}

export function configKey(prefix: string): string {
  return `${prefix}/config`;
}

/** The prefix every lease key starts with (with the trailing slash, so that ".../subnetsX" is not included). */
export function subnetsPrefix(prefix: string): string {
  return `${prefix}/subnets/`;
}

/** "10.244.1.0/24" -> "<prefix>/subnets/10.244.1.0-24" */
export function subnetKey(prefix: string, subnet: Cidr4): string {
  return `${subnetsPrefix(prefix)}${formatIPv4(subnet.network)}-${subnet.prefix}`;
}

export interface ParsedSubnetKey {
  subnet: Cidr4;
  /** The IPv6 half of a flannel dual-stack key ("fc00::-64"), kept as text: tulle's overlay is IPv4. */
  ipv6Subnet?: string;
}

/** The IPv6 half of a dual-stack key, after the "&": "fc00::-64". */
const IPV6_HALF_RE = /^([0-9a-fA-F:]+)-(\d{1,3})$/;

/** subnetsPrefix of the prefix last asked for: the keys of one listing, thousands of them, share one prefix. */
let lastPrefix: string | undefined;
let lastSubnetsPrefix = '';

/**
 * Parse a lease key; undefined when the key is not a subnet key of this prefix: "<prefix>/subnets/" then an
 * IPv4 network address (no leading zeros, host bits clear), "-", a length of one or two digits up to 32, and
 * optionally "&" and the IPv6 half. Scanned rather than matched with a regular expression: an agent parses every
 * key of a listing (5000 and more when a big cluster's agent starts).
 */
export function parseSubnetKey(prefix: string, key: string): ParsedSubnetKey | undefined {
  if (prefix !== lastPrefix) {
    lastSubnetsPrefix = subnetsPrefix(prefix);
    lastPrefix = prefix;
  }
  const start = lastSubnetsPrefix.length;
  if (!key.startsWith(lastSubnetsPrefix)) return undefined;
  const dash = key.indexOf('-', start);
  if (dash < 0) return undefined;
  const network = scanIPv4(key, start, dash);
  const amp = key.indexOf('&', dash);
  const end = amp < 0 ? key.length : amp;
  const length = scanPrefixLength(key, dash + 1, end);
  if (network < 0 || length < 0 || (network & maskOf(length)) >>> 0 !== network) return undefined;
  const subnet: Cidr4 = { network, prefix: length };
  if (amp < 0) return { subnet };
  const v6 = IPV6_HALF_RE.exec(key.slice(amp + 1));
  return v6 ? { subnet, ipv6Subnet: `${v6[1]}/${v6[2]}` } : undefined;
}

/** The smallest string greater than every string starting with `prefix` (etcd's range_end for a prefix). */
export function prefixEnd(prefix: string): string {
  if (prefix === '') return '\u{10ffff}';
  return prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
}
