/** TLS listener material checks and reason codes (src/sources/tcp/tls-material.ts), with keys made by node:crypto. */
import { generateKeyPairSync } from 'node:crypto';
import { expect, test } from 'vitest';
import { cleanOpenSslText, handshakeReason, verifyReason, weakKey } from '../../src/sources/tcp/tls-material.js';

test('key strength: RSA/DSA under 2048 bits and EC below P-256 are weak', () => {
  expect(weakKey(generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey)).toBe('RSA key of 1024 bits (at least 2048 needed)');
  expect(weakKey(generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey)).toBeNull();
  expect(weakKey(generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey)).toBeNull();
  expect(weakKey(generateKeyPairSync('ec', { namedCurve: 'secp224r1' }).publicKey)).toBe('EC key on curve secp224r1 (P-256 or stronger needed)');
  expect(weakKey(generateKeyPairSync('ed25519').publicKey)).toBeNull();
});

test('handshake failures get a stable code and the OpenSSL code as cause', () => {
  const err = (code: string) => Object.assign(new Error('x'), { code });
  expect(handshakeReason(err('ERR_SSL_NO_SHARED_CIPHER'))).toEqual({ code: 'tls_no_shared_cipher', cause: 'ERR_SSL_NO_SHARED_CIPHER' });
  expect(handshakeReason(err('ERR_SSL_WRONG_VERSION_NUMBER')).code).toBe('tls_protocol_version');
  expect(handshakeReason(err('ERR_SSL_HTTP_REQUEST')).code).toBe('tls_protocol_version');
  expect(handshakeReason(err('ERR_TLS_HANDSHAKE_TIMEOUT')).code).toBe('tls_handshake_timeout');
  expect(handshakeReason(err('ECONNRESET'))).toEqual({ code: 'tls_handshake_failed', cause: 'ECONNRESET' });
  expect(handshakeReason(new Error('no code'))).toEqual({ code: 'tls_handshake_failed', cause: 'unknown' });
});

test('verification codes and OpenSSL texts are cleaned', () => {
  expect(verifyReason('CERT_HAS_EXPIRED')).toBe('tls_certificate_expired');
  expect(verifyReason('UNABLE_TO_VERIFY_LEAF_SIGNATURE')).toBe('tls_unknown_ca');
  expect(verifyReason('CERT_SIGNATURE_FAILURE')).toBe('tls_certificate_invalid');
  expect(cleanOpenSslText('40E7C2F1D47F0000:error:0A00010B:SSL routines:ssl3_get_record:wrong version number:../deps/openssl/openssl/ssl/record/ssl3_record.c:354:\n')).toBe('wrong version number');
});
