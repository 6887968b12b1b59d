#!/usr/bin/env node
// Runs the whole test suite with node's built-in runner: unit (no root), netns (root, real kernel), e2e
// (whole lab clusters) and faults (hostile stores, signals, outages and drift against lab clusters). `npm test -- unit netns` runs only the named suites. Tests that need root or a
// system tool fail with a message naming it; nothing is skipped silently.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const SUITES = ['unit', 'netns', 'e2e', 'faults'];
const wanted = process.argv.slice(2).filter((a) => !a.startsWith('-'));
const extra = process.argv.slice(2).filter((a) => a.startsWith('-'));
for (const s of wanted) {
  if (!SUITES.includes(s)) {
    console.error(`run-tests: unknown suite ${JSON.stringify(s)}; suites: ${SUITES.join(', ')}`);
    process.exit(2);
  }
}
const suites = wanted.length ? wanted : SUITES;
if (suites.some((s) => s !== 'unit') && process.getuid?.() !== 0) {
  console.error('run-tests: the netns and e2e suites create network namespaces and need root; run `sudo npm test`, or `npm test -- unit`.');
  process.exit(1);
}
const dirs = suites.map((s) => `dist/test/${s}`).filter((d) => existsSync(d));
if (dirs.length === 0) {
  console.error('run-tests: no compiled tests found under dist/test; run `npm run build` first.');
  process.exit(1);
}
const r = spawnSync(process.execPath, ['--test', '--test-timeout=300000', ...extra, ...dirs], { stdio: 'inherit' });
process.exit(r.status ?? 1);
