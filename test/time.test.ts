import fc from 'fast-check';
import { expect, test } from 'vitest';
import { isoFromMs, parseRfc3339, parseTextTime, cefTimeToIso, utcMs } from '../src/time.js';

test('isoFromMs equals Date#toISOString over the whole range', () => {
  fc.assert(
    fc.property(fc.integer({ min: -8.64e15, max: 8.64e15 }), (ms) => {
      expect(isoFromMs(ms)).toBe(new Date(ms).toISOString());
    }),
    { numRuns: 5000 },
  );
  for (const ms of [0, -1, 1, -62_167_219_200_000, -62_167_219_200_001, 253_402_300_799_999, 253_402_300_800_000, 951_782_400_000]) {
    expect(isoFromMs(ms)).toBe(new Date(ms).toISOString());
  }
  expect(isoFromMs(NaN)).toBe('Invalid Date');
  expect(isoFromMs(9e15)).toBe('Invalid Date');
});

test('isoFromMs keeps giving the right text when times alternate and repeat (its caches)', () => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: -2, max: 2 }), { minLength: 1, maxLength: 30 }), fc.integer({ min: 0, max: 4e12 }), (steps, base) => {
      // Values a few milliseconds and seconds apart, repeated, in any order.
      for (const k of steps) {
        const ms = base + k * 999 + (k & 1);
        expect(isoFromMs(ms)).toBe(new Date(ms).toISOString());
      }
    }),
    { numRuns: 2000 },
  );
});

/** Date.UTC with years 0-99 as they are (Date.UTC makes them 1900-1999). */
function dateUtc(y: number, mo: number, d: number, h: number, mi: number, sec: number, ms: number): number {
  const t = new Date(Date.UTC(2000, 0, 1, h, mi, sec, ms));
  return t.setUTCFullYear(y, mo, d);
}

test('utcMs equals Date.UTC on every day of years 0-9999 (years 0-99 as they are)', () => {
  let checked = 0;
  for (let y = 0; y <= 9999; y++) {
    for (let mo = 0; mo < 12; mo++) {
      for (let d = 1; d <= 31; d++) {
        const h = (y + d) % 24;
        const mi = (y * 7 + mo) % 60;
        const sec = (d * 13) % 60;
        const ms = (y * 31 + d) % 1000;
        if (utcMs(y, mo, d, h, mi, sec, ms) !== dateUtc(y, mo, d, h, mi, sec, ms)) {
          expect([y, mo, d, h, mi, sec, ms, utcMs(y, mo, d, h, mi, sec, ms)]).toEqual([y, mo, d, h, mi, sec, ms, dateUtc(y, mo, d, h, mi, sec, ms)]);
        }
        checked++;
      }
    }
  }
  expect(checked).toBe(10000 * 12 * 31);
});

test('RFC 3339: offsets, fractions, leap day, invalid dates', () => {
  expect(parseRfc3339('2024-02-29T23:59:59.5-01:30', 0)?.ms).toBe(Date.UTC(2024, 2, 1, 1, 29, 59, 500));
  expect(parseRfc3339('2023-02-29T00:00:00Z', 0)).toBeNull();
  expect(parseRfc3339('2023-13-01T00:00:00Z', 0)).toBeNull();
  expect(parseRfc3339('2023-01-01T24:00:00Z', 0)).toBeNull();
  expect(parseRfc3339('2023-01-01T00:00:00.1234567890Z', 0)).toBeNull();
  // Fractions of 1 to 9 digits: the first three are the milliseconds, the rest kept as written.
  const base = Date.UTC(2023, 0, 1, 0, 0, 0);
  expect(parseRfc3339('2023-01-01T00:00:00.07Z', 0)).toEqual({ ms: base + 70, subMs: '', end: 23 });
  expect(parseRfc3339('2023-01-01T00:00:00.007Z', 0)).toEqual({ ms: base + 7, subMs: '', end: 24 });
  expect(parseRfc3339('2023-01-01T00:00:00.999Z', 0)).toEqual({ ms: base + 999, subMs: '', end: 24 });
  expect(parseRfc3339('2023-01-01T00:00:00.0450Z', 0)).toEqual({ ms: base + 45, subMs: '0', end: 25 });
  expect(parseRfc3339('2023-01-01T00:00:00.123456789+00:00', 0)).toEqual({ ms: base + 123, subMs: '456789', end: 35 });
  expect(parseRfc3339('2023-01-01T00:00:00.Z', 0)).toBeNull();
});

