/**
 * Golden files of the ksc normalizer: every input line of fixtures/ksc/samples.txt and
 * fixtures/ksc/fixtures-draft.txt (the captures and composed lines that
 * docs/reference/ksc-format.md cites), plus the draft's STREAM fixtures, each in fixtures/ksc/golden/<name>.input.txt with its expected result in
 * <name>.json (`events`: one entry per frame). Each frame goes through the real path:
 * framer (stream fixtures) → decodeFrame → normalizeEvent([ksc]).
 *
 * Rewrite the `events` of every golden file:
 *   UPDATE_GOLDEN=1 npx vitest run test/normalizers/ksc/golden.test.ts
 * and then read every changed file against docs/reference/ksc-format.md before keeping it.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';
import { decodeFrame } from '../../../src/codecs/decode.js';
import { Framer } from '../../../src/codecs/framing/framer.js';
import { normalizeEvent } from '../../../src/pipeline/normalize.js';
import ksc, { kscView } from '../../../normalizers/ksc/index.js';

const FIXTURES = fileURLToPath(new URL('../../../fixtures/ksc/', import.meta.url));
const GOLDEN = `${FIXTURES}golden/`;
/** Fixed reception time, so RFC 3164 year inference and `received` are deterministic. */
const RECEIVED_MS = Date.UTC(2024, 5, 1, 12, 0, 0);
const UPDATE = process.env['UPDATE_GOLDEN'] === '1';

interface Golden {
  source: string;
  comment: string;
  /** `line`: the input is one frame; `stream`: bytes for the framer, cut at `cuts`. */
  mode: 'line' | 'stream';
  cuts?: number[];
  events: unknown[] | null;
}

/** What one frame gives: a dead letter, or an event with what the normalizer did to it. */
function runFrame(frame: Buffer): unknown {
  const r = decodeFrame(frame, false, RECEIVED_MS);
  if (!r.ok) return { decoded: false, failure: r.failure.code };
  const event = r.event;
  const before = JSON.stringify(event);
  const warningsBefore = event.warnings?.length ?? 0;
  const outcome = normalizeEvent(event, [ksc]);
  if (outcome.kind !== 'normalized') {
    // Not accepted: the event passes through unchanged.
    expect(JSON.stringify(event)).toBe(before);
    return { decoded: true, normalizer: null, cef: event.cef !== undefined };
  }
  return {
    decoded: true,
    normalizer: outcome.normalizer,
    type: outcome.type,
    // What the event carries (the derived fields), then the whole object rebuilt from the
    // event (normalizers/ksc/lean.ts), which is what schema 1 carried.
    ksc: event.ksc,
    kscView: kscView(event),
    warnings: event.warnings?.slice(warningsBefore) ?? [],
  };
}

function run(g: Golden, input: Buffer): unknown[] {
  if (g.mode === 'line') return [runFrame(input)];
  const frames: Buffer[] = [];
  const framer = new Framer({
    frame: (b, _mode, truncated) => {
      expect(truncated).toBe(false);
      frames.push(Buffer.from(b));
    },
    discarded: () => {},
    notice: () => {},
  });
  let prev = 0;
  for (const c of g.cuts ?? []) {
    framer.push(input.subarray(prev, c));
    prev = c;
  }
  framer.push(input.subarray(prev));
  framer.end();
  return frames.map(runFrame);
}

const names = readdirSync(GOLDEN)
  .filter((f) => f.endsWith('.input.txt'))
  .map((f) => f.slice(0, -'.input.txt'.length))
  .sort();

describe('ksc golden files', () => {
  test('there are golden files', () => {
    expect(names.length).toBeGreaterThanOrEqual(54);
  });

  for (const name of names) {
    test(name, () => {
      const input = readFileSync(`${GOLDEN}${name}.input.txt`);
      const golden = JSON.parse(readFileSync(`${GOLDEN}${name}.json`, 'utf8')) as Golden;
      // JSON round trip: what an output would write (undefined fields left out).
      const got = JSON.parse(JSON.stringify(run(golden, input))) as unknown[];
      if (UPDATE) {
        golden.events = got;
        writeFileSync(`${GOLDEN}${name}.json`, JSON.stringify(golden, null, 2) + '\n');
        return;
      }
      expect(golden.events, `${name}.json has no events yet: run with UPDATE_GOLDEN=1 and review`).not.toBeNull();
      expect(got).toEqual(golden.events);
    });
  }
});

describe('every line input is one frame through the stream framer (TCP, TLS, cefd parse)', () => {
  // The line goldens are decoded as one frame (as a UDP datagram is); over a stream the
  // framer must find the same frame, whatever the line starts with (`1 2024-...` from a
  // relay that stripped the PRI is not an octet count).
  for (const name of names) {
    const golden = JSON.parse(readFileSync(`${GOLDEN}${name}.json`, 'utf8')) as Golden;
    if (golden.mode !== 'line') continue;
    test(name, () => {
      const input = readFileSync(`${GOLDEN}${name}.input.txt`);
      const frames: Buffer[] = [];
      const framer = new Framer({ frame: (b) => frames.push(Buffer.from(b)), discarded: () => {}, notice: () => {} });
      framer.push(Buffer.concat([input, Buffer.from('\n')]));
      framer.end();
      expect(frames.map((f) => f.toString('utf8'))).toEqual([input.toString('utf8')]);
    });
  }
});

describe('every line of the shared KSC fixture files has a golden file', () => {
  const inputs = new Set(names.map((n) => readFileSync(`${GOLDEN}${n}.input.txt`, 'utf8')));
  const goldens = names.map((n) => JSON.parse(readFileSync(`${GOLDEN}${n}.json`, 'utf8')) as Golden);

  for (const file of ['samples.txt', 'fixtures-draft.txt']) {
    test(file, () => {
      const lines = readFileSync(`${FIXTURES}${file}`, 'utf8').split('\n');
      const missing: string[] = [];
      let count = 0;
      lines.forEach((line, i) => {
        let input: string | undefined;
        if (line.startsWith('# STREAM-LF: ')) input = line.slice('# STREAM-LF: '.length).replaceAll('<LF>', '\n');
        else if (line.startsWith('# STREAM-OCTET: ')) input = line.slice('# STREAM-OCTET: '.length);
        else if (line.startsWith('# [COMPOSED] partial read')) {
          if (!goldens.some((g) => g.source === `${file} line ${i + 1}` && g.cuts !== undefined)) missing.push(`line ${i + 1} (partial read)`);
          count++;
          return;
        } else if (line !== '' && !line.startsWith('#')) input = line;
        if (input === undefined) return;
        count++;
        if (!inputs.has(input)) missing.push(`line ${i + 1}: ${line.slice(0, 80)}`);
      });
      expect(missing).toEqual([]);
      expect(count).toBeGreaterThan(0);
    });
  }
});
