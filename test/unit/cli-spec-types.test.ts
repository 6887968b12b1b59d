/**
 * Typed command specs: run() gets each value typed as its spec says. The type checks are compile-time (this file
 * does not build when an inferred type is wrong: `npm run build` fails on a misplaced @ts-expect-error too); the
 * runtime checks show the parser yields exactly the values those types promise.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { defineCommand, defineOptions, parseCommand, type OptionsOf, type ParsedArgs } from '../../src/cli/spec.js';

/** Compile-time equality of two types: `check<Equal<A, B>>(true)` does not build unless A and B are the same. */
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
function check<T extends true>(ok: T): T {
  return ok;
}

const shared = defineOptions({
  store: { type: 'string', description: 'store URL', default: 'sqlite:/x.db', env: 'T_STORE' },
  user: { type: 'string', description: 'user' },
});

const cmd = defineCommand({
  name: 'tulle typed',
  summary: 'a command for type tests',
  options: {
    ...shared,
    nodes: { type: 'integer', description: 'hosts', default: 3, min: 1, max: 64 },
    port: { type: 'integer', description: 'ports', multiple: true },
    mode: { type: 'string', description: 'mode', choices: ['bridge', 'routed'], default: 'bridge' },
    proto: { type: 'string', description: 'proto', choices: ['icmp', 'udp'] },
    tag: { type: 'string', description: 'tags', multiple: true },
    json: { type: 'boolean', description: 'JSON output' },
    keep: { type: 'boolean', description: 'keep', default: false },
  },
  positionals: [
    { name: 'lab', description: 'lab', required: true },
    { name: 'file', description: 'file' },
    { name: 'command', description: 'command', rest: true },
  ],
  async run(args) {
    check<Equal<typeof args.options.store, string>>(true);
    check<Equal<typeof args.options.user, string | undefined>>(true);
    check<Equal<typeof args.options.nodes, number>>(true);
    check<Equal<typeof args.options.port, number[] | undefined>>(true);
    check<Equal<typeof args.options.mode, 'bridge' | 'routed'>>(true);
    check<Equal<typeof args.options.proto, 'icmp' | 'udp' | undefined>>(true);
    check<Equal<typeof args.options.tag, string[] | undefined>>(true);
    check<Equal<typeof args.options.json, boolean | undefined>>(true);
    check<Equal<typeof args.options.keep, boolean>>(true);
    check<Equal<typeof args.positionals.lab, string>>(true);
    check<Equal<typeof args.positionals.file, string | undefined>>(true);
    check<Equal<typeof args.positionals.command, string[]>>(true);
    // @ts-expect-error an option the spec does not declare
    void args.options.nope;
    // @ts-expect-error a positional the spec does not declare
    void args.positionals.nope;
    return 0;
  },
});

test('parsed values have the types the spec declares', async () => {
  const a = parseCommand(
    cmd,
    ['h1', 'f.pcap', '--nodes', '5', '--port', '4789', '--port=8472', '--mode', 'routed', '--tag', 'x', '--json', '--', 'ping', '-c1'],
    {},
  );
  check<Equal<typeof a, ParsedArgs<NonNullable<typeof cmd.options>, NonNullable<typeof cmd.positionals>>>>(true);
  check<Equal<OptionsOf<typeof cmd>, typeof a.options>>(true);
  assert.deepEqual(a.options, {
    store: 'sqlite:/x.db',
    user: undefined,
    nodes: 5,
    port: [4789, 8472],
    mode: 'routed',
    proto: undefined,
    tag: ['x'],
    json: true,
    keep: false,
  });
  assert.deepEqual(a.positionals, { lab: 'h1', file: 'f.pcap', command: ['ping', '-c1'] });
  // Each value's runtime type is the declared one, also from the environment.
  const b = parseCommand(cmd, ['h1'], { T_STORE: 'etcd://127.0.0.1:2379' });
  assert.equal(b.options.store, 'etcd://127.0.0.1:2379');
  assert.equal(b.positionals.file, undefined);
  assert.deepEqual(b.positionals.command, []);
  assert.equal(await cmd.run(b), 0);
});

test('a command without options or positionals gets empty, typed values', () => {
  const bare = defineCommand({
    name: 'tulle bare',
    summary: 'nothing to give',
    run: async ({ options, positionals }) => Object.keys(options).length + Object.keys(positionals).length,
  });
  const a = parseCommand(bare, [], {});
  check<Equal<keyof typeof a.options, never>>(true);
  assert.deepEqual(a, { options: {}, positionals: {}, defaulted: new Set() });
});
