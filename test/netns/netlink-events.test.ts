/**
 * Subscriptions (`ip monitor`) in fresh namespaces: changes made by someone else with `ip`/`bridge` arrive as
 * decoded events (drift is seen when it happens), an overflowing subscriber is told to resync and keeps working,
 * and a closed subscription goes quiet. Latencies are printed as diagnostics, never asserted (timing belongs in
 * bench/).
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { run } from '../../src/base/exec.js';
import { ip, requireRoot, vtepHost as vtepHostIn } from '../helpers/netns.js';
import type { NetlinkEvent } from '../../src/netlink/index.js';

requireRoot();

const PEER_MAC = '0e:f0:b5:8c:28:f5';

const vtepHost = (t: TestContext) => vtepHostIn(t, 'events');

/** Collects events; `next(match)` resolves with the first matching one (already seen or still to come). */
function recorder() {
  const events: NetlinkEvent[] = [];
  const waiters: Array<{ match: (e: NetlinkEvent) => boolean; resolve: (e: NetlinkEvent) => void }> = [];
  return {
    events,
    onEvent: (e: NetlinkEvent): void => {
      events.push(e);
      for (const w of waiters.splice(0)) {
        if (w.match(e)) w.resolve(e);
        else waiters.push(w);
      }
    },
    next(match: (e: NetlinkEvent) => boolean, what: string, timeoutMs = 5000): Promise<NetlinkEvent> {
      const seen = events.find(match);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no ${what} event within ${timeoutMs} ms; got ${JSON.stringify(events)}`)), timeoutMs);
        waiters.push({ match, resolve: (e) => (clearTimeout(timer), resolve(e)) });
      });
    },
  };
}

test('deleting a route, a neighbour and an FDB entry with ip/bridge is reported as it happens', async (t) => {
  const { ns, nl } = await vtepHost(t);
  await nl.replaceNeighbor({ dev: 'flannel.1', ip: '10.244.2.0', mac: PEER_MAC });
  await nl.replaceFdb({ dev: 'flannel.1', mac: PEER_MAC, dst: '198.51.100.12' });
  await nl.replaceRoute({ dst: '10.244.2.0/24', via: '10.244.2.0', dev: 'flannel.1', onlink: true });

  const rec = recorder();
  const sub = await nl.subscribe(['route', 'neighbor'], rec.onEvent);
  t.after(() => sub.close());

  const cases: Array<[string, string[], (e: NetlinkEvent) => boolean]> = [
    [
      'route',
      ['ip', '-n', ns, 'route', 'del', '10.244.2.0/24', 'dev', 'flannel.1'],
      (e) => e.kind === 'route' && e.action === 'del' && e.route.dst === '10.244.2.0/24' && e.route.dev === 'flannel.1' && e.route.via === '10.244.2.0',
    ],
    [
      'neighbour',
      ['ip', '-n', ns, 'neigh', 'del', '10.244.2.0', 'dev', 'flannel.1'],
      (e) => e.kind === 'neighbor' && e.action === 'del' && e.neighbor.ip === '10.244.2.0' && e.neighbor.dev === 'flannel.1',
    ],
    [
      'FDB',
      ['bridge', '-n', ns, 'fdb', 'del', PEER_MAC, 'dev', 'flannel.1', 'self'],
      (e) => e.kind === 'fdb' && e.action === 'del' && e.fdb.mac === PEER_MAC && e.fdb.dst === '198.51.100.12' && e.fdb.dev === 'flannel.1',
    ],
  ];
  for (const [what, argv, match] of cases) {
    const started = performance.now();
    await run(argv);
    await rec.next(match, `${what} deletion`);
    t.diagnostic(`${what} deletion reported ${(performance.now() - started).toFixed(1)} ms after running ${argv.slice(3).join(' ')}`);
  }
  assert.equal(
    rec.events.some((e) => e.kind === 'link' || e.kind === 'address'),
    false,
    'only the kinds asked for',
  );
});

test('link and address events carry names and addresses, for links created after subscribing too', async (t) => {
  const { ns, nl } = await vtepHost(t);
  const rec = recorder();
  const sub = await nl.subscribe(['link', 'address', 'route'], rec.onEvent);
  t.after(() => sub.close());
  await ip(ns, 'link', 'add', 'cni0', 'type', 'bridge');
  const link = await rec.next((e) => e.kind === 'link' && e.action === 'new' && e.link.name === 'cni0', 'new link');
  assert.equal(link.kind === 'link' && link.link.kind, 'bridge');
  await ip(ns, 'addr', 'add', '10.244.1.1/24', 'dev', 'cni0');
  const addr = await rec.next((e) => e.kind === 'address' && e.address.cidr === '10.244.1.1/24', 'new address');
  assert.equal(addr.kind === 'address' && addr.address.dev, 'cni0');
  await ip(ns, 'link', 'set', 'cni0', 'up');
  // The kernel's connected route on the new device is named by the device created after subscribing.
  await rec.next((e) => e.kind === 'route' && e.action === 'new' && e.route.dst === '10.244.1.0/24' && e.route.dev === 'cni0', 'connected route');
  await ip(ns, 'link', 'del', 'cni0');
  await rec.next((e) => e.kind === 'link' && e.action === 'del' && e.link.name === 'cni0', 'deleted link');
});

test('a subscriber that falls behind gets an overflow event, then keeps receiving', async (t) => {
  const { ns, nl } = await vtepHost(t);
  const rec = recorder();
  const sub = await nl.subscribe(['route'], rec.onEvent, { receiveBufferBytes: 64 * 1024 });
  t.after(() => sub.close());
  const dir = mkdtempSync(join(tmpdir(), 'tulle-events-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'routes');
  writeFileSync(file, Array.from({ length: 3000 }, (_, i) => `route add 10.${100 + (i >> 8)}.${i & 255}.0/24 dev flannel.1\n`).join(''));
  // spawnSync blocks this thread: nobody reads the subscription while 3000 route events pour in.
  const r = spawnSync('ip', ['-n', ns, '-batch', file], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const overflow = await rec.next((e) => e.kind === 'overflow', 'overflow');
  assert.equal(overflow.kind === 'overflow' && overflow.error.errno, 'ENOBUFS');
  await ip(ns, 'route', 'del', '10.100.0.0/24', 'dev', 'flannel.1');
  await rec.next((e) => e.kind === 'route' && e.action === 'del' && e.route.dst === '10.100.0.0/24', 'route deletion after the overflow');
});

test('a closed subscription delivers nothing more', async (t) => {
  const { ns, nl } = await vtepHost(t);
  const rec = recorder();
  const sub = await nl.subscribe(['link'], rec.onEvent);
  sub.close();
  sub.close(); // idempotent
  await ip(ns, 'link', 'add', 'br9', 'type', 'bridge');
  await sleep(100);
  assert.deepEqual(rec.events, []);
});

test('deletionsOnly: new entries are not delivered, deletions and link changes are', async (t) => {
  const { ns, nl } = await vtepHost(t);
  const rec = recorder();
  const sub = await nl.subscribe(['link', 'route', 'neighbor'], rec.onEvent, { deletionsOnly: true });
  t.after(() => sub.close());
  await nl.replaceNeighbor({ dev: 'flannel.1', ip: '10.244.2.0', mac: PEER_MAC });
  await nl.replaceFdb({ dev: 'flannel.1', mac: PEER_MAC, dst: '198.51.100.12' });
  await nl.replaceRoute({ dst: '10.244.2.0/24', via: '10.244.2.0', dev: 'flannel.1', onlink: true });
  await run(['ip', '-n', ns, 'route', 'del', '10.244.2.0/24', 'dev', 'flannel.1']);
  await rec.next((e) => e.kind === 'route' && e.action === 'del' && e.route.dst === '10.244.2.0/24', 'route deletion');
  await ip(ns, 'link', 'set', 'flannel.1', 'down');
  await rec.next((e) => e.kind === 'link' && e.action === 'new' && e.link.name === 'flannel.1' && !e.link.up, 'link down');
  assert.deepEqual(
    rec.events.filter((e) => e.kind !== 'link' && 'action' in e && e.action === 'new'),
    [],
    'the new neighbour, FDB entry and route were not delivered',
  );
});
