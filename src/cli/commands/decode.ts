/**
 * `tulle decode FILE`: read a pcap/pcapng capture and show each frame the way seed 003 walks through it —
 * outer MACs, IPs and ports, the VXLAN flags and VNI, the inner frame — then a summary. `--json` prints one JSON
 * object per frame instead (JSON Lines); `--count` only the summary. --vni, --host, --inner-host and --proto
 * choose frames before anything is formatted. A broken file is decoded up to the bad spot, then one line on
 * stderr names the file offset and the reason, and the exit code is 1.
 */
import type { Writable } from 'node:stream';
import { InvalidValueError, UsageError, describeError } from '../../base/errors.js';
import { DEFAULT_VXLAN_PORTS } from '../../wire/encap.js';
import { PcapError } from '../../wire/errors.js';
import { readCaptureBatches } from '../../wire/capture.js';
import { DecodeSummary } from '../../wire/describe.js';
import { dissect } from '../../wire/dissect.js';
import { FILTER_PROTOCOLS, frameFilter } from '../../wire/filter.js';
import { ByteSink, writeFrameJson, writeFrameText, type FrameMeta } from '../../wire/format.js';
import { defineCommand } from '../spec.js';

/**
 * Output is written in pieces of about this size: a pipe holds 64 KiB, so a writer that hands it that much at a
 * time keeps it full without copying through Node's stream buffers; files and /dev/null take it in one call.
 */
const WRITE_SIZE = 64 * 1024;

/** Writes buffers to a stream, waiting when the stream asks to (a slow reader), noticing when the reader went away. */
class Output {
  /** Set when output cannot go on: the reader went away (EPIPE, e.g. `| head`: not an error) or writing failed. */
  closed = false;
  /** A write error other than EPIPE (disk full, ...), reported like any other failure. */
  failure: Error | undefined = undefined;
  private full = false;

  constructor(private readonly stream: Writable) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      this.closed = true;
      if (err.code !== 'EPIPE') this.failure = err;
    });
  }

  /**
   * Hand `bytes` to the stream. True when the stream is done with them on return (stdout to a file, pipe or
   * terminal is written synchronously on Linux), so the caller may write over them; false when it keeps them.
   */
  write(bytes: Buffer): boolean {
    if (bytes.length === 0 || this.closed) return true;
    if (!this.stream.write(bytes)) this.full = true;
    return this.stream.writableLength === 0;
  }

  /** Write what `sink` holds; reuse its buffer when the stream is done with it (no new memory per write). */
  flush(sink: ByteSink): void {
    if (this.write(sink.view())) sink.reset();
    else sink.take();
  }

  /** Resolves once the stream has taken what it was given (at once, unless it said it was full). */
  async drained(): Promise<void> {
    if (!this.full || this.closed) return;
    this.full = false;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        this.stream.off('drain', done);
        this.stream.off('close', done);
        resolve();
      };
      this.stream.once('drain', done);
      this.stream.once('close', done);
    });
  }
}

