import { expect, test } from 'vitest';
import fc from 'fast-check';
import { date, decodeParams, decodeValue, double, encodeArgs, encodeValue, formatDateTime, long } from '../../src/ksc/params.js';
import { taskFromData } from '../../src/ksc/client.js';

test('method arguments: params bare at the top, wrapped inside (OPEN-API.md §0.1)', () => {
  const args = encodeArgs({
    wstrFilter: '',
    vecFieldsToReturn: ['KLHST_WKS_DN'],
    vecFieldsToOrder: [{ Name: 'KLHST_WKS_DN', Asc: true }],
    pParams: { KLGRP_FIND_FROM_CUR_VS_ONLY: true, nested: { a: 1 }, when: new Date('2016-09-19T15:22:35.123Z') },
    lMaxLifeTime: 3600,
    skipped: undefined,
  });
  expect(args).toEqual({
    wstrFilter: '',
    vecFieldsToReturn: ['KLHST_WKS_DN'],
    vecFieldsToOrder: [{ type: 'params', value: { Name: 'KLHST_WKS_DN', Asc: true } }],
    pParams: { KLGRP_FIND_FROM_CUR_VS_ONLY: true, nested: { type: 'params', value: { a: 1 } }, when: { type: 'datetime', value: '2016-09-19T15:22:35Z' } },
    lMaxLifeTime: 3600,
  });
});

test('value wrappers: long, big integers, double, date, binary, null', () => {
  expect(encodeValue(long(1234))).toEqual({ type: 'long', value: 1234 });
  expect(encodeValue(long(5n))).toEqual({ type: 'long', value: 5 });
  expect(encodeValue(4294967296)).toEqual({ type: 'long', value: 4294967296 });
  expect(encodeValue(42)).toBe(42);
  expect(encodeValue(1.5)).toEqual({ type: 'double', value: 1.5 });
  expect(encodeValue(double(2))).toEqual({ type: 'double', value: 2 });
  expect(encodeValue(date('2016-09-19'))).toEqual({ type: 'date', value: '2016-09-19' });
  expect(encodeValue(Buffer.from('sometext'))).toEqual({ type: 'binary', value: 'c29tZXRleHQ=' });
  expect(encodeValue(null)).toBeNull();
  expect(() => encodeValue((() => 1) as never)).toThrow(TypeError);
  expect(formatDateTime(new Date('2024-05-01T10:00:00.999Z'))).toBe('2024-05-01T10:00:00Z');
});

test('decoding: wrappers to plain JS, "" datetime is no value, nested params and arrays', () => {
  expect(
    decodeParams({
      l: { type: 'long', value: 167772210 },
      ls: { type: 'long', value: '9007199254740993' },
      dt: { type: 'datetime', value: '2024-05-01T10:00:00Z' },
      empty: { type: 'datetime', value: '' },
      d: { type: 'date', value: '2024-05-01' },
      b: { type: 'binary', value: 'c29tZXRleHQ=' },
      f: { type: 'float', value: 1.5 },
      p: { type: 'params', value: { inner: { type: 'params', value: { x: [null, { type: 'long', value: 1 }] } } } },
      plain: { type: 'other', value: 1 },
    }),
  ).toEqual({
    l: 167772210,
    ls: '9007199254740993',
    dt: '2024-05-01T10:00:00.000Z',
    empty: null,
    d: '2024-05-01',
    b: Buffer.from('sometext'),
    f: 1.5,
    p: { inner: { x: [null, 1] } },
    plain: { type: 'other', value: 1 },
  });
  expect(decodeParams(null)).toEqual({});
  expect(decodeParams([1])).toEqual({});
});

test('decode(encode(x)) keeps JSON-like values (property)', () => {
  const leaf = fc.oneof(fc.string(), fc.boolean(), fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }), fc.constant(null));
  const value = fc.letrec((tie) => ({
    v: fc.oneof({ depthSize: 'small' }, leaf, fc.array(tie('v'), { maxLength: 4 }), fc.dictionary(fc.string({ minLength: 1, maxLength: 8 }).filter((k) => k !== 'type' && k !== 'value'), tie('v'), { maxKeys: 4 })),
  })).v;
  fc.assert(
    fc.property(value, (x) => {
      expect(decodeValue(encodeValue(x as never))).toEqual(x);
    }),
    { numRuns: 300 },
  );
});

test('task data: id, display name from TASK_INFO_PARAMS, product, group', () => {
  expect(
    taskFromData({ TASK_UNIQUE_ID: '104', TASK_NAME: 'ODS', TASKID_PRODUCT_NAME: 'KES', TASKID_VERSION: '11.0.0.0', TASK_INFO_PARAMS: { DisplayName: 'KUMA Virus scan', PRTS_TASK_GROUPID: 5 } }),
  ).toEqual({ id: '104', displayName: 'KUMA Virus scan', taskType: 'ODS', product: 'KES', version: '11.0.0.0', component: undefined, groupId: 5 });
  expect(taskFromData({ TASK_UNIQUE_ID: 7, TASK_INFO_PARAMS: { DisplayName: 'x', PRTS_TASK_GROUPID: -1 } })?.groupId).toBeUndefined();
  expect(taskFromData({ TASK_INFO_PARAMS: { DisplayName: 'no id' } })).toBeUndefined();
});
