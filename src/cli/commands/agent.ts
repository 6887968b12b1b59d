/**
 * `tulle agent`: the per-host daemon (src/agent). Flags follow flanneld's where flanneld has one (--iface,
 * --public-ip, --subnet-file, --ip-masq, --etcd-prefix as --prefix); every flag is also a TULLE_* variable, as a
 * DaemonSet would set them. `--cleanup` removes what the agent made on this host instead of running it.
 */
import { isAbsolute } from 'node:path';
import { createLogger } from '../../base/log.js';
import { InvalidValueError, describeError } from '../../base/errors.js';
import { Agent, cleanupHost } from '../../agent/agent.js';
import { DEFAULT_CNI_IPAM_DIR, DEFAULT_HEALTH_ADDR, DEFAULT_STATE_DIR, type AgentOptions } from '../../agent/options.js';
import { DEFAULT_SUBNET_FILE } from '../../config/subnet-env.js';
import { validateBridgeName } from '../../config/network.js';
import { parseStoreUrl } from '../../store/url.js';
import { CniServer, DEFAULT_CNI_SOCKET } from '../../cni/server.js';
import { defineCommand, type OptionsOf } from '../spec.js';
import { openStoreFromOptions, storeOptions } from '../store-options.js';
import { traceRoute } from '../../trace/endpoint.js';

/** How long shutdown may take after SIGTERM/SIGINT before the process exits regardless. */
const SHUTDOWN_DEADLINE_MS = 900;

function agentOptions(o: OptionsOf<typeof agentCommand>): AgentOptions {
  // An empty value (--iface '') counts as not given.
  const s = (v: string | undefined): string | undefined => v || undefined;
  return {
    store: s(o.store)!,
    prefix: s(o.prefix)!,
    iface: s(o.iface),
    publicIP: s(o['public-ip']),
    subnetFile: s(o['subnet-file'])!,
    stateDir: s(o['state-dir'])!,
    ipMasq: Boolean(o['ip-masq']),
    healthAddr: s(o['health-addr'])!,
    healthRoutes: traceRoute(),
    reconcileInterval: o['reconcile-interval'],
    rulesInterval: o['rules-interval'],
    vxlanGuard: o['vxlan-guard'] !== 'false',
    // "" prunes nothing (an agent that cannot know the plugin's directory must not take it as empty).
    ...(s(o['cni-ipam-dir']) ? { cniIpamDir: ipamDirOption(o['cni-ipam-dir']) } : {}),
    ...(s(o.bridge) ? { bridge: validateBridgeName(o.bridge, '--bridge') } : {}),
  };
}

/**
 * --cni-ipam-dir: an absolute path. A relative one would be read against whatever directory the agent runs in,
 * where it finds no reservations, and the agent would then delete the records of this host's live pods.
 */
function ipamDirOption(value: string): string {
  // eslint-disable-next-line no-control-regex
  if (!isAbsolute(value) || /[\x00-\x1f\x7f]/.test(value))
    throw new InvalidValueError('--cni-ipam-dir', value, "must be an absolute path without control characters (the plugin's <dataDir>/<network name>)");
  return value;
}

