/**
 * Renders the generated Markdown tables: every configuration option (docs/configuration.md,
 * also printed by `cefd config-doc`), every error and warning code with its meaning
 * (docs/error-codes.md), and the README's compact list of the codes. test/docs.test.ts
 * keeps the files in step with the code.
 */
import { SCHEMA, type ScalarSpec, type Spec } from './schema.js';
import { CODES } from '../errors.js';

function typeText(s: Spec): string {
  switch (s.kind) {
    case 'enum':
      return (s as ScalarSpec).values!.map((v) => `\`${v}\``).join(' \\| ');
    case 'list':
      return s.item.kind === 'variant' || s.item.kind === 'object' ? 'list' : `list of ${typeText(s.item)}`;
    case 'map':
      return 'map';
    case 'object':
      return 'mapping';
    case 'mode':
      return 'octal mode';
    case 'variant':
      return 'mapping';
    default:
      return s.kind;
  }
}

function defaultText(s: Spec): string {
  const d = (s as { default?: unknown }).default;
  if ((s as ScalarSpec).required) return 'required';
  if (d === undefined) return '';
  if (s.kind === 'mode') return `\`0${(d as number).toString(8)}\``;
  return `\`${JSON.stringify(d)}\``;
}

function rows(prefix: string, fields: Record<string, Spec>, out: string[]): void {
  for (const [name, spec] of Object.entries(fields)) {
    const key = prefix === '' ? name : `${prefix}.${name}`;
    const secret = spec.secret ? ' (secret)' : '';
    out.push(`| \`${key}\` | ${typeText(spec)} | ${defaultText(spec)} | ${spec.doc.replace(/\|/g, '\\|')}${secret} |`);
    if (spec.kind === 'object') rows(key, spec.fields, out);
    if (spec.kind === 'list' && spec.item.kind === 'object') rows(`${key}[]`, spec.item.fields, out);
    if (spec.kind === 'list' && spec.item.kind === 'variant') {
      const v = spec.item;
      out.push(`| \`${key}[].type\` | ${Object.keys(v.variants).map((t) => `\`${t}\``).join(' \\| ')} | required | ${Object.entries(v.variants).map(([t, x]) => `\`${t}\`: ${x.doc}`).join(' ')} |`);
      rows(`${key}[]`, v.common, out);
      for (const [t, x] of Object.entries(v.variants)) rows(`${key}[type=${t}]`, x.fields, out);
    }
  }
}

export function configDoc(): string {
  const out = ['| key | type | default | description |', '|---|---|---|---|'];
  rows('', SCHEMA.fields, out);
  return out.join('\n') + '\n';
}

/** Renders the error and warning codes (src/errors.ts) as Markdown. */
export function codesDoc(): string {
  const out = ['| code | level | stage | meaning |', '|---|---|---|---|'];
  for (const [code, info] of Object.entries(CODES)) {
    out.push(`| \`${code}\` | ${info.level} | ${info.stage} | ${info.description.replace(/\|/g, '\\|')} |`);
  }
  return out.join('\n') + '\n';
}

/**
 * The README's compact list of the codes: one row per stage and level, in the order of
 * src/errors.ts; the meanings are in docs/error-codes.md.
 */
export function codesSummaryDoc(): string {
  const rows = new Map<string, string[]>();
  for (const [code, info] of Object.entries(CODES)) {
    const key = `| ${info.stage} | ${info.level} |`;
    const codes = rows.get(key) ?? [];
    codes.push(`\`${code}\``);
    rows.set(key, codes);
  }
  const out = ['| stage | level | codes |', '|---|---|---|'];
  for (const [key, codes] of rows) out.push(`${key} ${codes.join(', ')} |`);
  return out.join('\n') + '\n';
}
