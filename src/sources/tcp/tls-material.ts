/**
 * The certificate, key and CA files of a TLS listener, loaded and checked the same way by
 * `cefd validate`, at start and on SIGHUP: a file that cannot be read, a key whose
 * passphrase is wrong, a certificate and key that do not belong together (OpenSSL accepts
 * an EC certificate with an RSA key and then fails every handshake) are configuration
 * errors naming the listener and the file. A SIGHUP that finds such a pair keeps the old one.
 *
 * Also here: the TLS 1.2 cipher default, the client-certificate checks OpenSSL does not do
 * for pinned certificates (expiry, key strength), and clean reason codes for refusals.
 */
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import tls from 'node:tls';
import type { FieldProblem } from '../../config/spec.js';
import type { TlsServerConfig } from './config.js';

export { MODERN_TLS12_CIPHERS } from './tls-ciphers.js';

export class TlsMaterialError extends Error {
  override readonly name = 'TlsMaterialError';
  constructor(
    readonly listener: string,
    /** The option at fault, `tls.cert_file`. */
    readonly option: string,
    message: string,
  ) {
    super(`listener ${listener}: ${message}`);
  }
}

export interface TlsMaterial {
  cert: Buffer;
  /** The key, decrypted (PKCS#8 PEM): OpenSSL holds it decrypted too. */
  key: string;
  ca?: Buffer;
  /** Revocation lists of the CAs (PEM). */
  crl?: Buffer;
  /** Subject and expiry of the listener's own certificate, for the start log. */
  notAfter: string;
  /** The key file is readable by every user and not encrypted (a warning, not an error: Debian's ssl-cert group keys are 0640). */
  keyReadableByOthers: boolean;
}

function read(listener: string, option: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'error';
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code;
    throw new TlsMaterialError(listener, option, `cannot read ${option} ${file}: ${why}`);
  }
}

/** The first line of an OpenSSL error text, without `error:0A00...:` codes and source paths. */
export function cleanOpenSslText(msg: string): string {
  const first = msg.split('\n')[0]!.trim();
  const m = /error:[0-9A-Fa-f]+:[^:]*:[^:]*:([^:]+)/.exec(first);
  return (m !== null ? m[1]! : first).trim();
}

/** Reads and checks the files of a TLS listener. Throws TlsMaterialError. */
export function loadTlsMaterial(listener: string, t: TlsServerConfig): TlsMaterial {
  const certPem = read(listener, 'tls.cert_file', t.cert_file);
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(certPem);
  } catch {
    throw new TlsMaterialError(listener, 'tls.cert_file', `${t.cert_file} is not a PEM certificate`);
  }
  const keyPem = read(listener, 'tls.key_file', t.key_file);
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: keyPem, format: 'pem', ...(t.key_passphrase !== undefined ? { passphrase: t.key_passphrase } : {}) });
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const text = `${err.code ?? ''} ${err.message}`;
    if (/MISSING_PASSPHRASE|interrupted or cancelled/i.test(text)) {
      throw new TlsMaterialError(listener, 'tls.key_passphrase', `the key ${t.key_file} is encrypted: set tls.key_passphrase or tls.key_passphrase_file`);
    }
    if (/bad decrypt|BAD_DECRYPT|unable to decrypt|wrong password/i.test(text)) {
      throw new TlsMaterialError(listener, 'tls.key_passphrase', `wrong passphrase for the key ${t.key_file}`);
    }
    throw new TlsMaterialError(listener, 'tls.key_file', `${t.key_file} is not a usable PEM private key (${cleanOpenSslText(err.message)})`);
  }
  if (!x509.checkPrivateKey(key)) {
    throw new TlsMaterialError(listener, 'tls.key_file', `the key ${t.key_file} does not belong to the certificate ${t.cert_file} (${x509.publicKey.asymmetricKeyType} certificate, ${key.asymmetricKeyType} key)`);
  }
  const keyText = key.export({ type: 'pkcs8', format: 'pem' }) as string;
  const encrypted = /ENCRYPTED/.test(keyPem.toString('latin1', 0, Math.min(keyPem.length, 4096)));
  let keyReadableByOthers = false;
  try {
    keyReadableByOthers = !encrypted && (statSync(t.key_file).mode & 0o004) !== 0;
  } catch {
    // Read a moment ago: a file gone since is caught by the next load.
  }
  let ca: Buffer | undefined;
  if (t.ca_file !== undefined) {
    ca = read(listener, 'tls.ca_file', t.ca_file);
    if (!ca.toString('latin1').includes('-----BEGIN CERTIFICATE-----')) throw new TlsMaterialError(listener, 'tls.ca_file', `${t.ca_file} holds no PEM certificate`);
  }
  let crl: Buffer | undefined;
  if (t.crl_file !== undefined) {
    crl = read(listener, 'tls.crl_file', t.crl_file);
    if (!crl.toString('latin1').includes('-----BEGIN X509 CRL-----')) throw new TlsMaterialError(listener, 'tls.crl_file', `${t.crl_file} holds no PEM CRL (-----BEGIN X509 CRL-----)`);
  }
  try {
    // Chain order, CA bundle contents, CRLs and the cipher list, as OpenSSL will use them.
    tls.createSecureContext({ cert: certPem, key: keyText, ...(ca !== undefined ? { ca } : {}), ...(crl !== undefined ? { crl } : {}), ciphers: t.ciphers, minVersion: t.min_version });
  } catch (e) {
    const option = /cipher/i.test((e as Error).message) ? 'tls.ciphers' : /crl/i.test((e as Error).message) ? 'tls.crl_file' : 'tls.cert_file';
    throw new TlsMaterialError(listener, option, `OpenSSL refuses the TLS settings: ${cleanOpenSslText((e as Error).message)}`);
  }
  return { cert: certPem, key: keyText, ...(ca !== undefined ? { ca } : {}), ...(crl !== undefined ? { crl } : {}), notAfter: x509.validTo, keyReadableByOthers };
}

