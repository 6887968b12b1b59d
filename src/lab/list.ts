/**
 * Finding labs: every directory under the labs directory, and every namespace named `tulle-<lab>-...` (a lab
 * whose state file is gone still shows, as `leftover`, so it can be found and removed).
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { listNetns } from '../netns/netns.js';
import { labOfNamespace, NAMESPACE_PREFIX, validateLabName } from './names.js';
import { labHostFiles, labsRoot, LabStateError, readLabState, type LabHostFiles, type LabStatus } from './state.js';
import type { Underlay } from './topology.js';

export interface LabSummary {
  name: string;
  /** `leftover`: namespaces or a directory without a state file; `unreadable`: a broken state file. */
  status: LabStatus | 'leftover' | 'unreadable';
  underlay: Underlay | null;
  hosts: string[];
  /** Namespaces of the lab that exist now. */
  namespaces: string[];
  /** Processes recorded in the state file. */
  processes: number;
  dir: string | null;
  /** The store URL the hosts use, when the lab has an overlay. */
  store: string | null;
  /** Each host's subnet.env, agent log and store URL (empty for a bare or leftover lab). */
  hostFiles: LabHostFiles[];
}

export function listLabs(options: { root?: string } = {}): LabSummary[] {
  const root = labsRoot(options.root);
  const byName = new Map<string, string[]>();
  for (const ns of listNetns(NAMESPACE_PREFIX)) {
    const lab = labOfNamespace(ns);
    if (lab) byName.set(lab, [...(byName.get(lab) ?? []), ns]);
  }
  const dirs = existsSync(root)
    ? readdirSync(root, { withFileTypes: true })
        .filter((d) => d.isDirectory() && isLabName(d.name))
        .map((d) => d.name)
    : [];
  for (const d of dirs) if (!byName.has(d)) byName.set(d, []);

  return [...byName.keys()].sort().map((name) => {
    const namespaces = byName.get(name)!;
    const dir = dirs.includes(name) ? join(root, name) : null;
    try {
      const state = readLabState(name, root);
      if (state)
        return {
          name,
          status: state.status,
          underlay: state.underlay,
          hosts: state.hosts.map((h) => h.name),
          namespaces,
          processes: state.processes.length,
          dir,
          store: state.overlay?.store ?? null,
          hostFiles: labHostFiles(state),
        };
    } catch (err) {
      if (!(err instanceof LabStateError)) throw err;
      return { name, status: 'unreadable', underlay: null, hosts: [], namespaces, processes: 0, dir, store: null, hostFiles: [] };
    }
    const hosts = namespaces.map((ns) => ns.slice(`${NAMESPACE_PREFIX}${name}-`.length)).filter((t) => /^h\d+$/.test(t));
    return { name, status: 'leftover', underlay: null, hosts, namespaces, processes: 0, dir, store: null, hostFiles: [] };
  });
}

function isLabName(name: string): boolean {
  try {
    validateLabName(name);
    return true;
  } catch {
    return false;
  }
}
