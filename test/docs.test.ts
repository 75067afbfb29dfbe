/**
 * The generated tables in the docs stay in step with the code: the configuration options
 * (src/config/schema.ts) in docs/configuration.md, the error and warning codes
 * (src/errors.ts) in docs/error-codes.md, and the compact list of the codes in README.md.
 * Run with UPDATE_DOCS=1 to rewrite them. Also: the README stays a landing page, its links
 * and those between the docs pages lead to files (and headings) that exist, docs/README.md
 * indexes them all, every configuration example in the docs loads, and the metric names
 * the docs give are the ones the code exports (and the other way round).
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, test } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { codesDoc, codesSummaryDoc, configDoc } from '../src/config/doc.js';
import { ConfigError, loadConfigText } from '../src/config/load.js';
import { checkNormalizers } from '../src/config/normalizers.js';
import { SCHEMA } from '../src/config/schema.js';
import { CODES } from '../src/errors.js';
import { tempDir } from './helpers/temp.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const README = join(ROOT, 'README.md');
const CONFIGURATION = join(ROOT, 'docs/configuration.md');
const ERROR_CODES = join(ROOT, 'docs/error-codes.md');

function section(file: string, text: string, name: string): { start: number; end: number } {
  const begin = `<!-- BEGIN ${name} (generated: UPDATE_DOCS=1 npx vitest run test/docs.test.ts) -->\n`;
  const start = text.indexOf(begin);
  const end = text.indexOf(`<!-- END ${name} -->`);
  if (start === -1 || end === -1) throw new Error(`${file} has no ${name} section markers`);
  return { start: start + begin.length, end };
}

for (const [file, name, render] of [
  [CONFIGURATION, 'config', configDoc],
  [ERROR_CODES, 'codes', codesDoc],
  [README, 'codes-summary', codesSummaryDoc],
] as const) {
  test(`${file.slice(ROOT.length)}: the ${name} table matches the code`, () => {
    let text = readFileSync(file, 'utf8');
    const { start, end } = section(file, text, name);
    if (process.env['UPDATE_DOCS'] === '1') {
      text = text.slice(0, start) + render() + text.slice(end);
      writeFileSync(file, text);
    }
    const now = readFileSync(file, 'utf8');
    const after = section(file, now, name);
    expect(now.slice(after.start, after.end)).toBe(render());
  });
}

test('the option table gives the built-in listeners and outputs as their defaults', () => {
  // A list default is written out like any other (there is no "below" to point at).
  const row = (key: string) => configDoc().split('\n').find((l) => l.startsWith(`| \`${key}\` |`))!;
  expect(row('listeners')).toContain('`[{"name":"tcp","type":"tcp"},{"name":"udp","type":"udp"}]`');
  expect(row('outputs')).toContain('`[{"name":"events","type":"file","path":"./data/events.ndjson"}]`');
  expect(configDoc()).not.toContain('see below');
});

test('every code is in the README and in docs/error-codes.md', () => {
  for (const file of [README, ERROR_CODES]) {
    const text = readFileSync(file, 'utf8');
    for (const code of Object.keys(CODES)) expect(text, `${code} in ${file}`).toContain(`\`${code}\``);
  }
});

test('the README is a landing page of at most 300 lines', () => {
  expect(readFileSync(README, 'utf8').split('\n').length).toBeLessThanOrEqual(300);
});

/** The relative links of a Markdown file, outside code blocks (they may hold link-like text). */
function links(file: string): string[] {
  const text = readFileSync(file, 'utf8').replace(/```[\s\S]*?```/g, '');
  return [...text.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1]!).filter((l) => !/^[a-z]+:/.test(l) && !l.startsWith('#'));
}

const DOCS = readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md') && f !== 'README.md');

/** The anchors of a Markdown file's headings, as GitHub makes them (`## Stopping (SIGTERM)` → `stopping-sigterm`). */
function anchors(file: string): Set<string> {
  const text = readFileSync(file, 'utf8').replace(/```[\s\S]*?```/g, '');
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const m of text.matchAll(/^#{1,6}\s+(.*)$/gm)) {
    const slug = m[1]!.trim().toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/\s/g, '-');
    const n = seen.get(slug) ?? 0;
    seen.set(slug, n + 1);
    out.add(n === 0 ? slug : `${slug}-${n}`);
  }
  return out;
}

