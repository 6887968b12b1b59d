/**
 * The network config: flannel's net-conf.json, stored at `<prefix>/config`. Parsing applies flannel's defaults
 * and checks (pkg/subnet CheckNetworkConfig and the vxlan backend's own defaults), so that a config flanneld
 * accepts means the same here, and every rule it breaks is reported as an InvalidValueError naming the field,
 * the value and the rule.
 *
 *   {"Network":"10.244.0.0/16","SubnetLen":24,"SubnetMin":"10.244.1.0","SubnetMax":"10.244.255.0",
 *    "Backend":{"Type":"vxlan","VNI":1,"Port":8472,"MTU":0,"GBP":false,"DirectRouting":false,"Learning":false}}
 */
import { InvalidValueError } from '../base/errors.js';
import { isIPv4 } from 'node:net';
import { cidrContains, formatCidr4, formatIPv4, maskOf, parseCidr4, parseIPv4, type Cidr4 } from '../base/ip.js';
import { getField, isJsonObject, parseJsonText, type JsonObject } from './flannel-json.js';

export const DEFAULT_VNI = 1;
export const MAX_VNI = 16_777_215;
export const DEFAULT_VXLAN_PORT = 8472;
/** More entries than any real list of external VTEPs; keeps a hostile config from filling the kernel set. */
export const MAX_ALLOWED_SOURCES = 1024;
/** The only backend tulle implements; flannel's others (udp, host-gw, wireguard, ...) are refused by name. */
export const SUPPORTED_BACKENDS = ['vxlan'] as const;
/** Backend.Mode: flannel's routed overlay (l3), or one shared subnet and broadcast domain (l2, seeds 001/002). */
export const MODES = ['l3', 'l2'] as const;
export type OverlayMode = (typeof MODES)[number];
/** Backend.Flood: how an L2 network carries broadcasts and unknown destinations between hosts. */
export const FLOODS = ['unicast', 'multicast', 'remote', 'none'] as const;
export type FloodMode = (typeof FLOODS)[number];
/** Linux interface names are at most 15 bytes (IFNAMSIZ 16 with the terminating NUL). */
export const MAX_IFNAME_BYTES = 15;

/** The bridge an L2 network's device joins unless Backend.Bridge or the agent's --bridge names another. */
export function defaultBridgeName(vni: number): string {
  return `tl${vni}`;
}

export interface BackendConfig {
  Type: 'vxlan';
  VNI: number;
  /** UDP destination port of the VXLAN packets. */
  Port: number;
  /** MTU of the VTEP; 0 = underlay MTU minus the encapsulation overhead. */
  MTU: number;
  /** VXLAN Group Based Policy extension. */
  GBP: boolean;
  /** Route straight over the underlay to peers on the same L2 segment, without encapsulation. */
  DirectRouting: boolean;
  /** Let the kernel learn remote MACs instead of tulle programming FDB entries. */
  Learning: boolean;
  /**
   * tulle's own: VTEPs outside the store (CIDRs, a bare address means /32) whose VXLAN packets the guard lets in
   * besides the leased peers'. Present only when the config names it, so flannel's own config reads back unchanged.
   */
  AllowedSources?: string[];
  /** tulle's own (issue 13): l3 (default) or l2. */
  mode: OverlayMode;
  /** L2 only: how broadcasts reach the other hosts; default unicast (head-end replication). */
  flood: FloodMode;
  /** L2 multicast only: the IPv4 multicast group (`group` on the device). */
  group?: string;
  /** L2 only: the bridge the device joins; default `tl<VNI>`, at most 15 bytes. */
  bridge: string;
}

/** A validated network config with every default filled in. Field names are flannel's. */
export interface NetworkConfig {
  Network: string;
  SubnetLen: number;
  SubnetMin: string;
  SubnetMax: string;
  Backend: BackendConfig;
}

/** Parse net-conf.json text. */
export function parseNetworkConfig(text: string): NetworkConfig {
  return validateNetworkConfig(parseJsonText(text, 'network config'));
}

