/**
 * The nf_tables batch NftSetWriter sends (src/netlink/nft-set.ts), read back with the generic message parser and
 * an attribute walker of its own: message order, types, flags and sequence numbers, the table and set names, and
 * every element's key in network byte order. The netns test shows the kernel accepts it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeBatch } from '../../src/netlink/nft-set.js';
import { parseMessages } from '../../src/netlink/message.js';

/** The attributes of b[start..end) in order: [type without flags, nested?, value]. */
function attrs(b: Buffer, start = 0, end = b.length): Array<{ type: number; nested: boolean; value: Buffer }> {
  const out = [];
  for (let off = start; off + 4 <= end;) {
    const len = b.readUInt16LE(off);
    assert.ok(len >= 4 && off + len <= end, `attribute at ${off} fits`);
    const type = b.readUInt16LE(off + 2);
    out.push({ type: type & 0x3fff, nested: (type & 0x8000) !== 0, value: b.subarray(off + 4, off + len) });
    off += (len + 3) & ~3;
  }
  return out;
}

function elements(payload: Buffer): { table: string; set: string; keys: string[] } {
  assert.deepEqual([payload[0], payload[1], payload.readUInt16BE(2)], [2, 0, 0], 'nfgenmsg: ipv4, version 0, res_id 0');
  const [table, set, list, ...rest] = attrs(payload, 4);
  assert.equal(rest.length, 0);
  assert.deepEqual([table!.type, set!.type, list!.type, list!.nested], [1, 2, 3, true]);
  const keys = attrs(list!.value).map((elem) => {
    assert.deepEqual([elem.type, elem.nested], [1, true]);
    const [key] = attrs(elem.value);
    assert.deepEqual([key!.type, key!.nested], [1, true]);
    const [value] = attrs(key!.value);
    assert.deepEqual([value!.type, value!.value.length], [1, 4]);
    return [...value!.value].join('.');
  });
  const name = (v: Buffer) => v.subarray(0, v.indexOf(0)).toString();
  return { table: name(table!.value), set: name(set!.value), keys };
}

test('an add and a delete in one batch: begin, NEWSETELEM (ack, create), DELSETELEM (ack), end; seqs in order', () => {
  const ip = (s: string) => s.split('.').reduce((n, x) => n * 256 + Number(x), 0);
  const b = encodeBatch(0xfffffff0, 'tulle-guard', 'peers', [ip('192.0.2.12'), ip('255.1.0.9')], [ip('10.0.0.1')]);
  const ms = parseMessages(b);
  assert.equal(
    ms.reduce((n, m) => n + 16 + m.payload.length, 0),
    b.length,
    'the messages fill the buffer exactly',
  );
  assert.deepEqual(
    ms.map((m) => [m.type, m.flags, m.seq, m.pid]),
    [
      [0x10, 0x1, 0xfffffff0, 0],
      [(10 << 8) | 12, 0x1 | 0x4 | 0x400, 0xfffffff1, 0],
      [(10 << 8) | 14, 0x1 | 0x4, 0xfffffff2, 0],
      [0x11, 0x1, 0xfffffff3, 0],
    ],
  );
  for (const m of [ms[0]!, ms[3]!]) assert.deepEqual([...m.payload], [0, 0, 0, 10], 'batch nfgenmsg: res_id NFNL_SUBSYS_NFTABLES, big-endian');
  assert.deepEqual(elements(ms[1]!.payload), { table: 'tulle-guard', set: 'peers', keys: ['192.0.2.12', '255.1.0.9'] });
  assert.deepEqual(elements(ms[2]!.payload), { table: 'tulle-guard', set: 'peers', keys: ['10.0.0.1'] });
});

test('only adds, or only deletes: the empty side has no message; name lengths that need no padding and some that do', () => {
  for (const [table, set] of [
    ['abc', 'defghij'],
    ['t', 's'],
    ['tabl', 'sets'],
  ] as const) {
    const adds = parseMessages(encodeBatch(7, table, set, [1], []));
    assert.deepEqual(
      adds.map((m) => [m.type & 0xff, m.seq]),
      [
        [0x10, 7],
        [12, 8],
        [0x11, 9],
      ],
    );
    assert.deepEqual(elements(adds[1]!.payload), { table, set, keys: ['0.0.0.1'] });
    const dels = parseMessages(encodeBatch(7, table, set, [], [0xffffffff, 0]));
    assert.deepEqual(
      dels.map((m) => m.type & 0xff),
      [0x10, 14, 0x11],
    );
    assert.deepEqual(elements(dels[1]!.payload).keys, ['255.255.255.255', '0.0.0.0']);
  }
});
