/**
 * Loads and validates the configuration: YAML → checked against the schema table
 * (schema.ts) → defaults applied → `${ENV}` interpolated → `*_file` secrets read → frozen.
 * `cefd validate` and `cefd run` run this same code. Every problem names the key and the
 * line; all problems are collected, not just the first.
 */
import { dirname, isAbsolute, resolve } from 'node:path';
import { LineCounter, parseDocument, isAlias, isMap, isNode, isSeq, isScalar, visit, type Document, type Node, type Pair, type Scalar, type YAMLError } from 'yaml';
import { SCHEMA, type ListSpec, type MapSpec, type ObjectSpec, type ScalarSpec, type Spec, type VariantSpec } from './schema.js';
import { isKnownZone } from '../time.js';
import type { Config } from './types.js';
import { outputPlugin } from '../outputs/registry.js';
import { sourcePlugin } from '../sources/registry.js';
import { MAX_TIMER_SECONDS, type ConfigOf, type Fields } from './spec.js';
import { parseCidr } from '../sources/shared/cidr.js';
import { compileFilter, FilterSyntaxError } from '../filter/filter.js';
import { redactUrls } from './redact.js';
import { bindProblems } from './binds.js';
import { CONFIG_SECTIONS } from './sections.js';
import { createEncoder } from '../codecs/encoders/registry.js';
import { bearerTokenProblem } from '../bearer.js';
import { interpolate } from './interpolate.js';
import { sourceOffset } from './scalar-source.js';
import { fileProblem, readBoundedFile, readSecretFile } from './read-file.js';

export interface ConfigProblem {
  /** Dotted key path, `listeners[0].port`. */
  key: string;
  /** 1-based line in the file, when known. */
  line?: number;
  message: string;
}

export class ConfigError extends Error {
  constructor(
    readonly problems: ConfigProblem[],
    readonly file: string | undefined,
  ) {
    super(problems.map((p) => formatProblem(p, file)).join('\n'));
    this.name = 'ConfigError';
  }
}

export function formatProblem(p: ConfigProblem, file: string | undefined): string {
  const where = file === undefined ? 'built-in config' : p.line !== undefined ? `${file}:${p.line}` : file;
  // A URL in a message may carry a password or a token (`http://user:pw@host/`).
  return `${where}: ${p.key === '' ? '' : `${p.key}: `}${redactUrls(p.message)}`;
}

/** Largest config file read (`--config`); a bigger one is refused, not read. */
export const MAX_CONFIG_BYTES = 4 * 1024 * 1024;
export { MAX_SECRET_FILE_BYTES, readBoundedFile } from './read-file.js';

export interface LoadOptions {
  /** Environment for `${VAR}` interpolation (default process.env). */
  env?: Record<string, string | undefined>;
}

const DURATION_UNITS: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 };
const SIZE_UNITS: Record<string, number> = {
  '': 1, b: 1, k: 1000, kb: 1000, kib: 1024, m: 1e6, mb: 1e6, mib: 1024 ** 2, g: 1e9, gb: 1e9, gib: 1024 ** 3,
};

/** `10s`, `500ms`, `1.5h`, or a number of seconds → seconds. */
export function parseDuration(v: unknown): number | null {
  if (typeof v === 'number') return Number.isFinite(v) && v >= 0 ? v : null;
  if (typeof v !== 'string') return null;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(v);
  if (m === null) return null;
  return Number(m[1]) * DURATION_UNITS[m[2] ?? 's']!;
}

/** `64KiB`, `100MB`, `1024` → bytes. */
export function parseSize(v: unknown): number | null {
  if (typeof v === 'number') return Number.isSafeInteger(v) && v >= 0 ? v : null;
  if (typeof v !== 'string') return null;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(v);
  if (m === null) return null;
  const unit = SIZE_UNITS[m[2]!.toLowerCase()];
  if (unit === undefined) return null;
  const n = Math.round(Number(m[1]) * unit);
  return Number.isSafeInteger(n) ? n : null;
}

/** Damerau-Levenshtein distance (with adjacent transpositions), for "did you mean". */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}

/**
 * The candidate nearest to `word` for a "did you mean": the smallest edit distance, at
 * most 2, the first of the candidates at that distance (so the schema's order breaks ties);
 * undefined when none is that close. `word` is compared lowercase, `-` as `_`.
 */
