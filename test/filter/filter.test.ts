import fc from 'fast-check';
import { expect, test } from 'vitest';
import {
  compileFilter,
  compilePath,
  fieldValue,
  FilterSyntaxError,
  parseFilter,
  type FilterLiteral,
  type FilterNode,
  type PathSegment,
} from '../../src/filter/filter.js';

// ---------------------------------------------------------------------------------
// Fixtures

/** A KSC event as cefd emits it (trimmed), plus a `t` object with one field of every type. */
const EVENT = {
  id: 'e1',
  timestamp: '2024-06-01T10:00:00.000Z',
  received: '2024-06-01T10:00:00.123Z',
  listener: 'ksc-tls',
  peer: '10.0.0.5:51514',
  syslog: {
    format: 'rfc5424',
    facility: 1,
    severity: 4,
    hostname: 'ksc01',
    appName: 'KES',
    msgId: 'KLPRCI_TaskState',
    structuredData: { 'event@23668': { et: 'KLPRCI_TaskState', tdn: 'Scan' } },
  },
  cef: {
    version: '0',
    deviceVendor: 'KasperskyLab',
    deviceProduct: 'SecurityCenter',
    deviceEventClassId: 'KLPRCI_TaskState',
    name: 'Task state changed',
    severity: '10',
    extensions: { sourceAddress: '10.0.0.1', deviceCustomString10: 'Full scan', 'x-custom.key': 'v' },
    typed: { sourcePort: 1232, deviceReceiptTime: '2022-03-01T12:00:00.000Z' },
  },
  ksc: {
    eventType: 'KLPRCI_TaskState',
    category: 'task',
    host: { name: 'WS-042', ip: '10.0.0.42' },
    task: { name: 'Full scan', newState: 'Failed', newStateCode: 4 },
    labels: { TaskName: 'Full scan' },
  },
  warnings: [{ code: 'cef_bad_severity', key: 'severity', message: 'x' }],
  t: {
    str: 'abc',
    empty: '',
    numStr: '10',
    text10: '10.0',
    lead: '0012',
    neg: '-1.5',
    plus: '+3',
    exp: '1e3',
    hex: '0x10',
    inf: 'Infinity',
    spaced: ' 10',
    num: 1232,
    zero: 0,
    float: 2.5,
    yes: true,
    no: false,
    nul: null,
    obj: { a: 1, '0': 'zero-key', not: 8, in: 9 },
    arr: [1, 'x', { code: 'c' }],
    esc: 'a"b\\c\nd\te\u00e9/',
    emoji: '😀',
  },
  q: {
    'a.b': 1,
    'x-y': 2,
    '[': 3,
    'q"uote': 4,
    'back\\slash': 5,
    '': 6,
    not: 7,
    'with space': 9,
    é: 10,
    '0': 11,
  },
};

function run(source: string, event: object = EVENT): boolean {
  return compileFilter(source).test(event);
}

function table(rows: [string, boolean][]): void {
  const bad: string[] = [];
  for (const [src, want] of rows) {
    const got = run(src);
    if (got !== want) bad.push(`${src}: got ${got}, want ${want}`);
  }
  expect(bad).toEqual([]);
}

// ---------------------------------------------------------------------------------
// Operators by type

test('number literal: numeric comparison with number fields and numeric-looking strings', () => {
  table([
    ['t.num == 1232', true],
    ['t.num == 1232.0', true],
    ['t.num == 12.32e2', true],
    ['t.num != 1232', false],
    ['t.num < 2000', true],
    ['t.num <= 1232', true],
    ['t.num > 1232', false],
    ['t.num >= 1232', true],
    ['t.zero == 0', true],
    ['t.zero == -0', true],
    ['t.float > 2', true],
    ['t.float < -2', false],
    ['cef.severity >= 7', true], // "10" as written, compared as 10
    ['cef.severity > 9', true],
    ['cef.severity < 9', false],
    ['cef.severity == 10', true],
    ['cef.severity != 10', false],
    ['t.text10 == 10', true],
    ['t.lead == 12', true],
    ['t.neg < 0', true],
    ['t.neg == -1.5', true],
    ['t.plus == 3', true],
    ['t.exp == 1000', true],
    ['t.exp > 999', true],
    // not numeric-looking: incomparable, so false (and != true)
    ['t.str == 1', false],
    ['t.str != 1', true],
    ['t.str < 1', false],
    ['t.str >= 1', false],
    ['t.empty == 0', false],
    ['t.empty <= 0', false],
    ['t.hex == 16', false],
    ['t.inf > 0', false],
    ['t.spaced == 10', false],
    ['cef.extensions.sourceAddress > 1', false],
    // other types never compare with numbers
    ['t.yes == 1', false],
    ['t.no == 0', false],
    ['t.nul == 0', false],
    ['t.nul < 1', false],
    ['t.obj == 1', false],
    ['t.arr == 1', false],
    ['t.arr > 0', false],
    ['t.missing == 1', false],
    ['t.missing != 1', true],
    ['t.missing < 1', false],
    ['t.missing >= 1', false],
  ]);
});

