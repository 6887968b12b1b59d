/** Subnet leases on top of a store: the pure allocator, the lease manager and the lease watcher. */
export * from './lease.js';
export * from './allocator.js';
export * from './manager.js';
export * from './watcher.js';
