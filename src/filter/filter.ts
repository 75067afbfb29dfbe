/**
 * The filter language of output routes and KSC response rules. docs/filters.md is
 * the user documentation (grammar, every rule, examples); keep the two in
 * step, and `test/filter/filter.test.ts` keeps a reference interpreter of the same rules.
 *
 * A filter is parsed once (config load), then compiled to closures: `test` walks
 * pre-split paths, compares against pre-converted literals, allocates nothing and never
 * throws, whatever the event looks like.
 */

import { RE2JS } from 're2js';
import type { CefdEvent } from '../event.js';
import { schema1View } from '../codecs/encoders/native.js';
import { lookupKey } from '../codecs/cef/dictionary.js';
import { kscView } from '../../normalizers/ksc/lean.js';

// ---------------------------------------------------------------------------------
// Public types

/** One step of a field path: an object key, or an array index (also an object key "N"). */
export type PathSegment = string | number;

/** A literal as written in a filter. */
export type FilterLiteral = string | number | boolean | null;

export type CompareOp = '==' | '!=' | '<' | '<=' | '>' | '>=';
export type StringOp = 'contains' | 'startswith' | 'endswith';

/** The syntax tree `parseFilter` returns. `x not in [...]` parses to `not` around `in`. */
export type FilterNode =
  | { kind: 'const'; value: boolean }
  | { kind: 'and'; operands: FilterNode[] }
  | { kind: 'or'; operands: FilterNode[] }
  | { kind: 'not'; operand: FilterNode }
  | { kind: 'exists'; path: PathSegment[] }
  | { kind: 'compare'; op: CompareOp; path: PathSegment[]; value: FilterLiteral }
  | { kind: 'in'; path: PathSegment[]; values: FilterLiteral[] }
  | { kind: 'string'; op: StringOp; path: PathSegment[]; value: string }
  | { kind: 'matches'; path: PathSegment[]; pattern: string };

export interface Filter {
  /** The text the filter was compiled from. */
  readonly source: string;
  /** Whether the event passes. Never throws. */
  test(event: object): boolean;
}

/** A compiled field path (`compilePath`). */
export interface FieldPath {
  readonly source: string;
  readonly segments: readonly PathSegment[];
  /** The value at the path, or `undefined` when it is missing. Never throws. */
  get(event: unknown): unknown;
}

/** The 1-based line and column of the 0-based `position` in `source`. */
function lineColumn(source: string, position: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  for (let i = 0; i < position && i < source.length; i++) {
    if (source.charCodeAt(i) === 10) {
      line++;
      lineStart = i + 1;
    }
  }
  return { line, column: position - lineStart + 1 };
}

/** Bad filter (or path) text. `position` is a 0-based offset; `line`/`column` are 1-based. */
export class FilterSyntaxError extends Error {
  override readonly name = 'FilterSyntaxError';
  readonly source: string;
  readonly position: number;
  readonly line: number;
  readonly column: number;
  /** The message without the location suffix. */
  readonly detail: string;
  /**
   * Another position the detail names (the `(` an expected `)` would close), and the text
   * that names it in `detail` (`at column 5`): the config loader rewrites it when it
   * reports positions in the file (src/config/load.ts).
   */
  readonly related?: { position: number; text: string };

  constructor(source: string, position: number, detail: string, related?: { position: number; text: string }) {
    const { line, column } = lineColumn(source, position);
    super(`${detail} at ${FilterSyntaxError.where(source, position)}`);
    this.source = source;
    this.position = position;
    this.line = line;
    this.column = column;
    this.detail = detail;
    if (related !== undefined) this.related = related;
  }

  /** `column 8`, or `line 2, column 23` in a filter of several lines. */
  static where(source: string, position: number): string {
    const { line, column } = lineColumn(source, position);
    return `${source.includes('\n') ? `line ${line}, ` : ''}column ${column}`;
  }
}

// ---------------------------------------------------------------------------------
// Public functions

/** Parse and compile `source`; throws `FilterSyntaxError`. */
export function compileFilter(source: string): Filter {
  const ast = parseFilter(source);
  const test = compileNode(ast) as (event: object) => boolean;
  return { source, test };
}

/** Parse `source` into a syntax tree (regexes are checked too); throws `FilterSyntaxError`. */
export function parseFilter(source: string): FilterNode {
  if (typeof source !== 'string') throw new TypeError('filter source must be a string');
  const p = new Parser(source);
  const node = p.parseOr();
  const t = p.tok;
  if (t.type !== 'eof') p.fail(t, `unexpected ${describe(t)}, expected 'and', 'or' or the end of the filter${p.keywordHint(t)}`);
  return node;
}

