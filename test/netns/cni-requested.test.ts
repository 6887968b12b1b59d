// The address and MAC a runtime asks for (podman --ip / --mac-address): CNI_ARGS IP=/MAC= and the runtimeConfig
// capabilities ips/mac are honoured in both modes, reserved in the IPAM directory like any other address, refused
// while another pod holds them, and released by DEL. The plugin runs as a runtime runs it, in a fresh host
// namespace; the pod's address and MAC are read back with `ip -j`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cniInvoke, type CniOutcome } from '../../src/cni/invoke.js';
import { freshNetns, ipJson, requireRoot } from '../helpers/netns.js';

requireRoot();

async function makeHost(t: Parameters<typeof freshNetns>[0], mode: string) {
  const ns = await freshNetns(t, 'host');
  const dir = mkdtempSync(join(tmpdir(), 'tulle-cni-requested-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const subnetFile = join(dir, 'subnet.env');
  writeFileSync(subnetFile, 'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n');
  const dataDir = join(dir, 'ipam');
  const config = (extra: Record<string, unknown> = {}) => ({ cniVersion: '1.0.0', name: 'tulle', type: 'tulle', mode, subnetFile, dataDir, ...extra });
  const call = (command: 'ADD' | 'DEL', id: string, pod: string, extra: { args?: string; config?: Record<string, unknown> } = {}): Promise<CniOutcome> =>
    cniInvoke({ command, containerId: id, ifName: 'eth0', netns: `/run/netns/${pod}`, config: extra.config ?? config(), args: extra.args, hostNetns: ns });
  const files = () =>
    existsSync(join(dataDir, 'tulle'))
      ? readdirSync(join(dataDir, 'tulle'))
          .filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f))
          .sort()
      : [];
  return { config, call, files, dataDir };
}

async function podEth0(pod: string): Promise<{ mac: string; addresses: string[] }> {
  const [link] = await ipJson<Array<{ address: string; addr_info: Array<{ family: string; local: string; prefixlen: number }> }>>(
    pod,
    'addr',
    'show',
    'dev',
    'eth0',
  );
  return { mac: link!.address, addresses: link!.addr_info.filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`) };
}

for (const mode of ['bridge', 'routed'] as const) {
  test(`${mode} mode: CNI_ARGS IP=/MAC= are honoured, held against others, and released by DEL`, async (t) => {
    const host = await makeHost(t, mode);
    const [a, b] = await Promise.all([freshNetns(t, 'poda'), freshNetns(t, 'podb')]);
    const prefix = mode === 'bridge' ? 24 : 32;

    let out = await host.call('ADD', 'req-a', a, { args: 'IgnoreUnknown=1;K8S_POD_NAME=a;IP=10.244.1.77;MAC=0a:58:0a:f4:01:4d' });
    assert.equal(out.exitCode, 0, out.stdout + out.stderr);
    assert.deepEqual(await podEth0(a), { mac: '0a:58:0a:f4:01:4d', addresses: [`10.244.1.77/${prefix}`] });
    const result = out.result as { ips: Array<{ address: string }>; interfaces: Array<{ name: string; mac?: string; sandbox?: string }> };
    assert.equal(result.ips[0]!.address, `10.244.1.77/${prefix}`);
    assert.equal(result.interfaces.find((i) => i.sandbox)!.mac, '0a:58:0a:f4:01:4d');
    assert.deepEqual(host.files(), ['10.244.1.77']);
    assert.equal(readFileSync(join(host.dataDir, 'tulle', '10.244.1.77'), 'utf8'), 'req-a\r\neth0');

    // Another pod asking for the same address is refused and leaves nothing behind.
    out = await host.call('ADD', 'req-b', b, { args: 'IP=10.244.1.77' });
    assert.equal(out.error?.code, 106, out.stdout);
    assert.match(out.error.msg, /^CNI_ARGS IP: "10\.244\.1\.77" is already in use by req-a eth0/);
    assert.deepEqual(
      (await ipJson<Array<{ ifname: string }>>(b, 'link', 'show')).map((l) => l.ifname),
      ['lo'],
    );

    // DEL releases it; the same request then succeeds for the other pod.
    out = await host.call('DEL', 'req-a', a);
    assert.equal(out.exitCode, 0, out.stdout);
    assert.deepEqual(host.files(), []);
    out = await host.call('ADD', 'req-b', b, { args: 'IP=10.244.1.77' });
    assert.equal(out.exitCode, 0, out.stdout);
    assert.deepEqual((await podEth0(b)).addresses, [`10.244.1.77/${prefix}`]);
    assert.equal((await host.call('DEL', 'req-b', b)).exitCode, 0);
    assert.deepEqual(host.files(), []);
  });
}

test('runtimeConfig ips/mac (the capabilities) are honoured like CNI_ARGS', async (t) => {
  const host = await makeHost(t, 'bridge');
  const pod = await freshNetns(t, 'pod');
  const out = await host.call('ADD', 'rc-a', pod, {
    config: host.config({ runtimeConfig: { ips: ['10.244.1.200/24'], mac: '0A:58:0A:F4:01:C8', portMappings: [] } }),
  });
  assert.equal(out.exitCode, 0, out.stdout + out.stderr);
  assert.deepEqual(await podEth0(pod), { mac: '0a:58:0a:f4:01:c8', addresses: ['10.244.1.200/24'] });
  assert.equal((await host.call('DEL', 'rc-a', pod)).exitCode, 0);
  assert.deepEqual(host.files(), []);
});