export function closest(word: string, candidates: Iterable<string>): string | undefined {
  const w = word.toLowerCase().replace(/-/g, '_');
  let best: string | undefined;
  let bestDistance = 3;
  for (const c of candidates) {
    const d = editDistance(c, w);
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  return best;
}

/** ` (did you mean x?)` when a candidate is near `word`, else ''. */
function didYouMean(word: string, candidates: Iterable<string>): string {
  const near = closest(word, candidates);
  return near === undefined ? '' : ` (did you mean ${near}?)`;
}

/**
 * A file mode (`outputs[type=file].mode`): octal as chmod takes it. In YAML 1.2 `0640` is
 * the decimal number 640 and `0440` the decimal 440 (0o670, a valid mode), so the text of
 * the scalar is read, not the number YAML made of it: `0640`, `0o640` and the strings
 * `"0640"`, `"0o640"` are octal; a number without the leading 0 (`640`, `416`) is refused,
 * whatever it would mean. `source` is the scalar's text in the file; a value not from a
 * file (loadFields) is taken as the number it is.
 */
function parseMode(v: unknown, source: string | undefined): number | string {
  const text = typeof v === 'string' ? v.trim() : source;
  if (text === undefined) return typeof v === 'number' && Number.isSafeInteger(v) ? v : 'expected an octal file mode such as 0640';
  const m = /^0o?([0-7]+)$/i.exec(text) ?? (text === '0' ? ['0', '0'] : null);
  if (m !== null) return parseInt(m[1]!, 8);
  if (/^[1-9][0-9]*$/.test(text)) {
    // Which mode was meant is not known: chmod's digits, or the decimal number earlier
    // versions of cefd took (and YAML made of 0640: 640, refused then).
    const n = Number(text);
    const asChmod = /^[0-7]{1,3}$/.test(text) ? `as chmod writes it, ${text} is 0${text}` : '';
    const asDecimal = n <= 0o777 ? `read as a decimal number (as cefd did before 2026-12), ${text} is 0${n.toString(8).padStart(3, '0')}` : '';
    return `a file mode is octal and needs its leading 0 (0640 or 0o640)${asChmod || asDecimal ? `: ${[asChmod, asDecimal].filter((x) => x !== '').join('; ')}` : ''}`;
  }
  return 'expected an octal file mode such as 0640';
}

class Walker {
  readonly problems: ConfigProblem[] = [];
  /**
   * Secret options (`ksc.admin.bearer_token`) whose `_file` could not be read: that is
   * reported once, at the `_file` key; checks of the value itself ("is required", "too
   * short") would only repeat it with a misleading message.
   */
  readonly unreadSecrets = new Set<string>();
  constructor(
    private readonly lc: LineCounter | undefined,
    private readonly env: Record<string, string | undefined>,
    /** The file's text, for positions inside a value (a filter's syntax error). */
    private readonly text?: string,
  ) {}

  line(node: Node | null | undefined): number | undefined {
    if (this.lc === undefined || node === null || node === undefined || node.range === undefined || node.range === null) return undefined;
    return this.lc.linePos(node.range[0]).line;
  }

  problem(key: string, node: Node | null | undefined, message: string): void {
    const line = this.line(node);
    this.problems.push(line === undefined ? { key, message } : { key, line, message });
  }

  /**
   * A filter's syntax error at the file's line and column of the offending text, inside a
   * `>-` or `|` block too (scalar-source.ts); when that cannot be told (an escape in a
   * quoted filter, `${VAR}` in it: `asWritten` undefined), at the filter's line with the
   * position counted in the filter's text, and said so.
   */
  filterProblem(key: string, node: Node | null | undefined, asWritten: string | undefined, e: FilterSyntaxError): void {
    const at = asWritten !== undefined && this.text !== undefined && this.lc !== undefined && isScalar(node) ? sourceOffset(node, this.text, asWritten, e.position) : undefined;
    if (at !== undefined) {
      const { line, col } = this.lc!.linePos(at);
      let detail = e.detail;
      // The `(` an expected `)` would close: at its place in the file too.
      const rel = e.related !== undefined ? sourceOffset(node as Scalar, this.text!, asWritten!, e.related.position) : undefined;
      if (rel !== undefined) {
        const r = this.lc!.linePos(rel);
        detail = detail.replace(e.related!.text, `at ${r.line === line ? '' : `line ${r.line}, `}column ${r.col}`);
      }
      this.problems.push({ key, line, message: `bad filter: ${detail} at column ${col}` });
      return;
    }
    if (this.lc === undefined) {
      this.problem(key, node, `bad filter: ${e.message}`);
      return;
    }
    const where = e.source.includes('\n') ? `line ${e.line}, column ${e.column}` : `column ${e.column}`;
    this.problem(key, node, `bad filter: ${e.detail} at ${where} of the filter's text`);
  }

  /** `${VAR}` and its forms in strings (interpolate.ts); undefined after a problem, which is reported. */
  interpolate(key: string, node: Node | null | undefined, v: string, secret = false): string | undefined {
    const r = interpolate(v, this.env, secret);
    for (const p of r.problems) this.problem(key, node, p);
    return r.problems.length === 0 ? r.value : undefined;
  }

  value(spec: Spec, node: Node | null | undefined, raw: unknown, key: string): unknown {
    switch (spec.kind) {
      case 'object':
        return this.object(spec, node, raw, key);
      case 'list':
        return this.list(spec, node, raw, key);
      case 'variant':
        return this.variant(spec, node, raw, key);
      case 'map':
        return this.map(spec, node, raw, key);
      default:
        return this.scalar(spec, node, raw, key);
    }
  }

  scalar(spec: ScalarSpec, node: Node | null | undefined, raw: unknown, key: string): unknown {
    if (raw !== null && typeof raw === 'object') {
      this.problem(key, node, `expected a ${spec.kind}, got a ${Array.isArray(raw) ? 'list' : 'mapping'}`);
      return undefined;
    }
    let v = raw;
    if (typeof v === 'string') {
      v = this.interpolate(key, node, v, spec.secret === true);
      // Said once: an unset variable is not also a value of the wrong type ("expected an integer, got \"\"").
      if (v === undefined) return undefined;
    }
    // A number JSON cannot write (`1e309`, `.nan`, `.inf`) is shown as written in the file.
    const shown = () => (typeof v === 'number' && !Number.isFinite(v) ? (isScalar(node) && typeof node.source === 'string' ? node.source : String(v)) : JSON.stringify(v));
    const bad = (what: string, hint = '') => {
      this.problem(key, node, `${what}, got ${spec.secret ? '(a secret)' : shown()}${hint}`);
      return undefined;
    };
    switch (spec.kind) {
      case 'string':
      case 'path':
        if (typeof v === 'number' || typeof v === 'boolean') v = String(v);
        if (typeof v !== 'string') return bad('expected a string');
        return v;
      case 'zone':
        if (typeof v !== 'string' || !isKnownZone(v)) return bad('expected an IANA time zone name such as UTC or Europe/Moscow');
        return v;
      case 'bool':
        if (v === 'true') v = true;
        if (v === 'false') v = false;
        if (typeof v !== 'boolean') return bad('expected true or false');
        return v;
      case 'int':
      case 'port':
      case 'number': {
        const n = typeof v === 'string' && v.trim() !== '' ? Number(v) : v;
        const isInt = spec.kind !== 'number';
        if (typeof n !== 'number' || !Number.isFinite(n) || (isInt && !Number.isSafeInteger(n))) return bad(`expected ${isInt ? 'an integer' : 'a number'}`);
        const min = spec.kind === 'port' ? 0 : spec.min;
        const max = spec.kind === 'port' ? 65535 : spec.max;
        if (min !== undefined && n < min) return bad(`must be at least ${min}`);
        if (max !== undefined && n > max) return bad(`must be at most ${max}`);
        return n;
      }
      case 'mode': {
        // The scalar's own text: YAML already turned `0440` into the number 440.
        const source = isScalar(node) && typeof node.source === 'string' && typeof node.value === 'number' ? node.source : undefined;
        const m = parseMode(v, source);
        const written = source ?? shown();
        if (typeof m === 'string') this.problem(key, node, `${m}, got ${written}`);
        else if (m > 0o777) this.problem(key, node, `must be at most 0777, got ${written}`);
        else return m;
        return undefined;
      }
      case 'duration': {
        const d = parseDuration(v);
        if (d === null) return bad('expected a duration such as 10s, 500ms, 5m or a number of seconds');
        // Options whose default is 0s take 0 as "off"; the others must reach their minimum.
        if (spec.min !== undefined && d < spec.min && !(d === 0 && spec.default === '0s')) return bad(`must be at least ${spec.min}s`);
        // Options that set a Node timer stop at its limit (2^31-1 ms): past it the timer fires at once.
        if (spec.max !== undefined && d > spec.max) return bad(`must be at most ${spec.max === MAX_TIMER_SECONDS ? '24 days' : `${spec.max}s`}`);
        return d;
      }
      case 'size': {
        const n = parseSize(v);
        if (n === null) return bad('expected a size such as 64KiB, 1MiB, 100MB or a number of bytes');
        if (spec.min !== undefined && n < spec.min) return bad(`must be at least ${spec.min} bytes`);
        if (spec.max !== undefined && n > spec.max) return bad(`must be at most ${spec.max} bytes${spec.max % 2 ** 30 === 0 ? ` (${spec.max / 2 ** 30}GiB)` : ''}`);
        return n;
      }
      case 'enum':
        if (typeof v !== 'string' || !spec.values!.includes(v)) {
          return bad(`expected one of ${spec.values!.join(', ')}`, typeof v === 'string' && !spec.secret ? didYouMean(v, spec.values!) : '');
        }
        return v;
      case 'cidr':
        if (typeof v !== 'string' || parseCidr(v) === null) return bad('expected an IPv4/IPv6 address or CIDR such as 10.0.0.0/8');
        return v;
      case 'filter':
        // `filter: true` unquoted is YAML's boolean: the filter `true` (docs/filters.md).
        if (typeof v === 'boolean') v = String(v);
        if (typeof v !== 'string') return bad('expected a filter expression (a string)');
        if (v.trim() === '') return v;
        try {
          compileFilter(v);
        } catch (e) {
          if (e instanceof FilterSyntaxError) this.filterProblem(key, node, raw === v ? v : undefined, e);
          else this.problem(key, node, String(e));
          return undefined;
        }
        return v;
    }
  }

  /** The YAML node of `name` in a map node, for line numbers. */
  private pairs(node: Node | null | undefined): Map<string, Pair<unknown, unknown>> {
    const m = new Map<string, Pair<unknown, unknown>>();
    if (node !== null && node !== undefined && isMap(node)) {
      for (const p of node.items) {
        const k = isScalar(p.key) ? String(p.key.value) : String(p.key);
        m.set(k, p as Pair<unknown, unknown>);
      }
    }
    return m;
  }

  fields(fields: Record<string, Spec>, node: Node | null | undefined, raw: Record<string, unknown>, key: string, out: Record<string, unknown>, allowed: Set<string>): void {
    const pairs = this.pairs(node);
    for (const k of Object.keys(raw)) {
      if (!allowed.has(k)) {
        const p = pairs.get(k);
        const keyNode = (p?.key ?? node) as Node | undefined;
        this.problem(key === '' ? k : `${key}.${k}`, keyNode, `unknown key${didYouMean(k, allowed)}`);
      }
    }
    for (const [name, spec] of Object.entries(fields)) {
      const sub = key === '' ? name : `${key}.${name}`;
      const p = pairs.get(name);
      const has = Object.prototype.hasOwnProperty.call(raw, name) && raw[name] !== null;
      if (!has) {
        const def = (spec as { default?: unknown }).default;
        if ((spec as ScalarSpec).required) {
          this.problem(sub, node, 'is required');
        } else if (def !== undefined) {
          out[name] = this.value(spec, undefined, structuredClone(def), sub);
        } else if (spec.kind === 'object') {
          // A section left out: its defaults; a required option in it is reported at the
          // line of the object that lacks the section (`listeners[0]` for its `tls`).
          // With raw {} the node serves for that line only (no key of it is looked up).
          out[name] = this.object(spec, node, {}, sub);
        } else if (spec.kind === 'map') {
          out[name] = {};
        }
        continue;
      }
      out[name] = this.value(spec, (p?.value ?? undefined) as Node | undefined, raw[name], sub);
    }
  }

  object(spec: ObjectSpec, node: Node | null | undefined, raw: unknown, key: string): unknown {
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
      this.problem(key, node, 'expected a mapping');
      return undefined;
    }
    const out: Record<string, unknown> = {};
    this.fields(spec.fields, node, raw as Record<string, unknown>, key, out, new Set(Object.keys(spec.fields)));
    return out;
  }

  map(spec: MapSpec, node: Node | null | undefined, raw: unknown, key: string): unknown {
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
      this.problem(key, node, 'expected a mapping');
      return undefined;
    }
    const out: Record<string, unknown> = {};
    const pairs = this.pairs(node);
    for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
      out[k] = this.scalar(spec.value, (pairs.get(k)?.value ?? node) as Node, v, `${key}.${k}`);
    }
    return out;
  }

  list(spec: ListSpec, node: Node | null | undefined, raw: unknown, key: string): unknown {
    if (!Array.isArray(raw)) {
      this.problem(key, node, 'expected a list');
      return undefined;
    }
    const items = node !== null && node !== undefined && isSeq(node) ? node.items : [];
    const out = raw.map((r, i) => this.value(spec.item, items[i] as Node | undefined, r, `${key}[${i}]`));
    if (spec.uniqueNames) {
      const seen = new Set<string>();
      out.forEach((o, i) => {
        const n = (o as { name?: unknown } | undefined)?.name;
        if (typeof n !== 'string') return;
        if (seen.has(n)) this.problem(`${key}[${i}].name`, items[i] as Node | undefined, `duplicate name ${JSON.stringify(n)}`);
        seen.add(n);
      });
    }
    return out;
  }

  variant(spec: VariantSpec, node: Node | null | undefined, raw: unknown, key: string): unknown {
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
      this.problem(key, node, 'expected a mapping');
      return undefined;
    }
    const r = raw as Record<string, unknown>;
    const types = Object.keys(spec.variants);
    const t = r['type'];
    if (typeof t !== 'string' || !types.includes(t)) {
      const tNode = this.pairs(node).get('type')?.value as Node | undefined;
      this.problem(`${key}.type`, tNode ?? node, t === undefined ? `is required (one of ${types.join(', ')})` : `expected one of ${types.join(', ')}, got ${JSON.stringify(t)}${typeof t === 'string' ? didYouMean(t, types) : ''}`);
      return undefined;
    }
    const v = spec.variants[t]!;
    const all = { ...spec.common, ...v.fields };
    const out: Record<string, unknown> = { type: t };
    this.fields(all, node, r, key, out, new Set(['type', ...Object.keys(all)]));
    return out;
  }
}

