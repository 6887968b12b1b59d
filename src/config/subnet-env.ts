/**
 * `subnet.env`, the agent's hand-off to the CNI plugin, with flannel's variable names so that flannel's own CNI
 * plugin can read it too:
 *   FLANNEL_NETWORK=10.244.0.0/16
 *   FLANNEL_SUBNET=10.244.1.1/24      (the gateway address with the host subnet's prefix)
 *   FLANNEL_MTU=1450
 *   FLANNEL_IPMASQ=true
 * Written atomically (temp file + rename) so a reader never sees half a file.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { InvalidValueError, TulleError } from '../base/errors.js';
import { formatCidr4, formatIPv4, parseCidr4, parseIPv4 } from '../base/ip.js';
import { FLOODS, validateBridgeName, type FloodMode } from './network.js';

export const DEFAULT_SUBNET_FILE = '/run/flannel/subnet.env';

export interface SubnetEnv {
  /** Cluster network, "10.244.0.0/16". */
  network: string;
  /** This host's subnet, "10.244.1.0/24". */
  subnet: string;
  /** Gateway address of the subnet (.1), "10.244.1.1". */
  gateway: string;
  mtu: number;
  ipMasq: boolean;
  /** tulle's own, L2 networks only (TULLE_L2_BRIDGE): the bridge pods join; the subnet is then a slice of the Network. */
  l2Bridge?: string;
  /**
   * tulle's own, L2 networks only (TULLE_L2_FLOOD): the network's Backend.Flood. The plugin needs it for "none",
   * where a pod is reachable only once its endpoint record is in the store, which only the agent can write.
   */
  l2Flood?: FloodMode;
}

export class SubnetEnvError extends TulleError {
  constructor(message: string, code = 'TLE_SUBNET_ENV') {
    super(code, message);
  }
}

export function formatSubnetEnv(env: SubnetEnv): string {
  const prefix = parseCidr4(env.subnet, 'subnet').prefix;
  return [
    `FLANNEL_NETWORK=${env.network}`,
    `FLANNEL_SUBNET=${env.gateway}/${prefix}`,
    `FLANNEL_MTU=${env.mtu}`,
    `FLANNEL_IPMASQ=${env.ipMasq}`,
    ...(env.l2Bridge ? [`TULLE_L2_BRIDGE=${env.l2Bridge}`] : []),
    ...(env.l2Flood ? [`TULLE_L2_FLOOD=${env.l2Flood}`] : []),
    '',
  ].join('\n');
}

export function parseSubnetEnv(text: string, source = 'subnet.env'): SubnetEnv {
  const vars = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Z_][A-Z0-9_]*)=(.*?)\s*$/.exec(line);
    if (m) vars.set(m[1]!, m[2]!.replace(/^"(.*)"$/, '$1'));
  }
  const need = (k: string): string => {
    const v = vars.get(k);
    if (v === undefined || v === '') throw new InvalidValueError(`${source}: ${k}`, v, 'is required');
    return v;
  };
  const network = formatCidr4(parseCidr4(need('FLANNEL_NETWORK'), `${source}: FLANNEL_NETWORK`));
  const subnetText = need('FLANNEL_SUBNET');
  const withHost = parseCidr4(subnetText, `${source}: FLANNEL_SUBNET`, true);
  const gateway = formatIPv4(parseIPv4(subnetText.split('/')[0]!, `${source}: FLANNEL_SUBNET`));
  const mtuText = need('FLANNEL_MTU');
  const mtu = Number(mtuText);
  if (!/^\d+$/.test(mtuText) || mtu < 68 || mtu > 65535) throw new InvalidValueError(`${source}: FLANNEL_MTU`, mtuText, 'must be a whole number in 68..65535');
  const l2Bridge = vars.get('TULLE_L2_BRIDGE');
  const floodText = vars.get('TULLE_L2_FLOOD');
  const l2Flood: FloodMode | undefined = FLOODS.find((f) => f === floodText);
  if (floodText !== undefined && !l2Flood)
    throw new InvalidValueError(`${source}: TULLE_L2_FLOOD`, floodText, `is not a flood mode (one of ${FLOODS.join(', ')})`);
  return {
    network,
    subnet: formatCidr4(withHost),
    gateway,
    mtu,
    ipMasq: vars.get('FLANNEL_IPMASQ') === 'true',
    ...(l2Bridge ? { l2Bridge: validateBridgeName(l2Bridge, `${source}: TULLE_L2_BRIDGE`) } : {}),
    ...(l2Flood ? { l2Flood } : {}),
  };
}

/** Read and parse; a missing file is SubnetEnvError code TLE_SUBNET_ENV_MISSING (the agent is not up yet). */
export function readSubnetEnv(path: string): SubnetEnv {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT')
      throw new SubnetEnvError(`${path} does not exist: is the tulle agent running on this host?`, 'TLE_SUBNET_ENV_MISSING');
    throw err;
  }
  return parseSubnetEnv(text, path);
}

/** The subnet recorded in an old subnet.env, or undefined when there is none or it cannot be read. */
export function previousSubnet(path: string): string | undefined {
  try {
    return readSubnetEnv(path).subnet;
  } catch {
    return undefined;
  }
}

export function writeSubnetEnv(path: string, env: SubnetEnv): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, formatSubnetEnv(env), { mode: 0o644 });
  renameSync(tmp, path);
}
