/**
 * A strict reading of the spec's Success result, per version, written apart from the code that produces results
 * so that one checks the other: which keys each object may have, their types, CIDR and address syntax, interface
 * indexes in range, and the `version` field that 0.4.0 requires in `ips` and 1.x forbids. Used by the tests and
 * by anyone who wants to check a plugin's output (the lab does, for pods).
 */
import { isIP } from 'node:net';

const MAC_RE = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/;

function isCidr(text: unknown): boolean {
  if (typeof text !== 'string') return false;
  const slash = text.lastIndexOf('/');
  if (slash < 0) return false;
  const family = isIP(text.slice(0, slash));
  const prefix = text.slice(slash + 1);
  return family !== 0 && /^\d{1,3}$/.test(prefix) && Number(prefix) <= (family === 4 ? 32 : 128);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** Everything in `result` that a runtime speaking `version` would reject or misread; empty when it is valid. */
export function resultViolations(result: unknown, version: string): string[] {
  const bad: string[] = [];
  const v11 = version === '1.1.0';
  const v04 = version === '0.4.0';
  if (!isObject(result)) return [`result is ${JSON.stringify(result)}, not an object`];
  const allowedTop = ['cniVersion', 'interfaces', 'ips', 'routes', 'dns'];
  for (const k of Object.keys(result)) if (!allowedTop.includes(k)) bad.push(`unknown top-level key ${JSON.stringify(k)}`);
  if (result.cniVersion !== version) bad.push(`cniVersion is ${JSON.stringify(result.cniVersion)}, the config asked for ${JSON.stringify(version)}`);

  const interfaces = result.interfaces;
  let interfaceCount = 0;
  if (interfaces !== undefined) {
    if (!Array.isArray(interfaces)) bad.push('interfaces is not a list');
    else {
      interfaceCount = interfaces.length;
      interfaces.forEach((i, n) => {
        const at = `interfaces[${n}]`;
        if (!isObject(i)) return void bad.push(`${at} is not an object`);
        const allowed = ['name', 'mac', 'sandbox', ...(v11 ? ['mtu', 'socketPath', 'pciID'] : [])];
        for (const k of Object.keys(i)) if (!allowed.includes(k)) bad.push(`${at} has key ${JSON.stringify(k)}, which ${version} does not define`);
        if (typeof i.name !== 'string' || i.name === '') bad.push(`${at}.name is missing or not a string`);
        if (i.mac !== undefined && (typeof i.mac !== 'string' || !MAC_RE.test(i.mac))) bad.push(`${at}.mac ${JSON.stringify(i.mac)} is not a MAC address`);
        if (i.sandbox !== undefined && typeof i.sandbox !== 'string') bad.push(`${at}.sandbox is not a string`);
        if (i.mtu !== undefined && (!Number.isInteger(i.mtu) || (i.mtu as number) <= 0))
          bad.push(`${at}.mtu ${JSON.stringify(i.mtu)} is not a positive integer`);
      });
    }
  }

  const ips = result.ips;
  if (ips !== undefined) {
    if (!Array.isArray(ips)) bad.push('ips is not a list');
    else {
      ips.forEach((ip, n) => {
        const at = `ips[${n}]`;
        if (!isObject(ip)) return void bad.push(`${at} is not an object`);
        const allowed = ['address', 'gateway', 'interface', ...(v04 ? ['version'] : [])];
        for (const k of Object.keys(ip)) if (!allowed.includes(k)) bad.push(`${at} has key ${JSON.stringify(k)}, which ${version} does not define`);
        if (!isCidr(ip.address)) bad.push(`${at}.address ${JSON.stringify(ip.address)} is not an address with prefix length`);
        if (ip.gateway !== undefined && (typeof ip.gateway !== 'string' || isIP(ip.gateway) === 0))
          bad.push(`${at}.gateway ${JSON.stringify(ip.gateway)} is not an address`);
        if (ip.interface !== undefined && (!Number.isInteger(ip.interface) || (ip.interface as number) < 0 || (ip.interface as number) >= interfaceCount)) {
          bad.push(`${at}.interface ${JSON.stringify(ip.interface)} is not an index into interfaces (${interfaceCount} entries)`);
        }
        if (v04) {
          const family = typeof ip.address === 'string' ? isIP(ip.address.split('/')[0]!) : 0;
          if (ip.version !== '4' && ip.version !== '6') bad.push(`${at}.version ${JSON.stringify(ip.version)} must be "4" or "6" in 0.4.0`);
          else if (family !== 0 && ip.version !== String(family))
            bad.push(`${at}.version "${ip.version}" does not match the address family of ${String(ip.address)}`);
        }
      });
    }
  }

  const routes = result.routes;
  if (routes !== undefined) {
    if (!Array.isArray(routes)) bad.push('routes is not a list');
    else {
      routes.forEach((r, n) => {
        const at = `routes[${n}]`;
        if (!isObject(r)) return void bad.push(`${at} is not an object`);
        const allowed = ['dst', 'gw', ...(v11 ? ['mtu', 'advmss', 'priority', 'table', 'scope'] : [])];
        for (const k of Object.keys(r)) if (!allowed.includes(k)) bad.push(`${at} has key ${JSON.stringify(k)}, which ${version} does not define`);
        if (!isCidr(r.dst)) bad.push(`${at}.dst ${JSON.stringify(r.dst)} is not a prefix`);
        if (r.gw !== undefined && (typeof r.gw !== 'string' || isIP(r.gw) === 0)) bad.push(`${at}.gw ${JSON.stringify(r.gw)} is not an address`);
        for (const k of ['mtu', 'advmss', 'priority', 'table', 'scope'])
          if (r[k] !== undefined && !Number.isInteger(r[k])) bad.push(`${at}.${k} is not an integer`);
      });
    }
  }

  const dns = result.dns;
  if (dns !== undefined) {
    if (!isObject(dns)) bad.push('dns is not an object');
    else {
      for (const k of Object.keys(dns)) if (!['nameservers', 'domain', 'search', 'options'].includes(k)) bad.push(`dns has unknown key ${JSON.stringify(k)}`);
      for (const k of ['nameservers', 'search', 'options']) {
        if (dns[k] !== undefined && (!Array.isArray(dns[k]) || (dns[k] as unknown[]).some((x) => typeof x !== 'string')))
          bad.push(`dns.${k} is not a list of strings`);
      }
      if (dns.domain !== undefined && typeof dns.domain !== 'string') bad.push('dns.domain is not a string');
    }
  }
  return bad;
}