/** Check a decoded net-conf.json document and fill in flannel's defaults. */
export function validateNetworkConfig(doc: unknown): NetworkConfig {
  if (!isJsonObject(doc)) throw new InvalidValueError('network config', doc, 'is not a JSON object (like {"Network":"10.244.0.0/16"})');

  const enableIPv4 = optionalBoolean(doc, 'EnableIPv4', true);
  if (!enableIPv4) throw new InvalidValueError('EnableIPv4', false, 'is not supported (tulle runs an IPv4 overlay)');
  if (optionalBoolean(doc, 'EnableIPv6', false)) throw new InvalidValueError('EnableIPv6', true, 'is not supported (tulle runs an IPv4 overlay)');

  const networkText = getField(doc, 'Network');
  if (networkText === undefined || networkText === null || networkText === '') {
    throw new InvalidValueError('Network', networkText, 'is required (an IPv4 CIDR like 10.244.0.0/16)');
  }
  // flannel reads Network with Go's net.ParseCIDR, which clears host bits: 10.244.1.0/16 means 10.244.0.0/16.
  const network = parseCidr4(networkText as string, 'Network', true);

  let subnetLen = optionalInteger(doc, 'SubnetLen', 0);
  if (subnetLen === 0) {
    if (network.prefix > 28) {
      throw new InvalidValueError('Network', networkText, 'is too small (the prefix must be /28 or shorter, to hold at least four subnets)');
    }
    // A /24 per host when the network holds at least four of them, else the network split in four.
    subnetLen = network.prefix <= 22 ? 24 : network.prefix + 2;
  } else {
    const lowest = network.prefix + 2;
    if (subnetLen > 30 || subnetLen < lowest) {
      const range = lowest > 30 ? 'no SubnetLen fits' : `must be ${lowest}..30`;
      throw new InvalidValueError(
        'SubnetLen',
        subnetLen,
        `is out of range (${range} for a /${network.prefix} Network: a subnet holds at least four addresses and the Network at least four subnets)`,
      );
    }
  }

  const size = 2 ** (32 - subnetLen);
  const lastAddress = network.network + 2 ** (32 - network.prefix) - 1;
  const subnetMin = subnetBound(doc, 'SubnetMin', network, subnetLen, network.network + size);
  const subnetMax = subnetBound(doc, 'SubnetMax', network, subnetLen, lastAddress - size + 1);
  if (subnetMin > subnetMax) {
    throw new InvalidValueError('SubnetMin', formatIPv4(subnetMin), `is above SubnetMax ${formatIPv4(subnetMax)} (no subnet could be leased)`);
  }

  return {
    Network: formatCidr4(network),
    SubnetLen: subnetLen,
    SubnetMin: formatIPv4(subnetMin),
    SubnetMax: formatIPv4(subnetMax),
    Backend: validateBackend(getField(doc, 'Backend')),
  };
}

function subnetBound(doc: JsonObject, field: string, network: Cidr4, subnetLen: number, fallback: number): number {
  const text = getField(doc, field);
  if (text === undefined || text === null || text === '' || text === '0.0.0.0') return fallback;
  const addr = parseIPv4(text as string, field);
  if (!cidrContains(network, addr)) throw new InvalidValueError(field, text, `is outside Network ${formatCidr4(network)}`);
  const aligned = (addr & maskOf(subnetLen)) >>> 0;
  if (aligned !== addr) {
    throw new InvalidValueError(field, text, `is not on a SubnetLen boundary (a /${subnetLen} starts at ${formatIPv4(aligned)})`);
  }
  return addr;
}

function validateBackend(raw: unknown): BackendConfig {
  if (raw !== undefined && raw !== null && !isJsonObject(raw)) {
    throw new InvalidValueError('Backend', raw, 'is not a JSON object (like {"Type":"vxlan"})');
  }
  const b: JsonObject = raw ?? {};
  const typeValue = getField(b, 'Type');
  const type = typeValue === undefined || typeValue === null || typeValue === '' ? 'vxlan' : typeValue;
  if (typeof type !== 'string' || !(SUPPORTED_BACKENDS as readonly string[]).includes(type.toLowerCase())) {
    throw new InvalidValueError('Backend.Type', type, `is not a supported backend type (tulle supports: ${SUPPORTED_BACKENDS.join(', ')})`);
  }

  const vni = optionalInteger(b, 'VNI', DEFAULT_VNI, 'Backend.VNI');
  if (vni < 1 || vni > MAX_VNI) throw new InvalidValueError('Backend.VNI', vni, `is out of range (must be 1..${MAX_VNI})`);

  const port = optionalInteger(b, 'Port', 0, 'Backend.Port');
  if (port < 0 || port > 65535)
    throw new InvalidValueError('Backend.Port', port, `is out of range (must be 1..65535, or 0 for the default ${DEFAULT_VXLAN_PORT})`);

  const mtu = optionalInteger(b, 'MTU', 0, 'Backend.MTU');
  if (mtu !== 0 && (mtu < 68 || mtu > 65535)) {
    throw new InvalidValueError('Backend.MTU', mtu, 'is out of range (must be 68..65535, or 0 to derive it from the underlay)');
  }

  const allowedSources = validateAllowedSources(getField(b, 'AllowedSources'));
  const backend = {
    Type: 'vxlan' as const,
    VNI: vni,
    Port: port === 0 ? DEFAULT_VXLAN_PORT : port,
    MTU: mtu,
    GBP: optionalBoolean(b, 'GBP', false, 'Backend.GBP'),
    DirectRouting: optionalBoolean(b, 'DirectRouting', false, 'Backend.DirectRouting'),
    Learning: optionalBoolean(b, 'Learning', false, 'Backend.Learning'),
    ...(allowedSources ? { AllowedSources: allowedSources } : {}),
  };
  return withL2Fields(backend, b, vni);
}

