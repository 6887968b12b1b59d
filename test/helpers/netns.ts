/**
 * Fresh network namespaces for one test: unique names (`t-<pid>-<random>-<label>`) so parallel runs never
 * collide, removed after the test whether it passed or failed.
 */
import { randomBytes } from 'node:crypto';
import type { TestContext } from 'node:test';
import { createNetns, deleteNetns, deleteNetnsSync } from '../../src/netns/netns.js';
import { run, runJson } from '../../src/base/exec.js';
import { NetlinkClient, NetlinkError } from '../../src/netlink/index.js';

const created = new Set<string>();
process.on('exit', () => {
  for (const name of created) deleteNetnsSync(name);
});

export function uniqueName(label: string): string {
  return `t-${process.pid}-${randomBytes(3).toString('hex')}-${label}`.slice(0, 60);
}

/** A new namespace with `lo` up, deleted when the test (or suite) `t` ends. */
export async function freshNetns(t: Pick<TestContext, 'after'> | { after(fn: () => unknown): void }, label = 'ns'): Promise<string> {
  const name = uniqueName(label);
  await createNetns(name);
  created.add(name);
  t.after(async () => {
    await deleteNetns(name);
    created.delete(name);
  });
  return name;
}

/** `ip -n NS -d -j ARGS...` parsed. */
export function ipJson<T = any>(ns: string, ...args: string[]): Promise<T> {
  return runJson<T>(['ip', '-n', ns, '-d', '-j', ...args]);
}

/** `bridge -n NS -j ARGS...` parsed. */
export function bridgeJson<T = any>(ns: string, ...args: string[]): Promise<T> {
  return runJson<T>(['bridge', '-n', ns, '-j', ...args]);
}

/** `ip -n NS ARGS...` (throws on failure). */
export async function ip(ns: string, ...args: string[]): Promise<string> {
  return (await run(['ip', '-n', ns, ...args])).stdout;
}

/** Fail clearly (not skip) when the suite is not run as root. */
export function requireRoot(): void {
  if (process.getuid?.() !== 0) throw new Error('this test creates network namespaces and needs root: run it as root (sudo npm test)');
}

/** Give the namespace an underlay: a veth `name` with `cidr` (its peer stays in the same namespace), both up. */
export async function underlay(ns: string, name: string, cidr: string): Promise<void> {
  await ip(ns, 'link', 'add', name, 'type', 'veth', 'peer', 'name', `${name}p`);
  await ip(ns, 'link', 'set', name, 'up');
  await ip(ns, 'link', 'set', `${name}p`, 'up');
  await ip(ns, 'addr', 'add', cidr, 'dev', name);
}

/** A fresh namespace with an underlay eth0 192.0.2.11/24 (made with iproute2), and a netlink client bound to it. */
export async function underlayHost(t: Parameters<typeof freshNetns>[0], label: string): Promise<{ ns: string; nl: NetlinkClient }> {
  const ns = await freshNetns(t, label);
  await underlay(ns, 'eth0', '192.0.2.11/24');
  const nl = await NetlinkClient.open({ netns: ns });
  t.after(() => nl.close());
  return { ns, nl };
}

/**
 * underlayHost plus flannel's VTEP made with iproute2 (independent of the code under test): flannel.1 vxlan id 1
 * local 192.0.2.11 dev eth0 dstport 8472 nolearning, up, optionally with its 10.244.1.0/32 address.
 */
export async function vtepHost(
  t: Parameters<typeof freshNetns>[0],
  label: string,
  options: { vtepAddress?: boolean } = {},
): Promise<{ ns: string; nl: NetlinkClient }> {
  const host = await underlayHost(t, label);
  const { ns } = host;
  await ip(ns, 'link', 'add', 'flannel.1', 'type', 'vxlan', 'id', '1', 'local', '192.0.2.11', 'dev', 'eth0', 'dstport', '8472', 'nolearning');
  await ip(ns, 'link', 'set', 'flannel.1', 'up');
  if (options.vtepAddress) await ip(ns, 'addr', 'add', '10.244.1.0/32', 'dev', 'flannel.1');
  return host;
}

/**
 * For assert.rejects: a NetlinkError with this errno name whose message is exactly `message` (a string) or matches
 * it (a RegExp).
 */
export function isNetlinkError(errno: string, message: string | RegExp): (e: unknown) => boolean {
  return (e: unknown) => e instanceof NetlinkError && e.errno === errno && (typeof message === 'string' ? e.message === message : message.test(e.message));
}
