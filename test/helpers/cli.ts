/** Checks on what a `tulle` process printed. */
import assert from 'node:assert/strict';

/** A failure is exactly one line on stderr matching `pattern`, with this exit status and no stack trace. */
export function assertOneLineError(r: { stderr: string; status: number | null }, status: number, pattern: RegExp): void {
  assert.equal(r.status, status, r.stderr);
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0]!, pattern);
  assert.doesNotMatch(r.stderr, /\n\s+at /);
}
