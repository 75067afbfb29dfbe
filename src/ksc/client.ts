/**
 * KSC Open API client (docs/reference/ksc-open-api.md §0-§2).
 *
 * - Transport: `POST https://host:13299/api/v1.0/Class.Method` with a JSON body of the input
 *   parameters; the answer is `PxgRetVal` plus out parameters, or `{"PxgError":{...}}` (§0.2).
 * - TLS: the server certificate is verified, always, unless `insecure: true` (logged loudly
 *   on every connection). Either against a CA file (`caFile`/`ca`, standard chain and host
 *   name checks) or against a SHA-256 pin of the leaf certificate (`pinSha256`, the form
 *   `openssl x509 -noout -fingerprint -sha256` prints; KSC's self-signed klserver.cer is the
 *   usual target). The pin is checked before the socket is handed to HTTP, so no byte of a
 *   request, and no credential, reaches an unverified server.
 * - Session: `auth: 'session'` (default) logs in with `Session.StartSession` + KSCBasic and
 *   sends the token in `X-KSC-Session` (§1.2): it survives a dropped TCP connection.
 *   `auth: 'login'` uses the connection-bound `/api/v1.0/login` (§1.1). Either way: on 401 or
 *   403 the client logs in again once and repeats the call.
 * - One call at a time per client (§0 "one call at a time per connection"): calls queue, and
 *   the agent keeps at most one socket.
 * - Per-request timeout; retries with capped exponential backoff and jitter on transport
 *   errors, timeouts and 5xx, never on 4xx or PxgError. Calls that are not idempotent
 *   (`RunTask`, iterator steps) are retried only when the request cannot have reached the
 *   server (connection refused, a stale keep-alive socket, a timeout while the request
 *   still waited for the one socket). The login is idempotent (5xx and timeouts retried).
 *   Calls that create an iterator or accessor are retried on 5xx answers but not after a
 *   timeout, and what a late answer created is released (the socket waits for that answer,
 *   so calls queued behind it may time out unsent: `KscTransportError` with `beforeSend`).
 * - gzip/deflate answers (`Accept-Encoding: gzip, deflate`).
 */
import https from 'node:https';
import tls from 'node:tls';
import { X509Certificate, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Duplex } from 'node:stream';
import zlib from 'node:zlib';
import {
  KscAuthError,
  KscError,
  KscHttpError,
  KscInputError,
  KscProtocolError,
  KscPxgError,
  KscSessionError,
  KscTimeoutError,
  KscTlsError,
  KscTransportError,
  type KscErrorContext,
} from './errors.js';
import { decodeParams, decodeValue, encodeArgs, type Decoded, type JsValue } from './params.js';
import { redactingLogger, registerPassword, registerSecret, silentLogger, type KscCredentials, type KscLogger } from './secrets.js';

export const DEFAULT_KSC_PORT = 13299;

export interface KscTlsOptions {
  /** PEM file with the CA (or the server's own self-signed certificate) to trust. */
  caFile?: string;
  /** PEM text, instead of `caFile`. */
  ca?: string | Buffer;
  /** SHA-256 fingerprint of the server's leaf certificate: 64 hex digits, colons optional, or base64 of the 32 bytes. */
  pinSha256?: string;
  /** Accept any certificate. Logged as a warning on every new connection. */
  insecure?: boolean;
  /** SNI / host name to verify in CA mode, when it differs from the URL host. */
  servername?: string;
}

export interface KscClientOptions {
  /** `host:port` (the port defaults to 13299). */
  url: string;
  /** Credentials, or a function that reads them when a login is needed. */
  credentials: KscCredentials | (() => KscCredentials);
  tls: KscTlsOptions;
  /** Virtual server name (`X-KSC-VServer`); empty for the main server. */
  vserver?: string;
  auth?: 'session' | 'login';
  /** Per-request timeout, ms (default 30000). */
  timeoutMs?: number;
  /** Retries after the first attempt for transient failures (default 3). */
  retries?: number;
  /** First backoff, ms (default 500); doubles each retry up to `maxBackoffMs` (default 10000). */
  backoffMs?: number;
  maxBackoffMs?: number;
  /**
   * After a refused login, further calls fail at once with the same error for this long
   * (ms, default 60000) instead of trying again: repeated bad logins can lock the KSC account.
   */
  authFailureHoldMs?: number;
  /** Connection name, for logs. */
  name?: string;
  logger?: KscLogger;
  /** Most bytes of one answer, as received and once decompressed (default 256 MiB): larger is a protocol error. */
  maxAnswerBytes?: number;
}

export interface CallOptions {
  /** False for calls with side effects (RunTask) or cursor steps (GetNextTask). Default true. */
  idempotent?: boolean;
  timeoutMs?: number;
  /**
   * The call creates server state (a tasks iterator, a chunk accessor) and this frees it.
   * Such a call is repeated only when KSC cannot have made anything (an HTTP 5xx answer,
   * a connection refused before sending), never after a timeout; an answer that arrives
   * after the timeout is handed to `release`, so what KSC created is not left open.
   */
  release?: (answer: Record<string, unknown>) => void;
}

/** When a failed call is repeated: always (idempotent), only if never sent, or if KSC made nothing. */
type RetryPolicy = 'idempotent' | 'unsent' | 'creates';

