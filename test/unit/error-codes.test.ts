// The error-code catalogue (src/base/error-codes.ts) against the code: every code thrown under src/ is in it,
// every entry is thrown somewhere and names a real class, no code shares the TULLE_ prefix of the environment
// variables, and the README's error tables are the catalogue's. The scanner is shown to fail on a fixture.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ERROR_CODES, formatErrorTable, renderErrorTables } from '../../src/base/error-codes.js';
import { CNI_CODES } from '../../src/cni/errors.js';
import { sourceFiles } from '../helpers/layering.js';

// dist/test/unit -> the repository root, where the .ts sources are.
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const CATALOGUE = 'src/base/error-codes.ts';

interface Found {
  code: string;
  where: string;
}

/** Every error code a source text names: quoted TLE_* literals, and TLE_CNI_<NAME> for the CNI codes it builds. */
function codesIn(file: string, text: string): Found[] {
  const found: Found[] = [];
  text.split('\n').forEach((line, i) => {
    for (const m of line.matchAll(/['"`](TLE_[A-Z0-9_]+)['"`]/g)) found.push({ code: m[1]!, where: `${file}:${i + 1}` });
    if (line.includes('`TLE_CNI_${')) for (const name of Object.keys(CNI_CODES)) found.push({ code: `TLE_CNI_${name}`, where: `${file}:${i + 1}` });
  });
  return found;
}

/** The codes found that the catalogue does not hold, one line each. */
function uncatalogued(found: readonly Found[], catalogue: ReadonlySet<string>): string[] {
  return found.filter((f) => !catalogue.has(f.code)).map((f) => `${f.where}: ${f.code} is not in ${CATALOGUE}`);
}

function scanSrc(): Found[] {
  return sourceFiles(join(ROOT, 'src'))
    .map((abs) => relative(ROOT, abs))
    .filter((rel) => rel !== CATALOGUE)
    .flatMap((rel) => codesIn(rel, readFileSync(join(ROOT, rel), 'utf8')));
}

const catalogued = new Set(ERROR_CODES.map((e) => e.code));

test('every error code thrown under src/ is in the catalogue, and every entry is thrown somewhere', () => {
  const found = scanSrc();
  assert.deepEqual(uncatalogued(found, catalogued), []);
  const used = new Set(found.map((f) => f.code));
  assert.deepEqual(
    ERROR_CODES.filter((e) => !used.has(e.code)).map((e) => `${e.code}: catalogued but thrown nowhere under src/`),
    [],
  );
});

test('catalogue entries: TLE_ codes, each once, naming a class that exists, with a meaning and an action', () => {
  const classes = new Set(sourceFiles(join(ROOT, 'src')).flatMap((f) => [...readFileSync(f, 'utf8').matchAll(/\bclass (\w+) extends/g)].map((m) => m[1]!)));
  assert.equal(catalogued.size, ERROR_CODES.length, 'a code is listed twice');
  for (const e of ERROR_CODES) {
    assert.match(e.code, /^TLE_[A-Z0-9]+(_[A-Z0-9]+)*$/, e.code);
    assert.ok(classes.has(e.class), `${e.code}: class ${e.class} is not defined under src/`);
    assert.ok(e.meaning.length > 10 && e.action.length > 3, `${e.code}: meaning and action must say something`);
  }
});

test('no error code uses the TULLE_ prefix of the environment variables', () => {
  const offenders: string[] = [];
  for (const abs of sourceFiles(join(ROOT, 'src'))) {
    readFileSync(abs, 'utf8')
      .split('\n')
      .forEach((line, i) => {
        // A TULLE_ name in quotes is an environment variable: given as an option's env, or written/read as one
        // (in the process environment or in an env file such as subnet.env).
        if (/['"`]TULLE_[A-Z0-9_]+['"`]/.test(line) && !/env: '|envQuote\(|process\.env|getenv|vars\.get\(/.test(line))
          offenders.push(`${relative(ROOT, abs)}:${i + 1}: ${line.trim()}`);
      });
  }
  assert.deepEqual(offenders, []);
});

test('the scanner finds an uncatalogued code, in a literal or built from the CNI codes', () => {
  const fixture = ["throw new TulleError('TLE_NOT_IN_THE_CATALOGUE', 'x');", "super('TLE_USAGE', message);", 'const NAMES = `TLE_CNI_${k}`;'].join('\n');
  const found = codesIn('fixture.ts', fixture);
  assert.deepEqual(uncatalogued(found, catalogued), ['fixture.ts:1: TLE_NOT_IN_THE_CATALOGUE is not in src/base/error-codes.ts']);
  assert.ok(found.some((f) => f.code === 'TLE_CNI_TRY_AGAIN_LATER'));
  assert.deepEqual(uncatalogued(found, new Set(['TLE_USAGE'])).length, 1 + Object.keys(CNI_CODES).length);
});

test("the README's error tables are the catalogue's (node scripts/error-tables.mjs rewrites them)", () => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  assert.match(readme, /<!-- error-codes: all -->/, 'README has the full error table');
  assert.equal(
    renderErrorTables(readme),
    readme,
    'README error tables differ from src/base/error-codes.ts: run npm run build && node scripts/error-tables.mjs',
  );
  // A table that differs is found: drop one row of the full table.
  const row = formatErrorTable().split('\n')[2]!;
  assert.notEqual(renderErrorTables(readme.replace(`${row}\n`, '')), readme.replace(`${row}\n`, ''));
});
