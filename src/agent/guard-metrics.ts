/**
 * The VXLAN guard's metrics, registered next to the agent's own (health.ts) when the guard runs:
 * `tulle_vxlan_guard_members` (the peers set as last written) and `tulle_vxlan_guard_drops_total{reason}` (the
 * kernel's drop counters, read at each scrape, so they count what the kernel dropped even between scrapes).
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { VxlanGuard } from '../overlay/guard.js';

export function registerGuardMetrics(registry: Registry, guard: VxlanGuard): void {
  new Gauge({
    name: 'tulle_vxlan_guard_members',
    help: 'Peer public IPs the VXLAN guard lets in (leased peers; Backend.AllowedSources not counted)',
    registers: [registry],
    collect(this: Gauge) {
      this.set(guard.size);
    },
  });
  new Counter({
    name: 'tulle_vxlan_guard_drops_total',
    help: "VXLAN packets for the network's VNI dropped by the guard, by reason (the kernel's counters)",
    labelNames: ['reason'] as const,
    registers: [registry],
    async collect(this: Counter<'reason'>) {
      const status = await guard.status().catch(() => undefined);
      if (!status) return;
      this.reset();
      for (const [reason, c] of Object.entries(status.drops)) this.inc({ reason }, c.packets);
    },
  });
}
