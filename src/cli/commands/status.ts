/**
 * `tulle status`: this host's overlay next to what the leases ask for — its lease, its VTEP, peers programmed,
 * and every entry that is missing, wrong or stale (as the `ip`/`bridge` command that would fix it) — and whether
 * the agent is running (its /healthz). When the store cannot be reached, the local side is still shown: the
 * subnet from subnet.env, the VTEP and tulle's routes in the kernel. Read-only.
 */
import { describeError } from '../../base/errors.js';
import { DEFAULT_HEALTH_ADDR } from '../../agent/options.js';
import { probeAgent, type AgentProbe } from '../../agent/health.js';
import { DEFAULT_SUBNET_FILE, previousSubnet } from '../../config/subnet-env.js';
import { NetlinkClient } from '../../netlink/index.js';
import { hostOverlayStatus, localOverlayState } from '../../overlay/status.js';
import { VxlanGuard, type GuardStatus } from '../../overlay/guard.js';
import { l2DeviceName, l2StatusProblems } from '../../overlay/l2.js';
import { endpointStatus } from '../../overlay/l2-endpoints.js';
import { admitEndpoints, listEndpoints, type EndpointListing } from '../../subnet/endpoints.js';
import { chooseBackend } from '../../overlay/rules.js';
import { LeaseManager } from '../../subnet/manager.js';
import { defineCommand } from '../spec.js';
import { openStoreFromOptions, storeOptions } from '../store-options.js';

function agentLine(a: AgentProbe): string {
  return a.running ? (a.ready ? 'running, ready' : `running, NOT ready (${a.reason})`) : `NOT running (${a.reason})`;
}