/** The options of an object or variant spec for `obj` (none for an unknown variant type); undefined for other specs. */
function fieldsOf(obj: object, spec: Spec): Record<string, Spec> | undefined {
  if (spec.kind === 'object') return spec.fields;
  if (spec.kind !== 'variant') return undefined;
  const t = (obj as { type?: string }).type;
  return t !== undefined && spec.variants[t] !== undefined ? { ...spec.common, ...spec.variants[t]!.fields } : {};
}

/**
 * Calls `visit` for every scalar option of `obj` (a configuration object shaped by
 * `spec`), with the object that holds it, its name, its spec and its dotted key.
 */
function eachScalar(obj: unknown, spec: Spec, key: string, visit: (o: Record<string, unknown>, name: string, sub: ScalarSpec, key: string) => void): void {
  if (obj === null || typeof obj !== 'object') return;
  if (spec.kind === 'list') {
    (obj as unknown[]).forEach((o, i) => eachScalar(o, spec.item, `${key}[${i}]`, visit));
    return;
  }
  const fields = fieldsOf(obj, spec);
  if (fields === undefined) return;
  const o = obj as Record<string, unknown>;
  for (const [name, sub] of Object.entries(fields)) {
    const k = key === '' ? name : `${key}.${name}`;
    if (sub.kind === 'object' || sub.kind === 'list' || sub.kind === 'variant') eachScalar(o[name], sub, k, visit);
    else visit(o, name, sub as ScalarSpec, k);
  }
}

