/**
 * Commands are declared as data (playwright's habit): a spec names every option with its type, default,
 * environment variable and help line; one parser turns argv into typed values and one printer turns the same
 * spec into `--help`. An error always names the option and the rule it broke.
 */
import { parseArgs } from 'node:util';
import { UsageError } from '../base/errors.js';

export type OptionType = 'string' | 'boolean' | 'integer';

export interface OptionSpec {
  type: OptionType;
  description: string;
  short?: string;
  /** Value placeholder shown in help, e.g. "URL". */
  valueName?: string;
  default?: string | number | boolean;
  /** Allowed values (string options). */
  choices?: readonly string[];
  /** Inclusive integer range. */
  min?: number;
  max?: number;
  /** May be given more than once; the value is then an array. */
  multiple?: boolean;
  /** Environment variable read when the option is absent from argv. */
  env?: string;
}

export interface PositionalSpec {
  name: string;
  description: string;
  required?: boolean;
  /** Takes all remaining arguments (e.g. the command after `--`). */
  rest?: boolean;
}

export type ParsedValue = string | number | boolean | string[] | number[] | undefined;

/**
 * The value an option yields, read off its spec: boolean, number (integer) or string (narrowed to its choices);
 * an array when repeatable; undefined only when it has no default. A spec typed only as OptionSpec (no literal
 * type known) yields any ParsedValue.
 */
export type OptionValue<O extends OptionSpec> = OptionSpec extends O
  ? ParsedValue
  : (O extends { multiple: true } ? ScalarValue<O>[] : ScalarValue<O>) | (O extends { default: string | number | boolean } ? never : undefined);
type ScalarValue<O extends OptionSpec> = O['type'] extends 'boolean'
  ? boolean
  : O['type'] extends 'integer'
    ? number
    : O extends { choices: readonly (infer C extends string)[] }
      ? C
      : string;
export type OptionValues<O extends Record<string, OptionSpec>> = { [K in keyof O]: OptionValue<O[K]> };

/** A positional's value: the remaining arguments (rest), a string (required), or string | undefined. */
export type PositionalValue<P extends PositionalSpec> = PositionalSpec extends P
  ? string | string[] | undefined
  : P extends { rest: true }
    ? string[]
    : P extends { required: true }
      ? string
      : string | undefined;
export type PositionalValues<P extends readonly PositionalSpec[]> = { [E in P[number] as E['name']]: PositionalValue<E> };

/** What a command's run() gets; typed from its spec when the spec was made with defineCommand. */
export interface ParsedArgs<
  O extends Record<string, OptionSpec> = Record<string, OptionSpec>,
  P extends readonly PositionalSpec[] = readonly PositionalSpec[],
> {
  options: OptionValues<O>;
  positionals: PositionalValues<P>;
  /** Options that took their default (given neither as a flag nor in the environment). */
  defaulted?: ReadonlySet<string>;
}

export interface CommandSpec<
  O extends Record<string, OptionSpec> = Record<string, OptionSpec>,
  P extends readonly PositionalSpec[] = readonly PositionalSpec[],
> {
  name: string;
  summary: string;
  /** Longer help text printed under the usage line. */
  details?: string;
  options?: O;
  positionals?: P;
  examples?: readonly string[];
  /** Runs the command; the resolved number is the exit code (0 when void). */
  run(args: ParsedArgs<O, P>): Promise<number | void>;
}

/**
 * Declare a command: its options' and positionals' literal types are kept, so run() gets each value typed as the
 * spec says (`--nodes` a number, `--mode` 'bridge' | 'routed', a required positional a string) and needs no cast.
 */
export function defineCommand<const O extends Record<string, OptionSpec> = Record<never, never>, const P extends readonly PositionalSpec[] = readonly []>(
  spec: CommandSpec<O, P>,
): CommandSpec<O, P> {
  return spec;
}

