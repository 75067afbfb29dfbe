/**
 * The TLS listener, black-box: `cefd validate` / `cefd run` as child processes, real TLS
 * clients, counts from /metrics and the events file. Pinned certificates still have to be
 * valid and strong; certificate/key problems are configuration errors (78) naming the
 * listener and the file, also on SIGHUP (the old pair stays, the reload counts as failed);
 * a refused client certificate is an error for the client also under TLS 1.3; TLS 1.2
 * offers forward-secret AEAD suites only; client_auth settings that check nothing or refuse
 * everyone are refused; logs carry reason codes and fingerprints, not OpenSSL's text.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import tls from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { readNdjson, scrape, tempDir, waitFor } from '../helpers/daemon.js';
import { freePort, runCefd, runCli, type ChildDaemon } from '../helpers/child.js';
import { makePki, type Pki } from '../helpers/pki.js';

let pki: Pki;
let certs: string;
const dirs: string[] = [];
const children: ChildDaemon[] = [];

function ossl(args: string[]): void {
  execFileSync('openssl', args, { cwd: certs, stdio: 'pipe' });
}

beforeAll(() => {
  pki = makePki();
  certs = tempDir('cefd-tls-');
  // An RSA server certificate (the cipher test offers RSA key exchange suites against it).
  ossl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'rsa-server.key', '-out', 'rsa-server.crt', '-days', '30', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1']);
  // An RSA-1024 self-signed client certificate (what a pin must not make acceptable).
  ossl(['req', '-x509', '-newkey', 'rsa:1024', '-nodes', '-keyout', 'weak.key', '-out', 'weak.crt', '-days', '30', '-subj', '/CN=weak-client']);
  // The server key encrypted with a passphrase.
  ossl(['pkey', '-in', pki.serverKey, '-aes256', '-passout', 'pass:right-one', '-out', 'server-enc.key']);
});
afterAll(() => rmSync(certs, { recursive: true, force: true }));
afterEach(async () => {
  for (const c of children.splice(0)) {
    c.proc.kill('SIGKILL');
    await c.exit;
  }
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function dir(): string {
  const d = tempDir();
  dirs.push(d);
  return d;
}


function yaml(port: number, metrics: number, tlsOpts: string): string {
  return `state_dir: ./state
listeners:
  - name: ksc-tls
    type: tls
    host: 127.0.0.1
    port: ${port}
    tls: { ${tlsOpts} }
outputs: [ { name: out, type: file, path: ./events.ndjson } ]
dead_letter: { path: ./dead.ndjson }
metrics: { host: 127.0.0.1, port: ${metrics} }
`;
}

const fp = (pem: string): string => new X509Certificate(pem).fingerprint256;

interface Outcome {
  /** The client saw its handshake finish. */
  connected: boolean;
  /** The error the client saw (code), or null for a clean close. */
  error: string | null;
}

/** A client that writes one event after its handshake and waits for the server to act. */
function client(port: number, o: tls.ConnectionOptions): Promise<Outcome> {
  return new Promise((resolve) => {
    const out: Outcome = { connected: false, error: null };
    const s = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false, ...o });
    s.on('secureConnect', () => {
      out.connected = true;
      s.write('<14>1 2026-12-06T10:00:00Z ksc01 - - - - CEF:0|KasperskyLab|SecurityCenter|14.2|GNRL_EV_VIRUS_FOUND|Virus found|4|msg=x\n');
      // A client that keeps its connection open (as KSC does) and ends it after a while.
      setTimeout(() => s.end(), 1500);
    });
    s.on('data', () => undefined);
    s.on('error', (e: NodeJS.ErrnoException) => (out.error = e.code ?? e.message));
    s.on('close', () => resolve(out));
  });
}

async function started(tlsOpts: string): Promise<{ c: ChildDaemon; port: number; metrics: number; dir: string }> {
  const d = dir();
  const port = await freePort();
  const metrics = await freePort();
  const c = runCefd(d, yaml(port, metrics, tlsOpts));
  children.push(c);
  await c.until('cefd started');
  return { c, port, metrics, dir: d };
}

const server = () => `cert_file: "${pki.serverCert}", key_file: "${pki.serverKey}"`;

