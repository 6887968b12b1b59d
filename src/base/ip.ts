/**
 * IPv4/IPv6 address, CIDR and MAC helpers. Addresses are kept as strings at module boundaries (what users,
 * iproute2 and the store read) and as numbers/bytes only inside arithmetic. IPv4 arithmetic uses unsigned
 * 32-bit numbers; IPv6 is parsed and formatted via node:net's canonical rules.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { InvalidValueError } from './errors.js';

export interface Cidr4 {
  /** Network address as unsigned 32-bit integer (host bits cleared). */
  readonly network: number;
  readonly prefix: number;
}

export function parseIPv4(text: string, field = 'address'): number {
  const n = typeof text === 'string' ? scanIPv4(text, 0, text.length) : -1;
  if (n < 0) throw new InvalidValueError(field, text, 'is not an IPv4 address');
  return n;
}

const DOT = 46;
const ZERO = 48;

/**
 * text[start, end) as an unsigned 32-bit IPv4 address, or -1: four decimal octets 0..255 joined by dots, no
 * leading zeros — exactly node:net's isIPv4 (a unit test holds them equal). A scanner rather than isIPv4 + split:
 * the agent parses every lease's addresses on every full reconcile, 5000 peers and more.
 */
export function scanIPv4(text: string, start: number, end: number): number {
  let value = 0;
  let i = start;
  for (let octet = 0; octet < 4; octet++) {
    if (octet > 0) {
      if (i >= end || text.charCodeAt(i) !== DOT) return -1;
      i++;
    }
    const first = i;
    let n = 0;
    while (i < end && i - first < 3) {
      const d = text.charCodeAt(i) - ZERO;
      if (d < 0 || d > 9) break;
      n = n * 10 + d;
      i++;
    }
    const digits = i - first;
    if (digits === 0 || n > 255 || (digits > 1 && text.charCodeAt(first) === ZERO)) return -1;
    value = value * 256 + n;
  }
  return i === end ? value : -1;
}

/** An IPv4 address as a number, or NaN when `text` is not one (for comparisons with numbers read from the kernel). */
export function ipv4Number(text: string): number {
  const n = typeof text === 'string' ? scanIPv4(text, 0, text.length) : -1;
  return n < 0 ? NaN : n;
}

/** text[start, end) as an IPv4 prefix length: one or two decimal digits, 0..32; else -1. */
export function scanPrefixLength(text: string, start: number, end: number): number {
  const digits = end - start;
  if (digits < 1 || digits > 2) return -1;
  let n = 0;
  for (let i = start; i < end; i++) {
    const d = text.charCodeAt(i) - ZERO;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
  }
  return n > 32 ? -1 : n;
}

