/**
 * `tulle lab trace LAB SRC DST` and `tulle trace --from NETNS|POD-IP DST`: seed 003's walk in one command
 * (src/trace). Exit 0 only when the probe is delivered (and, with --live, seen at every hop); 1 otherwise.
 */
import { hostname } from 'node:os';
import { InvalidValueError, UsageError } from '../../base/errors.js';
import { isIP } from '../../base/ip.js';
import { NetlinkClient } from '../../netlink/index.js';
import { netnsExists } from '../../netns/netns.js';
import { LeaseManager } from '../../subnet/manager.js';
import { loadLabState, readLabLeases, validateLabName, type LabState } from '../../lab/index.js';
import {
  confirmLive,
  formatTrace,
  localWalker,
  remoteWalker,
  trace,
  PROTOCOLS,
  type Probe,
  type Protocol,
  type TraceEnv,
  type TraceLease,
  type TraceResult,
  type Walker,
} from '../../trace/index.js';
import { defineCommand, defineOptions, type OptionValues } from '../spec.js';
import { openStoreFromOptions, storeOptions } from '../store-options.js';

const probeOptions = defineOptions({
  proto: { type: 'string', description: 'Probe protocol', choices: PROTOCOLS, default: 'icmp', valueName: 'PROTO' },
  port: { type: 'integer', description: 'Destination port of a udp/tcp probe', min: 1, max: 65535, valueName: 'N' },
  size: {
    type: 'integer',
    description: 'ICMP payload bytes of the --live probe (ping -s; 56 = a 98-byte frame); sent with DF set',
    default: 56,
    min: 0,
    max: 65000,
    valueName: 'BYTES',
  },
  live: { type: 'boolean', description: 'Send a real probe and capture it at every hop (tcpdump, decoded by tulle)' },
  json: { type: 'boolean', description: 'Print {verdict, reason, hops, outer} as JSON' },
});

function probeProto(args: { options: OptionValues<typeof probeOptions> }): { proto: Protocol; port?: number } {
  const { proto, port } = args.options;
  if (proto !== 'icmp' && port === undefined) throw new UsageError(`--proto ${proto} needs --port N`);
  if (proto === 'icmp' && port !== undefined) throw new UsageError('--port goes with --proto udp or tcp, not icmp');
  return port === undefined ? { proto } : { proto, port };
}

function print(result: TraceResult, json: boolean): number {
  process.stdout.write(json ? JSON.stringify(result, null, 2) + '\n' : formatTrace(result));
  return result.verdict === 'delivered' && !result.vanishedAt ? 0 : 1;
}

/** Netlink clients opened for one trace, closed together. */
class Clients {
  private readonly open = new Map<string, Promise<NetlinkClient>>();
  get(namespace: string | undefined): Promise<NetlinkClient> {
    const key = namespace ?? '';
    let c = this.open.get(key);
    if (!c) this.open.set(key, (c = NetlinkClient.open(namespace === undefined ? {} : { netns: namespace })));
    return c;
  }
  async closeAll(): Promise<void> {
    for (const c of this.open.values()) (await c.catch(() => undefined))?.close();
  }
}

async function labLeases(state: LabState): Promise<{ leases: TraceLease[]; network: string; port: number }> {
  const { leases, config } = await readLabLeases(state);
  return {
    leases: leases.map((l) => ({ subnet: l.subnet, publicIP: l.publicIP, vni: l.backendData.VNI ?? 1, vtepMac: l.backendData.VtepMAC ?? '' })),
    network: config.Network,
    port: config.Backend.Port,
  };
}