/** Reads `X_file` into `X` for secret options (read-file.ts's readSecretFile: whitespace at the ends removed); both set is an error. */
function resolveSecretFiles(obj: unknown, spec: Spec, w: Walker, baseDir: string, doc?: Document): void {
  eachScalar(obj, spec, '', (o, name, sub, k) => {
    if (!sub.secret) return;
    const fileKey = `${name}_file`;
    const file = o[fileKey];
    if (typeof file !== 'string') return;
    if (typeof o[name] === 'string' && o[name] !== '') {
      w.problem(k, nodeOfKey(doc, k), `set either ${name} or ${fileKey}, not both`);
      return;
    }
    try {
      o[name] = readSecretFile(isAbsolute(file) ? file : resolve(baseDir, file));
    } catch (e) {
      const key = `${k.slice(0, k.length - name.length)}${fileKey}`;
      w.problem(key, nodeOfKey(doc, key), fileProblem(file, e));
      w.unreadSecrets.add(k);
    }
  });
}

/**
 * Relative paths: files cefd reads (certificates, tokens, normalizer modules) resolve
 * against the config file's folder; files it writes (state_dir, outputs) against the
 * working folder (under systemd: the StateDirectory).
 */
function resolvePaths(obj: unknown, spec: Spec, baseDir: string): void {
  eachScalar(obj, spec, '', (o, name, sub) => {
    if (sub.kind === 'path' && typeof o[name] === 'string' && o[name] !== '') o[name] = resolve(sub.writes ? process.cwd() : baseDir, o[name] as string);
  });
}

