import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { decodeFrame } from '../../src/codecs/decode.js';
import type { CefdEvent } from '../../src/event.js';
import { allExtensions, allTyped } from '../../src/codecs/cef/view.js';
import { isIPv4Text, toInt } from '../../src/codecs/cef/parse.js';
import { isIPv4 } from 'node:net';

/** Every converted value, as schema 1's `cef.typed` had them (docs/event-format.md). */
const fullTyped = (e: CefdEvent) => allTyped(e.cef!, e.timestamp, new Set((e.warnings ?? []).filter((w) => w.code === 'cef_bad_field').map((w) => w.key!)));

const NOW = Date.UTC(2026, 10, 28, 12, 0, 0);

function ev(line: string | Buffer): CefdEvent {
  const r = decodeFrame(typeof line === 'string' ? Buffer.from(line, 'utf8') : line, false, NOW);
  if (!r.ok) throw new Error(`not an event: ${r.failure.code}`);
  return r.event;
}
const codes = (e: CefdEvent) => [...(e.errors ?? []), ...(e.warnings ?? [])].map((p) => p.code);
const H = 'CEF:0|V|P|1.0|100|name|5|';

describe('header (POLICY rows 2-6)', () => {
  test('all seven fields, escapes \\| and \\\\ only', () => {
    const e = ev('CEF:0|Ven\\|dor|Pro\\\\duct|V\\e|id|na=me|10|a=b');
    expect(e.cef).toMatchObject({ version: '0', deviceVendor: 'Ven|dor', deviceProduct: 'Pro\\duct', deviceVersion: 'V\\e', deviceEventClassId: 'id', name: 'na=me', severity: '10' });
    expect(e.errors).toBeUndefined();
  });

  test('empty header fields are valid and kept as ""', () => {
    expect(ev('CEF:0|||||||a=b').cef).toMatchObject({ deviceVendor: '', name: '', severity: '' });
  });

  test('header values are not trimmed nor unquoted (row 4)', () => {
    expect(ev('CEF:0| V |"P"|1|2|n|3|').cef).toMatchObject({ deviceVendor: ' V ', deviceProduct: '"P"' });
  });

  test('a non-numeric version keeps the event with cef_bad_version (row 2)', () => {
    const e = ev('CEF:0.1|V|P|1|2|n|3|a=b');
    expect(e.cef?.version).toBe('0.1');
    expect(codes(e)).toContain('cef_bad_version');
    expect(e.cef?.extensions).toEqual({ a: 'b' });
  });

  test('severity words in any case are valid; anything else warns (row 6)', () => {
    for (const s of ['0', '10', 'Low', 'very-high', 'UNKNOWN', 'Medium', 'High']) expect(codes(ev(`CEF:0|V|P|1|2|n|${s}|`))).toEqual([]);
    for (const s of ['11', 'Very High', '%SEVERITY%', '-1']) expect(codes(ev(`CEF:0|V|P|1|2|n|${s}|`))).toEqual(['cef_bad_severity']);
  });

  test('"...|name|10" with nothing after is a complete header', () => {
    const e = ev('CEF:0|V|P|1|2|name|10');
    expect(e.cef?.severity).toBe('10');
    expect(e.errors).toBeUndefined();
  });

  test('a truncated header keeps the event, missing fields absent, extensions parsed (row 5)', () => {
    const e = ev('CEF:0|SentinelOne|Mgmt|activityID=111 siteName=None');
    expect(e.cef?.deviceVendor).toBe('SentinelOne');
    expect(e.cef?.deviceProduct).toBe('Mgmt');
    expect(e.cef && 'deviceVersion' in e.cef).toBe(false);
    expect(e.cef?.extensions).toEqual({ activityID: '111', siteName: 'None' });
    expect(codes(e)).toEqual(['cef_incomplete_header']);
  });

  test('with fewer fields, text that does not start with key= is the next header field', () => {
    const e = ev('CEF:0|Vendor|Product text');
    expect(e.cef).toMatchObject({ deviceVendor: 'Vendor', deviceProduct: 'Product text' });
    expect(codes(e)).toContain('cef_incomplete_header');
  });

  test('an empty field after the last `|` is a field ("", rows 4-5) wherever it falls: the next ones are absent', () => {
    // Seventh field empty: the header is complete, severity "".
    const full = ev('CEF:0|V|P|1|id|n|');
    expect(full.cef).toMatchObject({ name: 'n', severity: '' });
    expect(codes(full)).toEqual(['cef_bad_severity']);
    // Sixth field empty: name "", severity absent, as `CEF:0|V|P|1|id|x` gives name "x".
    const six = ev('CEF:0|V|P|1|id|');
    expect(six.cef?.name).toBe('');
    expect(six.cef && 'severity' in six.cef).toBe(false);
    expect(six.errors).toEqual([{ code: 'cef_incomplete_header', message: 'CEF header has 6 of 7 fields' }]);
    const two = ev('CEF:0|');
    expect(two.cef).toMatchObject({ version: '0', deviceVendor: '' });
    expect(two.cef && 'deviceProduct' in two.cef).toBe(false);
    expect(ev('CEF:0').cef && 'deviceVendor' in ev('CEF:0').cef!).toBe(false);
  });
});

