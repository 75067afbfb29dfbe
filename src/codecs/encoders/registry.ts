/** The encoders outputs can name in `encoding.codec`. Adding one: a module here and one line below. */
import type { CefdEvent } from '../../event.js';
import { EncodeProblems, type Encoder, type EncodingConfig } from './encoder.js';
import { nativeValue } from './native.js';
import { ecsEncoder } from './ecs.js';
import { kumaEncoder } from './kuma.js';
import { cefEncoder } from './cef.js';

type EncodeFn = (event: CefdEvent) => string;

/**
 * How an encoder makes its record: `json`, a value whose JSON text is the record (written
 * by createEncoder, or many at once by a decode worker: Encoder.value); `text`, the record.
 * `fresh`: `json` returns a new object for each event, which the field options may trim in
 * place (its top level only: the values in it may be the event's own).
 */
type Made = { json: (event: CefdEvent) => unknown; fresh?: true } | { text: EncodeFn };

/** The native encoder's value with the default event options: the event as it is. */
const itself = (event: CefdEvent): CefdEvent => event;

const ENCODERS: Record<string, (cfg: EncodingConfig, problems: EncodeProblems) => Made> = {
  /** cefd's own event (docs/event-format.md). */
  native: (cfg) => ({ json: nativeValue(cfg.event) ?? itself }),
  /** Elastic Common Schema 8.x (docs/encodings.md). */
  ecs: (_cfg, problems) => ({ json: ecsEncoder(problems), fresh: true }),
  /** KUMA's normalized event (docs/encodings.md). */
  kuma: (_cfg, problems) => ({ json: kumaEncoder(problems), fresh: true }),
  /** The event written back as a CEF record (docs/encodings.md). */
  cef: (_cfg, problems) => ({ text: cefEncoder(problems) }),
};

export const ENCODER_NAMES: readonly string[] = Object.keys(ENCODERS);

export function isEncoderName(name: string): boolean {
  return Object.hasOwn(ENCODERS, name);
}

/** Encoders whose records are not JSON texts (a dead letter carries such a record as a string). */
const NOT_JSON: ReadonlySet<string> = new Set(['cef']);

/** Whether the records of this encoder are JSON texts (`cef`'s are CEF lines). */
export function isJsonEncoding(codec: string): boolean {
  return !NOT_JSON.has(codec);
}

/**
 * Where an encoding's records carry the event id and time (the bulk outputs read them there:
 * src/outputs/shared/record-meta.ts), as field paths of `only_fields` / `except_fields`.
 */
export const RECORD_FIELDS: Readonly<Record<string, { id: string; time: string } | undefined>> = {
  native: { id: 'id', time: 'timestamp' },
  ecs: { id: 'event.id', time: '@timestamp' },
  kuma: { id: 'ID', time: 'Timestamp' },
};

/**
 * Top-level fields of cefd's event (src/event.ts) that an encoding's record does not have:
 * a path starting with one names nothing there. Field options trimmed the event before
 * the encoders until 2026-12-07, so such a path in an ecs or kuma output is a configuration
 * written for that meaning, which would now send `{}` (only_fields) or nothing less
 * (except_fields), and is refused with where to look instead.
 */
const EVENT_FIELDS = ['schema', 'id', 'timestamp', 'received', 'listener', 'peer', 'syslog', 'prefix', 'cef', 'message', 'ksc', 'errors', 'warnings', 'raw', 'rawBase64', 'truncated'];
const EVENT_ONLY: Readonly<Record<string, { fields: ReadonlySet<string>; instead: string } | undefined>> = {
  // The ECS document has a `cef` copy and a `message` of its own.
  ecs: { fields: new Set(EVENT_FIELDS.filter((f) => f !== 'cef' && f !== 'message')), instead: '`@timestamp`, `event.id`, `kaspersky.ksc`, `log.syslog`, `cef`' },
  kuma: { fields: new Set(EVENT_FIELDS), instead: '`Timestamp`, `ID`, `Name`, `Extra`, `FlexString1`' },
};

