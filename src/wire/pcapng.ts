/**
 * pcapng (draft-ietf-opsawg-pcapng), what tshark and dumpcap write by default: blocks of
 * [type][total length][body][total length]. Read here: Section Header (byte order, version), Interface
 * Description (link type, snap length, timestamp resolution and offset), Enhanced Packet, Simple Packet and the
 * obsolete Packet block; other blocks are skipped by their length. Every length is checked before it is used,
 * so a zero or short length is an error, never a loop.
 */
import { PcapError } from './errors.js';
import { CaptureRecord, MAX_RECORD_LENGTH, type FormatReader } from './record.js';

export const PCAPNG_SHB = 0x0a0d0d0a;
const IDB = 1;
const PB = 2;
const SPB = 3;
const EPB = 6;
const BYTE_ORDER_MAGIC = 0x1a2b3c4d;
const OPT_END = 0;
const IF_TSRESOL = 9;
const IF_TSOFFSET = 14;
/** Smallest block: type, length, trailing length. */
const MIN_BLOCK = 12;
const MAX_BLOCK = MAX_RECORD_LENGTH + 4096;

interface Interface {
  linkType: number;
  snaplen: number;
  /** Timestamp units per second (10^6 unless if_tsresol says otherwise). */
  ticksPerSecond: number;
  /** if_tsoffset: seconds added to every timestamp. */
  offsetSeconds: number;
}

export function isPcapngMagic(buf: Uint8Array, offset = 0): boolean {
  return buf.length - offset >= 4 && buf[offset] === 0x0a && buf[offset + 1] === 0x0d && buf[offset + 2] === 0x0d && buf[offset + 3] === 0x0a;
}

export class PcapngReader implements FormatReader {
  private le = true;
  private interfaces: Interface[] = [];
  private sections = 0;
  private count = 0;

  private u16(buf: Buffer, o: number): number {
    return this.le ? buf.readUInt16LE(o) : buf.readUInt16BE(o);
  }
  private u32(buf: Buffer, o: number): number {
    return this.le ? buf.readUInt32LE(o) : buf.readUInt32BE(o);
  }

  parse(buf: Buffer, pos: number, end: number, base: number, out: CaptureRecord[]): number {
    while (end - pos >= 8) {
      let type = this.u32(buf, pos);
      if (buf.readUInt32LE(pos) === PCAPNG_SHB) {
        // A Section Header's byte-order magic decides how to read its own length and everything after it.
        if (end - pos < 12) break;
        const bom = buf.readUInt32LE(pos + 8);
        if (bom === BYTE_ORDER_MAGIC) this.le = true;
        else if (buf.readUInt32BE(pos + 8) === BYTE_ORDER_MAGIC) this.le = false;
        else
          throw new PcapError(
            'TLE_PCAP_MALFORMED',
            base + pos + 8,
            `section header byte-order magic 0x${buf
              .readUInt32BE(pos + 8)
              .toString(16)
              .padStart(8, '0')} is not 0x1a2b3c4d in either byte order`,
          );
        type = PCAPNG_SHB;
      } else if (this.sections === 0) {
        throw new PcapError('TLE_PCAP_MALFORMED', base + pos, `block type 0x${type.toString(16)} comes before any section header block`);
      }
      const length = this.u32(buf, pos + 4);
      if (length < MIN_BLOCK || length % 4 !== 0 || length > MAX_BLOCK) {
        throw new PcapError(
          'TLE_PCAP_BAD_LENGTH',
          base + pos + 4,
          `block length ${length} is impossible (must be a multiple of 4, ${MIN_BLOCK}..${MAX_BLOCK})`,
        );
      }
      if (end - pos < length) break;
      const trailer = this.u32(buf, pos + length - 4);
      if (trailer !== length)
        throw new PcapError('TLE_PCAP_MALFORMED', base + pos + length - 4, `block trailing length ${trailer} differs from its leading length ${length}`);
      this.block(type, buf, pos, length, base, out);
      pos += length;
    }
    return pos;
  }

  private needBody(type: string, pos: number, length: number, need: number, base: number): void {
    if (length < need) throw new PcapError('TLE_PCAP_BAD_LENGTH', base + pos + 4, `${type} block length ${length} is shorter than its fixed fields (${need})`);
  }

