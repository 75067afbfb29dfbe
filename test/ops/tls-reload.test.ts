/**
 * SIGHUP re-reads the TLS certificate and key of a listener whose configuration did not
 * change (certificate renewal without a restart): `cefd run` as a child process, a real
 * signal, and the certificate the server presents, read by a TLS client.
 */
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import tls from 'node:tls';
import { afterEach, expect, test } from 'vitest';
import { freePort, runCefd, type ChildDaemon } from '../helpers/child.js';
import { tempDir, waitFor } from '../helpers/daemon.js';

let child: ChildDaemon | undefined;
let dir: string | undefined;

afterEach(async () => {
  if (child !== undefined && child.proc.exitCode === null) {
    child.proc.kill('SIGKILL');
    await child.exit;
  }
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  child = undefined;
  dir = undefined;
});

/** A self-signed server certificate for 127.0.0.1 in `<dir>/<name>.crt` and `.key`. */
function selfSigned(d: string, name: string): string {
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '2', '-subj', `/CN=${name}`, '-addext', 'subjectAltName=IP:127.0.0.1'], { cwd: d, stdio: 'pipe' });
  return new X509Certificate(readFileSync(join(d, `${name}.crt`))).fingerprint256;
}

/** The SHA-256 fingerprint of the certificate the listener presents now. */
async function presented(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
      const fp = s.getPeerCertificate().fingerprint256;
      s.end();
      resolve(fp);
    });
    s.once('error', reject);
  });
}

test('SIGHUP makes a running TLS listener present the renewed certificate; a broken one keeps the old', async () => {
  dir = tempDir('cefd-tlsreload-');
  const certs = join(dir, 'certs');
  mkdirSync(certs);
  const old = selfSigned(certs, 'old');
  const renewed = selfSigned(certs, 'renewed');
  copyFileSync(join(certs, 'old.crt'), join(dir, 'server.crt'));
  copyFileSync(join(certs, 'old.key'), join(dir, 'server.key'));
  const port = await freePort();
  child = runCefd(
    dir,
    `state_dir: ./state
listeners:
  - name: ksc
    type: tls
    host: 127.0.0.1
    port: ${port}
    tls: { cert_file: ./server.crt, key_file: ./server.key }
outputs: [{ name: events, type: file, path: ./events.ndjson }]
dead_letter: { path: ./dead.ndjson }
metrics: { enabled: false }
`,
  );
  await child.until('cefd started');
  expect(await presented(port)).toBe(old);

  // Renewed on disk: not used until the signal (files are read at start and on SIGHUP).
  copyFileSync(join(certs, 'renewed.crt'), join(dir, 'server.crt'));
  copyFileSync(join(certs, 'renewed.key'), join(dir, 'server.key'));
  expect(await presented(port)).toBe(old);

  child.proc.kill('SIGHUP');
  await child.until('certificates reloaded');
  expect(await presented(port)).toBe(renewed);

  // A key that does not parse: the listener keeps the certificate it has.
  writeFileSync(join(dir, 'server.key'), 'not a key\n');
  const reloadsBefore = child.text().split('SIGHUP:').length;
  child.proc.kill('SIGHUP');
  await waitFor(() => child!.text().split('SIGHUP:').length > reloadsBefore && /cannot reload certificates|reload failed/.test(child!.text()), 60_000, 'the failed reload logged');
  expect(await presented(port)).toBe(renewed);

  child.proc.kill('SIGTERM');
  expect(await child.exit).toBe(0);
});
