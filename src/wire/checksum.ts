/**
 * The Internet checksum (RFC 1071): the one's-complement of the one's-complement sum of 16-bit big-endian
 * words. IPv4 covers its header with it; UDP, ICMPv6 (and TCP) also cover a pseudo-header of addresses,
 * protocol and length, so a checksum also proves the packet reached the right host.
 */

/** Sum of 16-bit big-endian words over buf[start, end), an odd last byte padded with zero; not folded. */
export function sum16(buf: Uint8Array, start: number, end: number, initial = 0): number {
  let sum = initial;
  let i = start;
  // Two words per step keeps the loop short; the sum of 32k words cannot leave the exact-integer range.
  for (; i + 3 < end; i += 4) sum += ((buf[i]! << 8) | buf[i + 1]!) + ((buf[i + 2]! << 8) | buf[i + 3]!);
  for (; i + 1 < end; i += 2) sum += (buf[i]! << 8) | buf[i + 1]!;
  if (i < end) sum += buf[i]! << 8;
  return sum;
}

/** Fold carries back into 16 bits (end-around carry). */
export function fold16(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return sum;
}

/** The checksum to store in a header whose checksum field was zero while summing. */
export function internetChecksum(buf: Uint8Array, start: number, end: number, initial = 0): number {
  return ~fold16(sum16(buf, start, end, initial)) & 0xffff;
}

/** True when a covered range that includes its stored checksum sums to all ones, i.e. the checksum is right. */
export function checksumHolds(buf: Uint8Array, start: number, end: number, initial = 0): boolean {
  return fold16(sum16(buf, start, end, initial)) === 0xffff;
}

/** Pseudo-header sum for UDP/TCP over IPv4: source, destination, zero+protocol, upper-layer length. */
export function pseudoHeaderSum4(src: number, dst: number, protocol: number, length: number): number {
  return (src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff) + protocol + length;
}

/** Pseudo-header sum for IPv6 (RFC 8200 section 8.1): 16-byte addresses, 32-bit length, next header. */
export function pseudoHeaderSum6(src: Uint8Array, srcOffset: number, dst: Uint8Array, dstOffset: number, nextHeader: number, length: number): number {
  return sum16(src, srcOffset, srcOffset + 16) + sum16(dst, dstOffset, dstOffset + 16) + (length >>> 16) + (length & 0xffff) + nextHeader;
}

/**
 * What a checksum check found, in the words tshark uses: `good`, `bad`, `none` (the sender did not compute one:
 * a zero UDP checksum over IPv4), `unverified` (the capture holds only part of the covered bytes).
 */
export type ChecksumStatus = 'good' | 'bad' | 'none' | 'unverified';
