/**
 * The files `tulle install` puts on a host, as text (pure; install.ts writes them):
 *
 *   <cni-bin-dir>/tulle                   the CNI plugin, named after its "type" because a runtime executes the
 *                                         binary of that name; a launcher naming the compiled shim (the agent's
 *                                         resident path), node and the installation by absolute path, so it works
 *                                         wherever it lies and with the minimal environment a runtime gives it
 *   <cni-conf-dir>/10-tulle.conflist      tulle (bridge: isDefaultGateway + hairpinMode, as kube-flannel's
 *                                         conflist; capabilities ips/mac), then the reference portmap
 *   /etc/default/tulle                    the agent's settings as TULLE_* variables
 *   /etc/systemd/system/tulle-agent.service   the agent, after network-online, restarted always
 */
import { join } from 'node:path';
import { InvalidValueError } from '../base/errors.js';
import { DEFAULTS as CNI_DEFAULTS } from '../cni/netconf.js';

export interface InstallSettings {
  /** Directory of the tulle installation (holds bin/ and dist/). */
  packageDir: string;
  /** The node executable the launcher and the unit run. */
  nodePath: string;
  cniBinDir: string;
  cniConfDir: string;
  /** host-local's directory; undefined keeps the plugin's default (/var/lib/cni/networks). */
  cniDataDir: string | undefined;
  subnetFile: string;
  mode: 'bridge' | 'routed';
  networkName: string;
  cniVersion: string;
  /** TULLE_* variables for the agent (store, iface, ...), already checked. */
  agentEnv: Record<string, string>;
  systemd: boolean;
}

export const ENV_FILE = '/etc/default/tulle';
export const UNIT_FILE = '/etc/systemd/system/tulle-agent.service';
export const CONFLIST_NAME = '10-tulle.conflist';

/** Shell single quotes: the only character to escape inside them is the quote itself. */
function shellQuote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

/** systemd's command-line quoting: double quotes, with backslash, quote, `$` and `%` escaped. */
function systemdQuote(s: string): string {
  return `"${s
    .replace(/[\\"]/g, (c) => `\\${c}`)
    .replaceAll('$', '$$$$')
    .replaceAll('%', '%%')}"`;
}

/**
 * The launcher runs the compiled shim when the installation has one (it hands the request to the agent's CNI
 * socket in about a millisecond); the shim runs this same launcher again, marked, when the agent is not there, and
 * the launcher then runs the Node plugin with node named by absolute path.
 */
export function renderLauncher(s: InstallSettings): string {
  const shim = `${s.packageDir}/build/Release/tulle-cni-shim`;
  return [
    '#!/bin/sh',
    '# Written by `tulle install`: the tulle CNI plugin. A container runtime executes the plugin named after the',
    '# conflist\'s "type" with CNI_* variables and little else, so node and tulle are named by absolute path.',
    `if [ -z "$TULLE_CNI_VIA_NODE" ] && [ -x ${shellQuote(shim)} ]; then`,
    `  TULLE_CNI_VIA_NODE=1 TULLE_CNI_FALLBACK="$0" exec ${shellQuote(shim)} "$@"`,
    'fi',
    `exec ${shellQuote(s.nodePath)} ${shellQuote(`${s.packageDir}/bin/tulle-cni`)} "$@"`,
    '',
  ].join('\n');
}

export function renderConflist(s: InstallSettings): string {
  const tulle: Record<string, unknown> = { type: 'tulle', mode: s.mode, subnetFile: s.subnetFile };
  if (s.cniDataDir !== undefined) tulle.dataDir = s.cniDataDir;
  // Without a default route via cni0 a pod cannot answer clients outside the cluster network (so -p from another
  // host fails); hairpin lets a pod reach itself through a published port.
  if (s.mode === 'bridge') Object.assign(tulle, { isDefaultGateway: true, hairpinMode: true });
  tulle.capabilities = { ips: true, mac: true };
  const portmap = { type: 'portmap', capabilities: { portMappings: true }, snat: true };
  return JSON.stringify({ cniVersion: s.cniVersion, name: s.networkName, plugins: [tulle, portmap] }, null, 2) + '\n';
}

/** systemd EnvironmentFile syntax; values are checked to hold no newline or control character. */
export function renderEnvFile(s: InstallSettings): string {
  // The plugin's IPAM directory for this network: an L2 Flood "none" agent prunes its endpoint records against it,
  // so it must be the very directory the conflist's plugin writes (a wrong one would look empty).
  const ipamDir = join(s.cniDataDir ?? CNI_DEFAULTS.dataDir, s.networkName);
  const lines = [
    '# Written by `tulle install`: settings of the tulle agent (see `tulle agent --help`).',
    `TULLE_SUBNET_FILE=${envQuote('TULLE_SUBNET_FILE', s.subnetFile)}`,
    `TULLE_CNI_IPAM_DIR=${envQuote('TULLE_CNI_IPAM_DIR', ipamDir)}`,
  ];
  for (const [k, v] of Object.entries(s.agentEnv)) lines.push(`${k}=${envQuote(k, v)}`);
  return lines.join('\n') + '\n';
}

function envQuote(key: string, v: string): string {
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(v)) throw new InvalidValueError(key, v, 'holds a newline or control character (it cannot go into an environment file)');
  return /^[A-Za-z0-9_./:,@+-]*$/.test(v) ? v : `"${v.replace(/[\\"$`]/g, (c) => `\\${c}`)}"`;
}

export function renderUnit(s: InstallSettings): string {
  return [
    '# Written by `tulle install`.',
    '[Unit]',
    'Description=tulle overlay network agent (subnet lease, VXLAN device, routes to other hosts)',
    'Wants=network-online.target',
    'After=network-online.target',
    '',
    '[Service]',
    'Type=simple',
    `EnvironmentFile=${ENV_FILE}`,
    `ExecStart=${systemdQuote(s.nodePath)} ${systemdQuote(`${s.packageDir}/bin/tulle`)} agent`,
    'Restart=always',
    'RestartSec=5',
    '',
    '[Install]',
    'WantedBy=multi-user.target',
    '',
  ].join('\n');
}

/** Path (on the target system) -> contents and mode. */
export function renderAll(s: InstallSettings): Array<{ path: string; text: string; mode: number }> {
  const files = [
    { path: `${s.cniBinDir}/tulle`, text: renderLauncher(s), mode: 0o755 },
    { path: `${s.cniConfDir}/${CONFLIST_NAME}`, text: renderConflist(s), mode: 0o644 },
    // The environment file may hold an etcd password.
    { path: ENV_FILE, text: renderEnvFile(s), mode: 0o600 },
  ];
  if (s.systemd) files.push({ path: UNIT_FILE, text: renderUnit(s), mode: 0o644 });
  return files;
}
