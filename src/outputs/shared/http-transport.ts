/**
 * The HTTP transport every HTTP-based output shares (http today; the bulk APIs next): a
 * keep-alive agent, TLS (CA file, client certificate and key, server name, or no
 * verification for tests), authentication from secrets (bearer token, basic, an API-key
 * header; each may come from a `*_file`), gzip, a deadline per request, and the
 * classification of what came back:
 * - 2xx: `delivered` (with the response body when the caller asks for it: a bulk API's
 *   per-item answer).
 * - 408, 425, 429 and 5xx: `retry`, with `retryAfterMs` when the response has a
 *   `Retry-After` header (delay-seconds or an HTTP date), capped at `max_retry_after`.
 * - Any other status (other 4xx, 3xx: redirects are not followed, 1xx/6xx oddities):
 *   `rejected` with reason `http_status_<code>` (`http_status_400`, `http_status_404`...),
 *   and the status in `httpStatus`. Each output decides what they mean for its receiver;
 *   none dead-letters the events for 401, 403 or wrongEndpointStatus() (404, 405, 3xx),
 *   which say the output's configuration is wrong, not the events: http, elasticsearch
 *   and splunk_hec send them again no sooner than CONFIG_RETRY_MS apart (../types.ts).
 * - Network errors (refused, reset, DNS, TLS handshake or certificate errors) and the
 *   `timeout` deadline: `retry`.
 *
 * Its options are a config fragment (HTTP_TRANSPORT_FIELDS) an output spreads into its
 * own, so each is written once. Error strings name the URL without its user info and
 * query, give the status and the start of the response body (at most 256 characters by
 * default, more where an output's server puts what matters further on: ClickHouse;
 * control characters removed). Every secret (tokens, passwords, the values of
 * sensitive-looking headers and query parameters: Authorization, Cookie, and names
 * containing token, key, secret, password or auth) is replaced by `[redacted]` in every
 * error string, in case a server echoes it.
 *
 * node:http/https rather than the built-in fetch: Node 20's fetch (bundled undici) can
 * take a private CA, a client certificate or `rejectUnauthorized: false` only through
 * undici's own Agent class, which Node does not expose (it would take the `undici`
 * package); node:https takes them directly, with a keep-alive Agent, and its errors
 * carry the OpenSSL codes (`DEPTH_ZERO_SELF_SIGNED_CERT`) that make TLS errors clear.
 */
import http from 'node:http';
import https from 'node:https';
import { readFile } from 'node:fs/promises';
import { createSecureContext } from 'node:tls';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import { bool, dur, fields, pathSpec, str, type ConfigOf, type FieldProblem, MAX_TIMER_SECONDS } from '../../config/spec.js';
import { errorText } from './encode.js';
import { DELIVERED, type SendResult } from '../types.js';

const gzipAsync = promisify(gzip);

/** The result of a request aborted at the shutdown deadline (the batch stays queued). */
const ABORTED = 'aborted at the shutdown deadline; the batch stays queued';

export const HTTP_TRANSPORT_FIELDS = fields({
  url: str('Endpoint (http:// or https://).', { required: true }),
  headers: { kind: 'map', doc: 'Extra request headers (`name: value`; values may use ${ENV}).', value: { kind: 'string', doc: 'header value' } },
  bearer_token: str('Sends `Authorization: Bearer <token>`; use ${ENV} interpolation or bearer_token_file.', { secret: true }),
  bearer_token_file: pathSpec('File holding the bearer token.'),
  basic_auth_user: str('User name for HTTP basic authentication (with basic_auth_password).'),
  basic_auth_password: str('Password for HTTP basic authentication; or basic_auth_password_file.', { secret: true }),
  basic_auth_password_file: pathSpec('File holding the basic authentication password.'),
  api_key: str('Sent in the `api_key_header` header; or api_key_file.', { secret: true }),
  api_key_file: pathSpec('File holding the API key.'),
  api_key_header: str('Header that carries `api_key`.', { default: 'X-API-Key' }),
  timeout: dur('Request timeout.', '30s', 0.001),
  max_retry_after: dur('Longest wait a `Retry-After` response header may ask for.', '5m', 0, MAX_TIMER_SECONDS),
  ca_file: pathSpec('PEM CA bundle to verify an https server against (default: the system CAs).'),
  cert_file: pathSpec('PEM client certificate, for servers that require one (with key_file).'),
  key_file: pathSpec('PEM private key (unencrypted) of cert_file.'),
  server_name: str('Name sent in SNI and checked against the server certificate (default: the URL\'s host).'),
  insecure_skip_verify: bool('Do not verify the server certificate (testing only).', false),
  compress: bool('gzip the request body.', false),
});

