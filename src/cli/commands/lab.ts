import type { CommandGroup } from '../spec.js';

export const labGroup: CommandGroup = { name: 'lab', summary: 'Build, inspect and tear down clusters made of network namespaces', subcommands: [] };
