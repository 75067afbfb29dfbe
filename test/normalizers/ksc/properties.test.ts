/**
 * Properties of the ksc normalizer (fast-check):
 * - any order of the extension pairs and any slot numbers give the same `ksc` object;
 * - label and value text with CEF escapes, spaces and `=` round-trips into `labels`;
 * - syslog-format SD params in any order give the same object;
 * - nothing the decoder can produce makes it throw.
 */
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { decodeFrame } from '../../../src/codecs/decode.js';
import type { CefdEvent } from '../../../src/event.js';
import ksc, { leanKsc, normalizeKsc, type KscObject } from '../../../normalizers/ksc/index.js';

const RECEIVED_MS = Date.UTC(2024, 5, 1);
const RUNS = { numRuns: 300 };

function decode(line: string): CefdEvent {
  const r = decodeFrame(Buffer.from(line), false, RECEIVED_MS);
  if (!r.ok) throw new Error(`not an event: ${line}`);
  return r.event;
}

/** The whole ksc object (the event carries the lean one, normalizers/ksc/lean.ts). */
function normalize(line: string): KscObject {
  const event = decode(line);
  if (ksc.normalize(event) === null) throw new Error(`not normalized: ${line}`);
  const out = normalizeKsc(event);
  if (out === null) throw new Error(`not normalized: ${line}`);
  return JSON.parse(JSON.stringify(out.ksc)) as KscObject;
}

/** CEF extension value escaping (spec: backslash, equals sign, line breaks). */
const esc = (s: string) => s.replace(/\\/g, '\\\\').replace(/=/g, '\\=').replace(/\r/g, '\\r').replace(/\n/g, '\\n');

/** Text as KSC sends it: letters, Cyrillic, digits, spaces, `=`, backslashes, pipes, quotes, line breaks. */
const TEXT_CHARS = [...'aZ9 =\\|"/:.-_', 'д', 'Ж', '\n', 'é'];
const text = fc
  .array(fc.constantFrom(...TEXT_CHARS), { minLength: 1, maxLength: 16 })
  .map((cs) => cs.join(''))
  // Blanks around a value are not part of it (CEF), so keep text that starts and ends with something else.
  .filter((s) => s.trim() === s && !s.startsWith('\n') && !s.endsWith('\n') && s.length > 0);

type Family = 'cs' | 'cn' | 'flexString' | 'cfp';
interface Pair {
  label: string;
  value: string;
  family: Family;
}

/** 1..8 pairs with distinct labels; cn values are integers. */
const pairs = fc
  .uniqueArray(
    fc.record({
      label: fc.oneof(text, fc.constantFrom('TaskName', 'TaskId', 'TaskOldState', 'TaskNewState', 'GroupName', 'ProductName', 'VirusName', 'ObjectName')),
      family: fc.constantFrom<Family>('cs', 'cs', 'cs', 'cn', 'flexString', 'cfp'),
      text,
      int: fc.integer({ min: -5, max: 1_000_000 }),
    }),
    { minLength: 1, maxLength: 8, selector: (p) => p.label },
  )
  .map((ps) => ps.map((p): Pair => ({ label: p.label, family: p.family, value: p.family === 'cn' ? String(p.int) : p.text })));

/** Distinct slot numbers per family (1..999), one per pair. */
function slotsFor(ps: Pair[], seed: number[]): number[] {
  const used = new Map<Family, Set<number>>();
  return ps.map((p, i) => {
    const set = used.get(p.family) ?? new Set<number>();
    used.set(p.family, set);
    let n = 1 + (seed[i % seed.length]! % 999);
    while (set.has(n)) n = n === 999 ? 1 : n + 1;
    set.add(n);
    return n;
  });
}

function line(ps: Pair[], slots: number[], order: number[], sig = 'KLPRCI_TaskState'): string {
  const tokens = ['rt=1714978803000', 'dhost=WS-0142', 'dst=10.0.12.42', 'duser=CORP\\\\j.doe'];
  ps.forEach((p, i) => {
    const k = `${p.family}${slots[i]}`;
    tokens.push(`${k}=${esc(p.value)}`, `${k}Label=${esc(p.label)}`);
  });
  const ordered = order.map((i) => tokens[i % tokens.length]!).filter((t, i, a) => a.indexOf(t) === i);
  for (const t of tokens) if (!ordered.includes(t)) ordered.push(t);
  return `CEF:0|KasperskyLab|SecurityCenter|13.2.0.1511|${sig}|Name|1|${ordered.join(' ')}`;
}

