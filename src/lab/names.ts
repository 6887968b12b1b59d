/**
 * How a lab names things. Every namespace of lab L is `tulle-L-<target>`: `tulle-L-h1` (a host), `tulle-L-sw`
 * (the switch), `tulle-L-rt` (the router). A lab name holds no '-', so the prefix `tulle-L-` belongs to exactly
 * one lab (`tulle-a-` never matches lab `a-b`'s namespaces) and `lab down` may delete by prefix without touching
 * another lab.
 *
 * Interface names never contain the lab name: each lab has its own switch namespaces, so a port only has to be
 * unique inside them (`h1`..`h128`, `rt`), and every interface name fits Linux's 15 bytes whatever the lab is called.
 */
import { InvalidValueError } from '../base/errors.js';

export const NAMESPACE_PREFIX = 'tulle-';
export const DEFAULT_LAB_NAME = 'demo';
export const MAX_LAB_NAME_LENGTH = 16;
export const MAX_HOSTS = 128;

const LAB_NAME_RE = /^[a-z][a-z0-9]*$/;
/** Targets are host, switch, router (and later pod) names inside one lab: `h1`, `sw2`, `rt`, `h1-p3`. */
const TARGET_RE = /^[a-z][a-z0-9]*(-[a-z0-9]+)*$/;

export const LAB_NAME_RULE = `is not a valid lab name (1..${MAX_LAB_NAME_LENGTH} lower-case letters and digits, starting with a letter; it becomes part of namespace names like tulle-NAME-h1)`;

/** Throws InvalidValueError naming `field` (e.g. `--name`) unless `name` is an allowed lab name. */
export function validateLabName(name: string, field = 'lab name'): string {
  if (typeof name !== 'string' || !LAB_NAME_RE.test(name) || name.length > MAX_LAB_NAME_LENGTH) {
    throw new InvalidValueError(field, name, LAB_NAME_RULE, 'TLE_LAB_INVALID_NAME');
  }
  return name;
}

/** `tulle-<lab>-`: the prefix every namespace of the lab starts with. */
export function labPrefix(lab: string): string {
  return `${NAMESPACE_PREFIX}${validateLabName(lab)}-`;
}

/** The namespace of `target` (`h1`, `rt`, `sw`, ...) in `lab`: `tulle-<lab>-<target>`. */
export function labNamespace(lab: string, target: string): string {
  if (typeof target !== 'string' || !TARGET_RE.test(target) || target.length > 40) {
    throw new InvalidValueError('target', target, 'is not a lab target (a host like h1, the router rt, a switch like sw1)', 'TLE_LAB_INVALID_TARGET');
  }
  return `${labPrefix(lab)}${target}`;
}

/** The lab a namespace name belongs to (`tulle-demo-h1` -> `demo`), or undefined for namespaces of no lab. */
export function labOfNamespace(namespace: string): string | undefined {
  if (!namespace.startsWith(NAMESPACE_PREFIX)) return undefined;
  const rest = namespace.slice(NAMESPACE_PREFIX.length);
  const dash = rest.indexOf('-');
  if (dash <= 0 || dash === rest.length - 1) return undefined;
  const lab = rest.slice(0, dash);
  return LAB_NAME_RE.test(lab) && lab.length <= MAX_LAB_NAME_LENGTH ? lab : undefined;
}

/** The host name of the i-th host (1-based). */
export function hostName(i: number): string {
  return `h${i}`;
}
