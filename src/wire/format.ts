/**
 * The printers of `tulle decode`, writing bytes instead of building strings: the same tcpdump-like text and the
 * same JSON Lines as describeFrame / JSON.stringify(frameToJson(...)) (describe.ts), byte for byte, at a fraction
 * of the cost. A million frames of output made from template strings spends most of its time creating, joining
 * and encoding short-lived strings; here MACs are written straight from the frame's bytes through a hex table,
 * IPv4 addresses through a table of the 256 octets, 16-bit numbers from a table of their digits, the clock text
 * once per second and the constant JSON between values in prepared pieces, into one buffer that the caller writes
 * out in large pieces and reuses.
 */
import { ARP_REPLY, ARP_REQUEST } from './arp.js';
import type { ChecksumStatus } from './checksum.js';
import type { Dissection } from './dissect.js';
import { ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_QINQ, ETHERTYPE_VLAN } from './ethernet.js';
import type { IcmpView } from './icmp.js';
import { IPPROTO_TCP } from './ipv4.js';

const HEX = '0123456789abcdef';
const HEX_CODES = Uint8Array.from(HEX, (c) => c.charCodeAt(0));
/** "0".."255" as character codes, for dotted IPv4 text. */
const OCTETS: Uint8Array[] = Array.from({ length: 256 }, (_, i) => Uint8Array.from(String(i), (c) => c.charCodeAt(0)));

/** The decimal digits of 0..65535 (five bytes each, left-aligned) and their lengths: most numbers in a frame are 16-bit. */
const SMALL_LIMIT = 65536;
const SMALL_DIGITS = new Uint8Array(SMALL_LIMIT * 5);
const SMALL_LENGTHS = new Uint8Array(SMALL_LIMIT);
for (let n = 0; n < SMALL_LIMIT; n++) {
  const t = String(n);
  SMALL_LENGTHS[n] = t.length;
  for (let i = 0; i < t.length; i++) SMALL_DIGITS[n * 5 + i] = t.charCodeAt(i);
}

const SPACE = 0x20;
const ZERO = 0x30;
const QUOTE = 0x22;

/** A buffer that grows as it is written; `take()` hands over what was written and starts afresh. */
export class ByteSink {
  buf: Buffer;
  pos = 0;

  constructor(private readonly initialSize = 1 << 17) {
    this.buf = Buffer.allocUnsafe(initialSize);
  }

  /** Room for `n` more bytes. */
  room(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(bigger, 0, 0, this.pos);
    this.buf = bigger;
  }

  /** The bytes written so far, still in the sink's buffer: valid until the next write or reset(). */
  view(): Buffer {
    return this.buf.subarray(0, this.pos);
  }

  /** Forget what was written and write over it (once whoever got view() is done with it). */
  reset(): void {
    this.pos = 0;
  }

  /** The bytes written so far, as a buffer of their own; the sink is empty afterwards. */
  take(): Buffer {
    const out = this.buf.subarray(0, this.pos);
    this.buf = Buffer.allocUnsafe(Math.max(this.initialSize, this.pos));
    this.pos = 0;
    return out;
  }