export function formatIPv4(n: number): string {
  return `${(n >>> 24) & 255}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

export function maskOf(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/** Parse "10.244.0.0/16". Host bits must be zero unless `allowHostBits` (then they are cleared). */
export function parseCidr4(text: string, field = 'cidr', allowHostBits = false): Cidr4 {
  const slash = typeof text === 'string' ? text.indexOf('/') : -1;
  const addr = slash > 0 ? scanIPv4(text, 0, slash) : -1;
  const prefix = slash > 0 ? scanPrefixLength(text, slash + 1, text.length) : -1;
  if (addr < 0 || prefix < 0) {
    throw new InvalidValueError(field, text, 'is not an IPv4 CIDR (like 10.244.0.0/16)');
  }
  const network = (addr & maskOf(prefix)) >>> 0;
  if (!allowHostBits && network !== addr) {
    throw new InvalidValueError(field, text, `has host bits set (the network address is ${formatIPv4(network)}/${prefix})`);
  }
  return { network, prefix };
}

export function formatCidr4(c: Cidr4): string {
  return `${formatIPv4(c.network)}/${c.prefix}`;
}

export function cidrSize(c: Cidr4): number {
  return 2 ** (32 - c.prefix);
}

export function cidrContains(outer: Cidr4, addr: number): boolean {
  return (addr & maskOf(outer.prefix)) >>> 0 === outer.network;
}

export function cidrContainsCidr(outer: Cidr4, inner: Cidr4): boolean {
  return inner.prefix >= outer.prefix && cidrContains(outer, inner.network);
}

export function cidrsOverlap(a: Cidr4, b: Cidr4): boolean {
  return cidrContains(a, b.network) || cidrContains(b, a.network);
}

/** The n-th address of a CIDR (0 = network address), e.g. nthAddress(10.244.1.0/24, 1) = 10.244.1.1. */
export function nthAddress(c: Cidr4, n: number): number {
  return (c.network + n) >>> 0;
}

/** Parse IPv6 text (with `::` and an embedded IPv4 tail) into 16 bytes. */
export function parseIPv6(text: string, field = 'address'): Buffer {
  if (typeof text !== 'string' || !isIPv6(text) || text.includes('%')) throw new InvalidValueError(field, text, 'is not an IPv6 address');
  let head = text;
  const words: number[] = [];
  // An embedded IPv4 tail (::ffff:192.0.2.1) becomes the last two words.
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(head);
  let tail: number[] = [];
  if (v4) {
    const n = parseIPv4(v4[1]!, field);
    tail = [n >>> 16, n & 0xffff];
    head = head.slice(0, -v4[1]!.length);
    if (head.endsWith(':') && !head.endsWith('::')) head = head.slice(0, -1);
  }
  const parseGroup = (s: string): number[] => (s === '' ? [] : s.split(':').map((g) => parseInt(g, 16)));
  const gap = head.indexOf('::');
  if (gap >= 0) {
    const left = parseGroup(head.slice(0, gap));
    const right = [...parseGroup(head.slice(gap + 2)), ...tail];
    words.push(...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right);
  } else {
    words.push(...parseGroup(head), ...tail);
  }
  const out = Buffer.alloc(16);
  words.forEach((w, i) => out.writeUInt16BE(w, i * 2));
  return out;
}

/** RFC 5952 text of 16 bytes at `offset`: lower case, no leading zeros, the longest run (>= 2) of zero words as `::`. */
export function formatIPv6(buf: Uint8Array, offset = 0): string {
  const words: number[] = [];
  for (let i = 0; i < 8; i++) words.push((buf[offset + i * 2]! << 8) | buf[offset + i * 2 + 1]!);
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  // IPv4-mapped addresses keep their dotted tail, as every tool prints them.
  if (bestStart === 0 && bestLen === 5 && words[5] === 0xffff) {
    return `::ffff:${formatIPv4(((words[6]! << 16) | words[7]!) >>> 0)}`;
  }
  const hex = (ws: number[]): string => ws.map((w) => w.toString(16)).join(':');
  if (bestStart < 0) return hex(words);
  return `${hex(words.slice(0, bestStart))}::${hex(words.slice(bestStart + bestLen))}`;
}

export function isIP(text: string): boolean {
  return isIPv4(text) || isIPv6(text);
}

const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

/** Normalise a MAC to lower-case colon form; throws naming the field otherwise. */
export function parseMac(text: string, field = 'mac'): string {
  const lower = typeof text === 'string' ? text.toLowerCase() : text;
  if (typeof lower !== 'string' || !MAC_RE.test(lower)) throw new InvalidValueError(field, text, 'is not a MAC address (like 0e:f0:b5:8c:28:f5)');
  return lower;
}

/** A MAC in colon form (either case) as a 48-bit number, or NaN: the kernel's NDA_LLADDR compared without text. */
export function macNumber(text: string): number {
  if (typeof text !== 'string' || text.length !== 17) return NaN;
  let n = 0;
  for (let i = 0; i < 17; i += 3) {
    if (i > 0 && text.charCodeAt(i - 1) !== 58) return NaN; // ':'
    const hi = hexDigit(text.charCodeAt(i));
    const lo = hexDigit(text.charCodeAt(i + 1));
    if (hi < 0 || lo < 0) return NaN;
    n = n * 256 + hi * 16 + lo;
  }
  return n;
}

function hexDigit(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  const lower = c | 32;
  return lower >= 97 && lower <= 102 ? lower - 87 : -1;
}

/** macNumber's inverse: lower-case colon form. */
export function formatMacNumber(n: number): string {
  let s = '';
  for (let shift = 40; shift >= 0; shift -= 8) s += (shift < 40 ? ':' : '') + (Math.floor(n / 2 ** shift) & 255).toString(16).padStart(2, '0');
  return s;
}

export function macToBytes(mac: string): Buffer {
  return Buffer.from(
    parseMac(mac)
      .split(':')
      .map((h) => parseInt(h, 16)),
  );
}

export function bytesToMac(b: Uint8Array, offset = 0): string {
  let s = '';
  for (let i = 0; i < 6; i++) s += (i ? ':' : '') + b[offset + i]!.toString(16).padStart(2, '0');
  return s;
}

/**
 * A random locally administered unicast MAC (bit 1 of the first octet set, bit 0 clear), as the kernel picks
 * for a new vxlan device.
 */
export function randomMac(random: (n: number) => Buffer): string {
  const b = random(6);
  b[0] = (b[0]! & 0xfe) | 0x02;
  return bytesToMac(b);
}
