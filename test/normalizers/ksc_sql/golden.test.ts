/**
 * The row form and the CEF/Syslog forms of the same KSC event give the same `ksc` object:
 * for every KSC event type in the fixtures, the row (test/helpers/ksc-rows.ts) goes
 * through the real `ksc_sql` normalizer and each field the row carries is compared with
 * the golden object of the CEF or Syslog path.
 */
import { describe, expect, test } from 'vitest';
import kscSql, { ipFromKscInt } from '../../../normalizers/ksc_sql/index.js';
import type { KscObject } from '../../../normalizers/ksc/types.js';
import { normalizeEvent } from '../../../src/pipeline/normalize.js';
import type { CefdEvent } from '../../../src/event.js';
import { goldenKsc, kscIpInt, rowFor } from '../../helpers/ksc-rows.js';

function fromRow(row: Record<string, unknown>): KscObject {
  const ev: CefdEvent = { timestamp: '2024-05-06T09:14:27.000Z', received: '2024-05-06T09:14:27.000Z', sql: { source: 's', database: 'd', cursor: 1, row } };
  const out = normalizeEvent(ev, [kscSql]);
  expect(out.kind).toBe('normalized');
  expect(ev['ksc_sql']).toBeUndefined();
  return ev.ksc as KscObject;
}

const cases = goldenKsc();

test('the fixtures hold CEF and Syslog events of many types', () => {
  expect(new Set(cases.map((c) => c.ksc.eventType)).size).toBeGreaterThanOrEqual(10);
  expect(cases.some((c) => c.ksc.format === 'syslog')).toBe(true);
});

describe.each(cases)('$name', ({ ksc }) => {
  test('row form = golden form, field by field', () => {
    const r = fromRow(rowFor(ksc, 1, 1));
    expect(r.format).toBe('sql');
    expect(r.eventType).toBe(ksc.eventType);
    expect(r.category).toBe(ksc.category);
    if (ksc.eventName !== undefined) expect(r.eventName).toBe(ksc.eventName);
    if (ksc.group !== undefined) expect(r.group).toBe(ksc.group);
    if (ksc.host.name !== undefined) expect(r.host.name).toBe(ksc.host.name);
    if (ksc.host.ip !== undefined) expect(r.host.ip).toBe(ksc.host.ip);
    if (ksc.host.fqdn !== undefined) expect(r.host.fqdn).toBe(ksc.host.fqdn);
    if (ksc.task?.name !== undefined) expect(r.task?.name).toBe(ksc.task.name);
    if (ksc.component !== undefined) expect(r.component).toBe(ksc.component);
    for (const k of ['name', 'objectPath', 'user', 'action', 'sha256', 'md5'] as const) {
      if (ksc.threat?.[k] !== undefined) expect([k, r.threat?.[k]]).toEqual([k, ksc.threat[k]]);
    }
    for (const k of ['name', 'protocol', 'sourceIp', 'targetIp', 'port'] as const) {
      if (ksc.attack?.[k] !== undefined) expect([k, r.attack?.[k]]).toEqual([k, ksc.attack[k]]);
    }
    if (ksc.messageLines !== undefined) expect(r.messageLines).toEqual(ksc.messageLines);
  });
});

test('nIp is decoded as KSC encodes it (signed int, unsigned, text)', () => {
  expect(ipFromKscInt(kscIpInt('10.0.12.42'))).toBe('10.0.12.42');
  expect(ipFromKscInt(kscIpInt('192.168.1.200'))).toBe('192.168.1.200');
  expect(kscIpInt('192.168.1.200')).toBeLessThan(0);
  expect(ipFromKscInt(3232235976)).toBe('192.168.1.200');
  expect(ipFromKscInt('-1062731320')).toBe('192.168.1.200');
  expect(ipFromKscInt(-1)).toBe('255.255.255.255');
  expect(ipFromKscInt(0)).toBeUndefined();
  expect(ipFromKscInt(null)).toBeUndefined();
  expect(ipFromKscInt(2 ** 32)).toBeUndefined();
  expect(ipFromKscInt('10.0.0.1')).toBeUndefined();
});

test('rows without an event type are not accepted; odd values never throw', () => {
  const ev: CefdEvent = { timestamp: 't', received: 't', sql: { source: 's', database: 'd', cursor: 1, row: { nId: 1 } } };
  expect(normalizeEvent(ev, [kscSql]).kind).toBe('none');
  const odd = fromRow({ strEventType: 'GNRL_EV_ATTACK_DETECTED', wstrPar3: 'x', wstrPar4: '', nIp: 'abc', nSeverity: 9, wstrDescription: 'a\nb' });
  expect(odd.attack?.sourceIp).toBeUndefined();
  expect(odd.severity).toBe('unknown');
  expect(odd.messageLines).toEqual(['a', 'b']);
  expect(fromRow({ strEventType: 'GNRL_EV_VIRUS_FOUND', nSeverity: 4 }).severity).toBe('critical');
});
