#!/usr/bin/env node
// Rewrite the README's error tables (<!-- error-codes: AREA --> ... <!-- /error-codes -->) from the catalogue in
// src/base/error-codes.ts. Run after `npm run build`; test/unit/error-codes.test.ts fails while they differ.
import { readFileSync, writeFileSync } from 'node:fs';
import { renderErrorTables } from '../dist/src/base/error-codes.js';

const file = new URL('../README.md', import.meta.url);
const before = readFileSync(file, 'utf8');
const after = renderErrorTables(before);
if (after === before) console.log('README.md error tables: unchanged');
else {
  writeFileSync(file, after);
  console.log('README.md error tables: rewritten from src/base/error-codes.ts');
}
