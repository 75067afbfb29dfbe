/**
 * The subset of KSC's LDAP/RFC 2254-like search filter that the emulator understands
 * (docs/reference/ksc-open-api.md §2.1): `(ATTR op value)` with `=`, `<>`, `<`, `>`, `<=`, `>=`;
 * `(&...)`, `(|...)`, `(!...)`; `*` wildcards in string `=`/`<>`; bit tests `(ATTR&n<>0)`; date
 * literals `T"2017-8-3 12:57:47"`; quoted strings, integers, true/false. `""` matches all.
 */

export type FilterValue = string | number | boolean | Date | null | undefined;
export type Getter = (attr: string) => FilterValue | FilterValue[];

type Node =
  | { k: 'and' | 'or'; items: Node[] }
  | { k: 'not'; item: Node }
  | { k: 'cmp'; attr: string; mask: number | undefined; op: string; value: string | number | boolean | Date; quoted: boolean };

export class FilterSyntaxError extends Error {}

export function parseFilter(src: string): Node | null {
  let i = 0;
  const ws = (): void => {
    while (i < src.length && /\s/.test(src[i]!)) i++;
  };
  const fail = (msg: string): never => {
    throw new FilterSyntaxError(`filter syntax error at ${i}: ${msg}`);
  };
  const expect = (c: string): void => {
    ws();
    if (src[i] !== c) fail(`expected "${c}"`);
    i++;
  };
  const node = (): Node => {
    expect('(');
    ws();
    const c = src[i];
    let n: Node;
    if (c === '&' || c === '|') {
      i++;
      const items: Node[] = [];
      ws();
      while (src[i] === '(') {
        items.push(node());
        ws();
      }
      if (items.length === 0) fail('empty & or |');
      n = { k: c === '&' ? 'and' : 'or', items };
    } else if (c === '!') {
      i++;
      n = { k: 'not', item: node() };
    } else {
      const m = /^([A-Za-z_][A-Za-z0-9_]*)\s*(?:&\s*(\d+))?\s*(<>|<=|>=|=|<|>)\s*/.exec(src.slice(i));
      if (m === null) fail('expected ATTR op value');
      i += m![0].length;
      let value: string | number | boolean | Date;
      let quoted = false;
      if (src[i] === '"' || (src[i] === 'T' && src[i + 1] === '"')) {
        const isDate = src[i] === 'T';
        if (isDate) i++;
        i++;
        let s = '';
        while (i < src.length && src[i] !== '"') {
          if (src[i] === '\\' && i + 1 < src.length) i++;
          s += src[i];
          i++;
        }
        if (src[i] !== '"') fail('unterminated string');
        i++;
        if (isDate) {
          // KSC writes `T"2017-8-3 12:57:47"` (no zero padding), UTC.
          const dm = /^(\d{4})-(\d{1,2})-(\d{1,2})(?:[ T](\d{1,2}):(\d{1,2}):(\d{1,2}))?$/.exec(s.trim());
          if (dm === null) fail(`bad date literal ${s}`);
          const n = dm!.slice(1).map((x) => (x === undefined ? 0 : Number(x)));
          value = new Date(Date.UTC(n[0]!, n[1]! - 1, n[2]!, n[3]!, n[4]!, n[5]!));
        } else {
          value = s;
          quoted = true;
        }
      } else {
        const v = /^(-?\d+|true|false)/.exec(src.slice(i));
        if (v === null) fail('expected a value');
        i += v![0].length;
        value = v![0] === 'true' ? true : v![0] === 'false' ? false : Number(v![0]);
      }
      n = { k: 'cmp', attr: m![1]!, mask: m![2] === undefined ? undefined : Number(m![2]), op: m![3]!, value, quoted };
    }
    expect(')');
    return n;
  };
  ws();
  if (i >= src.length) return null;
  const n = node();
  ws();
  if (i < src.length) fail('trailing text');
  return n;
}

function wildcard(pattern: string): RegExp {
  return new RegExp('^' + pattern.split('*').map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.*') + '$', 'is');
}

function cmpOne(a: FilterValue, n: Extract<Node, { k: 'cmp' }>): boolean {
  let v: FilterValue = a;
  if (n.mask !== undefined) v = typeof a === 'number' ? a & n.mask : 0;
  const want = n.value;
  let c: number;
  if (typeof want === 'string') {
    const s = v === null || v === undefined ? '' : v instanceof Date ? v.toISOString() : String(v);
    if ((n.op === '=' || n.op === '<>') && want.includes('*')) {
      const r = wildcard(want).test(s);
      return n.op === '=' ? r : !r;
    }
    c = s.toLowerCase() < want.toLowerCase() ? -1 : s.toLowerCase() > want.toLowerCase() ? 1 : 0;
  } else if (want instanceof Date) {
    if (!(v instanceof Date)) return n.op === '<>';
    c = Math.sign(v.getTime() - want.getTime());
  } else if (typeof want === 'boolean') {
    const b = v === true || v === 1;
    c = b === want ? 0 : 1;
  } else {
    const num = typeof v === 'number' ? v : typeof v === 'boolean' ? (v ? 1 : 0) : v === null || v === undefined || v === '' ? NaN : Number(v);
    if (Number.isNaN(num)) return n.op === '<>';
    c = Math.sign(num - want);
  }
  switch (n.op) {
    case '=':
      return c === 0;
    case '<>':
      return c !== 0;
    case '<':
      return c < 0;
    case '>':
      return c > 0;
    case '<=':
      return c <= 0;
    default:
      return c >= 0;
  }
}

export function matchFilter(n: Node | null, get: Getter): boolean {
  if (n === null) return true;
  switch (n.k) {
    case 'and':
      return n.items.every((x) => matchFilter(x, get));
    case 'or':
      return n.items.some((x) => matchFilter(x, get));
    case 'not':
      return !matchFilter(n.item, get);
    case 'cmp': {
      const v = get(n.attr);
      // Multi-valued attributes (group ancestry, products) match when any value matches `=`;
      // `<>` holds when no value equals.
      if (Array.isArray(v)) {
        if (n.op === '<>') return !v.some((x) => cmpOne(x, { ...n, op: '=' }));
        return v.some((x) => cmpOne(x, n));
      }
      return cmpOne(v, n);
    }
  }
}

/** Attribute names a filter uses (the emulator rejects unknown ones, as a real server would). */
export function filterAttributes(n: Node | null, out: Set<string> = new Set()): Set<string> {
  if (n === null) return out;
  if (n.k === 'cmp') out.add(n.attr);
  else if (n.k === 'not') filterAttributes(n.item, out);
  else for (const x of n.items) filterAttributes(x, out);
  return out;
}
