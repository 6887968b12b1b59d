/** Flood "none", CNI side: which address and MAC of a CNI result are the pod's, and the store-backed hooks. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { podEndpointOf, type PodEndpointHooks } from '../../src/cni/l2-endpoint.js';
import { openRegistry } from '../../src/store/open.js';
import { listEndpoints } from '../../src/subnet/endpoints.js';
import { storePodEndpointHooks } from '../../src/subnet/pod-endpoints.js';

const result = {
  interfaces: [
    { name: 'veth1234', mac: '2a:00:00:00:00:01' }, // the host end: no sandbox
    { name: 'eth0', mac: '0A:58:0A:11:00:12', sandbox: '/var/run/netns/pod' },
  ],
  ips: [
    { address: 'fd00::12/64', interface: 1 },
    { address: '10.17.0.18/24', interface: 1 },
    { address: '10.17.0.99/24', interface: 0 },
  ],
};

test("the pod's endpoint is the sandbox interface's first IPv4 and its MAC, never the host end's", () => {
  assert.deepEqual(podEndpointOf(result, 'eth0'), { ip: '10.17.0.18', mac: '0a:58:0a:11:00:12' });
  assert.equal(podEndpointOf(result, 'veth1234'), undefined, 'a host interface is not the pod');
  assert.equal(podEndpointOf(result, 'net1'), undefined);
  assert.equal(podEndpointOf({ ...result, ips: [{ address: 'fd00::12/64', interface: 1 }] }, 'eth0'), undefined, 'IPv6 only: nothing to publish');
  assert.deepEqual(podEndpointOf({ interfaces: [{ name: 'eth0', sandbox: '/x' }], ips: [{ address: '10.17.0.18/24', interface: 0 }] }, 'eth0'), {
    ip: '10.17.0.18',
  });
  assert.equal(
    podEndpointOf({ interfaces: [{ name: 'eth0', sandbox: '/x' }], ips: [{ address: '10.17.0.18/24' }] }, 'eth0'),
    undefined,
    'an address of no interface',
  );
});

test("the store-backed hooks publish with this host's PublicIP and withdraw only that pod's record", async (t) => {
  const store = await openRegistry(`memory:cni-l2-${randomBytes(4).toString('hex')}`);
  t.after(() => store.close());
  const hooks: PodEndpointHooks = storePodEndpointHooks(store, '/tulle.io/l2', '192.0.2.11');
  const pod = podEndpointOf(result, 'eth0')!;
  await hooks.publish({ ip: pod.ip, mac: pod.mac! });
  assert.deepEqual(
    (await listEndpoints(store, '/tulle.io/l2')).records.map((r) => [r.ip, r.mac, r.publicIP]),
    [['10.17.0.18', '0a:58:0a:11:00:12', '192.0.2.11']],
  );
  await hooks.withdraw({ ip: '10.17.0.18', mac: '0a:58:0a:11:00:13' });
  assert.equal((await listEndpoints(store, '/tulle.io/l2')).records.length, 1, 'another MAC: kept');
  await hooks.withdraw({ ip: '10.17.0.18' });
  assert.equal((await listEndpoints(store, '/tulle.io/l2')).records.length, 0, 'no MAC known: the record naming this host goes');
  await hooks.withdraw({ ip: '10.17.0.18' });
});
