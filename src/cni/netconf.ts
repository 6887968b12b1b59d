/**
 * The network configuration a runtime passes on stdin, checked field by field:
 *
 *   {"cniVersion": "1.1.0", "name": "tulle", "type": "tulle", "mode": "bridge" | "routed",
 *    "subnetFile": "/run/flannel/subnet.env", "bridge": "cni0", "hairpinMode": false, "mtu": 1450,
 *    "isDefaultGateway": false, "dataDir": "/var/lib/cni/networks", "dns": {...}}
 *
 * Subnet, gateway and MTU come from the agent's subnet.env; `mtu` only overrides the MTU. Keys the runtime adds
 * (`prevResult`, `runtimeConfig` with the `ips` and `mac` capabilities, `args`, `cni.dev/valid-attachments`) are
 * read where they matter; other unknown keys are ignored, as the spec allows, except a near miss of a known key
 * (another case, one typo): `"subnetfile"` silently ignored would send the plugin to the default path and blame
 * the agent. Bad JSON is error 6, an unsupported cniVersion error 1, a bad field (or near miss) 7.
 */
import { isIPv4 } from 'node:net';
import { CNI_CODES, CniError, SUPPORTED_VERSIONS, invalidConfig, type CniVersion } from './errors.js';

export type Mode = 'bridge' | 'routed' | 'l2';

export interface Dns {
  nameservers?: string[];
  domain?: string;
  search?: string[];
  options?: string[];
}

export interface GcAttachment {
  containerID: string;
  ifname: string;
}

export interface NetConf {
  cniVersion: CniVersion;
  name: string;
  type: string;
  mode: Mode;
  subnetFile: string;
  bridge: string;
  hairpinMode: boolean;
  /** Overrides subnet.env's FLANNEL_MTU when set. */
  mtu: number | undefined;
  /** Bridge mode: also a default route via the gateway (flannel's `isDefaultGateway`). */
  isDefaultGateway: boolean;
  /** host-local's directory: allocations live in `<dataDir>/<name>/`. */
  dataDir: string;
  dns: Dns | undefined;
  /** The previous plugin's (ADD) or the cached (DEL, CHECK) result, unparsed: result.ts reads it. */
  prevResult: unknown;
  /** GC: the attachments the runtime still holds. */
  validAttachments: GcAttachment[] | undefined;
  /** runtimeConfig.ips (podman --ip with the "ips" capability): the address asked for, without its prefix. */
  requestedIP: string | undefined;
  /** runtimeConfig.mac (podman --mac-address with the "mac" capability). */
  requestedMac: string | undefined;
  /** Keys that were absent and took their default (messages about those paths say so). */
  defaulted: ReadonlySet<string>;
}

/** Every top-level key tulle-cni or a runtime puts into a plugin's configuration. */
const KNOWN_KEYS = [
  'cniVersion',
  'name',
  'type',
  'mode',
  'subnetFile',
  'bridge',
  'hairpinMode',
  'mtu',
  'isDefaultGateway',
  'dataDir',
  'dns',
  'prevResult',
  'runtimeConfig',
  'args',
  'capabilities',
  'ipam',
  'cni.dev/valid-attachments',
  'cni.dev/attachments',
] as const;

export const DEFAULTS = {
  mode: 'bridge' as Mode,
  subnetFile: '/run/flannel/subnet.env',
  bridge: 'cni0',
  dataDir: '/var/lib/cni/networks',
};