/** The parsed option values of a command made with defineCommand, e.g. `OptionsOf<typeof agentCommand>`. */
export type OptionsOf<C extends { options?: Record<string, OptionSpec> }> = OptionValues<NonNullable<C['options']>>;

/** Declare a set of options shared by several commands, keeping their literal types (see defineCommand). */
export function defineOptions<const O extends Record<string, OptionSpec>>(options: O): O {
  return options;
}

export interface CommandGroup {
  name: string;
  summary: string;
  subcommands: readonly CommandSpec[];
}

/**
 * Parse argv (then the environment, then the defaults) by the spec. The values are of the types OptionValue and
 * PositionalValue read off the spec: convert() makes each one so (test/unit/cli-spec.test.ts checks them), which
 * is why the typed signature can stand over the untyped body. With --help the answer is only the options and
 * `help: true`, positionals unread: check `options.help` before anything else (main() does).
 */
export function parseCommand<O extends Record<string, OptionSpec>, P extends readonly PositionalSpec[]>(
  spec: CommandSpec<O, P>,
  argv: readonly string[],
  env?: NodeJS.ProcessEnv,
): ParsedArgs<O, P>;
export function parseCommand(spec: CommandSpec, argv: readonly string[], env: NodeJS.ProcessEnv = process.env): ParsedArgs {
  const optionSpecs = spec.options ?? {};
  const config: Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }> = {};
  for (const [name, o] of Object.entries(optionSpecs)) {
    config[name] = { type: o.type === 'boolean' ? 'boolean' : 'string', ...(o.short ? { short: o.short } : {}), ...(o.multiple ? { multiple: true } : {}) };
  }
  config.help = { type: 'boolean', short: 'h' };

  let raw: { values: Record<string, string | boolean | (string | boolean)[] | undefined>; positionals: string[] };
  try {
    raw = parseArgs({ args: [...argv], options: config, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError(`${spec.name}: ${cleanParseError(err)} (see '${spec.name} --help')`);
  }

  const options: Record<string, ParsedValue> = {};
  const defaulted = new Set<string>();
  for (const [name, o] of Object.entries(optionSpecs)) {
    let value = raw.values[name];
    let source = `--${name}`;
    if (value === undefined && o.env && env[o.env] !== undefined && env[o.env] !== '') {
      const text = env[o.env]!;
      source = `${o.env} (environment)`;
      value = o.type === 'boolean' ? /^(1|true|yes|on)$/i.test(text) : o.multiple ? text.split(',') : text;
    }
    if (value === undefined && o.default !== undefined) {
      options[name] = o.default;
      defaulted.add(name);
      continue;
    }
    options[name] = value === undefined ? undefined : convert(spec.name, source, o, value);
  }

  // --help wins over everything else: `tulle decode --help` must not complain that FILE is missing.
  if (raw.values.help) return { options: { ...options, help: true }, positionals: {} };

  const positionals: Record<string, string | string[] | undefined> = {};
  const given = raw.positionals;
  const pspecs = spec.positionals ?? [];
  let i = 0;
  for (const p of pspecs) {
    if (p.rest) {
      const rest = given.slice(i);
      positionals[p.name] = rest;
      i = given.length;
      if (p.required && rest.length === 0) throw new UsageError(`${spec.name}: missing ${p.name.toUpperCase()} (see '${spec.name} --help')`);
      continue;
    }
    const v = given[i++];
    if (v === undefined && p.required) throw new UsageError(`${spec.name}: missing ${p.name.toUpperCase()} (see '${spec.name} --help')`);
    positionals[p.name] = v;
  }
  if (i < given.length) throw new UsageError(`${spec.name}: unexpected argument ${JSON.stringify(given[i])} (see '${spec.name} --help')`);
  return { options, positionals, defaulted };
}

function convert(cmd: string, source: string, o: OptionSpec, value: string | boolean | (string | boolean)[]): ParsedValue {
  if (o.type === 'boolean') return Boolean(value);
  const integer = (text: string): number => {
    if (!/^-?\d+$/.test(text)) throw new UsageError(`${cmd}: ${source}: ${JSON.stringify(text)} is not a whole number`);
    const n = Number(text);
    if ((o.min !== undefined && n < o.min) || (o.max !== undefined && n > o.max)) {
      throw new UsageError(`${cmd}: ${source}: ${n} is out of range (must be ${o.min ?? '-∞'}..${o.max ?? '∞'})`);
    }
    return n;
  };
  const choice = (text: string): string => {
    if (o.choices && !o.choices.includes(text)) {
      throw new UsageError(`${cmd}: ${source}: ${JSON.stringify(text)} is not one of ${o.choices.join(', ')}`);
    }
    return text;
  };
  if (Array.isArray(value)) return o.type === 'integer' ? value.map((v) => integer(String(v))) : value.map((v) => choice(String(v)));
  return o.type === 'integer' ? integer(String(value)) : choice(String(value));
}

function cleanParseError(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  // node's messages add lines of hints; keep the first sentence, and for a value that starts with '-' say how to give it.
  const first = msg
    .split('\n')[0]!
    .split('. ')[0]!
    .replace(/^Unknown option/, 'unknown option')
    .replace(/^Option/, 'option')
    .replace(/\.$/, '');
  const ambiguous = /^option '(--[^']+)' argument is ambiguous/.exec(first);
  return ambiguous ? `${ambiguous[1]} needs a value; a value starting with '-' is written ${ambiguous[1]}=-N` : first;
}

