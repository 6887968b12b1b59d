// `tulle decode` filters agree with Wireshark's display filters on a capture of real kernel traffic: two namespaces
// joined by a veth underlay, each with two kernel VTEPs (VNI 1 and VNI 42 on flannel's port 8472); pings over both
// VNIs, IPv4 and IPv6, UDP to a closed port (an ICMP error quoting UDP comes back), a TCP SYN answered by RST, and
// plain underlay ping, UDP and ARP. For every filter the frames tulle shows are exactly the frames tshark's
// equivalent display filter selects (frame numbers compared), and --count counts the same frames.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitFor } from '../../src/base/retry.js';
import { execIn } from '../../src/netns/netns.js';
import { dissect, readCaptureSync } from '../../src/wire/index.js';
import { startCapture, stopCapture } from '../helpers/capture.js';
import { freshNetns, ip, requireRoot } from '../helpers/netns.js';

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

const A = '192.0.2.1';
const B = '192.0.2.2';
/** A second underlay address of A's, so that an outer --host can leave frames out. */
const A2 = '192.0.2.3';

function tulleFrames(pcap: string, args: string[]): number[] {
  const r = spawnSync(process.execPath, [MAIN, 'decode', '--json', ...args, pcap], { encoding: 'utf8', maxBuffer: 64 << 20 });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l).frame as number);
}

function tulleCount(pcap: string, args: string[]): number {
  const r = spawnSync(process.execPath, [MAIN, 'decode', '--count', '--json', ...args, pcap], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout).frames as number;
}

function tsharkFrames(pcap: string, filter: string): number[] {
  const r = spawnSync('tshark', ['-r', pcap, '-n', '-d', 'udp.port==8472,vxlan', '-Y', filter, '-T', 'fields', '-e', 'frame.number'], { encoding: 'utf8' });
  assert.equal(r.status, 0, `tshark -Y '${filter}': ${r.stderr}`);
  return r.stdout.split('\n').filter(Boolean).map(Number);
}

/** The tshark display filter for an outer (underlay) host: the first IP header, or an ARP frame outside VXLAN. */
const outerHost = (a: string): string => `(ip.addr#1 == ${a} || (!vxlan && arp && (arp.src.proto_ipv4 == ${a} || arp.dst.proto_ipv4 == ${a})))`;
/** An inner (pod) host: the IP header inside VXLAN (the second one; IPv6 only ever inside here), or inner ARP. */
const innerHost = (a: string): string =>
  a.includes(':') ? `(vxlan && ipv6.addr == ${a})` : `(vxlan && (ip.addr#2 == ${a} || arp.src.proto_ipv4 == ${a} || arp.dst.proto_ipv4 == ${a}))`;
/** What the innermost frame carries; an ICMP error quoting a UDP header is ICMP. */
const PROTO: Record<string, string> = {
  icmp: '(icmp || icmpv6)',
  tcp: 'tcp',
  udp: '(((vxlan && udp#2) || (!vxlan && udp)) && !icmp && !icmpv6)',
  arp: 'arp',
};