/** The spec's rule for a network name; it is also a directory name under dataDir, so no '/' or '..'. */
const NETWORK_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/** Decode and check stdin. */
export function parseNetConf(text: string): NetConf {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    const what = text.trim() === '' ? 'stdin is empty' : `stdin is not JSON (${(err as Error).message})`;
    throw new CniError(CNI_CODES.DECODE_FAILURE, `network configuration: ${what}`);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new CniError(
      CNI_CODES.DECODE_FAILURE,
      `network configuration: stdin holds ${Array.isArray(raw) ? 'an array' : JSON.stringify(raw)}, not a JSON object`,
    );
  }
  const c = raw as Record<string, unknown>;
  rejectNearMisses(c);
  const cniVersion = readVersion(c.cniVersion);
  if (c.ipam !== undefined) {
    throw new CniError(
      CNI_CODES.UNSUPPORTED_FIELD,
      `ipam: ${JSON.stringify(c.ipam)} is not supported (tulle-cni allocates from the host subnet in subnet.env itself; remove the ipam section)`,
    );
  }
  const name = requiredString(c, 'name');
  if (!NETWORK_NAME_RE.test(name))
    throw invalidConfig('name', name, 'is not a network name (must start with a letter or digit, then letters, digits, "_", "." or "-")');
  const mode = optional(c, 'mode', DEFAULTS.mode, (v) => {
    if (v !== 'bridge' && v !== 'routed' && v !== 'l2') throw invalidConfig('mode', v, 'is not a mode (must be "bridge", "routed" or "l2")');
    return v;
  });
  return {
    cniVersion,
    name,
    type: requiredString(c, 'type'),
    mode,
    subnetFile: optional(c, 'subnetFile', DEFAULTS.subnetFile, (v) => absolutePath('subnetFile', v)),
    bridge: optional(c, 'bridge', DEFAULTS.bridge, (v) => interfaceName('bridge', v)),
    hairpinMode: optional(c, 'hairpinMode', false, (v) => bool('hairpinMode', v)),
    mtu: optional<number | undefined>(c, 'mtu', undefined, (v) => {
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 68 || v > 65535) throw invalidConfig('mtu', v, 'is out of range (must be an integer 68..65535)');
      return v;
    }),
    isDefaultGateway: optional(c, 'isDefaultGateway', false, (v) => bool('isDefaultGateway', v)),
    dataDir: optional(c, 'dataDir', DEFAULTS.dataDir, (v) => absolutePath('dataDir', v)),
    dns: optional<Dns | undefined>(c, 'dns', undefined, readDns),
    prevResult: optional<unknown>(c, 'prevResult', undefined, (v) => {
      if (v === null || typeof v !== 'object' || Array.isArray(v)) throw invalidConfig('prevResult', v, 'must be a CNI result object');
      return v;
    }),
    // libcni sends both names (the spec once misspelt the key); either one counts.
    validAttachments: readAttachments(
      c['cni.dev/valid-attachments'] !== undefined ? 'cni.dev/valid-attachments' : 'cni.dev/attachments',
      c['cni.dev/valid-attachments'] ?? c['cni.dev/attachments'],
    ),
    ...readRuntimeConfig(c.runtimeConfig),
    defaulted: new Set(Object.keys(DEFAULTS).filter((k) => c[k] === undefined || c[k] === null)),
  };
}

/**
 * A key that differs from a known one only in case, or (for keys of 5+ characters) by one edit, is a mistake
 * rather than an extension: error 7 naming both. Exact unknown keys are still ignored, as the spec allows.
 */
function rejectNearMisses(c: Record<string, unknown>): void {
  for (const key of Object.keys(c)) {
    if ((KNOWN_KEYS as readonly string[]).includes(key)) continue;
    const known = KNOWN_KEYS.find((k) => k.toLowerCase() === key.toLowerCase() || (k.length >= 5 && editDistanceIsOne(k, key)));
    if (known) throw invalidConfig(key, c[key], `is not a tulle-cni key: did you mean "${known}"? (keys are case-sensitive; this one would be ignored)`);
  }
}

/** One insertion, deletion or substitution apart (Levenshtein distance exactly 1). */
function editDistanceIsOne(a: string, b: string): boolean {
  if (Math.abs(a.length - b.length) > 1 || a === b) return false;
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  if (a.length === b.length) return a.slice(i + 1) === b.slice(i + 1);
  return a.length > b.length ? a.slice(i + 1) === b.slice(i) : a.slice(i) === b.slice(i + 1);
}

/** A unicast MAC written as six colon-separated hex bytes (what `ip link set address` takes). */
export function checkMac(field: string, v: unknown, fail: (field: string, v: unknown, rule: string) => Error = invalidConfig): string {
  if (typeof v !== 'string' || !/^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$/.test(v))
    throw fail(field, v, 'is not a MAC address (six hex bytes like 0a:58:0a:f4:01:05)');
  if (parseInt(v.slice(0, 2), 16) & 1) throw fail(field, v, 'is a multicast MAC address (the first byte must be even)');
  if (/^(00:){5}00$/.test(v)) throw fail(field, v, 'is the all-zero MAC address');
  return v.toLowerCase();
}

/** An IPv4 address, alone or with a prefix (runtimeConfig.ips entries carry one, CNI_ARGS IP= does not). */
export function checkRequestedIP(field: string, v: unknown, fail: (field: string, v: unknown, rule: string) => Error = invalidConfig): string {
  const text = typeof v === 'string' ? v.replace(/\/\d{1,2}$/, '') : '';
  if (!isIPv4(text)) throw fail(field, v, 'is not an IPv4 address (like 10.244.1.5 or 10.244.1.5/24)');
  return text;
}