export const agentCommand = defineCommand({
  name: 'tulle agent',
  summary: 'Run the per-host overlay agent: lease a subnet, program the VTEP and one route + neighbour + FDB entry per peer',
  details: [
    'Logs are JSON lines on stderr (readable lines on a terminal; TULLE_LOG_FORMAT=json|text, TULLE_LOG_LEVEL).',
    'SIGTERM/SIGINT stop the agent and leave the kernel state and the lease in place, so traffic keeps flowing.',
  ].join('\n'),
  options: {
    ...storeOptions,
    iface: {
      type: 'string',
      valueName: 'NAME|IP',
      description: "Underlay interface (or an address on it); default: the default route's interface",
      env: 'TULLE_IFACE',
    },
    'public-ip': {
      type: 'string',
      valueName: 'IP',
      description: "Address peers send VXLAN packets to; default: the underlay interface's first IPv4 address",
      env: 'TULLE_PUBLIC_IP',
    },
    'subnet-file': {
      type: 'string',
      valueName: 'PATH',
      description: 'Where to write subnet.env for the CNI plugin',
      default: DEFAULT_SUBNET_FILE,
      env: 'TULLE_SUBNET_FILE',
    },
    'state-dir': {
      type: 'string',
      valueName: 'DIR',
      description: 'Where the agent keeps its VTEP MAC across restarts',
      default: DEFAULT_STATE_DIR,
      env: 'TULLE_STATE_DIR',
    },
    'ip-masq': { type: 'boolean', description: 'Masquerade traffic leaving the cluster network', env: 'TULLE_IP_MASQ' },
    'health-addr': {
      type: 'string',
      valueName: 'HOST:PORT',
      description: 'Serve /healthz, /metrics and /trace (the remote half of tulle trace) here',
      default: DEFAULT_HEALTH_ADDR,
      env: 'TULLE_HEALTH_ADDR',
    },
    'reconcile-interval': {
      type: 'integer',
      valueName: 'SECONDS',
      description: 'Full reconcile period',
      default: 60,
      min: 1,
      max: 86400,
      env: 'TULLE_RECONCILE_INTERVAL',
    },
    'rules-interval': {
      type: 'integer',
      valueName: 'SECONDS',
      description: 'Traffic rules check period',
      default: 30,
      min: 1,
      max: 86400,
      env: 'TULLE_RULES_INTERVAL',
    },
    'vxlan-guard': {
      type: 'string',
      valueName: 'true|false',
      description: "Drop VXLAN packets for the network's VNI from hosts that hold no lease (and are not in Backend.AllowedSources)",
      default: 'true',
      choices: ['true', 'false'],
      env: 'TULLE_VXLAN_GUARD',
    },
    'cni-socket': {
      type: 'string',
      valueName: 'PATH',
      description: 'Serve CNI requests from the tulle-cni shim on this unix socket (root only); "" serves none',
      default: DEFAULT_CNI_SOCKET,
      env: 'TULLE_CNI_SOCKET',
    },
    bridge: {
      type: 'string',
      valueName: 'NAME',
      description:
        "L2 networks: the bridge this host's vxlan<VNI> joins, instead of Backend.Bridge (an existing one, e.g. a Docker network's br-<id>, is only joined)",
      env: 'TULLE_BRIDGE',
    },
    'cni-ipam-dir': {
      type: 'string',
      valueName: 'DIR',
      description:
        'L2 Flood "none": the CNI plugin\'s address reservations for this network (<cni data dir>/<network name>); at start, endpoint records of this host for addresses not reserved there are deleted; "" deletes none',
      default: DEFAULT_CNI_IPAM_DIR,
      env: 'TULLE_CNI_IPAM_DIR',
    },
    cleanup: {
      type: 'boolean',
      description:
        'Remove what the agent made on this host (VTEP, routes, rules, VXLAN guard, subnet file; the device of an L2 network and a bridge tulle made), release its lease, and exit',
    },
  },
  examples: [
    'tulle agent --store etcd://192.0.2.10:2379 --iface eth0 --ip-masq',
    'TULLE_STORE=sqlite:/var/lib/tulle/tulle.db tulle agent',
    'tulle agent --cleanup --store etcd://192.0.2.10:2379',
  ],
  async run(args) {
    const options = agentOptions(args.options);
    const log = createLogger({ component: 'agent' });
    const openStore = async () => (await openStoreFromOptions(args, true, log.child({ component: 'store' }))).registry;
    // A bad store URL is an error before anything is touched (cleanup would otherwise remove the kernel state
    // and then fail to release the lease).
    parseStoreUrl(options.store);
    if (args.options.cleanup) {
      const outcome = await cleanupHost(options, log, openStore);
      process.stdout.write(`${outcome.summary}\n`);
      return 0;
    }
    const agent = new Agent(options, log, openStore);
    // Next to the agent, not inside it: the CNI server needs only the agent's logger and metrics registry.
    // TULLE_CNI_SOCKET="" turns the socket off, as it makes the shim skip the agent (the option parser reads an
    // empty variable as unset).
    const socket = process.env.TULLE_CNI_SOCKET === '' && args.options['cni-socket'] === DEFAULT_CNI_SOCKET ? '' : args.options['cni-socket'];
    let cni: CniServer | undefined;
    if (socket) {
      try {
        // In-flight requests get half a second at shutdown: one cut short answers 11 (ADD) or falls back in the shim.
        cni = await CniServer.start({
          path: socket,
          log: log.child({ component: 'cni' }),
          registry: agent.metrics.registry,
          drainMs: 500,
          endpointHooks: () => agent.podEndpointHooks,
        });
      } catch (err) {
        // A malformed path is the operator's typo: refuse to start. A socket that cannot be served (another agent's,
        // a directory that cannot be made) is not fatal: the shim falls back to the Node plugin, so pods still get
        // their network, and the agent runs on without it.
        if (err instanceof InvalidValueError) throw err;
        log.error('not serving CNI requests; the tulle-cni shim runs the plugin itself', { error: describeError(err) });
      }
    }
    const stop = (signal: string) => {
      log.info('stopping; kernel state and lease stay in place', { signal });
      void cni?.close();
      agent.stop();
      // Every handle is closed by stop(); should one still hold the process (a hung socket, a library's timer),
      // the agent must end all the same: a supervisor's restart must never find the old agent on its port.
      setTimeout(() => {
        log.warn('still running a second after the stop signal; exiting now', { signal });
        process.exit(0);
      }, SHUTDOWN_DEADLINE_MS).unref();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
    try {
      await agent.run();
      return 0;
    } catch (err) {
      log.error('agent failed', { error: describeError(err) });
      throw err;
    } finally {
      await Promise.all([agent.close(), cni?.close()]);
    }
  },
});
