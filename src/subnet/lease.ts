/**
 * A lease: one host's subnet, stored at `<prefix>/subnets/10.244.1.0-24` with flannel's JSON value
 *
 *   {"PublicIP":"192.0.2.11","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}
 *
 * Values are read as flanneld reads them (keys case-insensitive) and written with flannel's spelling. Fields
 * this version does not interpret (flannel's "PublicIPv6", "BackendV6Data", anything newer) are kept and
 * written back unchanged, so tulle never erases what another host's flanneld wrote.
 */
import { formatValue, InvalidValueError, TulleError } from '../base/errors.js';
import { formatCidr4, isIP, macNumber, parseMac, scanIPv4, type Cidr4 } from '../base/ip.js';
import { isIPv4 } from 'node:net';
import { abbreviate, FieldSet, isJsonObject, otherFields, parseJsonText, type JsonObject } from '../config/flannel-json.js';
import { MAX_VNI } from '../config/network.js';
import { parseSubnetKey, type ParsedSubnetKey } from '../store/keys.js';
import type { StoredValue } from '../store/registry.js';

/** What a VXLAN host publishes: its VNI and its VTEP's MAC. Other keys a peer wrote are kept. */
export interface BackendData {
  VNI?: number;
  VtepMAC?: string;
  [field: string]: unknown;
}

export interface Lease {
  /** The host's subnet, e.g. "10.244.1.0/24". */
  subnet: string;
  /** The store key, e.g. "/coreos.com/network/subnets/10.244.1.0-24". */
  key: string;
  /** The host's underlay address: where VXLAN packets for this subnet go. */
  publicIP: string;
  /** "vxlan" for tulle and flannel's vxlan backend; other flannel backends are reported as they are. */
  backendType: string;
  /** For "vxlan": VNI and VtepMAC (always present and valid, else the lease is malformed). */
  backendData: BackendData;
  /** When the lease ends unless renewed; null for a reservation (a key without TTL), which never ends. */
  expiration: Date | null;
  /** Store revision of the write that produced this value; renewals compare against it. */
  revision: number;
  /**
   * Store revision at which the key was created (renewals keep it): the lease's age, which settles conflicts
   * between two leases the same way on every host (the older one wins).
   */
  created: number;
  /** Top-level fields of the stored JSON that tulle does not interpret, written back unchanged. */
  extra: JsonObject;
  /**
   * The subnet, PublicIP and VtepMAC as numbers, read where the lease is decoded (decodeLease checks each of them
   * anyway): admission and planning then parse no text per lease. Absent on a lease made otherwise; they parse.
   */
  numbers?: LeaseNumbers;
}

/** A lease's addresses as numbers: the subnet (a Cidr4), PublicIP and VtepMAC (NaN unless a vxlan lease). */
export interface LeaseNumbers extends Cidr4 {
  publicIP: number;
  vtepMac: number;
}

/** What a host asks to publish about itself. */
export interface LeaseAttrs {
  publicIP: string;
  backendType: string;
  backendData: BackendData;
  extra?: JsonObject;
}

/** A stored lease value tulle cannot use (written by someone else); it is reported and skipped, never fatal. */
export class MalformedLeaseError extends TulleError {
  constructor(
    readonly key: string,
    detail: string,
  ) {
    super('TLE_MALFORMED_LEASE', `malformed lease at ${key}: ${detail}`);
  }
}

const KNOWN_FIELDS = ['PublicIP', 'BackendType', 'BackendData'];
const LEASE_FIELDS = new FieldSet(['PublicIP', 'BackendType', 'BackendData']);
const VXLAN_FIELDS = new FieldSet(['VNI', 'VtepMAC']);

/** The JSON value for a lease, in flannel's spelling and field order. */
export function encodeLeaseValue(attrs: LeaseAttrs): string {
  const backendData =
    attrs.backendType === 'vxlan'
      ? { VNI: attrs.backendData.VNI, VtepMAC: attrs.backendData.VtepMAC, ...otherFields(attrs.backendData, ['VNI', 'VtepMAC']) }
      : attrs.backendData;
  return JSON.stringify({
    PublicIP: attrs.publicIP,
    BackendType: attrs.backendType,
    BackendData: backendData,
    ...otherFields(attrs.extra ?? {}, KNOWN_FIELDS),
  });
}

/**
 * Read a stored lease; throws MalformedLeaseError naming the key and what is wrong. `parsedKey`: the caller's
 * parseSubnetKey of the same prefix and key, when it already has it.
 */