/** Why an encoding refuses these field options (undefined: it takes them). */
export function fieldOptionsProblem(cfg: Pick<EncodingConfig, 'codec' | 'only_fields' | 'except_fields'>): string | undefined {
  const paths = [...(cfg.only_fields ?? []), ...(cfg.except_fields ?? [])];
  if (paths.length === 0) return undefined;
  if (cfg.codec === 'cef') {
    return 'only_fields / except_fields trim JSON records (native, ecs, kuma); a cef record is one CEF line, whose header and keys the receiving SIEM parses as a whole: remove them for codec cef (docs/encodings.md, "Field options")';
  }
  const only = EVENT_ONLY[cfg.codec];
  const wrong = only === undefined ? [] : paths.filter((p) => only.fields.has(p.split('.')[0]!));
  if (wrong.length > 0) {
    return `${wrong.join(', ')}: ${wrong.length === 1 ? 'names a field' : 'name fields'} of cefd's event, which the ${cfg.codec} record does not have: field options trim the record the output sends, so write the ${cfg.codec} record's paths (${only!.instead}; docs/encodings.md, "Field options")`;
  }
  return undefined;
}

/**
 * Whether `only_fields` / `except_fields` leave out the field at `path` of the record (a
 * dotted path of the encoding's record): `except_fields` names it or a field holding it
 * (`event` holds `event.id`), or `only_fields` is set and names neither.
 */
export function dropsField(cfg: Pick<EncodingConfig, 'only_fields' | 'except_fields'>, path: string): boolean {
  const holds = (p: string) => p === path || path.startsWith(`${p}.`);
  const only = cfg.only_fields ?? [];
  return (only.length > 0 && !only.some(holds)) || (cfg.except_fields ?? []).some(holds);
}

/** The encoder an output's `encoding` section names (the name must be one of ENCODER_NAMES). */
export function createEncoder(cfg: EncodingConfig): Encoder {
  const make = ENCODERS[cfg.codec];
  if (make === undefined) throw new Error(`unknown encoder ${JSON.stringify(cfg.codec)} (known: ${ENCODER_NAMES.join(', ')})`);
  const refused = fieldOptionsProblem(cfg);
  if (refused !== undefined) throw new Error(refused);
  const problems = new EncodeProblems();
  const made = make(cfg, problems);
  const only = cfg.only_fields ?? [];
  const except = cfg.except_fields ?? [];
  const native = cfg.codec === 'native';
  const ev = cfg.event;
  // Unambiguous: a path may hold `,` or `|` (a KSC label: `cef.custom.cs5:Name, path`).
  // The event options change only native's records.
  const key = JSON.stringify([cfg.codec, only, except, native && ev !== undefined ? [ev.typed ?? '', ev.custom_fields ?? '', ev.ksc ?? '', ev.syslog_timestamp ?? ''] : null]);
  if (only.length === 0 && except.length === 0) {
    if ('text' in made) return { key, codec: cfg.codec, problems, encode: made.text };
    const value = made.json;
    // The default native event is written as it is: no call in between.
    const encode: EncodeFn = value === itself ? (event) => JSON.stringify(event) : (event) => JSON.stringify(value(event));
    return { key, codec: cfg.codec, problems, encode, value };
  }
  if ('text' in made) throw new Error(`${cfg.codec}: field options on a text record`);
  const onlyTree = only.length > 0 ? pathTree(only) : undefined;
  const exceptTree = except.length > 0 ? pathTree(except) : undefined;
  const json = made.json;
  const fresh = made.fresh === true;
  // The field options trim the record the output sends (docs/encodings.md, "Field
  // options"): native's value (the event, expanded by the `event` options or not, which the
  // other encoders read too: copied where trimmed), or the ECS / KUMA document.
  const value = (event: CefdEvent): Record<string, unknown> => {
    let e = json(event) as Record<string, unknown>;
    let owned = fresh;
    if (onlyTree !== undefined) {
      e = (pick(e, onlyTree) as Record<string, unknown> | undefined) ?? {};
      owned = true;
    }
    return exceptTree !== undefined ? (omit(e, exceptTree, owned) as Record<string, unknown>) : e;
  };
  return { key, codec: cfg.codec, problems, encode: (event) => JSON.stringify(value(event)), value };
}