/** Compile a field path written as in filters: `cef.extensions.sourceAddress`, `syslog.structuredData["event@23668"].et`, `warnings[0].code`. */
export function compilePath(source: string): FieldPath {
  if (typeof source !== 'string') throw new TypeError('path must be a string');
  const p = new Parser(source);
  if (p.tok.type === 'eof') p.fail(p.tok, 'expected a field path, found end of input');
  const segments = p.parsePath();
  if (p.tok.type !== 'eof') p.fail(p.tok, `unexpected ${describe(p.tok)} after the field path`);
  return { source, segments, get: makeGetter(segments) };
}

const pathCache = new Map<string, FieldPath>();

/**
 * The value at `path` in `event` (`undefined` when missing), with the lookup rules of
 * filters: own keys only, arrays by integer index only. A string path is compiled on
 * first use and cached; on a hot path prefer `compilePath(...).get`.
 */
export function fieldValue(event: unknown, path: string | FieldPath): unknown {
  if (typeof path !== 'string') return path.get(event);
  let fp = pathCache.get(path);
  if (fp === undefined) {
    fp = compilePath(path);
    if (pathCache.size >= 256) pathCache.clear();
    pathCache.set(path, fp);
  }
  return fp.get(event);
}

// ---------------------------------------------------------------------------------
// Lexer

type Token =
  | { type: 'word'; text: string; pos: number; end: number }
  | { type: 'string'; value: string; pos: number; end: number }
  | { type: 'number'; value: number; text: string; pos: number; end: number }
  | { type: 'punct'; text: string; pos: number; end: number }
  | { type: 'eof'; pos: number; end: number };

/** Words that cannot start a path unquoted (after `.` any word is a key). */
const RESERVED = new Set([
  'and', 'or', 'not', 'in', 'exists', 'contains', 'startswith', 'endswith', 'matches', 'true', 'false', 'null',
]);

const MAX_DEPTH = 100;

