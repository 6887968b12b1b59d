// nf_tables set elements over netlink, against the kernel: what NftSetWriter writes is what `nft -j list set`
// reads back as soon as update() returns (the kernel applies and acknowledges a batch inside the send); a batch is all
// or nothing; errors name the nft command and the errno.
import { test } from 'node:test';
import { spawn } from 'node:child_process';
import assert from 'node:assert/strict';
import { run, runJson } from '../../src/base/exec.js';
import { NftSetWriter, NetlinkError } from '../../src/netlink/index.js';
import { InvalidValueError } from '../../src/base/errors.js';
import { freshNetns, requireRoot } from '../helpers/netns.js';
import { waitFor } from '../../src/base/retry.js';

async function elements(ns: string): Promise<string[]> {
  const doc = await runJson<{ nftables: Array<{ set?: { elem?: string[] } }> }>(['ip', 'netns', 'exec', ns, 'nft', '-j', 'list', 'set', 'ip', 't', 's']);
  return (doc.nftables.find((i) => i.set)!.set!.elem ?? []).slice().sort();
}

test('add and delete elements of an ipv4_addr set in one batch; errors name the command; a failed batch changes nothing', async (t) => {
  requireRoot();
  const ns = await freshNetns(t, 'nftset');
  await run(['ip', 'netns', 'exec', ns, 'nft', '-f', '-'], { input: 'table ip t {\n  set s {\n    type ipv4_addr;\n    elements = { 192.0.2.1 }\n  }\n}\n' });
  const w = NftSetWriter.open(ns);
  t.after(() => w.close());

  w.update('t', 's', ['192.0.2.12', '198.51.100.7'], ['192.0.2.1']);
  assert.deepEqual(await elements(ns), ['192.0.2.12', '198.51.100.7']);
  w.update('t', 's', ['192.0.2.12'], []); // adding a member again is not an error (nft add element)
  w.update('t', 's', [], []);
  assert.deepEqual(await elements(ns), ['192.0.2.12', '198.51.100.7']);

  // Deleting a non-member fails, and the add in the same batch is not applied either.
  assert.throws(
    () => w.update('t', 's', ['203.0.113.9'], ['192.0.2.99']),
    (e: unknown) => e instanceof NetlinkError && e.errno === 'ENOENT' && /nft delete element ip t s \{ 192\.0\.2\.99 \}/.test(e.message),
  );
  assert.deepEqual(await elements(ns), ['192.0.2.12', '198.51.100.7']);

  assert.throws(
    () => w.update('t', 'nosuch', ['192.0.2.5'], []),
    (e: unknown) => e instanceof NetlinkError && e.errno === 'ENOENT' && /nft add element ip t nosuch/.test(e.message),
  );
  assert.throws(
    () => w.update('nosuch', 's', ['192.0.2.5'], []),
    (e: unknown) => e instanceof NetlinkError && e.errno === 'ENOENT',
  );
  assert.throws(
    () => w.update('t', 's', ['192.0.2.5; flush ruleset'], []),
    (e: unknown) => e instanceof InvalidValueError && e.field === 'set element',
  );
  // The socket still works after errors.
  w.update('t', 's', [], ['198.51.100.7']);
  assert.deepEqual(await elements(ns), ['192.0.2.12']);

  // Many at once (a 500-host cluster's peers).
  const many = Array.from({ length: 500 }, (_, i) => `10.${i >> 8}.${i & 255}.1`);
  w.update('t', 's', many, []);
  assert.equal((await elements(ns)).length, 501);

  // Closed: a clear error, nothing sent.
  w.close();
  assert.throws(
    () => w.update('t', 's', ['192.0.2.6'], []),
    (e: unknown) => e instanceof NetlinkError && e.errno === 'EIO' && /socket closed/.test(e.message),
  );
  assert.equal((await elements(ns)).length, 501);
});

test("generation(): the namespace's nf_tables generation as `nft monitor` announces it, one more per commit, whoever commits", async (t) => {
  requireRoot();
  const ns = await freshNetns(t, 'nftgen');
  const w = NftSetWriter.open(ns);
  t.after(() => w.close());
  // An independent reader: `nft monitor` prints "# new generation N by process ..." after every commit.
  const monitor = spawn('ip', ['netns', 'exec', ns, 'nft', 'monitor'], { stdio: ['ignore', 'pipe', 'ignore'] });
  t.after(() => void monitor.kill());
  let announced = '';
  monitor.stdout.on('data', (d: Buffer) => (announced += d.toString()));
  // Whole lines only: output can arrive split inside a number ("# new generation 1" of 12 read as 1).
  const lastAnnounced = () => Number([...announced.matchAll(/# new generation (\d+) by /g)].pop()?.[1]);
  // The monitor is listening once a commit of ours shows up in it.
  await waitFor(
    async () => {
      await run(['ip', 'netns', 'exec', ns, 'nft', 'add', 'table', 'ip', 'probe']);
      return !Number.isNaN(lastAnnounced());
    },
    10_000,
    'nft monitor to listen',
    100,
  );
  const before = w.generation();
  assert.equal(before, lastAnnounced());

  await run(['ip', 'netns', 'exec', ns, 'nft', '-f', '-'], { input: 'table ip t {\n  set s {\n    type ipv4_addr;\n  }\n}\n' });
  await waitFor(() => lastAnnounced() === before + 1, 5000, 'the table commit to be announced');
  assert.equal(w.generation(), before + 1);
  w.update('t', 's', ['192.0.2.1', '192.0.2.2'], []); // one batch, one commit
  assert.equal(w.generation(), before + 2);
  await waitFor(() => lastAnnounced() === before + 2, 5000, 'the element commit to be announced');
  assert.throws(() => w.update('t', 's', [], ['192.0.2.99'])); // refused: nothing committed
  assert.equal(w.generation(), before + 2);
  assert.equal(w.generation(), before + 2, 'reading it changes nothing');

  w.close();
  assert.throws(
    () => w.generation(),
    (e: unknown) => e instanceof NetlinkError && /NFT_MSG_GETGEN/.test(e.message),
  );
});
