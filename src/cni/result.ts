/**
 * CNI results: one internal shape (1.1.0's), written out in the version the config asks for, and read back from
 * any supported version when it arrives as `prevResult`.
 *
 *   0.4.0  ips[] carry "version": "4" | "6"
 *   1.0.0  no "version" in ips[]
 *   1.1.0  interfaces[] may carry "mtu" (and socketPath, pciID); routes[] may carry mtu, advmss, priority, table, scope
 */
import { invalidConfig, type CniVersion } from './errors.js';
import type { Dns } from './netconf.js';

export interface CniInterface {
  name: string;
  mac?: string;
  /** 1.1.0 only. */
  mtu?: number;
  /** The container's netns path, for interfaces inside it; absent for host interfaces. */
  sandbox?: string;
  socketPath?: string;
  pciID?: string;
}

export interface CniIp {
  /** Address with prefix, e.g. "10.244.1.2/24". */
  address: string;
  gateway?: string;
  /** Index into `interfaces`. */
  interface?: number;
}

export interface CniRoute {
  dst: string;
  gw?: string;
  mtu?: number;
  advmss?: number;
  priority?: number;
  table?: number;
  scope?: number;
}

export interface CniResult {
  cniVersion: string;
  interfaces: CniInterface[];
  ips: CniIp[];
  routes: CniRoute[];
  dns: Dns;
}

const V11_INTERFACE_KEYS = ['mtu', 'socketPath', 'pciID'] as const;
const V11_ROUTE_KEYS = ['mtu', 'advmss', 'priority', 'table', 'scope'] as const;

/** The JSON object to print for `version`: keys and fields that version does not have are left out. */
export function formatResult(r: Omit<CniResult, 'cniVersion'>, version: CniVersion): Record<string, unknown> {
  const v11 = version === '1.1.0';
  const interfaces = r.interfaces.map((i) => {
    const out: Record<string, unknown> = { name: i.name };
    if (i.mac !== undefined) out.mac = i.mac;
    if (v11) for (const k of V11_INTERFACE_KEYS) if (i[k] !== undefined) out[k] = i[k];
    if (i.sandbox !== undefined) out.sandbox = i.sandbox;
    return out;
  });
  const ips = r.ips.map((ip) => {
    const out: Record<string, unknown> = {};
    if (version === '0.4.0') out.version = ip.address.includes(':') ? '6' : '4';
    out.address = ip.address;
    if (ip.gateway !== undefined) out.gateway = ip.gateway;
    if (ip.interface !== undefined) out.interface = ip.interface;
    return out;
  });
  const routes = r.routes.map((rt) => {
    const out: Record<string, unknown> = { dst: rt.dst };
    if (rt.gw !== undefined) out.gw = rt.gw;
    if (v11) for (const k of V11_ROUTE_KEYS) if (rt[k] !== undefined) out[k] = rt[k];
    return out;
  });
  return { cniVersion: version, interfaces, ips, routes, dns: { ...r.dns } };
}

/** Read a result of any supported version (a `prevResult`); malformed parts are config errors naming the path. */
export function parseResult(value: unknown, field = 'prevResult'): CniResult {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw invalidConfig(field, value, 'must be a CNI result object');
  const r = value as Record<string, unknown>;
  const list = (key: string): unknown[] => {
    const v = r[key];
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v)) throw invalidConfig(`${field}.${key}`, v, 'must be a list');
    return v;
  };
  const obj = (v: unknown, path: string): Record<string, unknown> => {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw invalidConfig(path, v, 'must be an object');
    return v as Record<string, unknown>;
  };
  const str = (o: Record<string, unknown>, key: string, path: string, required: boolean): string | undefined => {
    const v = o[key];
    if (v === undefined || (v === '' && !required)) {
      if (required) throw invalidConfig(`${path}.${key}`, v, 'is required');
      return undefined;
    }
    if (typeof v !== 'string') throw invalidConfig(`${path}.${key}`, v, 'must be a string');
    return v;
  };
  const int = (o: Record<string, unknown>, key: string, path: string): number | undefined => {
    const v = o[key];
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isInteger(v)) throw invalidConfig(`${path}.${key}`, v, 'must be an integer');
    return v;
  };
  const interfaces = list('interfaces').map((x, i) => {
    const path = `${field}.interfaces[${i}]`;
    const o = obj(x, path);
    const out: CniInterface = { name: str(o, 'name', path, true)! };
    const mac = str(o, 'mac', path, false);
    if (mac !== undefined) out.mac = mac;
    const mtu = int(o, 'mtu', path);
    if (mtu !== undefined) out.mtu = mtu;
    const sandbox = str(o, 'sandbox', path, false);
    if (sandbox !== undefined) out.sandbox = sandbox;
    const socketPath = str(o, 'socketPath', path, false);
    if (socketPath !== undefined) out.socketPath = socketPath;
    const pciID = str(o, 'pciID', path, false);
    if (pciID !== undefined) out.pciID = pciID;
    return out;
  });
  const ips = list('ips').map((x, i) => {
    const path = `${field}.ips[${i}]`;
    const o = obj(x, path);
    const address = str(o, 'address', path, true)!;
    if (!/^[0-9a-fA-F:.]+\/\d{1,3}$/.test(address))
      throw invalidConfig(`${path}.address`, address, 'must be an address with prefix length, like 10.244.1.2/24');
    const out: CniIp = { address };
    const gateway = str(o, 'gateway', path, false);
    if (gateway !== undefined) out.gateway = gateway;
    const iface = int(o, 'interface', path);
    if (iface !== undefined) {
      if (iface < 0 || iface >= interfaces.length)
        throw invalidConfig(`${path}.interface`, iface, `is not an index into interfaces (0..${interfaces.length - 1})`);
      out.interface = iface;
    }
    return out;
  });
  const routes = list('routes').map((x, i) => {
    const path = `${field}.routes[${i}]`;
    const o = obj(x, path);
    const out: CniRoute = { dst: str(o, 'dst', path, true)! };
    const gw = str(o, 'gw', path, false);
    if (gw !== undefined) out.gw = gw;
    for (const k of V11_ROUTE_KEYS) {
      const n = int(o, k, path);
      if (n !== undefined) out[k] = n;
    }
    return out;
  });
  const dns = r.dns === undefined || r.dns === null ? {} : (obj(r.dns, `${field}.dns`) as Dns);
  return { cniVersion: typeof r.cniVersion === 'string' ? r.cniVersion : '', interfaces, ips, routes, dns };
}

/**
 * Our own interfaces, addresses and routes appended to what earlier plugins in the chain returned: interface
 * indexes in `own.ips` are relative to `own.interfaces` and are shifted past the earlier ones.
 */
export function appendResult(prev: CniResult | undefined, own: Omit<CniResult, 'cniVersion' | 'dns'>, dns: Dns | undefined): Omit<CniResult, 'cniVersion'> {
  const base = prev ?? { interfaces: [], ips: [], routes: [], dns: {} };
  const offset = base.interfaces.length;
  return {
    interfaces: [...base.interfaces, ...own.interfaces],
    ips: [...base.ips, ...own.ips.map((ip) => (ip.interface === undefined ? ip : { ...ip, interface: ip.interface + offset }))],
    routes: [...base.routes, ...own.routes],
    dns: { ...base.dns, ...(dns ?? {}) },
  };
}