/**
 * Backend.Mode, Flood, Group, Bridge. An L3 config gets the defaults as non-enumerable properties, so that it
 * reads (and prints, and compares) exactly as flannel's did; an L2 config carries them as ordinary fields.
 */
function withL2Fields(backend: Omit<BackendConfig, 'mode' | 'flood' | 'bridge' | 'group'>, b: JsonObject, vni: number): BackendConfig {
  const mode = optionalEnum(b, 'Mode', MODES, 'l3');
  const flood = optionalEnum(b, 'Flood', FLOODS, 'unicast');
  const groupValue = getField(b, 'Group');
  const bridgeValue = getField(b, 'Bridge');
  if (mode === 'l3') {
    for (const [field, value] of [
      ['Flood', getField(b, 'Flood')],
      ['Group', groupValue],
      ['Bridge', bridgeValue],
    ] as const) {
      if (value !== undefined && value !== null && value !== '') {
        throw new InvalidValueError(`Backend.${field}`, shorten(value), 'is only meaningful with Backend.Mode "l2" (this config is an l3 network)');
      }
    }
    const l3 = backend as BackendConfig;
    Object.defineProperties(l3, {
      mode: { value: 'l3', enumerable: false },
      flood: { value: 'unicast', enumerable: false },
      bridge: { value: defaultBridgeName(vni), enumerable: false },
    });
    return l3;
  }
  const bridge =
    bridgeValue === undefined || bridgeValue === null || bridgeValue === '' ? defaultBridgeName(vni) : validateBridgeName(bridgeValue, 'Backend.Bridge');
  let group: string | undefined;
  if (flood === 'multicast') {
    if (groupValue === undefined || groupValue === null || groupValue === '') {
      throw new InvalidValueError('Backend.Group', groupValue, 'is required with Backend.Flood "multicast" (an IPv4 multicast group like 239.1.1.1)');
    }
    group = validateGroup(groupValue);
  } else if (groupValue !== undefined && groupValue !== null && groupValue !== '') {
    throw new InvalidValueError('Backend.Group', shorten(groupValue), `is only meaningful with Backend.Flood "multicast" (this config floods by ${flood})`);
  }
  if (backend.DirectRouting) throw new InvalidValueError('Backend.DirectRouting', true, 'is an l3 feature (an l2 network has no routes to make direct)');
  return { ...backend, mode, flood, ...(group ? { group } : {}), bridge };
}

/** A Linux interface name: 1..15 bytes, no "/", ":", whitespace or NUL, not "." or "..". */
export function validateBridgeName(value: unknown, field: string): string {
  if (typeof value !== 'string') throw new InvalidValueError(field, shorten(value), 'is not a string (a bridge name like tl120 or br-mylan)');
  const bytes = Buffer.byteLength(value);
  if (bytes > MAX_IFNAME_BYTES)
    throw new InvalidValueError(field, shorten(value), `is ${bytes} bytes long (a Linux interface name has at most ${MAX_IFNAME_BYTES})`);
  if (value === '.' || value === '..' || /[\s/:\0]/.test(value)) {
    throw new InvalidValueError(field, shorten(value), 'is not a valid interface name (no "/", ":", whitespace or NUL; not "." or "..")');
  }
  return value;
}