test('which strings are numeric-looking', () => {
  const numeric: [string, number][] = [
    ['10', 10], ['0', 0], ['-0', 0], ['+3', 3], ['-1.5', -1.5], ['0012', 12], ['1e3', 1000], ['1E3', 1000], ['2.5e-1', 0.25],
    ['1e+2', 100], ['9007199254740993', 9007199254740992],
  ];
  const not = ['', ' 10', '10 ', '10.', '.5', '1e', '1e+', '-', '+', '--1', '0x10', '0b1', 'Infinity', '-Infinity', 'NaN', '1e999', '1,000', '1_000', '١٢', '10.0.0.1', 'ten'];
  const bad: string[] = [];
  for (const [text, n] of numeric) {
    if (!run(`v == ${n}`, { v: text })) bad.push(`${JSON.stringify(text)} should equal ${n}`);
    if (!run(`v in [${n}]`, { v: text })) bad.push(`${JSON.stringify(text)} should be in [${n}]`);
    if (!run(`v == ${JSON.stringify(text)}`, { v: n })) bad.push(`${n} should equal ${JSON.stringify(text)}`);
    if (!run(`v in [${JSON.stringify(text)}]`, { v: n })) bad.push(`${n} should be in [${JSON.stringify(text)}]`);
  }
  for (const text of not) {
    for (const f of ['v == 0', 'v != 0', 'v < 1e300', 'v > -1e300', 'v in [0, 1, -1, 1000]']) {
      const want = f.startsWith('v !=');
      if (run(f, { v: text }) !== want) bad.push(`${JSON.stringify(text)}: ${f} should be ${want}`);
    }
    if (run(`v >= ${JSON.stringify(text)} or v <= ${JSON.stringify(text)}`, { v: 5 })) bad.push(`5 compared with ${JSON.stringify(text)}`);
  }
  expect(bad).toEqual([]);
  // Strings against strings are text, even with numbers in the list.
  table([
    ['t.text10 in ["10", 5]', false],
    ['t.text10 in ["10.0", 5]', true],
    ['t.text10 in [10]', true],
    ['t.lead in ["12", 0]', false],
  ]);
});

test('string literal: text comparison with string fields, numeric with number fields', () => {
  table([
    ['t.str == "abc"', true],
    ['t.str == "ABC"', false],
    ['t.str != "abc"', false],
    ['t.str != "ABC"', true],
    ['t.str < "abd"', true],
    ['t.str > "ab"', true],
    ['t.str >= "abc"', true],
    ['t.str <= "abb"', false],
    ['t.empty == ""', true],
    ['t.empty < "a"', true],
    // both strings: text, even when both look numeric
    ['cef.severity == "10"', true],
    ['cef.severity == "10.0"', false],
    ['cef.severity >= "7"', false], // "10" < "7" as text; write 7 unquoted for a numeric comparison
    ['t.text10 == "10"', false],
    ['t.lead == "12"', false],
    // number field, numeric-looking string literal: numeric
    ['t.num == "1232"', true],
    ['t.num == "01232"', true],
    ['t.num == "1232.0"', true],
    ['t.num != "1232"', false],
    ['t.num < "2000"', true],
    ['t.num > "1e3"', true],
    ['cef.typed.sourcePort == "1232"', true],
    // number field, other string literal: incomparable
    ['t.num == "abc"', false],
    ['t.num != "abc"', true],
    ['t.num > "abc"', false],
    ['t.num < "abc"', false],
    ['t.zero == ""', false],
    // other types never compare with strings
    ['t.yes == "true"', false],
    ['t.nul == "null"', false],
    ['t.nul == ""', false],
    ['t.obj == "[object Object]"', false],
    ['t.arr == "1"', false],
    ['t.arr == "1,x,[object Object]"', false],
    ['t.missing == ""', false],
    ['t.missing != ""', true],
    ['t.missing < "z"', false],
    // ISO time stamps compare chronologically as text
    ['timestamp >= "2024-06-01"', true],
    ['timestamp < "2024-06-01T10:00:01"', true],
    ['timestamp < "2024-06-01"', false],
    ['cef.typed.deviceReceiptTime < "2023"', true],
  ]);
});

test('true, false, null: identity; == and != only', () => {
  table([
    ['t.yes == true', true],
    ['t.yes != true', false],
    ['t.yes == false', false],
    ['t.no == false', true],
    ['t.no == null', false],
    ['t.numStr == true', false],
    ['t.zero == false', false],
    ['t.empty == false', false],
    ['t.nul == null', true],
    ['t.nul != null', false],
    ['t.nul == false', false],
    ['t.missing == null', false],
    ['t.missing != null', true],
    ['t.str == null', false],
    ['t.str != null', true],
    ['t.zero == null', false],
    ['t.obj == null', false],
  ]);
});

test('in and not in: == against each element', () => {
  table([
    ['t.str in ["x", "abc"]', true],
    ['t.str in ["x"]', false],
    ['t.str in []', false],
    ['t.str not in []', true],
    ['t.str in [1, true, null]', false],
    ['cef.severity in [9, 10]', true],
    ['cef.severity in ["9", "10.0"]', false],
    ['cef.severity in ["High", "Very-High", 9, 10]', true],
    ['t.num in ["1232"]', true],
    ['t.num in ["01232"]', true],
    ['t.num in [1, 1232]', true],
    ['t.num in ["abc", 1]', false],
    ['t.zero in [-0]', true],
    ['t.lead in [12]', true],
    ['t.lead in ["12"]', false],
    ['t.yes in [true]', true],
    ['t.yes in [false, 1, "true"]', false],
    ['t.nul in [null]', true],
    ['t.nul in [0, false, ""]', false],
    ['t.no in [null, false]', true],
    ['t.obj in [1, "a", null]', false],
    ['t.arr in [1]', false],
    ['t.missing in [null]', false],
    ['t.missing in [""]', false],
    ['t.missing not in [1]', true],
    ['t.str not in ["abc"]', false],
    ['t.str not in ["x", "y"]', true],
    ['not t.str in ["x"]', true],
    ['ksc.task.newStateCode in [2, 4]', true],
  ]);
});

test('contains, startswith, endswith: case-sensitive, string fields only', () => {
  table([
    ['t.str contains "b"', true],
    ['t.str contains "B"', false],
    ['t.str contains ""', true],
    ['t.str contains "abcd"', false],
    ['t.str startswith "ab"', true],
    ['t.str startswith "bc"', false],
    ['t.str startswith ""', true],
    ['t.str endswith "bc"', true],
    ['t.str endswith "ab"', false],
    ['t.empty contains ""', true],
    ['t.numStr contains "1"', true],
    ['t.numStr startswith "1"', true],
    ['t.num contains "1"', false],
    ['t.num startswith "12"', false],
    ['t.yes contains "t"', false],
    ['t.nul contains ""', false],
    ['t.arr contains "x"', false],
    ['t.obj contains ""', false],
    ['t.missing contains ""', false],
    ['t.missing endswith ""', false],
    ['t.esc contains "\\"b\\\\"', true],
    ['cef.extensions.sourceAddress startswith "10."', true],
    ['ksc.host.name endswith "042"', true],
  ]);
});

