/**
 * A self-signed certificate for the emulator, made with the `openssl` CLI, like KSC's own
 * klserver.cer: CN = the server name, SAN for localhost and 127.0.0.1. Cached per process
 * and per CN (key generation is the slow part).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';

export interface TestCertificate {
  key: string;
  cert: string;
  /** SHA-256 fingerprint, `AB:CD:...` as openssl prints it. */
  fingerprint256: string;
}

const cache = new Map<string, TestCertificate>();

export function makeSelfSignedCert(cn = 'ksc-emulator'): TestCertificate {
  const hit = cache.get(cn);
  if (hit !== undefined) return hit;
  const dir = mkdtempSync(join(tmpdir(), 'ksc-cert-'));
  try {
    const key = join(dir, 'key.pem');
    const crt = join(dir, 'cert.pem');
    execFileSync(
      'openssl',
      [
        'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
        '-keyout', key, '-out', crt, '-days', '2', '-subj', `/CN=${cn}`,
        '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
        '-addext', 'basicConstraints=critical,CA:TRUE',
      ],
      { stdio: 'pipe' },
    );
    const c: TestCertificate = { key: readFileSync(key, 'utf8'), cert: readFileSync(crt, 'utf8'), fingerprint256: '' };
    c.fingerprint256 = new X509Certificate(c.cert).fingerprint256;
    cache.set(cn, c);
    return c;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