function validateGroup(value: unknown): string {
  if (typeof value !== 'string' || !isIPv4(value))
    throw new InvalidValueError('Backend.Group', shorten(value), 'is not an IPv4 address (a multicast group like 239.1.1.1)');
  const first = Number(value.split('.')[0]);
  if (first < 224 || first > 239) throw new InvalidValueError('Backend.Group', value, 'is not a multicast address (224.0.0.0/4, like 239.1.1.1)');
  if (value.startsWith('224.0.0.'))
    throw new InvalidValueError('Backend.Group', value, 'is in 224.0.0.0/24, reserved for link-local protocols (use 239.x.x.x)');
  return value;
}

/** One of `allowed`, compared case-insensitively; missing, null or "" gives `fallback`. */
function optionalEnum<T extends string>(doc: JsonObject, key: string, allowed: readonly T[], fallback: T): T {
  const value = getField(doc, key);
  if (value === undefined || value === null || value === '') return fallback;
  const found = typeof value === 'string' ? allowed.find((a) => a === value.toLowerCase()) : undefined;
  if (!found) throw new InvalidValueError(`Backend.${key}`, shorten(value), `is not one of ${allowed.join(', ')}`);
  return found;
}

/** Backend.AllowedSources: a list of IPv4 CIDRs (a bare address is a /32), returned in canonical form. */
function validateAllowedSources(raw: unknown): string[] | undefined {
  if (raw === undefined || raw === null) return undefined;
  if (!Array.isArray(raw)) throw new InvalidValueError('Backend.AllowedSources', shorten(raw), 'is not a list of IPv4 CIDRs (like ["203.0.113.0/24"])');
  if (raw.length > MAX_ALLOWED_SOURCES) {
    throw new InvalidValueError('Backend.AllowedSources', `${raw.length} entries`, `is too long (at most ${MAX_ALLOWED_SOURCES}; use wider CIDRs)`);
  }
  return raw.map((entry, i) => {
    const field = `Backend.AllowedSources[${i}]`;
    if (typeof entry !== 'string') throw new InvalidValueError(field, shorten(entry), 'is not an IPv4 CIDR string (like "203.0.113.0/24")');
    const text = isIPv4(entry) ? `${entry}/32` : entry;
    let cidr: Cidr4;
    try {
      cidr = parseCidr4(text, field);
    } catch (err) {
      if (err instanceof InvalidValueError) throw new InvalidValueError(field, shorten(entry), err.rule);
      throw err;
    }
    if (cidr.prefix === 0) {
      throw new InvalidValueError(field, entry, 'allows every source, which turns the VXLAN guard off (run the agents with --vxlan-guard=false instead)');
    }
    return formatCidr4(cidr);
  });
}

/** Long hostile values are cut in messages. */
function shorten(value: unknown): unknown {
  const text = typeof value === 'string' ? value : (JSON.stringify(value) ?? String(value));
  if (text.length <= 64) return value;
  return `${text.slice(0, 61)}…`;
}

/** A whole number field; missing or null gives `fallback` (Go leaves the zero value, flannel then defaults). */
function optionalInteger(doc: JsonObject, key: string, fallback: number, field = key): number {
  const value = getField(doc, key);
  if (value === undefined || value === null) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value)) throw new InvalidValueError(field, value, 'is not a whole number');
  return value;
}

function optionalBoolean(doc: JsonObject, key: string, fallback: boolean, field = key): boolean {
  const value = getField(doc, key);
  if (value === undefined || value === null) return fallback;
  if (typeof value !== 'boolean') throw new InvalidValueError(field, value, 'is not a boolean (true or false)');
  return value;
}

/** The subnets a config hands out: `count` subnets of /`prefix` starting at `first`, `size` addresses apart. */
export interface SubnetRange {
  network: Cidr4;
  prefix: number;
  first: number;
  last: number;
  size: number;
  count: number;
}

export function subnetRange(config: NetworkConfig): SubnetRange {
  const size = 2 ** (32 - config.SubnetLen);
  const first = parseIPv4(config.SubnetMin, 'SubnetMin');
  const last = parseIPv4(config.SubnetMax, 'SubnetMax');
  return { network: parseCidr4(config.Network, 'Network'), prefix: config.SubnetLen, first, last, size, count: Math.floor((last - first) / size) + 1 };
}

/** Is `subnet` one this config could hand out (right length, between SubnetMin and SubnetMax)? flannel's isSubnetConfigCompat. */
export function isSubnetInRange(config: NetworkConfig, subnet: Cidr4): boolean {
  const range = subnetRange(config);
  return subnet.prefix === range.prefix && subnet.network >= range.first && subnet.network <= range.last;
}