test('matches and ~=: unanchored Unicode regex, (?i) prefix ignores case', () => {
  table([
    ['t.str matches "b"', true],
    ['t.str matches "^a.c$"', true],
    ['t.str ~= "^b"', false],
    ['t.str ~= "B"', false],
    ['t.str ~= "(?i)B"', true],
    ['t.str ~= "(?i)^ABC$"', true],
    ['t.str matches ""', true],
    ['t.numStr ~= "^\\\\d+$"', true],
    ['t.neg ~= "^\\\\d+$"', false],
    ['t.emoji ~= "^.$"', true], // Unicode mode: one code point
    ['t.esc ~= "\\n"', true],
    ['t.num ~= "1"', false],
    ['t.yes ~= "true"', false],
    ['t.nul ~= ""', false],
    ['t.arr ~= "x"', false],
    ['t.missing ~= ""', false],
    ['cef.extensions.sourceAddress ~= "^10\\\\.0\\\\."', true],
  ]);
  // A regex with state (none here: no g/y flags) gives the same answer every time.
  const f = compileFilter('t.str ~= "b"');
  for (let i = 0; i < 5; i++) expect(f.test(EVENT)).toBe(true);
});

test('exists: the field is present (null counts), own keys only, arrays by index only', () => {
  table([
    ['exists t.str', true],
    ['exists t.empty', true],
    ['exists t.nul', true],
    ['exists t.no', true],
    ['exists t.zero', true],
    ['exists t.missing', false],
    ['not exists t.missing', true],
    ['! exists t.missing', true],
    ['exists t.missing.deeper', false],
    ['exists t.str.length', false], // no stepping into strings
    ['exists t.str[0]', false],
    ['exists t.num.x', false],
    ['exists t.nul.x', false],
    ['exists t.obj.a', true],
    ['exists t.obj.constructor', false], // inherited: not a field
    ['exists t.obj.toString', false],
    ['exists t.obj.hasOwnProperty', false],
    ['exists t.obj.__proto__', false],
    ['exists constructor', false],
    ['exists valueOf', false],
    ['exists t.arr.length', false],
    ['exists t.arr.map', false],
    ['exists t.arr["0"]', false], // a quoted key is not an index
    ['exists t.arr[0]', true],
    ['exists t.arr[2].code', true],
    ['exists t.arr[3]', false],
    ['exists t.obj[0]', true], // an index on an object reads key "0"
    ['exists t.obj["0"]', true],
    ['exists warnings', true],
    ['exists errors', false],
  ]);
});

test('array indexes and bracket keys', () => {
  table([
    ['t.arr[0] == 1', true],
    ['t.arr[1] == "x"', true],
    ['t.arr[2].code == "c"', true],
    ['t.arr[2]["code"] == "c"', true],
    ['warnings[0].code == "cef_bad_severity"', true],
    ['warnings[1].code == "cef_bad_severity"', false],
    ['t.obj[0] == "zero-key"', true],
    ['t.arr [ 0 ] == 1', true], // spaces are allowed inside paths
    ['t . arr[0] == 1', true],
  ]);
});

// ---------------------------------------------------------------------------------
// Structure

test('precedence: not > and > or, left to right; parentheses override', () => {
  table([
    ['true or false and false', true],
    ['(true or false) and false', false],
    ['false and true or true', true],
    ['false and (true or true)', false],
    ['true or true and false', true],
    ['not true or true', true],
    ['not (true or true)', false],
    ['not false and false', false],
    ['not (false and false)', true],
    ['not not true', true],
    ['!!true', true],
    ['! false && true || false', true],
    ['true && false || true', true],
    ['true && (false || false)', false],
    ['true and false or true and true', true],
    ['((((true))))', true],
    ['(true) and ((false) or (true))', true],
    ['true', true],
    ['false', false],
    // mixed spellings are one language
    ['true and false || true', true],
    ['not false && !false', true],
    ['t.str == "abc" or t.num == 0 and t.yes == false', true],
    ['(t.str == "abc" or t.num == 0) and t.yes == false', false],
    ['not t.str == "x"', true],
    ['t.str=="abc"&&t.num>=1232||false', true],
  ]);
  expect(parseFilter('a == 1 or b == 2 and c == 3')).toEqual({
    kind: 'or',
    operands: [
      { kind: 'compare', op: '==', path: ['a'], value: 1 },
      {
        kind: 'and',
        operands: [
          { kind: 'compare', op: '==', path: ['b'], value: 2 },
          { kind: 'compare', op: '==', path: ['c'], value: 3 },
        ],
      },
    ],
  });
  expect(parseFilter('not a == 1 and b in [1, "x", true, null]')).toEqual({
    kind: 'and',
    operands: [
      { kind: 'not', operand: { kind: 'compare', op: '==', path: ['a'], value: 1 } },
      { kind: 'in', path: ['b'], values: [1, 'x', true, null] },
    ],
  });
  expect(parseFilter('a not in [1]')).toEqual({ kind: 'not', operand: { kind: 'in', path: ['a'], values: [1] } });
  expect(parseFilter('a or b == 1 or c ~= "x"'.replace('a or', 'exists a or'))).toEqual({
    kind: 'or',
    operands: [
      { kind: 'exists', path: ['a'] },
      { kind: 'compare', op: '==', path: ['b'], value: 1 },
      { kind: 'matches', path: ['c'], pattern: 'x' },
    ],
  });
});

