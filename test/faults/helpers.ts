/** What the fault tests share: raw writes into a lab's store (bypassing every check tulle makes), and snapshots. */
import { run } from '../../src/base/exec.js';
import { openRegistry } from '../../src/store/open.js';
import type { LabState } from '../../src/lab/index.js';

/** Write `value` at `key` as an operator with etcdctl or a stray program with SQLite would: no validation at all. */
export async function putRaw(state: LabState, key: string, value: string): Promise<void> {
  const store = state.overlay!.store;
  if (store.startsWith('etcd://')) {
    const h1 = state.hosts[0]!.namespace;
    // etcdctl reads the value from stdin when it is not an argument: a 1 MB value does not fit argv comfortably.
    await run(['ip', 'netns', 'exec', h1, 'etcdctl', '--endpoints', 'http://127.0.0.1:2379', 'put', key], { input: value });
    return;
  }
  const registry = await openRegistry(store);
  try {
    await registry.put(key, value);
  } finally {
    await registry.close();
  }
}

export async function deleteRaw(state: LabState, key: string): Promise<void> {
  const store = state.overlay!.store;
  if (store.startsWith('etcd://')) {
    await run(['ip', 'netns', 'exec', state.hosts[0]!.namespace, 'etcdctl', '--endpoints', 'http://127.0.0.1:2379', 'del', key]);
    return;
  }
  const registry = await openRegistry(store);
  try {
    await registry.delete(key);
  } finally {
    await registry.close();
  }
}

/** Every route of the main table that is not tulle's (`ip route show` minus proto 84), as iproute2 prints it. */
export async function underlayRoutes(namespace: string): Promise<string> {
  const out = (await run(['ip', '-n', namespace, 'route', 'show', 'table', 'main'])).stdout;
  return out
    .split('\n')
    .filter((l) => l && !/ proto 84\b/.test(l))
    .join('\n');
}

/** Resident memory of a process in kB (/proc/PID/status VmRSS). */
export async function rssKb(pid: number): Promise<number> {
  const { readFile } = await import('node:fs/promises');
  const m = /VmRSS:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

/** The overlay entries iproute2 reports on a host, each list sorted (the kernel's dump order is not stable). */
export function sortedEntries(k: { routes: Array<{ dst: string }>; neigh: Array<{ dst: string }>; fdb: Array<{ mac: string; dst?: string }> }) {
  const by =
    <T>(key: (x: T) => string) =>
    (a: T, b: T) =>
      key(a).localeCompare(key(b));
  return {
    routes: [...k.routes].sort(by((r) => r.dst)),
    neigh: [...k.neigh].sort(by((n) => n.dst)),
    fdb: [...k.fdb].sort(by((f) => `${f.mac} ${f.dst ?? ''}`)),
  };
}
