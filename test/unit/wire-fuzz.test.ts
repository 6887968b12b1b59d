// Random and mutated bytes never crash or hang the decoder, the printers or the capture readers: a frame gives a
// dissection (with a WireError when broken), a file gives records and at most one PcapError.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  CaptureParser,
  LINKTYPE_ETHERNET,
  LINKTYPE_LINUX_SLL,
  LINKTYPE_LINUX_SLL2,
  LINKTYPE_RAW,
  PcapError,
  WireError,
  decapsulate,
  describeFrame,
  dissect,
  encapsulate,
  encodePcap,
  flowSourcePort,
  frameToJson,
  icmpEchoFrame,
  arpFrame,
  udpFrame,
} from '../../src/wire/index.js';

const TIMEOUT = { timeout: 120_000 };
const linkType = fc.constantFrom(LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2, 228, 229, 9999);

/** Dissect and print: the whole path `tulle decode` takes for one frame. */
function decodeAndPrint(buf: Buffer, options: { linkType: number; complete: boolean; ports: ReadonlySet<number> }): void {
  const d = dissect(buf, 0, buf.length, { linkType: options.linkType, complete: options.complete, vxlanPorts: options.ports });
  for (let x: typeof d | undefined = d; x; x = x.inner) if (x.error) assert.ok(x.error instanceof WireError);
  const meta = { number: 1, sec: 0, nsec: 0, capturedLength: buf.length, originalLength: buf.length + (options.complete ? 0 : 10) };
  assert.equal(typeof describeFrame(d, meta), 'string');
  JSON.parse(JSON.stringify(frameToJson(d, meta)));
  flowSourcePort(buf);
}

test('random bytes: dissect, describe and JSON never throw, on every link type', TIMEOUT, () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 600 }), linkType, fc.boolean(), (bytes, lt, complete) => {
      decodeAndPrint(Buffer.from(bytes), { linkType: lt, complete, ports: new Set([4789, 8472]) });
    }),
    { numRuns: 3000 },
  );
});

const samples = [
  encapsulate(icmpEchoFrame({ srcMac: '02:00:00:00:00:01', dstMac: '02:00:00:00:00:02', srcIp: '10.244.0.3', dstIp: '10.244.1.3', id: 1, seq: 2 }), {
    srcMac: '02:00:00:00:01:01',
    dstMac: '02:00:00:00:01:02',
    srcIp: '192.0.2.1',
    dstIp: '192.0.2.2',
    vni: 1,
  }),
  encapsulate(icmpEchoFrame({ srcMac: '02:00:00:00:00:01', dstMac: '02:00:00:00:00:02', srcIp: 'fd00::3', dstIp: 'fd00::4', id: 1, seq: 2 }), {
    srcMac: '02:00:00:00:01:01',
    dstMac: '02:00:00:00:01:02',
    srcIp: '2001:db8::1',
    dstIp: '2001:db8::2',
    vni: 7,
    dstPort: 4789,
    gbp: { policyId: 5, dontLearn: false, policyApplied: true },
    vlans: [{ tpid: 0x8100, pcp: 1, dei: false, vid: 10 }],
  }),
  // VXLAN in VXLAN, and an ARP frame inside.
  encapsulate(
    encapsulate(arpFrame({ op: 1, senderMac: '02:00:00:00:00:01', senderIp: '10.244.0.0', targetMac: '00:00:00:00:00:00', targetIp: '10.244.1.0' }), {
      srcMac: '02:00:00:00:01:01',
      dstMac: '02:00:00:00:01:02',
      srcIp: '192.0.2.1',
      dstIp: '192.0.2.2',
      vni: 2,
    }),
    { srcMac: '02:00:00:00:02:01', dstMac: '02:00:00:00:02:02', srcIp: '198.51.100.1', dstIp: '198.51.100.2', vni: 3, udpChecksum: true },
  ),
  udpFrame({
    srcMac: '02:00:00:00:00:01',
    dstMac: '02:00:00:00:00:02',
    srcIp: '10.0.0.1',
    dstIp: '10.0.0.2',
    srcPort: 1,
    dstPort: 2,
    payload: Buffer.alloc(30),
  }),
];

test('mutated and truncated real frames: every layer meets broken fields, nothing throws', TIMEOUT, () => {
  const mutation = fc.record({
    sample: fc.integer({ min: 0, max: samples.length - 1 }),
    flips: fc.array(fc.record({ at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }), { minLength: 1, maxLength: 6 }),
    cut: fc.option(fc.nat(), { nil: undefined }),
    complete: fc.boolean(),
  });
  fc.assert(
    fc.property(mutation, ({ sample, flips, cut, complete }) => {
      const buf = Buffer.from(samples[sample]!);
      for (const f of flips) buf[f.at % buf.length] = f.value;
      const frame = cut === undefined ? buf : buf.subarray(0, cut % (buf.length + 1));
      decodeAndPrint(frame, { linkType: LINKTYPE_ETHERNET, complete, ports: new Set([4789, 8472]) });
      try {
        decapsulate(frame);
      } catch (err) {
        assert.ok(err instanceof WireError, String(err));
      }
    }),
    { numRuns: 3000 },
  );
});

/** Read a whole file through the chunked parser; only PcapError may end it. */
function readFuzzed(file: Buffer, chunk: number): number {
  const parser = new CaptureParser();
  const out: { length: number }[] = [];
  try {
    for (let o = 0; o < file.length; o += chunk) parser.push(file.subarray(o, o + chunk), out as never);
    parser.end();
  } catch (err) {
    assert.ok(err instanceof PcapError, String(err));
    assert.ok(Number.isInteger(err.offset) && err.offset >= 0 && err.offset <= file.length, `offset ${err.offset} within the file`);
  }
  return out.length;
}

test('random and mutated capture files: records, then at most one PcapError with an offset inside the file', TIMEOUT, () => {
  const pcapMagic = Buffer.from([0xd4, 0xc3, 0xb2, 0xa1]);
  const pcapngMagic = Buffer.from([0x0a, 0x0d, 0x0d, 0x0a]);
  fc.assert(
    fc.property(
      fc.constantFrom(pcapMagic, pcapngMagic, Buffer.alloc(0)),
      fc.uint8Array({ maxLength: 400 }),
      fc.integer({ min: 1, max: 97 }),
      (magic, rest, chunk) => {
        readFuzzed(Buffer.concat([magic, rest]), chunk);
      },
    ),
    { numRuns: 3000 },
  );
  const valid = encodePcap(samples.map((data, i) => ({ data, time: { sec: i, nsec: 0 } })));
  const pcapng = Buffer.from(
    '0a0d0d0a1c0000004d3c2b1a01000000ffffffffffffffff1c000000' + // SHB
      '01000000140000000100000000000400' +
      '14000000' + // IDB: Ethernet, snaplen 262144
      '060000002c0000000000000000000000000000000a0000000a000000' +
      '0102030405060708090a0000' +
      '2c000000', // EPB, 10 bytes
    'hex',
  );
  fc.assert(
    fc.property(
      fc.constantFrom(valid, pcapng),
      fc.array(fc.record({ at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }), { maxLength: 8 }),
      fc.integer({ min: 1, max: 300 }),
      (file, flips, chunk) => {
        const buf = Buffer.from(file);
        for (const f of flips) buf[f.at % buf.length] = f.value;
        readFuzzed(buf, chunk);
      },
    ),
    { numRuns: 3000 },
  );
  assert.equal(readFuzzed(pcapng, 5), 1, 'the unmutated pcapng sample is valid');
});