  /** Text: copied code by code when it is ASCII (nearly always), else encoded as UTF-8. */
  text(s: string): void {
    const n = s.length;
    this.room(n);
    const b = this.buf;
    let p = this.pos;
    for (let i = 0; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x80) {
        this.room(3 * n);
        this.pos += this.buf.write(s, this.pos, 'utf8');
        return;
      }
      b[p++] = c;
    }
    this.pos = p;
  }

  byte(c: number): void {
    this.room(1);
    this.buf[this.pos++] = c;
  }

  /** A non-negative integer in decimal, at least `width` characters, padded on the left with `pad`. */
  uint(n: number, width = 0, pad = SPACE): void {
    if (n < SMALL_LIMIT && width === 0 && n >>> 0 === n) {
      // Ports, lengths, ids, checksums: from the table.
      const len = SMALL_LENGTHS[n]!;
      this.room(len);
      const b = this.buf;
      const p = this.pos;
      const at = n * 5;
      for (let i = 0; i < len; i++) b[p + i] = SMALL_DIGITS[at + i]!;
      this.pos = p + len;
      return;
    }
    if (n >>> 0 !== n) {
      this.text(String(n).padStart(width, String.fromCharCode(pad)));
      return;
    }
    const digits =
      n < 10
        ? 1
        : n < 100
          ? 2
          : n < 1000
            ? 3
            : n < 10000
              ? 4
              : n < 100000
                ? 5
                : n < 1000000
                  ? 6
                  : n < 10000000
                    ? 7
                    : n < 100000000
                      ? 8
                      : n < 1000000000
                        ? 9
                        : 10;
    const len = digits > width ? digits : width;
    this.room(len);
    const b = this.buf;
    const start = this.pos;
    let p = start + len;
    let x = n;
    for (let i = 0; i < digits; i++) {
      const q = (x / 10) >>> 0;
      b[--p] = ZERO + x - q * 10;
      x = q;
    }
    while (p > start) b[--p] = pad;
    this.pos = start + len;
  }

  /** Bytes prepared in advance (the constant parts of the output). */
  raw(src: Uint8Array): void {
    const n = src.length;
    this.room(n);
    // Past a few bytes the typed-array copy beats a loop; below, the call costs more than it saves.
    if (n > 8) this.buf.set(src, this.pos);
    else for (let i = 0, b = this.buf, p = this.pos; i < n; i++) b[p + i] = src[i]!;
    this.pos += n;
  }

  /** `0x` and `n` in lower-case hex, at least `digits` digits (as `0x${n.toString(16).padStart(digits, '0')}`). */
  hex(n: number, digits: number): void {
    let len = 1;
    for (let x = n >>> 4; x > 0; x >>>= 4) len++;
    if (len < digits) len = digits;
    this.room(len + 2);
    const b = this.buf;
    b[this.pos] = ZERO;
    b[this.pos + 1] = 0x78;
    let p = this.pos + 2 + len;
    for (let i = 0, x = n; i < len; i++, x >>>= 4) b[--p] = HEX_CODES[x & 15]!;
    this.pos += 2 + len;
  }

  /** The MAC at src[o, o + 6) as aa:bb:cc:dd:ee:ff. */
  mac(src: Uint8Array, o: number): void {
    this.room(17);
    const b = this.buf;
    let p = this.pos;
    for (let i = 0; i < 6; i++) {
      const x = src[o + i]!;
      if (i) b[p++] = 0x3a;
      b[p++] = HEX_CODES[x >>> 4]!;
      b[p++] = HEX_CODES[x & 15]!;
    }
    this.pos = p;
  }

  /** The IPv4 address at src[o, o + 4), dotted. */
  ipv4(src: Uint8Array, o: number): void {
    this.room(15);
    const b = this.buf;
    let p = this.pos;
    for (let i = 0; i < 4; i++) {
      if (i) b[p++] = 0x2e;
      const t = OCTETS[src[o + i]!]!;
      for (let k = 0; k < t.length; k++) b[p++] = t[k]!;
    }
    this.pos = p;
  }

  /** A string as JSON: quoted as it is when it needs no escapes (addresses, codes), else by JSON.stringify. */
  jsonString(s: string): void {
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c < 0x20 || c === QUOTE || c === 0x5c || c >= 0x7f) {
        this.text(JSON.stringify(s));
        return;
      }
    }
    this.byte(QUOTE);
    this.text(s);
    this.byte(QUOTE);
  }
}

const ETHERTYPE_NAMES: Record<number, string> = {
  [ETHERTYPE_IPV4]: 'IPv4',
  [ETHERTYPE_ARP]: 'ARP',
  [ETHERTYPE_IPV6]: 'IPv6',
  [ETHERTYPE_VLAN]: '802.1Q',
  [ETHERTYPE_QINQ]: '802.1Q-QinQ',
  0x88cc: 'LLDP',
};

