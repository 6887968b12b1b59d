/**
 * `tulle install` / `tulle uninstall`: put tulle on a host the way a container runtime finds it (src/install):
 * the plugin into the CNI bin dir, a conflist into the CNI config dir, the agent's settings and a systemd unit.
 */
import { realpathSync } from 'node:fs';
import { isIPv4 } from 'node:net';
import { fileURLToPath } from 'node:url';
import { InvalidValueError } from '../../base/errors.js';
import { parseHostPort } from '../../agent/health.js';
import { DEFAULT_SUBNET_FILE } from '../../config/subnet-env.js';
import { install, uninstall, type FileOutcome, type InstallSettings } from '../../install/index.js';
import { DEFAULT_PREFIX } from '../../store/keys.js';
import { DEFAULT_STORE_URL, parseStoreUrl } from '../../store/url.js';
import { defineCommand, defineOptions, type OptionsOf } from '../spec.js';
import { storeOptions } from '../store-options.js';

/** This installation: dist/src/cli/commands/ -> the package directory (holding bin/ and dist/). */
const PACKAGE_DIR = realpathSync(fileURLToPath(new URL('../../../../', import.meta.url))).replace(/\/$/, '');

const ETCD_KEYS = ['etcd-cafile', 'etcd-certfile', 'etcd-keyfile', 'etcd-username', 'etcd-password'] as const;
/** The agent's etcd options, without their environment variables (install reads its own flags only). */
const etcdOptions = defineOptions({
  'etcd-cafile': { ...storeOptions['etcd-cafile'], env: undefined },
  'etcd-certfile': { ...storeOptions['etcd-certfile'], env: undefined },
  'etcd-keyfile': { ...storeOptions['etcd-keyfile'], env: undefined },
  'etcd-username': { ...storeOptions['etcd-username'], env: undefined },
  'etcd-password': { ...storeOptions['etcd-password'], env: undefined },
});

const common = defineOptions({
  root: {
    type: 'string',
    valueName: 'DIR',
    description: "Install under this directory (paths inside the files stay the target system's, as with DESTDIR)",
    default: '/',
  },
  force: { type: 'boolean', description: 'Overwrite (install) or remove (uninstall) files even if tulle install did not write them or they changed since' },
});

/** An empty value (--iface '') counts as not given. */
function s(v: string | undefined): string | undefined {
  return v !== '' ? v : undefined;
}

function settings(o: OptionsOf<typeof installCommand>): InstallSettings {
  const store = s(o.store)!;
  parseStoreUrl(store);
  const agentEnv: Record<string, string> = { TULLE_STORE: store, TULLE_PREFIX: s(o.prefix)! };
  // etcd TLS and password settings, under the variables `tulle agent` reads.
  for (const key of ETCD_KEYS) {
    const v = s(o[key]);
    if (v) agentEnv[storeOptions[key].env] = v;
  }
  const iface = s(o.iface);
  if (iface) agentEnv.TULLE_IFACE = iface;
  const publicIP = s(o['public-ip']);
  if (publicIP) {
    if (!isIPv4(publicIP)) throw new InvalidValueError('--public-ip', publicIP, 'is not an IPv4 address');
    agentEnv.TULLE_PUBLIC_IP = publicIP;
  }
  if (o['ip-masq']) agentEnv.TULLE_IP_MASQ = 'true';
  const stateDir = s(o['state-dir']);
  if (stateDir) {
    if (!stateDir.startsWith('/')) throw new InvalidValueError('--state-dir', stateDir, 'must be an absolute path');
    agentEnv.TULLE_STATE_DIR = stateDir;
  }
  const health = s(o['health-addr']);
  if (health) {
    parseHostPort(health);
    agentEnv.TULLE_HEALTH_ADDR = health;
  }
  return {
    packageDir: PACKAGE_DIR,
    nodePath: process.execPath,
    cniBinDir: s(o['cni-bin-dir'])!,
    cniConfDir: s(o['cni-conf-dir'])!,
    cniDataDir: s(o['cni-data-dir']),
    subnetFile: s(o['subnet-file'])!,
    mode: o.mode,
    networkName: s(o['network-name'])!,
    cniVersion: s(o['cni-version'])!,
    agentEnv,
    systemd: !o['no-systemd'],
  };
}

