/**
 * src/codecs/cef/key-table.ts is generated from fixtures/cef/keys.json (the CEF key
 * dictionary): every key there is in the table with its full name and the value type its
 * spec data type maps to, and the table holds nothing else.
 */
import { readFileSync } from 'node:fs';
import { expect, test } from 'vitest';
import { KEY_TABLE, type KeyType } from '../../src/codecs/cef/key-table.js';

interface KeyInfo {
  full_name: string;
  data_type: string;
}
const KEYS = (JSON.parse(readFileSync(new URL('../../fixtures/cef/keys.json', import.meta.url), 'utf8')) as { keys: Record<string, KeyInfo> }).keys;

/** The spec's data type → cefd's value type (see key-table.ts: IP addresses of either version, POLICY row 15). */
function keyType(dataType: string): KeyType {
  if (dataType === 'String') return 'string';
  if (dataType === 'Long' || dataType.startsWith('Integer')) return 'int';
  if (dataType === 'Time stamp') return 'time';
  if (dataType.startsWith('IP address') || dataType === 'IPv6 address') return 'ip';
  if (dataType === 'MAC address' || dataType === 'Double' || dataType === 'Floating point') return 'text';
  throw new Error(`data type ${dataType} has no value type`);
}

test('the key table is keys.json: every key, its full name and its value type', () => {
  const expected = Object.entries(KEYS).map(([short, k]) => [short, k.full_name, keyType(k.data_type)]);
  expect([...KEY_TABLE].map((row) => [...row]).sort()).toEqual(expected.sort());
});
