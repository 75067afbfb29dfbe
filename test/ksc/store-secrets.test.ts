import { afterEach, expect, test } from 'vitest';
import { chmodSync, existsSync, readFileSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { FileSecretStore, openSecretStore, redact, redactDeep, redactingLogger, registerPassword, REDACTED, SECRETS_FILE } from '../../src/ksc/secrets.js';
import { KscIntegration, normalizeConnectionUrl } from '../../src/ksc/index.js';
import { KscInputError } from '../../src/ksc/errors.js';
import { memoryLogger, tempDir } from '../helpers/ksc-emulator/testkit.js';

const cleanups: (() => void)[] = [];
afterEach(() => {
  while (cleanups.length > 0) cleanups.pop()!();
});
function dir(): string {
  const t = tempDir();
  cleanups.push(t.cleanup);
  return t.dir;
}

test('the secrets file is written 0600 in a 0700 directory, atomically, and read back', () => {
  const d = join(dir(), 'state');
  const s = new FileSecretStore(join(d, SECRETS_FILE));
  s.set('c1', { user: 'kuma', password: 'file-secret-pass-1' });
  const st = statSync(join(d, SECRETS_FILE));
  expect(st.mode & 0o777).toBe(0o600);
  expect(statSync(d).mode & 0o777).toBe(0o700);
  const again = new FileSecretStore(join(d, SECRETS_FILE));
  expect(again.get({ id: 'c1' })).toEqual({ user: 'kuma', password: 'file-secret-pass-1' });
  again.delete('c1');
  expect(new FileSecretStore(join(d, SECRETS_FILE)).get({ id: 'c1' })).toBeUndefined();
});

test('a secrets file readable by others is tightened to 0600, with a warning', () => {
  const d = dir();
  const p = join(d, SECRETS_FILE);
  writeFileSync(p, JSON.stringify({ version: 1, connections: { c1: { user: 'u', password: 'loose-perm-pass' } } }));
  chmodSync(p, 0o644);
  const warnings: string[] = [];
  const s = new FileSecretStore(p, (m) => warnings.push(m));
  expect(statSync(p).mode & 0o777).toBe(0o600);
  expect(warnings[0]).toMatch(/had mode 644; changed to 600/);
  expect(s.get({ id: 'c1' })?.password).toBe('loose-perm-pass');
});

test('a broken secrets file is reported without echoing its content', () => {
  const d = dir();
  const p = join(d, SECRETS_FILE);
  writeFileSync(p, '{"c1": {"user": "u", "password": "broken-json-pass"', { mode: 0o600 });
  let msg = '';
  try {
    new FileSecretStore(p);
  } catch (e) {
    msg = (e as Error).message;
  }
  expect(msg).toMatch(/is not valid JSON/);
  expect(msg).not.toContain('broken-json-pass');
});

test('a systemd credential file ($CREDENTIALS_DIRECTORY/ksc-secrets) wins, keyed by id or tenant/name, read-only', () => {
  const d = dir();
  const credDir = join(d, 'creds');
  mkdirSync(credDir);
  writeFileSync(join(credDir, 'ksc-secrets'), JSON.stringify({ 'default/main': { user: 'kuma', password: 'cred-file-pass' }, 'id-2': { user: 'x', password: 'cred-file-pass-2' } }));
  const s = openSecretStore({ stateDir: d, env: { CREDENTIALS_DIRECTORY: credDir } });
  expect(s.get({ id: 'id-1', tenant: 'default', name: 'main' })?.password).toBe('cred-file-pass');
  expect(s.source({ id: 'id-1', tenant: 'default', name: 'main' })).toBe('credential');
  expect(s.get({ id: 'id-2' })?.user).toBe('x');
  s.set('id-3', { user: 'y', password: 'state-dir-pass' });
  expect(s.source({ id: 'id-3' })).toBe('file');
  expect(existsSync(join(d, SECRETS_FILE))).toBe(true);
  // Without the variable, only the state-dir file.
  expect(openSecretStore({ stateDir: d, env: {} }).get({ id: 'id-1', tenant: 'default', name: 'main' })).toBeUndefined();
});

test('a credential file entry with "url" is the secret of a connection at that server only (written as connections are: https://, default port)', () => {
  const d = dir();
  const file = join(d, 'creds.json');
  writeFileSync(file, JSON.stringify({ 'default/main': { user: 'kuma', password: 'bound-cred-pass', url: 'https://KSC.corp.example/' }, 'id-9': { user: 'k', password: 'bound-by-id', url: '10.0.0.5:1234' } }));
  const s = openSecretStore({ stateDir: d, credentialsFile: file, env: {}, normalizeUrl: normalizeConnectionUrl });
  const main = { id: 'id-1', tenant: 'default', name: 'main' };
  expect(s.get({ ...main, url: 'ksc.corp.example:13299' })?.password).toBe('bound-cred-pass');
  expect(s.get({ ...main, url: 'ksc.corp.example:13300' })).toBeUndefined();
  expect(s.source({ ...main, url: 'evil.example:13299' })).toBeUndefined();
  expect(s.get({ ...main })).toBeUndefined();
  expect(s.get({ id: 'id-9', url: '10.0.0.5:1234' })?.password).toBe('bound-by-id');
  expect(s.get({ id: 'id-9', url: '10.0.0.6:1234' })).toBeUndefined();
  // Without "url": any server, as before.
  writeFileSync(file, JSON.stringify({ 'default/main': { user: 'kuma', password: 'bound-cred-pass' } }));
  const u = openSecretStore({ stateDir: d, credentialsFile: file, env: {}, normalizeUrl: normalizeConnectionUrl });
  expect(u.source({ ...main, url: 'evil.example:13299' })).toBe('credential');
  // A "url" that is not host[:port]: the file does not load, and says which entry (not its password).
  for (const url of ['http://x/y', 42]) {
    writeFileSync(file, JSON.stringify({ 'default/main': { user: 'kuma', password: 'bound-cred-pass', url } }));
    expect(() => openSecretStore({ stateDir: d, credentialsFile: file, env: {}, normalizeUrl: normalizeConnectionUrl })).toThrow(/entry "default\/main": "url" must be the connection's host\[:port\]/);
  }
});

test('redact() hides registered passwords and their base64 form; redactDeep blanks secret keys', () => {
  registerPassword('Redact-Me-Pass#1');
  const b64 = Buffer.from('Redact-Me-Pass#1').toString('base64');
  expect(redact(`x Redact-Me-Pass#1 y ${b64}`)).toBe(`x ${REDACTED} y ${REDACTED}`);
  const o = redactDeep({ a: 'Redact-Me-Pass#1', password: 'anything', nested: [{ token: 't', ok: 1 }], err: new Error('bad Redact-Me-Pass#1') });
  expect(o).toEqual({ a: REDACTED, password: REDACTED, nested: [{ token: REDACTED, ok: 1 }], err: { name: 'Error', message: `bad ${REDACTED}` } });
  const log = memoryLogger();
  redactingLogger(log).warn({ detail: 'has Redact-Me-Pass#1' }, 'msg Redact-Me-Pass#1');
  expect(log.lines[0]).not.toContain('Redact-Me-Pass#1');
  expect(log.lines[0]).toContain(REDACTED);
});

test('connection views never carry the secret; a connection needs one', () => {
  const d = dir();
  const k = KscIntegration.open({ stateDir: d, env: {} });
  cleanups.push(() => void k.close());
  expect(() => k.addConnection({ name: 'nosecret', url: 'ksc' })).toThrow(KscInputError);
  expect(() => k.addConnection({ name: 'badsecret', url: 'ksc', secret: { user: '', password: 'x' } })).toThrow(/user name/);
  expect(k.listConnections()).toEqual([]);
  const v = k.addConnection({ name: 'main', url: 'ksc', secret: { user: 'kuma-user', password: 'View-Secret-Pass-9' } });
  expect(v.secret).toEqual({ set: true, source: 'file' });
  const text = JSON.stringify([v, k.listConnections(), k.getConnection('main')]);
  expect(text).not.toContain('View-Secret-Pass-9');
  expect(text).not.toContain('kuma-user');
  // Not in the SQLite files either.
  for (const f of ['ksc.sqlite', 'ksc.sqlite-wal']) {
    const p = join(d, f);
    if (existsSync(p)) expect(readFileSync(p).includes('View-Secret-Pass-9')).toBe(false);
  }
  expect(readFileSync(join(d, SECRETS_FILE), 'utf8')).toContain('View-Secret-Pass-9');
  k.editConnection('main', { secret: { user: 'kuma-user', password: 'New-Secret-Pass-10' } });
  expect(readFileSync(join(d, SECRETS_FILE), 'utf8')).toContain('New-Secret-Pass-10');
  k.deleteConnection('main');
  expect(readFileSync(join(d, SECRETS_FILE), 'utf8')).not.toContain('New-Secret-Pass-10');
});

test('two processes on one secrets file (a daemon and the CLI): each sees the other\'s changes', () => {
  const d = join(dir(), 'state');
  const file = join(d, SECRETS_FILE);
  const daemon = new FileSecretStore(file);
  const cli = new FileSecretStore(file);
  expect(daemon.get({ id: 'c1' })).toBeUndefined();
  cli.set('c1', { user: 'kuma', password: 'shared-secret-pass-1' });
  expect(daemon.get({ id: 'c1' })).toEqual({ user: 'kuma', password: 'shared-secret-pass-1' });
  expect(daemon.source({ id: 'c1' })).toBe('file');
  // A write by the daemon keeps the CLI's entry (it re-reads before writing).
  daemon.set('c2', { user: 'kuma', password: 'shared-secret-pass-2' });
  expect(Object.keys((JSON.parse(readFileSync(file, 'utf8')) as { connections: object }).connections).sort()).toEqual(['c1', 'c2']);
  cli.delete('c1');
  expect(daemon.get({ id: 'c1' })).toBeUndefined();
  expect(daemon.get({ id: 'c2' })).toEqual({ user: 'kuma', password: 'shared-secret-pass-2' });
  // A broken file keeps what was known, with a warning that does not quote the file.
  const warnings: string[] = [];
  const w = new FileSecretStore(file, (m) => warnings.push(m));
  writeFileSync(file, '{"c2": {"user": "kuma", "password": "shared-secret-pass-2"', { mode: 0o600 });
  expect(w.get({ id: 'c2' })).toEqual({ user: 'kuma', password: 'shared-secret-pass-2' });
  expect(warnings).toHaveLength(1);
  expect(warnings[0]).toMatch(/cannot re-read the secrets file; keeping the secrets loaded before: secrets file .* is not valid JSON/);
  expect(warnings[0]).not.toContain('shared-secret');
});
