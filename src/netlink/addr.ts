/**
 * Addresses (`ip addr`): add/delete requests and the RTM_NEWADDR decoder.
 */
import {
  IFADDRMSG_LEN,
  IFA_ADDRESS,
  IFA_LABEL,
  IFA_LOCAL,
  NLM_F_CREATE,
  NLM_F_EXCL,
  RTM_DELADDR,
  RTM_GETADDR,
  RTM_NEWADDR,
  AF_UNSPEC,
  SCOPES,
} from './constants.js';
import { addressFamily, parsePrefix, type Family } from './inet.js';
import { Attrs, MessageWriter, lazyRequest, type Message, type Request } from './message.js';
import { checkIfName } from './validate.js';

export interface Address {
  dev: string;
  /** Address with its prefix length, e.g. '10.244.1.0/32'. */
  cidr: string;
  /** The address alone, e.g. '10.244.1.0'. */
  address: string;
  prefix: number;
  family: Family;
  /** 'global', 'link', 'host' or 'site', as `ip addr` prints it. */
  scope: string;
  /** IFA_LABEL, e.g. 'eth0:1' (IPv4 only; usually the device name). */
  label?: string;
}

function prepareAddr(type: number, flags: number, verb: string, dev: string, cidr: string): (index: number) => Request {
  checkIfName(dev, 'address dev');
  const p = parsePrefix(cidr, 'address', 'keep');
  return (index) => {
    const w = new MessageWriter(type, flags, IFADDRMSG_LEN);
    const s = w.struct;
    s[0] = addressFamily(p.family);
    s[1] = p.prefix;
    s.writeUInt32LE(index, 4);
    w.bytes(IFA_LOCAL, p.bytes);
    w.bytes(IFA_ADDRESS, p.bytes);
    return lazyRequest(w.finish(), () => `addr ${verb} ${cidr} dev ${dev}`);
  };
}

/** `ip addr add CIDR dev DEV` (fails with EEXIST if the address is there already). */
export function prepareAddAddress(dev: string, cidr: string): (index: number) => Request {
  return prepareAddr(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, 'add', dev, cidr);
}

/** `ip addr del CIDR dev DEV` (EADDRNOTAVAIL if it is not there). */
export function prepareDeleteAddress(dev: string, cidr: string): (index: number) => Request {
  return prepareAddr(RTM_DELADDR, 0, 'del', dev, cidr);
}

/** `ip addr show [dev DEV]`; the kernel filters by device itself (strict dump checking). */
export function encodeDumpAddresses(index?: number, dev?: string): Request {
  const w = new MessageWriter(RTM_GETADDR, 0, IFADDRMSG_LEN);
  w.struct[0] = AF_UNSPEC;
  if (index) w.struct.writeUInt32LE(index, 4);
  return { message: w.finish(), command: `addr show${dev ? ` dev ${dev}` : ''}` };
}

const SCOPE_NAMES: Record<number, string> = {
  [SCOPES.universe]: 'global',
  [SCOPES.site]: 'site',
  [SCOPES.link]: 'link',
  [SCOPES.host]: 'host',
  [SCOPES.nowhere]: 'nowhere',
};

export function decodeAddress(m: Message, nameOf: (index: number) => string | undefined): Address {
  const p = m.payload;
  const prefix = p[1]!;
  const scope = p[3]!;
  const index = p.readUInt32LE(4);
  const a = new Attrs(p, IFADDRMSG_LEN);
  // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer on point-to-point links, else the same.
  const type = a.has(IFA_LOCAL) ? IFA_LOCAL : IFA_ADDRESS;
  const address = a.address(type) ?? '';
  const result: Address = {
    dev: nameOf(index) ?? `if${index}`,
    cidr: `${address}/${prefix}`,
    address,
    prefix,
    family: a.length(type) === 16 ? 6 : 4,
    scope: SCOPE_NAMES[scope] ?? String(scope),
  };
  const label = a.string(IFA_LABEL);
  if (label !== undefined) result.label = label;
  return result;
}
