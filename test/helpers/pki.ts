/**
 * Test certificates made with the openssl CLI: a CA, a server certificate for 127.0.0.1,
 * client certificates signed by the CA, by another CA, self-signed (as KSC presents), and
 * expired. Everything lives in a temp folder, one per test file (removed after it, see temp.ts).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { tempDir } from './temp.js';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';

export interface Pki {
  dir: string;
  caCert: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  rogueClientCert: string;
  rogueClientKey: string;
  selfSignedCert: string;
  selfSignedKey: string;
  expiredClientCert: string;
  expiredClientKey: string;
  /** SHA-256 fingerprint of the self-signed client certificate, `AB:CD:..`. */
  selfSignedFingerprint: string;
}

let cached: Pki | undefined;

function ossl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: 'pipe' });
}

function keyAndCsr(dir: string, name: string, cn: string): void {
  ossl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`], dir);
}

function ca(dir: string, name: string): void {
  ossl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '30', '-subj', `/CN=${name}`, '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
}

function sign(dir: string, name: string, caName: string, ext: string): void {
  writeFileSync(join(dir, `${name}.ext`), ext);
  ossl(['x509', '-req', '-in', `${name}.csr`, '-CA', `${caName}.crt`, '-CAkey', `${caName}.key`, '-CAcreateserial', '-out', `${name}.crt`, '-days', '30', '-extfile', `${name}.ext`], dir);
}

/** A certificate valid from 2020-01-01 to 2020-01-02, signed by `caName` (openssl ca can set dates). */
function signExpired(dir: string, name: string, caName: string): void {
  const db = join(dir, `db-${name}`);
  mkdirSync(db, { recursive: true });
  writeFileSync(join(db, 'index.txt'), '');
  writeFileSync(join(db, 'serial'), '1000\n');
  writeFileSync(
    join(dir, `${name}.cnf`),
    `[ca]\ndefault_ca=c\n[c]\ndir=${db}\ndatabase=$dir/index.txt\nserial=$dir/serial\nnew_certs_dir=${db}\ncertificate=${join(dir, `${caName}.crt`)}\nprivate_key=${join(dir, `${caName}.key`)}\ndefault_md=sha256\npolicy=p\nunique_subject=no\n[p]\ncommonName=supplied\n[ext]\nextendedKeyUsage=clientAuth\n`,
  );
  ossl(['ca', '-batch', '-config', `${name}.cnf`, '-extensions', 'ext', '-startdate', '20200101000000Z', '-enddate', '20200102000000Z', '-in', `${name}.csr`, '-out', `${name}.crt`, '-notext'], dir);
}

export function makePki(): Pki {
  if (cached !== undefined) return cached;
  const dir = tempDir('cefd-pki-');
  ca(dir, 'ca');
  ca(dir, 'rogue-ca');
  keyAndCsr(dir, 'server', 'cefd-test-server');
  sign(dir, 'server', 'ca', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  keyAndCsr(dir, 'client', 'ksc01.corp.example');
  sign(dir, 'client', 'ca', 'extendedKeyUsage=clientAuth\n');
  keyAndCsr(dir, 'rogue', 'rogue-client');
  sign(dir, 'rogue', 'rogue-ca', 'extendedKeyUsage=clientAuth\n');
  keyAndCsr(dir, 'expired', 'expired-client');
  signExpired(dir, 'expired', 'ca');
  ossl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'self.key', '-out', 'self.crt', '-days', '30', '-subj', '/CN=KSC self-signed SIEM client'], dir);
  const r = (f: string) => readFileSync(join(dir, f), 'utf8');
  cached = {
    dir,
    caCert: join(dir, 'ca.crt'),
    serverCert: join(dir, 'server.crt'),
    serverKey: join(dir, 'server.key'),
    clientCert: r('client.crt'),
    clientKey: r('client.key'),
    rogueClientCert: r('rogue.crt'),
    rogueClientKey: r('rogue.key'),
    selfSignedCert: r('self.crt'),
    selfSignedKey: r('self.key'),
    expiredClientCert: r('expired.crt'),
    expiredClientKey: r('expired.key'),
    selfSignedFingerprint: new X509Certificate(r('self.crt')).fingerprint256,
  };
  return cached;
}
