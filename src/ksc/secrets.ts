/**
 * KSC connection secrets (user name and password of a KSC internal user) and redaction.
 *
 * Secrets never go into the SQLite state store. They live in
 * - `<stateDir>/ksc-secrets.json`, mode 0600 in a 0700 directory, written atomically
 *   (temp file created 0600, then rename), keyed by connection id; or
 * - a read-only credential file provided by the service manager: systemd
 *   `LoadCredential=ksc-secrets:/etc/cefd/ksc-secrets.json` makes it
 *   `$CREDENTIALS_DIRECTORY/ksc-secrets`. Keys there are connection ids or `tenant/name`.
 *   Entries of the credential file win over the state-dir file.
 *
 * Every password loaded or set is registered with the redactor: `redact()` replaces it (and
 * its base64 form, as sent in the KSCBasic header) with `[REDACTED]` in any text, and
 * `redactDeep()` also blanks values under secret-looking keys. Errors, logs and API views
 * of this module pass through them.
 */
import { chmodSync, closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, statSync, writeSync, unlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';

export interface KscCredentials {
  /** KSC user name (an internal user for KUMA-style integrations). */
  user: string;
  password: string;
  /** Windows domain for a domain account; empty for an internal user. */
  domain?: string;
  /** `internal="1"` in KSCBasic (default true, as KUMA uses an internal user). */
  internal?: boolean;
}

export const REDACTED = '[REDACTED]';

// ---------------------------------------------------------------------------------------
// Redaction

const known = new Set<string>();
let sorted: string[] = [];

/** Remembers a secret string so `redact()` hides it everywhere. Strings shorter than 3 chars are ignored. */
export function registerSecret(s: string | undefined | null): void {
  if (typeof s !== 'string' || s.length < 3 || known.has(s)) return;
  known.add(s);
  sorted = [...known].sort((a, b) => b.length - a.length);
}

/** Registers a password and the forms it takes on the wire (base64 in KSCBasic). */
export function registerPassword(p: string): void {
  registerSecret(p);
  registerSecret(Buffer.from(p, 'utf8').toString('base64'));
  registerSecret(encodeURIComponent(p));
  registerSecret(JSON.stringify(p).slice(1, -1));
}

/** Replaces every registered secret in `text` with `[REDACTED]`. */
export function redact(text: string): string {
  if (sorted.length === 0 || typeof text !== 'string') return text;
  let out = text;
  for (const s of sorted) if (out.includes(s)) out = out.split(s).join(REDACTED);
  return out;
}

const SECRET_KEY = /^(pass(word)?|pwd|secret|token|authorization|cookie|x-ksc-session|session|credentials?)$/i;

/** Deep copy of `v` with registered secrets redacted in strings and secret-named keys blanked. */
export function redactDeep<T>(v: T): T {
  return walk(v, 0) as T;
}

function walk(v: unknown, depth: number): unknown {
  if (typeof v === 'string') return redact(v);
  if (v === null || typeof v !== 'object' || depth > 20) return v;
  if (v instanceof Error) {
    const o: Record<string, unknown> = { name: v.name, message: redact(v.message) };
    const code = (v as { code?: unknown }).code;
    if (code !== undefined) o['code'] = code;
    return o;
  }
  if (Array.isArray(v)) return v.map((x) => walk(x, depth + 1));
  if (Buffer.isBuffer(v) || v instanceof Date) return v;
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
    out[k] = SECRET_KEY.test(k) && x !== undefined && x !== null && x !== '' ? REDACTED : walk(x, depth + 1);
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Logging

type LogFn = (obj: Record<string, unknown>, msg?: string) => void;
/** The subset of a pino logger the KSC code uses. */
export interface KscLogger {
  debug: LogFn;
  info: LogFn;
  warn: LogFn;
  error: LogFn;
}

const noop: LogFn = () => {};
export const silentLogger: KscLogger = { debug: noop, info: noop, warn: noop, error: noop };

/** Wraps a logger so every field and message passes through `redactDeep`/`redact`. */
export function redactingLogger(l: KscLogger): KscLogger {
  const wrap =
    (f: LogFn): LogFn =>
    (obj, msg) =>
      f.call(l, redactDeep(obj), msg === undefined ? undefined : redact(msg));
  return { debug: wrap(l.debug), info: wrap(l.info), warn: wrap(l.warn), error: wrap(l.error) };
}

// ---------------------------------------------------------------------------------------
// Stores

/** What a lookup knows about the connection: its id, its `tenant/name` and its server (`host:port`, normalized). */
export interface SecretRef {
  id: string;
  tenant?: string;
  name?: string;
  url?: string;
}

export interface SecretStore {
  get(ref: SecretRef): KscCredentials | undefined;
  /** Where the secret of `ref` comes from, without reading it out. */
  source(ref: SecretRef): 'file' | 'credential' | undefined;
  set(connectionId: string, c: KscCredentials): void;
  delete(connectionId: string): void;
}

function checkCredentials(c: unknown, where: string): KscCredentials {
  const o = c as Partial<KscCredentials> | null;
  if (o === null || typeof o !== 'object' || typeof o.user !== 'string' || typeof o.password !== 'string' || o.user.length === 0) {
    throw new Error(`${where}: an entry needs "user" and "password" strings`);
  }
  const out: KscCredentials = { user: o.user, password: o.password };
  if (typeof o.domain === 'string' && o.domain !== '') out.domain = o.domain;
  if (typeof o.internal === 'boolean') out.internal = o.internal;
  registerPassword(out.password);
  return out;
}

function parseSecretsJson(text: string, where: string): Map<string, KscCredentials> {
  const m = new Map<string, KscCredentials>();
  for (const [k, v] of secretsEntries(text, where)) m.set(k, checkCredentials(v, `${where} entry "${k}"`));
  return m;
}

function secretsEntries(text: string, where: string): [string, unknown][] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    // Never echo the content: it holds passwords.
    throw new Error(`${where} is not valid JSON`);
  }
  const root = doc as { connections?: unknown } | null;
  const entries = root !== null && typeof root === 'object' && root.connections !== undefined ? root.connections : doc;
  if (entries === null || typeof entries !== 'object' || Array.isArray(entries)) throw new Error(`${where}: expected an object of connection entries`);
  return Object.entries(entries as Record<string, unknown>);
}

