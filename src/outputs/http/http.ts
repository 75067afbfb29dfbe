/**
 * The `http` output: POSTs each batch to a URL, as NDJSON or as a JSON array.
 *
 * Outcomes (the output never retries or sleeps by itself; the runner does, see types.ts):
 * - 2xx: `delivered`.
 * - 429, 408 and 5xx: `retry`, with `retryAfterMs` when the response has a `Retry-After`
 *   header (delay-seconds or an HTTP date), capped at `max_retry_after`. 408 (the server
 *   timed out waiting for our request) is transient like a network timeout, so it is
 *   retried rather than dead-lettered.
 * - Any other status (other 4xx, 3xx: redirects are not followed, 1xx/6xx oddities):
 *   `rejected` with reason `http_status_<code>` (`http_status_400`, `http_status_404`...).
 * - Network errors (refused, reset, DNS, TLS handshake or certificate errors) and the
 *   `timeout` deadline: `retry`.
 *
 * Error strings name the URL without its user info and query, give the status and the
 * start of the response body (at most 256 characters, control characters removed). The
 * bearer token, the URL's password and the values of sensitive-looking headers and query
 * parameters (Authorization, Cookie, and names containing token, key, secret, password or
 * auth) are replaced by `[redacted]` in every error string, in case a server echoes them.
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
import { errorText, isEmptyBatch, jsonArrayOf, ndjsonOf } from '../shared/encode.js';
import { DELIVERED, type Batch, type Output, type SendResult } from '../types.js';
import type { HttpConfig, HttpFormat } from './config.js';

const gzipAsync = promisify(gzip);

export type { HttpConfig, HttpFormat } from './config.js';

/** Test seams; not configuration. */
export interface HttpOutputDeps {
  /** Clock for `Retry-After` dates, in ms since the epoch. Default `Date.now`. */
  now?: () => number;
}

/** Characters of a response body quoted in an error string. */
const BODY_SNIPPET_CHARS = 256;
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

/** The reason code of a rejected status. */
export function httpStatusReason(status: number): string {
  return `http_status_${status}`;
}

/** Whether a response status means `retry` (429, 408, 5xx). */
export function isRetryStatus(status: number): boolean {
  return status === 429 || status === 408 || (status >= 500 && status <= 599);
}

const TLS_CODE = /^(ERR_TLS_|ERR_SSL_|CERT_|DEPTH_ZERO_|SELF_SIGNED_|UNABLE_TO_|HOSTNAME_|ERR_OSSL_)/;

export class HttpOutput implements Output {
  readonly type = 'http';
  private readonly options: HttpConfig;
  private readonly now: () => number;
  private readonly format: HttpFormat;
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

  constructor(
    readonly name: string,
    config: HttpConfig,
    deps: HttpOutputDeps = {},
  ) {
    // The schema (config.ts) checked and defaulted every option; only units change here.
    this.options = config;
    this.now = deps.now ?? Date.now;
    this.format = config.format;
    this.timeoutMs = Math.max(1, Math.round(config.timeout * 1000));
    this.maxRetryAfterMs = Math.round(config.max_retry_after * 1000);
    this.compress = config.compress ? 'gzip' : 'none';
  }

  async start(): Promise<void> {
    if (this.started) return;
    const fail = (msg: string): never => {
      throw new Error(`http output ${this.name}: ${this.redact(msg)}`);
    };
    const o = this.options;
    const token = o.bearer_token?.trim();
    this.secrets = [];
    if (token !== undefined) {
      if (token === '') fail('bearer_token is empty');
      this.secrets.push(token);
    }
    for (const [k, v] of Object.entries(o.headers ?? {})) if (SENSITIVE_NAME.test(k) && v.trim().length >= 4) this.secrets.push(v.trim());

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
      'content-type': this.format === 'ndjson' ? 'application/x-ndjson' : 'application/json',
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

  async send(batch: Batch): Promise<SendResult> {
    try {
      if (isEmptyBatch(batch)) return DELIVERED;
      if (this.closed) return this.retry('the output is closed');
      if (!this.started || this.url === null || this.agent === null) return this.retry('the output is not started');
      let body = this.format === 'ndjson' ? ndjsonOf(batch) : jsonArrayOf(batch);
      if (this.compress === 'gzip') body = await gzipAsync(body);
      return await this.post(body);
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

  private post(body: Buffer): Promise<SendResult> {
    return new Promise<SendResult>((resolve) => {
      let settled = false;
      let status = 0;
      let retryAfter: string | string[] | undefined;
      const chunks: Buffer[] = [];
      let bodyBytes = 0;
      let req: http.ClientRequest | null = null;
      const finish = (r: SendResult) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (req !== null) this.pending.delete(req);
        resolve(r);
      };
      const fromStatus = () => this.statusResult(status, retryAfter, Buffer.concat(chunks));
      const timer = setTimeout(() => {
        if (status !== 0) finish(fromStatus()); // status known, body too slow: decide on the status
        else finish(this.retry(`no response within ${this.timeoutMs} ms (timeout)`));
        req?.destroy(new Error('timeout'));
      }, this.timeoutMs);

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
          res.resume(); // drain so the connection can be reused
          finish(DELIVERED);
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
    const text = `HTTP ${status}${this.snippet(body)}`;
    if (isRetryStatus(status)) {
      const ms = parseRetryAfter(retryAfter, this.now(), this.maxRetryAfterMs);
      const r = this.retry(text);
      return ms === undefined ? r : { ...r, retryAfterMs: ms };
    }
    return { status: 'rejected', reason: httpStatusReason(status), error: this.redact(`http output ${this.name}: POST ${this.target}: ${text}`) };
  }

  private snippet(body: Buffer): string {
    if (body.length === 0) return '';
    let s = body.toString('utf8', 0, Math.min(body.length, BODY_SNIPPET_CHARS * 4));
    s = s.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim();
    if (s === '') return '';
    const cut = s.length > BODY_SNIPPET_CHARS || body.length > BODY_SNIPPET_CHARS * 4;
    return `: ${s.slice(0, BODY_SNIPPET_CHARS)}${cut ? '...' : ''}`;
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
    return { status: 'retry', error: this.redact(`http output ${this.name}: ${where}${error}`) };
  }

  /** Replaces every secret (token, sensitive header values, URL password) in `text`. */
  private redact(text: string): string {
    let out = text;
    for (const s of this.secrets) if (s !== '') out = out.split(s).join('[redacted]');
    return out;
  }
}
