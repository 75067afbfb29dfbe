/**
 * A small JSON-over-HTTP server for the admin API: `node:http`, bearer-token auth with a
 * constant-time compare, a route table with path parameters, a body size limit, request
 * timeouts, and one error shape: `{"error": {"code", "message"}}`.
 *
 * Generic: what a feature's errors look like as answers (`mapError`) and which secrets
 * must never leave the process (`redact`, applied to every answer body) are given by the
 * code that builds the server (src/ksc/admin-server.ts). Answers are `application/json`
 * and never cached.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import { bearerCheck, startOver, type BearerLimiter } from '../bearer.js';
import type { AddressInfo, Socket } from 'node:net';

/** The logging a JsonServer does (a pino logger fits). */
export interface JsonLogger {
  debug(obj: Record<string, unknown>, msg?: string): void;
  warn?(obj: Record<string, unknown>, msg?: string): void;
  error(obj: Record<string, unknown>, msg?: string): void;
}

/**
 * Failed bearer tokens counted per client address (src/console/signin-limit.ts's
 * SigninLimiter, shared with the console's sign-in): a locked-out address is refused
 * before its token is looked at.
 */
/** The bearer limiter (../bearer.ts), whose check also tells what is limited (an address, or all sign-ins). */
export interface AuthLimiter extends BearerLimiter {
  check(address: string): { waitMs: number; scope: string | null };
}

const silent: JsonLogger = { debug: () => undefined, error: () => undefined };

export type Method = 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE';

export interface RequestContext {
  method: Method;
  path: string;
  params: Record<string, string>;
  query: URLSearchParams;
  /** The parsed JSON body; `undefined` when the request had none. */
  body: unknown;
}

export interface Reply {
  status: number;
  /** JSON body; omitted for 204. */
  body?: unknown;
}

export type Handler = (ctx: RequestContext) => Reply | Promise<Reply>;

export interface Route {
  method: Method;
  /** `/api/v1/connections/:id/enable` */
  path: string;
  handler: Handler;
}

/** An API error with an HTTP status and a stable code. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export interface JsonServerOptions {
  /** The bearer token every request must carry. */
  token: string;
  routes: Route[];
  maxBodyBytes: number;
  /** Time a client has to send the whole request (ms). */
  requestTimeoutMs: number;
  logger?: JsonLogger;
  /** The answer for an error a handler threw that is not an ApiError; undefined: a 500. */
  mapError?: (e: unknown) => Reply | undefined;
  /** Applied to every answer body's JSON text (removes secrets). Default: none. */
  redact?: (text: string) => string;
  /** Told about every answer (for metrics). */
  onResponse?: (status: number, method: string, route: string) => void;
  /** Serve HTTPS with this certificate and key (PEM). */
  tls?: { cert: Buffer; key: Buffer };
  /**
   * Requests this hook answers (it returns true) never reach the JSON routes: the web
   * console's pages, assets and event stream (src/console/console.ts), which check their
   * own authentication.
   */
  before?: (req: IncomingMessage, res: ServerResponse, url: URL) => boolean | Promise<boolean>;
  /**
   * Another way in besides the bearer token (the console's session cookie): true lets the
   * request through, an ApiError refuses it (a missing CSRF token), undefined: no session.
   */
  altAuth?: (req: IncomingMessage, method: string) => true | ApiError | undefined;
  /** Counts wrong bearer tokens per client address and refuses (429) an address locked out. */
  authLimit?: AuthLimiter;
  /** Told about every answered request that changes something (POST, PATCH, PUT, DELETE), for the audit log. */
  audit?: (req: IncomingMessage, method: string, path: string, status: number) => void;
}

interface CompiledRoute extends Route {
  segments: string[];
}

export class JsonServer {
  private readonly server: http.Server | https.Server;
  private readonly routes: CompiledRoute[];
  private readonly tokenOk: (header: string | string[] | undefined) => boolean;
  private readonly log: JsonLogger;
  private readonly sockets = new Set<Socket>();

