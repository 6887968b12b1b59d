/**
 * Cross-checking tulle's decoder against Wireshark's: run `tshark` on a capture, read the fields that matter
 * for an overlay (addresses, ports, VNI, checksum validity, ICMP echo, ARP), and turn `tulle decode --json`
 * objects into the same field lists, so the two can be compared frame by frame, field by field. Used by the
 * tests and the decode benchmark only, so it lives with the test helpers rather than in the codec.
 */
import { run } from '../../src/base/exec.js';
import { VXLAN_PORT_IANA } from '../../src/wire/vxlan.js';

/** tshark field names compared; each holds its occurrences from the outer frame inwards. */
export const COMPARED_FIELDS = [
  'eth.src',
  'eth.dst',
  'vlan.id',
  'ip.src',
  'ip.dst',
  'ip.checksum.status',
  'ipv6.src',
  'ipv6.dst',
  'udp.srcport',
  'udp.dstport',
  'udp.checksum.status',
  'vxlan.flags',
  'vxlan.vni',
  'vxlan.gbp',
  'icmp.type',
  'icmp.ident',
  'icmp.seq',
  'icmp.checksum.status',
  'icmpv6.type',
  'icmpv6.echo.identifier',
  'icmpv6.echo.sequence_number',
  'icmpv6.checksum.status',
  'arp.opcode',
  'arp.src.proto_ipv4',
  'arp.dst.proto_ipv4',
] as const;

export type FrameFields = Record<(typeof COMPARED_FIELDS)[number], string[]>;

/** tshark's checksum status numbers (PROTO_CHECKSUM_E_*) for tulle's words. */
const STATUS_NUMBER: Record<string, string> = { bad: '0', good: '1', unverified: '2', none: '3' };

/** Numbers compare as numbers: tshark prints some in hex (0x0007), tulle as JSON numbers. */
function normalise(value: string): string {
  return /^(0x[0-9a-f]+|\d+)$/i.test(value) ? String(Number(value)) : value;
}

/**
 * The tshark command line: checksums verified (off by default in Wireshark), names not resolved, each non-IANA
 * VXLAN port decoded as VXLAN (Wireshark knows only 4789).
 */
export function tsharkArgs(file: string, vxlanPorts: Iterable<number>, fields: readonly string[] = COMPARED_FIELDS): string[] {
  const args = ['tshark', '-r', file, '-n', '-o', 'ip.check_checksum:TRUE', '-o', 'udp.check_checksum:TRUE'];
  for (const p of new Set(vxlanPorts)) if (p !== VXLAN_PORT_IANA) args.push('-d', `udp.port==${p},vxlan`);
  args.push('-T', 'fields', '-E', 'separator=/t', '-E', 'occurrence=a', '-E', 'aggregator=,', '-E', 'quote=n');
  for (const f of fields) args.push('-e', f);
  return args;
}

/** Run tshark on `file` and return, per frame, the compared fields. */
export async function tsharkFields(file: string, vxlanPorts: Iterable<number>): Promise<FrameFields[]> {
  const { stdout } = await run(tsharkArgs(file, vxlanPorts), { timeoutMs: 120_000 });
  return stdout
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => {
      const cols = line.split('\t');
      const out = {} as FrameFields;
      COMPARED_FIELDS.forEach((f, i) => {
        const v = cols[i] ?? '';
        out[f] = v === '' ? [] : v.split(',').map(normalise);
      });
      return out;
    });
}

/** `tshark --version`'s first line, e.g. "TShark (Wireshark) 4.0.17 (...)". */
export async function tsharkVersion(): Promise<string> {
  const { stdout } = await run(['tshark', '--version']);
  return stdout.split('\n')[0]!.trim();
}

type Json = Record<string, any>;

/** The compared fields of one `tulle decode --json` object. */
export function jsonFields(frame: Json): FrameFields {
  const out = Object.fromEntries(COMPARED_FIELDS.map((f) => [f, [] as string[]])) as FrameFields;
  const add = (f: keyof FrameFields, v: unknown): void => {
    out[f].push(normalise(String(v)));
  };
  for (let level: Json | undefined = frame; level; level = level.inner) {
    if (level.eth) {
      add('eth.src', level.eth.src);
      add('eth.dst', level.eth.dst);
      for (const tag of level.eth.vlans ?? []) add('vlan.id', tag.vid);
    }
    if (level.arp && level.arp.senderIp !== undefined) {
      add('arp.opcode', level.arp.op);
      add('arp.src.proto_ipv4', level.arp.senderIp);
      add('arp.dst.proto_ipv4', level.arp.targetIp);
    }
    if (level.ip?.version === 4) {
      add('ip.src', level.ip.src);
      add('ip.dst', level.ip.dst);
      add('ip.checksum.status', STATUS_NUMBER[level.ip.checksumStatus]);
    } else if (level.ip?.version === 6) {
      add('ipv6.src', level.ip.src);
      add('ipv6.dst', level.ip.dst);
    }
    if (level.udp) {
      add('udp.srcport', level.udp.srcPort);
      add('udp.dstport', level.udp.dstPort);
      add('udp.checksum.status', STATUS_NUMBER[level.udp.checksumStatus]);
    }
    if (level.vxlan) {
      // tshark's flags are the first 16 bits: I/G in the high byte, GBP's D (0x40) and A (0x08) in the low one.
      const gbp = level.vxlan.gbp;
      add('vxlan.flags', (level.vxlan.flags << 8) | (gbp ? (gbp.dontLearn ? 0x40 : 0) | (gbp.policyApplied ? 0x08 : 0) : 0));
      add('vxlan.vni', level.vxlan.vni);
      // tshark always shows bytes 2-3 as the group policy ID; without G they are reserved (zero).
      add('vxlan.gbp', gbp ? gbp.policyId : 0);
    }
    if (level.icmp) {
      add('icmp.type', level.icmp.type);
      if (level.icmp.id !== undefined) {
        add('icmp.ident', level.icmp.id);
        add('icmp.seq', level.icmp.seq);
      }
      add('icmp.checksum.status', STATUS_NUMBER[level.icmp.checksumStatus]);
    }
    if (level.icmpv6) {
      add('icmpv6.type', level.icmpv6.type);
      if (level.icmpv6.id !== undefined) {
        add('icmpv6.echo.identifier', level.icmpv6.id);
        add('icmpv6.echo.sequence_number', level.icmpv6.seq);
      }
      add('icmpv6.checksum.status', STATUS_NUMBER[level.icmpv6.checksumStatus]);
    }
  }
  return out;
}

/** Differences between tshark's and tulle's fields for one frame, as readable lines (empty when they agree). */
export function compareFields(frameNumber: number, tshark: FrameFields, tulle: FrameFields): string[] {
  const diffs: string[] = [];
  for (const f of COMPARED_FIELDS) {
    const a = tshark[f].join(',');
    const b = tulle[f].join(',');
    if (a !== b) diffs.push(`frame ${frameNumber} ${f}: tshark ${a || '(none)'} / tulle ${b || '(none)'}`);
  }
  return diffs;
}
