/** The `http` output's options: the one place they are written (type inferred below). */
import { bool, dur, enumOf, fields, pathSpec, str, type ConfigOf, type FieldProblem } from '../../config/spec.js';

export const HTTP_FIELDS = fields({
  url: str('Endpoint (http:// or https://).', { required: true }),
  format: enumOf('Body: `ndjson` (application/x-ndjson) or `json_array` (application/json).', ['ndjson', 'json_array'], 'ndjson'),
  headers: { kind: 'map', doc: 'Extra request headers (`name: value`; values may use ${ENV}).', value: { kind: 'string', doc: 'header value' } },
  bearer_token: str('Sends `Authorization: Bearer <token>`; use ${ENV} interpolation or bearer_token_file.', { secret: true }),
  bearer_token_file: pathSpec('File holding the bearer token.'),
  timeout: dur('Request timeout.', '30s', 0.001),
  max_retry_after: dur('Longest wait a `Retry-After` response header may ask for.', '5m', 0),
  ca_file: pathSpec('PEM CA bundle to verify an https server against (default: the system CAs).'),
  cert_file: pathSpec('PEM client certificate, for servers that require one (with key_file).'),
  key_file: pathSpec('PEM private key (unencrypted) of cert_file.'),
  server_name: str('Name sent in SNI and checked against the server certificate (default: the URL\'s host).'),
  insecure_skip_verify: bool('Do not verify the server certificate (testing only).', false),
  compress: bool('gzip the request body.', false),
});

export type HttpConfig = ConfigOf<typeof HTTP_FIELDS>;
export type HttpFormat = HttpConfig['format'];

/** Checks the schema kinds cannot express. */
export function checkHttp(c: HttpConfig): FieldProblem[] {
  const out: FieldProblem[] = [];
  try {
    const u = new URL(c.url);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('scheme');
  } catch {
    out.push({ key: 'url', message: `expected an http:// or https:// URL, got ${JSON.stringify(c.url)}` });
  }
  if (c.timeout * 1000 > 2 ** 31 - 1) out.push({ key: 'timeout', message: 'must be at most 24 days' });
  if ((c.cert_file === undefined) !== (c.key_file === undefined)) out.push({ key: c.cert_file === undefined ? 'cert_file' : 'key_file', message: 'cert_file and key_file go together' });
  return out;
}