describe('extension (rows 7-13, 16, 18)', () => {
  test('keys by full name; unknown keys as written; custom fields beyond the spec (cs7..cs10)', () => {
    const e = ev(`${H}src=10.0.0.1 sourceUserName=bob cs10=x cs10Label=TaskName foo=bar`);
    // A custom value with its label is one field of `custom`, named by slot and label.
    expect(e.cef?.extensions).toEqual({ sourceAddress: '10.0.0.1', sourceUserName: 'bob', foo: 'bar' });
    expect(e.cef?.custom).toEqual({ 'cs10:TaskName': 'x' });
    expect(allExtensions(e.cef!)).toEqual({ sourceAddress: '10.0.0.1', sourceUserName: 'bob', deviceCustomString10: 'x', deviceCustomString10Label: 'TaskName', foo: 'bar' });
  });

  test('values with spaces end at the blank before the next key', () => {
    expect(ev(`${H}cs9=site location Bldg cs9Label=GroupName`).cef?.custom?.['cs9:GroupName']).toBe('site location Bldg');
  });

  test('key characters include . , [ ] - _ (row 7)', () => {
    expect(ev(`${H}ad.Error_,Code=1 ad.field[0]=2 Some-Key=3`).cef?.extensions).toEqual({ 'ad.Error_,Code': '1', 'ad.field[0]': '2', 'Some-Key': '3' });
  });

  test('an unescaped = is part of the value unless a blank-preceded key token comes before it (row 8)', () => {
    expect(ev(`${H}aid=abc==`).cef?.extensions).toEqual({ agentId: 'abc==' });
    expect(ev(`${H}moo=this =has = equals\\=`).cef?.extensions).toEqual({ moo: 'this =has = equals=' });
    expect(ev(`${H}request=https://x/?a=b&c=d act=ok`).cef?.extensions).toEqual({ requestUrl: 'https://x/?a=b&c=d', deviceAction: 'ok' });
  });

  test('value escapes \\= \\\\ \\n \\r decode; every other backslash sequence is kept (row 9)', () => {
    const e = ev(`${H}msg=a\\=b\\\\c\\nd\\re\\|f\\tg C:\\Users x=\\`);
    expect(e.cef?.extensions).toEqual({ message: 'a=b\\c\nd\re\\|f\\tg C:\\Users', x: '\\' });
  });

  test('escape decoding is one pass: \\\\n is a backslash then n', () => {
    expect(ev(`${H}msg=a\\\\nb`).cef?.extensions.message).toBe('a\\nb');
  });

  test('trailing blanks, CR, LF of the raw value are trimmed; an escaped \\n at the end survives; leading blanks are kept (row 10)', () => {
    expect(ev(`${H}msg= lead  trail   src=1.2.3.4 \t\r\n`).cef?.extensions).toEqual({ message: ' lead  trail', sourceAddress: '1.2.3.4' });
    expect(ev(`${H}msg=end\\n   `).cef?.extensions.message).toBe('end\n');
  });

  test('TAB separates pairs like a space (row 10)', () => {
    expect(ev(`${H}msg=Tab sep\tsrc=127.0.0.1`).cef?.extensions).toEqual({ message: 'Tab sep', sourceAddress: '127.0.0.1' });
  });

  test('empty value kept as "", not typed, warning for a typed key (row 11)', () => {
    const e = ev(`${H}dst= cs1= cs1Label=Foo Bar spt=1`);
    expect(e.cef?.extensions).toEqual({ destinationAddress: '', sourcePort: '1' });
    expect(e.cef?.custom).toEqual({ 'cs1:Foo Bar': '' });
    expect(e.cef?.typed).toEqual({ sourcePort: 1 });
    expect(e.warnings).toEqual([{ code: 'cef_bad_field', key: 'destinationAddress', message: 'empty value' }]);
  });

  test('duplicate key (by full name): last wins, warning (row 12)', () => {
    const e = ev(`${H}src=1.1.1.1 sourceAddress=2.2.2.2 flexString1=1.23 flexString1=1.24 flexString1Label=x`);
    expect(e.cef?.extensions).toEqual({ sourceAddress: '2.2.2.2' });
    expect(e.cef?.custom).toEqual({ 'flexString1:x': '1.24' });
    // An IP address is not repeated in `typed`: its converted value is its text.
    expect(e.cef?.typed).toBeUndefined();
    expect(fullTyped(e)).toEqual({ sourceAddress: '2.2.2.2' });
    expect(codes(e)).toEqual(['cef_duplicate_key', 'cef_duplicate_key']);
  });

  test('raw TAB, CR, LF inside a value are kept (row 13)', () => {
    expect(ev(`${H}msg=a\tb\rc\nd src=1.1.1.1`).cef?.extensions.message).toBe('a\tb\rc\nd');
  });

  test('a custom value without label and a label without value warn (row 16)', () => {
    const e = ev(`${H}cs1=v cn2Label=Count cs3=x cs3Label=y`);
    expect(e.warnings?.map((w) => [w.code, w.key])).toEqual([
      ['cef_custom_field_unpaired', 'deviceCustomString1'],
      ['cef_custom_field_unpaired', 'deviceCustomNumber2Label'],
    ]);
  });

  test('text that is not key=value is a warning carrying the text (row 18)', () => {
    const e = ev(`${H}garbage here msg=1.2.3.4 more text`);
    expect(e.cef?.extensions).toEqual({ message: '1.2.3.4 more text' });
    expect(e.warnings).toEqual([{ code: 'cef_unparsed_extension', message: 'garbage here' }]);
  });

  test('the text quoted by that warning is cut at 256 characters, never inside a surrogate pair', () => {
    const e = ev(`${H}${'x'.repeat(255)}\u{1F600}`);
    expect(e.warnings).toEqual([{ code: 'cef_unparsed_extension', message: 'x'.repeat(255) }]);
    const whole = ev(`${H}${'x'.repeat(254)}\u{1F600}`);
    expect(whole.warnings).toEqual([{ code: 'cef_unparsed_extension', message: `${'x'.repeat(254)}\u{1F600}` }]);
  });

  test('__proto__ and constructor are ordinary keys', () => {
    const e = ev(`${H}__proto__=x constructor=y`);
    expect(Object.keys(e.cef!.extensions)).toEqual(['__proto__', 'constructor']);
    expect(e.cef!.extensions['__proto__']).toBe('x');
    expect(Object.getPrototypeOf(e.cef!.extensions)).toBe(Object.prototype);
    expect(e.warnings).toBeUndefined();
  });
});

