// The data-plane benchmark's RTT percentiles: ping prints RTTs under 1 ms in whole microseconds, and the guard
// rows compare two p50s against a 2% goal, so the percentiles are interpolated inside each reading's step.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { percentiles, steppedPercentiles, steppedReading, type SteppedReading } from '../../bench/common.js';

const readings = (spec: Array<[string, number]>): SteppedReading[] =>
  spec.flatMap(([text, count]) => Array.from({ length: count }, () => steppedReading(text)));
const close = (actual: number, expected: number, what: string) => assert.ok(Math.abs(actual - expected) < 1e-5, `${what}: ${actual}, expected ${expected}`);

test("a reading's step is its last printed digit, as ping prints it", () => {
  assert.deepEqual(steppedReading('0.024'), { value: 0.024, step: 0.001 });
  assert.deepEqual(steppedReading('1.23'), { value: 1.23, step: 0.01 });
  assert.deepEqual(steppedReading('12.3'), { value: 12.3, step: 0.1 });
  assert.deepEqual(steppedReading('123'), { value: 123, step: 1 });
  for (const bad of ['', 'abc', '-1', '1e3', '0.02.4', ' 1', 'NaN', '.5'])
    assert.throws(
      () => steppedReading(bad),
      (e: Error) => e.message.includes(JSON.stringify(bad)),
      `"${bad}" is refused, naming it`,
    );
});

test('p50 falls inside the step at the share of readings on either side, where nearest rank sees only whole steps', () => {
  // All alike: the middle of their step.
  close(steppedPercentiles(readings([['0.024', 100]])).p50, 0.024, 'all 24 us');
  // Half and half: the boundary between the two steps.
  close(
    steppedPercentiles(
      readings([
        ['0.024', 50],
        ['0.025', 50],
      ]),
    ).p50,
    0.0245,
    'half 24, half 25',
  );
  // Three quarters at 24 us: the median is two thirds of the way through the 24 us step.
  const mostly24 = readings([
    ['0.024', 75],
    ['0.025', 25],
  ]);
  close(steppedPercentiles(mostly24).p50, 0.0235 + (0.5 / 0.75) * 0.001, 'three quarters 24');
  // Nearest rank gives 24 us for both of these, which differ by a quarter of the readings.
  const more25 = readings([
    ['0.024', 55],
    ['0.025', 45],
  ]);
  assert.equal(percentiles(mostly24.map((r) => r.value)).p50, percentiles(more25.map((r) => r.value)).p50);
  assert.ok(steppedPercentiles(more25).p50 > steppedPercentiles(mostly24).p50, 'more slow readings, a higher p50');
});

test('p99 interpolates in the tail, across readings of different steps', () => {
  // 98 readings of 20 us, 2 of 1.50 ms (printed to 10 us): p99 is half-way through the slow readings' step.
  const r = steppedPercentiles(
    readings([
      ['0.020', 98],
      ['1.50', 2],
    ]),
  );
  close(r.p99, 1.495 + 0.5 * 0.01, 'p99');
  close(r.p50, 0.02, 'p50');
  assert.equal(r.min, 0.02);
  assert.equal(r.max, 1.5);
  close(r.mean, (98 * 0.02 + 2 * 1.5) / 100, 'mean of the values');
  assert.equal(r.samples, 100);
});

test('never outside the readings by more than half a step, and rising with q', () => {
  // A fixed spread of whole-microsecond readings (no randomness: the same input every run).
  const spec: Array<[string, number]> = [];
  for (let us = 9; us <= 40; us++) spec.push([(us / 1000).toFixed(3), 1 + ((us * 7) % 11)]);
  const r = steppedPercentiles(readings(spec));
  const exact = percentiles(readings(spec).map((x) => x.value));
  assert.ok(Math.abs(r.p50 - exact.p50) <= 0.0005 + 1e-9, `p50 ${r.p50} vs nearest rank ${exact.p50}`);
  assert.ok(Math.abs(r.p99 - exact.p99) <= 0.0005 + 1e-9, `p99 ${r.p99} vs nearest rank ${exact.p99}`);
  assert.ok(r.p50 <= r.p99);
  assert.throws(() => steppedPercentiles([]), /no samples/);
});