test('quoted path segments and keywords as keys', () => {
  table([
    ['syslog.structuredData["event@23668"].et == "KLPRCI_TaskState"', true],
    ['syslog.structuredData["event@23668"]["tdn"] == "Scan"', true],
    ['cef.extensions["x-custom.key"] == "v"', true],
    ['q["a.b"] == 1', true],
    ['exists q.a.b', false],
    ['q["x-y"] == 2', true],
    ['q["["] == 3', true],
    ['q["q\\"uote"] == 4', true],
    ['q["back\\\\slash"] == 5', true],
    ['q[""] == 6', true],
    ['q["not"] == 7', true],
    ['q.not == 7', true], // after a dot any word is a key
    ['t.obj.in == 9', true],
    ['t.obj.not == 8 and t.obj.in == 9', true],
    ['q["with space"] == 9', true],
    ['q["é"] == 10', true],
    ['q["\\u00e9"] == 10', true],
    ['q["0"] == 11', true],
    ['q[0] == 11', true],
    ['["q"]["x-y"] == 2', true], // a path may start with a bracket
    ['["t"].str == "abc"', true],
  ]);
  expect(run('["not"] == 1', { not: 1 })).toBe(true);
  expect(run('["true"] == 1 and ["exists"] == 2', { true: 1, exists: 2 })).toBe(true);
});

test('string literal escapes', () => {
  table([
    ['t.esc == "a\\"b\\\\c\\nd\\te\\u00e9/"', true],
    ['t.esc == "a\\"b\\\\c\\nd\\te\\u00E9\\/"', true],
    ['t.esc == "a\\"b\\\\c\\nd\\te\u00e9/"', true], // raw non-ASCII is fine
    ['t.emoji == "\\ud83d\\ude00"', true],
    ['t.str == "\\u0061bc"', true],
  ]);
  expect(run('s == "\\b\\f\\r"', { s: '\b\f\r' })).toBe(true);
});

test('realistic route filters', () => {
  table([
    ['cef.deviceProduct == "SecurityCenter"', true],
    ['cef.deviceVendor == "KasperskyLab" and cef.severity >= 7', true],
    ['ksc.eventType in ["KLPRCI_TaskState", "GNRL_EV_VIRUS_FOUND"] and ksc.task.newState == "Failed"', true],
    ['syslog.severity <= 4', true],
    ['exists errors or exists warnings', true],
    ['peer startswith "10.0.0."', true],
    ['listener != "udp"', true],
    ['cef.deviceProduct != "SecurityCenter"', false],
    ['not exists cef', false],
  ]);
  // A syslog event without CEF.
  const plain = { timestamp: 'x', received: 'x', message: 'hello' };
  expect(run('cef.deviceProduct == "SecurityCenter"', plain)).toBe(false);
  expect(run('cef.deviceProduct != "SecurityCenter"', plain)).toBe(true);
  expect(run('exists cef.deviceProduct and cef.deviceProduct != "SecurityCenter"', plain)).toBe(false);
  expect(run('message contains "ell"', plain)).toBe(true);
});

test('test() on odd events', () => {
  for (const ev of [{}, [], [1, 2], Object.create(null), { t: null }, { t: [] }, { t: 'abc' }, { t: { str: 5 } }]) {
    for (const src of ['t.str == "abc"', 't.str != 1', 'exists t.str', 't.str in [1]', 't[0] == 1', 't.str ~= "a"']) {
      expect(typeof compileFilter(src).test(ev as object)).toBe('boolean');
    }
  }
  expect(compileFilter('exists a').test(null as unknown as object)).toBe(false);
  expect(compileFilter('a != 1').test(undefined as unknown as object)).toBe(true);
  expect(compileFilter('[0] == 1').test([1])).toBe(true);
  expect(compileFilter('exists a').test({ a: undefined })).toBe(false); // undefined is what JSON drops
});

test('paths read on the schema 1 view never throw on events cefd would not make (a user normalizer\'s odd shapes): missing', () => {
  const odd: object[] = [
    { cef: null },
    { syslog: null },
    { cef: {}, warnings: 1 },
    { cef: {}, warnings: [null] },
    { cef: { version: '0', custom: { 'cs3:X': 'v' } } },
    { ksc: {}, cef: null },
    { ksc: {}, syslog: { structuredData: { 'event@23668': { et: 5 } } } },
  ];
  const paths = ['cef.typed.x', 'cef.extensions.deviceCustomString3', 'ksc.host.name', 'ksc.task.name', 'syslog.timestamp', 'cef.custom["cs3:X"]'];
  for (const ev of odd) {
    for (const p of paths) {
      const where = `${p} on ${JSON.stringify(ev)}`;
      expect(compileFilter(`${p} == "a"`).test(ev), where).toBe(false);
      expect(compileFilter(`${p} != "a"`).test(ev), where).toBe(true);
      expect(compileFilter(`exists ${p}`).test(ev), where).toBe(p === 'cef.custom["cs3:X"]' && (ev as { cef?: { custom?: unknown } }).cef?.custom !== undefined);
    }
  }
});

test('compileFilter keeps the source; fieldValue and compilePath', () => {
  const f = compileFilter(' cef.severity >= 7 ');
  expect(f.source).toBe(' cef.severity >= 7 ');
  expect(fieldValue(EVENT, 'ksc.host.ip')).toBe('10.0.0.42');
  expect(fieldValue(EVENT, 'syslog.structuredData["event@23668"].et')).toBe('KLPRCI_TaskState');
  expect(fieldValue(EVENT, 'warnings[0].code')).toBe('cef_bad_severity');
  expect(fieldValue(EVENT, 'cef.typed')).toBe(EVENT.cef.typed);
  expect(fieldValue(EVENT, 'ksc.host.nothing')).toBeUndefined();
  expect(fieldValue(EVENT, 't.obj.constructor')).toBeUndefined();
  expect(fieldValue(null, 'a')).toBeUndefined();
  const p = compilePath('t.arr[2].code');
  expect(p.segments).toEqual(['t', 'arr', 2, 'code']);
  expect(p.source).toBe('t.arr[2].code');
  expect(p.get(EVENT)).toBe('c');
  expect(fieldValue(EVENT, p)).toBe('c');
  expect(compilePath('["not"].in').segments).toEqual(['not', 'in']);
  expect(() => compilePath('a ==')).toThrow(FilterSyntaxError);
  expect(() => compilePath('')).toThrow(FilterSyntaxError);
  expect(() => compilePath('not')).toThrow(/quote it/);
  expect(() => fieldValue(EVENT, 'a.')).toThrow(FilterSyntaxError);
  // Long paths take the general walker; same answers.
  const deep = { a: { b: { c: { d: { e: [0, { f: 'x' }] } } } } };
  expect(fieldValue(deep, 'a.b.c.d.e[1].f')).toBe('x');
  expect(fieldValue(deep, 'a.b.c.d.e[1].g')).toBeUndefined();
  expect(fieldValue(deep, 'a.b.c.d.e.length')).toBeUndefined();
});