/** runtimeConfig: the "ips" and "mac" capabilities; others (portMappings, bandwidth, ...) belong to other plugins. */
function readRuntimeConfig(v: unknown): { requestedIP: string | undefined; requestedMac: string | undefined } {
  if (v === undefined || v === null) return { requestedIP: undefined, requestedMac: undefined };
  if (typeof v !== 'object' || Array.isArray(v)) throw invalidConfig('runtimeConfig', v, 'must be an object');
  const r = v as Record<string, unknown>;
  let requestedIP: string | undefined;
  if (r.ips !== undefined && r.ips !== null) {
    if (!Array.isArray(r.ips)) throw invalidConfig('runtimeConfig.ips', r.ips, 'must be a list of addresses');
    if (r.ips.length > 1) throw invalidConfig('runtimeConfig.ips', r.ips, 'asks for more than one address (a tulle pod has one IPv4 address)');
    if (r.ips.length === 1) requestedIP = checkRequestedIP('runtimeConfig.ips[0]', r.ips[0]);
  }
  const requestedMac = r.mac === undefined || r.mac === null || r.mac === '' ? undefined : checkMac('runtimeConfig.mac', r.mac);
  return { requestedIP, requestedMac };
}

function readVersion(v: unknown): CniVersion {
  if (v === undefined || v === '') throw invalidConfig('cniVersion', v, `is required (one of ${SUPPORTED_VERSIONS.join(', ')})`);
  if (typeof v !== 'string') throw invalidConfig('cniVersion', v, 'must be a version string like "1.1.0"');
  if (!SUPPORTED_VERSIONS.includes(v as CniVersion)) {
    throw new CniError(CNI_CODES.INCOMPATIBLE_VERSION, `cniVersion: ${JSON.stringify(v)} is not supported (tulle-cni speaks ${SUPPORTED_VERSIONS.join(', ')})`);
  }
  return v as CniVersion;
}

function requiredString(c: Record<string, unknown>, key: string): string {
  const v = c[key];
  if (v === undefined) throw invalidConfig(key, v, 'is required');
  if (typeof v !== 'string' || v === '') throw invalidConfig(key, v, 'must be a non-empty string');
  return v;
}

function optional<T>(c: Record<string, unknown>, key: string, fallback: T, check: (v: unknown) => T): T {
  const v = c[key];
  return v === undefined || v === null ? fallback : check(v);
}

function bool(key: string, v: unknown): boolean {
  if (typeof v !== 'boolean') throw invalidConfig(key, v, 'must be true or false');
  return v;
}

function absolutePath(key: string, v: unknown): string {
  if (typeof v !== 'string' || !v.startsWith('/') || v.includes('\0')) throw invalidConfig(key, v, 'must be an absolute path');
  return v;
}

function interfaceName(key: string, v: unknown): string {
  if (typeof v !== 'string' || v === '' || v === '.' || v === '..' || Buffer.byteLength(v) > 15 || /[\s/:]/.test(v)) {
    throw invalidConfig(key, v, 'is not an interface name (1-15 bytes, no "/", ":" or whitespace)');
  }
  return v;
}

function stringList(key: string, v: unknown): string[] {
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw invalidConfig(key, v, 'must be a list of strings');
  return v as string[];
}

function readDns(v: unknown): Dns {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw invalidConfig('dns', v, 'must be an object like {"nameservers": ["10.96.0.10"]}');
  const d = v as Record<string, unknown>;
  const out: Dns = {};
  if (d.nameservers !== undefined) out.nameservers = stringList('dns.nameservers', d.nameservers);
  if (d.domain !== undefined) {
    if (typeof d.domain !== 'string') throw invalidConfig('dns.domain', d.domain, 'must be a string');
    out.domain = d.domain;
  }
  if (d.search !== undefined) out.search = stringList('dns.search', d.search);
  if (d.options !== undefined) out.options = stringList('dns.options', d.options);
  return out;
}

function readAttachments(key: string, v: unknown): GcAttachment[] | undefined {
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v)) throw invalidConfig(key, v, 'must be a list of {"containerID", "ifname"} objects');
  return v.map((a, i) => {
    const o = a as Record<string, unknown> | null;
    if (o === null || typeof o !== 'object' || typeof o.containerID !== 'string' || o.containerID === '' || typeof o.ifname !== 'string') {
      throw invalidConfig(`${key}[${i}]`, a, 'must be an object {"containerID": "...", "ifname": "..."}');
    }
    return { containerID: o.containerID, ifname: o.ifname };
  });
}
