/**
 * The `ksc_sql` normalizer: a row of KSC's database views (`v_akpub_ev_event` joined to
 * `v_akpub_host`, as the `sql` source reads it; docs/sql-source.md) into the same `ksc`
 * object the CEF and Syslog paths produce (normalizers/ksc/types.ts), written on the
 * event as `ksc` (`writes`), so routes and outputs see one shape whatever the transport.
 *
 * Column → field (docs/reference/ksc-open-api.md §5; the Syslog export carries the same event
 * attributes, so the row is read like its `event@23668` element):
 * - `strEventType` → eventType (syslog `et`), `wstrEventTypeDisplayName` → eventName (`etdn`)
 * - `wstrGroupName` → group (`gn`), `wstrTaskDisplayName` → task.name for task_state
 *   events, component otherwise (`tdn`)
 * - `wstrPar1`..`wstrPar9` → p1..p9, read per event type as the Syslog path reads them
 *   (threat name, object path, user, SHA-256, attack fields)
 * - host view: `wstrHostDisplayName` (or `wstrDisplayName`) → host.name, `nIp` → host.ip
 *   (KSC stores an IPv4 address as a 32-bit integer, signed in SQL Server's `int`),
 *   `wstrDnsName` → host.fqdn when it has a dot
 * - `wstrDescription` → messageLines (split on real line breaks)
 * - GUESS columns (not seen in public queries; read when a query selects them):
 *   `nSeverity` (1-4) → severity, `wstrProductName`/`wstrProductVersion` → product.
 *
 * Pure and never throws on any row the source can produce (values are JSON scalars).
 */
import type { CefdEvent } from '../../src/event.js';
import type { NormalizeOutput, Normalizer } from '../../src/pipeline/normalize.js';
import { isThreatCategory } from '../ksc/derive.js';
import { syslogAttack, syslogThreat } from '../ksc/syslog-format.js';
import { severityName, typeInfo } from '../ksc/tables.js';
import { looksLikeFqdn } from '../ksc/text.js';
import type { KscObject, KscWarning } from '../ksc/types.js';

/** What the sql source puts on an event (src/sources/sql/source.ts, SqlQueryPlan.rowEvent). */
export interface SqlRecord {
  source: string;
  database: string;
  cursor: string | number;
  row: Record<string, unknown>;
}

function sqlOf(event: CefdEvent): SqlRecord | undefined {
  const s = event['sql'];
  if (s === null || typeof s !== 'object') return undefined;
  const row = (s as { row?: unknown }).row;
  return row !== null && typeof row === 'object' ? (s as SqlRecord) : undefined;
}

/** A column as text: strings as they are, numbers in decimal; null, empty and others absent. */
function text(row: Record<string, unknown>, col: string): string | undefined {
  const v = row[col];
  if (typeof v === 'string') return v === '' ? undefined : v;
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  return undefined;
}

/**
 * KSC's IPv4 encoding (`nIp`, IP_LONG): the address as a 32-bit integer, most significant
 * byte first. SQL Server's `int` is signed, so addresses from 128.0.0.0 up read negative;
 * PostgreSQL/MySQL may hand a bigint as decimal text. 0 means "no address".
 */
export function ipFromKscInt(v: unknown): string | undefined {
  let n: number;
  if (typeof v === 'number') n = v;
  else if (typeof v === 'string' && /^-?\d{1,10}$/.test(v)) n = Number(v);
  else return undefined;
  if (!Number.isInteger(n) || n < -0x80000000 || n > 0xffffffff || n === 0) return undefined;
  const u = n >>> 0;
  return `${u >>> 24}.${(u >>> 16) & 255}.${(u >>> 8) & 255}.${u & 255}`;
}

export function accepts(event: CefdEvent): boolean {
  const s = sqlOf(event);
  return s !== undefined && typeof s.row['strEventType'] === 'string';
}

/** The `ksc` object of a row, or null for an event `accepts` refuses. */
export function normalizeRow(event: CefdEvent): { ksc: KscObject; warnings: KscWarning[] } | null {
  const s = sqlOf(event);
  if (s === undefined) return null;
  const row = s.row;
  const eventType = text(row, 'strEventType');
  if (eventType === undefined) return null;
  const warnings: KscWarning[] = [];
  const info = typeInfo(eventType);
  const category = info.category;
  // The event's parameters, named as the Syslog export names them.
  const p: Record<string, string> = {};
  for (let i = 1; i <= 9; i++) {
    const v = text(row, `wstrPar${i}`);
    if (v !== undefined) p[`p${i}`] = v;
  }
  const tdn = text(row, 'wstrTaskDisplayName');
  const sevRaw = row['nSeverity'];
  const severityCode = typeof sevRaw === 'number' && Number.isInteger(sevRaw) ? sevRaw : undefined;
  const dns = text(row, 'wstrDnsName');
  const productName = text(row, 'wstrProductName');
  const productVersion = text(row, 'wstrProductVersion');
  const description = text(row, 'wstrDescription');
  let threat = syslogThreat(p, info);
  if (threat === undefined && isThreatCategory(category) && info.action !== undefined) threat = { action: info.action };
  const ksc: KscObject = {
    format: 'sql',
    eventType,
    eventName: text(row, 'wstrEventTypeDisplayName'),
    category,
    severity: severityCode !== undefined ? severityName(severityCode) : 'unknown',
    severityCode,
    host: {
      name: text(row, 'wstrHostDisplayName') ?? text(row, 'wstrDisplayName'),
      ip: ipFromKscInt(row['nIp']),
      fqdn: looksLikeFqdn(dns) ? dns : undefined,
    },
    group: text(row, 'wstrGroupName'),
    product: productName !== undefined || productVersion !== undefined ? { name: productName, version: productVersion } : undefined,
    server: undefined,
    component: category !== 'task_state' ? tdn : undefined,
    task:
      category === 'task_state'
        ? { name: tdn, id: undefined, oldState: undefined, newState: undefined, oldStateCode: undefined, newStateCode: undefined }
        : undefined,
    threat,
    attack: info.layout === 'attack' ? syslogAttack(p, warnings) : undefined,
    labels: {},
    params: undefined,
    messageLines: description !== undefined ? description.split(/\r\n|\n|\r/) : undefined,
  };
  return { ksc, warnings };
}

const kscSql: Normalizer = {
  name: 'ksc_sql',
  writes: 'ksc',
  accepts,
  normalize(event: CefdEvent): NormalizeOutput | null {
    const r = normalizeRow(event);
    if (r === null) return null;
    return {
      data: r.ksc as unknown as Record<string, unknown>,
      type: r.ksc.category,
      warnings: r.warnings.length > 0 ? r.warnings : undefined,
    };
  },
};

export default kscSql;
