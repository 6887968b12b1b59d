/** Configuration files: flannel's network config (net-conf.json). */
export * from './network.js';
export * from './flannel-json.js';