function report(outcomes: FileOutcome[]): void {
  for (const o of outcomes) process.stdout.write(`${o.action.padEnd(9)} ${o.path}${o.reason ? ` (${o.reason})` : ''}\n`);
}

export const installCommand = defineCommand({
  name: 'tulle install',
  summary: 'Install the CNI plugin, a conflist, the agent settings and a systemd unit on this host',
  details: [
    'Writes <cni-bin-dir>/tulle (the plugin, named after its type), <cni-conf-dir>/10-tulle.conflist (tulle, then portmap),',
    '/etc/default/tulle (the agent settings) and /etc/systemd/system/tulle-agent.service. Idempotent; a file tulle did not',
    'write is never overwritten without --force. `tulle uninstall` removes exactly what was written.',
  ].join('\n'),
  options: {
    ...common,
    'cni-bin-dir': { type: 'string', valueName: 'DIR', description: 'Where the runtime looks for CNI plugins', default: '/opt/cni/bin' },
    'cni-conf-dir': { type: 'string', valueName: 'DIR', description: 'Where the runtime reads network configs', default: '/etc/cni/net.d' },
    'cni-data-dir': {
      type: 'string',
      valueName: 'DIR',
      description: "The plugin's address reservations (host-local's format); default: /var/lib/cni/networks",
    },
    'subnet-file': {
      type: 'string',
      valueName: 'PATH',
      description: "subnet.env: the agent's --subnet-file and the plugin's subnetFile (one setting for both)",
      default: DEFAULT_SUBNET_FILE,
    },
    mode: {
      type: 'string',
      valueName: 'MODE',
      description: 'Pod attachment: bridge (flannel, cni0) or routed (Calico, /32 per pod)',
      default: 'bridge',
      choices: ['bridge', 'routed'],
    },
    'network-name': { type: 'string', valueName: 'NAME', description: 'The CNI network name (podman --network NAME)', default: 'tulle' },
    'cni-version': {
      type: 'string',
      valueName: 'V',
      description: "The conflist's cniVersion (podman 4 and Debian's portmap read 1.0.0)",
      default: '1.0.0',
      choices: ['0.4.0', '1.0.0', '1.1.0'],
    },
    store: {
      type: 'string',
      valueName: 'URL',
      description: "The agent's store: etcd://HOST:PORT[,...] shared by every host, or sqlite:PATH for one host",
      default: DEFAULT_STORE_URL,
    },
    prefix: { type: 'string', valueName: 'P', description: "Key prefix (flannel's --etcd-prefix)", default: DEFAULT_PREFIX },
    ...etcdOptions,
    iface: { type: 'string', valueName: 'NAME|IP', description: "The agent's underlay interface; default: the default route's" },
    'public-ip': { type: 'string', valueName: 'IP', description: 'Address other hosts send VXLAN packets to' },
    'ip-masq': { type: 'boolean', description: 'Masquerade pod traffic leaving the cluster network' },
    'health-addr': { type: 'string', valueName: 'HOST:PORT', description: "The agent's /healthz and /metrics address" },
    'state-dir': { type: 'string', valueName: 'DIR', description: 'Where the agent keeps its VTEP MAC; default: /var/lib/tulle' },
    'no-systemd': { type: 'boolean', description: 'Write no systemd unit (start the agent yourself)' },
  },
  examples: ['tulle install --store etcd://192.0.2.10:2379 --iface eth0', 'tulle install --root /tmp/stage --no-systemd --mode routed'],
  async run(args) {
    report(install(s(args.options.root)!, settings(args.options), { force: Boolean(args.options.force) }));
    return 0;
  },
});

export const uninstallCommand = defineCommand({
  name: 'tulle uninstall',
  summary: 'Remove the files tulle install wrote (and only those)',
  options: common,
  async run(args) {
    const outcomes = uninstall(s(args.options.root)!, { force: Boolean(args.options.force) });
    report(outcomes);
    return outcomes.some((o) => o.action === 'kept') ? 1 : 0;
  },
});
