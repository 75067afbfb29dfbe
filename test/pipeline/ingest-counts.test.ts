/**
 * processEvent's per-normalizer, per-type counts (cefd_events_normalized_total): the
 * `normalizer\ttype` keys are made once per pair and remembered up to a bound per
 * normalizer (src/pipeline/ingest.ts normalizedKey); past the bound they are made per
 * event. The counts must be the same either way.
 */
import { expect, test } from 'vitest';
import { FrameCounts, processEvent, type IngestEnv } from '../../src/pipeline/ingest.js';
import { compileRoutes } from '../../src/pipeline/router.js';
import type { Normalizer } from '../../src/pipeline/normalize.js';
import type { CefdEvent } from '../../src/event.js';

/** A normalizer that gives event n the type `t<n mod types>`. */
function typed(name: string, types: number): Normalizer {
  return {
    name,
    accepts: () => true,
    normalize: (e) => ({ data: { n: e.n }, type: `t${(e.n as number) % types}` }),
  };
}

test('normalized events are counted per normalizer and type, past the remembered types too', () => {
  const env: IngestEnv = { defaultZone: 'UTC', includeRaw: false, routes: compileRoutes([]) };
  const counts = new FrameCounts();
  const origin = { listener: 'tcp', peer: '127.0.0.1:1' };
  // 300 types for one normalizer (more than it remembers), 3 for another, each seen 3 times.
  for (const [norm, types] of [[typed('many', 300), 300], [typed('few', 3), 3]] as const) {
    for (let n = 0; n < 3 * types; n++) {
      const event = { schema: 2, timestamp: '2026-01-01T00:00:00.000Z', received: '2026-01-01T00:00:00.000Z', n } as unknown as CefdEvent;
      expect(processEvent(event, origin, [norm], env, counts, [], 0)).toBe(0);
      expect(event.many ?? event.few).toEqual({ n });
    }
  }
  expect(counts.parsed).toBe(909);
  expect(counts.normalized.size).toBe(303);
  for (let t = 0; t < 300; t++) expect(counts.normalized.get(`many\tt${t}`)).toBe(3);
  expect([...counts.normalized].filter(([k]) => k.startsWith('few\t'))).toEqual([['few\tt0', 3], ['few\tt1', 3], ['few\tt2', 3]]);
});
