/**
 * errno numbers in words, for every error message that reports a system call or a kernel reply: the name
 * (ENETUNREACH) and strerror's text (what iproute2 prints).
 */
import { getSystemErrorMap } from 'node:util';
import { native } from './native.js';

/** [name, strerror text]; strerror's words come from the binding (they are what iproute2 prints). */
export function describeErrno(errnoNumber: number): [string, string] {
  try {
    return native().describeErrno(errnoNumber);
  } catch {
    const entry = getSystemErrorMap().get(-errnoNumber);
    return entry ? [entry[0], entry[1]] : [`E${errnoNumber}`, `error ${errnoNumber}`];
  }
}