// ---------------------------------------------------------------------------------
// Syntax errors

test('syntax errors: position, column, quoted token', () => {
  const cases: [string, number, ...string[]][] = [
    ['', 0, 'end of input'],
    ['   ', 3, 'end of input'],
    ['a ==', 4, "after '=='", 'end of input'],
    ['a == and', 5, "found 'and'", 'quote text'],
    ['a = 1', 2, "'='", "use '=='"],
    ['a == 1 and', 10, 'end of input'],
    ['a == 1 and or', 11, "'or'"],
    ['(a == 1', 7, "expected ')'", 'column 1'],
    ['a == 1)', 6, "')'"],
    ['a == 1 b == 2', 7, "unexpected 'b'", "'and', 'or'"],
    ['a == 1 AND b == 2', 7, "'AND'", "keywords are lowercase: 'and'"],
    ['a == 1 and (b == 2 OR c == 3)', 19, "'OR'", 'lowercase'],
    ['a == "abc', 5, 'unterminated string'],
    ['a == "abc\\', 5, 'unterminated string'],
    ['a == "\\q"', 6, "bad escape '\\q'"],
    ['a == "\\u12"', 6, '\\u needs 4 hex digits'],
    ['a == "x\ny"', 7, 'control character U+000A'],
    ["a == 'x'", 5, "'''", 'double quotes'],
    ['a', 1, 'end of input', "exists a"],
    ['a and b == 1', 2, "'and'", "exists a"],
    ['a.b-c == 1', 3, "'-'", '["key-name"]'],
    ['a.b@c == 1', 3, "'@'", 'quoted'],
    ['a.b == 10.0.0.1', 7, "malformed number '10.0.0.1'", '"10.0.0.1"'],
    ['a == 1abc', 5, "malformed number '1abc'"],
    ['a == 5.', 5, "malformed number '5.'"],
    ['a == 1e999', 5, "'1e999' is out of range"],
    ['a == abc', 5, "found 'abc'", 'quote text'],
    ['a in 1', 5, "expected '['", "found '1'"],
    ['a in [1, ]', 9, "found ']'"],
    ['a in [1 2]', 8, "expected ',' or ']'", "found '2'"],
    ['a in [1,', 8, 'end of input'],
    ['a not contains "x"', 6, "expected 'in'", "'contains'"],
    ['a < true', 4, "'<' needs a number or a string", "'true'"],
    ['a >= null', 5, "'>=' needs a number or a string"],
    ['a contains 1', 11, "'contains' needs a quoted string", "'1'"],
    ['a startswith x', 13, "'startswith' needs a quoted string"],
    ['a matches "("', 10, 'bad regular expression', '"("'],
    ['a ~= "(?i)[z-a]"', 5, 'bad regular expression'],
    ['a ~= 1', 5, 'quoted regular expression'],
    ['not', 3, 'end of input'],
    ['exists', 6, "after 'exists'", 'end of input'],
    ['exists 1', 7, "after 'exists'", "'1'"],
    ['exists and', 7, "keyword 'and'", '["and"]'],
    ['in == 1', 0, "unexpected 'in'", '["in"]'],
    ['null == 1', 0, "unexpected 'null'"],
    ['1 == a', 0, "unexpected '1'", 'starts with the field path'],
    ['"a" == 1', 0, 'starts with the field path'],
    ['a[-1] == 1', 2, 'array index', "'-1'"],
    ['a[1.5] == 1', 2, "'1.5'"],
    ['a[1e1] == 1', 2, "'1e1'"],
    ['a[x] == 1', 2, "'x'"],
    ['a["x" == 1', 6, "expected ']'", "found '=='"],
    ['a.["b"] == 1', 2, "after '.'", 'without the dot'],
    ['a. == 1', 3, "after '.'", "'=='"],
    ['a.1 == 1', 2, "after '.'", 'without the dot'],
    ['a & b', 2, "'&'", "'and' or '&&'"],
    ['a | b', 2, "'|'", "'or' or '||'"],
    ['()', 1, "found ')'"],
    ['a == 1 ||', 9, 'end of input'],
    ['[', 1, 'end of input'],
    ['a ==\n  1 and\n b', 15, 'line 3, column 3'],
    ['😀 == 1', 0, "'😀'"],
    ['a == 1 "' + 'x'.repeat(100) + '"', 7, "unexpected '\"xxx", "...'"],
  ];
  const bad: string[] = [];
  for (const [src, pos, ...parts] of cases) {
    try {
      compileFilter(src);
      bad.push(`${JSON.stringify(src)}: no error`);
    } catch (err) {
      if (!(err instanceof FilterSyntaxError)) {
        bad.push(`${JSON.stringify(src)}: ${String(err)}`);
        continue;
      }
      if (err.position !== pos) bad.push(`${JSON.stringify(src)}: position ${err.position}, want ${pos} (${err.message})`);
      if (err.source !== src) bad.push(`${JSON.stringify(src)}: source not kept`);
      if (!src.includes('\n') && !err.message.endsWith(`at column ${pos + 1}`)) bad.push(`${JSON.stringify(src)}: message ${err.message}`);
      for (const part of parts) if (!err.message.includes(part)) bad.push(`${JSON.stringify(src)}: message ${JSON.stringify(err.message)} lacks ${JSON.stringify(part)}`);
    }
  }
  expect(bad).toEqual([]);
});

