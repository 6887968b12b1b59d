/**
 * The pure parts of `tulle trace`: the RTM_GETROUTE request `ip route get` sends, the /trace query the agent
 * answers (every hostile value refused naming the field), and the entries in iproute2's words.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as C from '../../src/netlink/constants.js';
import { Attrs } from '../../src/netlink/message.js';
import { encodeGetRoute } from '../../src/netlink/route.js';
import { InvalidValueError } from '../../src/base/errors.js';
import {
  fdbText,
  formatTrace,
  neighText,
  parseTraceQuery,
  RemoteTraceError,
  routeText,
  trace,
  traceRoute,
  type SiteWalk,
  type TraceEnv,
  type TraceResult,
  type Walker,
} from '../../src/trace/index.js';

const HDR = 16;

test('route get: RTM_GETROUTE with the packet addresses as /32s, the incoming device, and fibmatch as a flag', () => {
  const req = encodeGetRoute({ dst: '10.244.2.7', from: '10.244.1.2', iif: 'cni0', mark: 5 }, { iif: 9 }, true);
  const m = req.message;
  assert.equal(m.readUInt16LE(4), C.RTM_GETROUTE);
  assert.deepEqual([m[HDR], m[HDR + 1], m[HDR + 2]], [C.AF_INET, 32, 32]);
  assert.equal(m.readUInt32LE(HDR + 8), C.RTM_F_FIB_MATCH);
  const a = new Attrs(m, HDR + C.RTMSG_LEN);
  assert.deepEqual(
    [a.address(C.RTA_DST), a.address(C.RTA_SRC), a.u32(C.RTA_IIF), a.u32(C.RTA_MARK), a.has(C.RTA_OIF)],
    ['10.244.2.7', '10.244.1.2', 9, 5, false],
  );
  assert.equal(req.command, 'route get fibmatch 10.244.2.7 from 10.244.1.2 iif cni0 mark 5');
  const plain = encodeGetRoute({ dst: 'fd00::1' }, {}, false).message;
  assert.deepEqual([plain[HDR], plain[HDR + 1], plain[HDR + 2], plain.readUInt32LE(HDR + 8)], [C.AF_INET6, 128, 0, 0]);
  assert.throws(
    () => encodeGetRoute({ dst: '10.0.0.1', from: 'fd00::1' }, {}, false),
    (e: unknown) => e instanceof InvalidValueError && e.field === 'route get from',
  );
  assert.throws(
    () => encodeGetRoute({ dst: 'x'.repeat(5000) }, {}, false),
    (e: unknown) => e instanceof InvalidValueError && e.field === 'route get dst',
  );
});

const vxlanQuery = 'src=10.244.1.2&dst=10.244.2.3&arrival=vxlan&osrc=192.0.2.11&odst=192.0.2.12&dport=8472&vni=1&imac=0e:f0:b5:8c:28:f5';

test('/trace query: a VXLAN arrival and a forwarded one', () => {
  const v = parseTraceQuery(new URLSearchParams(vxlanQuery));
  assert.deepEqual(v.probe, { src: '10.244.1.2', dst: '10.244.2.3', proto: 'icmp' });
  assert.equal(v.arrival.kind, 'vxlan');
  assert.deepEqual(
    v.arrival.kind === 'vxlan' && [v.arrival.outer.src, v.arrival.outer.dst, v.arrival.outer.dstPort, v.arrival.outer.vni, v.arrival.outer.innerDstMac],
    ['192.0.2.11', '192.0.2.12', 8472, 1, '0e:f0:b5:8c:28:f5'],
  );
  const f = parseTraceQuery(new URLSearchParams('src=10.244.1.2&dst=192.0.2.12&proto=udp&port=53&arrival=forwarded&to=192.0.2.12'));
  assert.deepEqual(f, { probe: { src: '10.244.1.2', dst: '192.0.2.12', proto: 'udp', port: 53 }, arrival: { kind: 'forwarded', to: '192.0.2.12' } });
});

test('/trace query: each hostile value is refused naming the field, the value (cut) and the rule', () => {
  const cases: Array<[string, string, RegExp]> = [
    ['src', '', /src: \(missing\) must be an IPv4 address/],
    ['src', '10.0.0.1.5', /src: "10\.0\.0\.1\.5" must be an IPv4 address/],
    ['dst', 'fd00::1', /dst: "fd00::1" must be an IPv4 address/],
    ['dst', 'a'.repeat(5000), /dst: "a{64}…" must be an IPv4 address/],
    ['dport', '0', /dport: "0" must be a whole number 1\.\.65535/],
    ['dport', '65536', /dport/],
    ['dport', '1e3', /dport: "1e3"/],
    ['dport', '-1', /dport/],
    ['vni', '16777216', /vni: "16777216" must be a whole number 0\.\.16777215/],
    ['imac', 'zz:zz', /imac: "zz:zz" must be a MAC address/],
    ['arrival', 'teleport', /arrival: "teleport" must be vxlan or forwarded/],
    ['proto', 'gre', /proto: "gre" must be one of icmp, udp, tcp/],
    ['osrc', '300.1.1.1', /osrc/],
  ];
  for (const [field, value, message] of cases) {
    const q = new URLSearchParams(vxlanQuery);
    if (value === '') q.delete(field);
    else q.set(field, value);
    assert.throws(
      () => parseTraceQuery(q),
      (e: unknown) => e instanceof InvalidValueError && e.field === field && message.test(e.message),
      `${field}=${value.slice(0, 20)}`,
    );
  }
  assert.throws(
    () => parseTraceQuery(new URLSearchParams('src=10.0.0.1&dst=10.0.0.2&proto=tcp&arrival=forwarded&to=10.0.0.2')),
    (e: unknown) => e instanceof InvalidValueError && e.field === 'port',
  );
});

test('/trace on the health server: other paths are not its business; a bad query is a 400 with the message and code', async () => {
  const route = traceRoute();
  assert.equal(route('/healthz', new URLSearchParams()), undefined);
  const answer = await route('/trace', new URLSearchParams('src=1'))!;
  assert.equal(answer.status, 400);
  assert.deepEqual(answer.body, { error: 'src: "1" must be an IPv4 address', code: 'TLE_INVALID_VALUE' });
});

test("entries in iproute2's words, and the text walk", () => {
  assert.equal(
    routeText({ dst: '10.244.2.0/24', via: '10.244.2.0', dev: 'flannel.1', onlink: true, protocol: 84, table: 254, scope: 'universe' }),
    '10.244.2.0/24 via 10.244.2.0 dev flannel.1 proto 84 onlink',
  );
  assert.equal(
    routeText({ dst: '10.244.1.5/32', dev: 'eth0', type: 'local', table: 255, protocol: 2, scope: 'host', src: '10.244.1.5' }),
    'local 10.244.1.5 dev eth0 table local proto kernel scope host src 10.244.1.5',
  );
  assert.equal(
    neighText({ ip: '10.244.2.0', dev: 'flannel.1', mac: '0e:f0:b5:8c:28:f5', state: 'permanent' }),
    '10.244.2.0 dev flannel.1 lladdr 0e:f0:b5:8c:28:f5 PERMANENT',
  );
  assert.equal(fdbText({ mac: '0e:f0:b5:8c:28:f5', dev: 'flannel.1', dst: '10.0.4.14' }), '0e:f0:b5:8c:28:f5 dev flannel.1 dst 10.0.4.14 self permanent');
  const r: TraceResult = {
    probe: { src: '10.244.0.3', dst: '10.244.1.3', proto: 'icmp' },
    verdict: 'fdb-missing',
    reason: 'master: no FDB entry',
    hops: [
      {
        host: 'master',
        namespace: 'ns',
        device: 'flannel.1',
        action: 'route into the overlay',
        entry: 'ip route: 10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink',
        seen: false,
      },
    ],
    outer: null,
    vanishedAt: { host: 'master', device: 'flannel.1' },
  };
  assert.equal(
    formatTrace(r),
    'trace icmp 10.244.0.3 -> 10.244.1.3\n\n 1  master (ns) flannel.1: route into the overlay   [NOT seen]\n      ip route: 10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink\nlive: the probe vanished at master flannel.1\n\nfdb-missing: master: no FDB entry\n',
  );
});

/** A walker that answers from a script: the hops and exit it returns for each arrival kind. */
function scripted(host: string, steps: Record<string, SiteWalk['exit']>, seen: string[]): Walker {
  return {
    host,
    namespace: `ns-${host}`,
    async walk(_probe, arrival, ctx) {
      seen.push(`${host}:${arrival.kind}${ctx.srcMtu ? `:mtu${ctx.srcMtu}` : ''}`);
      const exit = steps[arrival.kind];
      if (!exit) throw new RemoteTraceError(`no answer from ${host}`);
      return { hops: [{ host, namespace: `ns-${host}`, device: 'eth0', action: arrival.kind, entry: '' }], exit };
    },
  };
}

