/**
 * TLS 1.2 suites with forward secrecy and an AEAD cipher only (Mozilla's "intermediate"
 * list). TLS 1.3 suites are all of that kind and are not affected by this list. A file of
 * its own: the config schema imports it without loading node:tls.
 */
export const MODERN_TLS12_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');