/** How long an answer that arrived after its timeout is still waited for (to release what it created). */
const LATE_ANSWER_MS = 60_000;

/** Most bytes of one answer, as received and once decompressed (KscClientOptions.maxAnswerBytes). */
const MAX_ANSWER_BYTES = 256 * 1024 * 1024;

/** A KSC task as the tasks iterator and GetTask describe it (§2.4, §3.2). */
export interface KscTask {
  /** `TASK_UNIQUE_ID`: the id RunTask and friends take. */
  id: string;
  /** `TASK_INFO_PARAMS.DisplayName`. */
  displayName: string;
  /** `TASK_NAME`: the task type (e.g. `KLNAG_TASK_SHOW_MSG`, `ODS`). */
  taskType: string | undefined;
  /** `TASKID_PRODUCT_NAME` (`KES`, `KESL`, `1093`...). */
  product: string | undefined;
  /** `TASKID_VERSION`. */
  version: string | undefined;
  component: string | undefined;
  /** `TASK_INFO_PARAMS.PRTS_TASK_GROUPID`: the administration group whose devices (with subgroups) are the scope; undefined or -1 for a task on a device selection. */
  groupId: number | undefined;
}

/** One installed Kaspersky product of a host (§2.3). */
export interface KscHostProduct {
  /** Product key (`KES`, `1103` = Network Agent). */
  product: string;
  /** Version key (`11.0.0.0`). */
  version: string;
  displayName: string | undefined;
  /** Full build when KSC sends it (`ProdVersion`). */
  build: string | undefined;
}

/** One program or patch of a host's software inventory (§2.8). */
export interface KscInventoryItem {
  name: string;
  version: string;
  publisher: string;
  /** `YYYY-MM-DD`, from InstallDate `YYYYMMDD` (null when absent or malformed). */
  installDate: string | null;
}

/** InstallDate of GetHostInvProducts is `YYYYMMDD` (§2.8); a datetime value is accepted too. */
export function parseInstallDate(v: Decoded | undefined): string | null {
  if (typeof v !== 'string') return null;
  const m = /^(\d{4})(\d{2})(\d{2})$/.exec(v.trim());
  if (m !== null) {
    const [, y, mo, d] = m;
    const t = Date.UTC(Number(y), Number(mo) - 1, Number(d));
    return Number.isNaN(t) || new Date(t).getUTCDate() !== Number(d) ? null : `${y}-${mo}-${d}`;
  }
  return /^\d{4}-\d{2}-\d{2}T/.test(v) ? v.slice(0, 10) : null;
}

export function parseServerAddress(url: string): { host: string; port: number } {
  const m = /^(?:https:\/\/)?([^/:\s]+)(?::(\d{1,5}))?\/?$/.exec(url.trim());
  if (m === null) throw new KscInputError('url', `KSC URL "${url}" is not host:port`);
  const port = m[2] === undefined ? DEFAULT_KSC_PORT : Number(m[2]);
  if (port < 1 || port > 65535) throw new KscInputError('url', `KSC URL "${url}": port must be 1-65535`);
  return { host: m[1]!, port };
}

/** Normalizes a pin to 64 lowercase hex digits; throws KscInputError on anything else. */
export function normalizePin(pin: string): string {
  const s = pin.trim().replace(/^sha256[:/]/i, '');
  const hex = s.replace(/:/g, '');
  if (/^[0-9a-fA-F]{64}$/.test(hex)) return hex.toLowerCase();
  if (/^[A-Za-z0-9+/]{43}=$/.test(s)) return Buffer.from(s, 'base64').toString('hex');
  throw new KscInputError('pinSha256', 'the certificate pin must be a SHA-256 fingerprint: 64 hex digits (colons allowed) or 44 base64 characters');
}

/** SHA-256 fingerprint (hex, lowercase) of a PEM or DER certificate. */
export function certificateFingerprint(cert: string | Buffer): string {
  return new X509Certificate(cert).fingerprint256.replace(/:/g, '').toLowerCase();
}

const TLS_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'INVALID_CA',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'HOSTNAME_MISMATCH',
]);
const BEFORE_SEND_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL']);

class PinMismatch extends Error {
  constructor(readonly got: string) {
    super(`the server certificate's SHA-256 fingerprint ${got} does not match the pinned one`);
  }
}

/**
 * An HTTPS agent with one socket that verifies the server before handing the socket to
 * HTTP: Node's `checkServerIdentity` is not called when the chain check fails (always, for
 * a self-signed KSC certificate), so the pin is checked on `secureConnect`, and the socket
 * reaches the request only after that.
 */
class KscAgent extends https.Agent {
  constructor(
    private readonly tlsOpts: { ca?: string | Buffer; pin?: string; insecure: boolean; servername?: string },
    private readonly onInsecure: () => void,
  ) {
    super({ keepAlive: true, maxSockets: 1, maxFreeSockets: 1, keepAliveMsecs: 10_000 });
  }