function deepFreeze<T>(o: T): T {
  if (o !== null && typeof o === 'object') {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}

/**
 * The YAML node of a dotted key (`ksc.admin.bearer_token`, `ksc.response_rules[0]`), or of
 * its `_file` twin when the value came from a file, for the problem's line number. A key
 * the file does not have (a required option left out) gives the node of its nearest
 * enclosing key that it has (`ksc.admin`), so the problem still has a line.
 */
function nodeOfKey(doc: Document | undefined, key: string): Node | undefined {
  if (doc === undefined || key === '') return undefined;
  const path = key.replace(/\[(\d+)\]/g, '.$1').split('.').filter((x) => x !== '').map((x) => (/^\d+$/.test(x) ? Number(x) : x));
  for (let n = path.length; n > 0; n--) {
    const last = path[n - 1]!;
    const names = n === path.length && typeof last === 'string' ? [last, `${last}_file`] : [last];
    for (const name of names) {
      const node: unknown = doc.getIn([...path.slice(0, n - 1), name], true);
      if (isNode(node)) return node;
    }
  }
  return undefined;
}

/**
 * Gives the problems of a check made after loading (TLS material, normalizer modules:
 * src/config/normalizers.ts) the line of their key in `file`, as the loader's own have.
 * The file is read again; a file that no longer reads leaves the problems without lines.
 */
export function withLines(problems: ConfigProblem[], file: string | undefined): ConfigProblem[] {
  if (file === undefined || problems.every((p) => p.line !== undefined)) return problems;
  let text: string;
  try {
    text = readBoundedFile(file, MAX_CONFIG_BYTES);
  } catch {
    return problems;
  }
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false });
  if (doc.errors.length > 0) return problems;
  const w = new Walker(lc, {});
  return problems.map((p) => {
    if (p.line !== undefined) return p;
    const line = w.line(nodeOfKey(doc, p.key));
    return line === undefined ? p : { ...p, line };
  });
}

