/**
 * openRegistry(url): the one way to open a store. The store modules are loaded on demand, so a command that
 * uses SQLite never loads the gRPC client and the reverse.
 */
import type { EtcdRegistryOptions } from './etcd.js';
import type { Registry } from './registry.js';
import type { SqliteRegistryOptions } from './sqlite.js';
import { parseStoreUrl } from './url.js';

export type OpenRegistryOptions = SqliteRegistryOptions & EtcdRegistryOptions;

export async function openRegistry(url: string, options: OpenRegistryOptions = {}): Promise<Registry> {
  const location = parseStoreUrl(url);
  switch (location.kind) {
    case 'sqlite':
      return (await import('./sqlite.js')).openSqliteRegistry(location.path, options);
    case 'memory':
      return (await import('./sqlite.js')).openMemoryRegistry(location.name, options);
    case 'etcd':
      return (await import('./etcd.js')).openEtcdRegistry(location.endpoints, options);
  }
}