describe('CEF: the ksc object does not depend on pair order or slot numbers', () => {
  test('any order, any slots: same object; every pair round-trips into labels', () => {
    fc.assert(
      fc.property(
        pairs,
        fc.array(fc.nat(), { minLength: 1, maxLength: 40 }),
        fc.array(fc.nat(), { minLength: 1, maxLength: 40 }),
        fc.constantFrom('KLPRCI_TaskState', 'GNRL_EV_VIRUS_FOUND', 'GNRL_EV_ATTACK_DETECTED', 'KLSRV_X'),
        (ps, slotSeed, order, sig) => {
          const canonical = normalize(line(ps, ps.map((_, i) => i + 1), [], sig));
          const shuffled = normalize(line(ps, slotsFor(ps, slotSeed), order, sig));
          expect(shuffled).toEqual(canonical);
          const want: Record<string, string | number> = {};
          for (const p of ps) want[p.label] = p.family === 'cn' ? Number(p.value) : p.value;
          expect(shuffled.labels).toEqual(want);
        },
      ),
      RUNS,
    );
  });

  test('a duplicated label resolves the same way in any order', () => {
    fc.assert(
      fc.property(text, text, text, fc.integer({ min: 1, max: 999 }), fc.integer({ min: 1, max: 999 }), fc.boolean(), (label, a, b, n1, n2, swap) => {
        fc.pre(n1 !== n2);
        const [lo, hi] = n1 < n2 ? [n1, n2] : [n2, n1];
        const tokens = [`cs${lo}=${esc(a)}`, `cs${lo}Label=${esc(label)}`, `cs${hi}=${esc(b)}`, `cs${hi}Label=${esc(label)}`];
        if (swap) tokens.reverse();
        const k = normalize(`CEF:0|KasperskyLab|SecurityCenter|1|X|N|1|${tokens.join(' ')}`);
        expect(k.labels).toEqual({ [label]: a, [`${label}#deviceCustomString${hi}`]: b });
      }),
      RUNS,
    );
  });
});

describe('syslog format: SD params in any order give the same object', () => {
  const sdEsc = (s: string) => s.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/]/g, '\\]');
  test('permutation of params', () => {
    fc.assert(
      fc.property(
        fc.shuffledSubarray(['p1', 'p2', 'p3', 'p4', 'p5', 'p6', 'p7', 'p8', 'p9', 'tdn', 'etdn', 'hdn', 'hip', 'gn', 'kscfqdn'], { minLength: 0 }),
        fc.array(text, { minLength: 15, maxLength: 15 }),
        fc.constantFrom('GNRL_EV_VIRUS_FOUND', 'GNRL_EV_ATTACK_DETECTED', 'GNRL_EV_APPLICATION_LAUNCH_DENIED', 'KLPRCI_TaskState'),
        fc.array(fc.nat(), { minLength: 16, maxLength: 16 }),
        (names, values, et, order) => {
          const params = [...names.map((n, i) => `${n}="${sdEsc(values[i]!)}"`), `et="${et}"`];
          const shuffled = params.map((p, i) => [order[i]!, p] as const).sort((x, y) => x[0] - y[0]).map((x) => x[1]);
          const mk = (ps: string[]) => `<10>1 2024-02-19T13:18:51.000Z WS-1.corp KES|11.0.0.0 - X [event@23668 ${ps.join(' ')}] a\\r\\nb`;
          const a = normalize(mk(params));
          const b = normalize(mk(shuffled));
          expect(b).toEqual(a);
          for (let i = 0; i < names.length; i++) expect(a.params![names[i]!]).toBe(values[i]);
        },
      ),
      RUNS,
    );
  });
});

/**
 * The event's object is read directly (normalizeCefLean), not cut from the whole one:
 * both must agree, warnings and their order included.
 */
function expectLeanOfWhole(event: CefdEvent, out: NonNullable<ReturnType<typeof ksc.normalize>>): void {
  const whole = normalizeKsc(event)!;
  expect(JSON.stringify(out.data)).toBe(JSON.stringify(leanKsc(whole.ksc)));
  expect(out.warnings ?? []).toEqual(whole.warnings);
}

describe('CEF: the event carries the lean form of the whole object', () => {
  const labelNames = ['TaskName', 'TaskId', 'TaskOldState', 'TaskNewState', 'VirusName', 'ThreatName', 'ObjectName', 'UserName', 'SHA256', 'MD5', 'AttackName', 'AttackerIPv4', 'AttackerIP', 'AttackedIPv4', 'AttackedPort', 'Port', 'Protocol', 'ProductName', 'X', ''];
  const standard = ['act=Blocked', 'duser=CORP\\\\u', 'src=10.1.2.3', 'dpt=445', 'proto=TCP', 'filePath=C:\\\\a.exe', 'fileHash=' + 'ab'.repeat(32), 'dhost=WS-1', 'dst=10.0.0.1'];
  test('any labels, values and standard keys, any event type', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.constantFrom('cs', 'cn', 'flexString'), fc.integer({ min: 1, max: 12 }), fc.constantFrom(...labelNames), fc.oneof(fc.integer({ min: -2, max: 70000 }).map(String), text, fc.constant('3232235777')), fc.boolean()), { maxLength: 10 }),
        fc.subarray(standard),
        fc.constantFrom('KLPRCI_TaskState', 'GNRL_EV_VIRUS_FOUND', 'GNRL_EV_OBJECT_DELETED', 'GNRL_EV_ATTACK_DETECTED', 'GNRL_EV_WEB_URL_BLOCKED', 'KLSRV_X', 'X', ''),
        fc.constantFrom('1', '4', '9', 'High', ''),
        (fields, std, sig, sev) => {
          const tokens = [...std];
          for (const [fam, n, label, value, withLabel] of fields) {
            tokens.push(`${fam}${n}=${esc(value)}`);
            if (withLabel) tokens.push(`${fam}${n}Label=${esc(label)}`);
          }
          const event = decode(`<14>1 2024-01-01T00:00:00Z h a - - - CEF:0|KasperskyLab|SecurityCenter|1|${sig}|N|${sev}|${tokens.join(' ')}`);
          const out = ksc.normalize(event);
          expect(out).not.toBeNull();
          expectLeanOfWhole(event, out!);
        },
      ),
      { numRuns: 1000 },
    );
  });
});