export function formatCommandHelp(spec: CommandSpec): string {
  const lines: string[] = [];
  const pos = (spec.positionals ?? []).map((p) =>
    p.rest ? `[-- ${p.name.toUpperCase()}...]` : p.required ? p.name.toUpperCase() : `[${p.name.toUpperCase()}]`,
  );
  lines.push(`Usage: ${spec.name}${spec.options && Object.keys(spec.options).length ? ' [options]' : ''}${pos.length ? ' ' + pos.join(' ') : ''}`);
  lines.push('', spec.summary);
  if (spec.details) lines.push('', spec.details);
  if (spec.positionals?.length) {
    lines.push('', 'Arguments:');
    for (const p of spec.positionals) lines.push(`  ${p.name.toUpperCase().padEnd(24)} ${p.description}`);
  }
  const entries = Object.entries(spec.options ?? {});
  lines.push('', 'Options:');
  for (const [name, o] of entries) {
    const flag = `${o.short ? `-${o.short}, ` : ''}--${name}${o.type === 'boolean' ? '' : ` ${o.valueName ?? (o.type === 'integer' ? 'N' : 'VALUE')}`}`;
    const extras = [
      o.choices ? `one of: ${o.choices.join(', ')}` : '',
      o.min !== undefined || o.max !== undefined ? `range ${o.min ?? ''}..${o.max ?? ''}` : '',
      o.default !== undefined && o.default !== false ? `default: ${o.default}` : '',
      o.env ? `env: ${o.env}` : '',
      o.multiple ? 'repeatable' : '',
    ].filter(Boolean);
    lines.push(`  ${flag.padEnd(30)} ${o.description}${extras.length ? ` (${extras.join('; ')})` : ''}`);
  }
  lines.push(`  ${'-h, --help'.padEnd(30)} Show this help`);
  if (spec.examples?.length) {
    lines.push('', 'Examples:');
    for (const e of spec.examples) lines.push(`  ${e}`);
  }
  return lines.join('\n') + '\n';
}

export function formatGroupHelp(prefix: string, group: CommandGroup): string {
  const lines = [`Usage: ${prefix} ${group.name} <command> [options]`, '', group.summary, '', 'Commands:'];
  for (const c of group.subcommands) lines.push(`  ${c.name.split(' ').pop()!.padEnd(12)} ${c.summary}`);
  lines.push('', `Run '${prefix} ${group.name} <command> --help' for a command's options.`);
  return lines.join('\n') + '\n';
}
