/**
 * The `ecs` encoder: Elastic Common Schema 8.x, by the one table in ecs-table.ts. The
 * table's `from` texts are compiled once into getters; `derive.*` names are the functions
 * below. docs/encodings.md shows the table.
 */
import { isIP } from 'node:net';
import type { CefdEvent } from '../../event.js';
import { allExtensions } from '../cef/view.js';
import { toInt } from '../cef/parse.js';
import { kscView } from '../../../normalizers/ksc/lean.js';
import type { KscObject } from '../../../normalizers/ksc/types.js';
import { isIsoTime, senderHost, type EncodeProblems } from './encoder.js';
import { ECS_TABLE, type EcsAs, type EcsRow } from './ecs-table.js';

/** What a getter reads: the event, and what is rebuilt from it once per event. */
class Ctx {
  private extCache: Record<string, string> | undefined;
  readonly ksc: KscObject | null;
  constructor(readonly event: CefdEvent, readonly problems: EncodeProblems | undefined) {
    this.ksc = kscView(event);
  }
  ext(): Record<string, string> {
    if (this.extCache === undefined) this.extCache = this.event.cef !== undefined ? allExtensions(this.event.cef) : {};
    return this.extCache;
  }
}

type Get = (c: Ctx) => unknown;

function walk(v: unknown, path: readonly string[]): unknown {
  for (const k of path) {
    if (v === null || typeof v !== 'object' || !Object.hasOwn(v, k)) return undefined;
    v = (v as Record<string, unknown>)[k];
  }
  return v;
}

const KSC_ALERT = new Set(['detection', 'attack', 'object_action', 'web', 'application_control']);
/**
 * Lookup tables keyed by text from the event: read through `own()`, never `TABLE[text]`
 * (`act=__proto__` or `constructor` would find Object.prototype's members).
 */
const KSC_CATEGORY: Record<string, string[]> = {
  detection: ['malware'],
  object_action: ['malware', 'file'],
  attack: ['intrusion_detection', 'network'],
  web: ['web'],
  application_control: ['process'],
  task_state: ['process'],
  device_control: ['host'],
  device_status: ['host'],
  inventory: ['package'],
  update: ['package'],
  license: ['configuration'],
  audit: ['iam'],
  infrastructure: ['host'],
};
const ACTION_TYPE: Record<string, string> = {
  blocked: 'denied',
  deleted: 'deletion',
  quarantined: 'deletion',
  disinfected: 'change',
};
const KSC_SEVERITY: Record<string, number> = { info: 1, warning: 2, error: 3, critical: 4 };
const CEF_SEVERITY: Record<string, number> = { low: 0, medium: 4, high: 7, 'very-high': 9 };

/** `table[key]` when the table has that key itself, else undefined. */
function own<T>(table: Record<string, T>, key: string): T | undefined {
  return Object.hasOwn(table, key) ? table[key] : undefined;
}

const isUrl = (s: string | undefined): boolean => s !== undefined && s.includes('://');

/** The `derive.*` sources of the table. */
const DERIVE: Record<string, Get> = {
  kind: (c) => (c.ksc !== null ? (KSC_ALERT.has(c.ksc.category) ? 'alert' : 'event') : 'event'),
  category: (c) => (c.ksc !== null ? own(KSC_CATEGORY, c.ksc.category) : undefined),
  type: (c) => {
    if (c.ksc === null) return ['info'];
    if (c.ksc.category === 'task_state') return ['change'];
    const a = c.ksc.threat?.action;
    return [(a !== undefined ? own(ACTION_TYPE, a) : undefined) ?? 'info'];
  },
  action: (c) => {
    if (c.ksc?.category === 'task_state') return 'task-state-changed';
    return c.ksc?.threat?.action ?? c.ext()['deviceAction'];
  },
  outcome: (c) => {
    if (c.ksc?.category === 'task_state') {
      const s = c.ksc.task?.newStateCode;
      return s === 4 ? 'success' : s === 3 || s === 5 ? 'failure' : 'unknown';
    }
    const o = c.ext()['eventOutcome']?.toLowerCase();
    return o === 'success' || o === 'failure' || o === 'unknown' ? o : undefined;
  },
  severity: (c) => {
    const s = c.event.cef?.severity;
    if (s === undefined) return c.ksc !== null ? own(KSC_SEVERITY, c.ksc.severity) : undefined;
    const n = toInt(s);
    if (typeof n === 'number') return n;
    return own(CEF_SEVERITY, s.toLowerCase());
  },
  filePath: (c) => {
    const p = c.ksc?.threat?.objectPath;
    return p !== undefined && !isUrl(p) ? p : c.ext()['filePath'];
  },
  url: (c) => {
    const p = c.ksc?.threat?.objectPath;
    return isUrl(p) ? p : undefined;
  },
  extensions: (c) => (c.event.cef !== undefined ? c.ext() : undefined),
  // CR LF, as KSC writes its descriptions: the CEF form's decoded `msg` has them, and the
  // cef/kuma encoders join the lines so; both forms of one event give the same message.
  message: (c) => c.ksc?.messageLines?.join('\r\n'),
  sender: (c) => senderHost(c.event, c.ksc),
  priority: (c) => {
    const s = c.event.syslog;
    return s?.facility !== undefined && s.severity !== undefined ? s.facility * 8 + s.severity : undefined;
  },
};