/** Checks that span several keys. */
function crossChecks(c: Config, w: Walker, doc?: Document): void {
  // Each problem at its key's line when the file has the key (else at `parent`'s, if given,
  // or at its nearest enclosing key's). None about a secret whose _file failed to read:
  // that was said at the _file key.
  const problem = (key: string, message: string, parent?: string) => {
    if (w.unreadSecrets.has(key)) return;
    w.problem(key, nodeOfKey(doc, key) ?? (parent !== undefined ? nodeOfKey(doc, parent) : undefined), message);
  };
  c.listeners.forEach((l, i) => {
    const k = `listeners[${i}]`;
    // Each source type's own rules (src/sources/<type>/index.ts).
    // Each problem at its key's line, or at least at its listener's.
    for (const p of sourcePlugin(l.type)?.check?.(l) ?? []) problem(`${k}.${p.key}`, p.message, k);
  });
  // Hosts that are not addresses, listeners and endpoints whose binds collide (binds.ts).
  for (const p of bindProblems(c)) problem(p.key, p.message);
  if (c.mode === 'receiver') {
    c.outputs.forEach((o, i) => {
      if (o.type !== 'nats' || (o as { payload?: string }).payload !== 'frame') problem(`outputs[${i}].type`, 'mode: receiver publishes raw frames: every output must be type nats with payload: frame');
      else if (o.filter !== undefined && o.filter.trim() !== '') problem(`outputs[${i}].filter`, 'mode: receiver does not decode, so outputs cannot filter (filter on the processors)');
      // The stream holds the only copy of frames the processors may not have read yet: a full
      // stream that drops its oldest messages deletes them unprocessed, silently.
      if (o.type === 'nats') {
        const st = (o as { stream?: { create: boolean; discard: string; max_msgs: number; max_bytes: number } }).stream;
        if (st !== undefined && st.create && st.discard === 'old' && (st.max_msgs > 0 || st.max_bytes > 0)) {
          problem(
            `outputs[${i}].stream.discard`,
            `mode: receiver with stream.${st.max_msgs > 0 ? 'max_msgs' : 'max_bytes'} needs stream.discard: new: with discard: old (the default) a full stream deletes its oldest raw frames whether processors read them or not; with new it refuses publishes until there is room and the output buffers, then pauses its sockets`,
            `outputs[${i}].stream`,
          );
        }
      }
    });
    if (c.outputs.length === 0) problem('outputs', 'mode: receiver needs a nats output with payload: frame');
  }
  if (c.outputs.length > 32) problem('outputs', 'at most 32 outputs');
  // Two writers of one file (file outputs, the dead-letter file) would write their events
  // twice, mixed with dead letters, and rotate it each on its own.
  const writers = new Map<string, string>([[c.dead_letter.path, 'the dead-letter file (dead_letter.path)']]);
  c.outputs.forEach((o, i) => {
    const path = o.type === 'file' ? (o as { path?: unknown }).path : undefined;
    if (typeof path !== 'string') return;
    const prev = writers.get(path);
    if (prev !== undefined) problem(`outputs[${i}].path`, `${path} is already written by ${prev}: give each file output its own file`);
    else writers.set(path, `output ${o.name}`);
  });
  // The metrics endpoint's token, as short as the admin API's may be (src/bearer.ts).
  if (c.metrics.enabled && c.metrics.bearer_token !== undefined) {
    const short = bearerTokenProblem(c.metrics.bearer_token);
    if (short !== undefined) problem('metrics.bearer_token', short);
  }
  for (const section of CONFIG_SECTIONS) for (const p of section.check?.(c) ?? []) problem(p.key, p.message);
  c.outputs.forEach((o, i) => {
    // The encoder the daemon and the workers will build (router.ts's compileRoutes), built
    // the same way here (the route filter was compiled with the schema's `filter` kind).
    try {
      createEncoder({ ...o.encoding, event: c.event });
    } catch (e) {
      problem(`outputs[${i}].encoding`, (e as Error).message);
    }
    // Output names name buffer folders and metric labels.
    if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/.test(o.name)) problem(`outputs[${i}].name`, 'use 1-64 letters, digits, _ . - (it names the output\'s buffer folder)');
    if (o.name === 'dead_letter') problem(`outputs[${i}].name`, '"dead_letter" is the dead-letter output\'s name');
    // Each output type's own rules (src/outputs/<type>/index.ts).
    // Each problem at its key's line, or at least at its output's.
    for (const p of outputPlugin(o.type)?.check?.(o) ?? []) problem(`outputs[${i}].${p.key}`, p.message, `outputs[${i}]`);
    if (o.retry.max_backoff < o.retry.initial_backoff) problem(`outputs[${i}].retry.max_backoff`, 'must not be less than initial_backoff');
  });
}

