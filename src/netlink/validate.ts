/**
 * Input checks shared by the request builders. Each throws InvalidValueError naming the field, the value and the
 * rule, before anything is sent, so a bad call never leaves half-done kernel state.
 */
import { InvalidValueError } from '../base/errors.js';
import { macNumber, parseMac } from '../base/ip.js';

/** The last name that passed: a batch of thousands of ops names one or two devices over and over. */
let lastGoodName = '';

/** Linux interface names: 1..15 bytes, no '/', no whitespace, not '.' or '..' (dev_valid_name). */
export function checkIfName(value: string, field: string): string {
  if (value === lastGoodName) return value;
  if (typeof value !== 'string' || !/^[^\s/:]{1,15}$/.test(value) || value === '.' || value === '..' || Buffer.byteLength(value) > 15) {
    throw new InvalidValueError(field, value, 'is not a valid interface name (1-15 characters, no "/", ":" or spaces)');
  }
  lastGoodName = value;
  return value;
}

export function checkInt(value: number, field: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new InvalidValueError(field, value, `is out of range (must be an integer ${min}..${max})`);
  }
  return value;
}

export function checkMac(value: string, field: string): string {
  return parseMac(value, field);
}

/** 'aa:bb:cc:dd:ee:ff' (either case) -> 6 bytes; a character loop, as batches parse thousands of MACs. */
export function macBytes(value: string, field: string): Buffer {
  const n = macNumber(value);
  if (n !== n) parseMac(value, field); // throws with the field name
  const b = Buffer.allocUnsafe(6);
  b.writeUIntBE(n, 0, 6);
  return b;
}

export function checkBool(value: unknown, field: string): boolean | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'boolean') throw new InvalidValueError(field, value, 'must be true or false');
  return value;
}

export function checkOneOf<T extends string>(value: T, field: string, allowed: readonly T[]): T {
  if (!allowed.includes(value)) throw new InvalidValueError(field, value, `must be one of ${allowed.join(', ')}`);
  return value;
}