/** Every TLS listener's files checked (`validate`, start, SIGHUP). */
export function tlsProblems(c: { listeners: readonly { type: string; name: string; tls?: TlsServerConfig }[] }): FieldProblem[] {
  const out: FieldProblem[] = [];
  c.listeners.forEach((l, i) => {
    if (l.type !== 'tls' || l.tls === undefined) return;
    try {
      loadTlsMaterial(l.name, l.tls);
    } catch (e) {
      if (!(e instanceof TlsMaterialError)) throw e;
      out.push({ key: `listeners[${i}].${e.option}`, message: e.message });
    }
  });
  return out;
}

/** Why a pinned certificate that OpenSSL did not check is still refused, or null. */
export function pinnedCertificateProblem(x: X509Certificate, nowMs: number): { code: 'tls_certificate_expired' | 'tls_certificate_not_yet_valid' | 'tls_weak_client_key'; text: string } | null {
  const from = Date.parse(x.validFrom);
  const to = Date.parse(x.validTo);
  if (Number.isFinite(to) && nowMs > to) return { code: 'tls_certificate_expired', text: `the certificate expired on ${new Date(to).toISOString()}` };
  if (Number.isFinite(from) && nowMs < from) return { code: 'tls_certificate_not_yet_valid', text: `the certificate is valid from ${new Date(from).toISOString()}` };
  const weak = weakKey(x.publicKey);
  if (weak !== null) return { code: 'tls_weak_client_key', text: weak };
  return null;
}

/** Keys below today's minimums (NIST SP 800-131A, BSI TR-02102): RSA/DSA < 2048 bits, EC below P-256. */
export function weakKey(k: KeyObject): string | null {
  const type = k.asymmetricKeyType;
  const d = k.asymmetricKeyDetails ?? {};
  if (type === 'rsa' || type === 'rsa-pss' || type === 'dsa') {
    const bits = d.modulusLength ?? 0;
    return bits < 2048 ? `${type.toUpperCase()} key of ${bits} bits (at least 2048 needed)` : null;
  }
  if (type === 'ec') {
    const curve = d.namedCurve ?? 'unknown';
    return ['prime256v1', 'secp384r1', 'secp521r1', 'P-256', 'P-384', 'P-521', 'brainpoolP256r1', 'brainpoolP384r1', 'brainpoolP512r1'].includes(curve) ? null : `EC key on curve ${curve} (P-256 or stronger needed)`;
  }
  if (type === 'ed25519' || type === 'ed448') return null;
  return `${type ?? 'unknown'} key`;
}

/**
 * A stable reason code for a failed handshake, and the OpenSSL/Node error code (a clean
 * token such as `ERR_SSL_NO_SHARED_CIPHER`) as its cause, instead of OpenSSL's text.
 */
export function handshakeReason(e: Error): { code: TlsHandshakeCode; cause: string } {
  const cause = (e as NodeJS.ErrnoException).code ?? 'unknown';
  let code: TlsHandshakeCode = 'tls_handshake_failed';
  if (cause === 'ERR_TLS_HANDSHAKE_TIMEOUT') code = 'tls_handshake_timeout';
  else if (/NO_SHARED_CIPHER|NO_CIPHERS|CIPHER/.test(cause)) code = 'tls_no_shared_cipher';
  else if (/PROTOCOL_VERSION|UNSUPPORTED_PROTOCOL|VERSION_TOO_LOW|WRONG_VERSION_NUMBER|HTTP_REQUEST|PACKET_LENGTH_TOO_LONG|RECORD_LAYER/.test(cause)) code = 'tls_protocol_version';
  return { code, cause };
}

export type TlsHandshakeCode = 'tls_handshake_failed' | 'tls_handshake_timeout' | 'tls_no_shared_cipher' | 'tls_protocol_version';

/** Node's verification codes (CERT_HAS_EXPIRED, ...) as reason codes. */
export function verifyReason(authorizationError: string): string {
  switch (authorizationError) {
    case 'CERT_HAS_EXPIRED':
      return 'tls_certificate_expired';
    case 'CERT_NOT_YET_VALID':
      return 'tls_certificate_not_yet_valid';
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
    case 'UNABLE_TO_GET_ISSUER_CERT':
    case 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY':
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
    case 'SELF_SIGNED_CERT_IN_CHAIN':
      return 'tls_unknown_ca';
    case 'CERT_REVOKED':
      return 'tls_certificate_revoked';
    case 'UNABLE_TO_GET_CRL':
    case 'CRL_HAS_EXPIRED':
    case 'CRL_NOT_YET_VALID':
    case 'CRL_SIGNATURE_FAILURE':
    case 'UNABLE_TO_DECRYPT_CRL_SIGNATURE':
    case 'ERROR_IN_CRL_LAST_UPDATE_FIELD':
    case 'ERROR_IN_CRL_NEXT_UPDATE_FIELD':
      return 'tls_crl_unusable';
    case 'EE_KEY_TOO_SMALL':
    case 'CA_KEY_TOO_SMALL':
      return 'tls_weak_client_key';
    default:
      return 'tls_certificate_invalid';
  }
}
