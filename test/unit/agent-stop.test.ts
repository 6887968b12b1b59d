/**
 * Agent.stop() at a moment when a start-up step is still opening something: what that step opens after the stop
 * is closed too (nothing may keep the process alive after SIGTERM). The store here is a stand-in whose opening
 * the test holds back until the agent has been told to stop.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Agent } from '../../src/agent/agent.js';
import { silentLogger } from '../../src/base/log.js';
import type { Registry } from '../../src/store/registry.js';

test('a store opened after stop() is closed, and run() ends without an error', async () => {
  let release!: () => void;
  const opening = new Promise<void>((resolve) => (release = resolve));
  let asked = false;
  let closed = 0;
  const registry = { url: 'memory:stand-in', close: async () => void closed++ } as unknown as Registry;
  const agent = new Agent(
    {
      store: 'memory:',
      prefix: '/coreos.com/network',
      subnetFile: '/nonexistent/subnet.env',
      stateDir: '/nonexistent',
      ipMasq: false,
      healthAddr: '127.0.0.1:0',
      reconcileInterval: 60,
      rulesInterval: 30,
    },
    silentLogger,
    async () => {
      asked = true;
      await opening;
      return registry;
    },
  );
  const running = agent.run();
  while (!asked) await new Promise((r) => setTimeout(r, 5));
  agent.stop();
  release();
  await running;
  await agent.close();
  await new Promise((r) => setImmediate(r));
  assert.equal(closed, 1, 'the store opened after the stop was closed');
});
