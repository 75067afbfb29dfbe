/** The repeat limiter behind rate-limited log lines: counts held back, including batches of n. */
import { expect, test } from 'vitest';
import { RepeatLimiter, withRepeats } from '../../src/telemetry/telemetry.js';

test('the first occurrence is logged, repeats within the interval are held and reported with the next line', () => {
  const l = new RepeatLimiter(1000);
  expect(l.check('k', 0)).toBe(0);
  expect(l.check('k', 10)).toBe(-1);
  expect(l.check('k', 20, 5)).toBe(-1);
  expect(l.check('other', 30)).toBe(0);
  expect(l.check('k', 1000)).toBe(6);
  expect(l.check('k', 1001)).toBe(-1);
  expect(l.check('k', 2000)).toBe(1);
});

test('a batch of n logs one line and holds n - 1', () => {
  const l = new RepeatLimiter(1000);
  expect(l.check('k', 0, 10)).toBe(0);
  expect(l.check('k', 1000, 3)).toBe(9);
  expect(l.check('k', 2000)).toBe(2);
  expect(withRepeats({ a: 1 }, 'msg', 2)).toEqual([{ a: 1, repeated: 2 }, 'msg (and 2 more like it since the last report)']);
  expect(withRepeats({ a: 1 }, 'msg', 0)).toEqual([{ a: 1 }, 'msg']);
});