describe('certificate and key files', () => {
  test('an EC certificate with an RSA key: validate and run exit 78 naming the listener and the file', async () => {
    const d = dir();
    writeFileSync(join(d, 'cefd.yaml'), yaml(await freePort(), await freePort(), `cert_file: "${pki.serverCert}", key_file: "${join(certs, 'rsa-server.key')}"`));
    const v = await runCli(['validate', '--config', 'cefd.yaml'], d);
    expect(v.code).toBe(78);
    expect(v.stderr).toContain('listeners[0].tls.key_file');
    expect(v.stderr).toContain(`listener ksc-tls: the key ${join(certs, 'rsa-server.key')} does not belong to the certificate ${pki.serverCert}`);
    const r = await runCli(['run', '--config', 'cefd.yaml'], d);
    expect(r.code).toBe(78);
    expect(r.stderr + r.stdout).not.toContain('listening for tls');
  });

  test('a missing cert_file and a wrong key passphrase: exit 78 naming the listener and the file', async () => {
    const d = dir();
    writeFileSync(join(d, 'cefd.yaml'), yaml(await freePort(), await freePort(), `cert_file: "${join(certs, 'nope.crt')}", key_file: "${pki.serverKey}"`));
    const v = await runCli(['validate', '--config', 'cefd.yaml'], d);
    expect(v.code).toBe(78);
    expect(v.stderr).toContain(`listeners[0].tls.cert_file: listener ksc-tls: cannot read tls.cert_file ${join(certs, 'nope.crt')}: no such file`);
    writeFileSync(join(d, 'cefd.yaml'), yaml(await freePort(), await freePort(), `cert_file: "${pki.serverCert}", key_file: "${join(certs, 'server-enc.key')}", key_passphrase: wrong-one`));
    for (const cmd of ['validate', 'run']) {
      const r = await runCli([cmd, '--config', 'cefd.yaml'], d);
      expect(r.code).toBe(78);
      expect(r.stderr).toContain(`listener ksc-tls: wrong passphrase for the key ${join(certs, 'server-enc.key')}`);
      expect(r.stderr).not.toContain('wrong-one');
    }
    writeFileSync(join(d, 'cefd.yaml'), yaml(await freePort(), await freePort(), `cert_file: "${pki.serverCert}", key_file: "${join(certs, 'server-enc.key')}", key_passphrase: right-one`));
    expect((await runCli(['validate', '--config', 'cefd.yaml'], d)).code).toBe(0);
  });

  test('SIGHUP with a mismatched pair keeps the old pair and counts the reload as failed', async () => {
    const d = dir();
    copyFileSync(pki.serverCert, join(d, 'server.crt'));
    copyFileSync(pki.serverKey, join(d, 'server.key'));
    const port = await freePort();
    const metrics = await freePort();
    const c = runCefd(d, yaml(port, metrics, `cert_file: ./server.crt, key_file: ./server.key`));
    children.push(c);
    await c.until('cefd started');
    const before = await scrape(metrics);
    const ok0 = before.get('cefd_config_reloads_total{result="ok"}') ?? 0;
    let failed = before.get('cefd_config_reloads_total{result="failed"}') ?? 0;
    const ca = readFileSync(pki.caCert);
    // Another type (an RSA key for the EC certificate), then the same type (another EC key).
    for (const key of [join(certs, 'rsa-server.key'), join(pki.dir, 'rogue.key')]) {
      copyFileSync(key, join(d, 'server.key'));
      c.proc.kill('SIGHUP');
      failed++;
      await waitFor(async () => (await scrape(metrics)).get('cefd_config_reloads_total{result="failed"}') === failed, 30_000, 'a failed reload');
      expect((await scrape(metrics)).get('cefd_config_reloads_total{result="ok"}') ?? 0).toBe(ok0);
      // The old pair still serves.
      expect(await client(port, { ca, rejectUnauthorized: true })).toEqual({ connected: true, error: null });
    }
    await waitFor(() => readNdjson(join(d, 'events.ndjson'), { tolerateTornTail: true }).length === 2, 30_000, 'the events sent with the old pair');
    expect(c.text()).toContain('does not belong to the certificate');
  });
});

