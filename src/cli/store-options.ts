/**
 * The store options every command that opens the store shares (--store, --prefix, the etcd TLS and password
 * settings, each also a TULLE_* variable), and opening the store they name.
 */
import { UsageError } from '../base/errors.js';
import type { Logger } from '../base/log.js';
import { DEFAULT_PREFIX, normalizePrefix } from '../store/keys.js';
import { openRegistry } from '../store/open.js';
import type { Registry } from '../store/registry.js';
import { DEFAULT_STORE_URL } from '../store/url.js';
import { defineOptions, type OptionValues } from './spec.js';

export const storeOptions = defineOptions({
  store: {
    type: 'string',
    valueName: 'URL',
    description: 'Store: sqlite:PATH or etcd://HOST:PORT[,HOST:PORT...]',
    default: DEFAULT_STORE_URL,
    env: 'TULLE_STORE',
  },
  prefix: { type: 'string', valueName: 'P', description: "Key prefix (flannel's --etcd-prefix)", default: DEFAULT_PREFIX, env: 'TULLE_PREFIX' },
  'etcd-cafile': { type: 'string', valueName: 'FILE', description: 'etcd: CA certificate that signed the server certificate (PEM)', env: 'TULLE_ETCD_CAFILE' },
  'etcd-certfile': { type: 'string', valueName: 'FILE', description: 'etcd: client certificate (PEM)', env: 'TULLE_ETCD_CERTFILE' },
  'etcd-keyfile': { type: 'string', valueName: 'FILE', description: "etcd: client certificate's key (PEM)", env: 'TULLE_ETCD_KEYFILE' },
  'etcd-username': { type: 'string', valueName: 'NAME', description: 'etcd: user name for password authentication', env: 'TULLE_ETCD_USERNAME' },
  'etcd-password': { type: 'string', valueName: 'PASSWORD', description: 'etcd: password (prefer the environment variable)', env: 'TULLE_ETCD_PASSWORD' },
});

export interface OpenedStore {
  registry: Registry;
  prefix: string;
}

/**
 * Open the store the options name. `create`: a missing SQLite file is made (for writes); otherwise a missing
 * file is an error, so that a mistyped path does not leave an empty database behind.
 */
export async function openStoreFromOptions(args: { options: OptionValues<typeof storeOptions> }, create: boolean, logger?: Logger): Promise<OpenedStore> {
  const o = args.options;
  const prefix = normalizePrefix(o.prefix);
  const username = o['etcd-username'];
  const password = o['etcd-password'];
  if ((username === undefined) !== (password === undefined)) {
    throw new UsageError(`--etcd-username and --etcd-password go together (${username === undefined ? '--etcd-username' : '--etcd-password'} is missing)`);
  }
  const tls = { caFile: o['etcd-cafile'], certFile: o['etcd-certfile'], keyFile: o['etcd-keyfile'] };
  const registry = await openRegistry(o.store, {
    create,
    requestTimeoutMs: 5000,
    ...(logger ? { logger } : {}),
    ...(tls.caFile || tls.certFile || tls.keyFile ? { tls } : {}),
    ...(username !== undefined ? { auth: { username, password: password! } } : {}),
  });
  return { registry, prefix };
}
