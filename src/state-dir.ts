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
import { spawnSync } from 'node:child_process';
import { chmodSync, closeSync, constants, fchownSync, fstatSync, fsyncSync, ftruncateSync, lchownSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeSync, type Stats } from 'node:fs';
import { close as fsClose, fsync as fsFsync, open as fsOpen } from 'node:fs';
import { basename, dirname, extname, join, resolve } from 'node:path';

export const STATE_DIR_MODE = 0o700;
export const STATE_FILE_MODE = 0o600;

export interface Tightened {
  path: string;
  from: number;
  to: number;
}

/**
 * fsyncs a folder, so that a file created, renamed or deleted in it stays so after a power
 * loss; a file system that cannot is left to its page cache (the change itself is done).
 */
export function fsyncDir(dir: string): void {
  try {
    const fd = openSync(dir, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    // only the change's durability across a power loss is in doubt
  }
}

/** fsyncDir without waiting: the folder is fsynced in the background (errors ignored, as there). */
export function fsyncDirLater(dir: string): void {
  fsOpen(dir, 'r', (e, fd) => {
    if (e !== null) return;
    fsFsync(fd, () => fsClose(fd, () => undefined));
  });
}

/** State folders a command has used (noteStateDirUse), for giveStateDirsToOwner. */
const usedStateDirs = new Set<string>();

/** A CLI command uses (and may create files in) state folder `dir`. */
export function noteStateDirUse(dir: string): void {
  usedStateDirs.add(resolve(dir));
}

/**
 * At the end of a CLI command run as root (`sudo cefd ksc connections add`, `sudo cefd
 * console set-password`, `sudo cefd buffers drop`): what it created in a state folder that
 * belongs to another user (the service's, `cefd`) goes to that user, or the daemon could not
 * open its own store, secrets or password file (EACCES at start, restarted forever). Files
 * and folders owned by root are given to the folder's owner; links are not followed.
 */
export function giveStateDirsToOwner(): void {
  if (process.getuid?.() !== 0) return;
  for (const dir of usedStateDirs) {
    let owner: { uid: number; gid: number };
    try {
      owner = statSync(dir);
    } catch {
      continue;
    }
    if (owner.uid === 0) continue;
    walkStateTree(dir, (p, st) => {
      try {
        if (st.uid === 0) lchownSync(p, owner.uid, owner.gid);
      } catch {
        // not ours to change: the daemon reports what it cannot open
      }
    });
  }
  usedStateDirs.clear();
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
  walkStateTree(dir, (p, st) => {
    const mode = st.mode & 0o777;
    if ((mode & 0o077) === 0 || !(st.isDirectory() || (st.isFile() && !isExempt(p)))) return;
    chmodSync(p, mode & 0o700);
    changed.push({ path: p, from: mode, to: mode & 0o700 });
  });
  return changed;
}

/**
 * Calls `visit` for `dir` and everything below it (8 levels at most), folders before their
 * contents; symbolic links are not followed nor visited, entries gone meanwhile skipped.
 */
function walkStateTree(dir: string, visit: (path: string, st: Stats) => void): void {
  const walk = (p: string, depth: number): void => {
    let st: Stats;
    try {
      st = lstatSync(p);
    } catch {
      return;
    }
    if (st.isSymbolicLink()) return;
    visit(p, st);
    if (!st.isDirectory() || depth > 8) return;
    let names: string[] = [];
    try {
      names = readdirSync(p);
    } catch {
      return;
    }
    for (const n of names) walk(join(p, n), depth + 1);
  };
  walk(resolve(dir), 0);
}

/**
 * `state_dir/cefd.lock`: one process at a time uses a state directory. Two daemons on one
 * folder would both append to the disk buffers, write the KSC store and advance the SQL
 * cursors: duplicates and damage. The daemon holds an exclusive flock(2) on this file from
 * start to stop (a reload keeps it), and `cefd buffers drop` holds it while it deletes.
 *
 * Why flock: the kernel releases it when the process ends, however it ends (kill -9, a
 * crash), so a file left behind never blocks a restart and a reused process id cannot fool
 * the check; and taking it is atomic, so of two daemons started at once exactly one wins.
 * A pid file with a liveness check has neither property (breaking a stale file races).
 * Node has no flock, so util-linux's flock(1) (busybox has one too) takes it on our open
 * file description, passed to it as fd 3: a flock belongs to the open file description,
 * not to the process that called it, so it stays held after flock(1) exits, until this
 * process closes the descriptor or ends (Node opens files close-on-exec, so no child of
 * cefd inherits it). No npm library was added: the ones with flock are native add-ons.
 *
 * The file is never deleted (deleting a locked file lets a second process lock a new file
 * under the same name); it holds the holder's pid, for the messages only.
 */
export const LOCK_FILE = 'cefd.lock';
/** Written by cefd before the lock file: deleted when found (the lock file replaces it). */
const OLD_PID_FILE = 'cefd.pid';

/** Another process holds `state_dir`'s lock (a stable code: `state_dir_locked`). */
export class StateDirLockedError extends Error {
  override readonly name = 'StateDirLockedError';
  readonly code = 'state_dir_locked';
  constructor(
    readonly dir: string,
    /** The holder's pid as its lock file says, when it says. */
    readonly holder: number | null,
  ) {
    super(`state_dir ${dir} is in use by another cefd (${holder !== null ? `pid ${holder}` : 'pid not known'}): one daemon per state directory (its lock: ${join(dir, LOCK_FILE)})`);
  }
}

/** The exclusive lock of a state directory, held until release() or the process ends. */
export class StateDirLock {
  private fd: number | null;
  constructor(
    readonly dir: string,
    fd: number,
  ) {
    this.fd = fd;
  }

  /** Empties the file (no pid of a stopped process stays in it) and unlocks. */
  release(): void {
    if (this.fd === null) return;
    const fd = this.fd;
    this.fd = null;
    try {
      ftruncateSync(fd, 0);
    } catch {
      // the lock goes with the close below all the same
    }
    closeSync(fd);
  }
}

/**
 * Takes `dir`'s lock (the folder must exist) and writes this process's pid in it. Throws
 * StateDirLockedError when another process holds it, an Error when it cannot be taken.
 */
export function lockStateDir(dir: string): StateDirLock {
  const file = join(dir, LOCK_FILE);
  const fd = openSync(file, constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW, STATE_FILE_MODE);
  try {
    // Made by root (`sudo cefd buffers drop` before the service's first start): the file
    // belongs to the folder's owner, or the daemon's user could not open it (exit 78).
    const owner = statSync(dir);
    const own = fstatSync(fd);
    if (own.uid !== owner.uid && process.getuid?.() === 0) fchownSync(fd, owner.uid, owner.gid);
    const flock = (cmd: string) => spawnSync(cmd, ['--nonblock', '--exclusive', '3'], { stdio: ['ignore', 'ignore', 'pipe', fd] });
    let r = flock('flock');
    // Not on PATH (a bare environment): where Debian's util-linux puts it.
    if ((r.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') r = flock('/usr/bin/flock');
    if (r.error !== undefined) throw new Error(`cannot lock ${file}: flock(1) (util-linux) cannot run: ${(r.error as NodeJS.ErrnoException).code ?? r.error.message}`);
    // flock(1) exits 1 when the lock is held and -n is given (util-linux and busybox).
    if (r.status === 1 && r.stderr.length === 0) throw new StateDirLockedError(dir, readHolder(file));
    if (r.status !== 0) throw new Error(`cannot lock ${file}: flock(1) exited ${r.status ?? r.signal}: ${r.stderr.toString().trim()}`);
    ftruncateSync(fd, 0);
    writeSync(fd, `${process.pid}\n`, 0);
  } catch (e) {
    closeSync(fd);
    throw e;
  }
  rmSync(join(dir, OLD_PID_FILE), { force: true });
  return new StateDirLock(dir, fd);
}

/** The pid in the lock file; a holder that has just taken the lock may write it a moment later. */
function readHolder(file: string): number | null {
  for (let tries = 0; tries < 20; tries++) {
    try {
      const text = readFileSync(file, 'utf8');
      const pid = Number(text.trim());
      if (text !== '') return Number.isSafeInteger(pid) && pid > 0 ? pid : null;
    } catch {
      return null;
    }
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
  }
  return null;
}