/**
 * The writable store: one JSON file, mode 0600. A file found with group or other permission
 * bits is tightened to 0600 (and `onWarn` is told).
 */
export class FileSecretStore implements SecretStore {
  private entries: Map<string, KscCredentials>;
  /** Identity of the file last read (inode, size, mtime): another process (the CLI next to a running daemon) may rewrite it. */
  private stamp = '';
  constructor(readonly path: string, private readonly onWarn: (msg: string) => void = () => {}) {
    this.entries = this.load();
  }

  private fileStamp(): string {
    try {
      const st = statSync(this.path);
      return `${st.ino}:${st.size}:${st.mtimeMs}`;
    } catch {
      return '';
    }
  }

  private load(): Map<string, KscCredentials> {
    this.stamp = this.fileStamp();
    if (!existsSync(this.path)) return new Map();
    const st = statSync(this.path);
    if ((st.mode & 0o077) !== 0) {
      chmodSync(this.path, 0o600);
      this.onWarn(`secrets file ${this.path} had mode ${(st.mode & 0o777).toString(8)}; changed to 600`);
    }
    return parseSecretsJson(readFileSync(this.path, 'utf8'), `secrets file ${this.path}`);
  }

  /** Re-reads the file when it changed on disk (a broken file keeps the entries already known). */
  private fresh(): Map<string, KscCredentials> {
    if (this.fileStamp() !== this.stamp) {
      try {
        this.entries = this.load();
      } catch (e) {
        this.onWarn(`cannot re-read the secrets file; keeping the secrets loaded before: ${(e as Error).message}`);
      }
    }
    return this.entries;
  }

  get(ref: SecretRef): KscCredentials | undefined {
    const c = this.fresh().get(ref.id);
    return c === undefined ? undefined : { ...c };
  }
  source(ref: SecretRef): 'file' | undefined {
    return this.fresh().has(ref.id) ? 'file' : undefined;
  }
  set(connectionId: string, c: KscCredentials): void {
    this.fresh().set(connectionId, checkCredentials(c, 'secret'));
    this.save();
  }
  delete(connectionId: string): void {
    if (this.fresh().delete(connectionId)) this.save();
  }

