/**
 * Ethernet II frames, with any number of 802.1Q / 802.1ad VLAN tags between the source MAC and the EtherType.
 * The view reads the frame in place; MAC text is made only when asked for.
 */
import { InvalidValueError } from '../base/errors.js';
import { bytesToMac, macToBytes } from '../base/ip.js';
import { WireError, needBytes } from './errors.js';
import { checkBytes, checkInt } from './validate.js';

export const ETHERTYPE_IPV4 = 0x0800;
export const ETHERTYPE_ARP = 0x0806;
export const ETHERTYPE_VLAN = 0x8100;
export const ETHERTYPE_QINQ = 0x88a8;
export const ETHERTYPE_IPV6 = 0x86dd;
export const ETHERNET_HEADER_LENGTH = 14;

/** Values below this in the type position are an 802.3 length, not an EtherType. */
const MIN_ETHERTYPE = 0x0600;
/** More tags than this is not a real frame; the bound keeps a hostile frame from costing more than it should. */
const MAX_VLAN_TAGS = 8;

export interface VlanTag {
  /** Tag protocol identifier: 0x8100 (802.1Q) or 0x88a8 (802.1ad outer tag). */
  tpid: number;
  /** Priority code point, 0..7. */
  pcp: number;
  /** Drop eligible indicator. */
  dei: boolean;
  /** VLAN identifier, 0..4095. */
  vid: number;
}

export interface EthernetHeader {
  dst: string;
  src: string;
  /** Outermost first. Omitted or empty for an untagged frame. */
  vlans?: VlanTag[];
  /** EtherType of the payload (after the tags), or an 802.3 length below 0x0600. */
  etherType: number;
}

export class EthernetView {
  /** Number of VLAN tags. */
  readonly vlanCount: number;
  readonly etherType: number;
  readonly payloadOffset: number;

  constructor(
    readonly buf: Buffer,
    readonly offset: number,
    readonly end: number,
  ) {
    needBytes('ethernet', offset, end, ETHERNET_HEADER_LENGTH, 'an Ethernet header');
    let typeOffset = offset + 12;
    let type = (buf[typeOffset]! << 8) | buf[typeOffset + 1]!;
    let tags = 0;
    while (type === ETHERTYPE_VLAN || type === ETHERTYPE_QINQ) {
      if (++tags > MAX_VLAN_TAGS) throw new WireError('TLE_WIRE_MALFORMED', 'ethernet', typeOffset, `more than ${MAX_VLAN_TAGS} VLAN tags`);
      needBytes('ethernet', typeOffset, end, 6, 'a VLAN tag and the EtherType after it');
      typeOffset += 4;
      type = (buf[typeOffset]! << 8) | buf[typeOffset + 1]!;
    }
    this.vlanCount = tags;
    this.etherType = type;
    this.payloadOffset = typeOffset + 2;
  }

  get dst(): string {
    return bytesToMac(this.buf, this.offset);
  }

  get src(): string {
    return bytesToMac(this.buf, this.offset + 6);
  }

  /** True when the type field holds an 802.3 length rather than an EtherType. */
  get isLengthField(): boolean {
    return this.etherType < MIN_ETHERTYPE;
  }

  vlan(index: number): VlanTag {
    const o = this.offset + 12 + index * 4;
    const tci = (this.buf[o + 2]! << 8) | this.buf[o + 3]!;
    return { tpid: (this.buf[o]! << 8) | this.buf[o + 1]!, pcp: tci >>> 13, dei: (tci & 0x1000) !== 0, vid: tci & 0x0fff };
  }

  get vlans(): VlanTag[] {
    const out: VlanTag[] = [];
    for (let i = 0; i < this.vlanCount; i++) out.push(this.vlan(i));
    return out;
  }

  get payload(): Buffer {
    return this.buf.subarray(this.payloadOffset, this.end);
  }

  header(): EthernetHeader {
    const h: EthernetHeader = { dst: this.dst, src: this.src, etherType: this.etherType };
    if (this.vlanCount) h.vlans = this.vlans;
    return h;
  }
}

export function decodeEthernet(buf: Buffer, offset = 0, end = buf.length): EthernetView {
  return new EthernetView(buf, offset, end);
}

export function ethernetHeaderLength(h: Pick<EthernetHeader, 'vlans'>): number {
  return ETHERNET_HEADER_LENGTH + 4 * (h.vlans?.length ?? 0);
}

/** Write the Ethernet header at `offset`; returns the offset of the payload. */
export function writeEthernet(out: Buffer, offset: number, h: EthernetHeader): number {
  macToBytes(h.dst).copy(out, offset);
  macToBytes(h.src).copy(out, offset + 6);
  let o = offset + 12;
  for (const [i, tag] of (h.vlans ?? []).entries()) {
    const tpid = checkInt(`vlans[${i}].tpid`, tag.tpid, 0, 0xffff);
    if (tpid !== ETHERTYPE_VLAN && tpid !== ETHERTYPE_QINQ)
      throw new InvalidValueError(`vlans[${i}].tpid`, tpid, 'must be 0x8100 (802.1Q) or 0x88a8 (802.1ad)');
    const tci = (checkInt(`vlans[${i}].pcp`, tag.pcp, 0, 7) << 13) | (tag.dei ? 0x1000 : 0) | checkInt(`vlans[${i}].vid`, tag.vid, 0, 4095);
    out.writeUInt16BE(tpid, o);
    out.writeUInt16BE(tci, o + 2);
    o += 4;
  }
  const type = checkInt('etherType', h.etherType, 0, 0xffff);
  if (type === ETHERTYPE_VLAN || type === ETHERTYPE_QINQ) throw new InvalidValueError('etherType', type, 'is a VLAN tag type; put the tag in vlans');
  out.writeUInt16BE(type, o);
  return o + 2;
}

/** An Ethernet frame: header + payload. No padding to 60 bytes is added (the NIC does that, and captures show frames without it). */
export function buildEthernet(h: EthernetHeader, payload: Uint8Array): Buffer {
  checkBytes('payload', payload);
  const hl = ethernetHeaderLength(h);
  const out = Buffer.allocUnsafe(hl + payload.length);
  writeEthernet(out, 0, h);
  out.set(payload, hl);
  return out;
}