describe('never throws', () => {
  const keys = ['cs1', 'cs7', 'cs10', 'cs1Label', 'cs7Label', 'cn1', 'cn1Label', 'cn2Label', 'flexNumber1', 'flexNumber1Label', 'c6a1', 'c6a1Label', 'deviceCustomDate1', 'deviceCustomDate1Label', 'cfp1Label', 'dhost', 'dst', 'duser', 'msg', 'act', 'filePath', 'fileHash', 'src', 'dpt', 'proto'];
  const labels = ['TaskName', 'TaskId', 'TaskOldState', 'TaskNewState', 'GroupName', 'VirusName', 'ObjectName', 'SHA256', 'MD5', 'AttackName', 'AttackerIPv4', 'AttackedIPv4', 'AttackedPort', 'Port', '__proto__', 'constructor', ''];
  const anyValue = fc.oneof(fc.string({ maxLength: 20 }), fc.constantFrom(...labels), fc.integer().map(String), fc.constant('4294967296'));

  test('random KSC CEF extensions', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.constantFrom(...keys), anyValue), { maxLength: 20 }),
        fc.constantFrom('KLPRCI_TaskState', 'GNRL_EV_VIRUS_FOUND', 'GNRL_EV_ATTACK_DETECTED', 'GNRL_EV_APPLICATION_LAUNCH_DENIED', 'X', ''),
        fc.oneof(fc.constantFrom('1', '4', '0', 'High', ''), fc.string({ maxLength: 3 })),
        (kv, sig, sev) => {
          const ext = kv.map(([k, v]) => `${k}=${esc(v)}`).join(' ');
          const r = decodeFrame(Buffer.from(`CEF:0|KasperskyLab|SecurityCenter|1|${sig}|N|${sev.replace(/\|/g, '')}|${ext}`), false, RECEIVED_MS);
          if (!r.ok || !ksc.accepts(r.event)) return;
          const out = ksc.normalize(r.event);
          expect(out).not.toBeNull();
          expect(() => JSON.stringify(out)).not.toThrow();
          expectLeanOfWhole(r.event, out!);
        },
      ),
      { numRuns: 500 },
    );
  });

  test('random syslog-format SD and message', () => {
    const sdEsc = (s: string) => s.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/]/g, '\\]');
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.constantFrom('p1', 'p2', 'p3', 'p4', 'p5', 'p6', 'p7', 'p8', 'p9', 'hdn', 'hip', 'gn', 'tdn', 'etdn', 'kscfqdn'), anyValue), { maxLength: 12 }),
        fc.constantFrom('GNRL_EV_VIRUS_FOUND', 'GNRL_EV_ATTACK_DETECTED', 'GNRL_EV_APPLICATION_LAUNCH_DENIED', 'GNRL_EV_OBJECT_BLOCKED', 'KLPRCI_TaskState', ''),
        fc.string({ maxLength: 40 }),
        (kv, et, msg) => {
          const seen = new Set<string>();
          const ps = kv.filter(([k]) => !seen.has(k) && seen.add(k)).map(([k, v]) => `${k}="${sdEsc(v)}"`);
          const r = decodeFrame(Buffer.from(`<10>1 2024-02-19T13:18:51.000Z h KES|11.0.0.0 - X [event@23668 ${ps.join(' ')} et="${et}"] ${msg}`), false, RECEIVED_MS);
          if (!r.ok || !ksc.accepts(r.event)) return;
          const out = ksc.normalize(r.event);
          expect(out).not.toBeNull();
          expect(() => JSON.stringify(out)).not.toThrow();
        },
      ),
      { numRuns: 500 },
    );
  });

  test('arbitrary frames: accepts and normalize never throw', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), fc.constantFrom('', 'CEF:0|KasperskyLab|SecurityCenter|', '<10>1 2024-02-19T13:18:51.000Z h KES|11.0.0.0 - X [event@23668 et="'), (s, prefix) => {
        const r = decodeFrame(Buffer.from(prefix + s), false, RECEIVED_MS);
        if (!r.ok) return;
        if (ksc.accepts(r.event)) expect(() => JSON.stringify(ksc.normalize(r.event))).not.toThrow();
      }),
      { numRuns: 1000 },
    );
  });
});