function hexOf(v: unknown, len: number): string | undefined {
  if (typeof v !== 'string' || v.length !== len || !/^[0-9a-fA-F]+$/.test(v)) return undefined;
  return v.toLowerCase();
}

function convert(v: unknown, as: EcsAs | undefined, c: Ctx): unknown {
  if (v === undefined || as === undefined) return v;
  switch (as) {
    case 'int':
      return typeof v === 'number' ? v : typeof v === 'string' ? (typeof toInt(v) === 'number' ? toInt(v) : undefined) : undefined;
    case 'port': {
      // 0-65535, as the ksc normalizer takes an attack port (normalizers/ksc/text.ts portNumber).
      const n = typeof v === 'string' ? toInt(v) : v;
      return typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= 65535 ? n : undefined;
    }
    case 'ip':
      return typeof v === 'string' && isIP(v) !== 0 ? v : undefined;
    case 'ips':
      return typeof v === 'string' && isIP(v) !== 0 ? [v] : undefined;
    case 'lower':
      return typeof v === 'string' ? v.toLowerCase() : v;
    case 'sha256':
      return hexOf(v, 64);
    case 'md5':
      return hexOf(v, 32);
    case 'sha1':
      return hexOf(v, 40);
    case 'fields':
      return v !== null && typeof v === 'object' ? fieldNames(v as Record<string, unknown>, c.problems) : undefined;
    case 'keywords':
      return v !== null && typeof v === 'object' ? asText(fieldNames(v as Record<string, unknown>, c.problems)) : undefined;
    case 'iso':
      // Not Date.parse alone: it takes what the decoder refused (`2020-06-23 10:00:00`), which
      // `strict_date_optional_time` does not; nor a year outside 0000-9999 (`+010000-01-01...`,
      // `rt` in milliseconds past 9999), which it reads as exactly four digits.
      // isIsoTime passed: `dddd-...` or `±dddddd-...`; a dash at 4 is the four-digit year.
      return isIsoTime(v) && v.charCodeAt(4) === 45 ? v : undefined;
  }
}

/** One alternative of a `from` text; throws on a source the table may not name (a test loads them all). */
function source(text: string, as: EcsAs | undefined): Get {
  if (text.startsWith("'") && text.endsWith("'")) {
    const v = text.slice(1, -1);
    return () => v;
  }
  const dot = text.indexOf('.');
  const kind = text.slice(0, dot);
  const path = text.slice(dot + 1).split('.');
  switch (kind) {
    case 'event':
      return (c) => walk(c.event, path);
    case 'syslog':
      return (c) => walk(c.event.syslog, path);
    case 'cef':
      return (c) => walk(c.event.cef, path);
    case 'ksc':
      return (c) => walk(c.ksc, path);
    case 'ext': {
      const k = path.join('.');
      // A time stamp is read converted (cef.typed), or as written when that is already ISO.
      if (as === 'iso') return (c) => c.event.cef?.typed?.[k] ?? c.ext()[k];
      return (c) => c.ext()[k];
    }
    case 'derive': {
      const d = DERIVE[path[0]!];
      if (d === undefined || path.length !== 1) throw new Error(`ecs table: unknown ${text}`);
      return d;
    }
    default:
      throw new Error(`ecs table: unknown source ${JSON.stringify(text)}`);
  }
}

interface Compiled {
  path: string[];
  when: EcsRow['when'];
  get: Get;
}