export const statusCommand = defineCommand({
  name: 'tulle status',
  summary: "This host's lease, VTEP and peers, whether the kernel matches the leases, and whether the agent runs",
  details: 'Exit 0 when the agent is ready and the kernel holds exactly what the leases ask for; 1 otherwise (the output says what).',
  options: {
    ...storeOptions,
    'subnet-file': {
      type: 'string',
      valueName: 'PATH',
      description: "The agent's subnet.env (read when the store cannot be reached)",
      default: DEFAULT_SUBNET_FILE,
      env: 'TULLE_SUBNET_FILE',
    },
    'health-addr': {
      type: 'string',
      valueName: 'HOST:PORT',
      description: "The agent's health address",
      default: DEFAULT_HEALTH_ADDR,
      env: 'TULLE_HEALTH_ADDR',
    },
    json: { type: 'boolean', description: 'Print the status as JSON' },
  },
  examples: ['tulle status --store etcd://192.0.2.10:2379', 'ip netns exec tulle-demo-h1 tulle status --store sqlite:/run/tulle/labs/demo/store.db'],
  async run(args) {
    const agent = await probeAgent(args.options['health-addr']);
    let fromStore;
    let storeError: string | undefined;
    try {
      const { registry, prefix } = await openStoreFromOptions(args, false);
      try {
        const manager = new LeaseManager(registry, { prefix });
        const config = await manager.getNetworkConfig();
        // Flood "none": the pods' endpoint records, which the device's entries must follow.
        const endpoints: EndpointListing | undefined =
          config.Backend.mode === 'l2' && config.Backend.flood === 'none' ? await listEndpoints(registry, prefix) : undefined;
        fromStore = { config, listing: await manager.listLeases(), endpoints };
      } finally {
        await registry.close();
      }
    } catch (err) {
      storeError = describeError(err).replace(/^store /, '');
    }
    const nl = await NetlinkClient.open();
    try {
      if (!fromStore) {
        const local = await localOverlayState(nl);
        const subnetFile = args.options['subnet-file'];
        const out = { store: storeError, agent, subnetEnv: previousSubnet(subnetFile) ?? null, ...local, inSync: false };
        if (args.options.json) process.stdout.write(JSON.stringify(out, null, 2) + '\n');
        else {
          const lines = [
            `store:    ${storeError}`,
            `agent:    ${agentLine(agent)}`,
            `lease:    ${out.subnetEnv ? `${out.subnetEnv} (from ${subnetFile}; the store was not asked)` : `unknown (no ${subnetFile})`}`,
            `VTEP:     ${local.vteps.length ? local.vteps.map((v) => `${v.name} ${v.address ?? 'no address'}${v.up ? '' : ' (DOWN)'}`).join(', ') : 'missing'}`,
            `routes:   ${local.routes} to other hosts in the kernel (not compared with the leases)`,
            'in sync:  unknown (the store cannot be reached)',
          ];
          process.stdout.write(lines.join('\n') + '\n');
        }
        return 1;
      }
      const { config, listing, endpoints } = fromStore;
      const s = await hostOverlayStatus(nl, { leases: listing.leases, config });
      const rejected = [...listing.malformed.map((m) => ({ key: m.key, reason: 'malformed', detail: m.message })), ...s.rejected];
      // The guard's members must be exactly the peers this host admits.
      const refused = new Set(s.rejected.map((r) => r.key));
      const peerIPs = listing.leases.filter((l) => l.subnet !== s.subnet && !refused.has(l.key)).map((l) => l.publicIP);
      const guard = await new VxlanGuard(chooseBackend()).status();
      const guardView = { ...guard, missing: peerIPs.filter((ip) => !guard.members.includes(ip)), extra: guard.members.filter((ip) => !peerIPs.includes(ip)) };
      if (config.Backend.mode === 'l2') {
        // An L2 network: the device, its bridge and its flood state, not flannel's VTEP, routes and neighbours.
        const b = config.Backend;
        const l2 = await l2StatusProblems(nl, { vni: b.VNI, flood: b.flood, ...(b.group ? { group: b.group } : {}) }, [...new Set(peerIPs)]);
        let pods: { remote: number; rejected: number } | undefined;
        if (endpoints && l2.device && s.subnet && s.publicIP) {
          // Believed as the agent believes them: against this host's lease and the peers it admits.
          const admitted = [{ subnet: s.subnet, publicIP: s.publicIP }, ...listing.leases.filter((l) => l.subnet !== s.subnet && !refused.has(l.key))];
          const { accepted, rejected: notBelieved } = admitEndpoints(endpoints.records, admitted, s.publicIP);
          const e = await endpointStatus(nl, l2DeviceName(b.VNI), accepted, s.publicIP);
          l2.pending.push(...e.pending);
          pods = { remote: e.remote, rejected: notBelieved.length + endpoints.malformed.length };
        }
        const inSync = l2.pending.length === 0;
        if (args.options.json) {
          process.stdout.write(
            JSON.stringify(
              {
                subnet: s.subnet,
                publicIP: s.publicIP,
                mode: 'l2',
                flood: b.flood,
                device: l2.device ?? null,
                floodTo: l2.floodTo,
                peers: peerIPs.length,
                ...(pods ? { endpoints: pods } : {}),
                rejected,
                pending: l2.pending,
                inSync,
                agent,
                guard: guardView,
              },
              null,
              2,
            ) + '\n',
          );
        } else {
          const d = l2.device;
          const lines = [
            `agent:    ${agentLine(agent)}`,
            `lease:    ${s.subnet ? `${s.subnet} (a slice of the l2 network ${config.Network}; public IP ${s.publicIP})` : 'none: no lease in the store has a public IP of this host'}`,
            `device:   ${d ? `${d.name} vni ${d.vxlan?.vni} local ${d.vxlan?.local} dstport ${d.vxlan?.port} mtu ${d.mtu} on bridge ${d.master ?? 'none'}${d.up ? '' : ' (DOWN)'}` : 'missing'}`,
            `flood:    ${b.flood}${b.flood === 'unicast' ? ` to ${l2.floodTo.join(' ') || '(nobody)'}` : b.flood === 'multicast' ? ` group ${d?.vxlan?.group ?? 'none'}` : b.flood === 'remote' ? ` remote ${d?.vxlan?.remote ?? 'none'}` : ''}; ${peerIPs.length} admitted peer(s)`,
            ...(pods
              ? [`pods:     ${pods.remote} remote pod(s) from the store's endpoint records${pods.rejected ? `; ${pods.rejected} record(s) not believed` : ''}`]
              : []),
            ...(rejected.length
              ? [`rejected: ${rejected.length} lease(s) this host will not program:`, ...rejected.map((r) => `  ${r.key}: ${r.reason}: ${r.detail}`)]
              : []),
            `in sync:  ${inSync ? 'yes' : 'NO'}`,
            ...(l2.pending.length ? ['would need:', ...l2.pending.map((p) => `  ${p}`)] : []),
            ...guardLines(guardView),
          ];
          process.stdout.write(lines.join('\n') + '\n');
        }
        return inSync && agent.ready ? 0 : 1;
      }
      if (args.options.json) {
        process.stdout.write(JSON.stringify({ ...s, rejected, agent, guard: guardView }, null, 2) + '\n');
      } else {
        const lines = [
          `agent:    ${agentLine(agent)}`,
          `lease:    ${s.subnet ? `${s.subnet} (public IP ${s.publicIP})` : 'none: no lease in the store has a public IP of this host'}`,
          `VTEP:     ${s.vtep ? `${s.vtep.name} vni ${s.vtep.vni} local ${s.vtep.local} dstport ${s.vtep.port} mac ${s.vtep.mac} mtu ${s.vtep.mtu}${s.vtep.up ? '' : ' (DOWN)'}` : 'missing'}`,
          `peers:    ${s.programmed}/${s.peers} programmed`,
          ...(rejected.length
            ? [`rejected: ${rejected.length} lease(s) this host will not program:`, ...rejected.map((r) => `  ${r.key}: ${r.reason}: ${r.detail}`)]
            : []),
          `in sync:  ${s.inSync ? 'yes' : 'NO'}${s.inSync && !agent.ready ? ' (now; nothing keeps it so while the agent is not running)' : ''}`,
          ...(s.pending.length ? ['would need:', ...s.pending.map((p) => `  ${p}`)] : []),
          ...guardLines(guardView),
        ];
        process.stdout.write(lines.join('\n') + '\n');
      }
      return s.inSync && agent.ready ? 0 : 1;
    } finally {
      nl.close();
    }
  },
});

/** The VXLAN guard's lines: its members (leased peers' public IPs), allowed sources and drops per reason. */
function guardLines(g: GuardStatus & { missing: string[]; extra: string[] }): string[] {
  if (!g.present) return [`guard:    off (no VXLAN guard in ${g.backend})`];
  const drops = Object.entries(g.drops)
    .map(([reason, c]) => `${c.packets} ${reason}`)
    .join(', ');
  return [
    `guard:    ${g.backend}, VNI ${g.vni} port ${g.port}: ${g.members.length} member${g.members.length === 1 ? '' : 's'}, dropped ${drops}`,
    `  members: ${g.members.join(' ') || '(none)'}`,
    ...(g.allowed.length ? [`  allowed: ${g.allowed.join(' ')}`] : []),
    ...(g.missing.length ? [`  not yet members (leased peers): ${g.missing.join(' ')}`] : []),
    ...(g.extra.length ? [`  members without a lease: ${g.extra.join(' ')}`] : []),
  ];
}