test('text times: zones, padded days, fractions', () => {
  const now = Date.UTC(2026, 10, 28);
  expect(parseTextTime('Jan  5 01:02:03', 0, { nowMs: now })?.ms).toBe(Date.UTC(2026, 0, 5, 1, 2, 3));
  expect(parseTextTime('jan 05 2020 01:02:03.4 +0530', 0, { nowMs: now })?.ms).toBe(Date.UTC(2020, 0, 4, 19, 32, 3, 400));
  expect(parseTextTime('Jan 05 2020 01:02:03 America/New_York', 0, { nowMs: now })?.ms).toBe(Date.UTC(2020, 0, 5, 6, 2, 3));
  expect(parseTextTime('Jul 05 2020 01:02:03 America/New_York', 0, { nowMs: now })?.ms).toBe(Date.UTC(2020, 6, 5, 5, 2, 3));
  expect(parseTextTime('Jan 05 2020 01:02:03.045 UTC', 0, { nowMs: now })?.ms).toBe(Date.UTC(2020, 0, 5, 1, 2, 3, 45));
  expect(parseTextTime('Jan 05 2020 01:02:03.12 UTC', 0, { nowMs: now })?.ms).toBe(Date.UTC(2020, 0, 5, 1, 2, 3, 120));
  expect(parseTextTime('Jan 05 2020 01:02:03.987654 UTC', 0, { nowMs: now })).toMatchObject({ ms: Date.UTC(2020, 0, 5, 1, 2, 3, 987), subMs: '654' });
  expect(parseTextTime('Foo 05 2020 01:02:03', 0, { nowMs: now })).toBeNull();
});

test('CEF time stamps', () => {
  const now = Date.UTC(2026, 10, 28);
  expect(cefTimeToIso('0', 'UTC', now)).toBe('1970-01-01T00:00:00.000Z');
  expect(cefTimeToIso('99999999999999999', 'UTC', now)).toBeNull();
  expect(cefTimeToIso('12a', 'UTC', now)).toBeNull();
  expect(cefTimeToIso('Jun 23 2020 17:37:24 bogus', 'UTC', now)).toBeNull();
  expect(cefTimeToIso('Jun 23 2020 17:37:24', 'Asia/Tokyo', now)).toBe('2020-06-23T08:37:24.000Z');
});