test('filters select exactly the frames tshark display filters select, on a kernel capture', { timeout: 180_000 }, async (t) => {
  requireRoot();
  const a = await freshNetns(t, 'fa');
  const b = await freshNetns(t, 'fb');
  const dir = mkdtempSync(join(tmpdir(), 'tulle-decode-filters-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));

  await ip(a, 'link', 'add', 'veth0', 'type', 'veth', 'peer', 'name', 'veth1', 'netns', b);
  for (const [ns, dev, self, peer, n] of [
    [a, 'veth0', A, B, 1],
    [b, 'veth1', B, A, 2],
  ] as const) {
    // IPv6 on the pod side only: the underlay carries nothing but this test's traffic.
    await execIn(ns, ['sysctl', '-qw', `net.ipv6.conf.${dev}.disable_ipv6=1`]);
    await ip(ns, 'addr', 'add', `${self}/24`, 'dev', dev);
    await ip(ns, 'link', 'set', dev, 'up');
    for (const [vni, v4, v6] of [
      [1, `10.244.1.${n}/24`, `fd00:1::${n}/64`],
      [42, `10.245.0.${n}/24`, undefined],
    ] as const) {
      // ip link add vxN type vxlan id N dstport 8472 local SELF remote PEER dev DEV noudpcsum
      await ip(ns, 'link', 'add', `vx${vni}`, 'type', 'vxlan', 'id', String(vni), 'dstport', '8472', 'local', self, 'remote', peer, 'dev', dev, 'noudpcsum');
      await ip(ns, 'addr', 'add', v4, 'dev', `vx${vni}`);
      if (v6) await ip(ns, 'addr', 'add', v6, 'dev', `vx${vni}`, 'nodad');
      await ip(ns, 'link', 'set', `vx${vni}`, 'up');
    }
  }

  await ip(a, 'addr', 'add', `${A2}/24`, 'dev', 'veth0');

  const pcap = join(dir, 'underlay.pcap');
  const tcpdump = await startCapture(b, 'veth1', pcap);
  t.after(() => stopCapture(tcpdump));
  const inA = (argv: string[]): Promise<unknown> => execIn(a, argv, { allowFailure: true, timeoutMs: 30_000 });
  await inA(['ping', '-c', '2', '-i', '0.2', '-W', '5', '10.244.1.2']);
  await inA(['ping', '-c', '2', '-i', '0.2', '-W', '5', '10.245.0.2']);
  await inA(['ping', '-6', '-c', '2', '-i', '0.2', '-W', '5', 'fd00:1::2']);
  await inA(['ping', '-c', '1', '-W', '5', B]);
  await inA(['ping', '-c', '1', '-W', '5', '-I', A2, B]);
  await inA(['bash', '-c', 'echo hi > /dev/udp/10.244.1.2/5000']);
  await inA(['bash', '-c', 'echo hi > /dev/tcp/10.245.0.2/5001']);
  await inA(['bash', '-c', `echo hi > /dev/udp/${B}/5000`]);
  // The last exchange is the underlay UDP's ICMP port unreachable: wait until tcpdump has written it.
  await waitFor(
    () => {
      try {
        return [...readCaptureSync(readFileSync(pcap))].some((r) => {
          const d = dissect(r.buf, r.offset, r.end);
          return !d.vxlan && d.icmp?.type === 3 && d.ipv4?.src === B;
        });
      } catch {
        return false; // still being written
      }
    },
    15_000,
    'tcpdump to write the underlay ICMP port unreachable',
  );
  await stopCapture(tcpdump);

  const cases: Array<[string[], string]> = [
    [['--vni', '1'], 'vxlan.vni == 1'],
    [['--vni', '42'], 'vxlan.vni == 42'],
    [['--vni', '7'], 'vxlan.vni == 7'],
    [['--host', A], outerHost(A)],
    [['--host', B], outerHost(B)],
    [['--host', A2], outerHost(A2)],
    [['--inner-host', '10.244.1.2'], innerHost('10.244.1.2')],
    [['--inner-host', '10.245.0.1'], innerHost('10.245.0.1')],
    [['--inner-host', 'fd00:1::2'], innerHost('fd00:1::2')],
    [['--inner-host', B], innerHost(B)],
    [['--proto', 'icmp'], PROTO.icmp!],
    [['--proto', 'tcp'], PROTO.tcp!],
    [['--proto', 'udp'], PROTO.udp!],
    [['--proto', 'arp'], PROTO.arp!],
    [['--vni', '1', '--inner-host', '10.244.1.2', '--proto', 'icmp'], `vxlan.vni == 1 && ${innerHost('10.244.1.2')} && ${PROTO.icmp}`],
    [['--host', B, '--proto', 'arp'], `${outerHost(B)} && ${PROTO.arp}`],
    [['--vni', '42', '--proto', 'tcp'], `vxlan.vni == 42 && ${PROTO.tcp}`],
    [['--vni', '1', '--proto', 'udp'], `vxlan.vni == 1 && ${PROTO.udp}`],
  ];
  const all = tulleFrames(pcap, []);
  for (const [args, filter] of cases) {
    const ours = tulleFrames(pcap, args);
    assert.deepEqual(ours, tsharkFrames(pcap, filter), `tulle decode ${args.join(' ')} vs tshark -Y '${filter}'`);
    assert.equal(tulleCount(pcap, args), ours.length, `--count ${args.join(' ')}`);
    // Every filter of the traffic sent matches something, and only --host B (every frame here comes from or goes to
    // B) matches everything; vni 7 and an underlay address asked for inside VXLAN match nothing, on purpose.
    if (args[1] === '7' || (args[1] === B && args[0] === '--inner-host')) assert.equal(ours.length, 0, args.join(' '));
    else if (args.length === 2 && args[0] === '--host' && args[1] === B) assert.deepEqual(ours, all);
    else assert.ok(ours.length > 0 && ours.length < all.length, `${args.join(' ')}: ${ours.length} of ${all.length} frames`);
  }
});
