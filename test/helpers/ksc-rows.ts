/**
 * KSC database rows made from the KSC fixtures (fixtures/ksc/golden): each golden event
 * of the CEF or Syslog format becomes the row `v_akpub_ev_event` joined to `v_akpub_host`
 * would hold for it (column names: docs/reference/ksc-open-api.md §5). Syslog events carry the
 * event's parameters as sent (p1..p9 = wstrPar1..9); CEF events are mapped back through
 * the parameter layout of their type (normalizers/ksc/tables.ts).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { typeInfo } from '../../normalizers/ksc/tables.js';
import type { KscObject } from '../../normalizers/ksc/types.js';

const GOLDEN = fileURLToPath(new URL('../../fixtures/ksc/golden/', import.meta.url));

export interface GoldenKsc {
  name: string;
  ksc: KscObject;
}

export function goldenKsc(): GoldenKsc[] {
  const out: GoldenKsc[] = [];
  for (const f of readdirSync(GOLDEN).filter((n) => n.endsWith('.json')).sort()) {
    const g = JSON.parse(readFileSync(GOLDEN + f, 'utf8')) as { events: { ksc?: KscObject; kscView?: KscObject }[] | null };
    (g.events ?? []).forEach((e, i) => {
      // The whole object the CEF/Syslog path gives (`kscView`; event schema 2 writes a lean
      // `ksc` on the event and derives the rest from the CEF/syslog fields).
      const k = e.kscView ?? e.ksc;
      if (k === undefined || k.eventType === undefined) return;
      // The golden files leave `format` out (the event's shape says it): Syslog events carry
      // their element's params, CEF events their labels.
      const format = k.format ?? (k.params !== undefined ? 'syslog' : Object.keys(k.labels ?? {}).length > 0 || k.severityCode !== undefined ? 'cef' : undefined);
      if (format === 'cef' || format === 'syslog') out.push({ name: `${f.slice(0, -5)}#${i}`, ksc: { ...k, format } });
    });
  }
  return out;
}

/** KSC's `nIp`: the IPv4 address as SQL Server's signed 32-bit `int`. */
export function kscIpInt(ip: string | undefined): number | null {
  if (ip === undefined) return null;
  const p = ip.split('.').map(Number);
  if (p.length !== 4 || p.some((x) => !Number.isInteger(x) || x < 0 || x > 255)) return null;
  return ((p[0]! << 24) | (p[1]! << 16) | (p[2]! << 8) | p[3]!) | 0;
}

const u32 = (ip: string | undefined) => {
  const n = kscIpInt(ip);
  return n === null ? undefined : String(n >>> 0);
};

/** The event's parameters p1..p9 as the database holds them. */
function params(k: KscObject): Record<string, string | undefined> {
  if (k.format === 'syslog' && k.params !== undefined) return k.params;
  const layout = typeInfo(k.eventType).layout;
  const t = k.threat;
  const a = k.attack;
  if (layout === 'object' && t !== undefined) return { p1: t.sha256, p2: t.objectPath, p5: t.name, p7: t.user, p9: t.md5 !== undefined ? JSON.stringify({ md5: t.md5 }) : undefined };
  if (layout === 'app_launch' && t !== undefined) return { p2: t.user, p7: t.objectPath, p8: t.sha256 !== undefined ? `;${t.sha256}` : undefined };
  if (layout === 'attack' && a !== undefined) return { p1: a.name, p2: a.protocol, p3: u32(a.sourceIp), p4: a.port !== undefined ? String(a.port) : undefined, p6: u32(a.targetIp) };
  return {};
}

/** The joined row (event columns + host columns as the default query names them). */
export function rowFor(k: KscObject, nId: number, hostId: number): Record<string, string | number | null> {
  const p = params(k);
  const row: Record<string, string | number | null> = {
    nId,
    tmRiseTime: '2024-05-06T09:14:27.000Z',
    tmRegistrationTime: '2024-05-06T09:14:28.000Z',
    strEventType: k.eventType ?? null,
    wstrEventTypeDisplayName: k.eventName ?? null,
    wstrDescription: k.messageLines !== undefined ? k.messageLines.join('\r\n') : null,
    wstrGroupName: k.group ?? null,
    wstrTaskDisplayName: (k.category === 'task_state' ? k.task?.name : k.component) ?? null,
    nHostId: hostId,
    wstrHostDisplayName: k.host.name ?? null,
    wstrDnsName: k.host.fqdn ?? null,
    nIp: kscIpInt(k.host.ip),
  };
  for (let i = 1; i <= 9; i++) row[`wstrPar${i}`] = p[`p${i}`] ?? null;
  return row;
}

export const EVENT_COLUMNS = [
  'nId', 'tmRiseTime', 'tmRegistrationTime', 'strEventType', 'wstrEventTypeDisplayName', 'wstrDescription', 'wstrGroupName',
  'wstrTaskDisplayName', 'wstrPar1', 'wstrPar2', 'wstrPar3', 'wstrPar4', 'wstrPar5', 'wstrPar6', 'wstrPar7', 'wstrPar8', 'wstrPar9', 'nHostId',
] as const;
