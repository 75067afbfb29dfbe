/**
 * docs/reference/cef-policy.md "Conformance test": every vector of fixtures/cef/vectors.json
 * either matches exactly or is a listed deviation with the POLICY row that explains it.
 */
import { readFileSync } from 'node:fs';
import { expect, test } from 'vitest';
import { compareVector, type Vector } from '../helpers/conformance.js';

const vectors = JSON.parse(readFileSync(new URL('../../fixtures/cef/vectors.json', import.meta.url), 'utf8')) as Vector[];
const deviations = (
  JSON.parse(readFileSync(new URL('./conformance-deviations.json', import.meta.url), 'utf8')) as {
    deviations: Record<string, { row: number; why: string }>;
  }
).deviations;

test('vectors.json holds the 333 vectors of the 11 public parsers\' test suites (docs/reference/cef-policy.md)', () => {
  expect(vectors).toHaveLength(333);
  expect(new Set(vectors.map((v) => v.id)).size).toBe(333);
});

test('every deviation names a vector and a POLICY row', () => {
  const ids = new Set(vectors.map((v) => v.id));
  for (const [id, d] of Object.entries(deviations)) {
    expect(ids.has(id), `deviation ${id} names no vector`).toBe(true);
    expect(Number.isInteger(d.row) && d.row >= 1 && d.row <= 18, `deviation ${id} row`).toBe(true);
    expect(d.why.startsWith(`Row ${d.row}:`), `deviation ${id} explanation`).toBe(true);
  }
});

test('each vector matches exactly or is a listed deviation', () => {
  let matched = 0;
  let deviated = 0;
  const unexplained: string[] = [];
  const stale: string[] = [];
  for (const v of vectors) {
    const diffs = compareVector(v);
    const listed = Object.prototype.hasOwnProperty.call(deviations, v.id);
    if (diffs.length === 0) {
      matched++;
      if (listed) stale.push(v.id);
    } else if (listed) {
      deviated++;
    } else {
      unexplained.push(`${v.id}:\n    ${diffs.join('\n    ')}`);
    }
  }
  console.log(`CEF conformance: ${matched} matched, ${deviated} listed deviations, ${unexplained.length} unexplained (of ${vectors.length})`);
  expect(unexplained, 'vectors neither matched nor listed as deviations').toEqual([]);
  expect(stale, 'listed as deviations but now match: remove them from conformance-deviations.json').toEqual([]);
  expect(matched + deviated).toBe(vectors.length);
});

test('no vector makes the decoder throw, with or without a syslog header in front', () => {
  for (const v of vectors) {
    expect(() => compareVector({ ...v, input: `<13>1 2026-11-28T10:00:00Z host app - - - ${v.input}`, input_base64: undefined })).not.toThrow();
  }
});