  private save(): void {
    const dir = dirname(this.path);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const tmp = join(dir, `.ksc-secrets.${process.pid}.${Date.now()}.tmp`);
    const body = JSON.stringify({ version: 1, connections: Object.fromEntries(this.entries) }, null, 2) + '\n';
    const fd = openSync(tmp, 'wx', 0o600);
    try {
      writeSync(fd, body);
      fsyncSync(fd);
    } catch (e) {
      closeSync(fd);
      unlinkSync(tmp);
      throw e;
    }
    closeSync(fd);
    chmodSync(tmp, 0o600); // umask cannot widen it, but be explicit
    renameSync(tmp, this.path);
    this.stamp = this.fileStamp();
  }
}

/**
 * A read-only credential file (systemd `LoadCredential`), keyed by connection id or
 * `tenant/name`. An entry may name its server (`"url": "ksc.corp.example:13299"`): it is then
 * the secret of a connection with that server only, whatever the admin API does to the
 * connection's name or address (docs/ksc-integration.md#secrets).
 */
export class CredentialFileSecrets implements SecretStore {
  private readonly entries = new Map<string, { cred: KscCredentials; url?: string }>();
  constructor(readonly path: string, normalizeUrl: (url: string) => string = (u) => u.trim().toLowerCase()) {
    const where = `credential file ${path}`;
    for (const [k, v] of secretsEntries(readFileSync(path, 'utf8'), where)) {
      const cred = checkCredentials(v, `${where} entry "${k}"`);
      const url = (v as { url?: unknown }).url;
      if (url === undefined) {
        this.entries.set(k, { cred });
        continue;
      }
      let norm: string;
      try {
        if (typeof url !== 'string') throw new Error('not a string');
        norm = normalizeUrl(url);
      } catch (e) {
        throw new Error(`${where} entry "${k}": "url" must be the connection's host[:port] (${(e as Error).message})`);
      }
      this.entries.set(k, { cred, url: norm });
    }
  }
  private entry(ref: SecretRef): { cred: KscCredentials; url?: string } | undefined {
    const e = this.entries.get(ref.id) ?? (ref.tenant !== undefined && ref.name !== undefined ? this.entries.get(`${ref.tenant}/${ref.name}`) : undefined);
    // Bound to another server: not this connection's secret.
    if (e !== undefined && e.url !== undefined && e.url !== ref.url) return undefined;
    return e;
  }
  get(ref: SecretRef): KscCredentials | undefined {
    const e = this.entry(ref);
    return e === undefined ? undefined : { ...e.cred };
  }
  source(ref: SecretRef): 'credential' | undefined {
    return this.entry(ref) !== undefined ? 'credential' : undefined;
  }
  set(): void {
    throw new Error(`the credential file ${this.path} is read-only: change it where the service manager takes it from`);
  }
  delete(): void {
    /* read-only: nothing to delete */
  }
}

/** Credential file first, then the state-dir file; writes go to the state-dir file. */
class LayeredSecretStore implements SecretStore {
  constructor(private readonly ro: CredentialFileSecrets, private readonly rw: FileSecretStore) {}
  get(ref: SecretRef): KscCredentials | undefined {
    return this.ro.get(ref) ?? this.rw.get(ref);
  }
  source(ref: SecretRef): 'file' | 'credential' | undefined {
    return this.ro.source(ref) ?? this.rw.source(ref);
  }
  set(id: string, c: KscCredentials): void {
    this.rw.set(id, c);
  }
  delete(id: string): void {
    this.rw.delete(id);
  }
}

export interface SecretStoreOptions {
  stateDir: string;
  /** A read-only credential file; default `$CREDENTIALS_DIRECTORY/ksc-secrets` when that exists. */
  credentialsFile?: string;
  env?: NodeJS.ProcessEnv;
  onWarn?: (msg: string) => void;
  /** How a credential file entry's `url` is normalized (as connection URLs are stored). */
  normalizeUrl?: (url: string) => string;
}

export const SECRETS_FILE = 'ksc-secrets.json';

export function openSecretStore(o: SecretStoreOptions): SecretStore {
  const rw = new FileSecretStore(join(o.stateDir, SECRETS_FILE), o.onWarn);
  let credFile = o.credentialsFile;
  const env = o.env ?? process.env;
  if (credFile === undefined && env['CREDENTIALS_DIRECTORY'] !== undefined) {
    const p = join(env['CREDENTIALS_DIRECTORY'], 'ksc-secrets');
    if (existsSync(p)) credFile = p;
  }
  return credFile === undefined ? rw : new LayeredSecretStore(new CredentialFileSecrets(credFile, o.normalizeUrl), rw);
}
