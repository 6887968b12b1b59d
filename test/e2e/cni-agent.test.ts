// The resident CNI path through the real agent: a lab's agents serve CNI on a socket each, and the lab attaches
// its pods with the compiled shim, as a runtime would run it. The agent's log names each request, /metrics has
// the per-command histogram, the socket is root only; once the agent stops (SIGTERM) its socket is gone and the
// same calls keep working through the Node plugin.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, statSync } from 'node:fs';
import { run } from '../../src/base/exec.js';
import { cniInvoke, TULLE_CNI_SHIM } from '../../src/cni/invoke.js';
import { addPod, cniSocketOf, podNetconf, stopAgent } from '../../src/lab/index.js';
import { agentLog, overlayLab } from '../helpers/lab.js';
import { requireRoot } from '../helpers/netns.js';

requireRoot();

test("lab pods are attached through the agent's CNI socket; after the agent stops, ADD and DEL work through the fallback", async (t) => {
  const state = await overlayLab(t, { nodes: 2, store: 'sqlite', mode: 'bridge', pods: 1 });
  const h1 = state.hosts.find((h) => h.name === 'h1')!;
  const socket = cniSocketOf(state, 'h1');
  assert.equal(statSync(socket).mode & 0o777, 0o600, 'the socket is root only');

  const requests = agentLog(state, 'h1')
    .split('\n')
    .filter((l) => l.includes('"cni request"'))
    .map((l) => JSON.parse(l));
  assert.deepEqual(
    requests.map((r) => [r.component, r.command, r.containerId, r.code]),
    [['cni', 'ADD', `${state.name}-h1-p1`, 0]],
  );
  assert.equal(typeof requests[0].durationMs, 'number');

  const metrics = await run([
    'ip',
    'netns',
    'exec',
    h1.namespace,
    process.execPath,
    '-e',
    "fetch('http://127.0.0.1:9465/metrics').then((r) => r.text()).then((t) => process.stdout.write(t))",
  ]);
  assert.match(metrics.stdout, /^tulle_cni_request_duration_seconds_count\{command="ADD",result="ok"\} 1$/m);
  assert.match(metrics.stdout, /^tulle_cni_requests_total\{command="ADD",code="0"\} 1$/m);

  await stopAgent(state, 'h1');
  assert.equal(existsSync(socket), false, 'the agent removed its socket on SIGTERM');
  const pod = await addPod(state, 'h1', 'h1-p2');
  assert.match(pod.address ?? '', /^10\.244\.\d+\.\d+$/, 'ADD through the fallback');
  const del = await cniInvoke({
    command: 'DEL',
    containerId: `${state.name}-h1-p1`,
    ifName: 'eth0',
    config: podNetconf(state, 'h1'),
    hostNetns: h1.namespace,
    plugin: TULLE_CNI_SHIM,
    env: { TULLE_CNI_SOCKET: socket },
  });
  assert.equal(del.exitCode, 0, del.stdout + del.stderr);
});
