/**
 * Operations that can go into one pipelined batch, and how each becomes a request: which device names it needs
 * resolved, and the request built once they are. The client validates every op (throwing before anything is
 * sent), resolves all names at once, sends all requests in chunks, and pairs each ACK with its op.
 */
import { InvalidValueError } from '../base/errors.js';
import { encodeAddAddress, encodeDeleteAddress } from './addr.js';
import { checkLinkChanges, encodeDeleteLink, encodeSetLink, type LinkChanges } from './link.js';
import type { Request } from './message.js';
import { checkFdb, checkReplaceNeighbor, encodeDeleteNeighbor, encodeFdb, encodeReplaceNeighbor, type Fdb, type Neighbor } from './neigh.js';
import { checkRoute, encodeDeleteRoute, encodeReplaceRoute, type Route } from './route.js';
import { checkIfName } from './validate.js';
import { parseAddress, parsePrefix } from './inet.js';
import type { NetlinkError } from './errors.js';

/** One change: `op` names the NetlinkClient method it equals, `args` is what that method takes. */
export type NetlinkOp =
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
    case 'replaceRoute':
    case 'deleteRoute': {
      const r = op.args;
      checkRoute(r);
      const encode = op.op === 'replaceRoute' ? encodeReplaceRoute : encodeDeleteRoute;
      return { devices: r.dev ? [r.dev] : [], build: (indexOf) => encode(r, r.dev ? indexOf(r.dev) : undefined) };
    }
    case 'replaceNeighbor': {
      const n = op.args;
      checkReplaceNeighbor(n);
      return { devices: [n.dev], build: (indexOf) => encodeReplaceNeighbor(n, indexOf(n.dev)) };
    }
    case 'deleteNeighbor': {
      const n = op.args;
      checkIfName(n.dev, 'neighbor dev');
      parseAddress(n.ip, 'neighbor ip');
      return { devices: [n.dev], build: (indexOf) => encodeDeleteNeighbor(n, indexOf(n.dev)) };
    }
    case 'replaceFdb':
    case 'appendFdb':
    case 'deleteFdb': {
      const f = op.args;
      checkFdb(f);
      const action = op.op === 'replaceFdb' ? 'replace' : op.op === 'appendFdb' ? 'append' : 'del';
      return {
        devices: f.via ? [f.dev, f.via] : [f.dev],
        build: (indexOf) => encodeFdb(action, f, { dev: indexOf(f.dev), via: f.via ? indexOf(f.via) : undefined }),
      };
    }
    case 'addAddress':
    case 'deleteAddress': {
      const { dev, cidr } = op.args;
      checkIfName(dev, 'address dev');
      parsePrefix(cidr, 'address', 'keep');
      const encode = op.op === 'addAddress' ? encodeAddAddress : encodeDeleteAddress;
      return { devices: [dev], build: (indexOf) => encode(dev, cidr, indexOf(dev)) };
    }
    case 'setLink': {
      const { name, ...c } = op.args;
      checkLinkChanges(name, c);
      if ((c as LinkChanges).netns !== undefined) throw new InvalidValueError('setLink netns', (c as LinkChanges).netns, 'cannot be batched (use NetlinkClient.setLink)');
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
      throw new InvalidValueError('batch op', (op as { op?: unknown })?.op, 'is not a known operation (replaceRoute, deleteRoute, replaceNeighbor, deleteNeighbor, replaceFdb, appendFdb, deleteFdb, addAddress, deleteAddress, setLink, deleteLink)');
  }
}
