/**
 * Writing and removing the files of render.ts under a root directory (`--root`, default `/`; paths inside the
 * files are the target system's, as with DESTDIR). What was written is recorded with each file's SHA-256 in a
 * manifest, `<root>/var/lib/tulle/install.json`, so that:
 *   - install is idempotent: a file still as tulle wrote it is rewritten in place;
 *   - a file tulle did not write (not in the manifest, or changed since) is never overwritten unless forced;
 *   - uninstall removes exactly the files the manifest names, and keeps (and reports) any changed since.
 * Each file is written to a temporary name in its directory and renamed over the target, so a reader never sees
 * half a file and a symlink at the target is replaced, never followed.
 */
import { createHash } from 'node:crypto';
import { lstatSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import { InvalidValueError, TulleError } from '../base/errors.js';
import { CniError } from '../cni/errors.js';
import { parseNetConf } from '../cni/netconf.js';
import { renderAll, renderConflist, type InstallSettings } from './render.js';

export const MANIFEST = '/var/lib/tulle/install.json';

export class InstallError extends TulleError {
  constructor(message: string, code = 'TLE_INSTALL') {
    super(code, message);
  }
}

interface Manifest {
  files: Record<string, string>;
}

export interface FileOutcome {
  path: string;
  action: 'written' | 'unchanged' | 'replaced' | 'removed' | 'kept' | 'absent';
  /** Why a file was kept (uninstall). */
  reason?: string;
}

const sha256 = (text: string | Buffer): string => createHash('sha256').update(text).digest('hex');
const under = (root: string, path: string): string => join(root, path);

/**
 * The manifest as recorded; an entry that is not a plain absolute path (no "..", nothing to normalise) or whose
 * hash is not a SHA-256 is dropped, so an edited manifest can never make uninstall reach outside the root.
 */
function readManifest(root: string): Manifest {
  let m: Manifest;
  try {
    m = JSON.parse(readFileSync(under(root, MANIFEST), 'utf8')) as Manifest;
  } catch {
    return { files: {} };
  }
  const files: Record<string, string> = {};
  if (m && typeof m.files === 'object' && m.files !== null) {
    for (const [path, hash] of Object.entries(m.files)) {
      if (path.startsWith('/') && normalize(path) === path && !path.split('/').includes('..') && typeof hash === 'string' && /^[0-9a-f]{64}$/.test(hash))
        files[path] = hash;
    }
  }
  return { files };
}

function writeAtomic(path: string, text: string, mode: number): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  const tmp = `${path}.tulle-${process.pid}.tmp`;
  try {
    writeFileSync(tmp, text, { mode, flag: 'wx' });
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

/** The current contents' hash, undefined if nothing is there; a directory or other non-file is an error. */
function currentHash(path: string): string | undefined {
  let st;
  try {
    st = lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  if (st.isSymbolicLink()) return `symlink`;
  if (!st.isFile()) throw new InstallError(`${path} exists and is not a file: remove it or choose another directory`, 'TLE_INSTALL_CONFLICT');
  return sha256(readFileSync(path));
}

export function checkRoot(root: string): void {
  let st;
  try {
    st = lstatSync(root);
  } catch {
    throw new InstallError(`--root: ${JSON.stringify(root)} does not exist (it must be an existing directory)`, 'TLE_INSTALL_ROOT');
  }
  if (!st.isDirectory()) throw new InstallError(`--root: ${JSON.stringify(root)} is not a directory`, 'TLE_INSTALL_ROOT');
}

/**
 * The conflist's tulle entry checked by the plugin's own rules (what the runtime will hand it), so a bad network
 * name or path is refused at install time with the plugin's message rather than at the first container.
 */
export function checkSettings(s: InstallSettings): void {
  const list = JSON.parse(renderConflist(s)) as { cniVersion: string; name: string; plugins: Array<Record<string, unknown>> };
  const option: Record<string, string> = { name: '--network-name', cniVersion: '--cni-version', subnetFile: '--subnet-file', dataDir: '--cni-data-dir' };
  try {
    parseNetConf(JSON.stringify({ cniVersion: list.cniVersion, name: list.name, ...list.plugins[0] }));
  } catch (err) {
    if (!(err instanceof CniError)) throw err;
    const field = /^(\w+):/.exec(err.message)?.[1] ?? '';
    const flag = option[field];
    throw new TulleError('TLE_INSTALL_SETTING', flag ? `${flag}${err.message.slice(field.length)}` : err.message, { exitCode: 2 });
  }
  for (const [flag, dir] of [
    ['--cni-bin-dir', s.cniBinDir],
    ['--cni-conf-dir', s.cniConfDir],
  ] as const) {
    if (!dir.startsWith('/') || dir.includes('\0')) throw new InvalidValueError(flag, dir, 'must be an absolute path', 'TLE_INSTALL_SETTING');
  }
}

/** Write every file; refuses (before writing anything) when a file tulle did not write is in the way, unless `force`. */
export function install(root: string, settings: InstallSettings, options: { force?: boolean } = {}): FileOutcome[] {
  checkRoot(root);
  checkSettings(settings);
  const manifest = readManifest(root);
  const files = renderAll(settings);
  const plan = files.map((f) => {
    const target = under(root, f.path);
    const have = currentHash(target);
    const ours = have !== undefined && manifest.files[f.path] === have;
    return { ...f, target, have, ours };
  });
  const foreign = plan.filter((p) => p.have !== undefined && !p.ours);
  if (foreign.length > 0 && !options.force) {
    throw new InstallError(
      `${foreign.map((p) => p.target).join(', ')} ${foreign.length === 1 ? 'exists and was' : 'exist and were'} not written by tulle install (or changed since): not overwritten; move ${foreign.length === 1 ? 'it' : 'them'} away or use --force`,
      'TLE_INSTALL_CONFLICT',
    );
  }
  const out: FileOutcome[] = [];
  for (const p of plan) {
    const hash = sha256(p.text);
    if (p.have === hash) {
      out.push({ path: p.target, action: 'unchanged' });
    } else {
      writeAtomic(p.target, p.text, p.mode);
      out.push({ path: p.target, action: p.have === undefined ? 'written' : 'replaced' });
    }
    manifest.files[p.path] = hash;
  }
  // A file of an earlier install that this one no longer writes (e.g. --no-systemd now) stays recorded, so
  // uninstall still removes it.
  writeAtomic(under(root, MANIFEST), JSON.stringify(manifest, null, 2) + '\n', 0o644);
  return out;
}

/** Remove the files the manifest names that are still as written; then the manifest. */
export function uninstall(root: string, options: { force?: boolean } = {}): FileOutcome[] {
  checkRoot(root);
  const manifest = readManifest(root);
  const out: FileOutcome[] = [];
  const left: Record<string, string> = {};
  for (const [path, hash] of Object.entries(manifest.files)) {
    const target = under(root, path);
    const have = currentHash(target);
    if (have === undefined) {
      out.push({ path: target, action: 'absent' });
    } else if (have === hash || options.force) {
      rmSync(target, { force: true });
      out.push({ path: target, action: 'removed' });
    } else {
      left[path] = hash;
      out.push({ path: target, action: 'kept', reason: 'changed since tulle install wrote it (remove it yourself, or use --force)' });
    }
  }
  if (Object.keys(left).length > 0) writeAtomic(under(root, MANIFEST), JSON.stringify({ files: left }, null, 2) + '\n', 0o644);
  else rmSync(under(root, MANIFEST), { force: true });
  return out;
}