describe('typed values (row 15)', () => {
  test('IPs validated, integers and longs as numbers, beyond 2^53 as decimal strings', () => {
    const e = ev(`${H}src=10.0.0.1 dst=2001:db8::1 agt=100.222.333.55 dvc=010.1.1.1 spt=1232 in=4294967296 cn1=18446744072678170139 cn2=-5 cnt=+3`);
    // Only what differs from the text: numbers; not the IPs, not a long kept as its decimal text.
    expect(e.cef?.typed).toEqual({ sourcePort: 1232, bytesIn: 4294967296, deviceCustomNumber2: -5, baseEventCount: 3 });
    expect(fullTyped(e)).toEqual({ sourceAddress: '10.0.0.1', destinationAddress: '2001:db8::1', sourcePort: 1232, bytesIn: 4294967296, deviceCustomNumber1: '18446744072678170139', deviceCustomNumber2: -5, baseEventCount: 3 });
    expect(e.warnings?.filter((w) => w.code === 'cef_bad_field').map((w) => w.key)).toEqual(['agentAddress', 'deviceAddress']);
  });

  test('doubles, floats and MACs stay text only', () => {
    const e = ev(`${H}slat=1.5 cfp1=3.14 cfp1Label=pi smac=00:11:22:33:44:55`);
    expect(e.cef?.typed).toBeUndefined();
    expect(e.cef?.custom).toEqual({ 'cfp1:pi': '3.14' });
    expect(fullTyped(e)).toEqual({});
  });

  test('time stamps: epoch ms and the spec text formats to ISO UTC', () => {
    const e = ev(`${H}rt=1647626887000 start=Jun 23 2020 17:37:24 GMT+05:00 end=Sep 07 2018 14:50:39 art=Jun 23 17:37:24.004 Z mrt=Jul 19 2017 10:50:21.127 Europe/Moscow deviceCustomDate1=1616623591694.176789`);
    // `rt` converted is the event's `timestamp`, not repeated in `typed`.
    expect(e.cef?.typed).toEqual({
      startTime: '2020-06-23T12:37:24.000Z',
      endTime: '2018-09-07T14:50:39.000Z',
      agentReceiptTime: '2026-06-23T17:37:24.004Z',
      managerReceiptTime: '2017-07-19T07:50:21.127Z',
      deviceCustomDate1: '2021-03-24T22:06:31.694176789Z',
    });
    expect(e.timestamp).toBe('2022-03-18T18:08:07.000Z');
  });

  test('text times without a zone are read in the record\'s dtz (deviceTimeZone), wherever it comes; their own zone and epoch ms win', () => {
    // cef/NOTES.md (Logstash): `Jul 19 2017 10:50:21.127` with `dtz=Europe/Moscow` is 07:50:21.127Z.
    const e = ev(`${H}rt=Jul 19 2017 10:50:21.127 end=Jul 19 2017 10:50:21 Z start=1500461421127 dtz=Europe/Moscow`);
    expect(e.timestamp).toBe('2017-07-19T07:50:21.127Z');
    expect(fullTyped(e)).toMatchObject({ endTime: '2017-07-19T10:50:21.000Z', startTime: '2017-07-19T10:50:21.127Z' });
    expect(codes(e)).toEqual([]);
    // Its full name too; the last of two wins, as for any key written twice.
    expect(ev(`${H}deviceTimeZone=Asia/Tokyo end=Jul 19 2017 10:50:21`).cef?.typed).toEqual({ endTime: '2017-07-19T01:50:21.000Z' });
    expect(ev(`${H}dtz=Europe/Moscow end=Jul 19 2017 10:50:21 dtz=Asia/Tokyo`).cef?.typed).toEqual({ endTime: '2017-07-19T01:50:21.000Z' });
    // Not a key: text inside another value.
    expect(ev(`${H}msg=set\\dtz=Asia/Tokyo end=Jul 19 2017 10:50:21`).cef?.typed).toEqual({ endTime: '2017-07-19T10:50:21.000Z' });
  });

  test('a dtz that names no zone: the configured zone, with a warning', () => {
    const e = ev(`${H}rt=Jul 19 2017 10:50:21.127 dtz=LA/LA`);
    expect(e.timestamp).toBe('2017-07-19T10:50:21.127Z');
    expect(e.warnings).toEqual([{ code: 'cef_bad_field', key: 'deviceTimeZone', message: 'not a time zone name; text times without a zone are read in UTC' }]);
    // Only looked at for a text time.
    expect(codes(ev(`${H}rt=1500461421127 dtz=LA/LA`))).toEqual([]);
  });

  test('a time stamp without year that would be more than a day ahead is from last year', () => {
    expect(ev(`${H}rt=Dec 31 23:00:00`).timestamp).toBe('2025-12-31T23:00:00.000Z');
    expect(ev(`${H}rt=Nov 29 11:00:00`).timestamp).toBe('2026-11-29T11:00:00.000Z');
    expect(fullTyped(ev(`${H}rt=Nov 29 11:00:00`)).deviceReceiptTime).toBe('2026-11-29T11:00:00.000Z');
  });

  test('bad time stamps are left out of typed with a warning, and the event time falls back', () => {
    const e = ev(`<13>1 2024-01-02T03:04:05Z h a - - - ${H}rt=2025-06-29T23:35:00Z start=Last Thursday end=Feb 30 2020 10:00:00`);
    expect(e.cef?.typed).toBeUndefined();
    expect(fullTyped(e)).toEqual({});
    expect(e.warnings?.map((w) => w.key)).toEqual(['deviceReceiptTime', 'startTime', 'endTime']);
    expect(e.timestamp).toBe('2024-01-02T03:04:05.000Z');
  });
});

