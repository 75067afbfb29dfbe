/**
 * Names of rotated files and their cleanup, for the file output.
 *
 * `dir/events.ndjson` rotated at 2026-11-28 10:15:00 UTC becomes
 * `dir/events-20261128T101500Z.ndjson`; when that name is taken (two rotations within one
 * second) `dir/events-20261128T101500Z-1.ndjson`, `-2`, ... A path without an extension
 * (`dir/events`) rotates to `dir/events-20261128T101500Z`. Only names of exactly this
 * shape count as rotated files of `path`: cleanup never touches anything else.
 */
import { lstat, readdir, unlink } from 'node:fs/promises';
import { basename, dirname, extname, join } from 'node:path';

/** `20261128T101500Z` for a time in milliseconds since the epoch (UTC). */
export function rotationStamp(ms: number): string {
  const d = new Date(ms);
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return (
    `${p(d.getUTCFullYear(), 4)}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}` +
    `T${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}Z`
  );
}

function parts(path: string): { dir: string; stem: string; ext: string } {
  const name = basename(path);
  const ext = extname(name);
  return { dir: dirname(path), stem: name.slice(0, name.length - ext.length), ext };
}

/** The rotated name for `path` with this stamp and counter (0 = no counter). */
export function rotatedPath(path: string, stamp: string, counter = 0): string {
  const { dir, stem, ext } = parts(path);
  return join(dir, `${stem}-${stamp}${counter > 0 ? `-${counter}` : ''}${ext}`);
}

/** The first rotated name for `path` at `ms` that does not exist yet. */
export async function freeRotatedPath(path: string, ms: number): Promise<string> {
  const stamp = rotationStamp(ms);
  for (let counter = 0; ; counter++) {
    const candidate = rotatedPath(path, stamp, counter);
    try {
      await lstat(candidate);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return candidate;
      throw err;
    }
  }
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

export interface RotatedFile {
  path: string;
  stamp: string;
  counter: number;
}

/** Rotated files of `path`, oldest first (by stamp, then counter). */
export async function listRotated(path: string): Promise<RotatedFile[]> {
  const { dir, stem, ext } = parts(path);
  const re = new RegExp(`^${escapeRegExp(stem)}-(\\d{8}T\\d{6}Z)(?:-([1-9]\\d*))?${escapeRegExp(ext)}$`);
  const found: RotatedFile[] = [];
  for (const name of await readdir(dir)) {
    const m = re.exec(name);
    if (m === null) continue;
    found.push({ path: join(dir, name), stamp: m[1]!, counter: m[2] === undefined ? 0 : Number(m[2]) });
  }
  found.sort((a, b) => (a.stamp < b.stamp ? -1 : a.stamp > b.stamp ? 1 : a.counter - b.counter));
  return found;
}

/** Deletes the oldest rotated files of `path` beyond `keep` (0 = keep all). Returns the deleted paths. */
export async function pruneRotated(path: string, keep: number): Promise<string[]> {
  if (keep <= 0) return [];
  const all = await listRotated(path);
  const doomed = all.slice(0, Math.max(0, all.length - keep));
  const deleted: string[] = [];
  for (const f of doomed) {
    try {
      await unlink(f.path);
      deleted.push(f.path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  return deleted;
}
