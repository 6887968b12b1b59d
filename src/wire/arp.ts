/**
 * ARP (RFC 826). tulle builds and reads the Ethernet/IPv4 form (hardware type 1, protocol 0x0800, lengths 6
 * and 4) — what pods and VTEPs send; other forms decode to their fixed fields only.
 */
import { bytesToMac, macToBytes } from '../base/ip.js';
import { formatIPv4, parseIPv4, readIPv4, writeIPv4 } from './address.js';
import { WireError, needBytes } from './errors.js';
import { ETHERTYPE_IPV4 } from './ethernet.js';
import { checkInt } from './validate.js';

export const ARP_REQUEST = 1;
export const ARP_REPLY = 2;
export const ARP_ETHERNET_IPV4_LENGTH = 28;

export interface ArpHeader {
  /** 1 = request, 2 = reply (others exist: RARP 3/4, InARP 8/9). */
  op: number;
  senderMac: string;
  senderIp: string;
  targetMac: string;
  targetIp: string;
}

export class ArpView {
  readonly hardwareType: number;
  readonly protocolType: number;
  readonly hardwareLength: number;
  readonly protocolLength: number;
  readonly op: number;

  constructor(
    readonly buf: Buffer,
    readonly offset: number,
    readonly end: number,
  ) {
    needBytes('arp', offset, end, 8, 'an ARP header');
    this.hardwareType = (buf[offset]! << 8) | buf[offset + 1]!;
    this.protocolType = (buf[offset + 2]! << 8) | buf[offset + 3]!;
    this.hardwareLength = buf[offset + 4]!;
    this.protocolLength = buf[offset + 5]!;
    this.op = (buf[offset + 6]! << 8) | buf[offset + 7]!;
    needBytes('arp', offset, end, 8 + 2 * (this.hardwareLength + this.protocolLength), 'the ARP addresses');
  }

  /** True for the Ethernet/IPv4 form whose addresses the getters below read. */
  get isEthernetIPv4(): boolean {
    return this.hardwareType === 1 && this.protocolType === ETHERTYPE_IPV4 && this.hardwareLength === 6 && this.protocolLength === 4;
  }

  private requireEthernetIPv4(): void {
    if (!this.isEthernetIPv4) {
      throw new WireError(
        'TLE_WIRE_UNSUPPORTED',
        'arp',
        this.offset,
        `hardware type ${this.hardwareType}/protocol 0x${this.protocolType.toString(16)} is not Ethernet/IPv4`,
      );
    }
  }

  get senderMac(): string {
    this.requireEthernetIPv4();
    return bytesToMac(this.buf, this.offset + 8);
  }
  get senderIpNumber(): number {
    this.requireEthernetIPv4();
    return readIPv4(this.buf, this.offset + 14);
  }
  get senderIp(): string {
    return formatIPv4(this.senderIpNumber);
  }
  get targetMac(): string {
    this.requireEthernetIPv4();
    return bytesToMac(this.buf, this.offset + 18);
  }
  get targetIpNumber(): number {
    this.requireEthernetIPv4();
    return readIPv4(this.buf, this.offset + 24);
  }
  get targetIp(): string {
    return formatIPv4(this.targetIpNumber);
  }

  header(): ArpHeader {
    return { op: this.op, senderMac: this.senderMac, senderIp: this.senderIp, targetMac: this.targetMac, targetIp: this.targetIp };
  }
}

export function decodeArp(buf: Buffer, offset = 0, end = buf.length): ArpView {
  return new ArpView(buf, offset, end);
}

/** The 28-byte Ethernet/IPv4 ARP packet (the Ethernet payload). */
export function buildArp(h: ArpHeader): Buffer {
  const out = Buffer.alloc(ARP_ETHERNET_IPV4_LENGTH);
  out.writeUInt16BE(1, 0);
  out.writeUInt16BE(ETHERTYPE_IPV4, 2);
  out[4] = 6;
  out[5] = 4;
  out.writeUInt16BE(checkInt('op', h.op, 0, 0xffff), 6);
  macToBytes(h.senderMac).copy(out, 8);
  writeIPv4(out, 14, parseIPv4(h.senderIp, 'senderIp'));
  macToBytes(h.targetMac).copy(out, 18);
  writeIPv4(out, 24, parseIPv4(h.targetIp, 'targetIp'));
  return out;
}
