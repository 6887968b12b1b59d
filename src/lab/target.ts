/**
 * Turning `lab exec NAME TARGET` into a namespace: TARGET is a host (`h1`), the router (`rt`), a switch
 * (`sw`, `sw1`) or, later, a pod of the lab.
 */
import { TulleError } from '../base/errors.js';
import { listNetns, netnsExists } from '../netns/netns.js';
import { labNamespace, labPrefix } from './names.js';
import { LabNotFoundError, readLabState } from './state.js';
import { topologyNamespaces } from './topology.js';

export class LabTargetNotFoundError extends TulleError {
  constructor(lab: string, target: string, known: string[]) {
    super('TLE_LAB_TARGET_NOT_FOUND', `lab ${JSON.stringify(lab)} has no ${JSON.stringify(target)}; targets: ${known.join(', ') || '(none)'}`);
  }
}

/** The existing namespace of `target` in `lab`; throws naming the lab's targets when there is none. */
export function resolveLabTarget(lab: string, target: string, options: { root?: string } = {}): string {
  const namespace = labNamespace(lab, target);
  const prefix = labPrefix(lab);
  const state = readLabState(lab, options.root);
  const known = new Set([...(state ? topologyNamespaces(state) : []), ...listNetns(prefix)]);
  if (known.size === 0) throw new LabNotFoundError(lab);
  if (!known.has(namespace) || !netnsExists(namespace)) {
    throw new LabTargetNotFoundError(
      lab,
      target,
      [...known]
        .filter(netnsExists)
        .map((ns) => ns.slice(prefix.length))
        .sort(byTarget),
    );
  }
  return namespace;
}

/** h2 before h10: compare letters, then numbers. */
function byTarget(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}