const labTrace = defineCommand({
  name: 'tulle lab trace',
  summary: "Walk a packet from SRC to DST through the lab's kernels hop by hop, with the entry used at each; --live confirms it",
  details: [
    'SRC is a pod (h1-p1) or host (h1) of the lab; DST a pod, a host or an address.',
    'Each hop names the host, namespace, device, action and the kernel entry used, in ip/bridge words; routes are',
    'looked up as the kernel does (ip route get). Entries are checked against the leases in the store. The verdict is',
    'delivered, or the first hop that breaks and why. Exit 0 only when delivered (and seen everywhere with --live).',
  ].join('\n'),
  positionals: [
    { name: 'LAB', description: 'Lab name', required: true },
    { name: 'SRC', description: 'Source pod or host', required: true },
    { name: 'DST', description: 'Destination pod, host or IPv4 address', required: true },
  ],
  options: probeOptions,
  examples: ['tulle lab trace demo h1-p1 h2-p1', 'tulle lab trace demo h1-p1 h3 --live', 'tulle lab trace demo h2 10.244.7.2 --proto udp --port 5353 --json'],
  async run(args) {
    const name = validateLabName(args.positionals.LAB, 'LAB');
    const state = loadLabState(name);
    if (!state.overlay) throw new UsageError(`lab ${name} has no overlay (built with --bare): nothing to trace`);
    const { proto, port } = probeProto(args);
    const endpoint = (target: string, field: string) => {
      const pod = state.pods.find((p) => p.name === target);
      if (pod) return { namespace: pod.namespace, address: pod.address!, pod: true, host: pod.host, name: pod.name };
      const host = state.hosts.find((h) => h.name === target);
      if (host) return { namespace: host.namespace, address: host.address, pod: false, host: host.name, name: host.name };
      if (field === 'DST' && isIP(target) && !target.includes(':')) return { namespace: undefined, address: target, pod: false, host: undefined, name: target };
      const known = [...state.hosts.map((h) => h.name), ...state.pods.map((p) => p.name)].join(', ');
      throw new InvalidValueError(
        field,
        target.length > 40 ? `${target.slice(0, 40)}…` : target,
        `is not a pod or host of lab ${name} (${known})${field === 'DST' ? ' nor an IPv4 address' : ''}`,
      );
    };
    const src = endpoint(args.positionals.SRC, 'SRC');
    const dst = endpoint(args.positionals.DST, 'DST');
    const probe: Probe = { src: src.address, dst: dst.address, proto, ...(port !== undefined ? { port } : {}) };
    const { leases, network, port: vxlanPort } = await labLeases(state);
    const clients = new Clients();
    try {
      const walkerFor = async (host: string, namespace: string) => localWalker({ host, namespace, nl: await clients.get(namespace) });
      const sites = [
        ...state.hosts.map((h) => ({ name: h.name, namespace: h.namespace, addresses: [h.address] })),
        ...(state.router ? [{ name: state.router.name, namespace: state.router.namespace, addresses: state.router.interfaces.map((i) => i.address) }] : []),
      ];
      const srcHost = state.hosts.find((h) => h.name === src.host)!;
      if (!src.pod) {
        // A host sends from the address its route to DST picks (its VTEP address towards pods), as ping would.
        const picked = await (await clients.get(src.namespace)).getRoute({ dst: dst.address }).then(
          (r) => r.result.src,
          () => undefined,
        );
        if (picked) probe.src = picked;
      }
      const env: TraceEnv = {
        leases,
        network,
        source: {
          walker: await walkerFor(src.name, src.namespace!),
          isPod: src.pod,
          ...(src.pod ? { host: await walkerFor(srcHost.name, srcHost.namespace) } : {}),
        },
        async walkerAt(address) {
          const s = sites.find((x) => x.addresses.includes(address));
          return s ? walkerFor(s.name, s.namespace) : undefined;
        },
        async podAt(address) {
          const p = state.pods.find((x) => x.address === address);
          return p ? walkerFor(p.name, p.namespace) : undefined;
        },
        seesAllPods: true,
      };
      let result = await trace(env, probe);
      if (args.options.live) result = await confirmLive(result, { sourceNamespace: src.namespace, size: args.options.size, vxlanPorts: [vxlanPort] });
      return print(result, Boolean(args.options.json));
    } finally {
      await clients.closeAll();
    }
  },
});

export const labTraceCommand = labTrace;