/**
 * Field paths as a tree, built once per encoder: each part of a path a key, `null` for the
 * field a path names (it covers every longer path through it: `[ksc, ksc.task]` is `ksc`).
 * Trimming walks the tree once per record, so no container is visited or copied twice.
 * Keys and subtrees in two arrays: the per-record loops index them.
 */
interface PathTree {
  readonly keys: string[];
  readonly subs: (PathTree | null)[];
}

function pathTree(paths: readonly string[]): PathTree {
  const root: PathTree = { keys: [], subs: [] };
  for (const p of paths) {
    const parts = p.split('.');
    let node = root;
    for (let i = 0; i < parts.length; i++) {
      const k = parts[i]!;
      let at = node.keys.indexOf(k);
      if (at === -1) {
        at = node.keys.push(k) - 1;
        node.subs.push(i === parts.length - 1 ? null : { keys: [], subs: [] });
      } else if (i === parts.length - 1) node.subs[at] = null;
      const next = node.subs[at] as PathTree | null;
      if (next === null) break; // this path, or a shorter one, names the whole field
      node = next;
    }
  }
  return root;
}

const isContainer = (v: unknown): v is object => v !== null && typeof v === 'object';

/** `o[k] = v` that makes `__proto__` an own key, as JSON.parse and the decoder do. */
function setOwn(o: Record<string, unknown>, k: string, v: unknown): void {
  if (k === '__proto__') Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
  else o[k] = v;
}

/**
 * The fields of `v` the tree names, in new containers (the values themselves are shared);
 * undefined when it has none. A path continues into every element of an array: the array
 * keeps its object (and array) elements, each trimmed to the path (`{}` for one without the
 * field, so that positions are kept), and is left out when no element has the field.
 */
function pick(v: object, tree: PathTree): Record<string, unknown> | unknown[] | undefined {
  if (Array.isArray(v)) {
    let found = false;
    const out: unknown[] = [];
    for (const el of v as unknown[]) {
      if (!isContainer(el)) continue;
      const r = pick(el, tree);
      if (r !== undefined) found = true;
      out.push(r ?? (Array.isArray(el) ? [] : {}));
    }
    return found ? out : undefined;
  }
  const o = v as Record<string, unknown>;
  let out: Record<string, unknown> | undefined;
  const { keys, subs } = tree;
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i]!;
    const sub = subs[i] as PathTree | null;
    if (!Object.hasOwn(o, k)) continue;
    const f = o[k];
    if (f === undefined) continue;
    if (sub === null) setOwn((out ??= {}), k, f);
    else if (isContainer(f)) {
      const r = pick(f, sub);
      if (r !== undefined) setOwn((out ??= {}), k, r);
    }
  }
  return out;
}

/**
 * `v` without the fields the tree names: `v` itself when it has none of them, else a copy
 * (arrays with slice(), so a field keeps its type) of each container on the way to them;
 * `owned`: `v` is this record's own object, trimmed in place. A path continues into every
 * element of an array (`warnings.message` removes `message` from each warning).
 */
function omit(v: object, tree: PathTree, owned: boolean): object {
  if (Array.isArray(v)) {
    let out: unknown[] | undefined;
    const a = v as unknown[];
    for (let i = 0; i < a.length; i++) {
      const el = a[i];
      if (!isContainer(el)) continue;
      const r = omit(el, tree, false);
      if (r !== el) (out ??= a.slice())[i] = r;
    }
    return out ?? v;
  }
  const o = v as Record<string, unknown>;
  let out = owned ? o : undefined;
  const { keys, subs } = tree;
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i]!;
    const sub = subs[i] as PathTree | null;
    if (!Object.hasOwn(out ?? o, k)) continue;
    if (sub === null) {
      delete (out ??= { ...o })[k];
      continue;
    }
    const f = (out ?? o)[k];
    if (!isContainer(f)) continue;
    const r = omit(f, sub, false);
    if (r !== f) setOwn((out ??= { ...o }), k, r);
  }
  return out ?? v;
}
