/**
 * Pluggable normalizers: after CEF parsing, the first normalizer of a listener's chain
 * that accepts an event writes its typed object on the event under its own name
 * (`event.ksc`). Built-in normalizers live in `normalizers/<name>/`; a user module is
 * loaded by path. A normalizer that throws cannot break the pipeline: the error is caught,
 * counted, and the event passes on un-normalized with warning `normalizer_failed`.
 */
import { existsSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { CefdEvent } from '../event.js';
import type { Problem } from '../errors.js';
import { finishWarnings, pushWarning } from '../codecs/warning-cap.js';

export interface NormalizerWarning {
  /** A stable code; built-in normalizers use codes from src/errors.ts. */
  code: string;
  key?: string;
  message?: string;
}

export interface NormalizeOutput {
  /** The object written on the event under the normalizer's name. */
  data: Record<string, unknown>;
  /** Event type for metrics and routing (the ksc normalizer gives its category). */
  type: string;
  warnings?: NormalizerWarning[];
}

/**
 * A normalizer module's default export (or its `normalizer` export).
 *
 * - `accepts` is called for every event: keep it cheap (a field comparison).
 * - `normalize` must be pure and should never throw; it may return null to decline.
 */
export interface Normalizer {
  readonly name: string;
  /** The event field the object is written to, when not `name` (`ksc_sql` writes `ksc`). */
  readonly writes?: string;
  accepts(event: CefdEvent): boolean;
  normalize(event: CefdEvent): NormalizeOutput | null;
}

/** What happened to one event, for metrics. */
export type NormalizeOutcome =
  | { kind: 'none' }
  | { kind: 'normalized'; normalizer: string; type: string }
  | { kind: 'failed'; normalizer: string; error: unknown };

const NONE: NormalizeOutcome = { kind: 'none' };

/** Event fields a normalizer may not take as its name. */
export const RESERVED_NAMES = new Set([
  'id', 'timestamp', 'received', 'listener', 'peer', 'syslog', 'prefix', 'cef', 'message',
  'truncated', 'errors', 'warnings', 'rawBase64', 'raw', 'error', 'assets', 'sql',
]);

/** Runs the first accepting normalizer of `chain` on `event` (in place). Never throws. */
export function normalizeEvent(event: CefdEvent, chain: readonly Normalizer[]): NormalizeOutcome {
  for (let i = 0; i < chain.length; i++) {
    const n = chain[i]!;
    let out: NormalizeOutput | null;
    try {
      if (!n.accepts(event)) continue;
      out = n.normalize(event);
    } catch (error) {
      const w = { code: 'normalizer_failed' as const, key: n.name, message: `normalizer ${n.name} threw: ${errorText(error)}` };
      addOne(event, w);
      return { kind: 'failed', normalizer: n.name, error };
    }
    if (out === null || out === undefined) continue;
    if (typeof out !== 'object' || out.data === null || typeof out.data !== 'object') {
      const w = { code: 'normalizer_failed' as const, key: n.name, message: `normalizer ${n.name} returned no data object` };
      addOne(event, w);
      return { kind: 'failed', normalizer: n.name, error: new Error('returned no data object') };
    }
    event[n.writes ?? n.name] = out.data;
    if (Array.isArray(out.warnings) && out.warnings.length > 0) {
      // Into the event's bounded list (src/codecs/warning-cap.ts), never the normalizer's array.
      const list: Problem[] = (event.warnings ??= []);
      for (const w of out.warnings as Problem[]) pushWarning(list, w);
      finishWarnings(list);
    }
    return { kind: 'normalized', normalizer: n.name, type: typeof out.type === 'string' ? out.type : 'other' };
  }
  return NONE;
}

function addOne(event: CefdEvent, w: Problem): void {
  const list: Problem[] = (event.warnings ??= []);
  pushWarning(list, w);
  finishWarnings(list);
}

function errorText(e: unknown): string {
  const s = e instanceof Error ? e.message : String(e);
  return s.length > 200 ? s.slice(0, 200) + '…' : s;
}

/** Checks that a loaded module value is a usable normalizer; returns a reason when not. */
export function checkNormalizer(n: unknown): string | null {
  if (n === null || typeof n !== 'object') return 'the module does not export a normalizer object';
  const o = n as Partial<Normalizer>;
  if (typeof o.name !== 'string' || !/^[A-Za-z_][A-Za-z0-9_]{0,63}$/.test(o.name)) return 'normalizer.name must be an identifier (letters, digits, _)';
  if (RESERVED_NAMES.has(o.name)) return `normalizer.name "${o.name}" is an event field`;
  if (o.writes !== undefined && (typeof o.writes !== 'string' || !/^[A-Za-z_][A-Za-z0-9_]{0,63}$/.test(o.writes) || RESERVED_NAMES.has(o.writes))) {
    return 'normalizer.writes must be an identifier that is not an event field';
  }
  if (typeof o.accepts !== 'function') return 'normalizer.accepts must be a function';
  if (typeof o.normalize !== 'function') return 'normalizer.normalize must be a function';
  return null;
}

/** Folder holding the built-in normalizers (dist/normalizers when built, normalizers/ under vitest). */
function builtinDir(): string {
  const here = dirname(fileURLToPath(import.meta.url)); // .../src/pipeline
  return resolve(here, '..', '..', 'normalizers');
}

/** Names of the built-in normalizers. */
export const BUILTIN_NORMALIZERS = ['ksc', 'ksc_sql'] as const;

/**
 * Loads a normalizer: a built-in by name (`ksc`), or a user module by path (absolute, or
 * relative to `baseDir`, the config file's folder). Throws with a clear message on failure.
 */
/** A normalizer as the configuration names it: a module path if it has a `/` or ends in .js or .mjs, else a built-in's name. */
export function normalizerSpec(spec: string): { name: string } | { path: string } {
  return spec.includes('/') || spec.endsWith('.js') || spec.endsWith('.mjs') ? { path: spec } : { name: spec };
}

/** Modules already loaded, by spec and folder: a reload reuses them (a module is imported once). */
export type NormalizerCache = Map<string, Promise<Normalizer>>;

/** A chain that did not load: every failing entry, by its index in the chain. */
export class ChainLoadError extends Error {
  constructor(readonly failures: readonly { index: number; message: string }[]) {
    super(failures.map((f) => f.message).join('; '));
  }
}

/**
 * The normalizer chain a listener (or `cefd parse --normalizer`) names, in order: the one
 * loader the daemon, the decode workers, `cefd validate` and `cefd parse` share. Every
 * entry is tried; a ChainLoadError lists all that failed. `fileIsPath` (the command line):
 * a file that exists is a module path even without a `/` or an extension.
 */
export async function loadChain(specs: readonly string[], baseDir = process.cwd(), o: { cache?: NormalizerCache; fileIsPath?: boolean } = {}): Promise<Normalizer[]> {
  const chain: Normalizer[] = [];
  const failures: { index: number; message: string }[] = [];
  for (const [index, spec] of specs.entries()) {
    const which = o.fileIsPath === true && existsSync(spec) ? { path: spec } : normalizerSpec(spec);
    const key = 'path' in which ? `path:${baseDir}:${spec}` : `name:${spec}`;
    let p = o.cache?.get(key);
    if (p === undefined) {
      p = loadNormalizer(which, baseDir);
      if (o.cache !== undefined) {
        o.cache.set(key, p);
        p.catch(() => o.cache!.delete(key));
      }
    }
    try {
      chain.push(await p);
    } catch (e) {
      failures.push({ index, message: (e as Error).message });
    }
  }
  if (failures.length > 0) throw new ChainLoadError(failures);
  return chain;
}

export async function loadNormalizer(spec: { name?: string; path?: string }, baseDir = process.cwd()): Promise<Normalizer> {
  let url: string;
  let what: string;
  if (spec.path !== undefined) {
    const p = isAbsolute(spec.path) ? spec.path : resolve(baseDir, spec.path);
    if (!existsSync(p)) throw new Error(`normalizer module ${p} does not exist`);
    url = pathToFileURL(p).href;
    what = p;
  } else if (spec.name !== undefined) {
    if (!(BUILTIN_NORMALIZERS as readonly string[]).includes(spec.name)) {
      throw new Error(`unknown normalizer "${spec.name}" (built-in: ${BUILTIN_NORMALIZERS.join(', ')}; load your own with path:)`);
    }
    const dir = join(builtinDir(), spec.name);
    const file = existsSync(join(dir, 'index.js')) ? 'index.js' : 'index.ts';
    url = pathToFileURL(join(dir, file)).href;
    what = `built-in normalizer ${spec.name}`;
  } else {
    throw new Error('a normalizer needs a name or a path');
  }
  let mod: Record<string, unknown>;
  try {
    mod = (await import(url)) as Record<string, unknown>;
  } catch (e) {
    throw new Error(`cannot load ${what}: ${errorText(e)}`);
  }
  const n = (mod['default'] ?? mod['normalizer']) as unknown;
  const bad = checkNormalizer(n);
  if (bad !== null) throw new Error(`${what}: ${bad}`);
  const norm = n as Normalizer;
  if (spec.name !== undefined && spec.path === undefined && norm.name !== spec.name) {
    throw new Error(`${what} calls itself "${norm.name}"`);
  }
  return norm;
}