  constructor(private readonly o: JsonServerOptions) {
    if (typeof o.token !== 'string' || o.token === '') throw new Error('the admin API needs a bearer token');
    this.tokenOk = bearerCheck(o.token);
    this.routes = o.routes.map((r) => ({ ...r, segments: r.path.split('/').filter((s) => s !== '') }));
    this.log = o.logger ?? silent;
    const serverOptions = {
        requestTimeout: o.requestTimeoutMs,
        headersTimeout: Math.min(o.requestTimeoutMs, 60_000),
        // How often Node checks those timeouts (its default, 30 s, would let a slow client hold a socket that long).
        connectionsCheckingInterval: Math.max(50, Math.min(1_000, Math.floor(o.requestTimeoutMs / 4))),
    };
    const onRequest = (req: IncomingMessage, res: ServerResponse): void => void this.handle(req, res);
    this.server = o.tls !== undefined ? https.createServer({ ...serverOptions, cert: o.tls.cert, key: o.tls.key, minVersion: 'TLSv1.2' }, onRequest) : http.createServer(serverOptions, onRequest);
    this.server.keepAliveTimeout = 5_000;
    this.server.maxHeadersCount = 100;
    this.server.on('connection', (s: Socket) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
      if (socket.writable && err.code !== 'ECONNRESET') {
        const status = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : err.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
        const body = JSON.stringify({ error: { code: status === 408 ? 'admin_timeout' : 'admin_bad_request', message: status === 408 ? 'the request took too long to arrive' : 'malformed HTTP request' } });
        socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
      } else {
        socket.destroy();
      }
    });
  }

  async listen(host: string, port: number): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const onError = (e: Error) => reject(e);
      this.server.once('error', onError);
      this.server.listen(port, host, () => {
        this.server.off('error', onError);
        resolve();
      });
    });
  }

  port(): number | undefined {
    const a = this.server.address();
    return a !== null && typeof a === 'object' ? (a as AddressInfo).port : undefined;
  }

  get listening(): boolean {
    return this.server.listening;
  }

  async close(): Promise<void> {
    if (!this.server.listening) return;
    const done = new Promise<void>((r) => this.server.close(() => r()));
    this.server.closeIdleConnections();
    // Requests still running get a moment to answer, then their sockets go.
    const t = setTimeout(() => {
      for (const s of this.sockets) s.destroy();
    }, 2_000);
    await done;
    clearTimeout(t);
  }

  /** Throws 429 `admin_rate_limited` while `client` is locked out for wrong tokens. */
  private refuseLimited(client: string, method: string, path: string): void {
    const v = this.o.authLimit?.check(client);
    if (v === undefined || v.waitMs <= 0) return;
    const secs = Math.ceil(v.waitMs / 1000);
    this.log.warn?.({ audit: true, code: 'admin_rate_limited', client, method, path, retryAfterSeconds: secs }, 'admin API request refused: too many wrong bearer tokens from this address');
    throw new ApiError(429, 'admin_rate_limited', `too many wrong bearer tokens from this address: try again in ${secs} s`, { 'Retry-After': String(secs) });
  }

  private authorized(req: IncomingMessage): boolean {
    return this.tokenOk(req.headers['authorization']);
  }

  private match(method: string, path: string): { route: CompiledRoute; params: Record<string, string> } | { allowed: string[] } | undefined {
    const segs = path.split('/').filter((s) => s !== '');
    const allowed: string[] = [];
    for (const r of this.routes) {
      if (r.segments.length !== segs.length) continue;
      const params: Record<string, string> = {};
      let ok = true;
      for (let i = 0; i < segs.length; i++) {
        const want = r.segments[i]!;
        if (want.startsWith(':')) {
          let v: string;
          try {
            v = decodeURIComponent(segs[i]!);
          } catch {
            throw new ApiError(400, 'admin_bad_request', 'the path is not valid percent-encoding');
          }
          params[want.slice(1)] = v;
        } else if (want !== segs[i]) {
          ok = false;
          break;
        }
      }
      if (!ok) continue;
      if (r.method === method) return { route: r, params };
      allowed.push(r.method);
    }
    return allowed.length > 0 ? { allowed } : undefined;
  }

  private readBody(req: IncomingMessage): Promise<Buffer> {
    const max = this.o.maxBodyBytes;
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > max) return Promise.reject(new ApiError(413, 'admin_body_too_large', `the request body is larger than ${max} bytes`));
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let n = 0;
      let done = false;
      req.on('data', (c: Buffer) => {
        if (done) return;
        n += c.length;
        if (n > max) {
          done = true;
          reject(new ApiError(413, 'admin_body_too_large', `the request body is larger than ${max} bytes`));
          return;
        }
        chunks.push(c);
      });
      req.on('end', () => {
        if (!done) {
          done = true;
          resolve(Buffer.concat(chunks));
        }
      });
      // The client reset the connection mid-body ('aborted'): it went away, as below; not
      // an internal error (no 500, no error log line for something any client can do).
      req.on('error', () => {
        if (!done) {
          done = true;
          reject(new ApiError(408, 'admin_timeout', 'the request body did not arrive'));
        }
      });
      // The client went away (or the request timeout cut it off) before the body was complete.
      req.on('close', () => {
        if (!done) {
          done = true;
          reject(new ApiError(408, 'admin_timeout', 'the request body did not arrive'));
        }
      });
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const t0 = Date.now();
    const method = (req.method ?? 'GET').toUpperCase();
    let path = '/';
    let query = new URLSearchParams();
    let routeName = 'unknown';
    let reply: Reply;
    let extraHeaders: Record<string, string> = {};
    let closeAfter = false;
    try {
      const u = requestUrl(req.url ?? '/');
      path = u.pathname;
      query = u.searchParams;
      if (this.o.before !== undefined && (await this.o.before(req, res, u))) {
        this.log.debug({ method, path, status: res.statusCode, ms: Date.now() - t0 }, 'console request');
        return;
      }
      // Authentication comes first: nobody without the token learns which routes exist or gets to send a body.
      const sentToken = req.headers['authorization'] !== undefined;
      const client = req.socket.remoteAddress ?? '';
      const tokenRight = this.authorized(req);
      // The right token is taken even from a locked-out address, and starts its count over
      // when it is not locked out (src/bearer.ts limitedBearer and startOver say why).
      if (tokenRight) {
        if (this.o.authLimit !== undefined) startOver(this.o.authLimit, client);
      }
      else {
        if (sentToken) this.refuseLimited(client, method, path);
        const alt = this.o.altAuth?.(req, method);
        if (alt instanceof ApiError) throw alt;
        if (alt !== true) {
          // Only a token that was sent and is wrong counts (a request without one guessed nothing).
          if (sentToken) this.o.authLimit?.failed(client);
          throw new ApiError(401, 'admin_unauthorized', 'missing or wrong bearer token', { 'WWW-Authenticate': 'Bearer realm="cefd-admin"' });
        }
      }
      const m = this.match(method, path);
      if (m === undefined) throw new ApiError(404, 'admin_not_found', `no endpoint ${path}`);
      if ('allowed' in m) throw new ApiError(405, 'admin_method_not_allowed', `${method} is not allowed on ${path} (allowed: ${m.allowed.join(', ')})`, { Allow: m.allowed.join(', ') });
      routeName = m.route.path;
      let body: unknown;
      if (method === 'POST' || method === 'PATCH' || method === 'PUT') {
        const raw = await this.readBody(req);
        if (raw.length > 0) {
          const ct = String(req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
          if (ct !== 'application/json') throw new ApiError(415, 'admin_unsupported_media_type', 'send the request body as Content-Type: application/json');
          try {
            body = JSON.parse(raw.toString('utf8'));
          } catch {
            throw new ApiError(400, 'admin_bad_json', 'the request body is not valid JSON');
          }
        }
      } else if (Number(req.headers['content-length'] ?? 0) > 0 || req.headers['transfer-encoding'] !== undefined) {
        // A body on GET/DELETE is ignored, but must not be left unread on a kept-alive socket.
        await this.readBody(req).catch(() => undefined);
      }
      reply = await m.route.handler({ method: method as Method, path, params: m.params, query, body });
    } catch (e) {
      if (e instanceof ApiError) {
        reply = { status: e.status, body: { error: { code: e.code, message: e.message } } };
        extraHeaders = e.headers;
        if (e.status === 413) closeAfter = true;
      } else {
        const mapped = this.o.mapError?.(e);
        if (mapped !== undefined) {
          reply = mapped;
        } else {
          this.log.error({ code: 'admin_internal', method, route: routeName, err: (e as Error).message }, `admin API: ${method} ${routeName} failed: ${(e as Error).message}`);
          reply = { status: 500, body: { error: { code: 'admin_internal', message: 'internal error (see the daemon log)' } } };
        }
      }
    }
    this.send(res, reply, extraHeaders, closeAfter);
    if (method !== 'GET' && method !== 'HEAD' && this.o.audit !== undefined) {
      try {
        this.o.audit(req, method, path, reply.status);
      } catch {
        /* logging only */
      }
    }
    this.log.debug({ method, route: routeName, status: reply.status, ms: Date.now() - t0 }, 'admin API request');
    try {
      this.o.onResponse?.(reply.status, method, routeName);
    } catch {
      /* metrics only */
    }
    if (closeAfter) req.resume();
  }

  private send(res: ServerResponse, reply: Reply, headers: Record<string, string>, close: boolean): void {
    if (res.headersSent || res.destroyed) return;
    const base: Record<string, string> = {
      'Cache-Control': 'no-store',
      'X-Content-Type-Options': 'nosniff',
      ...headers,
      ...(close ? { Connection: 'close' } : {}),
    };
    if (reply.status === 204 || reply.body === undefined) {
      res.writeHead(reply.status, base);
      res.end();
      return;
    }
    const json = JSON.stringify(reply.body);
    const text = (this.o.redact === undefined ? json : this.o.redact(json)) + '\n';
    res.writeHead(reply.status, { ...base, 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': String(Buffer.byteLength(text)) });
    res.end(text);
  }
}

/**
 * The request target as a URL. An origin-form target (`/path?query`) is a path even when
 * it starts with `//` (`//x/api/v1/tenants` is not host `x`); an absolute-form one
 * (`http://host/path`) is read as it is. A target that is not a URL (`http://[`) is the
 * client's error: 400, not 500.
 */
function requestUrl(target: string): URL {
  try {
    return target.startsWith('/') ? new URL(`http://admin.invalid${target}`) : new URL(target);
  } catch {
    throw new ApiError(400, 'admin_bad_request', 'the request target is not a valid URL');
  }
}