export type HttpTransportConfig = ConfigOf<typeof HTTP_TRANSPORT_FIELDS>;

/** Checks the schema kinds cannot express (keys relative to the output). */
export function checkHttpTransport(c: HttpTransportConfig): FieldProblem[] {
  const out: FieldProblem[] = [];
  try {
    const u = new URL(c.url);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('scheme');
  } catch {
    out.push({ key: 'url', message: `expected an http:// or https:// URL, got ${JSON.stringify(c.url)}` });
  }
  if (c.timeout * 1000 > 2 ** 31 - 1) out.push({ key: 'timeout', message: 'must be at most 24 days' });
  if ((c.cert_file === undefined) !== (c.key_file === undefined)) out.push({ key: c.cert_file === undefined ? 'cert_file' : 'key_file', message: 'cert_file and key_file go together' });
  if ((c.basic_auth_user === undefined) !== (c.basic_auth_password === undefined)) out.push({ key: c.basic_auth_user === undefined ? 'basic_auth_user' : 'basic_auth_password', message: 'basic_auth_user and basic_auth_password go together' });
  const schemes = [c.bearer_token, c.basic_auth_user].filter((x) => x !== undefined).length;
  if (schemes > 1) out.push({ key: 'bearer_token', message: 'set either bearer_token or basic_auth_user, not both (both use the Authorization header)' });
  return out;
}

/** Test seams; not configuration. */
export interface HttpTransportDeps {
  /** Clock for `Retry-After` dates, in ms since the epoch. Default `Date.now`. */
  now?: () => number;
}

/** What an output asks of the transport beyond its configuration. */
export interface HttpTransportOptions {
  /** Characters of an error response body quoted in the error (default 256). */
  errorBodyChars?: number;
}

/** Characters of a response body quoted in an error string (default). */
const BODY_SNIPPET_CHARS = 256;

/**
 * `: <the start of body>` for an error string: at most `chars` characters, runs of control
 * characters (newlines) as one space, `...` when cut; empty for an empty body.
 */
export function bodySnippet(body: Buffer, chars = BODY_SNIPPET_CHARS, redact?: (text: string) => string): string {
  if (body.length === 0) return '';
  // With a redactor, a little more is read and redacted before the cut, so that a secret
  // across the cut does not leave its first characters in the snippet.
  let s = body.toString('utf8', 0, Math.min(body.length, chars * 4 + (redact !== undefined ? 1024 : 0)));
  if (redact !== undefined) s = redact(s);
  s = s.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim();
  if (s === '') return '';
  const cut = s.length > chars || body.length > chars * 4;
  return `: ${s.slice(0, chars)}${cut ? '...' : ''}`;
}
/**
 * What to hide of a sensitive header's value: the value, and the credential in it after an
 * authentication scheme (`Splunk <token>`, `ApiKey <key>`, `Bearer <token>`, `Token`,
 * `Negotiate`; for `Basic`, the password it encodes too), since a server may echo the
 * credential alone.
 */
