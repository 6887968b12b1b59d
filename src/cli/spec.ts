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
export interface ParsedArgs {
  options: Record<string, ParsedValue>;
  positionals: Record<string, string | string[] | undefined>;
  /** Options that took their default (given neither as a flag nor in the environment). */
  defaulted?: ReadonlySet<string>;
}

export interface CommandSpec {
  name: string;
  summary: string;
  /** Longer help text printed under the usage line. */
  details?: string;
  options?: Record<string, OptionSpec>;
  positionals?: readonly PositionalSpec[];
  examples?: readonly string[];
  /** Runs the command; the resolved number is the exit code (0 when void). */
  run(args: ParsedArgs): Promise<number | void>;
}

export interface CommandGroup {
  name: string;
  summary: string;
  subcommands: readonly CommandSpec[];
}

export function parseCommand(spec: CommandSpec, argv: readonly string[], env: NodeJS.ProcessEnv = process.env): ParsedArgs {
  const optionSpecs = spec.options ?? {};
  const config: Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }> = {};
  for (const [name, o] of Object.entries(optionSpecs)) {
    config[name] = { type: o.type === 'boolean' ? 'boolean' : 'string', ...(o.short ? { short: o.short } : {}), ...(o.multiple ? { multiple: true } : {}) };
  }
  config.help = { type: 'boolean', short: 'h' };

  let raw: { values: Record<string, unknown>; positionals: string[] };
  try {
    raw = parseArgs({ args: [...argv], options: config, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError(`${spec.name}: ${cleanParseError(err)} (see '${spec.name} --help')`);
  }

  const options: Record<string, ParsedValue> = {};
  const defaulted = new Set<string>();
  for (const [name, o] of Object.entries(optionSpecs)) {
    let value = raw.values[name] as string | boolean | string[] | undefined;
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
      positionals[p.name] = given.slice(i);
      i = given.length;
      if (p.required && (positionals[p.name] as string[]).length === 0) throw new UsageError(`${spec.name}: missing ${p.name.toUpperCase()} (see '${spec.name} --help')`);
      continue;
    }
    const v = given[i++];
    if (v === undefined && p.required) throw new UsageError(`${spec.name}: missing ${p.name.toUpperCase()} (see '${spec.name} --help')`);
    positionals[p.name] = v;
  }
  if (i < given.length) throw new UsageError(`${spec.name}: unexpected argument ${JSON.stringify(given[i])} (see '${spec.name} --help')`);
  return { options, positionals, defaulted };
}

function convert(cmd: string, source: string, o: OptionSpec, value: string | boolean | string[]): ParsedValue {
  if (o.type === 'boolean') return Boolean(value);
  const one = (text: string): string | number => {
    if (o.type === 'integer') {
      if (!/^-?\d+$/.test(text)) throw new UsageError(`${cmd}: ${source}: ${JSON.stringify(text)} is not a whole number`);
      const n = Number(text);
      if ((o.min !== undefined && n < o.min) || (o.max !== undefined && n > o.max)) {
        throw new UsageError(`${cmd}: ${source}: ${n} is out of range (must be ${o.min ?? '-∞'}..${o.max ?? '∞'})`);
      }
      return n;
    }
    if (o.choices && !o.choices.includes(text)) {
      throw new UsageError(`${cmd}: ${source}: ${JSON.stringify(text)} is not one of ${o.choices.join(', ')}`);
    }
    return text;
  };
  if (Array.isArray(value)) return value.map(one) as string[] | number[];
  return one(String(value));
}

function cleanParseError(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  // node's messages add lines of hints; keep the first sentence, and for a value that starts with '-' say how to give it.
  const first = msg.split('\n')[0]!.split('. ')[0]!.replace(/^Unknown option/, 'unknown option').replace(/^Option/, 'option').replace(/\.$/, '');
  const ambiguous = /^option '(--[^']+)' argument is ambiguous/.exec(first);
  return ambiguous ? `${ambiguous[1]} needs a value; a value starting with '-' is written ${ambiguous[1]}=-N` : first;
}

export function formatCommandHelp(spec: CommandSpec): string {
  const lines: string[] = [];
  const pos = (spec.positionals ?? []).map((p) => (p.rest ? `[-- ${p.name.toUpperCase()}...]` : p.required ? p.name.toUpperCase() : `[${p.name.toUpperCase()}]`));
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
