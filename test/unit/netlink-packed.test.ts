/**
 * Packed writes (src/netlink/packed.ts) are the generic encoders' messages, byte for byte: for random entries of
 * every kind and op, the packed message equals what planOp builds from the same entry as text. Out-of-range
 * numbers are refused before anything is written.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidValueError } from '../../src/base/errors.js';
import { formatIPv4, formatMacNumber } from '../../src/base/ip.js';
import { planOp, type NetlinkOp } from '../../src/netlink/batch.js';
import { EntryPacker } from '../../src/netlink/packed.js';

/** A deterministic pseudo-random source, so a failure names an entry that can be found again. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

test('every packed write is byte for byte the message the generic encoder makes of the same entry', () => {
  const next = rng(7);
  const index = new Map([
    ['flannel.1', 7],
    ['eth0', 2],
  ]);
  const indexOf = (name: string) => index.get(name) ?? 0;
  for (let i = 0; i < 2000; i++) {
    const ip = next();
    const mac = (next() % 0x10000) * 0x100000000 + next();
    const dst = next();
    const prefix = 1 + (next() % 32);
    const network = (ip & (0xffffffff << (32 - prefix))) >>> 0;
    const onlink = next() % 2 === 0;
    const protocol = next() % 256;
    const dev = next() % 2 ? 'flannel.1' : 'eth0';
    const cases: Array<[NetlinkOp, (p: EntryPacker) => void]> = [
      [
        { op: 'replaceNeighbor', args: { dev, ip: formatIPv4(ip), mac: formatMacNumber(mac), state: 'permanent' } },
        (p) => p.neighbor('replace', indexOf(dev), ip, mac),
      ],
      [{ op: 'deleteNeighbor', args: { dev, ip: formatIPv4(ip) } }, (p) => p.neighbor('delete', indexOf(dev), ip, NaN)],
      [
        { op: 'replaceFdb', args: { dev, mac: formatMacNumber(mac), dst: formatIPv4(dst), self: true, permanent: true } },
        (p) => p.fdb('replace', indexOf(dev), mac, dst),
      ],
      [
        { op: 'deleteFdb', args: { dev, mac: formatMacNumber(mac), dst: formatIPv4(dst), self: true, permanent: true } },
        (p) => p.fdb('delete', indexOf(dev), mac, dst),
      ],
      ...(['add', 'replace', 'delete'] as const).map((op): [NetlinkOp, (p: EntryPacker) => void] => [
        {
          op: op === 'add' ? 'addRoute' : op === 'replace' ? 'replaceRoute' : 'deleteRoute',
          args: { dst: `${formatIPv4(network)}/${prefix}`, via: formatIPv4(dst), dev, onlink, protocol },
        },
        (p) => p.route(op, network, prefix, dst, indexOf(dev), onlink, protocol),
      ]),
    ];
    for (const [op, pack] of cases) {
      const generic = planOp(op).build(indexOf).message;
      const packer = new EntryPacker(1);
      pack(packer);
      assert.deepEqual(packer.offsets, [0]);
      assert.equal(packer.data.toString('hex'), generic.toString('hex'), `${op.op} ${JSON.stringify(op.args)}`);
    }
  }
});

test('many writes share one buffer that grows as needed; each message starts where its offset says', () => {
  const p = new EntryPacker(1);
  for (let i = 0; i < 100; i++) p.route('add', (10 << 24) + (i << 8), 24, (10 << 24) + (i << 8), 3, true, 84);
  assert.equal(p.count, 100);
  assert.equal(p.data.length, 100 * 60);
  for (let i = 0; i < 100; i++) {
    assert.equal(p.data.readUInt32LE(p.offsets[i]), 60, 'nlmsg_len');
    assert.equal(p.data[p.offsets[i]! + 28 + 6], i, 'third byte of RTA_DST');
  }
});

test('out-of-range numbers are refused, naming the field, value and rule, and nothing is packed', () => {
  const p = new EntryPacker(4);
  const bad: Array<[() => void, RegExp]> = [
    [() => p.neighbor('replace', 0, 1, 1), /neighbor dev index: 0 must be a device index/],
    [() => p.neighbor('replace', 3, -1, 1), /neighbor ip: -1 must be an IPv4 address/],
    [() => p.neighbor('replace', 3, 1, NaN), /neighbor mac: .* must be a MAC address/],
    [() => p.neighbor('delete', 3, 2 ** 32, 0), /neighbor ip/],
    [() => p.fdb('replace', 3, 2 ** 48, 1), /fdb mac/],
    [() => p.fdb('delete', 3, 1, 1.5), /fdb dst/],
    [() => p.fdb('replace', 2 ** 31, 1, 1), /fdb dev index/],
    [() => p.route('add', 1, 33, 1, 3, true, 84), /route dst prefix: 33 must be 1..32/],
    [() => p.route('replace', 1, 24, NaN, 3, true, 84), /route via/],
    [() => p.route('replace', 0, 0, 1, 3, true, 84), /route dst prefix: 0 must be 1..32/],
    [() => p.route('delete', 1, 24, 1, 3, true, 256), /route protocol: 256 must be 0..255/],
    [() => p.route('add', 1, 24, 1, -3, true, 84), /route dev index/],
  ];
  for (const [call, message] of bad) assert.throws(call, (err: unknown) => err instanceof InvalidValueError && message.test(err.message));
  assert.equal(p.count, 0);
  assert.equal(p.data.length, 0);
});