  override createConnection(options: https.RequestOptions, cb?: (err: Error | null, s: Duplex) => void): Duplex | null | undefined {
    const host = String(options.host ?? options.hostname ?? 'localhost');
    const verifyChain = this.tlsOpts.ca !== undefined || (this.tlsOpts.pin === undefined && !this.tlsOpts.insecure);
    const servername = this.tlsOpts.servername ?? (/^\d+\.\d+\.\d+\.\d+$/.test(host) ? undefined : host);
    const sock = tls.connect({
      host,
      port: Number(options.port),
      ...(servername !== undefined ? { servername } : {}),
      ...(this.tlsOpts.ca !== undefined ? { ca: this.tlsOpts.ca } : {}),
      rejectUnauthorized: verifyChain,
      ...(this.tlsOpts.servername !== undefined ? { checkServerIdentity: (_h: string, cert: tls.PeerCertificate) => tls.checkServerIdentity(this.tlsOpts.servername!, cert) } : {}),
    });
    let settled = false;
    const settle = (err: Error | null): void => {
      if (settled) return;
      settled = true;
      sock.removeListener('error', onError);
      if (err !== null) {
        sock.destroy();
        cb?.(err, sock);
      } else cb?.(null, sock);
    };
    const onError = (e: Error): void => settle(e);
    sock.once('error', onError);
    sock.once('secureConnect', () => {
      if (this.tlsOpts.pin !== undefined) {
        const raw = sock.getPeerCertificate(false)?.raw;
        const got = raw === undefined ? '' : certificateFingerprint(raw);
        if (got !== this.tlsOpts.pin) return settle(new PinMismatch(got));
      }
      if (this.tlsOpts.insecure && this.tlsOpts.pin === undefined && this.tlsOpts.ca === undefined) this.onInsecure();
      settle(null);
    });
    return undefined;
  }
}

interface RawAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Methods that must not be repeated once they may have reached the server. */
const NOT_IDEMPOTENT = /^(Tasks\.(RunTask|SuspendTask|ResumeTask|CancelTask|GetNextTask|AddTask|UpdateTask|DeleteTask|AddHostToTask)|HostTasks\.GetNextTask)$/;

export class KscClient {
  readonly server: string;
  private readonly host: string;
  private readonly port: number;
  private readonly agent: KscAgent;
  private readonly log: KscLogger;
  private readonly auth: 'session' | 'login';
  private readonly timeoutMs: number;
  private readonly retries: number;
  private readonly backoffMs: number;
  private readonly maxBackoffMs: number;
  private session: string | undefined;
  private loggedIn = false;
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;
  private authFailure: { at: number; error: KscAuthError } | undefined;
  /** Counts for tests and metrics. */
  readonly stats = { requests: 0, logins: 0, retries: 0, relogins: 0, lateReleases: 0 };

  constructor(private readonly opts: KscClientOptions) {
    const { host, port } = parseServerAddress(opts.url);
    this.host = host;
    this.port = port;
    this.server = `${host}:${port}`;
    this.log = redactingLogger(opts.logger ?? silentLogger);
    this.auth = opts.auth ?? 'session';
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.retries = opts.retries ?? 3;
    this.backoffMs = opts.backoffMs ?? 500;
    this.maxBackoffMs = opts.maxBackoffMs ?? 10_000;
    const t = opts.tls ?? {};
    let ca: string | Buffer | undefined = t.ca;
    if (ca === undefined && t.caFile !== undefined) {
      try {
        ca = readFileSync(t.caFile);
      } catch (e) {
        throw new KscTlsError(`cannot read the CA file ${t.caFile}: ${(e as Error).message}`, { server: this.server });
      }
    }
    const pin = t.pinSha256 !== undefined ? normalizePin(t.pinSha256) : undefined;
    const insecure = t.insecure === true;
    if (insecure && pin === undefined && ca === undefined) {
      this.log.warn({ server: this.server, connection: opts.name }, 'KSC TLS certificate verification is OFF (insecure: true): anyone on the path can read the KSC password');
    }
    this.agent = new KscAgent(
      { ...(ca !== undefined ? { ca } : {}), ...(pin !== undefined ? { pin } : {}), insecure, ...(t.servername !== undefined ? { servername: t.servername } : {}) },
      () => this.log.warn({ server: this.server, connection: opts.name }, 'connected to KSC WITHOUT verifying its certificate (insecure: true)'),
    );
  }

  private ctx(method: string): KscErrorContext {
    return { server: this.server, method };
  }

  private credentials(): KscCredentials {
    const c = typeof this.opts.credentials === 'function' ? this.opts.credentials() : this.opts.credentials;
    registerPassword(c.password);
    return c;
  }

  /** `KSCBasic user="<b64>", pass="<b64>", internal="1"` (§1.1); domain as-is when set. */
  private basicHeader(): string {
    const c = this.credentials();
    const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
    const parts = [`user="${b64(c.user)}"`, `pass="${b64(c.password)}"`];
    if (c.domain !== undefined && c.domain !== '') parts.push(`domain="${c.domain}"`);
    parts.push(`internal="${c.internal === false ? '0' : '1'}"`);
    return `KSCBasic ${parts.join(', ')}`;
  }