  private block(type: number, buf: Buffer, pos: number, length: number, base: number, out: CaptureRecord[]): void {
    switch (type) {
      case PCAPNG_SHB: {
        this.needBody('section header', pos, length, 28, base);
        const major = this.u16(buf, pos + 12);
        if (major !== 1) throw new PcapError('TLE_PCAP_UNSUPPORTED', base + pos + 12, `pcapng version ${major}.${this.u16(buf, pos + 14)} is not 1.x`);
        this.sections++;
        this.interfaces = [];
        return;
      }
      case IDB: {
        this.needBody('interface description', pos, length, 20, base);
        const itf: Interface = { linkType: this.u16(buf, pos + 8), snaplen: this.u32(buf, pos + 12), ticksPerSecond: 1e6, offsetSeconds: 0 };
        this.options(buf, pos + 16, pos + length - 4, base, (code, o, len) => {
          if (code === IF_TSRESOL && len >= 1) {
            const v = buf[o]!;
            const exp = v & 0x7f;
            const tps = v & 0x80 ? 2 ** exp : 10 ** exp;
            if (tps > 2 ** 53 || (v & 0x80 ? exp > 53 : exp > 15))
              throw new PcapError('TLE_PCAP_UNSUPPORTED', base + o, `timestamp resolution ${v & 0x80 ? `2^-${exp}` : `10^-${exp}`} is finer than tulle reads`);
            itf.ticksPerSecond = tps;
          } else if (code === IF_TSOFFSET && len >= 8) {
            itf.offsetSeconds = Number(this.le ? buf.readBigInt64LE(o) : buf.readBigInt64BE(o));
          }
        });
        this.interfaces.push(itf);
        return;
      }
      case EPB:
      case PB: {
        this.needBody(type === EPB ? 'enhanced packet' : 'packet', pos, length, 32, base);
        const id = type === EPB ? this.u32(buf, pos + 8) : this.u16(buf, pos + 8);
        const itf = this.interface(id, pos, base);
        const caplen = this.u32(buf, pos + 20);
        const origlen = this.u32(buf, pos + 24);
        if (caplen > length - 32)
          throw new PcapError(
            'TLE_PCAP_BAD_LENGTH',
            base + pos + 20,
            `packet ${this.count} says ${caplen} bytes captured but its block holds only ${length - 32}`,
          );
        const [sec, nsec] = timestamp(this.u32(buf, pos + 12), this.u32(buf, pos + 16), itf);
        out.push(new CaptureRecord(this.count++, base + pos, sec, nsec, caplen, origlen, itf.linkType, id, buf, pos + 28));
        return;
      }
      case SPB: {
        this.needBody('simple packet', pos, length, 16, base);
        const itf = this.interface(0, pos, base);
        const origlen = this.u32(buf, pos + 8);
        let caplen = Math.min(origlen, length - 16);
        if (itf.snaplen > 0) caplen = Math.min(caplen, itf.snaplen);
        out.push(new CaptureRecord(this.count++, base + pos, 0, 0, caplen, origlen, itf.linkType, 0, buf, pos + 12));
        return;
      }
      default:
        return; // name resolution, statistics, decryption secrets, custom blocks: nothing to decode
    }
  }

  private interface(id: number, pos: number, base: number): Interface {
    const itf = this.interfaces[id];
    if (!itf)
      throw new PcapError(
        'TLE_PCAP_MALFORMED',
        base + pos + 8,
        `packet ${this.count} is on interface ${id} but the section describes ${this.interfaces.length}`,
      );
    return itf;
  }

  /** Walk the options in buf[pos, end): code, length, value padded to 4 bytes; stop at opt_endofopt. */
  private options(buf: Buffer, pos: number, end: number, base: number, each: (code: number, offset: number, length: number) => void): void {
    while (end - pos >= 4) {
      const code = this.u16(buf, pos);
      const len = this.u16(buf, pos + 2);
      if (code === OPT_END) return;
      if (pos + 4 + len > end) throw new PcapError('TLE_PCAP_MALFORMED', base + pos + 2, `option ${code} length ${len} runs past the end of its block`);
      each(code, pos + 4, len);
      pos += 4 + ((len + 3) & ~3);
    }
  }

  describeIncomplete(buf: Buffer, pos: number, end: number): string {
    const left = end - pos;
    if (left < 8) return `a block header needs 8 bytes but the file ends after ${left}`;
    return `the block at this offset says it is ${this.u32(buf, pos + 4)} bytes long but the file ends after ${left}`;
  }
}

/** 64-bit timestamp in the interface's units to [seconds, nanoseconds]. */
function timestamp(high: number, low: number, itf: Interface): [number, number] {
  const tps = itf.ticksPerSecond;
  if (high < 0x200000) {
    const ticks = high * 0x100000000 + low;
    const sec = Math.floor(ticks / tps);
    return [sec + itf.offsetSeconds, Math.floor(((ticks - sec * tps) * 1e9) / tps)];
  }
  // Beyond 2^53 ticks (nanosecond clocks): exact integer arithmetic.
  const ticks = (BigInt(high) << 32n) | BigInt(low);
  const t = BigInt(tps);
  return [Number(ticks / t) + itf.offsetSeconds, Number(((ticks % t) * 1_000_000_000n) / t)];
}
