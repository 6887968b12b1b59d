/**
 * Addresses as the wire holds them. IPv4 addresses are unsigned 32-bit numbers inside the codec (cheap to read,
 * compare and hash) and dotted text at its edges (src/base/ip.ts). IPv6 addresses are 16 bytes inside and RFC 5952
 * text outside — the form iproute2, tcpdump and tshark print, so outputs compare as strings.
 */
import { isIPv6 } from 'node:net';
import { InvalidValueError } from '../base/errors.js';
import { formatIPv4, parseIPv4 } from '../base/ip.js';

export { formatIPv4, parseIPv4 };

export function readIPv4(buf: Uint8Array, offset: number): number {
  return ((buf[offset]! << 24) | (buf[offset + 1]! << 16) | (buf[offset + 2]! << 8) | buf[offset + 3]!) >>> 0;
}

export function writeIPv4(buf: Uint8Array, offset: number, addr: number): void {
  buf[offset] = addr >>> 24;
  buf[offset + 1] = (addr >>> 16) & 255;
  buf[offset + 2] = (addr >>> 8) & 255;
  buf[offset + 3] = addr & 255;
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
  for (let i = 0; i < 8; ) {
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

/** IP text of either family to the family and bytes the codec writes. */
export function parseIP(text: string, field = 'address'): { family: 4; v4: number } | { family: 6; v6: Buffer } {
  if (typeof text === 'string' && text.includes(':')) return { family: 6, v6: parseIPv6(text, field) };
  return { family: 4, v4: parseIPv4(text, field) };
}