  /** One HTTP exchange, no retries. */
  private exchange(method: string, path: string, body: string, headers: Record<string, string>, timeoutMs: number, late?: (a: RawAnswer) => void): Promise<RawAnswer> {
    return new Promise<RawAnswer>((resolve, reject) => {
      this.stats.requests++;
      const req = https.request({
        host: this.host,
        port: this.port,
        method: 'POST',
        path,
        agent: this.agent,
        headers: {
          'Content-Type': 'application/json',
          'Accept-Encoding': 'gzip, deflate',
          'X-KSC-RequestId': randomUUID(),
          'Content-Length': String(Buffer.byteLength(body)),
          ...(this.opts.vserver !== undefined ? { 'X-KSC-VServer': Buffer.from(this.opts.vserver, 'utf8').toString('base64') } : {}),
          ...headers,
        },
      });
      let done = false;
      let gotResponse = false;
      // The agent hands the request a socket only when its one socket is free and verified
      // (KscAgent); the request is written right after ('socket' comes just before the
      // flush). Until then nothing of it has left: a call queued behind one whose socket
      // still waits for a late answer, or behind a slow connect, times out unsent.
      let sent = false;
      req.once('socket', () => {
        sent = true;
      });
      let lateTimer: NodeJS.Timeout | undefined;
      const fail = (e: Error): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        reject(e);
      };
      const timer = setTimeout(() => {
        if (!sent) {
          fail(
            new KscTransportError(
              `the request was not sent: no connection to KSC was free within ${timeoutMs} ms (an earlier call still holds it, waiting for its answer, or connecting took that long); nothing of this call reached KSC`,
              undefined,
              true,
              this.ctx(method),
            ),
          );
          req.destroy();
          return;
        }
        fail(new KscTimeoutError(timeoutMs, this.ctx(method)));
        if (late === undefined) {
          req.destroy();
          return;
        }
        // KSC may still create what this call asks for: wait for its answer to release it.
        lateTimer = setTimeout(() => req.destroy(), LATE_ANSWER_MS);
        lateTimer.unref();
      }, timeoutMs);
      const maxAnswer = this.opts.maxAnswerBytes ?? MAX_ANSWER_BYTES;
      req.on('response', (res) => {
        gotResponse = true;
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > maxAnswer) {
            fail(new KscProtocolError(`answer larger than ${maxAnswer} bytes`, this.ctx(method)));
            req.destroy();
          } else chunks.push(c);
        });
        // The connection broke in the middle of the answer.
        const broken = (): void => fail(new KscTransportError('the connection closed before the whole answer arrived', 'ECONNRESET', false, this.ctx(method)));
        res.on('error', broken);
        res.on('aborted', broken);
        res.on('end', () => {
          if (done && lateTimer === undefined) return;
          let buf = Buffer.concat(chunks);
          const enc = String(res.headers['content-encoding'] ?? '').toLowerCase();
          let body: string;
          try {
            // The same bound after decompression: a small gzip answer can unpack to more
            // than a JS string holds (a throw outside any call, which would end the process).
            if (enc === 'gzip') buf = zlib.gunzipSync(buf, { maxOutputLength: maxAnswer });
            else if (enc === 'deflate') buf = zlib.inflateSync(buf, { maxOutputLength: maxAnswer });
            body = buf.toString('utf8');
          } catch (e) {
            if (done) clearTimeout(lateTimer);
            return fail(new KscProtocolError(`cannot read a ${enc === '' ? '' : `${enc} `}answer: ${(e as Error).message}`, this.ctx(method)));
          }
          if (done) {
            clearTimeout(lateTimer);
            late?.({ status: res.statusCode ?? 0, headers: res.headers, body });
            return;
          }
          done = true;
          clearTimeout(timer);
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body });
        });
      });
      req.on('error', (e: NodeJS.ErrnoException) => {
        if (done) return;
        if (e instanceof PinMismatch) return fail(new KscTlsError(e.message, this.ctx(method)));
        const code = e.code;
        if (code !== undefined && (TLS_CODES.has(code) || code.startsWith('ERR_SSL') || code.startsWith('ERR_TLS'))) {
          return fail(new KscTlsError(`certificate not trusted (${code}): ${e.message}`, this.ctx(method), e));
        }
        // A reset on a reused keep-alive socket may be a stale socket (request never read)
        // or a server that read it and died: only idempotent calls are retried then. An
        // error before the request had a socket (a failed connect) means it was not sent.
        const beforeSend = !sent || (code !== undefined && BEFORE_SEND_CODES.has(code) && !gotResponse);
        fail(new KscTransportError(e.message, code, beforeSend, this.ctx(method), e));
      });
      req.end(body);
    });
  }

  private parseJson(method: string, a: RawAnswer): Record<string, unknown> {
    if (a.body.trim() === '') return {};
    let v: unknown;
    try {
      v = JSON.parse(a.body);
    } catch {
      throw new KscProtocolError(`HTTP ${a.status} with a body that is not JSON`, this.ctx(method));
    }
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new KscProtocolError('the answer is not a JSON object', this.ctx(method));
    return v as Record<string, unknown>;
  }

  private pxgOf(method: string, a: RawAnswer, obj: Record<string, unknown> | undefined): KscPxgError | undefined {
    const e = obj?.['PxgError'];
    if (e === undefined || e === null || typeof e !== 'object') return undefined;
    const p = e as Record<string, unknown>;
    return new KscPxgError(
      {
        code: typeof p['code'] === 'number' ? p['code'] : -1,
        ...(typeof p['subcode'] === 'number' ? { subcode: p['subcode'] } : {}),
        ...(typeof p['module'] === 'string' ? { module: p['module'] } : {}),
        message: typeof p['message'] === 'string' ? p['message'] : 'no message',
      },
      a.status,
      this.ctx(method),
    );
  }

  private async doLogin(): Promise<void> {
    const method = this.auth === 'session' ? 'Session.StartSession' : 'login';
    const held = this.authFailure;
    if (held !== undefined && Date.now() - held.at < (this.opts.authFailureHoldMs ?? 60_000)) throw held.error;
    this.session = undefined;
    this.loggedIn = false;
    this.stats.logins++;
    // A login is safe to repeat (a session made by an attempt that timed out expires by
    // itself), so 5xx and timeouts are retried as for any idempotent call.
    const a = await this.withRetries(method, 'idempotent', async () => {
      const r = await this.exchange(method, `/api/v1.0/${method}`, this.auth === 'session' ? '{}' : '', { Authorization: this.basicHeader() }, this.timeoutMs);
      if (r.status >= 500) throw new KscHttpError(r.status, r.body, this.ctx(method));
      return r;
    });
    if (a.status === 401 || a.status === 403) {
      const detail = a.body.trim().startsWith('{') ? '' : a.body.trim().slice(0, 100);
      const err = new KscAuthError(a.status, detail, this.ctx(method));
      this.authFailure = { at: Date.now(), error: err };
      this.log.warn({ server: this.server, connection: this.opts.name, status: a.status }, 'KSC login refused; not trying again for a while');
      throw err;
    }
    this.authFailure = undefined;
    const obj = a.body.trim().startsWith('{') ? this.parseJson(method, a) : undefined;
    const pxg = this.pxgOf(method, a, obj);
    if (pxg !== undefined) throw pxg;
    if (a.status !== 200) throw new KscHttpError(a.status, a.body, this.ctx(method));
    if (this.auth === 'session') {
      const tok = obj?.['PxgRetVal'];
      if (typeof tok !== 'string' || tok === '') throw new KscProtocolError('StartSession returned no session token', this.ctx(method));
      registerSecret(tok);
      this.session = tok;
    }
    this.loggedIn = true;
    this.log.debug({ server: this.server, connection: this.opts.name, auth: this.auth }, 'logged in to KSC');
  }

  private async withRetries<T>(method: string, policy: RetryPolicy, f: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await f();
      } catch (e) {
        const unsent = e instanceof KscTransportError && e.beforeSend;
        const allowed = policy === 'idempotent' || unsent || (policy === 'creates' && e instanceof KscHttpError);
        const retriable = e instanceof KscError && e.transient && allowed && attempt < this.retries && !this.closed;
        if (!retriable) throw e;
        const wait = Math.min(this.maxBackoffMs, this.backoffMs * 2 ** attempt) * (0.5 + Math.random() / 2);
        this.stats.retries++;
        this.log.warn({ server: this.server, connection: this.opts.name, method, attempt: attempt + 1, waitMs: Math.round(wait), err: (e as Error).message }, 'KSC call failed; retrying');
        await sleep(wait);
      }
    }
  }

  private serialized<T>(f: () => Promise<T>): Promise<T> {
    const run = this.queue.then(f, f);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /**
   * Calls `Class.Method` with `args` (encoded per §0.1: plain objects become bare params,
   * `long()`/Date/Buffer become wrappers) and returns the raw answer object (`PxgRetVal`
   * and out parameters, still in wire form; see `decodeValue`). Throws a KscError.
   */
  call(method: string, args: Record<string, JsValue> = {}, o: CallOptions = {}): Promise<Record<string, unknown>> {
    if (!/^[A-Za-z][A-Za-z0-9_]*\.[A-Za-z][A-Za-z0-9_]*$/.test(method)) return Promise.reject(new KscInputError('method', `"${method}" is not Class.Method`));
    if (this.closed) return Promise.reject(new KscError('ksc_transport_error', 'the client is closed', this.ctx(method)));
    const policy: RetryPolicy = o.release !== undefined ? 'creates' : (o.idempotent ?? !NOT_IDEMPOTENT.test(method)) ? 'idempotent' : 'unsent';
    const late = o.release === undefined ? undefined : (r: RawAnswer): void => this.lateAnswer(method, r, o.release!);
    const body = JSON.stringify(encodeArgs(args));
    const timeoutMs = o.timeoutMs ?? this.timeoutMs;
    return this.serialized(async () => {
      let relogged = false;
      if (!this.loggedIn) {
        await this.doLogin();
        relogged = true;
      }
      for (;;) {
        const headers: Record<string, string> = this.auth === 'session' && this.session !== undefined ? { 'X-KSC-Session': this.session } : {};
        const a = await this.withRetries(method, policy, async () => {
          const r = await this.exchange(method, `/api/v1.0/${method}`, body, headers, timeoutMs, late);
          if (r.status >= 500) {
            const obj = r.body.trim().startsWith('{') ? (() => { try { return this.parseJson(method, r); } catch { return undefined; } })() : undefined;
            const pxg = this.pxgOf(method, r, obj);
            if (pxg !== undefined) throw pxg;
            throw new KscHttpError(r.status, r.body, this.ctx(method));
          }
          return r;
        });
        if (a.status === 401 || a.status === 403) {
          this.loggedIn = false;
          if (relogged) throw new KscSessionError(a.status, this.ctx(method));
          this.stats.relogins++;
          this.log.info({ server: this.server, connection: this.opts.name, method, status: a.status }, 'KSC session refused; logging in again');
          await this.doLogin();
          relogged = true;
          continue;
        }
        const obj = this.parseJson(method, a);
        const pxg = this.pxgOf(method, a, obj);
        if (pxg !== undefined) throw pxg;
        if (a.status !== 200) throw new KscHttpError(a.status, a.body, this.ctx(method));
        return obj;
      }
    });
  }

  /** An answer that came after its call timed out: what it created is released. */
  private lateAnswer(method: string, a: RawAnswer, release: (answer: Record<string, unknown>) => void): void {
    if (a.status !== 200 || this.closed) return;
    let obj: Record<string, unknown>;
    try {
      obj = this.parseJson(method, a);
    } catch {
      return;
    }
    if (this.pxgOf(method, a, obj) !== undefined) return;
    this.stats.lateReleases++;
    this.log.info({ server: this.server, connection: this.opts.name, method }, `KSC answered ${method} after the timeout; releasing what it created`);
    release(obj);
  }

  /** `Session.Ping` (session mode) — checks that the server answers and the login works. */
  async ping(): Promise<void> {
    if (this.auth === 'session') await this.call('Session.Ping');
    else await this.call('HostGroup.GetStaticInfo', { pValues: ['KLADMSRV_SERVER_VERSION_ID'] }).catch(async (e) => {
      // Not every server has GetStaticInfo; a login is proof enough.
      if (!(e instanceof KscPxgError)) throw e;
    });
  }

  /**
   * `HostGroup.FindHosts` + `ChunkAccessor` paging (§2.1): yields the hosts chunk by chunk,
   * each host a decoded params object, and releases the accessor at the end (also on error).
   */
  async *findHostsPaged(
    filter: string,
    fields: string[],
    o: { chunkSize?: number; lifetimeSec?: number; order?: { name: string; asc: boolean }[] } = {},
  ): AsyncGenerator<Record<string, Decoded>[]> {
    const chunk = o.chunkSize ?? 100;
    const r = await this.call('HostGroup.FindHosts', {
      wstrFilter: filter,
      vecFieldsToReturn: fields,
      vecFieldsToOrder: (o.order ?? []).map((x) => ({ Name: x.name, Asc: x.asc })),
      pParams: { KLGRP_FIND_FROM_CUR_VS_ONLY: true },
      lMaxLifeTime: Math.min(o.lifetimeSec ?? 1200, 7200),
    }, { release: (late) => void this.releaseAccessor(late['strAccessor']) });
    const accessor = r['strAccessor'];
    if (typeof accessor !== 'string' || accessor === '') throw new KscProtocolError('FindHosts returned no strAccessor', this.ctx('HostGroup.FindHosts'));
    try {
      const c = await this.call('ChunkAccessor.GetItemsCount', { strAccessor: accessor });
      const count = this.itemCount(c, 'ChunkAccessor.GetItemsCount');
      // GetItemsChunk returns "the actual number of elements, <= nCount" (§2.1): the next
      // chunk starts after what came, or a short chunk would skip hosts (and the import
      // would archive them as missing).
      for (let start = 0; start < count; ) {
        const page = await this.call('ChunkAccessor.GetItemsChunk', { strAccessor: accessor, nStart: start, nCount: chunk });
        const pChunk = decodeParams(page['pChunk']);
        const arr = Array.isArray(pChunk['KLCSP_ITERATOR_ARRAY']) ? pChunk['KLCSP_ITERATOR_ARRAY'] : [];
        const items = arr.filter((x): x is Record<string, Decoded> => x !== null && typeof x === 'object' && !Array.isArray(x) && !Buffer.isBuffer(x));
        // Fewer hosts than counted: an import that went on would archive the rest as missing.
        if (arr.length === 0) throw new KscProtocolError(`GetItemsChunk returned no items at ${start} of ${count}`, this.ctx('ChunkAccessor.GetItemsChunk'));
        start += arr.length;
        if (items.length > 0) yield items;
      }
    } finally {
      await this.releaseAccessor(accessor);
    }
  }

  /**
   * The count a GetItemsCount / GetRecordCount answered: a whole number (typed `long` too).
   * Anything else is a protocol error, not 0: reading none would make an import archive
   * every host as missing.
   */
  private itemCount(answer: Record<string, unknown>, method: string): number {
    const v = decodeValue(answer['PxgRetVal']);
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new KscProtocolError(`${method} answered ${JSON.stringify(answer['PxgRetVal'] ?? null)?.slice(0, 100)}, not a count`, this.ctx(method));
    return v;
  }

  private async releaseAccessor(accessor: unknown): Promise<void> {
    if (typeof accessor !== 'string' || accessor === '') return;
    await this.call('ChunkAccessor.Release', { strAccessor: accessor }).catch((e: unknown) =>
      this.log.debug({ server: this.server, err: (e as Error).message }, 'ChunkAccessor.Release failed (the accessor expires by itself)'),
    );
  }

  private async releaseTasksIterator(it: unknown): Promise<void> {
    if (typeof it !== 'string' || it === '') return;
    await this.call('Tasks.ReleaseTasksIterator', { strTaskIteratorId: it }).catch((e: unknown) =>
      this.log.debug({ server: this.server, err: (e as Error).message }, 'Tasks.ReleaseTasksIterator failed'),
    );
  }

  /** All hosts matching `filter` (see `findHostsPaged`). */
  async findHosts(filter: string, fields: string[], o: { chunkSize?: number; lifetimeSec?: number } = {}): Promise<Record<string, Decoded>[]> {
    const out: Record<string, Decoded>[] = [];
    for await (const page of this.findHostsPaged(filter, fields, o)) out.push(...page);
    return out;
  }

  /** `HostGroup.GetHostProducts` (§2.3), flattened to one entry per product version. */
  async getHostProducts(hostId: string): Promise<KscHostProduct[]> {
    const r = await this.call('HostGroup.GetHostProducts', { strHostName: hostId });
    const root = decodeParams(r['PxgRetVal']);
    const out: KscHostProduct[] = [];
    for (const [product, versions] of Object.entries(root)) {
      if (versions === null || typeof versions !== 'object' || Array.isArray(versions) || Buffer.isBuffer(versions)) continue;
      for (const [version, info] of Object.entries(versions)) {
        const i = info !== null && typeof info === 'object' && !Array.isArray(info) && !Buffer.isBuffer(info) ? info : {};
        out.push({
          product,
          version,
          displayName: typeof i['DisplayName'] === 'string' ? i['DisplayName'] : undefined,
          build: typeof i['ProdVersion'] === 'string' ? i['ProdVersion'] : undefined,
        });
      }
    }
    return out;
  }

  /**
   * All group tasks through the tasks iterator (§2.4): `ResetTasksIterator` with no group
   * filter and `bIncludeSupergroups`, `GetNextTask` until `pTaskData` is empty,
   * `ReleaseTasksIterator`.
   */
  async listTasks(): Promise<KscTask[]> {
    const r = await this.call('Tasks.ResetTasksIterator', {
      nGroupId: 0,
      bGroupIdSignificant: false,
      strProductName: '',
      strVersion: '',
      strComponentName: '',
      strInstanceId: '',
      strTaskName: '',
      bIncludeSupergroups: true,
    }, { release: (late) => void this.releaseTasksIterator(late['strTaskIteratorId']) });
    const it = r['strTaskIteratorId'];
    if (typeof it !== 'string' || it === '') throw new KscProtocolError('ResetTasksIterator returned no strTaskIteratorId', this.ctx('Tasks.ResetTasksIterator'));
    const out: KscTask[] = [];
    try {
      for (let i = 0; i < 100_000; i++) {
        const n = await this.call('Tasks.GetNextTask', { strTaskIteratorId: it });
        const data = decodeParams(n['pTaskData']);
        if (Object.keys(data).length === 0) break;
        const t = taskFromData(data);
        if (t !== undefined) out.push(t);
      }
    } finally {
      await this.releaseTasksIterator(it);
    }
    return out;
  }

  /** `Tasks.GetAllTasksOfHost` (§2.4): ids of the group and global tasks whose scope holds the host. */
  async getAllTasksOfHost(domain: string, hostId: string): Promise<string[]> {
    const r = await this.call('Tasks.GetAllTasksOfHost', { strDomainName: domain, strHostName: hostId });
    const v = decodeValue(r['PxgRetVal']);
    return Array.isArray(v) ? v.map((x) => String(x)) : [];
  }

  /** `Tasks.RunTask` (§2.5): starts the task on its whole scope. Not retried once it may have been sent. */
  async runTask(taskId: string): Promise<void> {
    // Refresh the keep-alive socket and the session first (both retried), so RunTask itself,
    // which is never repeated once sent, does not land on a stale socket.
    await this.ping();
    await this.call('Tasks.RunTask', { strTask: taskId }, { idempotent: false });
  }

  /** `Tasks.GetTaskStatistics` (§2.6a): host counts per state bit, plus `GNRL_COMPLETED_PERCENT`. */
  async getTaskStatistics(taskId: string): Promise<Record<string, number>> {
    const r = await this.call('Tasks.GetTaskStatistics', { strTask: taskId });
    const d = decodeParams(r['PxgRetVal']);
    const out: Record<string, number> = {};
    for (const [k, v] of Object.entries(d)) if (typeof v === 'number') out[k] = v;
    return out;
  }

  /** `HostGroup.GetHostInfo` (§2.2): the requested attributes of one host, decoded. */
  async getHostInfo(hostId: string, fields: string[]): Promise<Record<string, Decoded>> {
    const r = await this.call('HostGroup.GetHostInfo', { strHostName: hostId, pFields2Return: fields });
    return decodeParams(r['PxgRetVal']);
  }

  /**
   * `InventoryApi.GetHostInvProducts` (§2.8): the programs installed on a (Windows) host,
   * from `PxgRetVal.GNRL_EA_PARAM_1`. `GetHostInvPatches` with `patches`.
   */
  async getHostInventory(hostId: string, what: 'products' | 'patches' = 'products'): Promise<KscInventoryItem[]> {
    const method = what === 'products' ? 'InventoryApi.GetHostInvProducts' : 'InventoryApi.GetHostInvPatches';
    const r = await this.call(method, { szwHostId: hostId, pParams: {} });
    const arr = decodeParams(r['PxgRetVal'])['GNRL_EA_PARAM_1'];
    if (!Array.isArray(arr)) return [];
    const out: KscInventoryItem[] = [];
    const str = (v: Decoded | undefined): string => (typeof v === 'string' ? v : typeof v === 'number' ? String(v) : '');
    for (const x of arr) {
      if (x === null || typeof x !== 'object' || Array.isArray(x) || Buffer.isBuffer(x)) continue;
      const name = str(x['DisplayName']).trim();
      if (name === '') continue;
      out.push({ name, version: str(x['DisplayVersion']).trim(), publisher: str(x['Publisher']).trim(), installDate: parseInstallDate(x['InstallDate']) });
    }
    return out;
  }

  /**
   * A SrvView (§2.8) read page by page: `ResetIterator`, `GetRecordCount`, then
   * `GetRecordRange` from `nStart` to `nEnd` (exclusive) in steps of `pageSize`, advancing by
   * what the server actually returned (a server may return fewer), `ReleaseIterator` at the
   * end (also on error).
   */
  async *srvViewPaged(
    view: string,
    filter: string,
    fields: string[],
    o: { pageSize?: number; lifetimeSec?: number; order?: { name: string; asc: boolean }[] } = {},
  ): AsyncGenerator<Record<string, Decoded>[]> {
    const step = o.pageSize ?? 100;
    const r = await this.call('SrvView.ResetIterator', {
      wstrViewName: view,
      wstrFilter: filter,
      vecFieldsToReturn: fields,
      vecFieldsToOrder: (o.order ?? []).map((x) => ({ Name: x.name, Asc: x.asc })),
      pParams: {},
      lifetimeSec: Math.min(o.lifetimeSec ?? 600, 7200),
    }, { release: (late) => void this.releaseViewIterator(late['wstrIteratorId']) });
    const it = r['wstrIteratorId'];
    if (typeof it !== 'string' || it === '') throw new KscProtocolError('SrvView.ResetIterator returned no wstrIteratorId', this.ctx('SrvView.ResetIterator'));
    try {
      const c = await this.call('SrvView.GetRecordCount', { wstrIteratorId: it });
      const count = this.itemCount(c, 'SrvView.GetRecordCount');
      for (let start = 0; start < count; ) {
        const page = await this.call('SrvView.GetRecordRange', { wstrIteratorId: it, nStart: start, nEnd: Math.min(count, start + step) });
        const arr = decodeParams(page['pRecords'])['KLCSP_ITERATOR_ARRAY'];
        const items = Array.isArray(arr) ? arr.filter((x): x is Record<string, Decoded> => x !== null && typeof x === 'object' && !Array.isArray(x) && !Buffer.isBuffer(x)) : [];
        if (items.length === 0) throw new KscProtocolError(`GetRecordRange returned no records at ${start} of ${count}`, this.ctx('SrvView.GetRecordRange'));
        start += items.length;
        yield items;
      }
    } finally {
      await this.releaseViewIterator(it);
    }
  }

  private async releaseViewIterator(it: unknown): Promise<void> {
    if (typeof it !== 'string' || it === '') return;
    await this.call('SrvView.ReleaseIterator', { wstrIteratorId: it }).catch((e: unknown) =>
      this.log.debug({ server: this.server, err: (e as Error).message }, 'SrvView.ReleaseIterator failed (the iterator expires by itself)'),
    );
  }

  /** Ends the session (best effort) and closes the socket. */
  async close(): Promise<void> {
    if (this.closed) return;
    if (this.auth === 'session' && this.loggedIn) {
      await this.call('Session.EndSession', {}, { timeoutMs: Math.min(this.timeoutMs, 5000) }).catch(() => undefined);
    }
    this.closed = true;
    this.loggedIn = false;
    this.session = undefined;
    this.agent.destroy();
  }
}

/** Reads a task from `pTaskData` / `GetTask` output (already decoded). */
export function taskFromData(d: Record<string, Decoded>): KscTask | undefined {
  const info = d['TASK_INFO_PARAMS'];
  const infoObj = info !== null && typeof info === 'object' && !Array.isArray(info) && !Buffer.isBuffer(info) ? info : {};
  const id = d['TASK_UNIQUE_ID'];
  const name = infoObj['DisplayName'] ?? d['DisplayName'];
  if ((typeof id !== 'string' && typeof id !== 'number') || typeof name !== 'string') return undefined;
  const str = (v: Decoded | undefined): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);
  const gid = infoObj['PRTS_TASK_GROUPID'];
  return {
    id: String(id),
    displayName: name,
    taskType: str(d['TASK_NAME']),
    product: str(d['TASKID_PRODUCT_NAME']),
    version: str(d['TASKID_VERSION']),
    component: str(d['TASKID_COMPONENT_NAME']),
    groupId: typeof gid === 'number' && gid >= 0 ? gid : undefined,
  };
}
