/**
 * The layering of src/, in one place (like playwright's DEPS lists): each folder and the other src folders its
 * files may import. A folder may always import its own files; `node:` modules and npm packages are not checked
 * here. Imports point down only (ARCHITECTURE.md, "Layers"): adding a folder to a list must not create a cycle,
 * and nothing lists lab or cli except cli. test/unit/layering.test.ts checks src/ against this file.
 */
import type { Deps, KnownException } from '../helpers/layering.js';

export const DEPS: Deps = {
  base: [],
  config: ['base'],
  wire: ['base'],
  netns: ['base'],
  sys: ['base', 'netns'],
  netlink: ['base', 'netns', 'sys'],
  store: ['base'],
  subnet: ['base', 'config', 'store'],
  overlay: ['base', 'config', 'netlink', 'subnet'],
  cni: ['base', 'config', 'netlink', 'sys'],
  agent: ['base', 'config', 'netlink', 'overlay', 'store', 'subnet'],
  trace: ['base', 'netlink', 'overlay', 'sys', 'wire'],
  install: ['base', 'cni'],
  lab: ['base', 'cni', 'config', 'netlink', 'netns', 'overlay', 'subnet'],
  cli: ['agent', 'base', 'cni', 'config', 'install', 'lab', 'netlink', 'netns', 'overlay', 'store', 'subnet', 'trace', 'wire'],
};

/** Imports that break the rule above but are allowed for now, each with the reason. None today. */
export const KNOWN_EXCEPTIONS: readonly KnownException[] = [];
