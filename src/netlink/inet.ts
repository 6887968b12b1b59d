/**
 * IP addresses and prefixes as the kernel wants them: 4 or 16 raw bytes in network order. Text is validated with
 * node:net and src/base/ip.ts, and bad input names the field (InvalidValueError).
 */
import { isIPv6 } from 'node:net';
import { InvalidValueError } from '../base/errors.js';
import { formatIPv4, formatIPv6, maskOf, parseIPv6, scanIPv4 } from '../base/ip.js';
import { AF_INET, AF_INET6 } from './constants.js';

export type Family = 4 | 6;

export interface InetAddress {
  family: Family;
  bytes: Buffer;
}

export interface InetPrefix extends InetAddress {
  prefix: number;
}

export function addressFamily(family: Family): number {
  return family === 4 ? AF_INET : AF_INET6;
}

export function parseAddress(text: string, field: string): InetAddress {
  const v4 = typeof text === 'string' ? scanIPv4(text, 0, text.length) : -1;
  if (v4 >= 0) {
    const b = Buffer.allocUnsafe(4);
    b.writeUInt32BE(v4);
    return { family: 4, bytes: b };
  }
  if (typeof text === 'string' && isIPv6(text) && !text.includes('%')) return { family: 6, bytes: parseIPv6(text, field) };
  throw new InvalidValueError(field, text, 'is not an IP address');
}

/**
 * "10.244.2.0/24" (or "fd00::/64"); a bare address means the whole-address prefix (/32 or /128), as `ip` reads
 * it. With `hostBits: 'reject'` the address must be the network address (routes); 'keep' leaves them (interface
 * addresses, where they are the point).
 */
export function parsePrefix(text: string, field: string, hostBits: 'reject' | 'keep'): InetPrefix {
  if (typeof text !== 'string') throw new InvalidValueError(field, text, 'is not an IP prefix (like 10.244.2.0/24)');
  const fast = parseIPv4Prefix(text, hostBits);
  if (fast) return fast;
  const slash = text.indexOf('/');
  const addrText = slash < 0 ? text : text.slice(0, slash);
  const prefixText = slash < 0 ? undefined : text.slice(slash + 1);
  let addr: InetAddress;
  try {
    addr = parseAddress(addrText, field);
  } catch {
    throw new InvalidValueError(field, text, 'is not an IP prefix (like 10.244.2.0/24)');
  }
  const max = addr.family === 4 ? 32 : 128;
  const prefix = prefixText === undefined ? max : /^\d{1,3}$/.test(prefixText) ? Number(prefixText) : NaN;
  if (!(prefix >= 0 && prefix <= max)) throw new InvalidValueError(field, text, `has an invalid prefix length (must be 0..${max})`);
  if (hostBits === 'reject') {
    const network = maskBytes(addr.bytes, prefix);
    if (!network.equals(addr.bytes)) {
      throw new InvalidValueError(field, text, `has host bits set (the network is ${formatAddress(network)}/${prefix})`);
    }
  }
  return { ...addr, prefix };
}

/** The common case, "a.b.c.d/len" valid as given, without slicing strings; undefined sends it the long way. */
function parseIPv4Prefix(text: string, hostBits: 'reject' | 'keep'): InetPrefix | undefined {
  const slash = text.indexOf('/');
  if (slash < 7 || text.length - slash < 2 || text.length - slash > 3) return undefined;
  let prefix = 0;
  for (let i = slash + 1; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 48 || c > 57) return undefined;
    prefix = prefix * 10 + (c - 48);
  }
  if (prefix > 32 || (text.length - slash === 3 && text.charCodeAt(slash + 1) === 48)) return undefined;
  const addr = scanIPv4(text, 0, slash);
  if (addr < 0) return undefined;
  if (hostBits === 'reject' && (addr & maskOf(prefix)) >>> 0 !== addr) return undefined;
  const bytes = Buffer.allocUnsafe(4);
  bytes.writeUInt32BE(addr);
  return { family: 4, bytes, prefix };
}

function maskBytes(bytes: Buffer, prefix: number): Buffer {
  if (bytes.length === 4) {
    const b = Buffer.alloc(4);
    b.writeUInt32BE((bytes.readUInt32BE(0) & maskOf(prefix)) >>> 0);
    return b;
  }
  const b = Buffer.from(bytes);
  for (let i = 0; i < 16; i++) {
    const bits = Math.max(0, Math.min(8, prefix - i * 8));
    b[i]! &= (0xff << (8 - bits)) & 0xff;
  }
  return b;
}

/** 4 bytes -> dotted quad; 16 bytes -> RFC 5952 text (lower case, longest zero run as ::). */
export function formatAddress(bytes: Buffer): string {
  return bytes.length === 4 ? formatIPv4(bytes.readUInt32BE(0)) : formatIPv6(bytes);
}
