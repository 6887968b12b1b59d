/**
 * The 8-byte VXLAN header (RFC 7348) and its Group Based Policy extension (draft-smith-vxlan-group-policy):
 *
 *    0                   1                   2                   3
 *   |G|R|R|R|I|R|R|R|R|D|R|R|A|R|R|R|        Group Policy ID        |
 *   |            VXLAN Network Identifier (VNI)     |   Reserved    |
 *
 * I (0x08 in the first byte) says the VNI is valid and must be set; without GBP, every bit but I is reserved
 * (sent as zero, ignored on receipt). With G set, D (don't learn), A (policy applied) and the 16-bit group
 * policy ID are meaningful — the kernel's `ip link add ... type vxlan ... gbp`.
 */
import { needBytes } from './errors.js';
import { checkInt } from './validate.js';

export const VXLAN_HEADER_LENGTH = 8;
/** IANA's port (RFC 7348), Calico's default. */
export const VXLAN_PORT_IANA = 4789;
/** The Linux kernel's historical default, which flannel uses. */
export const VXLAN_PORT_LINUX = 8472;
export const VXLAN_FLAG_I = 0x08;
export const VXLAN_FLAG_G = 0x80;
const GBP_DONT_LEARN = 0x40;
const GBP_POLICY_APPLIED = 0x08;

export interface GroupPolicy {
  policyId: number;
  dontLearn: boolean;
  policyApplied: boolean;
}

export interface VxlanHeader {
  vni: number;
  /** Group Based Policy extension; omitted when the G flag is clear. */
  gbp?: GroupPolicy;
}

export class VxlanView {
  constructor(
    readonly buf: Buffer,
    readonly offset: number,
    readonly end: number,
  ) {
    needBytes('vxlan', offset, end, VXLAN_HEADER_LENGTH, 'a VXLAN header');
  }

  /** The first byte: I = 0x08, G = 0x80. */
  get flags(): number {
    return this.buf[this.offset]!;
  }
  /** The VNI is valid (a receiver drops the packet otherwise). */
  get iFlag(): boolean {
    return (this.flags & VXLAN_FLAG_I) !== 0;
  }
  get gFlag(): boolean {
    return (this.flags & VXLAN_FLAG_G) !== 0;
  }
  get vni(): number {
    const o = this.offset + 4;
    return (this.buf[o]! << 16) | (this.buf[o + 1]! << 8) | this.buf[o + 2]!;
  }
  get policyId(): number {
    return (this.buf[this.offset + 2]! << 8) | this.buf[this.offset + 3]!;
  }
  get dontLearn(): boolean {
    return (this.buf[this.offset + 1]! & GBP_DONT_LEARN) !== 0;
  }
  get policyApplied(): boolean {
    return (this.buf[this.offset + 1]! & GBP_POLICY_APPLIED) !== 0;
  }
  /** Bits RFC 7348 (plus GBP when G is set) reserves are not all zero: a sender that does not follow it, or another extension. */
  get reservedBitsSet(): boolean {
    const b = this.buf;
    const o = this.offset;
    if (this.gFlag) return (b[o]! & 0x77) !== 0 || (b[o + 1]! & ~(GBP_DONT_LEARN | GBP_POLICY_APPLIED) & 0xff) !== 0 || b[o + 7] !== 0;
    return (b[o]! & ~VXLAN_FLAG_I & 0xff) !== 0 || b[o + 1] !== 0 || b[o + 2] !== 0 || b[o + 3] !== 0 || b[o + 7] !== 0;
  }
  /** Offset of the inner Ethernet frame. */
  get payloadOffset(): number {
    return this.offset + VXLAN_HEADER_LENGTH;
  }
  get payload(): Buffer {
    return this.buf.subarray(this.payloadOffset, this.end);
  }

  header(): VxlanHeader {
    const h: VxlanHeader = { vni: this.vni };
    if (this.gFlag) h.gbp = { policyId: this.policyId, dontLearn: this.dontLearn, policyApplied: this.policyApplied };
    return h;
  }
}

export function decodeVxlan(buf: Buffer, offset = 0, end = buf.length): VxlanView {
  return new VxlanView(buf, offset, end);
}

/** Write the 8 header bytes at `offset` (I set, reserved bits zero); returns the inner frame's offset. */
export function writeVxlan(out: Buffer, offset: number, h: VxlanHeader): number {
  const vni = checkInt('vni', h.vni, 0, 0xffffff);
  out[offset] = VXLAN_FLAG_I | (h.gbp ? VXLAN_FLAG_G : 0);
  out[offset + 1] = h.gbp ? (h.gbp.dontLearn ? GBP_DONT_LEARN : 0) | (h.gbp.policyApplied ? GBP_POLICY_APPLIED : 0) : 0;
  out.writeUInt16BE(h.gbp ? checkInt('gbp.policyId', h.gbp.policyId, 0, 0xffff) : 0, offset + 2);
  out[offset + 4] = vni >>> 16;
  out[offset + 5] = (vni >>> 8) & 255;
  out[offset + 6] = vni & 255;
  out[offset + 7] = 0;
  return offset + VXLAN_HEADER_LENGTH;
}

export function buildVxlan(h: VxlanHeader, inner: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(VXLAN_HEADER_LENGTH + inner.length);
  writeVxlan(out, 0, h);
  out.set(inner, VXLAN_HEADER_LENGTH);
  return out;
}