test('every relative link in README.md and docs/<topic>.md points at a file (and a heading) that exists', () => {
  // docs/README.md is left out: the index may name a page another branch is still writing;
  // the next test holds it to every page that exists.
  const broken: string[] = [];
  for (const file of [README, ...DOCS.map((f) => join(ROOT, 'docs', f))]) {
    const text = readFileSync(file, 'utf8').replace(/```[\s\S]*?```/g, '');
    const local = [...text.matchAll(/\]\((#[^)\s]+)\)/g)].map((m) => m[1]!);
    for (const link of [...links(file), ...local]) {
      const [path, anchor] = link.split('#') as [string, string | undefined];
      const target = path === '' ? file : resolve(dirname(file), path);
      if (!existsSync(target)) broken.push(`${file.slice(ROOT.length)}: ${link}`);
      else if (anchor !== undefined && target.endsWith('.md') && !anchors(target).has(anchor)) broken.push(`${file.slice(ROOT.length)}: ${link} (no such heading)`);
    }
  }
  expect(broken).toEqual([]);
});

test('docs/README.md lists every page of docs/', () => {
  const listed = new Set(links(join(ROOT, 'docs/README.md')).map((l) => l.split('#')[0]));
  expect(DOCS.filter((f) => !listed.has(f))).toEqual([]);
});

/** The ```yaml blocks of the README and the docs pages, with their file and line. */
function yamlExamples(): { where: string; text: string }[] {
  const out: { where: string; text: string }[] = [];
  for (const file of [README, ...DOCS.map((f) => join(ROOT, 'docs', f))]) {
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/^```yaml\n([\s\S]*?)^```/gm)) {
      out.push({ where: `${file.slice(ROOT.length)}:${text.slice(0, m.index).split('\n').length}`, text: m[1]! });
    }
  }
  return out;
}

test('every cefd configuration example in the docs loads as cefd validate loads it', async () => {
  const dir = tempDir('cefd-docs-');
  const fingerprint = Array(32).fill('AB').join(':');
  const failed: string[] = [];
  let checked = 0;
  for (const { where, text } of yamlExamples()) {
    // Other programs' files (a Prometheus scrape configuration) share no key with cefd's.
    const top = Object.keys((parseYaml(text) as Record<string, unknown> | null) ?? {});
    if (!top.some((k) => k in SCHEMA.fields)) continue;
    checked++;
    // Shortened fingerprints (`AB:CD:...:EF`) stand for the reader's own.
    const yaml = text.replace(/\b[0-9A-F]{2}(?::[0-9A-F]{2})*:\.\.\.(?::[0-9A-F]{2})+\b/g, fingerprint);
    try {
      const c = loadConfigText(yaml, join(dir, 'cefd.yaml'), {});
      await checkNormalizers(c, join(dir, 'cefd.yaml'));
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      // The files an example names (certificates, token files, a normalizer module) are the
      // reader's: that they are missing here is the only problem allowed.
      const real = e.problems.filter((p) => !/cannot read .*(ENOENT|no such file)|does not exist/.test(p.message));
      for (const p of real) failed.push(`${where}: ${p.line === undefined ? '' : `line ${p.line} of the example: `}${p.key}: ${p.message}`);
    }
  }
  expect(failed).toEqual([]);
  expect(checked).toBeGreaterThan(10);
});

/** The metric names the code defines: the names given to counter(), gauge() and prom-client's constructors in src/. */
function definedMetrics(): Set<string> {
  const out = new Set<string>();
  const walk = (d: string): void => {
    for (const f of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, f.name);
      if (f.isDirectory()) walk(p);
      else if (p.endsWith('.ts')) {
        for (const m of readFileSync(p, 'utf8').matchAll(/\b(?:counter|gauge|collectedCounter|collectedGauge)\(\s*(?:reg,\s*)?'(cefd_[a-z0-9_]+)'|\bname:\s*'(cefd_[a-z0-9_]+)'/g)) out.add(m[1] ?? m[2]!);
      }
    }
  };
  walk(join(ROOT, 'src'));
  return out;
}

test('every metric the code defines is in the docs, and every metric name the docs give exists', () => {
  const defined = definedMetrics();
  expect(defined.size).toBeGreaterThan(50);
  const docs = [README, ...DOCS.map((f) => join(ROOT, 'docs', f))].map((f) => [f.slice(ROOT.length), readFileSync(f, 'utf8')] as const);
  const all = docs.map(([, t]) => t).join('\n');
  expect([...defined].filter((m) => !all.includes(`\`${m}`))).toEqual([]);
  // A full metric name in the docs (not a prefix such as `cefd_ksc_*`) must be defined; the
  // other `cefd_` names they give (buckets, cookies) are string constants of the code.
  const literals = new Set<string>();
  const walk = (d: string): void => {
    for (const f of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, f.name);
      if (f.isDirectory()) walk(p);
      else if (p.endsWith('.ts')) for (const m of readFileSync(p, 'utf8').matchAll(/'(cefd_[a-z0-9_]+)'/g)) literals.add(m[1]!);
    }
  };
  walk(join(ROOT, 'src'));
  const unknown: string[] = [];
  for (const [file, text] of docs) {
    for (const m of text.matchAll(/\bcefd_[a-z][a-z0-9_]*[a-z0-9](?![a-z0-9_*])/g)) {
      if (!defined.has(m[0]) && !literals.has(m[0])) unknown.push(`${file}: ${m[0]}`);
    }
  }
  expect(unknown).toEqual([]);
});
