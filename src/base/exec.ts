/**
 * Running external programs (iproute2, nft, tshark, etcd, ping). Arguments are always an array, never a shell
 * string, so no value is ever interpreted by a shell.
 */
import { spawn, spawnSync, type SpawnOptions } from 'node:child_process';
import { CommandFailedError, MissingRequirementError } from './errors.js';

export interface RunResult {
  stdout: string;
  stderr: string;
  status: number | null;
}

export interface RunOptions {
  /** Text written to the child's stdin. */
  input?: string;
  /** Do not throw on a non-zero exit; the caller inspects `status`. */
  allowFailure?: boolean;
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

/** Run a program to completion and return its output; throws CommandFailedError on a non-zero exit. */
export function run(argv: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const [cmd, ...args] = argv;
    const spawnOptions: SpawnOptions = { stdio: ['pipe', 'pipe', 'pipe'], env: options.env ?? process.env };
    if (options.cwd) spawnOptions.cwd = options.cwd;
    if (options.timeoutMs) spawnOptions.timeout = options.timeoutMs;
    const child = spawn(cmd!, args, spawnOptions);
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') reject(new MissingRequirementError(`the program ${cmd}`, 'install it (bash scripts/install-deps.sh)'));
      else reject(err);
    });
    child.on('close', (status) => {
      if (status !== 0 && !options.allowFailure) reject(new CommandFailedError(argv.join(' '), status, stderr));
      else resolve({ stdout, stderr, status });
    });
    child.stdin!.on('error', () => {}); // a child that exits before reading its stdin is reported by its status
    child.stdin!.end(options.input ?? '');
  });
}

/** Synchronous variant, for cleanup paths that must finish before the process exits. */
export function runSync(argv: readonly string[], options: RunOptions = {}): RunResult {
  const [cmd, ...args] = argv;
  const r = spawnSync(cmd!, args, { input: options.input ?? '', encoding: 'utf8', env: options.env ?? process.env, timeout: options.timeoutMs });
  if (r.error) {
    if ((r.error as NodeJS.ErrnoException).code === 'ENOENT')
      throw new MissingRequirementError(`the program ${cmd}`, 'install it (bash scripts/install-deps.sh)');
    throw r.error;
  }
  if (r.status !== 0 && !options.allowFailure) throw new CommandFailedError(argv.join(' '), r.status, r.stderr);
  return { stdout: r.stdout, stderr: r.stderr, status: r.status };
}

/** Run and parse JSON stdout (for `ip -j ...`, `bridge -j ...`); empty output is an empty array. */
export async function runJson<T = unknown>(argv: readonly string[], options: RunOptions = {}): Promise<T> {
  const { stdout } = await run(argv, options);
  return (stdout.trim() === '' ? [] : JSON.parse(stdout)) as T;
}

/** Is `program` on PATH? */
export function hasProgram(program: string): boolean {
  return spawnSync('sh', ['-c', `command -v "$1" >/dev/null 2>&1`, 'sh', program]).status === 0;
}
