/**
 * Structured logging: one JSON object per line when stderr is not a terminal (for journald, files, log
 * shippers), a readable `time level msg key=value` line on a terminal. `TULLE_LOG_FORMAT=json|text` overrides
 * the choice and `TULLE_LOG_LEVEL=debug|info|warn|error` filters.
 */
export type Level = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export type Fields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: Fields): void;
  info(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  error(msg: string, fields?: Fields): void;
  /** A logger that adds `fields` to every line (e.g. {component: 'lease'}). */
  child(fields: Fields): Logger;
}

export interface LoggerOptions {
  level?: Level;
  format?: 'json' | 'text';
  write?: (line: string) => void;
}

export function createLogger(base: Fields = {}, options: LoggerOptions = {}): Logger {
  const envLevel = process.env.TULLE_LOG_LEVEL as Level | undefined;
  const level = options.level ?? (envLevel && envLevel in ORDER ? envLevel : 'info');
  const envFormat = process.env.TULLE_LOG_FORMAT;
  const format = options.format ?? (envFormat === 'json' || envFormat === 'text' ? envFormat : process.stderr.isTTY ? 'text' : 'json');
  const write = options.write ?? ((line: string) => process.stderr.write(line + '\n'));

  const emit = (lvl: Level, msg: string, fields?: Fields): void => {
    if (ORDER[lvl] < ORDER[level]) return;
    const all = { ...base, ...fields };
    if (format === 'json') {
      write(JSON.stringify({ time: new Date().toISOString(), level: lvl, msg, ...all }, jsonReplacer));
    } else {
      const kv = Object.entries(all)
        .map(([k, v]) => `${k}=${typeof v === 'string' && !/\s/.test(v) ? v : JSON.stringify(v, jsonReplacer)}`)
        .join(' ');
      write(`${new Date().toISOString().slice(11, 23)} ${lvl.toUpperCase().padEnd(5)} ${msg}${kv ? ' ' + kv : ''}`);
    }
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    child: (fields) => createLogger({ ...base, ...fields }, { level, format, write }),
  };
}

/** Errors serialise as their message and code; bigints as strings. */
function jsonReplacer(_key: string, value: unknown): unknown {
  if (value instanceof Error) return { message: value.message, code: (value as { code?: unknown }).code };
  if (typeof value === 'bigint') return value.toString();
  return value;
}

/** A logger that drops everything; for library callers and unit tests that do not care. */
export const silentLogger: Logger = createLogger({}, { write: () => {} });
