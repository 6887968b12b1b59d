/**
 * Operations that can go into one pipelined batch, and how each becomes a request: which device names it needs
 * resolved, and the request built once they are. The client validates every op (throwing before anything is
 * sent), resolves all names at once, sends all requests in chunks, and pairs each ACK with its op.
 */
import { InvalidValueError } from '../base/errors.js';
import { prepareAddAddress, prepareDeleteAddress } from './addr.js';
import { checkLinkChanges, encodeDeleteLink, encodeSetLink, type LinkChanges } from './link.js';
import type { Request } from './message.js';
import { prepareDeleteNeighbor, prepareFdb, prepareReplaceNeighbor, type Fdb, type Neighbor } from './neigh.js';
import { prepareAddRoute, prepareDeleteRoute, prepareReplaceRoute, type Route } from './route.js';
import { checkIfName } from './validate.js';
import type { NetlinkError } from './errors.js';

/** One change: `op` names the NetlinkClient method it equals, `args` is what that method takes. */
export type NetlinkOp =
  | { op: 'addRoute'; args: Route }
  | { op: 'replaceRoute'; args: Route }
  | { op: 'deleteRoute'; args: Route }
  | { op: 'replaceNeighbor'; args: Neighbor }
  | { op: 'deleteNeighbor'; args: { dev: string; ip: string } }
  | { op: 'replaceFdb'; args: Fdb }
  | { op: 'appendFdb'; args: Fdb }
  | { op: 'deleteFdb'; args: Fdb }
  | { op: 'addAddress'; args: { dev: string; cidr: string } }
  | { op: 'deleteAddress'; args: { dev: string; cidr: string } }
  | { op: 'setLink'; args: { name: string } & Omit<LinkChanges, 'netns'> }
  | { op: 'deleteLink'; args: { name: string } };

export type OpResult = { ok: true } | { ok: false; error: NetlinkError };

/** Index of a device by name; 0 while unknown (only used to build the command text of a failed op). */
export type IndexOf = (name: string) => number;

export interface PlannedOp {
  /** Device names the request needs as indexes. */
  devices: string[];
  build(indexOf: IndexOf): Request;
}

/** Validate `op` (InvalidValueError on bad input) and say how to build its request. */
export function planOp(op: NetlinkOp): PlannedOp {
  const args = op?.args as unknown;
  if (args === null || typeof args !== 'object') throw new InvalidValueError(`batch ${op?.op ?? 'op'} args`, args, 'must be an object');
  switch (op.op) {
    case 'addRoute':
    case 'replaceRoute':
    case 'deleteRoute': {
      const dev = op.args.dev;
      const build = op.op === 'addRoute' ? prepareAddRoute(op.args) : op.op === 'replaceRoute' ? prepareReplaceRoute(op.args) : prepareDeleteRoute(op.args);
      return { devices: dev ? [dev] : [], build: (indexOf) => build(dev ? indexOf(dev) : undefined) };
    }
    case 'replaceNeighbor':
    case 'deleteNeighbor': {
      const dev = op.args.dev;
      const build = op.op === 'replaceNeighbor' ? prepareReplaceNeighbor(op.args) : prepareDeleteNeighbor(op.args);
      return { devices: [dev], build: (indexOf) => build(indexOf(dev)) };
    }
    case 'replaceFdb':
    case 'appendFdb':
    case 'deleteFdb': {
      const f = op.args;
      const build = prepareFdb(op.op === 'replaceFdb' ? 'replace' : op.op === 'appendFdb' ? 'append' : 'del', f);
      return {
        devices: f.via ? [f.dev, f.via] : [f.dev],
        build: (indexOf) => build({ dev: indexOf(f.dev), via: f.via ? indexOf(f.via) : undefined }),
      };
    }
    case 'addAddress':
    case 'deleteAddress': {
      const { dev, cidr } = op.args;
      const build = op.op === 'addAddress' ? prepareAddAddress(dev, cidr) : prepareDeleteAddress(dev, cidr);
      return { devices: [dev], build: (indexOf) => build(indexOf(dev)) };
    }
    case 'setLink': {
      const { name, ...c } = op.args;
      checkLinkChanges(name, c);
      if ((c as LinkChanges).netns !== undefined)
        throw new InvalidValueError('setLink netns', (c as LinkChanges).netns, 'cannot be batched (use NetlinkClient.setLink)');
      const devices = [...(c.newName !== undefined ? [name] : []), ...(typeof c.master === 'string' ? [c.master] : [])];
      return {
        devices,
        build: (indexOf) =>
          encodeSetLink(name, c, {
            index: c.newName !== undefined ? indexOf(name) || 1 : undefined,
            masterIndex: typeof c.master === 'string' ? indexOf(c.master) : undefined,
          }),
      };
    }
    case 'deleteLink': {
      const { name } = op.args;
      checkIfName(name, 'link name');
      return { devices: [], build: () => encodeDeleteLink(name) };
    }
    default:
      throw new InvalidValueError(
        'batch op',
        (op as { op?: unknown })?.op,
        'is not a known operation (replaceRoute, deleteRoute, replaceNeighbor, deleteNeighbor, replaceFdb, appendFdb, deleteFdb, addAddress, deleteAddress, setLink, deleteLink)',
      );
  }
}
