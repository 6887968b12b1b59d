/**
 * Errors of the wire codec and the capture readers. Both name where the problem is (a byte offset) and why, so
 * that `tulle decode` can print one line a person can act on, and tests can assert the stable `code`.
 */
import { TulleError } from '../base/errors.js';

/** Why a frame could not be decoded. */
export type WireErrorCode =
  /** A header does not fit in the bytes that are there. */
  | 'TLE_WIRE_TRUNCATED'
  /** A field holds a value the protocol does not allow (IPv4 IHL < 5, a length shorter than its header, ...). */
  | 'TLE_WIRE_MALFORMED'
  /** Well-formed, but not something this operation handles (e.g. decapsulate() on a frame that is not VXLAN). */
  | 'TLE_WIRE_UNSUPPORTED';

/** A frame that cannot be decoded: names the layer, the byte offset inside the frame and the reason. */
export class WireError extends TulleError {
  readonly layer: string;
  /** Byte offset, from the start of the buffer handed to the decoder, of the field that is wrong. */
  readonly offset: number;
  readonly reason: string;

  constructor(code: WireErrorCode, layer: string, offset: number, reason: string) {
    super(code, `${layer} at offset ${offset}: ${reason}`);
    this.layer = layer;
    this.offset = offset;
    this.reason = reason;
  }
}

/** Why a capture file could not be read (further). */
export type PcapErrorCode =
  /** The first bytes are neither a pcap nor a pcapng magic number. */
  | 'TLE_PCAP_BAD_MAGIC'
  /** The file ends inside a header, a record or a block. */
  | 'TLE_PCAP_TRUNCATED'
  /** A length field is impossible: smaller than its header, not a multiple of 4, larger than any sane record. */
  | 'TLE_PCAP_BAD_LENGTH'
  /** A block or header is inconsistent (trailing length differs, packet before any interface, ...). */
  | 'TLE_PCAP_MALFORMED'
  /** Valid, but a version or feature tulle does not read. */
  | 'TLE_PCAP_UNSUPPORTED';

/** A capture file that cannot be read on: names the byte offset in the file and the reason. */
export class PcapError extends TulleError {
  /** Byte offset in the file of the header, record or block that is wrong. */
  readonly offset: number;
  readonly reason: string;

  constructor(code: PcapErrorCode, offset: number, reason: string) {
    super(code, `offset ${offset}: ${reason}`);
    this.offset = offset;
    this.reason = reason;
  }
}

/** Throw TLE_WIRE_TRUNCATED unless `need` bytes are there from `offset` (before `end`). */
export function needBytes(layer: string, offset: number, end: number, need: number, what: string): void {
  if (offset + need > end) {
    throw new WireError('TLE_WIRE_TRUNCATED', layer, offset, `${what} needs ${need} bytes but only ${Math.max(0, end - offset)} are left`);
  }
}
