/**
 * Store URLs:
 *   sqlite:PATH                      an SQLite file on this machine (the default: sqlite:/var/lib/tulle/tulle.db)
 *   etcd://HOST:PORT[,HOST:PORT...]  an etcd v3 cluster (TLS and user/password come as separate options)
 *   memory:[NAME]                    in this process only, for unit tests; one NAME = one shared store
 */
import { isIPv6 } from 'node:net';
import { InvalidValueError } from '../base/errors.js';

export const DEFAULT_STORE_URL = 'sqlite:/var/lib/tulle/tulle.db';

export type StoreLocation = { kind: 'sqlite'; path: string } | { kind: 'etcd'; endpoints: string[] } | { kind: 'memory'; name: string };

const RULE = 'is not a store URL (sqlite:PATH, etcd://HOST:PORT[,HOST:PORT...] or memory:)';

export function parseStoreUrl(url: string, field = '--store'): StoreLocation {
  if (typeof url !== 'string') throw new InvalidValueError(field, url, RULE);
  if (url.startsWith('sqlite:')) {
    // sqlite:///var/x.db and sqlite:/var/x.db both name /var/x.db.
    const path = url.slice('sqlite:'.length).replace(/^\/\/(?=\/)/, '');
    if (path === '' || path.startsWith('//')) throw new InvalidValueError(field, url, `${RULE}: the SQLite file path is missing`);
    return { kind: 'sqlite', path };
  }
  if (url.startsWith('etcd://')) {
    const hosts = url.slice('etcd://'.length).replace(/\/$/, '');
    if (hosts === '') throw new InvalidValueError(field, url, `${RULE}: no etcd endpoint given`);
    return { kind: 'etcd', endpoints: hosts.split(',').map((h) => checkEndpoint(field, url, h)) };
  }
  if (url.startsWith('memory:')) return { kind: 'memory', name: url.slice('memory:'.length) };
  // etcd's own flags and docs write endpoints as http(s)://HOST:PORT; say which form tulle wants.
  if (/^https?:\/\//.test(url)) {
    const hosts = url.split(',').map((e) => e.replace(/^https?:\/\//, '').replace(/\/$/, ''));
    const tls = url.startsWith('https:') ? ' (TLS: add --etcd-cafile, and --etcd-certfile/--etcd-keyfile for client certificates)' : '';
    throw new InvalidValueError(field, url, `is not a store URL: write etcd endpoints as etcd://${hosts.join(',')}${tls}`);
  }
  if (/^[A-Za-z0-9.-]+:\d+$/.test(url)) throw new InvalidValueError(field, url, `is not a store URL: for etcd write etcd://${url}`);
  throw new InvalidValueError(field, url, RULE);
}

/** "host:port" or "[v6]:port", port 1..65535. */
function checkEndpoint(field: string, url: string, hostPort: string): string {
  const m = /^(\[[^\]]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(hostPort);
  if (!m) throw new InvalidValueError(field, url, `${RULE}: endpoint ${JSON.stringify(hostPort)} is not HOST:PORT`);
  const port = Number(m[2]);
  if (port < 1 || port > 65535)
    throw new InvalidValueError(field, url, `${RULE}: port ${port} of ${JSON.stringify(hostPort)} is out of range (must be 1..65535)`);
  if (m[1]!.startsWith('[') && !isIPv6(m[1]!.slice(1, -1))) throw new InvalidValueError(field, url, `${RULE}: ${m[1]} is not an IPv6 address`);
  return hostPort;
}
