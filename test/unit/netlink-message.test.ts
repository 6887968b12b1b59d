/**
 * Netlink framing without a kernel: messages written by MessageWriter parse back with Attrs, nesting and padding
 * follow the 4-byte rule, error/done messages yield errno and the extended ACK text, and consecutive messages
 * are sent as one view.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Attrs, MessageWriter, joinMessages, parseDone, parseError, type Message } from '../../src/netlink/message.js';
import { NLMSG_ERROR, NLM_F_ACK_TLVS, NLM_F_CAPPED, NLM_F_CREATE, NLM_F_REQUEST, NLMSGERR_ATTR_MSG } from '../../src/netlink/constants.js';

function asMessage(buf: Buffer): Message {
  return { type: buf.readUInt16LE(4), flags: buf.readUInt16LE(6), seq: buf.readUInt32LE(8), pid: buf.readUInt32LE(12), payload: buf.subarray(16) };
}

test('a message has its length, type and request flag in the header, the struct zeroed, then aligned attributes', () => {
  const w = new MessageWriter(24, NLM_F_CREATE, 12);
  w.struct[0] = 2;
  w.u8(5, 7)
    .u32(6, 0xdeadbeef)
    .be16(7, 8472)
    .string(3, 'flannel.1')
    .flag(23)
    .bytes(1, Buffer.from([10, 244, 2, 0]));
  const msg = w.finish();
  assert.equal(msg.readUInt32LE(0), msg.length);
  assert.equal(msg.length % 4, 0);
  assert.equal(msg.readUInt16LE(4), 24);
  assert.equal(msg.readUInt16LE(6), NLM_F_CREATE | NLM_F_REQUEST);
  assert.deepEqual([...msg.subarray(16, 28)], [2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  const a = new Attrs(msg, 28);
  assert.equal(a.u8(5), 7);
  assert.equal(a.u32(6), 0xdeadbeef);
  assert.equal(a.be16(7), 8472);
  assert.equal(a.string(3), 'flannel.1');
  assert.equal(a.has(23), true);
  assert.equal(a.length(23), 0);
  assert.equal(a.address(1), '10.244.2.0');
  assert.equal(a.has(99), false);
  assert.equal(a.u32(99), undefined);
});

test('nested attributes carry the nested flag and the length of everything inside', () => {
  const w = new MessageWriter(16, 0, 16);
  w.string(3, 'vx0');
  const info = w.beginNest(18);
  w.string(1, 'vxlan');
  const data = w.beginNest(2);
  w.u32(1, 4096).be16(15, 4789);
  w.endNest(data);
  w.endNest(info);
  const msg = w.finish();
  const top = new Attrs(msg, 32);
  const linkinfo = top.nested(18)!;
  assert.equal(linkinfo.string(1), 'vxlan');
  const vx = linkinfo.nested(2)!;
  assert.equal(vx.u32(1), 4096);
  assert.equal(vx.be16(15), 4789);
  // The raw type field has NLA_F_NESTED (0x8000) set.
  const at = msg.indexOf(Buffer.from('vx0\0'));
  const nestStart = at + 4; // "vx0\0" is 4 bytes, already aligned
  assert.equal(msg.readUInt16LE(nestStart + 2), 18 | 0x8000);
});

test('a message that outgrows the arena moves whole and stays intact, nests included', () => {
  // Fill most of the 256 KiB arena, then write a message that cannot fit in what is left.
  const earlier = Array.from({ length: 110 }, () => new MessageWriter(16, 0, 16).bytes(1, Buffer.alloc(2000, 7)).finish());
  const w = new MessageWriter(16, 0, 16);
  w.string(3, 'big');
  const nest = w.beginNest(18);
  for (let i = 0; i < 30; i++) w.bytes(i + 1, Buffer.alloc(2000, i));
  w.endNest(nest);
  const msg = w.finish();
  assert.equal(msg.readUInt32LE(0), msg.length);
  const top = new Attrs(msg, 32);
  assert.equal(top.string(3), 'big');
  assert.equal(top.length(18), 30 * 2004);
  const inner = top.nested(18)!;
  for (let i = 0; i < 30; i++) assert.ok(inner.bytes(i + 1)!.every((b) => b === i));
  // Messages written before are untouched.
  assert.ok(earlier.every((m) => new Attrs(m, 32).bytes(1)!.every((b) => b === 7)));
});

test('attributes with any byte content round-trip (property)', () => {
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.integer({ min: 1, max: 200 }), fc.uint8Array({ maxLength: 40 })), { maxLength: 12 }), (attrs) => {
      const w = new MessageWriter(20, 0, 8);
      for (const [type, data] of attrs) w.bytes(type, data);
      const msg = w.finish();
      const a = new Attrs(msg, 24);
      const last = new Map(attrs.map(([t, d]) => [t, d]));
      for (const [type, data] of last) assert.deepEqual([...a.bytes(type)!], [...data]);
    }),
  );
});

test('an ACK is error 0; an error carries -errno and the extended ACK message after the capped request', () => {
  const w = new MessageWriter(NLMSG_ERROR, 0, 4 + 16);
  w.struct.writeInt32LE(-101, 0);
  w.struct.writeUInt32LE(60, 4); // the echoed request's own length: ignored because the ACK is capped
  w.string(NLMSGERR_ATTR_MSG, 'Nexthop has invalid gateway');
  const buf = Buffer.from(w.finish());
  buf.writeUInt16LE(NLM_F_CAPPED | NLM_F_ACK_TLVS, 6);
  assert.deepEqual(parseError(asMessage(buf)), { errno: 101, kernelMessage: 'Nexthop has invalid gateway' });

  const ack = new MessageWriter(NLMSG_ERROR, 0, 4 + 16).finish();
  assert.deepEqual(parseError(asMessage(ack)), { errno: 0, kernelMessage: undefined });
});

test('NLMSG_DONE carries the dump error, if any', () => {
  const w = new MessageWriter(3, 0, 4);
  w.struct.writeInt32LE(-16, 0);
  assert.equal(parseDone(asMessage(w.finish())).errno, 16);
});

test('consecutive messages from the arena are joined without copying; others are concatenated', () => {
  const a = new MessageWriter(16, 0, 16).finish();
  const b = new MessageWriter(17, 0, 16).finish();
  const joined = joinMessages([a, b]);
  assert.equal(joined.buffer, a.buffer);
  assert.equal(joined.length, a.length + b.length);
  assert.equal(joined.readUInt16LE(a.length + 4), 17);
  const copy = joinMessages([b, a]);
  assert.notEqual(copy.buffer, a.buffer);
  assert.equal(copy.readUInt16LE(4), 17);
  assert.equal(copy.readUInt16LE(b.length + 4), 16);
});