test('syntax errors: line and column of a multi-line filter; details', () => {
  const src = 'cef.deviceProduct == "SecurityCenter"\n  and cef.severity >= seven';
  let err: unknown;
  try {
    compileFilter(src);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(FilterSyntaxError);
  const e = err as FilterSyntaxError;
  expect(e.name).toBe('FilterSyntaxError');
  expect(e.position).toBe(src.indexOf('seven'));
  expect(e.line).toBe(2);
  expect(e.column).toBe(23);
  expect(e.detail).toContain("found 'seven'");
  expect(e.message).toBe(`${e.detail} at line 2, column 23`);
});

test('an unclosed ( is named by its line and column in a filter of several lines (not by its offset in the text)', () => {
  const src = 'a == 1 and\n  (b == 2\n  c == 3)';
  let err: unknown;
  try {
    compileFilter(src);
  } catch (e) {
    err = e;
  }
  const e = err as FilterSyntaxError;
  // Before: "the '(' at column 14", the offset in the whole text.
  expect(e.message).toBe("expected ')' to close the '(' at line 2, column 3, found 'c' at line 3, column 3");
  expect(e.related).toEqual({ position: src.indexOf('('), text: 'at line 2, column 3' });
  expect(() => compileFilter('(a == 1 b')).toThrow("expected ')' to close the '(' at column 1, found 'b' at column 9");
});

test('nesting is bounded at 100 levels (a syntax error, not a stack overflow)', () => {
  expect(run('('.repeat(100) + 'true' + ')'.repeat(100))).toBe(true);
  expect(run('not '.repeat(100) + 'true')).toBe(true);
  expect(run('!'.repeat(99) + 'true')).toBe(false);
  expect(() => compileFilter('('.repeat(101) + 'true' + ')'.repeat(101))).toThrow(/nested too deeply/);
  expect(() => compileFilter('not '.repeat(5000) + 'true')).toThrow(FilterSyntaxError);
  expect(() => compileFilter('('.repeat(100000))).toThrow(FilterSyntaxError);
  // Long flat chains are not nesting.
  const long = Array.from({ length: 5000 }, (_, i) => `a == ${i}`).join(' or ');
  expect(run(long, { a: 4999 })).toBe(true);
  expect(run(long, { a: 5000 })).toBe(false);
});

// ---------------------------------------------------------------------------------
// Property tests: a reference interpreter and a printer, independent of the module.

const RESERVED = new Set(['and', 'or', 'not', 'in', 'exists', 'contains', 'startswith', 'endswith', 'matches', 'true', 'false', 'null']);
const KEYS = ['a', 'b', 'c', 'e@1', 'not', 'in', '0', 'x y', '', 'constructor', '__proto__', 'length'];
const STRS = ['', 'abc', 'ABC', 'b', '10', '7', '10.0', '10.', '.5', '-1.5', '+3', '1e3', '0012', '0x10', 'Infinity', ' 1', 'a"b\\', 'é', '😀', 'x\ny'];
const PATTERNS = ['^a', 'b$', '(?i)ABC', '\\d+', '^.$', '', 'x y', '^1', '(?i)^é'];

function refNum(v: unknown): number {
  if (typeof v === 'number') return v;
  if (typeof v !== 'string' || !/^[+-]?\d+(\.\d+)?([eE][+-]?\d+)?$/.test(v)) return NaN;
  const n = Number(v);
  return Number.isFinite(n) ? n : NaN;
}

function refGet(root: unknown, path: readonly PathSegment[]): unknown {
  let v = root;
  for (const seg of path) {
    if (typeof v !== 'object' || v === null) return undefined;
    if (Array.isArray(v)) {
      if (typeof seg !== 'number') return undefined;
      v = v[seg];
      continue;
    }
    const k = String(seg);
    if (!Object.prototype.hasOwnProperty.call(v, k)) return undefined;
    v = (v as Record<string, unknown>)[k];
  }
  return v;
}

function refEq(v: unknown, lit: FilterLiteral): boolean {
  if (lit === null || typeof lit === 'boolean') return v === lit;
  if (typeof lit === 'number') return (typeof v === 'number' || typeof v === 'string') && refNum(v) === lit;
  if (typeof v === 'string') return v === lit;
  if (typeof v === 'number') return v === refNum(lit);
  return false;
}

function refOrder(op: string, v: unknown, lit: FilterLiteral): boolean {
  let a: string | number;
  let b: string | number;
  if (typeof lit === 'number') {
    if (typeof v !== 'number' && typeof v !== 'string') return false;
    a = refNum(v);
    b = lit;
  } else if (typeof lit === 'string' && typeof v === 'string') {
    a = v;
    b = lit;
  } else if (typeof lit === 'string' && typeof v === 'number') {
    a = v;
    b = refNum(lit);
  } else {
    return false;
  }
  switch (op) {
    case '<': return a < b;
    case '<=': return a <= b;
    case '>': return a > b;
    case '>=': return a >= b;
  }
  throw new Error(op);
}

function refEval(n: FilterNode, e: unknown): boolean {
  switch (n.kind) {
    case 'const': return n.value;
    case 'and': return n.operands.every((o) => refEval(o, e));
    case 'or': return n.operands.some((o) => refEval(o, e));
    case 'not': return !refEval(n.operand, e);
    case 'exists': return refGet(e, n.path) !== undefined;
    case 'compare': {
      const v = refGet(e, n.path);
      if (n.op === '==') return refEq(v, n.value);
      if (n.op === '!=') return !refEq(v, n.value);
      return refOrder(n.op, v, n.value);
    }
    case 'in': {
      const v = refGet(e, n.path);
      return n.values.some((l) => refEq(v, l));
    }
    case 'string': {
      const v = refGet(e, n.path);
      if (typeof v !== 'string') return false;
      return n.op === 'contains' ? v.includes(n.value) : n.op === 'startswith' ? v.startsWith(n.value) : v.endsWith(n.value);
    }
    case 'matches': {
      const v = refGet(e, n.path);
      const ci = n.pattern.startsWith('(?i)');
      return typeof v === 'string' && new RegExp(ci ? n.pattern.slice(4) : n.pattern, ci ? 'iu' : 'u').test(v);
    }
  }
}

type Style = { symbols: boolean; compact: boolean };

function printPath(path: readonly PathSegment[]): string {
  return path
    .map((s, i) => {
      if (typeof s === 'number') return `[${s}]`;
      if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(s) && (i > 0 || !RESERVED.has(s))) return i > 0 ? `.${s}` : s;
      return `[${JSON.stringify(s)}]`;
    })
    .join('');
}

