import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatCommandHelp, parseCommand, type CommandSpec } from '../../src/cli/spec.js';
import { UsageError } from '../../src/base/errors.js';

const spec: CommandSpec = {
  name: 'tulle demo-cmd',
  summary: 'a command for tests',
  options: {
    nodes: { type: 'integer', description: 'hosts', default: 3, min: 1, max: 64 },
    underlay: { type: 'string', description: 'kind', choices: ['switch', 'routed'], default: 'switch' },
    store: { type: 'string', description: 'store URL', env: 'TULLE_STORE' },
    json: { type: 'boolean', description: 'JSON output' },
  },
  positionals: [
    { name: 'target', description: 'where', required: true },
    { name: 'cmd', description: 'command', rest: true },
  ],
  run: async () => 0,
};

test('options parse with defaults, ranges, choices and environment fallback', () => {
  const a = parseCommand(spec, ['h1', '--nodes', '5', '--json', '--', 'ping', '-c1'], { TULLE_STORE: 'sqlite:/tmp/x.db' });
  assert.deepEqual(a.options, { nodes: 5, underlay: 'switch', store: 'sqlite:/tmp/x.db', json: true });
  assert.deepEqual(a.positionals, { target: 'h1', cmd: ['ping', '-c1'] });
  const b = parseCommand(spec, ['h1', '--store', 'etcd://127.0.0.1:2379'], { TULLE_STORE: 'sqlite:/x' });
  assert.equal(b.options.store, 'etcd://127.0.0.1:2379');
});

test('errors name the option and the rule', () => {
  const cases: Array<[string[], RegExp]> = [
    [['h1', '--nodes', '0'], /--nodes: 0 is out of range \(must be 1\.\.64\)/],
    [['h1', '--nodes', 'x'], /--nodes: "x" is not a whole number/],
    [['h1', '--underlay', 'mesh'], /--underlay: "mesh" is not one of switch, routed/],
    [['h1', '--bogus'], /unknown option '--bogus'/],
    [[], /missing TARGET/],
  ];
  for (const [argv, re] of cases)
    assert.throws(
      () => parseCommand(spec, argv, {}),
      (e: unknown) => e instanceof UsageError && re.test(e.message) && e.exitCode === 2,
      argv.join(' '),
    );
});

test('help lists every option with its default, range and environment variable', () => {
  const help = formatCommandHelp(spec);
  assert.match(help, /--nodes N\s+hosts \(range 1\.\.64; default: 3\)/);
  assert.match(help, /--store VALUE\s+store URL \(env: TULLE_STORE\)/);
  assert.match(help, /Usage: tulle demo-cmd \[options\] TARGET \[-- CMD\.\.\.\]/);
});

test('a negative number given as its own argument is one clear line', () => {
  assert.throws(
    () => parseCommand(spec, ['h1', '--nodes', '-1'], {}),
    (e: unknown) =>
      e instanceof UsageError && !e.message.includes('\n') && /--nodes needs a value; a value starting with '-' is written --nodes=-N/.test(e.message),
  );
  assert.throws(() => parseCommand(spec, ['h1', '--nodes=-1'], {}), /--nodes: -1 is out of range/);
});

test('--help is answered even when a required argument is missing', () => {
  assert.equal(parseCommand(spec, ['--help'], {}).options.help, true);
  assert.equal(parseCommand(spec, ['-h'], {}).options.help, true);
});
