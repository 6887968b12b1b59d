/** Checks on values handed to the frame builders, so a bad field fails loudly instead of being silently masked. */
import { InvalidValueError } from '../base/errors.js';

/** An integer in [min, max]; the message names the field and the allowed range. */
export function checkInt(field: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new InvalidValueError(field, value, `is out of range (must be an integer ${min}..${max})`);
  }
  return value;
}

export function checkBytes(field: string, value: unknown): Uint8Array {
  if (!(value instanceof Uint8Array)) throw new InvalidValueError(field, typeof value, 'must be a Buffer or Uint8Array');
  return value;
}