export const PROTOCOL_NAMES: Record<number, string> = { 1: 'ICMP', 2: 'IGMP', 6: 'TCP', 17: 'UDP', 47: 'GRE', 50: 'ESP', 58: 'ICMPv6', 132: 'SCTP' };

const ICMP_TYPES: Record<number, string> = {
  0: 'echo reply',
  3: 'destination unreachable',
  5: 'redirect',
  8: 'echo request',
  11: 'time exceeded',
  12: 'parameter problem',
};
const ICMPV6_TYPES: Record<number, string> = {
  1: 'destination unreachable',
  2: 'packet too big',
  3: 'time exceeded',
  4: 'parameter problem',
  128: 'echo request',
  129: 'echo reply',
  133: 'router solicitation',
  134: 'router advertisement',
  135: 'neighbor solicitation',
  136: 'neighbor advertisement',
};

export function hexText(n: number, digits: number): string {
  return `0x${n.toString(16).padStart(digits, '0')}`;
}

/** `ethertype IPv4 (0x0800)`, made once per EtherType seen. */
const etherTypeTexts = new Map<number, string>();
function etherTypeText(t: number): string {
  let s = etherTypeTexts.get(t);
  if (s === undefined) etherTypeTexts.set(t, (s = `ethertype ${ETHERTYPE_NAMES[t] ?? 'Unknown'} (${hexText(t, 4)})`));
  return s;
}

export function protocolName(p: number): string {
  return PROTOCOL_NAMES[p] ?? `ip-proto-${p}`;
}

/** The name of an EtherType for the summary, or its number. */
export function etherTypeName(t: number): string {
  return ETHERTYPE_NAMES[t] ?? `ethertype ${hexText(t, 4)}`;
}

// -------------------------------------------------------------------------------------------------------------
// Capture times: the date and clock text of a second, made once per second (frames mostly share theirs).

let cachedSec = NaN;
let cachedIso = '';

/** `YYYY-MM-DDTHH:MM:SS` of a Unix second; seconds outside the range of dates print as `@<seconds>`. */
export function secondText(sec: number): string {
  if (sec !== cachedSec) {
    cachedSec = sec;
    const ms = sec * 1000;
    cachedIso = Number.isFinite(ms) && Math.abs(ms) <= 8.64e15 ? new Date(ms).toISOString().slice(0, 19) : `@${sec}`;
  }
  return cachedIso;
}

function clockText(sec: number): string {
  const iso = secondText(sec);
  return iso.startsWith('@') ? iso : iso.slice(11);
}

// -------------------------------------------------------------------------------------------------------------
// Text

/** Where and when a frame was captured (what the capture record adds to the bytes). */
export interface FrameMeta {
  /** 1-based, as tcpdump -# and tshark number frames. */
  number: number;
  sec: number;
  nsec: number;
  capturedLength: number;
  originalLength: number;
}

const INDENT = '         ';

/** One frame (and, for VXLAN, its inner frame on the next, indented line), tcpdump style; no newline at the end. */
export function writeFrameText(out: ByteSink, d: Dissection, meta: FrameMeta): void {
  out.uint(meta.number, 5);
  out.text('  ');
  out.text(clockText(meta.sec));
  out.byte(0x2e);
  out.uint(Math.floor(meta.nsec / 1000), 6, ZERO);
  out.byte(SPACE);
  writeLayersText(out, d, meta.originalLength, INDENT);
  if (meta.capturedLength < meta.originalLength) {
    out.text(' [captured ');
    out.uint(meta.capturedLength);
    out.text(' of ');
    out.uint(meta.originalLength);
    out.text(' bytes]');
  }
}

function checksumNote(out: ByteSink, what: string, status: ChecksumStatus, value: number): void {
  if (status !== 'bad') return;
  out.text(' [bad ');
  out.text(what);
  out.text(' cksum ');
  out.hex(value, 4);
  out.byte(0x5d);
}

function errorNote(out: ByteSink, d: Dissection): void {
  if (!d.error) return;
  out.text(' [malformed: ');
  out.text(d.error.message);
  out.byte(0x5d);
}