/**
 * Loads the configuration from `file` (YAML), or the built-in defaults when `file` is
 * undefined. Throws ConfigError with every problem found.
 */
export function loadConfig(file: string | undefined, opts: LoadOptions = {}): Config {
  const env = opts.env ?? process.env;
  let text = '';
  if (file !== undefined) {
    try {
      text = readBoundedFile(file, MAX_CONFIG_BYTES);
    } catch (e) {
      throw new ConfigError([{ key: '', message: `cannot read the config file: ${(e as Error).message}` }], file);
    }
  }
  return loadConfigText(text, file, env);
}

/**
 * A YAML syntax error as a problem at its line, with its column. The parser's message may
 * quote the offending text (`Unexpected scalar token in YAML stream: "hunter2"`), which
 * can be a secret: only what comes before a `: ` is kept, without quoted text.
 */
function yamlProblem(e: YAMLError, lc: LineCounter): ConfigProblem {
  // `Invalid escape sequence \xZZ` ends with text of the value too.
  const what = e.code === 'BAD_DQ_ESCAPE' ? 'Invalid escape sequence' : e.message.split('\n')[0]!.split(': ')[0]!.replace(/"[^"]*"/g, '').trim();
  const { line, col } = lc.linePos(e.pos[0]);
  // linePos gives line 0 for an offset before the first newline the counter saw.
  const pos = line >= 1 ? { line } : {};
  return { key: '', ...pos, message: `YAML: ${what === '' ? e.code : what} (column ${col})` };
}

/**
 * An error of turning the parsed document into values (aliases and `<<` merge keys are
 * resolved then) as a problem, at the line of the alias or merge key at fault when one
 * can be told.
 */