export function headerSecrets(value: string): string[] {
  const v = value.trim();
  if (v.length < 4) return [];
  const out = [v];
  // Only after an authentication scheme: `X-Auth-Scheme: token value` must not hide "value".
  const m = /^(bearer|basic|splunk|apikey|token|negotiate)\s+(\S+)$/i.exec(v);
  if (m !== null && m[2]!.length >= 4) {
    out.push(m[2]!);
    if (m[1]!.toLowerCase() === 'basic') {
      const decoded = Buffer.from(m[2]!, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      if (colon >= 0 && decoded.length - colon - 1 >= 4) out.push(decoded.slice(colon + 1));
    }
  }
  return out;
}

/** Bytes of a 2xx response body kept when the output asks for it (a `_bulk` answer of a large batch is a few MB). */
const SUCCESS_BODY_LIMIT = 32 * 1024 * 1024;
/** Bytes of an error response body read before giving up on it (and its connection). */
const BODY_READ_LIMIT = 64 * 1024;
const SENSITIVE_NAME = /authorization|cookie|token|key|secret|password|auth/i;

/**
 * Milliseconds a `Retry-After` value asks to wait, capped at `capMs`; undefined when absent
 * or unreadable. Accepts delay-seconds (`120`) and HTTP dates (IMF-fixdate, RFC 850,
 * asctime; a date in the past gives 0).
 */
export function parseRetryAfter(value: string | string[] | undefined, nowMs: number, capMs: number): number | undefined {
  if (Array.isArray(value)) value = value[0];
  if (value === undefined) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Math.min(Number(v) * 1000, capMs);
  let when = NaN;
  if (/^[A-Za-z]{3}, \d{2} [A-Za-z]{3} \d{4} \d{2}:\d{2}:\d{2} GMT$/.test(v)) when = Date.parse(v);
  else if (/^[A-Za-z]+, \d{2}-[A-Za-z]{3}-\d{2} \d{2}:\d{2}:\d{2} GMT$/.test(v)) when = Date.parse(v);
  else if (/^[A-Za-z]{3} [A-Za-z]{3} [ \d]\d \d{2}:\d{2}:\d{2} \d{4}$/.test(v)) when = Date.parse(`${v} GMT`);
  if (Number.isNaN(when)) return undefined;
  return Math.min(Math.max(0, when - nowMs), capMs);
}

/**
 * Whether a whole-request status says the URL does not name the API (404, 405, or a 3xx
 * the transport does not follow: a wrong path, a proxy in front, http redirected to
 * https): a mistake in the output's `url`, never in the events. The outputs retry these
 * slowly, as a refused credential, instead of dead-lettering every event they send while
 * the URL is wrong.
 */
export function wrongEndpointStatus(status: number | undefined): boolean {
  return status !== undefined && (status === 404 || status === 405 || (status >= 300 && status <= 399));
}

/** Whether the receiver refused a request for its size (413): smaller requests may go through. */
export function tooLarge<R extends SendResult>(r: R): r is Extract<R, { status: 'rejected' }> {
  return r.status === 'rejected' && r.reason === 'http_status_413';
}

/** The reason code of a rejected status. */
export function httpStatusReason(status: number): string {
  return `http_status_${status}`;
}

/**
 * Whether a response status means `retry`: 408 (the server timed out waiting for our
 * request: transient like a network timeout), 425 (too early: replay later), 429 and 5xx.
 */
export function isRetryStatus(status: number): boolean {
  return status === 429 || status === 408 || status === 425 || (status >= 500 && status <= 599);
}

const TLS_CODE = /^(ERR_TLS_|ERR_SSL_|CERT_|DEPTH_ZERO_|SELF_SIGNED_|UNABLE_TO_|HOSTNAME_|ERR_OSSL_)/;

/**
 * What a send returns: the outcome; the status of any answer that is not 2xx (the output
 * decides what a 401 or a wrongEndpointStatus() means for it); and with `wantBody` the
 * response body (on `delivered` whole, with its status; on another status its first
 * 64 KiB: a receiver whose error answers say which event was wrong, Splunk HEC).
 */
export type TransportResult = SendResult & { body?: Buffer; httpStatus?: number };

export class HttpTransport {
  private readonly options: HttpTransportConfig;
  private readonly now: () => number;
  private readonly timeoutMs: number;
  private readonly maxRetryAfterMs: number;
  private readonly compress: 'none' | 'gzip';
  private url: URL | null = null;
  /** The URL as error strings show it: no user info, no query. */
  private target = '';
  private headers: Record<string, string> = {};
  private secrets: string[] = [];
  private agent: http.Agent | null = null;
  private started = false;
  private closed = false;
  private readonly pending = new Set<http.ClientRequest>();

  /**
   * @param label names the user of this transport in every error (`http output siem`).
   * @param contentType the request body's type.
   */
  constructor(
    private readonly label: string,
    config: HttpTransportConfig,
    private readonly contentType: string,
    deps: HttpTransportDeps = {},
    private readonly extra: HttpTransportOptions = {},
  ) {
    // The schema checked and defaulted every option; only units change here.
    this.options = config;
    this.now = deps.now ?? Date.now;
    this.timeoutMs = Math.max(1, Math.round(config.timeout * 1000));
    this.maxRetryAfterMs = Math.round(config.max_retry_after * 1000);
    this.compress = config.compress ? 'gzip' : 'none';
  }

  async start(): Promise<void> {
    if (this.started) return;
    const fail = (msg: string): never => {
      throw new Error(`${this.label}: ${this.redact(msg)}`);
    };
    const o = this.options;
    const token = o.bearer_token?.trim();
    this.secrets = [];
    if (token !== undefined) {
      if (token === '') fail('bearer_token is empty');
      this.secrets.push(token);
    }
    for (const [k, v] of Object.entries(o.headers ?? {})) if (SENSITIVE_NAME.test(k)) this.secrets.push(...headerSecrets(v));
    const apiKey = o.api_key?.trim();
    if (apiKey !== undefined) {
      if (apiKey === '') fail('api_key is empty');
      this.secrets.push(apiKey);
    }
    let basic: string | undefined;
    if (o.basic_auth_user !== undefined && o.basic_auth_password !== undefined) {
      if (o.basic_auth_user.includes(':')) fail('basic_auth_user cannot contain ":"');
      basic = Buffer.from(`${o.basic_auth_user}:${o.basic_auth_password}`, 'utf8').toString('base64');
      for (const s of [o.basic_auth_password, basic]) if (s.length >= 4) this.secrets.push(s);
    }

    let url: URL;
    try {
      url = new URL(o.url);
    } catch {
      return fail(`url is not a valid URL`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') fail(`url must be http:// or https://, got ${url.protocol}`);
    if (url.username !== '' || url.password !== '') {
      let decoded = url.password;
      try {
        decoded = decodeURIComponent(url.password);
      } catch {
        // keep the encoded form only
      }
      for (const s of [url.password, decoded]) if (s.length >= 4) this.secrets.push(s);
    }
    for (const [k, v] of url.searchParams) {
      if (SENSITIVE_NAME.test(k) && v.length >= 4) this.secrets.push(v, encodeURIComponent(v));
    }

    const headers: Record<string, string> = {
      'content-type': this.contentType,
      'user-agent': 'cefd',
    };
    for (const [k, v] of Object.entries(o.headers ?? {})) {
      const name = k.toLowerCase();
      try {
        http.validateHeaderName(name);
        http.validateHeaderValue(name, v);
      } catch {
        fail(`header ${JSON.stringify(k)}: invalid name or value`);
      }
      if (name === 'content-length' || name === 'content-encoding' || name === 'transfer-encoding') continue;
      headers[name] = v;
    }
    if (token) {
      try {
        http.validateHeaderValue('authorization', `Bearer ${token}`);
      } catch {
        fail('bearer_token contains characters not allowed in a header');
      }
      headers['authorization'] = `Bearer ${token}`;
    }
    if (basic !== undefined) headers['authorization'] = `Basic ${basic}`;
    if (apiKey !== undefined) {
      const name = o.api_key_header.toLowerCase();
      try {
        http.validateHeaderName(name);
        http.validateHeaderValue(name, apiKey);
      } catch {
        fail('api_key or api_key_header contains characters not allowed in a header');
      }
      headers[name] = apiKey;
    }
    if (this.compress === 'gzip') headers['content-encoding'] = 'gzip';

    if (url.protocol === 'https:') {
      const read = async (what: string, path: string | undefined) => {
        if (path === undefined || path === '') return undefined;
        try {
          return await readFile(path);
        } catch (err) {
          return fail(`cannot read ${what} ${path}: ${errorText(err)}`);
        }
      };
      const ca = await read('ca_file', o.ca_file);
      const cert = await read('cert_file', o.cert_file);
      const key = await read('key_file', o.key_file);
      if ((cert === undefined) !== (key === undefined)) fail('cert_file and key_file go together');
      try {
        // Bad PEM or a key that does not match the certificate: say so now, not per request.
        createSecureContext({ ...(ca !== undefined ? { ca } : {}), ...(cert !== undefined ? { cert, key } : {}) });
      } catch (err) {
        fail(`ca_file/cert_file/key_file cannot be used: ${errorText(err)}`);
      }
      this.agent = new https.Agent({
        keepAlive: true,
        ...(ca !== undefined ? { ca } : {}),
        ...(cert !== undefined ? { cert, key } : {}),
        ...(o.server_name ? { servername: o.server_name } : {}),
        rejectUnauthorized: !o.insecure_skip_verify,
      });
    } else {
      this.agent = new http.Agent({ keepAlive: true });
    }
    this.url = url;
    this.target = `${url.protocol}//${url.host}${url.pathname}`;
    this.headers = headers;
    this.closed = false;
    this.started = true;
  }

  /**
   * POSTs `body` (compressed here when `compress` is set). Never throws: failures are
   * results. With `wantBody`, a `delivered` result carries the response body. `signal`
   * aborts the request (shutdown deadline): the result is `retry`.
   */
  async send(body: Buffer, wantBody = false, signal?: AbortSignal): Promise<TransportResult> {
    try {
      if (this.closed) return this.retry('the output is closed');
      if (signal?.aborted === true) return this.retry(ABORTED);
      if (!this.started || this.url === null || this.agent === null) return this.retry('the output is not started');
      if (this.compress === 'gzip') {
        body = await gzipAsync(body);
        // Closed while compressing: no request after close (it would go out through Node's
        // global agent, without this output's TLS options, and outlive the output).
        if (this.closed || this.agent === null) return this.retry('the output is closed');
      }
      return await this.post(body, wantBody, signal);
    } catch (err) {
      return this.retry(`unexpected error: ${errorText(err)}`);
    }
  }

  /** Aborts a request in flight (its send reports `retry`) and closes idle connections. */
  async close(): Promise<void> {
    this.closed = true;
    this.started = false;
    for (const req of this.pending) req.destroy(new Error('the output was closed'));
    this.pending.clear();
    this.agent?.destroy();
    this.agent = null;
  }

  // ---------------------------------------------------------------------------------

  private post(body: Buffer, wantBody: boolean, signal?: AbortSignal): Promise<TransportResult> {
    return new Promise<TransportResult>((resolve) => {
      let settled = false;
      let status = 0;
      let retryAfter: string | string[] | undefined;
      const chunks: Buffer[] = [];
      let bodyBytes = 0;
      let req: http.ClientRequest | null = null;
      const finish = (r: TransportResult) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        if (req !== null) this.pending.delete(req);
        resolve(r);
      };
      // A 2xx whose body (asked for) did not arrive whole: the items' outcome is unknown, send again.
      const fromStatus = (): TransportResult => {
        if (status >= 200 && status <= 299) return this.retry(`HTTP ${status}, but the response body did not arrive whole`);
        const errBody = Buffer.concat(chunks);
        const r = this.statusResult(status, retryAfter, errBody);
        return wantBody ? { ...r, body: errBody, httpStatus: status } : { ...r, httpStatus: status };
      };
      const timer = setTimeout(() => {
        if (status !== 0) finish(fromStatus()); // status known, body too slow: decide on the status
        else finish(this.retry(`no response within ${this.timeoutMs} ms (timeout)`));
        req?.destroy(new Error('timeout'));
      }, this.timeoutMs);
      const onAbort = () => {
        finish(this.retry(ABORTED));
        req?.destroy(new Error('aborted'));
      };
      if (signal !== undefined) {
        if (signal.aborted) {
          finish(this.retry(ABORTED));
          return;
        }
        signal.addEventListener('abort', onAbort, { once: true });
      }

      try {
        const mod = this.url!.protocol === 'https:' ? https : http;
        req = mod.request(this.url!, {
          method: 'POST',
          agent: this.agent!,
          headers: { ...this.headers, 'content-length': String(body.length) },
        });
      } catch (err) {
        finish(this.retry(`cannot make the request: ${errorText(err)}`));
        return;
      }
      this.pending.add(req);
      const r = req;
      r.on('error', (err) => {
        if (status !== 0) finish(fromStatus());
        else finish(this.retry(this.describeNetworkError(err)));
      });
      r.on('response', (res) => {
        status = res.statusCode ?? 0;
        retryAfter = res.headers['retry-after'];
        if (status >= 200 && status <= 299) {
          if (!wantBody) {
            res.resume(); // drain so the connection can be reused
            finish(DELIVERED);
            // A body that never ends (a byte now and then) must not hold the connection.
            const drainTimer = setTimeout(() => res.destroy(), this.timeoutMs);
            drainTimer.unref();
            res.once('close', () => clearTimeout(drainTimer));
            return;
          }
          const ok: Buffer[] = [];
          let okBytes = 0;
          res.on('data', (c: Buffer) => {
            okBytes += c.length;
            if (okBytes <= SUCCESS_BODY_LIMIT) {
              ok.push(c);
              return;
            }
            // Delivered, with an answer too large to keep: its first part goes to the output
            // (elasticsearch cannot read its items from it and sends them again).
            finish({ status: 'delivered', body: Buffer.concat(ok), httpStatus: status });
            res.destroy();
          });
          res.on('end', () => finish({ status: 'delivered', body: Buffer.concat(ok), httpStatus: status }));
          res.on('error', (err) => finish(this.retry(`reading the response: ${errorText(err)}`)));
          return;
        }
        res.on('data', (chunk: Buffer) => {
          if (bodyBytes < BODY_READ_LIMIT) chunks.push(chunk);
          bodyBytes += chunk.length;
          if (bodyBytes >= BODY_READ_LIMIT) {
            finish(fromStatus());
            res.destroy(); // don't read megabytes of an error page
          }
        });
        res.on('end', () => finish(fromStatus()));
        res.on('error', () => finish(fromStatus()));
        res.on('close', () => finish(fromStatus()));
      });
      r.end(body);
    });
  }

  private statusResult(status: number, retryAfter: string | string[] | undefined, body: Buffer): SendResult {
    const text = `HTTP ${status}${bodySnippet(body, this.extra.errorBodyChars, (t) => this.redact(t))}`;
    if (isRetryStatus(status)) {
      const ms = parseRetryAfter(retryAfter, this.now(), this.maxRetryAfterMs);
      const r = this.retry(text);
      return ms === undefined ? r : { ...r, retryAfterMs: ms };
    }
    return { status: 'rejected', reason: httpStatusReason(status), error: this.redact(`${this.label}: POST ${this.target}: ${text}`) };
  }

  private describeNetworkError(err: unknown): string {
    const e = err as NodeJS.ErrnoException;
    const code = typeof e?.code === 'string' ? e.code : '';
    if (TLS_CODE.test(code) || /certificate|ssl|tls/i.test(e?.message ?? '')) {
      return `TLS error: ${e.message}${code && !e.message.includes(code) ? ` (${code})` : ''}`;
    }
    return `network error: ${errorText(err)}`;
  }

  private retry(error: string): Extract<SendResult, { status: 'retry' }> {
    const where = this.target === '' ? '' : `POST ${this.target}: `;
    return { status: 'retry', error: this.redact(`${this.label}: ${where}${error}`) };
  }

  /**
   * Replaces every secret (token, sensitive header values and the credential in them, URL
   * password) in `text`. Outputs pass through it what they quote of an answer (a HEC
   * `text`, an Elasticsearch item's reason): a server may echo the credential.
   */
  redact(text: string): string {
    let out = text;
    for (const s of this.secrets) if (s !== '') out = out.split(s).join('[redacted]');
    return out;
  }
}