describe('properties', () => {
  // The CEF encoder of the spec (and logstash, rsyslog): \ = CR LF escaped in values.
  const enc = (v: string) => v.replace(/\\/g, '\\\\').replace(/=/g, '\\=').replace(/\n/g, '\\n').replace(/\r/g, '\\r');
  const valueChar = fc.constantFrom('a', 'Z', '0', ' ', '=', '\\', '\n', '\r', '|', 'é', 'Ж', '"', ':', '/', '-', '\t');
  // A value starting or ending with blanks loses them by row 10 rules (trailing), so keep
  // those out; leading blanks are kept.
  const value = fc.string({ unit: valueChar, maxLength: 30 }).filter((v) => !/[ \t]$/.test(v));
  const key = fc.string({ unit: fc.constantFrom('a', 'b', 'k', 'x', 'Q', '_', '7'), minLength: 1, maxLength: 8 }).filter((k) => /^[A-Za-z_]/.test(k));

  test('parse(format(x)) == x for extension maps', () => {
    fc.assert(
      fc.property(fc.dictionary(key, value, { maxKeys: 8 }), (m) => {
        const keys = Object.keys(m).filter((k) => !k.startsWith('cs') && !k.startsWith('cn') && !k.startsWith('c6a') && !k.startsWith('cfp') && !k.startsWith('flex'));
        const text = keys.map((k) => `${k}=${enc(m[k]!)}`).join(' ');
        const e = ev(`${H}${text}`);
        const want: Record<string, string> = {};
        for (const k of keys) want[k] = m[k]!;
        // A value of only blanks trims to "" (row 10).
        for (const k of keys) if (/^[ \t]*$/.test(want[k]!)) want[k] = '';
        expect(e.cef?.extensions).toEqual(want);
      }),
      { numRuns: 1000 },
    );
  });

  test('the decoder never throws, on any bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
        decodeFrame(Buffer.from(bytes), false, NOW);
      }),
      { numRuns: 2000 },
    );
  });

  test('the decoder never throws on CEF-shaped text', () => {
    const ch = fc.constantFrom('C', 'E', 'F', ':', '|', '=', '\\', ' ', '\t', '\n', 'a', '0', '1', '<', '>', '[', ']', '"', '-', '\ufeff', '\ufffd');
    fc.assert(
      fc.property(fc.string({ unit: ch, maxLength: 200 }), (s) => {
        const r = decodeFrame(Buffer.from(`CEF:0|${s}`), false, NOW);
        expect(r.ok).toBe(true);
      }),
      { numRuns: 3000 },
    );
  });
});

