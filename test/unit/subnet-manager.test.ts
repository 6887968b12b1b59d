/** LeaseManager paths the store contract does not reach, on the in-memory store with a hand-moved clock. */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { waitFor } from '../../src/base/retry.js';
import { randomBytes } from 'node:crypto';
import { InvalidValueError } from '../../src/base/errors.js';
import { configKey, DEFAULT_PREFIX } from '../../src/store/keys.js';
import { openRegistry } from '../../src/store/open.js';
import type { Registry } from '../../src/store/registry.js';
import { LeaseManager, NetworkConfigMissingError } from '../../src/subnet/manager.js';
import { captureLogger, mac, ManualClock, NET_CONF } from './store-contract.js';

async function memoryStore(t: TestContext, clock = new ManualClock()): Promise<{ open: () => Promise<Registry>; clock: ManualClock }> {
  const url = `memory:manager-${randomBytes(4).toString('hex')}`;
  const open = async (): Promise<Registry> => {
    const r = await openRegistry(url, { clock, pollIntervalMs: 10 });
    t.after(() => r.close());
    return r;
  };
  return { open, clock };
}

test('waitForNetworkConfig waits through a missing and an invalid config, logging each reason once', async (t) => {
  const { open } = await memoryStore(t);
  const admin = await open();
  const { logger, lines } = captureLogger();
  const m = new LeaseManager(await open(), { logger });
  await assert.rejects(
    m.getNetworkConfig(),
    (e: unknown) => e instanceof NetworkConfigMissingError && e.code === 'TLE_NO_NETWORK_CONFIG' && e.message.includes(configKey(DEFAULT_PREFIX)),
  );
  const waiting = m.waitForNetworkConfig({ pollMs: 20 });
  // Each step waits until the manager has said why it is waiting (not for a time a loaded machine may overrun).
  await waitFor(() => lines.some((l) => /waiting for the network config/.test(l)), 10_000, 'the missing config to be logged');
  await admin.put(configKey(DEFAULT_PREFIX), '{"Network":"10.244.0.0/16","SubnetLen":40}');
  await waitFor(() => lines.some((l) => /the network config is invalid/.test(l)), 10_000, 'the invalid config to be logged');
  await admin.put(configKey(DEFAULT_PREFIX), NET_CONF);
  const config = await waiting;
  assert.equal(config.Network, '10.244.0.0/16');
  assert.equal(lines.filter((l) => /waiting for the network config/.test(l)).length, 1, lines.join('\n'));
  assert.equal(lines.filter((l) => /the network config is invalid/.test(l) && /SubnetLen: 40 is out of range/.test(l)).length, 1, lines.join('\n'));

  const stop = new AbortController();
  const never = new LeaseManager(await open(), { prefix: '/elsewhere' }).waitForNetworkConfig({ signal: stop.signal, pollMs: 10 });
  stop.abort(new Error('stopped'));
  await assert.rejects(never, /stopped/);
});

test('hosts that choose the same subnet at the same moment: one wins, the other chooses again', async (t) => {
  const { open } = await memoryStore(t);
  await (await open()).put(configKey(DEFAULT_PREFIX), NET_CONF);
  const { logger, lines } = captureLogger();
  // random() = 0: both pick the first free subnet.
  const [a, b] = await Promise.all(
    [1, 2].map(async (i) =>
      new LeaseManager(await open(), { random: () => 0, logger }).acquire({ publicIP: `192.0.2.${i}`, backendData: { VNI: 1, VtepMAC: mac(i) } }),
    ),
  );
  assert.deepEqual([a!.subnet, b!.subnet].sort(), ['10.244.1.0/24', '10.244.2.0/24']);
  assert.ok(
    lines.some((l) => /another host took the chosen subnet first; choosing again/.test(l)),
    lines.join('\n'),
  );
});

test('a lease that no longer fits a changed config is deleted and a fitting one taken; a lapsed lease is recreated on renew', async (t) => {
  const { open, clock } = await memoryStore(t);
  const admin = await open();
  await admin.put(configKey(DEFAULT_PREFIX), NET_CONF);
  const m = new LeaseManager(await open(), { clock });
  const old = await m.acquire({ publicIP: '192.0.2.1', backendData: { VNI: 1, VtepMAC: mac(1) }, previousSubnet: '10.244.3.0/24' });
  assert.equal(old.subnet, '10.244.3.0/24');
  await admin.put(configKey(DEFAULT_PREFIX), '{"Network":"10.244.0.0/16","SubnetMin":"10.244.100.0"}');
  const moved = await m.acquire({ publicIP: '192.0.2.1', backendData: { VNI: 1, VtepMAC: mac(1) }, previousSubnet: '10.244.3.0/24' });
  assert.ok(Number(moved.subnet.split('.')[2]) >= 100, moved.subnet);
  assert.equal(await admin.get(old.key), undefined, 'the misfit lease was deleted');

  clock.advance(25 * 3600 * 1000); // the host was away longer than the TTL; nobody took its subnet
  assert.equal(await admin.get(moved.key), undefined);
  const back = await m.renew(moved);
  assert.equal(back.subnet, moved.subnet);
  assert.ok(back.expiration!.getTime() > clock.now());
});

test('acquire checks what the host asks for before touching the store', async (t) => {
  const { open } = await memoryStore(t);
  const m = new LeaseManager(await open());
  const cases: Array<[Parameters<LeaseManager['acquire']>[0], string]> = [
    [{ publicIP: '192.0.2.300', backendData: { VNI: 1, VtepMAC: mac(1) } }, 'publicIP'],
    [{ publicIP: '192.0.2.1', backendData: { VNI: 16777216, VtepMAC: mac(1) } }, 'backendData.VNI'],
    [{ publicIP: '192.0.2.1', backendData: { VNI: 1, VtepMAC: 'x' } }, 'backendData.VtepMAC'],
    [{ publicIP: '192.0.2.1', backendData: { VNI: 1, VtepMAC: mac(1) }, previousSubnet: '10.244.1.0' }, 'previousSubnet'],
  ];
  for (const [request, field] of cases) await assert.rejects(m.acquire(request), (e: unknown) => e instanceof InvalidValueError && e.field === field, field);
  assert.throws(() => new LeaseManager(m.registry, { prefix: 'relative' }), InvalidValueError);
});