function printLit(v: FilterLiteral): string {
  return typeof v === 'string' ? JSON.stringify(v) : String(v);
}

function print(n: FilterNode, st: Style): string {
  const sp = st.compact ? '' : ' ';
  const sub = (o: FilterNode) => (o.kind === 'and' || o.kind === 'or' ? `(${print(o, st)})` : print(o, st));
  switch (n.kind) {
    case 'const': return String(n.value);
    case 'and': return n.operands.map(sub).join(st.symbols ? `${sp}&&${sp}` : ' and ');
    case 'or': return n.operands.map(sub).join(st.symbols ? `${sp}||${sp}` : ' or ');
    case 'not':
      if (st.symbols && n.operand.kind === 'in') return `${printPath(n.operand.path)} not in [${n.operand.values.map(printLit).join(', ')}]`;
      return st.symbols ? `!${sub(n.operand)}` : `not ${sub(n.operand)}`;
    case 'exists': return `exists ${printPath(n.path)}`;
    case 'compare': return `${printPath(n.path)}${sp}${n.op}${sp}${printLit(n.value)}`;
    case 'in': return `${printPath(n.path)} in${sp}[${n.values.map(printLit).join(`,${sp}`)}]`;
    case 'string': return `${printPath(n.path)} ${n.op} ${JSON.stringify(n.value)}`;
    case 'matches': return `${printPath(n.path)}${st.symbols ? `${sp}~=${sp}` : ' matches '}${JSON.stringify(n.pattern)}`;
  }
}

/** Most path segments and event keys come from a few core keys, so that paths hit values. */
const CORE = ['a', 'b', 'not', 'e@1'];
const segArb: fc.Arbitrary<PathSegment> = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom(...CORE) },
  { weight: 2, arbitrary: fc.constantFrom(0, 1) },
  { weight: 1, arbitrary: fc.constantFrom(...KEYS) },
);
const pathArb = fc.oneof(
  { weight: 3, arbitrary: fc.array(segArb, { minLength: 1, maxLength: 1 }) },
  { weight: 3, arbitrary: fc.array(segArb, { minLength: 2, maxLength: 2 }) },
  { weight: 1, arbitrary: fc.array(segArb, { minLength: 3, maxLength: 4 }) },
);
const numArb = fc
  .oneof(
    { weight: 3, arbitrary: fc.constantFrom(10, 7, 1232, -1.5, 1000, 12, 3, 0) },
    { weight: 1, arbitrary: fc.integer({ min: -20, max: 2000 }) },
    { weight: 1, arbitrary: fc.double({ noNaN: true, noDefaultInfinity: true }) },
  )
  .map((n) => (n === 0 ? 0 : n));
const strArb = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...STRS) },
  { weight: 1, arbitrary: fc.string() },
  { weight: 1, arbitrary: fc.string({ unit: 'binary' }) },
);
const litArb: fc.Arbitrary<FilterLiteral> = fc.oneof(
  { weight: 4, arbitrary: strArb },
  { weight: 4, arbitrary: numArb },
  { weight: 1, arbitrary: fc.boolean() },
  { weight: 1, arbitrary: fc.constant(null) },
);

function makeAstArb(path: fc.Arbitrary<PathSegment[]>, lit: fc.Arbitrary<FilterLiteral>, str: fc.Arbitrary<string>): fc.Arbitrary<FilterNode> {
  const ordered = lit.filter((v): v is string | number => typeof v === 'string' || typeof v === 'number');
  const leaf: fc.Arbitrary<FilterNode> = fc.oneof(
    fc.record({ kind: fc.constant('compare' as const), op: fc.constantFrom('==' as const, '!=' as const), path, value: lit }),
    fc.record({ kind: fc.constant('compare' as const), op: fc.constantFrom('<' as const, '<=' as const, '>' as const, '>=' as const), path, value: ordered }),
    fc.record({ kind: fc.constant('in' as const), path, values: fc.array(lit, { maxLength: 4 }) }),
    fc.record({ kind: fc.constant('string' as const), op: fc.constantFrom('contains' as const, 'startswith' as const, 'endswith' as const), path, value: str }),
    fc.record({ kind: fc.constant('matches' as const), path, pattern: fc.constantFrom(...PATTERNS) }),
    fc.record({ kind: fc.constant('exists' as const), path }),
    fc.record({ kind: fc.constant('const' as const), value: fc.boolean() }),
  );
  return fc.letrec<{ node: FilterNode }>((tie) => ({
    node: fc.oneof(
      { maxDepth: 4, depthIdentifier: 'ast' },
      leaf,
      fc.record({ kind: fc.constant('not' as const), operand: tie('node') }),
      fc.record({ kind: fc.constantFrom('and' as const, 'or' as const), operands: fc.array(tie('node'), { minLength: 2, maxLength: 3 }) }),
    ),
  })).node;
}

const astArb = makeAstArb(pathArb, litArb, strArb);

const styleArb: fc.Arbitrary<Style> = fc.record({ symbols: fc.boolean(), compact: fc.boolean() });