function writeIpText(out: ByteSink, d: Dissection, which: 'src' | 'dst'): void {
  if (d.ipv4) out.ipv4(d.buf, d.ipv4.offset + (which === 'src' ? 12 : 16));
  else out.text(which === 'src' ? d.ipv6!.src : d.ipv6!.dst);
}

function icmpText(out: ByteSink, icmp: IcmpView, length: number): void {
  const v4 = icmp.version === 4;
  out.text(v4 ? 'ICMP ' : 'ICMP6, ');
  const name = (v4 ? ICMP_TYPES : ICMPV6_TYPES)[icmp.type];
  if (name !== undefined) out.text(name);
  else {
    out.text('type ');
    out.uint(icmp.type);
  }
  if (icmp.isEcho) {
    out.text(', id ');
    out.uint(icmp.id);
    out.text(', seq ');
    out.uint(icmp.seq);
  } else if (icmp.code) {
    out.text(', code ');
    out.uint(icmp.code);
  }
  out.text(', length ');
  out.uint(length);
}

function writeLayersText(out: ByteSink, d: Dissection, wireLength: number, indent: string): void {
  const eth = d.eth;
  if (eth) {
    out.mac(d.buf, eth.offset + 6);
    out.text(' > ');
    out.mac(d.buf, eth.offset);
    out.text(', ');
    if (eth.vlanCount) {
      out.text(etherTypeText((d.buf[eth.offset + 12]! << 8) | d.buf[eth.offset + 13]!));
      out.text(', length ');
      out.uint(wireLength);
      out.text(': ');
      for (let i = 0; i < eth.vlanCount; i++) {
        const tag = eth.vlan(i);
        out.text('vlan ');
        out.uint(tag.vid);
        out.text(', p ');
        out.uint(tag.pcp);
        out.text(tag.dei ? ', DEI, ' : ', ');
      }
      out.text(etherTypeText(eth.etherType));
      out.text(', ');
    } else if (eth.isLengthField) {
      out.text('802.3, length ');
      out.uint(wireLength);
      out.text(': LLC, length ');
      out.uint(eth.etherType);
    } else {
      out.text(etherTypeText(eth.etherType));
      out.text(', length ');
      out.uint(wireLength);
      out.text(': ');
    }
  }
  const arp = d.arp;
  if (arp) {
    const length = arp.end - arp.offset;
    const b = d.buf;
    if (!arp.isEthernetIPv4) {
      out.text('ARP, hardware type ');
      out.uint(arp.hardwareType);
      out.text(', op ');
      out.uint(arp.op);
    } else if (arp.op === ARP_REQUEST) {
      out.text('ARP, Request who-has ');
      out.ipv4(b, arp.offset + 24);
      out.text(' tell ');
      out.ipv4(b, arp.offset + 14);
      out.text(', length ');
      out.uint(length);
    } else if (arp.op === ARP_REPLY) {
      out.text('ARP, Reply ');
      out.ipv4(b, arp.offset + 14);
      out.text(' is-at ');
      out.mac(b, arp.offset + 8);
      out.text(', length ');
      out.uint(length);
    } else {
      out.text('ARP, op ');
      out.uint(arp.op);
      out.byte(SPACE);
      out.ipv4(b, arp.offset + 14);
      out.text(' (');
      out.mac(b, arp.offset + 8);
      out.text(') > ');
      out.ipv4(b, arp.offset + 24);
      out.text(', length ');
      out.uint(length);
    }
  }
  const ip = d.ip;
  if (ip) {
    const v4 = d.ipv4;
    const ipBad = v4 !== undefined && !v4.checksumValid;
    if (ip.isFragment) {
      writeIpText(out, d, 'src');
      out.text(' > ');
      writeIpText(out, d, 'dst');
      out.text(': ');
      out.text(protocolName(ip.protocol));
      out.text(' fragment');
      if (v4) {
        out.text(' (frag id ');
        out.uint(v4.id);
        out.text(', offset ');
        out.uint(v4.fragmentOffset * 8);
        out.text(v4.moreFragments ? ', more)' : ')');
      } else out.text(' (fragment)');
      if (ipBad) checksumNote(out, 'ip', 'bad', v4.checksum);
    } else if (d.udp) {
      const udp = d.udp;
      writeIpText(out, d, 'src');
      out.byte(0x2e);
      out.uint(udp.srcPort);
      out.text(' > ');
      writeIpText(out, d, 'dst');
      out.byte(0x2e);
      out.uint(udp.dstPort);
      out.text(': ');
      const udpStatus = udp.checksumStatus(ip);
      const vx = d.vxlan;
      if (vx) {
        const flags = vx.flags;
        const g = (flags & 0x80) !== 0;
        const i = (flags & 0x08) !== 0;
        out.text(g ? 'VXLAN-GBP, flags [' : 'VXLAN, flags [');
        out.text(g ? (i ? 'G,I' : 'G') : i ? 'I' : '');
        out.text('] (');
        out.hex(flags, 2);
        out.text('),');
        if (g) {
          out.text(' policy ');
          out.uint(vx.policyId);
          out.byte(0x2c);
        }
        out.text(' vni ');
        out.uint(vx.vni);
        if (ipBad) checksumNote(out, 'ip', 'bad', v4.checksum);
        checksumNote(out, 'udp', udpStatus, udp.checksum);
        if (d.inner) {
          out.byte(0x0a);
          out.text(indent);
          writeLayersText(out, d.inner, d.inner.end - d.inner.offset, indent + '    ');
        }
        errorNote(out, d);
        return;
      }
      out.text('UDP, length ');
      out.uint(udp.length - 8);
      if (ipBad) checksumNote(out, 'ip', 'bad', v4.checksum);
      checksumNote(out, 'udp', udpStatus, udp.checksum);
    } else if (d.icmp) {
      writeIpText(out, d, 'src');
      out.text(' > ');
      writeIpText(out, d, 'dst');
      out.text(': ');
      icmpText(out, d.icmp, d.icmp.length);
      if (ipBad) checksumNote(out, 'ip', 'bad', v4.checksum);
      checksumNote(out, 'icmp', d.icmp.checksumStatus(d.ipv6), d.icmp.checksum);
    } else if (ip.protocol === IPPROTO_TCP && ip.payloadEnd - ip.payloadOffset >= 4) {
      const b = d.buf;
      const o = ip.payloadOffset;
      writeIpText(out, d, 'src');
      out.byte(0x2e);
      out.uint((b[o]! << 8) | b[o + 1]!);
      out.text(' > ');
      writeIpText(out, d, 'dst');
      out.byte(0x2e);
      out.uint((b[o + 2]! << 8) | b[o + 3]!);
      out.text(': TCP, length ');
      out.uint(ip.payloadEnd - o);
      if (ipBad) checksumNote(out, 'ip', 'bad', v4.checksum);
    } else {
      writeIpText(out, d, 'src');
      out.text(' > ');
      writeIpText(out, d, 'dst');
      out.text(': ');
      out.text(protocolName(ip.protocol));
      out.text(', length ');
      out.uint(ip.payloadEnd - ip.payloadOffset);
      if (ipBad) checksumNote(out, 'ip', 'bad', v4.checksum);
    }
  }
  errorNote(out, d);
}