describe('client certificates', () => {
  test('a pinned but expired certificate and a pinned RSA-1024 certificate are refused (TLS 1.2 and 1.3)', async () => {
    const weak = readFileSync(join(certs, 'weak.crt'), 'utf8');
    const weakKey = readFileSync(join(certs, 'weak.key'), 'utf8');
    const d = await started(`${server()}, client_fingerprints: ["${fp(pki.expiredClientCert)}", "${fp(weak)}", "${pki.selfSignedFingerprint}"]`);
    for (const v of ['TLSv1.2', 'TLSv1.3'] as const) {
      const expired = await client(d.port, { cert: pki.expiredClientCert, key: pki.expiredClientKey, minVersion: v, maxVersion: v });
      expect(expired.error).not.toBeNull();
      // The client's own OpenSSL would refuse to use a 1024-bit key at security level 2.
      const w = await client(d.port, { cert: weak, key: weakKey, minVersion: v, maxVersion: v, ciphers: 'DEFAULT@SECLEVEL=0' });
      expect(w.error).not.toBeNull();
      const good = await client(d.port, { cert: pki.selfSignedCert, key: pki.selfSignedKey, minVersion: v, maxVersion: v });
      expect(good).toEqual({ connected: true, error: null });
    }
    await waitFor(() => readNdjson(join(d.dir, 'events.ndjson'), { tolerateTornTail: true }).length >= 2, 30_000, 'the two good events');
    await d.c.until('"code":"tls_weak_client_key"', 30_000);
    const m = await scrape(d.metrics);
    expect(m.get('cefd_connections_rejected_total{listener="ksc-tls",reason="tls_unauthorized"}')).toBe(4);
    expect(readNdjson(join(d.dir, 'events.ndjson'))).toHaveLength(2);
    const lines = d.c.text().split('\n').filter((l) => l.includes('"reason":"tls_unauthorized"')).map((l) => JSON.parse(l) as Record<string, string>);
    expect(lines.map((l) => l['code']).sort()).toEqual(['tls_certificate_expired', 'tls_weak_client_key']);
    expect(lines.find((l) => l['code'] === 'tls_weak_client_key')?.['fingerprint']).toBe(fp(weak).replace(/:/g, ''));
  });

  test('allow_insecure_pinned_certificates accepts them, loudly', async () => {
    const d = await started(`${server()}, client_fingerprints: ["${fp(pki.expiredClientCert)}"], allow_insecure_pinned_certificates: true`);
    expect(d.c.text()).toContain('allow_insecure_pinned_certificates is on');
    const o = await client(d.port, { cert: pki.expiredClientCert, key: pki.expiredClientKey });
    expect(o).toEqual({ connected: true, error: null });
    await waitFor(() => readNdjson(join(d.dir, 'events.ndjson'), { tolerateTornTail: true }).length === 1, 30_000, 'the event');
    await d.c.until('accepting pinned client certificate', 30_000);
  });

  test('under TLS 1.3 a client whose certificate is refused sees an error, not a clean close', async () => {
    const d = await started(`${server()}, ca_file: "${pki.caCert}", client_auth: required`);
    for (const o of [
      { cert: pki.rogueClientCert, key: pki.rogueClientKey },
      { cert: pki.expiredClientCert, key: pki.expiredClientKey },
    ]) {
      const r = await client(d.port, { ...o, minVersion: 'TLSv1.3' });
      expect(r.error).toBe('ECONNRESET');
    }
    expect(readNdjson(join(d.dir, 'events.ndjson'))).toHaveLength(0);
    // The child's log line may reach us after the client saw the reset.
    await d.c.until('"code":"tls_certificate_expired"', 30_000);
    const log = d.c.text();
    expect(log).toContain('"code":"tls_unknown_ca"');
    expect(log).toContain(`"fingerprint":"${fp(pki.rogueClientCert).replace(/:/g, '')}"`);
  });

  test('a client that sends no certificate where one is needed gets a TLS alert under TLS 1.3 (certificate_required), a reset under TLS 1.2', async () => {
    for (const [tlsOpts, reason] of [
      [`${server()}, ca_file: "${pki.caCert}", client_auth: required`, 'tls_unauthorized'],
      [`${server()}, client_fingerprints: ["${fp(pki.selfSignedCert)}"]`, 'tls_fingerprint'],
    ] as const) {
      const d = await started(tlsOpts);
      const v13 = await client(d.port, { minVersion: 'TLSv1.3' });
      expect(v13.error).toBe('ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED');
      // Under TLS 1.2 the client's certificate comes before cefd can ask OpenSSL to insist: refused after the handshake.
      const v12 = await client(d.port, { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' });
      expect(v12.error).toBe('ECONNRESET');
      // A client with an accepted certificate is unaffected.
      const good = await client(d.port, reason === 'tls_fingerprint' ? { cert: pki.selfSignedCert, key: pki.selfSignedKey, minVersion: 'TLSv1.3' } : { cert: pki.clientCert, key: pki.clientKey, minVersion: 'TLSv1.3' });
      expect(good).toEqual({ connected: true, error: null });
      await waitFor(() => readNdjson(join(d.dir, 'events.ndjson'), { tolerateTornTail: true }).length === 1, 30_000, 'the accepted event');
      const m = await scrape(d.metrics);
      expect(m.get(`cefd_connections_rejected_total{listener="ksc-tls",reason="${reason}"}`)).toBe(2);
      expect(m.get('cefd_connections_rejected_total{listener="ksc-tls",reason="tls_handshake"}') ?? 0).toBe(0);
      // Both refusals logged under one code (rate-limited together).
      expect(d.c.text()).toContain('"code":"tls_no_client_certificate"');
    }
  });

  test('client_auth none with a ca_file, and optional without a ca_file or pins, are refused by validate', async () => {
    const d = dir();
    writeFileSync(join(d, 'cefd.yaml'), yaml(await freePort(), await freePort(), `${server()}, ca_file: "${pki.caCert}", client_auth: none`));
    const a = await runCli(['validate', '--config', 'cefd.yaml'], d);
    expect(a.code).toBe(78);
    expect(a.stderr).toContain('listeners[0].tls.client_auth: ca_file is set but client_auth is none');
    writeFileSync(join(d, 'cefd.yaml'), yaml(await freePort(), await freePort(), `${server()}, client_auth: optional`));
    const b = await runCli(['validate', '--config', 'cefd.yaml'], d);
    expect(b.code).toBe(78);
    expect(b.stderr).toContain('optional client certificates need tls.ca_file or tls.client_fingerprints');
  });
});

describe('ciphers and logs', () => {
  test('TLS 1.2 offers ECDHE with AEAD only by default; `ciphers` changes it', async () => {
    const rsa = `cert_file: "${join(certs, 'rsa-server.crt')}", key_file: "${join(certs, 'rsa-server.key')}"`;
    const d = await started(rsa);
    for (const weak of ['AES128-SHA', 'AES256-SHA', 'AES128-GCM-SHA256', 'ECDHE-RSA-AES128-SHA']) {
      const r = await client(d.port, { maxVersion: 'TLSv1.2', ciphers: weak });
      expect([weak, r.connected]).toEqual([weak, false]);
    }
    const ok = await client(d.port, { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-RSA-AES128-GCM-SHA256' });
    expect(ok).toEqual({ connected: true, error: null });
    // The log names a reason code, without OpenSSL's source paths or line breaks.
    await d.c.until('"reason":"tls_handshake"', 30_000);
    const lines = d.c.text().split('\n').filter((l) => l.includes('"reason":"tls_handshake"'));
    expect(lines.length).toBeGreaterThan(0);
    for (const l of lines) {
      expect(l).not.toContain('../deps/openssl');
      expect(l).not.toContain('\\n');
      const rec = JSON.parse(l) as { code: string; cause: string };
      expect(rec.code).toBe('tls_no_shared_cipher');
      expect(rec.cause).toMatch(/^ERR_SSL_[A-Z0-9_]+$/);
    }
    const e = await started(`${rsa}, ciphers: "ECDHE-RSA-AES256-GCM-SHA384"`);
    expect((await client(e.port, { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-RSA-AES128-GCM-SHA256' })).connected).toBe(false);
    expect(await client(e.port, { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-RSA-AES256-GCM-SHA384' })).toEqual({ connected: true, error: null });
  });
});
