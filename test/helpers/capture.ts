/**
 * tcpdump writing a capture inside a test's namespace, started and stopped by PID (the test's own process).
 */
import type { ChildProcess } from 'node:child_process';
import { spawnIn } from '../../src/netns/netns.js';

/** Start tcpdump on `dev` in `ns`, writing `file`; resolves once it is capturing. */
export async function startCapture(ns: string, dev: string, file: string): Promise<ChildProcess> {
  // --immediate-mode: hand each packet over at once (not when a ring block fills or times out); -U: write it at
  // once; -Z root: keep the right to write where the test put the file.
  const child = spawnIn(ns, ['tcpdump', '-i', dev, '-w', file, '--immediate-mode', '-U', '-n', '-Z', 'root'], { stdio: ['ignore', 'ignore', 'pipe'] });
  await new Promise<void>((resolve, reject) => {
    let err = '';
    const timer = setTimeout(() => reject(new Error(`tcpdump did not start: ${err}`)), 10_000);
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      if (err.includes('listening on')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`tcpdump exited ${code}: ${err}`));
    });
  });
  return child;
}

export async function stopCapture(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const done = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await done;
}