// -------------------------------------------------------------------------------------------------------------
// JSON Lines: the fields and key order of frameToJson (describe.ts). The constant text between two values is one
// piece (quotes, commas, keys and booleans together), so a frame takes few copies.

/** Text as bytes, once. */
function ascii(s: string): Uint8Array {
  return Uint8Array.from(s, (c) => c.charCodeAt(0));
}

/**
 * A piece of JSON that depends only on a few header bits (`key` < size), made the first time those bits are seen
 * and reused after: in a capture, TTLs, flags, ports and types repeat, so one lookup replaces several writes.
 */
function pieces(size: number, make: (key: number) => string): (key: number) => Uint8Array {
  const table = new Array<Uint8Array | undefined>(size).fill(undefined);
  return (key) => table[key] ?? (table[key] = ascii(make(key)));
}

/** `","protocol":P,"ttl":T,"id":` by protocol << 8 | ttl. */
const J_IP4_PROTOCOL_TTL = pieces(1 << 16, (k) => `","protocol":${k >>> 8},"ttl":${k & 255},"id":`);
/** `,"tos":X,"length":` by the TOS byte. */
const J_IP4_TOS = pieces(1 << 8, (k) => `,"tos":${k},"length":`);
/** `,"df":..,"mf":..,"fragmentOffset":F,"checksum":` by header bytes 6-7. */
const J_IP4_FRAGMENT = pieces(1 << 16, (k) => `,"df":${(k & 0x4000) !== 0},"mf":${(k & 0x2000) !== 0},"fragmentOffset":${k & 0x1fff},"checksum":`);
/** `","type":T}` by EtherType (untagged frames). */
const J_ETH_TYPE_END = pieces(1 << 16, (k) => `","type":${k}}`);
/** `,"dstPort":D,"length":` by destination port. */
const J_UDP_DST_PORT = pieces(1 << 16, (k) => `,"dstPort":${k},"length":`);
/** `"type":T,"code":C` by type << 8 | code. */
const J_ICMP_TYPE_CODE = pieces(1 << 16, (k) => `"type":${k >>> 8},"code":${k & 255}`);

