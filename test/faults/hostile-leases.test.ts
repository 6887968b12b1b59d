/**
 * Fault: hostile and careless leases written straight into the store (no tulle command in between), on SQLite and
 * on etcd, into a 3-host lab whose pods ping each other every 10 ms. Expected: every one is rejected with its
 * reason by every agent (logged once, counted in /metrics, listed by `tulle leases` and `tulle status`), no
 * kernel entry changes on any host — the underlay routes stay byte-identical before, during and after — and no
 * ping is lost.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { run } from '../../src/base/exec.js';
import { formatIPv4, parseCidr4 } from '../../src/base/ip.js';
import { TULLE_BIN, runStoreCommand, type LabState } from '../../src/lab/index.js';
import { requireRoot } from '../helpers/netns.js';
import { agentLog, kernelView, overlayLab } from '../helpers/lab.js';
import { leasesOf, podMatrix, startFastPing, within } from '../e2e/overlay-helpers.js';
import { deleteRaw, putRaw, sortedEntries, underlayRoutes } from './helpers.js';

const PREFIX = '/coreos.com/network/subnets/';
const vx = (publicIP: unknown, mac: unknown, vni: unknown = 1) =>
  JSON.stringify({ PublicIP: publicIP, BackendType: 'vxlan', BackendData: { VNI: vni, VtepMAC: mac } });

interface Hostile {
  what: string;
  key: string;
  value: string;
  /** The reason agents and `tulle leases` give. */
  reason: string;
}

/** The leases of the issue and more, built against the lab's real subnets and MACs. */
function hostileLeases(own: { subnet: string; mac: string }, peer: { subnet: string; mac: string }, taken: readonly string[]): Hostile[] {
  const half = (subnet: string) => `${formatIPv4(parseCidr4(subnet).network + 128)}-25`;
  // Subnets no lab host holds (the hosts' subnets are random): a hostile write must not replace a real lease.
  const thirds = Array.from({ length: 254 }, (_, i) => i + 1).filter((n) => !taken.includes(`10.244.${n}.0/24`));
  let next = 0;
  const free = () => `10.244.${thirds[next++]}.0-24`;
  return [
    // Values no agent can read: logged once by the watcher, listed as malformed.
    { what: 'garbage JSON', key: `${PREFIX}${free()}`, value: '{"PublicIP": "192.0.2.50", ', reason: 'malformed' },
    {
      what: 'wrong types',
      key: `${PREFIX}${free()}`,
      value: JSON.stringify({ PublicIP: 12345, BackendType: 'vxlan', BackendData: { VNI: '1', VtepMAC: 7 } }),
      reason: 'malformed',
    },
    { what: 'a 1 MB value', key: `${PREFIX}${free()}`, value: vx('192.0.2.51', 'a'.repeat(1 << 20)), reason: 'malformed' },
    { what: 'not an object', key: `${PREFIX}${free()}`, value: '[1,2,3]', reason: 'malformed' },
    { what: 'a bad key name', key: `${PREFIX}garbage`, value: vx('192.0.2.52', '02:00:00:00:02:52'), reason: 'malformed' },
    { what: 'a key with prefix /33', key: `${PREFIX}10.244.205.0-33`, value: vx('192.0.2.53', '02:00:00:00:02:53'), reason: 'malformed' },
    // Readable, but never to be programmed.
    { what: "the underlay's own network", key: `${PREFIX}192.0.2.0-24`, value: vx('192.0.2.99', 'aa:bb:cc:00:00:19'), reason: 'outside-network' },
    { what: 'a subnet outside Network', key: `${PREFIX}10.99.1.0-24`, value: vx('192.0.2.54', '02:00:00:00:02:54'), reason: 'outside-network' },
    { what: 'the whole Network', key: `${PREFIX}10.244.0.0-16`, value: vx('192.0.2.55', '02:00:00:00:02:55'), reason: 'subnet-length' },
    { what: 'the default route', key: `${PREFIX}0.0.0.0-0`, value: vx('192.0.2.56', '02:00:00:00:02:56'), reason: 'outside-network' },
    { what: "a /25 inside h1's subnet", key: `${PREFIX}${half(own.subnet)}`, value: vx('192.0.2.57', '02:00:00:00:02:57'), reason: 'subnet-length' },
    { what: "a /25 inside h2's subnet", key: `${PREFIX}${half(peer.subnet)}`, value: vx('192.0.2.58', '02:00:00:00:02:58'), reason: 'subnet-length' },
    { what: "h2's VtepMAC again", key: `${PREFIX}${free()}`, value: vx('192.0.2.59', peer.mac), reason: 'duplicate-vtep-mac' },
    { what: 'the all-zero MAC', key: `${PREFIX}${free()}`, value: vx('192.0.2.60', '00:00:00:00:00:00'), reason: 'vtep-mac' },
    { what: 'the broadcast MAC', key: `${PREFIX}${free()}`, value: vx('192.0.2.61', 'ff:ff:ff:ff:ff:ff'), reason: 'vtep-mac' },
    { what: 'a multicast MAC', key: `${PREFIX}${free()}`, value: vx('192.0.2.62', '01:00:5e:00:00:01'), reason: 'vtep-mac' },
    { what: 'PublicIP 0.0.0.0', key: `${PREFIX}${free()}`, value: vx('0.0.0.0', '02:00:00:00:02:63'), reason: 'public-ip' },
    { what: 'a loopback PublicIP', key: `${PREFIX}${free()}`, value: vx('127.0.0.1', '02:00:00:00:02:64'), reason: 'public-ip' },
    { what: 'a PublicIP inside the overlay', key: `${PREFIX}${free()}`, value: vx('10.244.9.9', '02:00:00:00:02:65'), reason: 'public-ip' },
    { what: 'another VNI', key: `${PREFIX}${free()}`, value: vx('192.0.2.66', '02:00:00:00:02:66', 42), reason: 'vni' },
    {
      what: 'another backend type',
      key: `${PREFIX}${free()}`,
      value: JSON.stringify({ PublicIP: '192.0.2.67', BackendType: 'host-gw' }),
      reason: 'backend-type',
    },
  ];
}

