/** Options of the `tcp` and `tls` listeners: the one place they are written (types inferred below). */
import { bool, dur, enumOf, fields, int, list, MAX_TIMER_SECONDS, obj, pathSpec, str, type ConfigOf, type FieldProblem } from '../../config/spec.js';
import type { ListenerCommonConfig } from '../plugin.js';
import { MODERN_TLS12_CIPHERS } from './tls-ciphers.js';

export const STREAM_FIELDS = fields({
  max_connections: int('Most connections open at once. At the limit, a new connection takes the place of the oldest one that has not sent a complete frame yet (a slowloris connection; on a `tls` listener the oldest handshake still unfinished after half of `handshake_timeout` goes first, before a quiet sender); failing that, of the connection quiet the longest, if it has been quiet (no byte, no partial frame) for `evict_quiet_after`; if there is none, the new one is closed at once. All are counted.', 1000, 1),
  evict_quiet_after: dur('At `max_connections`: a connection that has sent nothing for this long (and holds no partial frame) may be closed to make room for a new one, the quietest first (`evicted_quiet`), so that connections that each sent a frame and went quiet cannot keep every new sender out for ever. A quiet sender reconnects when it next sends (a sender that writes into a connection closed under it may lose that write: keep `max_connections` above the senders you expect). 0: never; a new connection is then refused while all are served.', '60s', 0, MAX_TIMER_SECONDS),
  max_connections_per_source: int('Most connections open at once from one source address (0: no limit); further ones are closed at once and counted.', 100, 0),
  idle_timeout: dur('Close a connection that sent nothing for this long (0: never). Off by default: KSC keeps quiet connections open between events.', '0s', 0, MAX_TIMER_SECONDS),
  frame_timeout: dur('Most time from the first byte of a frame to its end while cefd reads (0: no limit). Past it the bytes received go to the dead-letter output (`frame_timeout`, flagged truncated) and the connection is closed: a sender that starts frames and never ends them (slowloris) cannot hold a connection. Time while cefd does not read (backpressure) does not count.', '60s', 0, MAX_TIMER_SECONDS),
});

export const TLS_SERVER_FIELDS = fields({
  cert_file: pathSpec('PEM certificate (chain) the listener presents.', { required: true }),
  key_file: pathSpec('PEM private key of the certificate.', { required: true, secret: false }),
  key_passphrase: str('Passphrase of the private key, if it is encrypted.', { secret: true }),
  key_passphrase_file: pathSpec('File holding the key passphrase.'),
  ca_file: pathSpec('PEM CA bundle to verify client certificates against (needed for `client_auth: required` unless fingerprints are pinned).'),
  crl_file: pathSpec('PEM certificate revocation lists (CRLs) of the CAs in `ca_file`, one for every CA of a client\'s chain: a revoked client certificate is refused (`tls_certificate_revoked`); a CA without a CRL here, or a CRL past its next update, refuses every certificate it issued (`tls_crl_unusable`). Re-read on SIGHUP, like the certificate files: replace the file and reload when the CA publishes a new CRL.'),
  client_auth: enumOf('Client certificates: `none`, `optional` (verified when presented) or `required`.', ['none', 'optional', 'required'], 'none'),
  client_fingerprints: list(
    'Allowed client certificate SHA-256 fingerprints (hex, colons optional). When set, a client must present one of these certificates (KSC presents a self-signed one); the CA check is then not needed.',
    str('SHA-256 fingerprint'),
    { default: [] },
  ),
  allow_insecure_pinned_certificates: bool('Accept a pinned client certificate even when it has expired or its key is below today\'s minimums (RSA/DSA under 2048 bits, EC under P-256). Off: such a certificate is refused like any other. On: logged as a warning at start and for every such connection (see docs/security.md).', false),
  min_version: enumOf('Lowest TLS version accepted.', ['TLSv1.2', 'TLSv1.3'], 'TLSv1.2'),
  ciphers: str('TLS 1.2 cipher suites (OpenSSL list syntax). The default allows only forward-secret AEAD suites (ECDHE with AES-GCM or ChaCha20-Poly1305); TLS 1.3 suites are not affected.', { default: MODERN_TLS12_CIPHERS }),
  handshake_timeout: dur('Time a client has to finish the TLS handshake.', '10s', 0.001, MAX_TIMER_SECONDS),
});

export const TLS_FIELDS = fields({
  ...STREAM_FIELDS,
  tls: obj('TLS settings of a `tls` listener.', TLS_SERVER_FIELDS),
});

export type TlsServerConfig = ConfigOf<typeof TLS_SERVER_FIELDS>;

/** A `tcp` or `tls` listener (a `tcp` one has no `tls` section). */
export type StreamListenerConfig = ListenerCommonConfig & ConfigOf<typeof STREAM_FIELDS> & { type: 'tcp' | 'tls'; tls?: TlsServerConfig };

/** The checks of a `tls` listener that span options. */
export function checkTls(c: { tls: TlsServerConfig }): FieldProblem[] {
  const out: FieldProblem[] = [];
  if (c.tls.client_auth === 'required' && c.tls.ca_file === undefined && c.tls.client_fingerprints.length === 0) {
    out.push({ key: 'tls.client_auth', message: 'required client certificates need tls.ca_file or tls.client_fingerprints' });
  }
  const pins = c.tls.client_fingerprints.length > 0;
  // Combinations that check nothing, or refuse everyone (docs/security.md).
  if (c.tls.client_auth === 'none' && c.tls.ca_file !== undefined && !pins) {
    out.push({ key: 'tls.client_auth', message: 'ca_file is set but client_auth is none, so no client certificate is checked: set client_auth to required (or optional), or remove ca_file' });
  }
  if (c.tls.client_auth === 'optional' && c.tls.ca_file === undefined && !pins) {
    out.push({ key: 'tls.client_auth', message: 'optional client certificates need tls.ca_file or tls.client_fingerprints: without them every certificate presented would be refused' });
  }
  if (c.tls.crl_file !== undefined && (c.tls.ca_file === undefined || c.tls.client_auth === 'none')) {
    out.push({ key: 'tls.crl_file', message: 'a CRL is checked only for client certificates verified against tls.ca_file: set ca_file and client_auth (required or optional), or remove crl_file' });
  }
  for (const fp of c.tls.client_fingerprints) {
    if (!/^[0-9a-fA-F]{64}$/.test(fp.replace(/:/g, ''))) out.push({ key: 'tls.client_fingerprints', message: `not a SHA-256 fingerprint: ${JSON.stringify(fp)}` });
  }
  return out;
}