export const traceCommand = defineCommand({
  name: 'tulle trace',
  summary: "Walk a packet from a local pod to DST hop by hop; the remote half is asked of the destination host's agent",
  details: [
    "--from is a network namespace (a pod's, under /run/netns) or a pod IP on this host (the walk then starts where",
    "the packet enters this host). The local half is read from this host's kernel; for the remote half the agent of",
    'the host the packet is sent to is asked (GET http://HOST:AGENT-PORT/trace; its --health-addr must listen on its',
    'underlay address). A host that does not answer is named, with what could not be checked.',
  ].join('\n'),
  positionals: [{ name: 'DST', description: 'Destination IPv4 address', required: true }],
  options: {
    from: { type: 'string', description: 'Source: a network namespace name or a pod IP on this host', valueName: 'NETNS|POD-IP' },
    'agent-port': {
      type: 'integer',
      description: "Port of the peers' agent health servers (their --health-addr)",
      default: 9465,
      min: 1,
      max: 65535,
      valueName: 'N',
    },
    ...probeOptions,
    ...storeOptions,
  },
  examples: ['tulle trace --from cni-1234 10.244.2.3', 'tulle trace --from 10.244.1.2 10.244.2.3 --json --store etcd://192.0.2.10:2379'],
  async run(args) {
    const { from } = args.options;
    if (!from) throw new UsageError('tulle trace: --from NETNS|POD-IP is required');
    const dst = args.positionals.DST;
    if (!isIP(dst) || dst.includes(':')) throw new InvalidValueError('DST', dst.length > 40 ? `${dst.slice(0, 40)}…` : dst, 'must be an IPv4 address');
    const { proto, port } = probeProto(args);
    if (isIP(from) && args.options.live)
      throw new UsageError("tulle trace: --live needs --from NETNS (the probe is sent from the pod's namespace), not a pod IP");
    if (!isIP(from) && !netnsExists(from))
      throw new InvalidValueError(
        '--from',
        from.length > 40 ? `${from.slice(0, 40)}…` : from,
        'is neither an IPv4 address nor a network namespace under /run/netns',
      );
    const { registry, prefix } = await openStoreFromOptions(args, false);
    let config, listing;
    try {
      const manager = new LeaseManager(registry, { prefix });
      config = await manager.getNetworkConfig();
      listing = await manager.listLeases();
    } finally {
      await registry.close();
    }
    const leases: TraceLease[] = listing.leases.map((l) => ({
      subnet: l.subnet,
      publicIP: l.publicIP,
      vni: Number(l.backendData.VNI),
      vtepMac: String(l.backendData.VtepMAC ?? ''),
    }));
    const clients = new Clients();
    try {
      const hostNl = await clients.get(undefined);
      const host = localWalker({ host: hostname(), namespace: undefined, nl: hostNl });
      const own = new Set((await hostNl.listAddresses()).map((a) => a.address));
      let source: TraceEnv['source'];
      let srcAddress: string;
      let sourceNamespace: string | undefined;
      if (isIP(from)) {
        srcAddress = from;
        // The packet as it enters this host from the pod: the walk starts at the host with the pod's address.
        source = { walker: { ...host, walk: (p, _a, ctx) => host.walk(p, { kind: 'forwarded' }, ctx, false) }, isPod: false };
      } else {
        const podNl = await clients.get(from);
        const addr = (await podNl.listAddresses()).find((a) => a.family === 4 && a.dev !== 'lo');
        if (!addr) throw new InvalidValueError('--from', from, 'has no IPv4 address outside lo: not a pod namespace');
        srcAddress = addr.address;
        sourceNamespace = from;
        source = { walker: localWalker({ host: from, namespace: from, nl: podNl }), isPod: true, host };
      }
      const agentPort = args.options['agent-port'];
      const env: TraceEnv = {
        leases,
        network: config.Network,
        source,
        async walkerAt(address) {
          if (own.has(address)) return host;
          // Only cluster hosts run an agent to ask; underlay routers between them are not walked from here.
          return leases.some((l) => l.publicIP === address) ? remoteWalker(address, `http://${address}:${agentPort}`) : undefined;
        },
        async podAt() {
          return undefined;
        },
        seesAllPods: false,
      };
      const probe: Probe = { src: srcAddress, dst, proto, ...(port !== undefined ? { port } : {}) };
      let result = await trace(env, probe);
      if (args.options.live) {
        result = await confirmLive(result, {
          sourceNamespace,
          size: args.options.size,
          vxlanPorts: [config.Backend.Port],
          canCapture: (h) => h.namespace === '(this host)' || h.namespace === sourceNamespace,
        });
      }
      return print(result, Boolean(args.options.json));
    } finally {
      await clients.closeAll();
    }
  },
});

export type { Walker };