test('trace(): joins the walks of each namespace, follows the exits, and names what it cannot see', async () => {
  const probe = { src: '10.244.1.2', dst: '10.244.2.3', proto: 'icmp' as const };
  const outer = {
    src: '192.0.2.11',
    dst: '192.0.2.12',
    dstPort: 8472,
    srcPortRange: [32768, 60999] as [number, number],
    vni: 1,
    innerSrcMac: 'a',
    innerDstMac: 'b',
  };
  const seen: string[] = [];
  const pod = scripted('h1-p1', { start: { kind: 'to-host', mtu: 1450 } }, seen);
  const h1 = scripted('h1', { forwarded: { kind: 'vxlan', outer } }, seen);
  const h2 = scripted('h2', { vxlan: { kind: 'to-pod', port: 'cni0' } }, seen);
  const dstPod = scripted('h2-p1', { forwarded: { kind: 'delivered', reason: 'here' } }, seen);
  const leases = [{ subnet: '10.244.2.0/24', publicIP: '192.0.2.12', vni: 1, vtepMac: 'b' }];
  const env: TraceEnv = {
    leases,
    network: '10.244.0.0/16',
    source: { walker: pod, isPod: true, host: h1 },
    walkerAt: async (a) => (a === '192.0.2.12' ? h2 : undefined),
    podAt: async (a) => (a === probe.dst ? dstPod : undefined),
    seesAllPods: true,
  };
  const r = await trace(env, probe);
  assert.deepEqual([r.verdict, r.reason, r.outer], ['delivered', 'here', outer]);
  assert.deepEqual(seen, ['h1-p1:start', 'h1:forwarded:mtu1450', 'h2:vxlan:mtu1450', 'h2-p1:forwarded:mtu1450']);
  assert.deepEqual(
    r.hops.map((h) => h.host),
    ['h1-p1', 'h1', 'h2', 'h2-p1'],
  );

  // The destination host cannot be seen into: the trace says so instead of guessing.
  const blind = await trace({ ...env, walkerAt: async () => undefined }, probe);
  assert.equal(blind.verdict, 'remote-unknown');
  assert.match(blind.reason, /encapsulated to 192\.0\.2\.12, which this trace cannot see into/);
  // A remote agent that does not answer ends the walk with what was not checked.
  const silent = await trace({ ...env, walkerAt: async () => scripted('h2', {}, []) }, probe);
  assert.deepEqual([silent.verdict, silent.reason], ['remote-unknown', 'no answer from h2; the hops from h2 on are not checked']);
  // A pod address no pod holds, when every pod is visible, is a break; on a real host it is handed to the port.
  const nobody = await trace({ ...env, podAt: async () => undefined }, probe);
  assert.equal(nobody.verdict, 'no-such-pod');
  const realHost = await trace({ ...env, podAt: async () => undefined, seesAllPods: false }, probe);
  assert.equal(realHost.verdict, 'delivered');
  assert.match(realHost.reason, /^handed to cni0 on h2/);
  // No route to an address of the cluster network that nobody leases: not-leased.
  const unleased = await trace(
    { ...env, source: { walker: scripted('h1', { start: { kind: 'break', verdict: 'no-route', reason: 'h1: no route' } }, []), isPod: false } },
    { ...probe, dst: '10.244.9.9' },
  );
  assert.equal(unleased.verdict, 'not-leased');
  // Two hosts forwarding to each other: the walk ends as a loop, not forever.
  const loop = scripted(
    'rt',
    { forwarded: { kind: 'forward', nexthop: '192.0.2.1', dev: 'eth0' }, start: { kind: 'forward', nexthop: '192.0.2.1', dev: 'eth0' } },
    [],
  );
  const looped = await trace({ ...env, source: { walker: loop, isPod: false }, walkerAt: async () => loop }, probe);
  assert.equal(looped.verdict, 'no-route');
  assert.match(looped.reason, /routing loop/);
});
