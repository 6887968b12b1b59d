// `labUp`/`labDown` on the real kernel: 1, 2 and 5 hosts on both underlays; hosts reach each other (across the
// router for `routed`), and the root namespace is byte-for-byte the same before and after, with no link event
// of the lab ever seen in it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { runJson } from '../../src/base/exec.js';
import { execIn, listNetns } from '../../src/netns/netns.js';
import { labDown, labPrefix, labUp, loadLabState, type LabState, type Underlay } from '../../src/lab/index.js';
import { bridgeJson, ipJson, requireRoot } from '../helpers/netns.js';

requireRoot();
let root: string;
before(() => void (root = mkdtempSync(join(tmpdir(), 'tulle-lab-up-'))));
after(() => rmSync(root, { recursive: true, force: true }));

const uniqueLabName = (): string => `t${randomBytes(4).toString('hex')}`;

/** Fields of `ip -j` output that change on their own (lifetimes count down). */
const VOLATILE = new Set(['valid_life_time', 'preferred_life_time', 'expires', 'stats', 'stats64']);

/** The root namespace's addresses, routes and links, as `ip -j` prints them (read only). */
async function rootSnapshot(): Promise<string> {
  const parts = await Promise.all([
    runJson(['ip', '-j', 'addr']),
    runJson(['ip', '-j', '-4', 'route', 'show', 'table', 'all']),
    runJson(['ip', '-j', '-6', 'route', 'show', 'table', 'all']),
    runJson(['ip', '-j', 'link']),
  ]);
  return JSON.stringify(parts, (k, v) => (VOLATILE.has(k) ? undefined : v), 1);
}

