/**
 * The module graph: no import cycles in src/ and normalizers/ (type imports included), the
 * admin JSON server knows nothing of KSC, and loading a config loads neither SQLite, nor
 * the pipeline, nor socket code, nor the KSC integration (a child process records every
 * module the import of dist/src/config/load.js resolves).
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, test } from 'vitest';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

function tsFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? tsFiles(p) : p.endsWith('.ts') ? [p] : [];
  });
}

/** Relative imports of every file (static, `export ... from`, and `import()`), as repo paths. */
function graph(): Map<string, string[]> {
  const g = new Map<string, string[]>();
  for (const f of [...tsFiles(join(ROOT, 'src')), ...tsFiles(join(ROOT, 'normalizers'))]) {
    const text = readFileSync(f, 'utf8');
    const deps: string[] = [];
    for (const m of text.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|^import\s+)['"](\.{1,2}\/[^'"]+)['"]/gm)) {
      deps.push(relative(ROOT, resolve(dirname(f), m[1]!.replace(/\.js$/, '.ts'))));
    }
    g.set(relative(ROOT, f), deps);
  }
  return g;
}

test('no import cycles in src/ and normalizers/', () => {
  const g = graph();
  expect(g.size).toBeGreaterThan(50);
  const cycles: string[] = [];
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (f: string) => {
    state.set(f, 'open');
    stack.push(f);
    for (const d of g.get(f) ?? []) {
      if (!g.has(d)) continue;
      if (state.get(d) === 'open') cycles.push([...stack.slice(stack.indexOf(d)), d].join(' > '));
      else if (state.get(d) === undefined) visit(d);
    }
    stack.pop();
    state.set(f, 'done');
  };
  for (const f of g.keys()) if (state.get(f) === undefined) visit(f);
  expect(cycles).toEqual([]);
});

test('the admin JSON server imports nothing from the KSC integration', () => {
  const g = graph();
  const admin = [...g].filter(([f]) => f.startsWith('src/admin/'));
  expect(admin.length).toBeGreaterThan(0);
  for (const [f, deps] of admin) expect(deps.filter((d) => d.startsWith('src/ksc/')), f).toEqual([]);
});

test('loading a config loads neither SQLite nor the pipeline, the sources, the outputs\' runner or the KSC integration', () => {
  // A resolve hook in the child reports every module URL the import resolves.
  const hooks = `
    let port;
    export function initialize(data) { port = data.port; }
    export async function resolve(spec, ctx, next) { const r = await next(spec, ctx); port.postMessage(r.url); return r; }`;
  const main = `
    import { register } from 'node:module';
    import { MessageChannel } from 'node:worker_threads';
    const { port1, port2 } = new MessageChannel();
    const seen = [];
    port1.on('message', (u) => seen.push(u));
    port1.unref();
    register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(hooks)}), { data: { port: port2 }, transferList: [port2] });
    const { loadConfigText } = await import(${JSON.stringify(join(ROOT, 'dist/src/config/load.js'))});
    const c = loadConfigText('ksc:\\n  enabled: true\\n  response_rules:\\n    - { name: r, type: ksctasks, tasks: [KUMA scan] }\\n', undefined, {});
    await new Promise((r) => setTimeout(r, 100));
    const { createRequire } = await import('node:module');
    const cjs = Object.keys(createRequire(import.meta.url).cache);
    console.log(JSON.stringify({ ok: c.ksc.enabled, modules: [...seen, ...cjs] }));
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', main], { cwd: ROOT, encoding: 'utf8' });
  expect(r.stderr.replace(/^.*ExperimentalWarning.*\n?|^\(Use `node --trace-warnings.*\n?/gm, '')).toBe('');
  const out = JSON.parse(r.stdout) as { ok: boolean; modules: string[] };
  expect(out.ok).toBe(true);
  const mods = out.modules.map((u) => u.replace(/^file:\/\//, ''));
  // The import is seen at all (the hook works): load.js and the KSC config section.
  expect(mods.some((m) => m.endsWith('dist/src/config/load.js'))).toBe(true);
  expect(mods.some((m) => m.endsWith('dist/src/ksc/config/check.js'))).toBe(true);
  const heavy = mods.filter((m) =>
    /better-sqlite3|\/dist\/src\/(pipeline|workers|buffer)\/|\/dist\/src\/sources\/(tcp\/stream|udp\/udp)\.js|\/dist\/src\/ksc\/(extension|store|index|client)\.js|\/dist\/src\/daemon\.js/.test(m),
  );
  expect(heavy).toEqual([]);
});