export const decodeCommand = defineCommand({
  name: 'tulle decode',
  summary: 'Decode a pcap/pcapng capture: outer and inner Ethernet/IP, UDP, VXLAN flags and VNI, ICMP; then a summary',
  details: [
    'VXLAN is recognised on UDP destination ports 4789 and 8472, and on every --port. FILE "-" reads standard input',
    '(e.g. tcpdump -U -w - | tulle decode -). Frames that cannot be read are shown as far as they go and counted as',
    'malformed; a broken file is decoded up to the bad spot, then one line on stderr names its offset and the reason',
    '(exit code 1). Times are UTC.',
    '',
    'Filters choose frames before they are printed or counted; all that are given must hold. --host is an outer',
    '(underlay) IP source or destination, --inner-host one of the frame inside VXLAN, --proto what the innermost',
    'frame carries (the UDP that carries VXLAN does not count); ARP frames match by sender and target address.',
  ].join('\n'),
  // Checked in run(): the shared parser validates required positionals before it sees --help.
  positionals: [{ name: 'file', description: 'capture file (pcap or pcapng), or - for standard input' }],
  options: {
    json: { type: 'boolean', description: 'JSON Lines: one object per frame, no summary (with --count: the summary as one object)' },
    count: { type: 'boolean', description: 'print only the summary (what a filter matched), no frames' },
    port: { type: 'integer', description: 'also decode this UDP destination port as VXLAN', valueName: 'N', min: 1, max: 65535, multiple: true },
    vni: { type: 'integer', description: 'show only frames carrying this VNI', valueName: 'N', min: 0, max: 0xffffff },
    host: { type: 'string', description: 'show only frames whose outer IP source or destination is IP', valueName: 'IP' },
    'inner-host': { type: 'string', description: 'show only frames whose inner (VXLAN-carried) IP source or destination is IP', valueName: 'IP' },
    proto: { type: 'string', description: 'show only frames whose innermost frame carries this protocol', valueName: 'PROTO', choices: FILTER_PROTOCOLS },
  },
  examples: [
    'tulle decode underlay.pcap',
    'tulle decode --json --port 9000 capture.pcapng | jq .inner.ip.src',
    'tulle decode --vni 42 vxlan.pcap',
    'tulle decode --count --inner-host 10.244.1.2 --proto icmp big.pcap',
  ],

  async run({ options, positionals }) {
    const { file } = positionals;
    if (file === undefined) throw new UsageError("tulle decode: missing FILE (see 'tulle decode --help')");
    const vxlanPorts = new Set([...DEFAULT_VXLAN_PORTS, ...(options.port ?? [])]);
    let filter: ReturnType<typeof frameFilter>;
    try {
      filter = frameFilter({
        vni: options.vni,
        host: options.host,
        innerHost: options['inner-host'],
        proto: options.proto,
      });
    } catch (err) {
      // A bad filter value is a usage error like any other bad option: same prefix, exit code 2.
      if (err instanceof InvalidValueError) throw new UsageError(`tulle decode: ${err.message}`);
      throw err;
    }
    const json = options.json === true;
    const count = options.count === true;
    const write = json ? writeFrameJson : writeFrameText;
    const out = new Output(process.stdout);
    const sink = new ByteSink(WRITE_SIZE + 16 * 1024);
    const summary = new DecodeSummary();
    // One object for every frame's capture data: the printers read it at once and keep nothing.
    const meta: FrameMeta = { number: 0, sec: 0, nsec: 0, capturedLength: 0, originalLength: 0 };
    const dissectOptions = { vxlanPorts, linkType: 1, complete: true };
    let failure: unknown;
    try {
      const source = file === '-' ? process.stdin : file;
      for await (const batch of readCaptureBatches(source)) {
        for (const r of batch) {
          dissectOptions.linkType = r.linkType;
          dissectOptions.complete = r.capturedLength >= r.originalLength;
          const d = dissect(r.buf, r.offset, r.offset + r.capturedLength, dissectOptions);
          if (filter !== undefined && !filter(d)) continue;
          summary.add(d);
          if (count) continue;
          meta.number = r.index + 1;
          meta.sec = r.sec;
          meta.nsec = r.nsec;
          meta.capturedLength = r.capturedLength;
          meta.originalLength = r.originalLength;
          write(sink, d, meta);
          sink.byte(0x0a);
          if (sink.pos >= WRITE_SIZE) out.flush(sink);
        }
        // What a read brought is shown before the next read: a live capture on stdin (tcpdump -U -w - | tulle
        // decode -) prints each frame as it comes, while a file, read 1 MiB at a time, still writes large pieces.
        out.flush(sink);
        await out.drained();
        if (out.closed) break;
      }
    } catch (err) {
      failure = err;
    }
    out.flush(sink);
    // A file that could not be opened or is not a capture at all gets its one error line and no empty summary.
    if (failure === undefined || summary.frames > 0) {
      if (count) out.write(Buffer.from(`${json ? JSON.stringify(summary.toJSON()) : summary.format()}\n`));
      else if (!json) out.write(Buffer.from(`\n${summary.format()}\n`));
    }
    await out.drained();
    failure ??= out.failure;
    if (failure !== undefined) {
      // PcapError names an offset but not the file; other errors (cannot open) already name it.
      const where = failure instanceof PcapError ? `${file === '-' ? 'stdin' : file}: ` : '';
      process.stderr.write(`tulle decode: ${where}${describeError(failure)}\n`);
      return 1;
    }
    return 0;
  },
});