function isIdentStart(c: number): boolean {
  return (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || c === 95;
}
function isIdentPart(c: number): boolean {
  return isIdentStart(c) || (c >= 48 && c <= 57);
}
function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

function describe(t: Token): string {
  if (t.type === 'eof') return 'end of input';
  if (t.type === 'string') return `'${clip(JSON.stringify(t.value))}'`;
  if (t.type === 'number') return `'${clip(t.text)}'`;
  return `'${clip(t.text)}'`;
}

function clip(s: string): string {
  return s.length > 40 ? `${s.slice(0, 37)}...` : s;
}

class Parser {
  readonly src: string;
  private i = 0;
  tok: Token;
  private depth = 0;

  constructor(src: string) {
    this.src = src;
    this.tok = this.lex();
  }

  fail(t: { pos: number } | number, detail: string, related?: { position: number; text: string }): never {
    const pos = typeof t === 'number' ? t : t.pos;
    throw new FilterSyntaxError(this.src, pos, detail, related);
  }

  private next(): Token {
    const t = this.tok;
    this.tok = this.lex();
    return t;
  }

  private isWord(t: Token, w: string): boolean {
    return t.type === 'word' && t.text === w;
  }
  private isPunct(t: Token, p: string): boolean {
    return t.type === 'punct' && t.text === p;
  }

  private lex(): Token {
    const s = this.src;
    let i = this.i;
    while (i < s.length) {
      const c = s.charCodeAt(i);
      if (c === 32 || c === 9 || c === 10 || c === 13) i++;
      else break;
    }
    const pos = i;
    if (i >= s.length) {
      this.i = i;
      return { type: 'eof', pos, end: pos };
    }
    const c = s.charCodeAt(i);
    if (isIdentStart(c)) {
      let j = i + 1;
      while (j < s.length && isIdentPart(s.charCodeAt(j))) j++;
      this.i = j;
      return { type: 'word', text: s.slice(i, j), pos, end: j };
    }
    if (c === 34) return this.lexString(pos);
    if (isDigit(c) || (c === 45 && isDigit(s.charCodeAt(i + 1)))) return this.lexNumber(pos);
    const two = s.slice(i, i + 2);
    if (two === '==' || two === '!=' || two === '<=' || two === '>=' || two === '&&' || two === '||' || two === '~=') {
      this.i = i + 2;
      return { type: 'punct', text: two, pos, end: i + 2 };
    }
    const ch = s[i]!;
    if ('()[],.<>!'.includes(ch)) {
      this.i = i + 1;
      return { type: 'punct', text: ch, pos, end: i + 1 };
    }
    const cp = String.fromCodePoint(s.codePointAt(i)!);
    let hint = '';
    if (ch === '=') hint = " (use '==' to compare)";
    else if (ch === '&') hint = " (use 'and' or '&&')";
    else if (ch === '|') hint = " (use 'or' or '||')";
    else if (ch === "'") hint = ' (strings use double quotes)';
    else if (ch === '-') hint = ' (a key with "-" must be quoted: ["key-name"])';
    else hint = ' (a key with other characters must be quoted: ["key"])';
    return this.fail(pos, `unexpected character '${cp}'${hint}`);
  }

  private lexString(pos: number): Token {
    const s = this.src;
    let i = pos + 1;
    let out = '';
    let runStart = i;
    for (;;) {
      if (i >= s.length) this.fail(pos, `unterminated string '${clip(s.slice(pos))}'`);
      const c = s.charCodeAt(i);
      if (c === 34) {
        out += s.slice(runStart, i);
        i++;
        break;
      }
      if (c < 0x20) this.fail(i, `control character U+${c.toString(16).toUpperCase().padStart(4, '0')} in a string (use an escape such as \\n or \\t)`);
      if (c === 92) {
        out += s.slice(runStart, i);
        const e = s[i + 1];
        switch (e) {
          case '"': out += '"'; i += 2; break;
          case '\\': out += '\\'; i += 2; break;
          case '/': out += '/'; i += 2; break;
          case 'b': out += '\b'; i += 2; break;
          case 'f': out += '\f'; i += 2; break;
          case 'n': out += '\n'; i += 2; break;
          case 'r': out += '\r'; i += 2; break;
          case 't': out += '\t'; i += 2; break;
          case 'u': {
            const hex = s.slice(i + 2, i + 6);
            if (!/^[0-9a-fA-F]{4}$/.test(hex)) this.fail(i, `bad escape '${clip(s.slice(i, i + 6))}' (\\u needs 4 hex digits)`);
            out += String.fromCharCode(parseInt(hex, 16));
            i += 6;
            break;
          }
          default:
            this.fail(
              e === undefined ? pos : i,
              e === undefined
                ? `unterminated string '${clip(s.slice(pos))}'`
                : `bad escape '\\${e}' in a string (escapes: \\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX; write a regex backslash as \\\\)`,
            );
        }
        runStart = i;
        continue;
      }
      i++;
    }
    this.i = i;
    return { type: 'string', value: out, pos, end: i };
  }

  private lexNumber(pos: number): Token {
    const s = this.src;
    let i = pos;
    if (s.charCodeAt(i) === 45) i++;
    while (isDigit(s.charCodeAt(i))) i++;
    if (s.charCodeAt(i) === 46 && isDigit(s.charCodeAt(i + 1))) {
      i += 2;
      while (isDigit(s.charCodeAt(i))) i++;
    }
    const ce = s.charCodeAt(i);
    if (ce === 101 || ce === 69) {
      let j = i + 1;
      const cs = s.charCodeAt(j);
      if (cs === 43 || cs === 45) j++;
      if (isDigit(s.charCodeAt(j))) {
        while (isDigit(s.charCodeAt(j))) j++;
        i = j;
      }
    }
    // `10.0.0.1`, `1abc`, `5.`: text glued to a number is a mistake; say so.
    let j = i;
    while (j < s.length && (isIdentPart(s.charCodeAt(j)) || s[j] === '.' || s[j] === ':')) j++;
    if (j > i) {
      const text = s.slice(pos, j);
      this.fail(pos, `malformed number '${clip(text)}' (quote text: ${clip(JSON.stringify(text))})`);
    }
    const text = s.slice(pos, i);
    const value = Number(text);
    if (!Number.isFinite(value)) this.fail(pos, `number '${clip(text)}' is out of range`);
    this.i = i;
    return { type: 'number', value: value === 0 ? 0 : value, text, pos, end: i };
  }

  // --- grammar ---------------------------------------------------------------

  private enter(t: Token): void {
    if (++this.depth > MAX_DEPTH) this.fail(t, `filter nested too deeply (more than ${MAX_DEPTH} levels of parentheses or 'not')`);
  }

  parseOr(): FilterNode {
    const first = this.parseAnd();
    if (!this.isOrOp(this.tok)) return first;
    const operands = [first];
    while (this.isOrOp(this.tok)) {
      this.next();
      operands.push(this.parseAnd());
    }
    return { kind: 'or', operands };
  }

  private isOrOp(t: Token): boolean {
    return this.isWord(t, 'or') || this.isPunct(t, '||');
  }
  private isAndOp(t: Token): boolean {
    return this.isWord(t, 'and') || this.isPunct(t, '&&');
  }

  private parseAnd(): FilterNode {
    const first = this.parseNot();
    if (!this.isAndOp(this.tok)) return first;
    const operands = [first];
    while (this.isAndOp(this.tok)) {
      this.next();
      operands.push(this.parseNot());
    }
    return { kind: 'and', operands };
  }

  private parseNot(): FilterNode {
    const t = this.tok;
    if (this.isWord(t, 'not') || this.isPunct(t, '!')) {
      this.next();
      this.enter(t);
      const operand = this.parseNot();
      this.depth--;
      return { kind: 'not', operand };
    }
    return this.parsePrimary();
  }

  private parsePrimary(): FilterNode {
    const t = this.tok;
    if (this.isPunct(t, '(')) {
      this.next();
      this.enter(t);
      const inner = this.parseOr();
      this.depth--;
      if (!this.isPunct(this.tok, ')')) {
        // Its line too in a filter of several lines (the column alone was the offset in the text).
        const at = `at ${FilterSyntaxError.where(this.src, t.pos)}`;
        this.fail(this.tok, `expected ')' to close the '(' ${at}, found ${describe(this.tok)}${this.keywordHint(this.tok)}`, { position: t.pos, text: at });
      }
      this.next();
      return inner;
    }
    if (this.isWord(t, 'exists')) {
      this.next();
      if (!(this.tok.type === 'word' || this.isPunct(this.tok, '['))) {
        this.fail(this.tok, `expected a field path after 'exists', found ${describe(this.tok)}`);
      }
      return { kind: 'exists', path: this.parsePath() };
    }
    if (this.isWord(t, 'true') || this.isWord(t, 'false')) {
      this.next();
      return { kind: 'const', value: t.type === 'word' && t.text === 'true' };
    }
    if ((t.type === 'word' && !RESERVED.has(t.text)) || this.isPunct(t, '[')) {
      const path = this.parsePath();
      return this.parsePredicate(t, path);
    }
    if (t.type === 'word') {
      this.fail(t, `unexpected '${t.text}', expected a field path, 'not', 'exists', 'true', 'false' or '(' (a key named '${t.text}' must be quoted: ["${t.text}"])`);
    }
    if (t.type === 'string' || t.type === 'number') {
      this.fail(t, `unexpected ${describe(t)}: a test starts with the field path (write 'path == value')`);
    }
    return this.fail(t, `expected a field path, 'not', 'exists', 'true', 'false' or '(', found ${describe(t)}`);
  }

  /** `seg { "." word | "[" string | index "]" }`, first seg a non-reserved word or a bracket. */
  parsePath(): PathSegment[] {
    const segments: PathSegment[] = [];
    const t = this.tok;
    if (t.type === 'word') {
      if (RESERVED.has(t.text)) this.fail(t, `a path cannot start with the keyword '${t.text}' (quote it: ["${t.text}"])`);
      segments.push(t.text);
      this.next();
    } else if (this.isPunct(t, '[')) {
      segments.push(this.parseBracket());
    } else {
      this.fail(t, `expected a field path, found ${describe(t)}`);
    }
    for (;;) {
      const u = this.tok;
      if (this.isPunct(u, '.')) {
        this.next();
        const w = this.tok;
        if (w.type !== 'word') {
          this.fail(w, `expected a key after '.', found ${describe(w)}${w.type === 'string' || w.type === 'number' || this.isPunct(w, '[') ? ' (write a quoted or numeric key as ["key"] or [0], without the dot)' : ''}`);
        }
        segments.push(w.text);
        this.next();
      } else if (this.isPunct(u, '[')) {
        segments.push(this.parseBracket());
      } else {
        return segments;
      }
    }
  }

  private parseBracket(): PathSegment {
    this.next(); // '['
    const k = this.tok;
    let seg: PathSegment;
    if (k.type === 'string') seg = k.value;
    else if (k.type === 'number' && Number.isSafeInteger(k.value) && /^\d+$/.test(k.text)) seg = k.value;
    else return this.fail(k, `expected a quoted key or an array index inside '[ ]', found ${describe(k)}`);
    this.next();
    if (!this.isPunct(this.tok, ']')) this.fail(this.tok, `expected ']' after the key, found ${describe(this.tok)}`);
    this.next();
    return seg;
  }

  private parsePredicate(start: Token, path: PathSegment[]): FilterNode {
    const t = this.tok;
    const pathText = this.src.slice(start.pos, t.pos).trimEnd();
    if (t.type === 'punct' && (t.text === '==' || t.text === '!=' || t.text === '<' || t.text === '<=' || t.text === '>' || t.text === '>=')) {
      this.next();
      const op = t.text as CompareOp;
      const lt = this.tok;
      const value = this.parseLiteral(t);
      if (op !== '==' && op !== '!=' && typeof value !== 'string' && typeof value !== 'number') {
        this.fail(lt, `'${op}' needs a number or a string, found ${describe(lt)}`);
      }
      return { kind: 'compare', op, path, value };
    }
    if (this.isWord(t, 'in')) {
      this.next();
      return { kind: 'in', path, values: this.parseList(t) };
    }
    if (this.isWord(t, 'not')) {
      this.next();
      const u = this.tok;
      if (!this.isWord(u, 'in')) this.fail(u, `expected 'in' after '${pathText} not', found ${describe(u)} (write 'not (${pathText} ...)' to negate other tests)`);
      this.next();
      return { kind: 'not', operand: { kind: 'in', path, values: this.parseList(u) } };
    }
    if (this.isWord(t, 'contains') || this.isWord(t, 'startswith') || this.isWord(t, 'endswith')) {
      this.next();
      const lt = this.tok;
      if (lt.type !== 'string') this.fail(lt, `'${(t as { text: string }).text}' needs a quoted string, found ${describe(lt)}`);
      this.next();
      return { kind: 'string', op: (t as { text: string }).text as StringOp, path, value: lt.value };
    }
    if (this.isWord(t, 'matches') || this.isPunct(t, '~=')) {
      this.next();
      const lt = this.tok;
      if (lt.type !== 'string') this.fail(lt, `'${(t as { text: string }).text}' needs a quoted regular expression, found ${describe(lt)}`);
      this.next();
      try {
        makeRegex(lt.value);
      } catch (err) {
        this.fail(lt, `bad regular expression ${describe(lt)}: ${(err as Error).message} (RE2 syntax, no lookaround or backreferences: docs/filters.md#regular-expressions)`);
      }
      return { kind: 'matches', path, pattern: lt.value };
    }
    let hint = this.keywordHint(t);
    if (!hint && (t.type === 'eof' || this.isWord(t, 'and') || this.isWord(t, 'or') || this.isPunct(t, ')') || this.isPunct(t, '&&') || this.isPunct(t, '||'))) {
      hint = ` (a field alone is not a test: write 'exists ${pathText}' or '${pathText} == true')`;
    }
    return this.fail(t, `expected an operator (==, !=, <, <=, >, >=, in, not in, contains, startswith, endswith, matches, ~=) after '${clip(pathText)}', found ${describe(t)}${hint}`);
  }

  keywordHint(t: Token): string {
    if (t.type !== 'word') return '';
    const lower = t.text.toLowerCase();
    return lower !== t.text && RESERVED.has(lower) ? ` (keywords are lowercase: '${lower}')` : '';
  }

  private parseLiteral(after: Token): FilterLiteral {
    const t = this.tok;
    let v: FilterLiteral;
    if (t.type === 'string' || t.type === 'number') v = t.value;
    else if (this.isWord(t, 'true')) v = true;
    else if (this.isWord(t, 'false')) v = false;
    else if (this.isWord(t, 'null')) v = null;
    else {
      const a = after.type === 'punct' || after.type === 'word' ? after.text : '';
      const hint = t.type === 'word' ? ' (quote text: "...")' : '';
      return this.fail(t, `expected a value (a "string", a number, true, false or null) after '${a}', found ${describe(t)}${hint}`);
    }
    this.next();
    return v;
  }

  private parseList(inTok: Token): FilterLiteral[] {
    if (!this.isPunct(this.tok, '[')) this.fail(this.tok, `expected '[' after 'in', found ${describe(this.tok)} (write 'in [value, ...]')`);
    const open = this.next();
    const values: FilterLiteral[] = [];
    if (this.isPunct(this.tok, ']')) {
      this.next();
      return values;
    }
    for (;;) {
      values.push(this.parseLiteral(values.length === 0 ? open : inTok));
      const t = this.tok;
      if (this.isPunct(t, ',')) {
        this.next();
        continue;
      }
      if (this.isPunct(t, ']')) {
        this.next();
        return values;
      }
      this.fail(t, `expected ',' or ']' in the list, found ${describe(t)}`);
    }
  }
}

// ---------------------------------------------------------------------------------
// Values

function numericString(s: string): number {
  const n = s.length;
  if (n === 0) return NaN;
  let i = 0;
  let c = s.charCodeAt(0);
  if (c === 45 || c === 43) i++;
  const d0 = i;
  while (i < n && isDigit(s.charCodeAt(i))) i++;
  if (i === d0) return NaN;
  if (i < n && s.charCodeAt(i) === 46) {
    const f0 = ++i;
    while (i < n && isDigit(s.charCodeAt(i))) i++;
    if (i === f0) return NaN;
  }
  if (i < n) {
    c = s.charCodeAt(i);
    if (c !== 101 && c !== 69) return NaN;
    i++;
    if (i < n) {
      c = s.charCodeAt(i);
      if (c === 45 || c === 43) i++;
    }
    const e0 = i;
    while (i < n && isDigit(s.charCodeAt(i))) i++;
    if (i === e0 || i !== n) return NaN;
  }
  const v = Number(s);
  return Number.isFinite(v) ? v : NaN;
}

/** Keys inherited by plain objects or arrays, or that read array elements: looked up with an own-key check. */
function needsOwnCheck(key: string): boolean {
  return key in Object.prototype || key in Array.prototype || key === '__proto__' || /^(0|[1-9]\d*)$/.test(key);
}

const hasOwn = Object.prototype.hasOwnProperty;

type Getter = (root: unknown) => unknown;

/**
 * Paths of fields the event format's schema 1 carried and schema 2 carries once, elsewhere
 * (docs/event-format.md): `cef.typed.*`, `cef.extensions.*` (custom pairs), `ksc.*`, `syslog.timestamp`
 * (the whole KSC object). A filter written against them still works: when the path is
 * missing on the event it is read on the schema 1 view, rebuilt once per event.
 */
function isSchema1Path(segments: readonly PathSegment[]): boolean {
  const a = segments[0];
  if (a === 'syslog') return segments.length === 2 && segments[1] === 'timestamp';
  if (a === 'ksc') return segments.length > 1;
  return a === 'cef' && segments.length > 2 && (segments[1] === 'typed' || segments[1] === 'extensions');
}

function makeGetter(segments: readonly PathSegment[]): Getter {
  const get = makePlainGetter(segments);
  const custom = customPairGetter(segments, get);
  if (custom !== undefined) return custom;
  if (!isSchema1Path(segments)) return get;
  if (segments[0] === 'ksc') {
    // Only the KSC object is rebuilt (normalizers/ksc/lean.ts), not the whole view.
    const rest = makePlainGetter(segments.slice(1));
    return (r) => {
      const v = get(r);
      if (v !== undefined || typeof r !== 'object' || r === null) return v;
      const k = fromView(() => kscView(r as CefdEvent));
      return k === null || k === undefined ? undefined : rest(k);
    };
  }
  if (segments[0] === 'syslog') {
    // null marks a header without a time stamp: missing, as schema 1 had it.
    return (r) => {
      const v = get(r);
      if (v !== undefined && v !== null) return v;
      if (typeof r !== 'object' || r === null) return undefined;
      return fromView(() => get(schema1View(r as CefdEvent)));
    };
  }
  return (r) => {
    const v = get(r);
    if (v !== undefined || typeof r !== 'object' || r === null) return v;
    return fromView(() => get(schema1View(r as CefdEvent)));
  };
}

/**
 * A value read on the schema 1 view, or undefined when the event is not shaped as cefd
 * makes events (a user normalizer's `cef: null`, `warnings: 1`, a number as a KSC event
 * type): the view cannot be rebuilt, so the path is missing. A filter never throws.
 */
function fromView<T>(read: () => T): T | undefined {
  try {
    return read();
  } catch {
    return undefined;
  }
}

/**
 * `cef.custom["cs3:TaskName"]` on an event written with `event.custom_fields: pairs`
 * (docs/event-format.md): the console's recent events and live tail are that JSON, read
 * back, so the pair is in `cef.extensions` as `deviceCustomString3` and
 * `deviceCustomString3Label`. When the key is missing, it is read there, as the CEF parser
 * folds it (src/codecs/cef/parse.ts `placeCustom`): a non-empty label that names it, and a
 * number family's value as the JSON number when written as that number. So a filter gives
 * the same answer on the event an output route tests and on its JSON in the console.
 */
function customPairGetter(segments: readonly PathSegment[], get: Getter): Getter | undefined {
  const key = segments[2];
  if (segments[0] !== 'cef' || segments[1] !== 'custom' || typeof key !== 'string') return undefined;
  const colon = key.indexOf(':');
  const label = key.slice(colon + 1);
  if (colon <= 0 || label === '') return undefined;
  const full = lookupKey(key.slice(0, colon))?.customBase;
  if (full === undefined) return undefined;
  const labelKey = `${full}Label`;
  const numeric = lookupKey(full)?.type === 'int';
  const rest = segments.length > 3 ? makePlainGetter(segments.slice(3)) : undefined;
  return (r) => {
    const v = get(r);
    if (v !== undefined || typeof r !== 'object' || r === null) return v;
    const cef = (r as { cef?: unknown }).cef;
    if (typeof cef !== 'object' || cef === null || !hasOwn.call(cef, 'extensions')) return undefined;
    const ext = (cef as { extensions: unknown }).extensions;
    if (typeof ext !== 'object' || ext === null || Array.isArray(ext)) return undefined;
    if (!hasOwn.call(ext, labelKey) || (ext as Record<string, unknown>)[labelKey] !== label || !hasOwn.call(ext, full)) return undefined;
    let x = (ext as Record<string, unknown>)[full];
    if (numeric && typeof x === 'string') {
      const n = Number(x);
      if (Number.isSafeInteger(n) && String(n) === x) x = n;
    }
    return rest === undefined ? x : rest(x);
  };
}

/** One step: `v[seg]` under the lookup rules (own keys; arrays by integer index only). */
function makePlainGetter(segments: readonly PathSegment[]): Getter {
  const n = segments.length;
  const keys: (string | number)[] = [];
  const checked: boolean[] = [];
  for (const s of segments) {
    keys.push(s);
    checked.push(typeof s === 'string' && needsOwnCheck(s));
  }
  // Unrolled forms for the common short, unchecked paths.
  if (n === 1 && !checked[0]) {
    const k0 = keys[0]!;
    return (r) => (typeof r === 'object' && r !== null ? (r as Record<string | number, unknown>)[k0] : undefined);
  }
  if (n === 2 && !checked[0] && !checked[1]) {
    const k0 = keys[0]!;
    const k1 = keys[1]!;
    return (r) => {
      if (typeof r !== 'object' || r === null) return undefined;
      const v = (r as Record<string | number, unknown>)[k0];
      return typeof v === 'object' && v !== null ? (v as Record<string | number, unknown>)[k1] : undefined;
    };
  }
  if (n === 3 && !checked[0] && !checked[1] && !checked[2]) {
    const k0 = keys[0]!;
    const k1 = keys[1]!;
    const k2 = keys[2]!;
    return (r) => {
      if (typeof r !== 'object' || r === null) return undefined;
      const v = (r as Record<string | number, unknown>)[k0];
      if (typeof v !== 'object' || v === null) return undefined;
      const w = (v as Record<string | number, unknown>)[k1];
      return typeof w === 'object' && w !== null ? (w as Record<string | number, unknown>)[k2] : undefined;
    };
  }
  return (r) => {
    let v = r;
    for (let i = 0; i < n; i++) {
      if (typeof v !== 'object' || v === null) return undefined;
      const k = keys[i]!;
      if (checked[i] && (Array.isArray(v) || !hasOwn.call(v, k))) return undefined;
      v = (v as Record<string | number, unknown>)[k];
    }
    return v;
  };
}
// Why unchecked keys are safe: an unchecked string key is not a name on Object.prototype
// or Array.prototype and not an array index, so it can only be an own key of an object
// (or absent); a number segment reads an array element or the object key "N", and no
// prototype of a plain object or array has integer keys.

/**
 * The matcher for a `matches` pattern: RE2 syntax, unanchored; `(?i)` ignores case.
 *
 * Why RE2 (re2js, a JavaScript port of Google's RE2) and not RegExp: the pattern comes from
 * the configuration but the text it runs on comes from the network. V8's backtracking engine
 * takes exponential time on patterns such as `^(a+)+$` for some inputs (41 bytes of event text
 * held a decode worker for over 3 minutes), so one hostile frame could stall the pipeline.
 * RE2 matches in time linear in the text for every pattern it accepts; it refuses the features
 * that need backtracking (lookaround, backreferences) at load time.
 */
function makeRegex(pattern: string): RE2JS {
  return RE2JS.compile(pattern);
}

// ---------------------------------------------------------------------------------
// Compiler

type Pred = (event: unknown) => boolean;

const TRUE: Pred = () => true;
const FALSE: Pred = () => false;

function compileNode(node: FilterNode): Pred {
  switch (node.kind) {
    case 'const':
      return node.value ? TRUE : FALSE;
    case 'not': {
      const p = compileNode(node.operand);
      return (e) => !p(e);
    }
    case 'and': {
      const ps = node.operands.map(compileNode);
      if (ps.length === 2) {
        const [a, b] = ps as [Pred, Pred];
        return (e) => a(e) && b(e);
      }
      return (e) => {
        for (let i = 0; i < ps.length; i++) if (!ps[i]!(e)) return false;
        return true;
      };
    }
    case 'or': {
      const ps = node.operands.map(compileNode);
      if (ps.length === 2) {
        const [a, b] = ps as [Pred, Pred];
        return (e) => a(e) || b(e);
      }
      return (e) => {
        for (let i = 0; i < ps.length; i++) if (ps[i]!(e)) return true;
        return false;
      };
    }
    case 'exists': {
      const get = makeGetter(node.path);
      return (e) => get(e) !== undefined;
    }
    case 'compare':
      return compileCompare(node.op, makeGetter(node.path), node.value);
    case 'in':
      return compileIn(makeGetter(node.path), node.values);
    case 'string': {
      const get = makeGetter(node.path);
      const lit = node.value;
      switch (node.op) {
        case 'contains':
          return (e) => {
            const v = get(e);
            return typeof v === 'string' && v.includes(lit);
          };
        case 'startswith':
          return (e) => {
            const v = get(e);
            return typeof v === 'string' && v.startsWith(lit);
          };
        case 'endswith':
          return (e) => {
            const v = get(e);
            return typeof v === 'string' && v.endsWith(lit);
          };
      }
      // Unreachable: the switch is exhaustive.
      return FALSE;
    }
    case 'matches': {
      const get = makeGetter(node.path);
      const re = makeRegex(node.pattern);
      return (e) => {
        const v = get(e);
        return typeof v === 'string' && re.test(v);
      };
    }
  }
}

function compileCompare(op: CompareOp, get: Getter, lit: FilterLiteral): Pred {
  if (op === '!=') {
    const eq = compileCompare('==', get, lit);
    return (e) => !eq(e);
  }
  if (typeof lit === 'number') {
    // Numeric: the field must be a number or a numeric-looking string.
    const L = lit;
    const num = (e: unknown): number => {
      const v = get(e);
      return typeof v === 'number' ? v : typeof v === 'string' ? numericString(v) : NaN;
    };
    switch (op) {
      case '==': return (e) => num(e) === L;
      case '<': return (e) => num(e) < L;
      case '<=': return (e) => num(e) <= L;
      case '>': return (e) => num(e) > L;
      case '>=': return (e) => num(e) >= L;
    }
  }
  if (typeof lit === 'string') {
    // Text against a string field; numeric against a number field (if the literal is numeric-looking).
    const L = lit;
    const Ln = numericString(lit);
    switch (op) {
      case '==': return (e) => { const v = get(e); return typeof v === 'string' ? v === L : typeof v === 'number' && v === Ln; };
      case '<': return (e) => { const v = get(e); return typeof v === 'string' ? v < L : typeof v === 'number' && v < Ln; };
      case '<=': return (e) => { const v = get(e); return typeof v === 'string' ? v <= L : typeof v === 'number' && v <= Ln; };
      case '>': return (e) => { const v = get(e); return typeof v === 'string' ? v > L : typeof v === 'number' && v > Ln; };
      case '>=': return (e) => { const v = get(e); return typeof v === 'string' ? v >= L : typeof v === 'number' && v >= Ln; };
    }
  }
  // true / false / null: identity (the parser allows only == and != here).
  if (op !== '==') return FALSE;
  return (e) => get(e) === lit;
}

function compileIn(get: Getter, values: readonly FilterLiteral[]): Pred {
  if (values.length === 0) return FALSE;
  const strs = new Set<string>(); // string literals, for string fields
  const nums = new Set<number>(); // number literals, for string fields (numeric-looking)
  const numsForNumbers = new Set<number>(); // number literals and numeric-looking string literals, for number fields
  const others = new Set<boolean | null>();
  for (const v of values) {
    if (typeof v === 'string') {
      strs.add(v);
      const n = numericString(v);
      if (!Number.isNaN(n)) numsForNumbers.add(n);
    } else if (typeof v === 'number') {
      nums.add(v);
      numsForNumbers.add(v);
    } else {
      others.add(v);
    }
  }
  const anyNums = nums.size > 0;
  const anyOthers = others.size > 0;
  return (e) => {
    const v = get(e);
    if (typeof v === 'string') return strs.has(v) || (anyNums && nums.has(numericString(v)));
    if (typeof v === 'number') return v === v && numsForNumbers.has(v);
    if (anyOthers && (v === null || typeof v === 'boolean')) return others.has(v);
    return false;
  };
}
