/**
 * `tulle decode FILE`: read a pcap/pcapng capture and show each frame the way seed 003 walks through it —
 * outer MACs, IPs and ports, the VXLAN flags and VNI, the inner frame — then a summary. `--json` prints one JSON
 * object per frame instead (JSON Lines). A broken file is decoded up to the bad spot, then one line on stderr
 * names the file offset and the reason, and the exit code is 1.
 */
import { UsageError, describeError } from '../../base/errors.js';
import { DEFAULT_VXLAN_PORTS } from '../../wire/encap.js';
import { PcapError } from '../../wire/errors.js';
import { readCaptureBatches } from '../../wire/capture.js';
import { DecodeSummary, describeFrame, frameToJson, type FrameMeta } from '../../wire/describe.js';
import { dissect, type Dissection } from '../../wire/dissect.js';
import type { CommandSpec } from '../spec.js';

/** Collects output lines and writes them in large pieces, waiting when stdout is slower than decoding. */
class LineWriter {
  private lines: string[] = [];
  /** Set when output cannot go on: the reader went away (EPIPE, e.g. `| head`: not an error) or writing failed. */
  closed = false;
  /** A write error other than EPIPE (disk full, ...), reported like any other failure. */
  failure: Error | undefined = undefined;

  constructor(private readonly stream: NodeJS.WritableStream) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      this.closed = true;
      if (err.code !== 'EPIPE') this.failure = err;
    });
  }

  line(text: string): void {
    this.lines.push(text);
  }

  async flush(): Promise<void> {
    if (this.lines.length === 0 || this.closed) return;
    const text = this.lines.join('\n') + '\n';
    this.lines = [];
    if (!this.stream.write(text)) await new Promise<void>((resolve) => {
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

/** Does this frame, at any VXLAN level, carry `vni`? */
function carriesVni(d: Dissection, vni: number): boolean {
  for (let x: Dissection | undefined = d; x; x = x.inner) if (x.vxlan?.vni === vni) return true;
  return false;
}

export const decodeCommand: CommandSpec = {
  name: 'tulle decode',
  summary: 'Decode a pcap/pcapng capture: outer and inner Ethernet/IP, UDP, VXLAN flags and VNI, ICMP; then a summary',
  details: [
    'VXLAN is recognised on UDP destination ports 4789 and 8472, and on every --port. FILE "-" reads standard input',
    '(e.g. tcpdump -U -w - | tulle decode -). Frames that cannot be read are shown as far as they go and counted as',
    'malformed; a broken file is decoded up to the bad spot, then one line on stderr names its offset and the reason',
    '(exit code 1). Times are UTC.',
  ].join('\n'),
  // Checked in run(): the shared parser validates required positionals before it sees --help.
  positionals: [{ name: 'file', description: 'capture file (pcap or pcapng), or - for standard input' }],
  options: {
    json: { type: 'boolean', description: 'JSON Lines: one object per frame, no summary' },
    port: { type: 'integer', description: 'also decode this UDP destination port as VXLAN', valueName: 'N', min: 1, max: 65535, multiple: true },
    vni: { type: 'integer', description: 'show only frames carrying this VNI', valueName: 'N', min: 0, max: 0xffffff },
  },
  examples: ['tulle decode underlay.pcap', 'tulle decode --json --port 9000 capture.pcapng | jq .inner.ip.src', 'tulle decode --vni 42 vxlan.pcap'],

  async run({ options, positionals }) {
    const file = positionals.file as string | undefined;
    if (file === undefined) throw new UsageError("tulle decode: missing FILE (see 'tulle decode --help')");
    const ports = new Set([...DEFAULT_VXLAN_PORTS, ...((options.port as number[] | undefined) ?? [])]);
    const vni = options.vni as number | undefined;
    const json = options.json === true;
    const out = new LineWriter(process.stdout);
    const summary = new DecodeSummary();
    let failure: unknown;
    try {
      const source = file === '-' ? process.stdin : file;
      batches: for await (const batch of readCaptureBatches(source)) {
        for (const r of batch) {
          const d = dissect(r.buf, r.offset, r.end, { vxlanPorts: ports, linkType: r.linkType, complete: r.complete });
          if (vni !== undefined && !carriesVni(d, vni)) continue;
          summary.add(d);
          const meta: FrameMeta = { number: r.index + 1, sec: r.sec, nsec: r.nsec, capturedLength: r.capturedLength, originalLength: r.originalLength };
          out.line(json ? JSON.stringify(frameToJson(d, meta)) : describeFrame(d, meta));
        }
        await out.flush();
        if (out.closed) break batches;
      }
    } catch (err) {
      failure = err;
    }
    // A file that could not be opened or is not a capture at all gets its one error line and no empty summary.
    if (!json && (failure === undefined || summary.frames > 0)) {
      out.line('');
      out.line(summary.format());
    }
    await out.flush();
    failure ??= out.failure;
    if (failure !== undefined) {
      // PcapError names an offset but not the file; other errors (cannot open) already name it.
      const where = failure instanceof PcapError ? `${file === '-' ? 'stdin' : file}: ` : '';
      process.stderr.write(`tulle decode: ${where}${describeError(failure)}\n`);
      return 1;
    }
    return 0;
  },
};
