/**
 * Addresses as the wire holds them. IPv4 addresses are unsigned 32-bit numbers inside the codec (cheap to read,
 * compare and hash) and dotted text at its edges (src/base/ip.ts). IPv6 addresses are 16 bytes inside and RFC 5952
 * text outside — the form iproute2, tcpdump and tshark print, so outputs compare as strings.
 */
import { formatIPv4, formatIPv6, parseIPv4, parseIPv6 } from '../base/ip.js';

export { formatIPv4, formatIPv6, parseIPv4, parseIPv6 };

export function readIPv4(buf: Uint8Array, offset: number): number {
  return ((buf[offset]! << 24) | (buf[offset + 1]! << 16) | (buf[offset + 2]! << 8) | buf[offset + 3]!) >>> 0;
}

export function writeIPv4(buf: Uint8Array, offset: number, addr: number): void {
  buf[offset] = addr >>> 24;
  buf[offset + 1] = (addr >>> 16) & 255;
  buf[offset + 2] = (addr >>> 8) & 255;
  buf[offset + 3] = addr & 255;
}

/** IP text of either family to the family and bytes the codec writes. */
export function parseIP(text: string, field = 'address'): { family: 4; v4: number } | { family: 6; v6: Buffer } {
  if (typeof text === 'string' && text.includes(':')) return { family: 6, v6: parseIPv6(text, field) };
  return { family: 4, v4: parseIPv4(text, field) };
}