const J_FRAME = ascii('{"frame":');
const J_TIME = ascii(',"time":"');
const J_LENGTH = ascii('Z","length":');
const J_CAPTURED = ascii(',"captured":');
const J_ETH = [ascii('"eth":{"src":"'), ascii(',"eth":{"src":"')];
const J_ETH_DST = ascii('","dst":"');
const J_ETH_TYPE = ascii('","type":');
const J_VLANS = ascii(',"vlans":[');
const J_TPID = ascii('{"tpid":');
const J_PCP = ascii(',"pcp":');
const J_DEI = [ascii(',"dei":false,"vid":'), ascii(',"dei":true,"vid":')];
const J_ARP = [ascii('"arp":{"op":'), ascii(',"arp":{"op":')];
const J_ARP_SENDER_MAC = ascii(',"senderMac":"');
const J_ARP_SENDER_IP = ascii('","senderIp":"');
const J_ARP_TARGET_MAC = ascii('","targetMac":"');
const J_ARP_TARGET_IP = ascii('","targetIp":"');
const J_QUOTE_CLOSE = ascii('"}');
const J_ARP_HW = ascii(',"hardwareType":');
const J_ARP_PROTO = ascii(',"protocolType":');
const J_IP4 = [ascii('"ip":{"version":4,"src":"'), ascii(',"ip":{"version":4,"src":"')];
const J_IP6 = [ascii('"ip":{"version":6,"src":'), ascii(',"ip":{"version":6,"src":')];
const J_IP4_DST = ascii('","dst":"');
const J_IP6_DST = ascii(',"dst":');
const J_IP6_PROTOCOL = ascii(',"protocol":');
const J_ID = ascii(',"id":');
const J_IP_LENGTH = ascii(',"length":');
const J_CHECKSUM = ascii(',"checksum":');
const J_STATUS_GOOD = ascii(',"checksumStatus":"good"}');
const J_STATUS_BAD = ascii(',"checksumStatus":"bad"}');
const J_STATUS: Record<ChecksumStatus, Uint8Array> = {
  good: J_STATUS_GOOD,
  bad: J_STATUS_BAD,
  none: ascii(',"checksumStatus":"none"}'),
  unverified: ascii(',"checksumStatus":"unverified"}'),
};
const J_HOP_LIMIT = ascii(',"hopLimit":');
const J_TRAFFIC_CLASS = ascii(',"trafficClass":');
const J_FLOW_LABEL = ascii(',"flowLabel":');
const J_EXT = ascii(',"extensionHeaders":[');
const J_FRAGMENT = ascii(',"fragment":true');
const J_UDP = [ascii('"udp":{"srcPort":'), ascii(',"udp":{"srcPort":')];
const J_ICMP = [ascii('"icmp":{'), ascii(',"icmp":{')];
const J_ICMPV6 = [ascii('"icmpv6":{'), ascii(',"icmpv6":{')];
const J_SEQ = ascii(',"seq":');
const J_VXLAN = [ascii('"vxlan":{"flags":'), ascii(',"vxlan":{"flags":')];
const J_VNI = ascii(',"vni":');
const J_GBP = ascii(',"gbp":{"policyId":');
const J_DONT_LEARN = [ascii(',"dontLearn":false'), ascii(',"dontLearn":true')];
const J_POLICY_APPLIED = [ascii(',"policyApplied":false}'), ascii(',"policyApplied":true}')];
const J_RESERVED = ascii(',"reservedBitsSet":true');
const J_INNER = [ascii('"inner":{'), ascii(',"inner":{')];
const J_ERROR = [ascii('"error":{"code":'), ascii(',"error":{"code":')];
const J_LAYER = ascii(',"layer":');
const J_OFFSET = ascii(',"offset":');
const J_REASON = ascii(',"reason":');