/** Link events in the root namespace while `fn` runs (`ip -o monitor link`, reading only). */
async function rootLinkEvents(fn: () => Promise<void>): Promise<string[]> {
  const monitor = spawn('ip', ['-o', 'monitor', 'link'], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  monitor.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  await new Promise((r) => monitor.once('spawn', r));
  await new Promise((r) => setTimeout(r, 50)); // let it subscribe before anything happens
  try {
    await fn();
  } finally {
    monitor.kill('SIGTERM');
    await new Promise((r) => monitor.once('close', r));
  }
  return out.split('\n').filter(Boolean);
}

/** Ping once from one namespace; the reply's TTL, or null when no reply came. */
async function pingTtl(fromNs: string, to: string): Promise<number | null> {
  const r = await execIn(fromNs, ['ping', '-c1', '-W2', '-n', to], { allowFailure: true });
  const m = /ttl=(\d+)/.exec(r.stdout);
  return r.status === 0 && m ? Number(m[1]) : null;
}

async function checkKernelState(lab: LabState): Promise<void> {
  await Promise.all(
    lab.hosts.map(async (h) => {
      const [link] = await ipJson(h.namespace, 'link', 'show', 'dev', h.interface);
      assert.equal(link.linkinfo.info_kind, 'veth', `${h.name} eth0 is a veth`);
      assert.equal(link.operstate, 'UP', `${h.name} eth0 is up`);
      const [addr] = await ipJson(h.namespace, 'addr', 'show', 'dev', h.interface);
      assert.ok(
        addr.addr_info.some((a: any) => a.family === 'inet' && a.local === h.address && a.prefixlen === h.prefixLength),
        `${h.name} has ${h.address}`,
      );
      const [lo] = await ipJson(h.namespace, 'link', 'show', 'dev', 'lo');
      assert.ok(lo.flags.includes('UP'), `${h.name} lo is up`);
      assert.equal((await execIn(h.namespace, ['sysctl', '-n', 'net.ipv4.ip_forward'])).stdout.trim(), '1', `${h.name} forwards`);
      const routes = await ipJson(h.namespace, 'route', 'show');
      const defaults = routes.filter((r: any) => r.dst === 'default');
      assert.deepEqual(
        defaults.map((r: any) => r.gateway),
        h.gateway ? [h.gateway] : [],
        `${h.name} default route`,
      );
    }),
  );
  for (const sw of lab.switches) {
    const ports = (await bridgeJson(sw.namespace, 'link', 'show'))
      .filter((p: any) => p.master === sw.bridge)
      .map((p: any) => p.ifname)
      .sort();
    const expected = [
      ...lab.hosts.filter((h) => h.segment === sw.segment).map((h) => h.switchPort),
      ...(lab.router?.interfaces.filter((i) => i.segment === sw.segment).map((i) => i.switchPort) ?? []),
    ].sort();
    assert.deepEqual(ports, expected, `ports of ${sw.namespace}`);
  }
  if (lab.router) {
    assert.equal((await execIn(lab.router.namespace, ['sysctl', '-n', 'net.ipv4.ip_forward'])).stdout.trim(), '1', 'router forwards');
  }
}

for (const underlay of ['switch', 'routed'] as const satisfies readonly Underlay[]) {
  for (const nodes of [1, 2, 5]) {
    test(`lab up with ${nodes} host(s) on a ${underlay} underlay: hosts reach each other, down leaves nothing`, async (t) => {
      const name = uniqueLabName();
      t.after(() => labDown(name, { root, graceMs: 500 }));
      const rootBefore = await rootSnapshot();

      let lab!: LabState;
      const events = await rootLinkEvents(async () => {
        lab = await labUp({ name, nodes, underlay, root });
      });
      assert.deepEqual(events, [], 'no link appeared in the root namespace, not even briefly');

      assert.equal(lab.status, 'ready');
      assert.deepEqual(loadLabState(name, { root }), lab, 'the state file holds what labUp returned');
      const expectedNs = [...lab.hosts.map((h) => h.namespace), ...lab.switches.map((s) => s.namespace), ...(lab.router ? [lab.router.namespace] : [])].sort();
      assert.equal(expectedNs.length, nodes + (underlay === 'routed' ? 3 : 1));
      assert.deepEqual(listNetns(labPrefix(name)), expectedNs);
      assert.deepEqual([...lab.namespaces].sort(), expectedNs, 'every namespace is recorded in the state');
      await checkKernelState(lab);

      // every host reaches every other from h1; across the router the reply has lost one hop of TTL
      const [h1, ...others] = lab.hosts;
      const ttls = await Promise.all(others.map((h) => pingTtl(h1!.namespace, h.address)));
      others.forEach((h, i) => {
        const hops = h.segment === h1!.segment ? 0 : 1;
        assert.equal(ttls[i], 64 - hops, `h1 -> ${h.name} (${h.address}) replies with ttl ${64 - hops}`);
      });
      if (underlay === 'routed' && nodes > 1) {
        const [route] = await ipJson(h1!.namespace, 'route', 'get', lab.hosts[1]!.address);
        assert.equal(route.gateway, lab.router!.interfaces[0]!.address, 'h1 reaches h2 via the router');
        assert.equal(await pingTtl(lab.hosts[1]!.namespace, lab.router!.interfaces[0]!.address), 64, 'h2 reaches the router across');
      }

      const result = await labDown(name, { root });
      assert.equal(result.existed, true);
      assert.deepEqual([...result.namespaces].sort(), expectedNs);
      assert.deepEqual(listNetns(labPrefix(name)), [], 'no namespace left');
      assert.equal(existsSync(join(root, name)), false, 'lab directory removed');
      assert.equal(await rootSnapshot(), rootBefore, 'root addresses, routes and links unchanged');
    });
  }
}

test('two labs with different names coexist; removing one leaves the other working', async (t) => {
  const a = uniqueLabName();
  const b = uniqueLabName();
  t.after(() => Promise.all([labDown(a, { root }), labDown(b, { root })]));
  const [labA, labB] = await Promise.all([labUp({ name: a, nodes: 2, underlay: 'switch', root }), labUp({ name: b, nodes: 2, underlay: 'routed', root })]);
  // the same addresses live in both labs, each in its own namespaces
  assert.equal(labA.hosts[0]!.address, labB.hosts[0]!.address);
  assert.equal(await pingTtl(labA.hosts[0]!.namespace, labA.hosts[1]!.address), 64);
  assert.equal(await pingTtl(labB.hosts[0]!.namespace, labB.hosts[1]!.address), 63);
  await labDown(a, { root });
  assert.deepEqual(listNetns(labPrefix(a)), []);
  assert.equal(listNetns(labPrefix(b)).length, 5);
  assert.equal(await pingTtl(labB.hosts[0]!.namespace, labB.hosts[1]!.address), 63, 'lab b still works');
  assert.equal(loadLabState(b, { root }).status, 'ready');
});
