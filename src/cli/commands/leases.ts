/**
 * `tulle leases`: every subnet lease in the store, as a table (subnet, public IP, VTEP MAC, VNI, expires in,
 * status) or as JSON. Reservations (keys without TTL) show "never". The status says whether a lease can be
 * programmed at all (admission.ts, judged without a host: the checks that depend on one host's routes and
 * addresses are `tulle status`'s); a value that cannot be read is listed as rejected, "malformed".
 */
import { parseCidr4 } from '../../base/ip.js';
import { admitLeases, type Rejection } from '../../overlay/admission.js';
import type { Lease } from '../../subnet/lease.js';
import { LeaseManager } from '../../subnet/manager.js';
import { defineCommand } from '../spec.js';
import { openStoreFromOptions, storeOptions } from '../store-options.js';

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

export function formatLeaseTable(leases: readonly Lease[], now: number, rejected: readonly Rejection[] = []): string {
  const rows = [['SUBNET', 'PUBLIC IP', 'VTEP MAC', 'VNI', 'EXPIRES IN', 'STATUS']];
  const why = new Map(rejected.map((r) => [r.key, r]));
  const status = (key: string): string => {
    const r = why.get(key);
    return r ? `rejected: ${r.reason}: ${r.detail}` : 'ok';
  };
  for (const l of leases) {
    const vxlan = l.backendType === 'vxlan';
    rows.push([
      l.subnet,
      l.publicIP,
      vxlan ? String(l.backendData.VtepMAC) : `- (${l.backendType || 'no backend'})`,
      vxlan ? String(l.backendData.VNI) : '-',
      formatExpiresIn(l, now),
      status(l.key),
    ]);
  }
  for (const r of rejected) if (r.reason === 'malformed') rows.push([r.subnet ?? r.key, '-', '-', '-', '-', status(r.key)]);
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')).join('\n') + '\n';
}

function bySubnet(a: Lease, b: Lease): number {
  const x = parseCidr4(a.subnet);
  const y = parseCidr4(b.subnet);
  return x.network - y.network || x.prefix - y.prefix;
}

export const leasesCommand = defineCommand({
  name: 'tulle leases',
  summary: 'List the subnet leases in the store: subnet, public IP, VTEP MAC, VNI, expires in, and whether agents reject it',
  details: [
    'Reservations (keys without TTL) never expire. STATUS is "ok" or "rejected: REASON: detail" (a value that cannot be read is "malformed").',
    'Checks that depend on one host (its own subnet, routes and addresses) are shown by `tulle status` on that host.',
  ].join('\n'),
  options: {
    ...storeOptions,
    json: { type: 'boolean', description: 'Print a JSON array instead of the table' },
  },
  examples: ['tulle leases --store sqlite:/var/lib/tulle/tulle.db', 'TULLE_STORE=etcd://10.0.0.1:2379 tulle leases --json'],
  async run(args) {
    const { registry, prefix } = await openStoreFromOptions(args, false);
    try {
      const manager = new LeaseManager(registry, { prefix });
      const { leases, malformed } = await manager.listLeases();
      const config = await manager.getNetworkConfig().catch(() => undefined);
      leases.sort(bySubnet);
      const rejected: Rejection[] = malformed.map((err) => ({ key: err.key, reason: 'malformed', detail: err.message }));
      if (config) {
        const judged = admitLeases(
          { network: parseCidr4(config.Network), subnetLen: config.SubnetLen, vni: config.Backend.VNI, localAddresses: new Set(), foreignRoutes: [] },
          leases,
        );
        rejected.push(...judged.rejected);
      } else {
        process.stderr.write('warning: no valid network config in the store: leases are listed without being judged\n');
      }
      const why = new Map(rejected.map((r) => [r.key, r]));
      if (args.options.json) {
        const out = leases.map((l) => ({
          subnet: l.subnet,
          publicIP: l.publicIP,
          backendType: l.backendType,
          backendData: l.backendData,
          expiration: l.expiration?.toISOString() ?? null,
          reservation: l.expiration === null,
          key: l.key,
          created: l.created,
          rejected: why.has(l.key) ? { reason: why.get(l.key)!.reason, detail: why.get(l.key)!.detail } : null,
        }));
        const unreadable = rejected.filter((r) => r.reason === 'malformed').map((r) => ({ key: r.key, rejected: { reason: r.reason, detail: r.detail } }));
        process.stdout.write(JSON.stringify([...out, ...unreadable], null, 2) + '\n');
      } else {
        process.stdout.write(formatLeaseTable(leases, Date.now(), rejected));
      }
    } finally {
      await registry.close();
    }
  },
});
