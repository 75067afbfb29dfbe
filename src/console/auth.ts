/**
 * The console's sign-in: sessions (a random id in an HttpOnly, SameSite=Strict cookie, a
 * CSRF token per session that every change must send back in `X-CSRF-Token` or a form
 * field), and the console password (`cefd console set-password`): a scrypt hash in
 * `<state_dir>/console-password`, mode 0600. The admin bearer token also signs in.
 */
import { createHash, randomBytes, scrypt, scryptSync, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { IncomingMessage } from 'node:http';

export const SESSION_COOKIE = 'cefd_session';
export const LOGIN_COOKIE = 'cefd_login';
export const PASSWORD_FILE = 'console-password';

export interface Session {
  id: string;
  csrf: string;
  /** How the user signed in (for the audit log): `token` or `password`. */
  via: 'token' | 'password';
  /** A session signed in with the password: the password file it was checked against (passwordStamp). */
  stamp: string;
  /** A short reference for the audit log (not the id, which is the cookie). */
  ref: string;
  expiresMs: number;
}

const rnd = (): string => randomBytes(32).toString('base64url');

export function cookies(req: IncomingMessage): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of String(req.headers.cookie ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0) out.set(part.slice(0, i).trim(), part.slice(i + 1).trim());
  }
  return out;
}

export function sameText(a: string, b: string): boolean {
  const x = Buffer.from(a, 'utf8');
  const y = Buffer.from(b, 'utf8');
  return x.length === y.length && timingSafeEqual(x, y);
}

export class Sessions {
  private readonly map = new Map<string, Session>();
  /**
   * `passwordNow`: the password file as it is now (passwordStamp): a session signed in with
   * the password ends when the password is changed or removed (`cefd console set-password`).
   */
  constructor(
    private readonly ttlMs: number,
    private readonly passwordNow: () => string = () => '',
  ) {}

  create(via: Session['via'], stamp = ''): Session {
    this.sweep();
    const id = rnd();
    const s: Session = { id, csrf: rnd(), via, stamp, ref: createHash('sha256').update(id).digest('hex').slice(0, 8), expiresMs: Date.now() + this.ttlMs };
    this.map.set(s.id, s);
    return s;
  }

  /** The request's live session, if any. */
  of(req: IncomingMessage): Session | undefined {
    const id = cookies(req).get(SESSION_COOKIE);
    if (id === undefined) return undefined;
    const s = this.map.get(id);
    if (s === undefined) return undefined;
    if (!this.valid(s, this.passwordNow())) {
      this.map.delete(id);
      return undefined;
    }
    return s;
  }

  /** The password file's stamp for live(), read again at most once a second (live() runs per event a tail sends). */
  private recentStamp = '';
  private recentStampMs = -Infinity;
  private stampNow(): string {
    const now = Date.now();
    if (now - this.recentStampMs >= 1000) {
      this.recentStamp = this.passwordNow();
      this.recentStampMs = now;
    }
    return this.recentStamp;
  }

  private valid(s: Session, stamp: string): boolean {
    return Date.now() < s.expiresMs && (s.via !== 'password' || s.stamp === stamp);
  }

  end(s: Session): void {
    this.map.delete(s.id);
  }

  /** `s` is still signed in (not signed out, not expired, its password not changed more than a second ago). */
  live(s: Session): boolean {
    return this.map.get(s.id) === s && this.valid(s, s.via === 'password' ? this.stampNow() : '');
  }

  private sweep(): void {
    const now = Date.now();
    for (const [id, s] of this.map) if (now >= s.expiresMs) this.map.delete(id);
  }
}

export const newLoginNonce = rnd;

// -- the console password ----------------------------------------------------------------

interface PasswordRecord {
  scheme: 'scrypt';
  N: number;
  r: number;
  p: number;
  salt: string;
  hash: string;
}

const SCRYPT = { N: 16384, r: 8, p: 1 };

/** Writes the password's scrypt hash to `<stateDir>/console-password` (0600, replaced atomically). */
export function setConsolePassword(stateDir: string, password: string): string {
  if (password.length < 12) throw new Error('the console password needs at least 12 characters');
  const salt = randomBytes(16);
  const hash = scryptSync(password, salt, 32, SCRYPT);
  const rec: PasswordRecord = { scheme: 'scrypt', ...SCRYPT, salt: salt.toString('base64'), hash: hash.toString('base64') };
  const file = join(stateDir, PASSWORD_FILE);
  const tmp = `${file}.tmp`;
  writeFileSync(tmp, JSON.stringify(rec) + '\n', { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, file);
  return file;
}

/**
 * The password file's identity (device, inode, size, change time): what a password session
 * was signed in against; '' when there is none. `set-password` replaces the file (a new inode).
 */
export function passwordStamp(stateDir: string): string {
  try {
    const st = statSync(join(stateDir, PASSWORD_FILE), { bigint: true });
    return `${st.dev}:${st.ino}:${st.size}:${st.ctimeNs}`;
  } catch {
    return '';
  }
}

/** Whether a console password is set (`cefd console set-password`). */
export function hasConsolePassword(stateDir: string): boolean {
  return existsSync(join(stateDir, PASSWORD_FILE));
}

/** The tail of the password checks: one runs at a time (checkConsolePassword). */
let checking: Promise<unknown> = Promise.resolve();

/**
 * Whether `password` matches the stored hash (false when no password is set). scrypt runs
 * on the libuv thread pool (about 36 ms and 16 MiB each), never on the event loop, so a
 * burst of sign-ins does not stall ingestion; and one check at a time, so that it takes one
 * of the pool's threads (4 by default, shared with file I/O and DNS), never all of them.
 * Callers count the attempt (SigninLimiter) before awaiting this.
 */
export function checkConsolePassword(stateDir: string, password: string): Promise<string | false> {
  const run = checking.then(() => verifyPassword(stateDir, password));
  checking = run.catch(() => undefined);
  return run;
}

/** The stamp of the password file (passwordStamp) when `password` matches it, else false. */
async function verifyPassword(stateDir: string, password: string): Promise<string | false> {
  const file = join(stateDir, PASSWORD_FILE);
  // Taken before the file is read: were it replaced in between, the session's stamp is the
  // old file's, and the session ends at its first request (never the other way round).
  const stamp = passwordStamp(stateDir);
  if (stamp === '') return false;
  try {
    const rec = JSON.parse(readFileSync(file, 'utf8')) as PasswordRecord;
    if (rec.scheme !== 'scrypt') return false;
    const want = Buffer.from(rec.hash, 'base64');
    const got = await scryptAsync(password, Buffer.from(rec.salt, 'base64'), want.length, { N: rec.N, r: rec.r, p: rec.p, maxmem: 64 * 1024 * 1024 });
    return got.length === want.length && timingSafeEqual(want, got) ? stamp : false;
  } catch {
    return false;
  }
}

function scryptAsync(password: string, salt: Buffer, keylen: number, o: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => scrypt(password, salt, keylen, o, (err, key) => (err !== null ? reject(err) : resolve(key))));
}
