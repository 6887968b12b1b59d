/**
 * `tulle leases`: every subnet lease in the store, as a table (subnet, public IP, VTEP MAC, VNI, expires in) or
 * as JSON. Reservations (keys without TTL) show "never". A value that cannot be read is reported on stderr and
 * left out; it does not fail the command.
 */
import { parseCidr4 } from '../../base/ip.js';
import type { Lease } from '../../subnet/lease.js';
import { LeaseManager } from '../../subnet/manager.js';
import type { CommandSpec } from '../spec.js';
import { openStoreFromOptions, storeOptions } from './config.js';

/** "23h59m", "4m05s", "12s", "expired", "never (reservation)". */
export function formatExpiresIn(lease: Lease, now: number): string {
  if (lease.expiration === null) return 'never (reservation)';
  const seconds = Math.floor((lease.expiration.getTime() - now) / 1000);
  if (seconds <= 0) return 'expired';
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  if (h > 0) return `${h}h${String(m).padStart(2, '0')}m`;
  if (m > 0) return `${m}m${String(s).padStart(2, '0')}s`;
  return `${s}s`;
}

export function formatLeaseTable(leases: readonly Lease[], now: number): string {
  const rows = [['SUBNET', 'PUBLIC IP', 'VTEP MAC', 'VNI', 'EXPIRES IN']];
  for (const l of leases) {
    const vxlan = l.backendType === 'vxlan';
    rows.push([l.subnet, l.publicIP, vxlan ? String(l.backendData.VtepMAC) : `- (${l.backendType || 'no backend'})`, vxlan ? String(l.backendData.VNI) : '-', formatExpiresIn(l, now)]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')).join('\n') + '\n';
}

function bySubnet(a: Lease, b: Lease): number {
  const x = parseCidr4(a.subnet);
  const y = parseCidr4(b.subnet);
  return x.network - y.network || x.prefix - y.prefix;
}

export const leasesCommand: CommandSpec = {
  name: 'tulle leases',
  summary: 'List the subnet leases in the store: subnet, public IP, VTEP MAC, VNI, expires in',
  details: 'Reservations (keys without TTL) never expire. Values that cannot be read are reported on stderr and skipped.',
  options: {
    ...storeOptions,
    json: { type: 'boolean', description: 'Print a JSON array instead of the table' },
  },
  examples: ['tulle leases --store sqlite:/var/lib/tulle/tulle.db', 'TULLE_STORE=etcd://10.0.0.1:2379 tulle leases --json'],
  async run(args) {
    const { registry, prefix } = await openStoreFromOptions(args, false);
    try {
      const { leases, malformed } = await new LeaseManager(registry, { prefix }).listLeases();
      for (const err of malformed) process.stderr.write(`warning: skipped ${err.message}\n`);
      leases.sort(bySubnet);
      if (args.options.json) {
        const out = leases.map((l) => ({
          subnet: l.subnet,
          publicIP: l.publicIP,
          backendType: l.backendType,
          backendData: l.backendData,
          expiration: l.expiration?.toISOString() ?? null,
          reservation: l.expiration === null,
          key: l.key,
        }));
        process.stdout.write(JSON.stringify(out, null, 2) + '\n');
      } else {
        process.stdout.write(formatLeaseTable(leases, Date.now()));
      }
    } finally {
      await registry.close();
    }
  },
};