describe('value conversions without the runtime', () => {
  test('isIPv4Text accepts exactly what net.isIPv4 accepts', () => {
    const part = fc.oneof(fc.integer({ min: 0, max: 300 }).map(String), fc.constantFrom('00', '01', '010', '0255', '', '1a', ' 1', '255', '256', '1000'));
    const text = fc.oneof(
      fc.array(part, { minLength: 1, maxLength: 6 }).map((ps) => ps.join('.')),
      fc.string({ unit: fc.constantFrom('0', '1', '2', '5', '9', '.', ':', 'a', ' ', '\n'), maxLength: 18 }),
    );
    fc.assert(
      fc.property(text, (v) => {
        expect(isIPv4Text(v)).toBe(isIPv4(v));
      }),
      { numRuns: 5000 },
    );
    for (const v of ['0.0.0.0', '255.255.255.255', '10.4.21.31', '1.2.3.04', '1.2.3.4\n', '1.2.3', '1.2.3.4.5', '256.1.1.1']) expect(isIPv4Text(v)).toBe(isIPv4(v));
  });

  test('toInt equals Number for the integers it accepts', () => {
    fc.assert(
      fc.property(fc.oneof(fc.bigInt({ min: -(10n ** 17n), max: 10n ** 17n }).map(String), fc.integer().map((n) => `+${n}`), fc.constantFrom('-0', '+0', '007', '-007', '9007199254740993')), (v) => {
        const n = toInt(v);
        const want = Number(v);
        if (Number.isSafeInteger(want)) expect(Object.is(n, want)).toBe(true);
        else if (n !== null) expect(n).toBe(v);
      }),
      { numRuns: 3000 },
    );
  });
});