/** /metrics of a host's agent, read from inside its namespace. */
async function metrics(namespace: string): Promise<string> {
  const script = "fetch('http://127.0.0.1:9465/metrics').then(r => r.text()).then(t => process.stdout.write(t))";
  return (await run(['ip', 'netns', 'exec', namespace, process.execPath, '-e', script])).stdout;
}

async function snapshot(state: LabState) {
  return Promise.all(
    state.hosts.map(async (h) => {
      const k = await kernelView(h.namespace);
      return { host: h.name, underlay: await underlayRoutes(h.namespace), ...sortedEntries(k), mtu: k.link?.mtu };
    }),
  );
}

for (const store of ['sqlite', 'etcd'] as const) {
  test(`hostile leases on ${store}: all rejected with their reasons, nothing in any kernel changes, no ping lost`, async (t) => {
    requireRoot();
    const state = await overlayLab(t, { nodes: 3, underlay: 'switch', store, mode: 'bridge', pods: 1 });
    const leases = await leasesOf(state);
    const byHost = (i: number) => leases.find((l) => l.publicIP === state.hosts[i]!.address)!;
    const hostile = hostileLeases(
      { subnet: byHost(0).subnet, mac: byHost(0).backendData.VtepMAC },
      { subnet: byHost(1).subnet, mac: byHost(1).backendData.VtepMAC },
      leases.map((l) => l.subnet),
    );
    const pod = (host: string) => state.pods.find((p) => p.host === host)!;
    const pingers = [startFastPing(pod('h1').namespace, pod('h2').address!), startFastPing(pod('h3').namespace, pod('h1').address!)];
    let stopped = false;
    t.after(async () => void (stopped || (await Promise.all(pingers.map((p) => p.stop().catch(() => {}))))));
    const before = await snapshot(state);

    for (const h of hostile) await putRaw(state, h.key, h.value);
    // Leases reach every agent in store order: once the last one is rejected everywhere, all were seen.
    const last = hostile.at(-1)!;
    await within(20_000, 'every agent to reject the last hostile lease', () =>
      state.hosts.every((h) => agentLog(state, h.name).includes(`"key":"${last.key}"`)),
    );
    const during = await snapshot(state);
    assert.deepEqual(during, before, 'no route (underlay or overlay), neighbour, FDB entry or MTU changed on any host');

    // Each rejection is logged once per agent, however many reconciles ran meanwhile (one per write at least).
    for (const host of state.hosts) {
      const log = agentLog(state, host.name);
      for (const h of hostile.filter((x) => x.reason !== 'malformed')) {
        const lines = log.split('\n').filter((l) => l.includes('"msg":"rejecting a peer lease') && l.includes(`"key":"${h.key}"`));
        assert.equal(lines.length, 1, `${host.name}: ${h.what} logged once (${lines.length})`);
        // h2 sees its own VtepMAC in the copy: for h2 that is the reason, for the others the older lease wins.
        const reason = h.reason === 'duplicate-vtep-mac' && host.name === 'h2' ? 'vtep-mac' : h.reason;
        assert.match(lines[0]!, new RegExp(`"reason":"${reason}"`), `${host.name}: ${h.what}`);
      }
      const m = await metrics(host.namespace);
      assert.match(m, /tulle_leases_rejected\{reason="outside-network"\} 3/, `${host.name}: rejections counted by reason`);
      assert.match(m, /tulle_leases_rejected\{reason="malformed"\} 4/, `${host.name}: unreadable values counted`);
    }

    // `tulle leases` names each one with its reason; the lab's own leases stay "ok".
    const listed = JSON.parse((await runStoreCommand(state, ['leases', '--json'])).stdout) as Array<{
      key: string;
      rejected: { reason: string; detail: string } | null;
    }>;
    for (const h of hostile) {
      const row = listed.find((l) => l.key === h.key);
      // Only a judgement that needs a host (a duplicate MAC is judged store-wide too) can be missing here.
      assert.ok(row, `tulle leases lists ${h.key}`);
      assert.equal(row.rejected?.reason, h.reason, `tulle leases: ${h.what}: ${JSON.stringify(row.rejected)}`);
      assert.ok(row.rejected.detail.length <= 400, `the detail is cut, not the whole value (${row.rejected.detail.length} characters)`);
    }
    assert.ok(
      leases.every((l) => listed.find((x) => x.key === (l as { key?: string }).key)?.rejected === null),
      "the hosts' own leases are ok",
    );
    const status = await run(
      ['ip', 'netns', 'exec', state.hosts[0]!.namespace, process.execPath, TULLE_BIN, 'status', '--store', state.overlay!.store, '--json'],
      { allowFailure: true },
    );
    const report = JSON.parse(status.stdout) as { rejected: unknown[]; pending: string[] };
    assert.equal(status.status, 0, `tulle status in sync: ${JSON.stringify(report.pending)}${status.stderr}`);
    assert.equal(report.rejected.length, hostile.length, 'tulle status lists every one');

    for (const h of hostile) await deleteRaw(state, h.key);
    const gone = (host: string) =>
      agentLog(state, host)
        .split('\n')
        .some((l) => l.includes('"msg":"a rejected lease is gone or acceptable now"') && l.includes(`"key":"${last.key}"`));
    await within(20_000, 'every agent to see the rejected leases go', () => state.hosts.every((h) => gone(h.name)));
    const after = await snapshot(state);
    assert.deepEqual(after, before, 'nothing changed after the leases were deleted either');

    stopped = true;
    const counts = await Promise.all(pingers.map((p) => p.stop()));
    for (const c of counts) assert.equal(c.received, c.transmitted, `no ping lost: ${c.output.trim().split('\n').slice(-2).join(' ')}`);
    t.diagnostic(
      `${hostile.length} hostile leases on ${store}: ${counts.reduce((n, c) => n + c.transmitted, 0)} pings, ${counts.reduce((n, c) => n + c.transmitted - c.received, 0)} lost; kernels unchanged on ${state.hosts.length} hosts`,
    );
    assert.deepEqual(await podMatrix(state), []);
  });
}
