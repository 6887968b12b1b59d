/**
 * Every failure a user can cause or meet is a TulleError with a stable `code` (like undici's UND_ERR_*), so
 * callers branch on the code and tests assert it, never on message text. The message is written for a person:
 * it names what was wrong (field, value, rule, or the kernel command that failed) and, where it helps, what to do.
 *
 * Modules define their own subclasses next to the code that throws them; the ones here are shared by all.
 */
export class TulleError extends Error {
  /** Stable machine-readable code, e.g. "TLE_USAGE". Never changes once released. */
  readonly code: string;
  /** Process exit code the CLI uses when this error ends a command. */
  readonly exitCode: number;

  constructor(code: string, message: string, options?: { cause?: unknown; exitCode?: number }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.exitCode = options?.exitCode ?? 1;
  }
}

/** A command line that cannot be acted on: unknown option, missing argument, bad value. Exit code 2, like getopt tools. */
export class UsageError extends TulleError {
  constructor(message: string) {
    super('TLE_USAGE', message, { exitCode: 2 });
  }
}

/**
 * A value that breaks a rule: names the field, the value and the rule, e.g.
 * `SubnetLen: 33 is out of range (must be 8..30)`.
 */
export class InvalidValueError extends TulleError {
  readonly field: string;
  readonly value: unknown;
  readonly rule: string;

  constructor(field: string, value: unknown, rule: string, code = 'TLE_INVALID_VALUE') {
    super(code, `${field}: ${formatValue(value)} ${rule}`, { exitCode: 2 });
    this.field = field;
    this.value = value;
    this.rule = rule;
  }
}

/** A system tool or privilege the operation needs is not there (e.g. `tshark`, root). */
export class MissingRequirementError extends TulleError {
  constructor(what: string, hint: string) {
    super('TLE_MISSING_REQUIREMENT', `${what} is missing: ${hint}`);
  }
}

/** An external command (iproute2, nft, tshark, ...) exited non-zero. */
export class CommandFailedError extends TulleError {
  readonly command: string;
  readonly status: number | null;
  readonly stderr: string;

  constructor(command: string, status: number | null, stderr: string) {
    const detail = stderr.trim().split('\n').slice(-3).join(' | ');
    super('TLE_COMMAND_FAILED', `${command}: exited ${status ?? 'by signal'}${detail ? `: ${detail}` : ''}`);
    this.command = command;
    this.status = status;
    this.stderr = stderr;
  }
}

/** Longest quoted value a message carries; a longer one (a 1 MB field, say) is cut with an ellipsis. */
export const MAX_QUOTED_VALUE = 120;

/** Cut `text` to at most `max` characters, ending in "…" when something was cut. */
export function ellipsize(text: string, max = MAX_QUOTED_VALUE): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/** Quote strings so that an empty or space-holding value is visible in a message; long values are cut. */
export function formatValue(value: unknown): string {
  if (typeof value === 'string')
    return value.length > MAX_QUOTED_VALUE ? `${JSON.stringify(value.slice(0, MAX_QUOTED_VALUE))}… (${value.length} characters)` : JSON.stringify(value);
  if (value === undefined) return '(missing)';
  let text: string;
  // What JSON cannot say (a function, a symbol, a bigint, a circular object) is said by String(), whatever it says.
  try {
    // eslint-disable-next-line @typescript-eslint/no-base-to-string
    text = JSON.stringify(value) ?? String(value);
  } catch {
    // eslint-disable-next-line @typescript-eslint/no-base-to-string
    text = String(value);
  }
  return ellipsize(text);
}

/** The short one-line description used by every command for an error it did not expect. */
export function describeError(err: unknown): string {
  if (err instanceof TulleError) return `${err.message} [${err.code}]`;
  if (err instanceof Error) return err.message;
  return String(err);
}

/** The short reason a message quotes for a failed call: the errno name of a system error (ENOENT), else its message. */
export function errnoOrMessage(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  return 'code' in err && typeof err.code === 'string' ? err.code : err.message;
}
