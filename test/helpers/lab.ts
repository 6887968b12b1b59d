/**
 * Labs for end-to-end tests: a unique short name, a temporary labs root, and `lab down` after the test whether
 * it passed or failed.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { labDown, labUp, overlaySteps, type LabState, type OverlayOptions } from '../../src/lab/index.js';
import { run } from '../../src/base/exec.js';

export const labRoot = mkdtempSync(join(tmpdir(), 'tulle-e2e-'));
process.on('exit', () => rmSync(labRoot, { recursive: true, force: true }));

/** Lab names are lower-case letters and digits, at most 16. */
export function uniqueLabName(prefix = 'e'): string {
  return `${prefix}${process.pid.toString(36)}${randomBytes(3).toString('hex')}`.slice(0, 16);
}

export async function overlayLab(
  t: { after(fn: () => unknown): void },
  o: { nodes: number; underlay?: 'switch' | 'routed' } & Partial<OverlayOptions>,
): Promise<LabState> {
  const name = uniqueLabName();
  t.after(() => labDown(name, { root: labRoot, graceMs: 2000 }));
  return labUp({
    name,
    nodes: o.nodes,
    underlay: o.underlay ?? 'routed',
    root: labRoot,
    afterUnderlay: overlaySteps({
      store: o.store ?? 'sqlite',
      mode: o.mode ?? 'bridge',
      pods: o.pods ?? 0,
      ...(o.agents ? { agents: o.agents } : {}),
      ...(o.configText ? { configText: o.configText } : {}),
    }),
  });
}

export function agentLog(state: LabState, host: string): string {
  try {
    return readFileSync(join(state.dir, host, 'agent.log'), 'utf8');
  } catch {
    return '';
  }
}

/** The leases as `tulle leases --json` prints them (an independent reader of the store: etcdctl/SQLite via the CLI). */
export interface LeaseJson {
  subnet: string;
  publicIP: string;
  backendData: { VNI: number; VtepMAC: string };
}

/** What iproute2 reports on a host for the overlay (empty lists and no link when there is no flannel.1). */
export async function kernelView(ns: string) {
  const read = async (argv: string[]): Promise<any[]> => {
    const r = await run(argv, { allowFailure: true });
    if (r.status !== 0) {
      if (/does not exist|Cannot find device/.test(r.stderr)) return [];
      throw new Error(`${argv.join(' ')}: ${r.stderr.trim()}`);
    }
    return r.stdout.trim() ? JSON.parse(r.stdout) : [];
  };
  const [routes, neigh, fdb, link, addrs] = await Promise.all([
    read(['ip', '-n', ns, '-j', 'route', 'show', 'proto', '84']),
    read(['ip', '-n', ns, '-j', 'neigh', 'show', 'dev', 'flannel.1']),
    read(['bridge', '-n', ns, '-j', 'fdb', 'show', 'dev', 'flannel.1']),
    read(['ip', '-n', ns, '-d', '-j', 'link', 'show', 'flannel.1']),
    read(['ip', '-n', ns, '-j', 'addr', 'show', 'dev', 'flannel.1']),
  ]);
  return { routes, neigh, fdb, link: link[0], addrs: addrs[0]?.addr_info ?? [] };
}