function conversionProblem(e: Error, doc: Document, w: Walker): ConfigProblem {
  const m = e.message;
  let node: Node | undefined;
  let message: string;
  if (m.startsWith('Unresolved alias')) {
    message = 'YAML: an alias (*name) refers to no anchor (&name) set before it';
    visit(doc, {
      Alias: (_k, a) => {
        if (a.resolve(doc) !== undefined) return undefined;
        node = a;
        return visit.BREAK;
      },
    });
  } else if (m.startsWith('Excessive alias count')) {
    message = 'YAML: aliases expand to too many values (more than 100; an alias bomb?)';
  } else if (m.startsWith('Merge sources')) {
    message = 'YAML: a merge key (<<) takes a mapping, an alias of one, or a list of those';
    const isMapping = (n: unknown): boolean => isMap(isAlias(n) ? n.resolve(doc) : n);
    visit(doc, {
      Pair: (_k, p) => {
        const k = p.key;
        const v = isScalar(k) ? k.value : k;
        if (v !== '<<' && !(typeof v === 'symbol' && v.description === '<<')) return undefined;
        if (isMapping(p.value) || (isSeq(p.value) && p.value.items.every(isMapping))) return undefined;
        node = (isNode(k) ? k : p.value) as Node | undefined;
        return visit.BREAK;
      },
    });
  } else {
    // Not quoted further: the message may hold a value of the file.
    message = `YAML: the document cannot be converted (${e.name})`;
  }
  const line = w.line(node);
  return line === undefined ? { key: '', message } : { key: '', line, message };
}

export function loadConfigText(text: string, file: string | undefined, env: Record<string, string | undefined> = process.env): Config {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true, intAsBigInt: false });
  const w = new Walker(lc, env, text);
  for (const e of doc.errors) w.problems.push(yamlProblem(e, lc));
  if (doc.errors.length > 0) throw new ConfigError(w.problems, file);
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 100 }) ?? {};
  } catch (e) {
    // Aliases and merge keys are resolved here, not while parsing.
    throw new ConfigError([conversionProblem(e as Error, doc, w)], file);
  }
  const out = w.object(SCHEMA, doc.contents as Node | null, raw, '') as Config | undefined;
  if (out === undefined || w.problems.length > 0) throw new ConfigError(w.problems, file);
  const baseDir = file === undefined ? process.cwd() : dirname(resolve(file));
  resolveSecretFiles(out, SCHEMA, w, baseDir, doc);
  resolvePaths(out, SCHEMA, baseDir);
  (out as { base_dir: string }).base_dir = baseDir;
  crossChecks(out, w, doc);
  if (w.problems.length > 0) throw new ConfigError(w.problems, file);
  return deepFreeze(out);
}

/**
 * Validates one plugin's options (`raw`, as parsed from YAML) against its fragment and
 * applies the defaults, as loading a whole file would; relative paths resolve against the
 * working folder. Throws ConfigError. For tools and tests that build one output alone.
 */
export function loadFields<const F extends Fields>(fields: F, raw: Record<string, unknown>, env: Record<string, string | undefined> = process.env): ConfigOf<F> {
  const w = new Walker(undefined, env);
  const spec: ObjectSpec = { kind: 'object', doc: '', fields };
  const out = w.object(spec, undefined, raw, '');
  if (out !== undefined && w.problems.length === 0) {
    resolveSecretFiles(out, spec, w, process.cwd());
    resolvePaths(out, spec, process.cwd());
  }
  if (out === undefined || w.problems.length > 0) throw new ConfigError(w.problems, undefined);
  return out as ConfigOf<F>;
}

/** The config with every secret replaced by "(redacted)", for printing. */
export function redactConfig(c: Config): unknown {
  const walk = (obj: unknown, spec: Spec): unknown => {
    if (obj === null || typeof obj !== 'object') return obj;
    // Items of a list of strings (`servers`) may be URLs with a password too.
    if (spec.kind === 'list') return (obj as unknown[]).map((o) => ((spec.item as ScalarSpec).secret && o !== undefined ? '(redacted)' : typeof o === 'string' ? redactUrls(o) : walk(o, spec.item)));
    if (spec.kind === 'map') return Object.fromEntries(Object.keys(obj).map((k) => [k, '(redacted)']));
    const fields = fieldsOf(obj, spec);
    if (fields === undefined) return obj;
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(obj)) {
      const sub = fields[k];
      if (sub === undefined) out[k] = v;
      else if ((sub as ScalarSpec).secret && v !== undefined) out[k] = '(redacted)';
      else if (typeof v === 'string') out[k] = redactUrls(v);
      else out[k] = walk(v, sub);
    }
    return out;
  };
  return walk(c, SCHEMA);
}