/** Events whose keys the generated paths hit, with values of every kind. */
const leafValueArb = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...STRS) },
  { weight: 4, arbitrary: numArb },
  { weight: 1, arbitrary: fc.boolean() },
  { weight: 1, arbitrary: fc.constant(null) },
  { weight: 1, arbitrary: fc.constantFrom(NaN, Infinity, -Infinity, -0, 'Infinity', '1e999') },
);
/** A value `depth` levels deep: objects of all the core keys, arrays, leaves. */
function valueArb(depth: number): fc.Arbitrary<unknown> {
  if (depth === 0) return leafValueArb;
  const inner = valueArb(depth - 1);
  return fc.oneof(
    { weight: depth === 1 ? 4 : 1, arbitrary: leafValueArb },
    { weight: 1, arbitrary: fc.array(inner, { minLength: 1, maxLength: 3 }) },
    { weight: 4, arbitrary: fc.record(Object.fromEntries(CORE.map((k) => [k, inner]))) },
    { weight: 1, arbitrary: fc.record(Object.fromEntries(CORE.map((k) => [k, inner])), { requiredKeys: [] }) },
    { weight: 1, arbitrary: fc.dictionary(fc.constantFrom(...KEYS), inner, { maxKeys: 4 }) },
  );
}
const eventValueArb = valueArb(3);
const eventArb: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 4, arbitrary: fc.record(Object.fromEntries(CORE.map((k) => [k, valueArb(2)]))) },
  { weight: 1, arbitrary: eventValueArb },
  { weight: 1, arbitrary: fc.anything({
    key: fc.constantFrom(...KEYS),
    maxDepth: 4,
    withBigInt: true,
    withBoxedValues: true,
    withDate: true,
    withMap: true,
    withSet: true,
    withNullPrototype: true,
    withObjectString: true,
    withSparseArray: true,
    withTypedArray: true,
  }) },
);

/** Paths that exist in `v` (up to 3 deep) and the literals it holds, also as the other type (10 and "10"). */
function collect(v: unknown, prefix: PathSegment[], paths: PathSegment[][], lits: FilterLiteral[], strs: string[]): void {
  if (prefix.length > 0) paths.push(prefix);
  if (typeof v === 'string') {
    lits.push(v);
    strs.push(v);
    const n = Number(v);
    if (v.trim() !== '' && Number.isFinite(n)) lits.push(n === 0 ? 0 : n, String(n));
  } else if (typeof v === 'number') {
    if (Number.isFinite(v)) lits.push(v === 0 ? 0 : v, String(v));
  } else if (typeof v === 'boolean' || v === null) {
    lits.push(v);
  } else if (typeof v === 'object' && prefix.length < 3) {
    const proto = Object.getPrototypeOf(v);
    if (Array.isArray(v)) for (let i = 0; i < Math.min(v.length, 3); i++) collect(v[i], [...prefix, i], paths, lits, strs);
    else if (proto === Object.prototype || proto === null) for (const k of Object.keys(v)) collect((v as Record<string, unknown>)[k], [...prefix, k], paths, lits, strs);
  }
}

/** Events, and filters whose paths and literals are mostly taken from them, so that tests hit. */
const casesArb = fc.array(eventArb, { minLength: 1, maxLength: 4 }).chain((events) => {
  const paths: PathSegment[][] = [];
  const lits: FilterLiteral[] = [];
  const strs: string[] = [];
  for (const ev of events) collect(ev, [], paths, lits, strs);
  const path = paths.length > 0 ? fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...paths) }, { weight: 1, arbitrary: pathArb }) : pathArb;
  const lit = lits.length > 0 ? fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...lits) }, { weight: 2, arbitrary: litArb }) : litArb;
  const sliced = strs.length > 0 ? fc.tuple(fc.constantFrom(...strs), fc.nat(), fc.nat()).map(([s, i, j]) => s.slice(i % (s.length + 1), s.length - (j % (s.length + 1)))) : strArb;
  return fc.tuple(fc.constant(events), makeAstArb(path, lit, fc.oneof({ weight: 3, arbitrary: sliced }, { weight: 1, arbitrary: strArb })), styleArb);
});

test('property: printed AST parses back to the same AST', () => {
  fc.assert(
    fc.property(astArb, styleArb, (ast, st) => {
      expect(parseFilter(print(ast, st))).toEqual(ast);
    }),
    { numRuns: 3000 },
  );
});

test('property: compiled filter agrees with the reference interpreter', () => {
  fc.assert(
    fc.property(casesArb, ([events, ast, st]) => {
      const f = compileFilter(print(ast, st));
      for (const ev of events) expect(f.test(ev as object)).toBe(refEval(ast, ev));
    }),
    { numRuns: 3000 },
  );
});

test('property: test() never throws, whatever the event', () => {
  fc.assert(
    fc.property(astArb, styleArb, fc.anything({ withBigInt: true, withBoxedValues: true, withDate: true, withMap: true, withSet: true, withNullPrototype: true, withSparseArray: true, withTypedArray: true }), (ast, st, ev) => {
      expect(typeof compileFilter(print(ast, st)).test(ev as object)).toBe('boolean');
    }),
    { numRuns: 2000 },
  );
});

test('property: != is not ==, not in is not in, for any literal', () => {
  fc.assert(
    fc.property(pathArb, litArb, eventArb, (path, lit, ev) => {
      const p = printPath(path);
      const eq = compileFilter(`${p} == ${printLit(lit)}`).test(ev as object);
      expect(compileFilter(`${p} != ${printLit(lit)}`).test(ev as object)).toBe(!eq);
      expect(compileFilter(`${p} in [${printLit(lit)}]`).test(ev as object)).toBe(eq);
      expect(compileFilter(`${p} not in [${printLit(lit)}]`).test(ev as object)).toBe(!eq);
    }),
    { numRuns: 2000 },
  );
});

test('property: arbitrary text either compiles or throws FilterSyntaxError with a position inside it', () => {
  const tokens = ['a', '.', 'b', '[', ']', '"x"', '0', '1.5', '-2', '==', '!=', '<', '>=', 'and', 'or', 'not', '!', '&&', '||', '(', ')', 'in', ',', 'exists', 'contains', '~=', 'true', 'null', ' ', '\n', '=', '@', '"', '\\'];
  fc.assert(
    fc.property(fc.oneof(fc.string(), fc.array(fc.constantFrom(...tokens), { maxLength: 12 }).map((t) => t.join(''))), (src) => {
      try {
        const f = compileFilter(src);
        expect(typeof f.test(EVENT)).toBe('boolean');
      } catch (err) {
        expect(err).toBeInstanceOf(FilterSyntaxError);
        const e = err as FilterSyntaxError;
        expect(e.position).toBeGreaterThanOrEqual(0);
        expect(e.position).toBeLessThanOrEqual(src.length);
      }
    }),
    { numRuns: 5000 },
  );
});
