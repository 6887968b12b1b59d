/** The store: one Registry interface, opened from a URL (sqlite:PATH, etcd://HOST:PORT[,...], memory:). */
export * from './registry.js';
export * from './keys.js';
export * from './url.js';
export * from './retry.js';
export { openRegistry, type OpenRegistryOptions } from './open.js';
