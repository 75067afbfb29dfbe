/**
 * stringifyEach (src/workers/json-batch.ts) gives exactly what JSON.stringify gives for each
 * value alone, whatever the values hold: text that looks like its cut marker, values that
 * cannot be written (BigInt, a cycle, undefined, a function), toJSON methods.
 */
import { expect, test } from 'vitest';
import fc from 'fast-check';
import { CUT_MARK_FOR_TESTS as MARK, stringifyEach } from '../../src/workers/json-batch.js';

const alone = (v: unknown): string | Error => {
  try {
    const s = JSON.stringify(v) as string | undefined;
    return s === undefined ? new Error('none') : s;
  } catch (e) {
    return e as Error;
  }
};

function same(values: unknown[]): void {
  const got = stringifyEach(values);
  expect(got.length).toBe(values.length);
  values.forEach((v, i) => {
    const want = alone(v);
    if (want instanceof Error) expect(got[i]).toBeInstanceOf(Error);
    else expect(got[i]).toBe(want);
  });
}

// Strings around the marker's form: `,"\u00ff<hex>",` written in every way a
// value could write it (as text, as a key, as an array element).
const markerish = fc.oneof(
  fc.constant('\u00ff'),
  fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), maxLength: 24 }).map((h) => `\u00ff${h}`),
  fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), maxLength: 24 }).map((h) => `x\u00ff${h}",`),
  fc.constant(',"\u00ff",'),
  fc.constant('","'),
  fc.constant('\u2028\ud800'),
);
const text = fc.oneof(fc.string(), fc.string({ unit: 'binary' }), markerish);
const value = fc.letrec((tie) => ({
  v: fc.oneof(
    { depthSize: 'small' },
    text,
    fc.double(),
    fc.integer(),
    fc.boolean(),
    fc.constant(null),
    fc.array(tie('v'), { maxLength: 4 }),
    fc.dictionary(text, tie('v'), { maxKeys: 4 }),
  ),
})).v;

test('each value comes out as JSON.stringify writes it alone, markers in the data or not', () => {
  fc.assert(
    fc.property(fc.array(fc.oneof(value, fc.array(markerish), fc.dictionary(markerish, markerish)), { maxLength: 40 }), (values) => same(values)),
    { numRuns: 400 },
  );
});

test('a value that cannot be written is an Error in its place; the others are written', () => {
  const cycle: Record<string, unknown> = { a: 1 };
  cycle['self'] = cycle;
  const values = [{ a: 1 }, { big: 10n }, 'x', undefined, cycle, () => 1, { toJSON: () => undefined }, { toJSON: () => ({ b: 2 }) }, null, { z: [undefined, () => 1] }];
  const got = stringifyEach(values);
  expect(got[0]).toBe('{"a":1}');
  expect(got[1]).toBeInstanceOf(Error);
  expect((got[1] as Error).message).toMatch(/BigInt/);
  expect(got[2]).toBe('"x"');
  expect(got[3]).toBeInstanceOf(Error);
  expect(got[4]).toBeInstanceOf(Error);
  expect(got[5]).toBeInstanceOf(Error);
  expect(got[6]).toBeInstanceOf(Error);
  expect(got[7]).toBe('{"b":2}');
  expect(got[8]).toBe('null');
  expect(got[9]).toBe('{"z":[null,null]}');
  same(values);
});

test('an array element equal to a guessed marker does not cut a record', () => {
  // The marker's random part is not known outside the module: any guess is just text.
  const guesses = Array.from({ length: 20 }, (_, i) => [`\u00ff${'0'.repeat(24)}`, { k: `\u00ff${i}` }]);
  same([{ a: guesses }, ...guesses, { b: 1 }]);
});

test('even the real marker in the data (it never leaves its thread) does not cut a record wrongly: the cut is checked', () => {
  same([{ a: [1, MARK, 2] }, { b: 1 }, [MARK], { c: [MARK, MARK] }]);
  same([{ a: 1 }, [0, MARK, 0]]);
  same([[0, MARK, 0], { a: 1 }]);
  same([MARK, MARK]);
  // A string that ends with the marker, where a cut would look: `"...MARK",`.
  same([{ a: `x${MARK}` }, [`x${MARK}`, 1], { b: 2 }, `x${MARK}`, { c: [`${MARK}`] }]);
  same([{ [`k${MARK}`]: 1, [MARK]: MARK }, { d: 1 }]);
});
