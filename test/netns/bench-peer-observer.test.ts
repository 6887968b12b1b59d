/**
 * The benchmarks' observer (bench/peer-observer.ts) in a fresh namespace: it hears a peer's three entries as
 * iproute2 writes them on flannel.1 (and not the same entries on another device), follows the VTEP when it is
 * made again under a new index, and names what is missing when they do not all come.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { PeerObserver, entryKeys } from '../../bench/peer-observer.js';
import { ip, requireRoot, vtepHost } from '../helpers/netns.js';
import { run } from '../../src/base/exec.js';

requireRoot();

const peer = { subnet: '10.244.7.0/24', mac: '02:AA:00:00:00:07', publicIP: '198.51.100.7' };

async function writePeer(ns: string, dev = 'flannel.1'): Promise<void> {
  await ip(ns, 'neigh', 'replace', '10.244.7.0', 'lladdr', '02:aa:00:00:00:07', 'dev', dev, 'nud', 'permanent');
  await run(['bridge', '-n', ns, 'fdb', 'replace', '02:aa:00:00:00:07', 'dev', dev, 'dst', '198.51.100.7', 'self', 'permanent']);
  await ip(ns, 'route', 'replace', '10.244.7.0/24', 'via', '10.244.7.0', 'dev', dev, 'onlink');
}

test('the observer hears the three entries of a peer on flannel.1, follows a VTEP made again, and names what is missing', async (t) => {
  const { ns } = await vtepHost(t, 'pobs');
  // A second VXLAN device with the same entries: not the VTEP, not counted.
  await ip(ns, 'link', 'add', 'flannel.9', 'type', 'vxlan', 'id', '9', 'local', '192.0.2.11', 'dev', 'eth0', 'dstport', '8479', 'nolearning');
  await ip(ns, 'link', 'set', 'flannel.9', 'up');
  const observer = await PeerObserver.open([ns]);
  t.after(() => observer.close());
  const keys = entryKeys(peer);
  assert.equal(keys.length, 3);

  await writePeer(ns, 'flannel.9');
  await assert.rejects(observer.complete(ns, keys, 300), /3 of 3 expected entries not announced after 300 ms \(e\.g\. route 10\.244\.7\.0\/24\)/);

  const before = performance.now();
  await writePeer(ns);
  const at = await observer.complete(ns, keys, 5000);
  assert.ok(at >= before && at <= performance.now());

  // The VTEP made again (a new index): its entries are heard again after a reset.
  await ip(ns, 'link', 'del', 'flannel.1');
  await ip(ns, 'link', 'add', 'flannel.1', 'type', 'vxlan', 'id', '1', 'local', '192.0.2.11', 'dev', 'eth0', 'dstport', '8472', 'nolearning');
  await ip(ns, 'link', 'set', 'flannel.1', 'up');
  observer.reset();
  await writePeer(ns);
  await observer.complete(ns, keys, 5000);
  assert.equal(observer.overflowed(ns), false);
});