/** One frame as a JSON object (no newline), the same bytes as JSON.stringify(frameToJson(d, meta)). */
export function writeFrameJson(out: ByteSink, d: Dissection, meta: FrameMeta): void {
  out.raw(J_FRAME);
  out.uint(meta.number);
  out.raw(J_TIME);
  out.text(secondText(meta.sec));
  out.byte(0x2e);
  out.uint(meta.nsec, 9, ZERO);
  out.raw(J_LENGTH);
  out.uint(meta.originalLength);
  out.raw(J_CAPTURED);
  out.uint(meta.capturedLength);
  writeLayersJson(out, d, 1);
  out.byte(0x7d);
}

/**
 * The layers' keys. `comma` is 1 when something precedes them in the object (the first key then takes a comma),
 * 0 when they open it; each piece list holds both forms.
 */
function writeLayersJson(out: ByteSink, d: Dissection, comma: number): void {
  const b = d.buf;
  const eth = d.eth;
  if (eth) {
    out.raw(J_ETH[comma]!);
    comma = 1;
    out.mac(b, eth.offset + 6);
    out.raw(J_ETH_DST);
    out.mac(b, eth.offset);
    if (eth.vlanCount === 0) out.raw(J_ETH_TYPE_END(eth.etherType));
    else {
      out.raw(J_ETH_TYPE);
      out.uint(eth.etherType);
      out.raw(J_VLANS);
      for (let i = 0; i < eth.vlanCount; i++) {
        const tag = eth.vlan(i);
        if (i) out.byte(0x2c);
        out.raw(J_TPID);
        out.uint(tag.tpid);
        out.raw(J_PCP);
        out.uint(tag.pcp);
        out.raw(J_DEI[tag.dei ? 1 : 0]!);
        out.uint(tag.vid);
        out.byte(0x7d);
      }
      out.byte(0x5d);
      out.byte(0x7d);
    }
  }
  const arp = d.arp;
  if (arp) {
    out.raw(J_ARP[comma]!);
    comma = 1;
    out.uint(arp.op);
    if (arp.isEthernetIPv4) {
      out.raw(J_ARP_SENDER_MAC);
      out.mac(b, arp.offset + 8);
      out.raw(J_ARP_SENDER_IP);
      out.ipv4(b, arp.offset + 14);
      out.raw(J_ARP_TARGET_MAC);
      out.mac(b, arp.offset + 18);
      out.raw(J_ARP_TARGET_IP);
      out.ipv4(b, arp.offset + 24);
      out.raw(J_QUOTE_CLOSE);
    } else {
      out.raw(J_ARP_HW);
      out.uint(arp.hardwareType);
      out.raw(J_ARP_PROTO);
      out.uint(arp.protocolType);
      out.byte(0x7d);
    }
  }
  const v4 = d.ipv4;
  if (v4) {
    const o = v4.offset;
    out.raw(J_IP4[comma]!);
    comma = 1;
    out.ipv4(b, o + 12);
    out.raw(J_IP4_DST);
    out.ipv4(b, o + 16);
    out.raw(J_IP4_PROTOCOL_TTL((v4.protocol << 8) | b[o + 8]!));
    out.uint((b[o + 4]! << 8) | b[o + 5]!);
    out.raw(J_IP4_TOS(b[o + 1]!));
    out.uint(v4.totalLength);
    out.raw(J_IP4_FRAGMENT((b[o + 6]! << 8) | b[o + 7]!));
    out.uint((b[o + 10]! << 8) | b[o + 11]!);
    out.raw(v4.checksumValid ? J_STATUS_GOOD : J_STATUS_BAD);
  } else if (d.ipv6) {
    const v6 = d.ipv6;
    out.raw(J_IP6[comma]!);
    comma = 1;
    out.jsonString(v6.src);
    out.raw(J_IP6_DST);
    out.jsonString(v6.dst);
    out.raw(J_IP6_PROTOCOL);
    out.uint(v6.protocol);
    out.raw(J_HOP_LIMIT);
    out.uint(v6.hopLimit);
    out.raw(J_TRAFFIC_CLASS);
    out.uint(v6.trafficClass);
    out.raw(J_FLOW_LABEL);
    out.uint(v6.flowLabel);
    out.raw(J_IP_LENGTH);
    out.uint(v6.payloadLength);
    if (v6.extensionHeaders.length) {
      out.raw(J_EXT);
      v6.extensionHeaders.forEach((h, i) => {
        if (i) out.byte(0x2c);
        out.uint(h);
      });
      out.byte(0x5d);
    }
    if (v6.isFragment) out.raw(J_FRAGMENT);
    out.byte(0x7d);
  }
  const udp = d.udp;
  if (udp) {
    out.raw(J_UDP[comma]!);
    comma = 1;
    out.uint(udp.srcPort);
    out.raw(J_UDP_DST_PORT(udp.dstPort));
    out.uint(udp.length);
    out.raw(J_CHECKSUM);
    out.uint(udp.checksum);
    out.raw(J_STATUS[udp.checksumStatus(d.ip!)]);
  }
  const icmp = d.icmp;
  if (icmp) {
    out.raw((icmp.version === 4 ? J_ICMP : J_ICMPV6)[comma]!);
    comma = 1;
    out.raw(J_ICMP_TYPE_CODE((icmp.type << 8) | icmp.code));
    if (icmp.isEcho) {
      out.raw(J_ID);
      out.uint(icmp.id);
      out.raw(J_SEQ);
      out.uint(icmp.seq);
    }
    out.raw(J_CHECKSUM);
    out.uint(icmp.checksum);
    out.raw(J_STATUS[icmp.checksumStatus(d.ipv6)]);
  }
  const vx = d.vxlan;
  if (vx) {
    out.raw(J_VXLAN[comma]!);
    comma = 1;
    out.uint(vx.flags);
    out.raw(J_VNI);
    out.uint(vx.vni);
    if (vx.gFlag) {
      out.raw(J_GBP);
      out.uint(vx.policyId);
      out.raw(J_DONT_LEARN[vx.dontLearn ? 1 : 0]!);
      out.raw(J_POLICY_APPLIED[vx.policyApplied ? 1 : 0]!);
    }
    if (vx.reservedBitsSet) out.raw(J_RESERVED);
    out.byte(0x7d);
  }
  if (d.inner) {
    out.raw(J_INNER[comma]!);
    comma = 1;
    writeLayersJson(out, d.inner, 0);
    out.byte(0x7d);
  }
  const err = d.error;
  if (err) {
    out.raw(J_ERROR[comma]!);
    out.jsonString(err.code);
    out.raw(J_LAYER);
    out.jsonString(err.layer);
    out.raw(J_OFFSET);
    out.uint(err.offset);
    out.raw(J_REASON);
    out.jsonString(err.reason);
    out.byte(0x7d);
  }
}
