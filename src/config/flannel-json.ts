/**
 * Reading JSON the way flannel (Go's encoding/json) does: object keys match struct fields case-insensitively
 * ("network", "NETWORK" and "Network" are the same field), and when a document holds several spellings of one
 * field the last one wins. Both the network config and lease values are read through these helpers, so a
 * document flanneld accepts is read the same way here.
 */
import { InvalidValueError } from '../base/errors.js';

export type JsonObject = Record<string, unknown>;

export function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The value of `field` in `obj`, matching keys case-insensitively; the last matching key wins, as in Go. */
export function getField(obj: JsonObject, field: string): unknown {
  const wanted = field.toLowerCase();
  let found: unknown = undefined;
  for (const [key, value] of Object.entries(obj)) if (key.toLowerCase() === wanted) found = value;
  return found;
}

/** The entries of `obj` whose keys are none of `known` (case-insensitively), in document order. */
export function otherFields(obj: JsonObject, known: readonly string[]): JsonObject {
  const lower = new Set(known.map((k) => k.toLowerCase()));
  const rest: JsonObject = {};
  for (const [key, value] of Object.entries(obj)) if (!lower.has(key.toLowerCase())) rest[key] = value;
  return rest;
}

/**
 * getField and otherFields for a fixed set of fields, in one pass over the object: a lease value is read this
 * way for every lease the store delivers (5000 at once when a big cluster's agent starts).
 */
export class FieldSet<K extends string> {
  private readonly exact = new Map<string, K>();
  private readonly lower = new Map<string, K>();

  constructor(names: readonly K[]) {
    for (const n of names) {
      this.exact.set(n, n);
      this.lower.set(n.toLowerCase(), n);
    }
  }

  /** The known fields (the last spelling wins) and the other entries, in document order. */
  split(obj: JsonObject): { fields: Partial<Record<K, unknown>>; rest: JsonObject } {
    const fields: Partial<Record<K, unknown>> = {};
    const rest: JsonObject = {};
    // for-in, not Object.keys: no key array per object (a JSON.parse result has no inherited enumerable keys).
    for (const key in obj) {
      const known = this.exact.get(key) ?? this.lower.get(key.toLowerCase());
      if (known === undefined) rest[key] = obj[key];
      else fields[known] = obj[key];
    }
    return { fields, rest };
  }
}

/** Parse JSON text; a syntax error becomes an InvalidValueError naming `what`. */
export function parseJsonText(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    const detail = err instanceof Error ? err.message : String(err);
    throw new InvalidValueError(what, abbreviate(text), `is not valid JSON (${detail})`);
  }
}

/** Long values are cut so that an error message stays one readable line. */
export function abbreviate(text: string, max = 80): string {
  return text.length > max ? `${text.slice(0, max)}...` : text;
}
