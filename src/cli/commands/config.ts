/**
 * `tulle config put|get`: the network config (flannel's net-conf.json) at `<prefix>/config` in a store.
 * `put` validates with flannel's rules before it writes anything and stores the text as given (so fields
 * tulle does not use, meant for flanneld hosts, stay); `get` prints what is stored.
 *
 * The store options it shares with every command that opens the store are in ../store-options.ts.
 */
import { readFileSync } from 'node:fs';
import { errnoOrMessage, InvalidValueError, UsageError } from '../../base/errors.js';
import { formatCidr4, parseCidr4 } from '../../base/ip.js';
import { isSubnetInRange, parseNetworkConfig, subnetRange, type NetworkConfig } from '../../config/network.js';
import { checkPrefixForMode, configKey, DEFAULT_PREFIX } from '../../store/keys.js';
import { LeaseManager, NetworkConfigMissingError } from '../../subnet/manager.js';
import { defineCommand, type CommandGroup } from '../spec.js';
import { openStoreFromOptions, storeOptions } from '../store-options.js';

/** One line describing a config: what hosts will get. */
export function describeNetworkConfig(c: NetworkConfig): string {
  const range = subnetRange(c);
  const l2 = c.Backend.mode === 'l2' ? `, l2 flood ${c.Backend.flood}${c.Backend.group ? ` group ${c.Backend.group}` : ''} bridge ${c.Backend.bridge}` : '';
  return `Network ${c.Network}, /${c.SubnetLen} subnets ${c.SubnetMin}..${c.SubnetMax} (${range.count}), ${c.Backend.Type} VNI ${c.Backend.VNI} port ${c.Backend.Port}${l2}`;
}

async function readInput(file: string | undefined): Promise<{ text: string; source: string }> {
  if (file !== undefined && file !== '-') {
    try {
      return { text: readFileSync(file, 'utf8'), source: file };
    } catch (err) {
      throw new InvalidValueError('FILE', file, `cannot be read (${errnoOrMessage(err)})`);
    }
  }
  if (process.stdin.isTTY) throw new UsageError("tulle config put: give FILE or pipe the config on standard input (see 'tulle config put --help')");
  let text = '';
  for await (const chunk of process.stdin) text += String(chunk);
  return { text, source: 'standard input' };
}

const putCommand = defineCommand({
  name: 'tulle config put',
  summary: "Validate a network config (flannel's net-conf.json) and write it to the store",
  details: [
    "The config is checked with flannel's rules before anything is written; it is stored as given, so fields for",
    "flanneld hosts stay. FILE '-' or no FILE reads standard input. Hosts read the config when they start.",
  ].join('\n'),
  options: storeOptions,
  positionals: [{ name: 'file', description: 'net-conf.json to write (default: standard input)' }],
  examples: [
    `tulle config put --store sqlite:/var/lib/tulle/tulle.db net-conf.json`,
    `echo '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}' | tulle config put --store etcd://10.0.0.1:2379`,
  ],
  async run(args) {
    const { text, source } = await readInput(args.positionals.file);
    const config = parseNetworkConfig(text); // throws before the store is even opened
    checkPrefixForMode(config.Backend.mode, args.options.prefix ?? DEFAULT_PREFIX);
    const { registry, prefix } = await openStoreFromOptions(args, true);
    try {
      const key = configKey(prefix);
      await registry.put(key, text.trim());
      process.stdout.write(`wrote ${key} in ${registry.url} from ${source}: ${describeNetworkConfig(config)}\n`);
      const { leases } = await new LeaseManager(registry, { prefix }).listLeases();
      const misfits = leases
        .map((l) => parseCidr4(l.subnet))
        .filter((subnet) => !isSubnetInRange(config, subnet))
        .sort((a, b) => a.network - b.network)
        .map(formatCidr4);
      if (misfits.length) {
        process.stderr.write(
          `warning: ${misfits.length} existing lease(s) do not fit this config (${misfits.join(', ')}); their hosts get new subnets when they restart\n`,
        );
      }
    } finally {
      await registry.close();
    }
  },
});

const getCommand = defineCommand({
  name: 'tulle config get',
  summary: 'Print the network config stored in the store',
  details: 'Prints the JSON as stored; --effective prints it checked, with every default filled in.',
  options: {
    ...storeOptions,
    effective: { type: 'boolean', description: "Print the config as hosts use it: validated, flannel's defaults filled in" },
  },
  examples: ['tulle config get --store sqlite:/var/lib/tulle/tulle.db', 'tulle config get --effective'],
  async run(args) {
    const { registry, prefix } = await openStoreFromOptions(args, false);
    try {
      const m = new LeaseManager(registry, { prefix });
      if (args.options.effective) {
        process.stdout.write(JSON.stringify(await m.getNetworkConfig(), null, 2) + '\n');
        return;
      }
      // As stored, even when invalid: that is when one needs to see it.
      const key = configKey(prefix);
      const stored = await registry.get(key);
      if (!stored) throw new NetworkConfigMissingError(key, registry.url);
      process.stdout.write(`${stored.value}\n`);
    } finally {
      await registry.close();
    }
  },
});

export const configGroup: CommandGroup = {
  name: 'config',
  summary: "Write or read the network config (flannel's net-conf.json) in the store",
  subcommands: [putCommand, getCommand],
};
