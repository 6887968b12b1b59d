/**
 * The layering check: every relative import of a file under src/<folder>/ must point into <folder> itself or into
 * a folder its DEPS entry allows (test/unit/layering.deps.ts). Imports are read with TypeScript's own scanner
 * (static, type-only, re-exports and dynamic `import('...')`), so a multi-line or type-only import cannot slip by.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import ts from 'typescript';

/** Folder under src/ -> the other src folders its files may import. */
export type Deps = Readonly<Record<string, readonly string[]>>;

/** A known exception: one file allowed one import that its folder's DEPS entry does not allow. */
export interface KnownException {
  file: string;
  import: string;
  why: string;
}

export interface Violation {
  /** Path relative to the root, e.g. src/base/x.ts. */
  file: string;
  /** The import specifier as written, e.g. '../cli/main.js'. */
  import: string;
  rule: string;
}

/** Every .ts file under `dir` (not .d.ts), sorted. */
export function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...sourceFiles(p));
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) out.push(p);
  }
  return out.sort();
}

/** Every module specifier a TypeScript file imports or re-exports, including dynamic imports. */
export function importsOf(text: string): string[] {
  return ts.preProcessFile(text, true, true).importedFiles.map((f) => f.fileName);
}

/** Check `<root>/src` against `deps`; an empty list means the layering holds. */
export function checkLayering(root: string, deps: Deps, exceptions: readonly KnownException[] = []): Violation[] {
  const srcDir = resolve(root, 'src');
  const violations: Violation[] = [];
  const folderOf = (abs: string): string | undefined => {
    const rel = relative(srcDir, abs);
    if (rel.startsWith('..') || !rel.includes(sep)) return undefined;
    return rel.split(sep)[0];
  };
  for (const file of sourceFiles(srcDir)) {
    const rel = relative(root, file).split(sep).join('/');
    const own = folderOf(file);
    if (own === undefined) continue;
    const allowed = deps[own];
    for (const spec of importsOf(readFileSync(file, 'utf8'))) {
      if (!spec.startsWith('.')) continue; // node: builtins and packages
      const target = resolve(dirname(file), spec);
      const targetFolder = folderOf(target);
      let rule: string | undefined;
      if (allowed === undefined) rule = `src/${own}/ has no DEPS entry; add one to test/unit/layering.deps.ts`;
      else if (targetFolder === undefined)
        rule = `imports outside src/ (${relative(root, target).split(sep).join('/')}); src/ never imports test/, bench/ or bin/`;
      else if (targetFolder !== own && !allowed.includes(targetFolder)) {
        rule = `src/${own}/ may import ${allowed.length ? `only ${allowed.map((f) => `src/${f}/`).join(', ')}` : 'nothing outside itself'}, not src/${targetFolder}/`;
      }
      if (rule === undefined) continue;
      if (exceptions.some((x) => x.file === rel && x.import === spec)) continue;
      violations.push({ file: rel, import: spec, rule });
    }
  }
  return violations;
}

export function formatViolations(violations: readonly Violation[]): string {
  return violations.map((v) => `${v.file}: import '${v.import}': ${v.rule}`).join('\n');
}
