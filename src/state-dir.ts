/**
 * Permissions of the state directory. It holds the KSC store (asset inventory, connection
 * URLs, certificate pins, task runs), the KSC secrets file and the disk buffers (events):
 * nothing another local user should read. Whoever creates it (daemon or `cefd ksc`), the
 * folder is 0700 and every file in it 0600; at start the daemon checks an existing tree and
 * tightens what is wider, with one warning per path it changed.
 *
 * Files of `file` outputs (and the dead-letter file) that an operator put under state_dir
 * keep the `mode` configured for them (their rotated siblings too): they are exempt.
 */
import { chmodSync, closeSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, extname, join, resolve } from 'node:path';

export const STATE_DIR_MODE = 0o700;
export const STATE_FILE_MODE = 0o600;

export interface Tightened {
  path: string;
  from: number;
  to: number;
}

/** Creates `dir` 0700 (parents as the umask allows) when missing. */
export function makeStateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: STATE_DIR_MODE });
}

/**
 * Creates `file` empty with mode 0600 unless it exists, so a library that creates files
 * with the umask (SQLite: 0644, and its -wal/-shm files copy the main file's mode) cannot
 * make it world-readable.
 */
export function precreatePrivateFile(file: string): void {
  closeSync(openSync(file, 'a', STATE_FILE_MODE));
  const st = lstatSync(file);
  if (st.isFile() && (st.mode & 0o077) !== 0) chmodSync(file, st.mode & 0o700);
}

/**
 * Tightens `dir` (and every folder and file below it; symbolic links are not followed)
 * to 0700 / 0600 at most, except files matching `exempt` (output files). Returns what it
 * changed.
 */
export function tightenStateDir(dir: string, exemptFiles: readonly string[] = []): Tightened[] {
  const changed: Tightened[] = [];
  // Output `x/events.ndjson` rotates to `x/events-<time>.ndjson`: exempt by folder and stem.
  const exempt = exemptFiles.map((f) => {
    const abs = resolve(f);
    return { dir: dirname(abs), stem: basename(abs, extname(abs)) };
  });
  const isExempt = (p: string): boolean => exempt.some((e) => dirname(p) === e.dir && basename(p).startsWith(e.stem));
  const walk = (p: string, depth: number): void => {
    let st;
    try {
      st = lstatSync(p);
    } catch {
      return;
    }
    if (st.isSymbolicLink()) return;
    const mode = st.mode & 0o777;
    if (st.isDirectory()) {
      if ((mode & 0o077) !== 0) {
        chmodSync(p, mode & 0o700);
        changed.push({ path: p, from: mode, to: mode & 0o700 });
      }
      if (depth > 8) return;
      let names: string[] = [];
      try {
        names = readdirSync(p);
      } catch {
        return;
      }
      for (const n of names) walk(join(p, n), depth + 1);
    } else if (st.isFile() && !isExempt(p) && (mode & 0o077) !== 0) {
      chmodSync(p, mode & 0o700);
      changed.push({ path: p, from: mode, to: mode & 0o700 });
    }
  };
  walk(resolve(dir), 0);
  return changed;
}

/**
 * `state_dir/cefd.pid`: the daemon that uses the state directory. Written at start and
 * removed at the stop, so `cefd buffers drop` can refuse to delete files under a running
 * daemon. Not a lock the daemon enforces on itself; a file left by a crash names a
 * process that is gone (or, rarely, a reused process id: the refusal says which).
 */
export const PID_FILE = 'cefd.pid';

export function writePidFile(dir: string): void {
  writeFileSync(join(dir, PID_FILE), `${process.pid}\n`, { mode: STATE_FILE_MODE });
}

/** Removes the pid file if it names this process (another daemon may have taken the folder since). */
export function removePidFile(dir: string): void {
  try {
    if (readFileSync(join(dir, PID_FILE), 'utf8').trim() === String(process.pid)) rmSync(join(dir, PID_FILE), { force: true });
  } catch {
    // none: nothing to remove
  }
}

/** The process id in `dir`'s pid file when that process is alive, else null. */
export function stateDirHolder(dir: string): number | null {
  let pid: number;
  try {
    pid = Number(readFileSync(join(dir, PID_FILE), 'utf8').trim());
  } catch {
    return null;
  }
  if (!Number.isSafeInteger(pid) || pid <= 0) return null;
  try {
    process.kill(pid, 0);
    return pid;
  } catch (e) {
    // EPERM: it exists but belongs to another user (a daemon running as its own user).
    return (e as NodeJS.ErrnoException).code === 'EPERM' ? pid : null;
  }
}