function compile(row: EcsRow): Compiled {
  const alts = row.from.split(' | ').map((t) => source(t.trim(), row.as));
  const as = row.as;
  const get: Get = (c) => {
    for (const a of alts) {
      const v = convert(a(c), as, c);
      // An empty text (a CEF header field or extension written empty) is no value.
      if (v !== undefined && v !== '') return v;
    }
    return undefined;
  };
  return { path: row.field.split('.'), when: row.when, get };
}

const COMPILED: readonly Compiled[] = ECS_TABLE.map(compile);

function put(out: Record<string, unknown>, path: readonly string[], v: unknown): void {
  let o = out;
  for (let i = 0; i < path.length - 1; i++) {
    const k = path[i]!;
    let n = o[k];
    if (n === undefined || n === null || typeof n !== 'object') o[k] = n = {};
    o = n as Record<string, unknown>;
  }
  o[path[path.length - 1]!] = v;
}

/** A field name Elasticsearch takes: no empty or blank part between its dots. */
function isFieldName(k: string): boolean {
  let from = 0;
  for (;;) {
    const dot = k.indexOf('.', from);
    const part = k.slice(from, dot === -1 ? undefined : dot);
    if (part.trim() === '') return false;
    if (dot === -1) return true;
    from = dot + 1;
  }
}

/**
 * An object of sender-named keys (CEF extension keys, KSC labels) with only the keys
 * Elasticsearch can map: it expands dots into objects, and refuses the whole document for
 * a name with an empty part (`x.`, `a..b`, a blank label) or for `a.b` beside `a` (a
 * keyword and an object at one path). Those keys are left out and counted.
 */
function fieldNames(o: Record<string, unknown>, problems: EncodeProblems | undefined): Record<string, unknown> {
  let out: Record<string, unknown> | undefined;
  const drop = (k: string, why: string): void => {
    problems?.add('encode_key_dropped', `key ${JSON.stringify(k.slice(0, 64))} ${why}`);
    out ??= Object.fromEntries(Object.entries(o));
    delete out[k];
  };
  for (const k in o) {
    if (!Object.hasOwn(o, k)) continue;
    if (!isFieldName(k)) {
      drop(k, 'is not an Elasticsearch field name (an empty part between dots)');
      continue;
    }
    for (let dot = k.indexOf('.'); dot !== -1; dot = k.indexOf('.', dot + 1)) {
      const parent = k.slice(0, dot);
      if (Object.hasOwn(o, parent)) {
        drop(k, `would make ${JSON.stringify(parent.slice(0, 64))}, which has a value, an object in Elasticsearch`);
        break;
      }
    }
  }
  return out ?? o;
}

/**
 * Every value as text (Elasticsearch maps a field from its first value: `cn1` of one label
 * as a number here and text there would make it refuse the documents of the other kind).
 */
function asText(o: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
  for (const k in o) {
    if (!Object.hasOwn(o, k)) continue;
    const v = o[k];
    if (v === undefined || v === null) continue;
    out[k] = typeof v === 'string' ? v : typeof v === 'object' ? JSON.stringify(v) : String(v);
  }
  return out;
}

/** The ECS document of an event; `problems` counts the keys left out. */
export function toEcs(event: CefdEvent, problems?: EncodeProblems): Record<string, unknown> {
  const c = new Ctx(event, problems);
  const isKsc = c.ksc !== null;
  const out: Record<string, unknown> = {};
  for (const r of COMPILED) {
    if (r.when === 'ksc' ? !isKsc : r.when === 'other' ? isKsc : false) continue;
    const v = r.get(c);
    if (v === undefined || (v !== null && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length === 0)) continue;
    put(out, r.path, v);
  }
  return out;
}

/** The ECS document as an object (its JSON text is the record: registry.ts writes it). */
export function ecsEncoder(problems: EncodeProblems): (event: CefdEvent) => Record<string, unknown> {
  return (event) => toEcs(event, problems);
}

/** The table as Markdown, for docs/encodings.md (test/codecs/encoders.test.ts keeps them in step). */
export function renderEcsTable(): string {
  const cell = (s: string) => s.replace(/\|/g, '\\|');
  const lines = ['| ECS field | from (first present) | as | events | note |', '|---|---|---|---|---|'];
  for (const r of ECS_TABLE) {
    const from = r.from.split(' | ').map((a) => `\`${a}\``).join(' \\| ');
    lines.push(`| \`${r.field}\` | ${from} | ${r.as ?? ''} | ${r.when ?? 'all'} | ${cell(r.note ?? '')} |`);
  }
  return lines.join('\n') + '\n';
}