export function decodeLease(prefix: string, stored: StoredValue, parsedKey: ParsedSubnetKey | undefined = parseSubnetKey(prefix, stored.key)): Lease {
  const fail = (detail: string): never => {
    throw new MalformedLeaseError(stored.key, detail);
  };
  if (!parsedKey) fail('the key is not a subnet key (like 10.244.1.0-24)');
  let doc: unknown;
  try {
    doc = parseJsonText(stored.value, 'value');
  } catch {
    fail(`the value is not JSON: ${JSON.stringify(abbreviate(stored.value))}`);
  }
  if (!isJsonObject(doc)) return fail(`the value is not a JSON object: ${abbreviate(stored.value)}`);

  const { fields, rest } = LEASE_FIELDS.split(doc);
  const publicIP = fields.PublicIP;
  const publicIPNumber = typeof publicIP === 'string' ? scanIPv4(publicIP, 0, publicIP.length) : -1;
  if (publicIPNumber < 0) fail(`PublicIP ${formatValue(publicIP)} is not an IPv4 address`);
  const backendTypeValue = fields.BackendType;
  if (backendTypeValue !== undefined && backendTypeValue !== null && typeof backendTypeValue !== 'string')
    fail(`BackendType ${formatValue(backendTypeValue)} is not a string`);
  const backendType = typeof backendTypeValue === 'string' ? backendTypeValue : '';
  const rawData = fields.BackendData;
  if (rawData !== undefined && rawData !== null && !isJsonObject(rawData)) fail(`BackendData ${formatValue(rawData)} is not a JSON object`);
  const data: JsonObject = (rawData as JsonObject | null | undefined) ?? {};

  let backendData: BackendData = data;
  let vtepMacNumber = NaN;
  if (backendType === 'vxlan') {
    const vxlan = VXLAN_FIELDS.split(data);
    const vni = vxlan.fields.VNI;
    if (typeof vni !== 'number' || !Number.isInteger(vni) || vni < 0 || vni > MAX_VNI) fail(`BackendData.VNI ${formatValue(vni)} is not a VNI (0..${MAX_VNI})`);
    const mac = vxlan.fields.VtepMAC;
    let vtepMac = '';
    try {
      vtepMac = parseMac(mac as string, 'BackendData.VtepMAC');
    } catch {
      fail(`BackendData.VtepMAC ${formatValue(mac)} is not a MAC address`);
    }
    backendData = { VNI: vni as number, VtepMAC: vtepMac, ...vxlan.rest };
    vtepMacNumber = macNumber(vtepMac);
  }
  const subnet = parsedKey!.subnet;

  return {
    subnet: formatCidr4(subnet),
    key: stored.key,
    publicIP: publicIP as string,
    backendType,
    backendData,
    expiration: stored.expiresAt === null ? null : new Date(stored.expiresAt),
    revision: stored.modRevision,
    created: stored.createRevision ?? stored.modRevision,
    extra: Object.keys(rest).length ? rest : NO_EXTRA,
    numbers: { network: subnet.network, prefix: subnet.prefix, publicIP: publicIPNumber, vtepMac: vtepMacNumber },
  };
}

/** Most leases carry no field beyond flannel's three: they share one empty object (one less object per peer). */
const NO_EXTRA: JsonObject = Object.freeze({});

/** Do two leases publish the same thing (ignoring expiration and revision)? */
export function sameLeaseAttrs(a: Lease, b: Lease): boolean {
  return (
    a.subnet === b.subnet &&
    a.publicIP === b.publicIP &&
    a.backendType === b.backendType &&
    JSON.stringify(a.backendData) === JSON.stringify(b.backendData) &&
    JSON.stringify(a.extra) === JSON.stringify(b.extra)
  );
}

/** Check what a host asks to publish, naming the bad field; returns it normalised (lower-case MAC). */
export function checkLeaseAttrs(attrs: LeaseAttrs): LeaseAttrs {
  if (typeof attrs.publicIP !== 'string' || !isIPv4(attrs.publicIP)) {
    const rule =
      typeof attrs.publicIP === 'string' && isIP(attrs.publicIP) ? 'is not an IPv4 address (the underlay of the overlay is IPv4)' : 'is not an IPv4 address';
    throw new InvalidValueError('publicIP', attrs.publicIP, rule);
  }
  if (typeof attrs.backendType !== 'string' || attrs.backendType === '')
    throw new InvalidValueError('backendType', attrs.backendType, 'is required (like "vxlan")');
  if (attrs.backendType !== 'vxlan') return attrs;
  const vni = attrs.backendData.VNI;
  if (typeof vni !== 'number' || !Number.isInteger(vni) || vni < 1 || vni > MAX_VNI)
    throw new InvalidValueError('backendData.VNI', vni, `is out of range (must be 1..${MAX_VNI})`);
  return { ...attrs, backendData: { ...attrs.backendData, VtepMAC: parseMac(attrs.backendData.VtepMAC as string, 'backendData.VtepMAC') } };
}
