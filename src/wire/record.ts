/** One packet read from a capture file: where it is, when it was seen, and a view of its bytes. */
export class CaptureRecord {
  constructor(
    /** 0-based position among the packets of the file. */
    readonly index: number,
    /** Byte offset in the file of the record header (pcap) or block (pcapng). */
    readonly fileOffset: number,
    /** Capture time: seconds since the Unix epoch, and nanoseconds within that second. */
    readonly sec: number,
    readonly nsec: number,
    readonly capturedLength: number,
    /** Length of the packet on the wire; more than capturedLength when the capture cut it at its snap length. */
    readonly originalLength: number,
    readonly linkType: number,
    /** pcapng interface number (0 for pcap). */
    readonly interfaceId: number,
    /** The chunk of the file holding the packet: the bytes are buf[offset, offset + capturedLength). */
    readonly buf: Buffer,
    readonly offset: number,
  ) {}

  get end(): number {
    return this.offset + this.capturedLength;
  }

  /** The packet bytes: a view into the chunk read from the file, not a copy. */
  get data(): Buffer {
    return this.buf.subarray(this.offset, this.offset + this.capturedLength);
  }

  /** The capture holds the whole packet. */
  get complete(): boolean {
    return this.capturedLength >= this.originalLength;
  }
}

/** A format reader fed a growing window of the file by the chunk driver (capture.ts). */
export interface FormatReader {
  /**
   * Read whole records from buf[pos, end) into `out`; return the position after the last whole one. `base` is the
   * file offset of buf[0]. Throws PcapError on a bad header, record or block.
   */
  parse(buf: Buffer, pos: number, end: number, base: number, out: CaptureRecord[]): number;
  /** Why the bytes left at the end of the file, buf[pos, end), are not a whole record (for the error). */
  describeIncomplete(buf: Buffer, pos: number, end: number): string;
  /**
   * How many bytes the next piece (file header or record) starting at buf[pos] needs in all, as far as the bytes
   * in buf[pos, end) tell (at least a header's worth when they do not yet hold one); undefined when the reader
   * cannot say or the piece is broken (parse() then reports it). Lets a stream reader complete a record cut by a
   * chunk boundary from the next chunk without copying that whole chunk.
   */
  pieceLength?(buf: Buffer, pos: number, end: number): number | undefined;
}

/** Records larger than this are not packets but a corrupt length field (libpcap allows 256 KiB; jumbo/USB captures go higher). */
export const MAX_RECORD_LENGTH = 16 * 1024 * 1024;
