// The layering check (test/helpers/layering.ts) against the real src/ and against a fixture tree with deliberately
// wrong imports, so the check itself is shown to fail when it should.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkLayering, formatViolations, importsOf } from '../helpers/layering.js';
import { DEPS, KNOWN_EXCEPTIONS } from './layering.deps.js';

// dist/test/unit -> the repository root, where the .ts sources are.
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

test('src/ keeps the layering declared in test/unit/layering.deps.ts', () => {
  const violations = checkLayering(ROOT, DEPS, KNOWN_EXCEPTIONS);
  assert.equal(formatViolations(violations), '', 'imports that break the layering');
});

test('every src/ folder has a DEPS entry, and every entry names an existing folder', () => {
  const folders = readdirSync(join(ROOT, 'src'), { withFileTypes: true })
    .filter((e) => e.isDirectory())
    .map((e) => e.name)
    .sort();
  assert.deepEqual(Object.keys(DEPS).sort(), folders);
  for (const [folder, allowed] of Object.entries(DEPS)) {
    for (const f of allowed) assert.ok(folders.includes(f), `DEPS.${folder} names ${f}, which is not a folder of src/`);
    assert.ok(!allowed.includes(folder), `DEPS.${folder} lists itself`);
  }
});

test('the declared layering has no cycle, and nothing but cli may import lab or cli', () => {
  const visiting = new Set<string>();
  const done = new Set<string>();
  const visit = (f: string, path: string[]): void => {
    assert.ok(!visiting.has(f), `cycle: ${[...path, f].join(' -> ')}`);
    if (done.has(f)) return;
    visiting.add(f);
    for (const d of DEPS[f] ?? []) visit(d, [...path, f]);
    visiting.delete(f);
    done.add(f);
  };
  for (const f of Object.keys(DEPS)) visit(f, []);
  for (const [folder, allowed] of Object.entries(DEPS)) {
    if (folder !== 'cli') assert.ok(!allowed.includes('lab') && !allowed.includes('cli'), `DEPS.${folder} may not import lab or cli`);
  }
});

test('the check fails on a fixture with wrong imports, naming each file and import', (t) => {
  const root = mkdtempSync(join(tmpdir(), 't-layering-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const write = (rel: string, text: string): void => {
    mkdirSync(dirname(join(root, rel)), { recursive: true });
    writeFileSync(join(root, rel), text);
  };
  write('src/base/ok.ts', "import { x } from './sibling.js';\nexport const y = x;\n");
  write('src/base/sibling.ts', 'export const x = 1;\n');
  // Upward: base importing cli, written over several lines and type-only.
  write('src/base/up.ts', "import type {\n  Cmd,\n} from '../cli/main.js';\nexport type C = Cmd;\n");
  // A dynamic import is an import too.
  write('src/netlink/dyn.ts', "export const load = () => import('../overlay/plan.js');\n");
  // Re-export from a folder not allowed, and an import out of src/.
  write('src/overlay/reexport.ts', "export { a } from '../lab/index.js';\nimport '../../test/helpers/netns.js';\n");
  write('src/overlay/fine.ts', "import { x } from '../base/sibling.js';\nimport { readFileSync } from 'node:fs';\nexport { x, readFileSync };\n");
  write('src/cli/main.ts', "import { x } from '../base/sibling.js';\nexport type Cmd = typeof x;\n");
  write('src/extra/a.ts', "import { x } from '../base/sibling.js';\nexport { x };\n");

  const deps = { base: [], netlink: ['base'], overlay: ['base', 'netlink'], cli: ['base', 'netlink', 'overlay'] };
  const got = checkLayering(root, deps);
  assert.deepEqual(got.map((v) => `${v.file} ${v.import}`).sort(), [
    'src/base/up.ts ../cli/main.js',
    'src/extra/a.ts ../base/sibling.js',
    'src/netlink/dyn.ts ../overlay/plan.js',
    'src/overlay/reexport.ts ../../test/helpers/netns.js',
    'src/overlay/reexport.ts ../lab/index.js',
  ]);
  const text = formatViolations(got);
  assert.match(text, /src\/base\/up\.ts: import '\.\.\/cli\/main\.js': src\/base\/ may import nothing outside itself, not src\/cli\//);
  assert.match(text, /src\/netlink\/dyn\.ts: import '\.\.\/overlay\/plan\.js': src\/netlink\/ may import only src\/base\/, not src\/overlay\//);
  assert.match(text, /src\/extra\/ has no DEPS entry/);
  assert.match(text, /never imports test\/, bench\/ or bin\//);

  // A listed known exception silences exactly that import.
  const rest = checkLayering(root, deps, [{ file: 'src/netlink/dyn.ts', import: '../overlay/plan.js', why: 'fixture' }]);
  assert.equal(rest.length, got.length - 1);
  assert.ok(!rest.some((v) => v.file === 'src/netlink/dyn.ts'));
});

test('importsOf reads static, type-only, re-exported and dynamic imports', () => {
  assert.deepEqual(importsOf("import a from './a.js';\nimport type { B } from './b.js';\nexport * from './c.js';\nconst d = await import('./d.js');\n"), [
    './a.js',
    './b.js',
    './c.js',
    './d.js',
  ]);
});
