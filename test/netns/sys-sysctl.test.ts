/**
 * Per-namespace sysctls (the routed CNI mode's proxy_arp, neigh proxy_delay, forwarding; rp_filter, accept_ra):
 * written inside a fresh namespace, read back with `ip netns exec NS sysctl`, and never touching the machine's own
 * namespace.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { run } from '../../src/base/exec.js';
import { freshNetns, ip, requireRoot } from '../helpers/netns.js';
import { SysctlError, getSysctl, setSysctl } from '../../src/sys/sysctl.js';
import { InvalidValueError } from '../../src/base/errors.js';

requireRoot();

async function sysctlIn(ns: string, key: string): Promise<string> {
  return (await run(['ip', 'netns', 'exec', ns, 'sysctl', '-n', key])).stdout.trim();
}

test('routed-mode settings on a host veth are set inside the namespace only', async (t) => {
  const ns = await freshNetns(t, 'sysctl');
  await ip(ns, 'link', 'add', 'veth1', 'type', 'veth', 'peer', 'name', 'veth1p');
  const rootForwarding = readFileSync('/proc/sys/net/ipv4/conf/all/forwarding', 'utf8').trim();
  const settings: Array<[string, string]> = [
    ['net.ipv4.conf.veth1.proxy_arp', '1'],
    ['net.ipv4.neigh.veth1.proxy_delay', '0'],
    ['net.ipv4.conf.veth1.forwarding', '1'],
    ['net.ipv4.conf.veth1.rp_filter', '2'],
    ['net.ipv6.conf.veth1.accept_ra', '0'],
    ['net.ipv4.conf.all.forwarding', rootForwarding === '1' ? '0' : '1'],
  ];
  for (const [key, value] of settings) {
    await setSysctl(ns, key, Number(value));
    assert.equal(await sysctlIn(ns, key), value, key);
    assert.equal(await getSysctl(ns, key), value, key);
  }
  assert.equal(readFileSync('/proc/sys/net/ipv4/conf/all/forwarding', 'utf8').trim(), rootForwarding, "the machine's own namespace is untouched");
  assert.equal(await getSysctl(undefined, 'net.ipv4.conf.all.forwarding'), rootForwarding);
});

test('a device name with a dot is written as "/" in the key, as sysctl(8) does', async (t) => {
  const ns = await freshNetns(t, 'sysctl');
  await ip(ns, 'link', 'add', 'flannel.1', 'type', 'vxlan', 'id', '1', 'dstport', '8472');
  await setSysctl(ns, 'net.ipv4.conf.flannel/1.forwarding', '1');
  assert.equal(await sysctlIn(ns, 'net.ipv4.conf.flannel/1.forwarding'), '1');
  await setSysctl(ns, 'net/ipv4/conf/flannel.1/forwarding', 0);
  assert.equal(await getSysctl(ns, 'net.ipv4.conf.flannel/1.forwarding'), '0');
});

test('errors: missing device, missing namespace, value the kernel refuses, key outside net.', async (t) => {
  const ns = await freshNetns(t, 'sysctl');
  await assert.rejects(
    setSysctl(ns, 'net.ipv4.conf.nosuch.forwarding', 1),
    (e: unknown) =>
      e instanceof SysctlError &&
      e.errno === 'ENOENT' &&
      e.message ===
        `ip netns exec ${ns} sysctl -w net.ipv4.conf.nosuch.forwarding=1: ENOENT (No such file or directory): write /proc/sys/net/ipv4/conf/nosuch/forwarding`,
  );
  await assert.rejects(
    getSysctl('t-no-such-namespace', 'net.ipv4.ip_forward'),
    (e: unknown) => e instanceof SysctlError && e.errno === 'ENOENT' && /open network namespace$/.test(e.message),
  );
  await assert.rejects(setSysctl(ns, 'net.ipv4.conf.all.forwarding', 'yes'), (e: unknown) => e instanceof SysctlError && e.errno === 'EINVAL');
  await assert.rejects(setSysctl(ns, 'kernel.hostname', 'x'), (e: unknown) => e instanceof InvalidValueError && e.field === 'sysctl key');
  await assert.rejects(setSysctl(ns, 'net.ipv4.ip_forward', '1\n0'), InvalidValueError);
});

test('reads and writes in several namespaces at once each land in their own namespace', async (t) => {
  // The binding does them on libuv pool threads, each entering its namespace; none may see another's.
  const a = await freshNetns(t, 'sysctl');
  const b = await freshNetns(t, 'sysctl');
  await Promise.all([setSysctl(a, 'net.ipv4.ip_forward', 1), setSysctl(b, 'net.ipv4.ip_forward', 0)]);
  const reads = await Promise.all(Array.from({ length: 40 }, (_, i) => getSysctl(i % 2 ? b : a, 'net.ipv4.ip_forward')));
  assert.deepEqual(
    reads,
    Array.from({ length: 40 }, (_, i) => (i % 2 ? '0' : '1')),
  );
  assert.equal(await sysctlIn(a, 'net.ipv4.ip_forward'), '1');
  assert.equal(await sysctlIn(b, 'net.ipv4.ip_forward'), '0');
});
