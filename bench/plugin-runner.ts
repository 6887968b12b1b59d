/**
 * A stand-in for a container runtime's plugin executor, for bench/cni-latency: one long-lived process inside a
 * host namespace that executes CNI plugins directly (fork + exec, environment, stdin, stdout, exit code) and times
 * each from spawn to exit, as containerd's executor sees a plugin. A runtime lives in the host's namespace, so
 * `ip netns exec` (which a per-call harness would pay, and a runtime does not) stays out of the figures.
 *
 *   ip netns exec HOST node dist/bench/plugin-runner.js      (JSON lines: requests on stdin, answers on stdout)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { spawnIn } from '../src/netns/netns.js';

export interface PluginCall {
  plugin: string;
  args?: string[];
  env: Record<string, string>;
  stdin: string;
}

export interface PluginOutcome {
  exitCode: number | null;
  stdout: string;
  stderr: string;
  /** Spawn to exit, measured inside the host namespace. */
  ms: number;
}

/** The runner's side: execute one call and time it. */
function execute(call: PluginCall): Promise<PluginOutcome> {
  return new Promise((resolve) => {
    const started = performance.now();
    const child = spawn(call.plugin, call.args ?? [], { env: call.env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.stdin.on('error', () => {}); // a plugin that exits without reading stdin
    child.stdin.end(call.stdin);
    child.on('error', (err) => resolve({ exitCode: null, stdout, stderr: `${stderr}${err.message}`, ms: performance.now() - started }));
    child.on('close', (code) => resolve({ exitCode: code, stdout, stderr, ms: performance.now() - started }));
  });
}

/** The benchmark's side: a runner started in `ns`, calls sent one at a time. */
export class PluginRunner {
  private readonly child: ChildProcess;
  private readonly waiting: Array<(o: PluginOutcome) => void> = [];
  private readonly exited: Promise<void>;

  constructor(ns: string) {
    this.child = spawnIn(ns, [process.execPath, new URL(import.meta.url).pathname], { stdio: ['pipe', 'pipe', 'inherit'] });
    this.exited = new Promise((resolve) => this.child.once('exit', () => resolve()));
    createInterface({ input: this.child.stdout! }).on('line', (line) => this.waiting.shift()?.(JSON.parse(line) as PluginOutcome));
    this.child.once('exit', (code) => {
      for (const w of this.waiting.splice(0)) w({ exitCode: null, stdout: '', stderr: `plugin runner exited (${code})`, ms: 0 });
    });
  }

  call(c: PluginCall): Promise<PluginOutcome> {
    return new Promise((resolve) => {
      this.waiting.push(resolve);
      this.child.stdin!.write(JSON.stringify(c) + '\n');
    });
  }

  async close(): Promise<void> {
    this.child.stdin!.end();
    await this.exited;
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  // One call at a time, in order: the benchmark takes turns and never overlaps calls.
  let queue = Promise.resolve();
  createInterface({ input: process.stdin }).on('line', (line) => {
    queue = queue.then(async () => {
      const outcome = await execute(JSON.parse(line) as PluginCall);
      process.stdout.write(JSON.stringify(outcome) + '\n');
    });
  });
}