test('local times in a zone with daylight saving, minute by minute across both transitions, match Intl', () => {
  // Europe/Berlin 2026: +01:00 until 2026-03-29T01:00Z, +02:00 until 2026-10-25T01:00Z.
  const now = Date.UTC(2026, 11, 1);
  const fmt = new Intl.DateTimeFormat('en-US', { timeZone: 'Europe/Berlin', hourCycle: 'h23', year: 'numeric', month: 'short', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit' });
  for (const start of [Date.UTC(2026, 2, 28, 23, 0), Date.UTC(2026, 9, 24, 23, 0)]) {
    for (let t = start; t < start + 4 * 3_600_000; t += 60_000) {
      const p = Object.fromEntries(fmt.formatToParts(new Date(t)).map((x) => [x.type, x.value]));
      const text = `${p['month']} ${p['day']} ${p['year']} ${p['hour']}:${p['minute']}:${p['second']}`;
      const got = parseTextTime(text, 0, { nowMs: now, defaultZone: 'Europe/Berlin' })?.ms;
      // The repeated hour of October is ambiguous: either reading is a right one.
      const autumn = start > Date.UTC(2026, 6, 1);
      if (autumn && got !== t) expect(Math.abs(got! - t)).toBe(3_600_000);
      else expect(got).toBe(t);
    }
  }
  expect(cefTimeToIso('Mar 29 2026 03:30:00', 'Europe/Berlin', now)).toBe('2026-03-29T01:30:00.000Z');
  expect(cefTimeToIso('Mar 29 2026 01:30:00', 'Europe/Berlin', now)).toBe('2026-03-29T00:30:00.000Z');
});

test('a local time in a spring-forward gap moves forward by the gap (02:30 → 03:30 new time), west and east of UTC', () => {
  const now = Date.UTC(2026, 11, 1);
  // America/New_York 2026-03-08: 02:00 EST becomes 03:00 EDT (07:00Z).
  expect(cefTimeToIso('Mar 08 2026 02:30:00', 'America/New_York', now)).toBe('2026-03-08T07:30:00.000Z');
  expect(cefTimeToIso('Mar 08 2026 02:00:00', 'America/New_York', now)).toBe('2026-03-08T07:00:00.000Z');
  expect(cefTimeToIso('Mar 08 2026 01:59:59', 'America/New_York', now)).toBe('2026-03-08T06:59:59.000Z');
  expect(cefTimeToIso('Mar 08 2026 03:30:00', 'America/New_York', now)).toBe('2026-03-08T07:30:00.000Z');
  // Europe/Berlin 2026-03-29: 02:00 CET becomes 03:00 CEST (01:00Z).
  expect(cefTimeToIso('Mar 29 2026 02:30:00', 'Europe/Berlin', now)).toBe('2026-03-29T01:30:00.000Z');
  expect(cefTimeToIso('Mar 29 2026 02:30:00 Europe/Berlin', 'UTC', now)).toBe('2026-03-29T01:30:00.000Z');
  // Australia/Lord_Howe: a half-hour gap (02:00 → 02:30 on 2026-10-04).
  expect(cefTimeToIso('Oct 04 2026 02:15:00', 'Australia/Lord_Howe', now)).toBe('2026-10-03T15:45:00.000Z');
});

test('zone words Z, UTC, GMT, UT and GMT±/UTC± offsets in any letter case, as months', () => {
  const now = Date.UTC(2026, 11, 7, 18);
  for (const z of ['utc', 'Utc', 'UTC', 'gmt', 'z', 'ut']) {
    expect(cefTimeToIso(`DEC 07 2026 10:00:00 ${z}`, 'Europe/Moscow', now), z).toBe('2026-12-07T10:00:00.000Z');
  }
  expect(cefTimeToIso('dec 07 2026 10:00:00 gmt+02:00', 'UTC', now)).toBe('2026-12-07T08:00:00.000Z');
  expect(cefTimeToIso('Dec 07 2026 10:00:00 utc-0130', 'UTC', now)).toBe('2026-12-07T11:30:00.000Z');
  expect(cefTimeToIso('Dec 07 2026 10:00:00 utcx', 'UTC', now)).toBeNull();
});

test('times without a year take the next year at New Year (received late on Dec 31)', () => {
  const at = (iso: string) => Date.parse(iso);
  const iso = (s: string, zone: string, now: string) => {
    const t = parseTextTime(s, 0, { defaultZone: zone, nowMs: at(now) });
    return t === null ? null : isoFromMs(t.ms);
  };
  // UTC: a sender's clock a few seconds ahead.
  expect(iso('Jan  1 00:00:03', 'UTC', '2024-12-31T23:59:58Z')).toBe('2025-01-01T00:00:03.000Z');
  // A zone ahead of UTC: Moscow's New Year is 21:00 UTC.
  expect(iso('Jan  1 00:29:00', 'Europe/Moscow', '2024-12-31T21:30:00Z')).toBe('2024-12-31T21:29:00.000Z');
  expect(iso('Dec 31 23:59:00', 'Europe/Moscow', '2024-12-31T21:30:00Z')).toBe('2024-12-31T20:59:00.000Z');
  // Unchanged: just after New Year, the last year's Dec 31; in the year, this year or the last.
  expect(iso('Dec 31 23:59:58', 'UTC', '2025-01-01T00:00:05Z')).toBe('2024-12-31T23:59:58.000Z');
  expect(iso('Jun  1 10:00:00', 'UTC', '2025-06-10T00:00:00Z')).toBe('2025-06-01T10:00:00.000Z');
  expect(iso('Jun 10 20:00:00', 'UTC', '2025-06-10T00:00:00Z')).toBe('2025-06-10T20:00:00.000Z');
  expect(iso('Jun 11 10:00:00', 'UTC', '2025-06-10T00:00:00Z')).toBe('2024-06-11T10:00:00.000Z');
  expect(iso('Feb 29 10:00:00', 'UTC', '2025-03-10T00:00:00Z')).toBe('2024-02-29T10:00:00.000Z');
  // Late Dec, a time more than a day ahead even in the next year: this year.
  expect(iso('Jan  3 00:00:00', 'UTC', '2024-12-31T00:00:00Z')).toBe('2024-01-03T00:00:00.000Z');
});

test('years 0000-0099 stay those years (RFC 3339 and text times, UTC and a named zone)', () => {
  expect(isoFromMs(parseRfc3339('0050-06-01T10:00:00Z', 0)!.ms)).toBe('0050-06-01T10:00:00.000Z');
  expect(isoFromMs(parseRfc3339('0001-01-01T00:00:00+01:00', 0)!.ms)).toBe('0000-12-31T23:00:00.000Z');
  expect(cefTimeToIso('Jun 01 0050 10:00:00', 'UTC', 0)).toBe('0050-06-01T10:00:00.000Z');
  // Berlin before 1893 is local mean time, +0:53:28: within the hour, the same day of year 50.
  expect(cefTimeToIso('Jun 01 0050 10:00:00 Europe/Berlin', 'UTC', 0)).toMatch(/^0050-06-01T09:/);
});


test('year 0 (1 BC) in a named zone is year 0, at the zone\'s local mean time like any year before its first transition', () => {
  // Intl writes year 0 as `1 BC`: read without the era it was year 1, five to nine years off.
  for (const zone of ['Europe/Moscow', 'America/New_York', 'Asia/Tokyo', 'Europe/Berlin']) {
    const later = cefTimeToIso(`Jan 01 1000 12:00:00 ${zone}`, 'UTC', 0)!;
    for (const year of ['0000', '0001', '0002']) {
      const iso = cefTimeToIso(`Jan 01 ${year} 12:00:00 ${zone}`, 'UTC', 0)!;
      // The same offset as in year 1000 (local mean time): the same time of day, the same date.
      expect(iso.slice(0, 10), `${year} ${zone}`).toBe(`${year}-01-01`);
      expect(iso.slice(10), `${year} ${zone}`).toBe(later.slice(10));
    }
    // RFC 3339 without an offset, read in the zone.
    expect(isoFromMs(parseRfc3339('0000-01-01T12:00:00', 0, zone)!.ms).slice(10)).toBe(later.slice(10));
  }
});
