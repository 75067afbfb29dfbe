/**
 * The web console (docs/console.md), served by the admin listener (src/admin/http.ts):
 * server-rendered pages under /console/, a few ES modules and a style sheet from
 * ./static (no build step, nothing from the network), JSON under /console/api/ and the
 * KSC admin API (/api/v1/) reached with the session cookie instead of the bearer token.
 *
 * Security: sign-in with the admin token or the console password; a session cookie
 * (HttpOnly, SameSite=Strict, Secure on TLS); every change needs the session's CSRF token
 * (`X-CSRF-Token` header, or the `csrf` form field); a strict Content-Security-Policy (no
 * inline script or style); no secret in a page or a URL; an audit log line per change.
 */
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { ApiError, type Reply, type Route } from '../admin/http.js';
import { bearerCheck, limitedBearer, startOver } from '../bearer.js';
import { createEncoder } from '../codecs/encoders/registry.js';
import type { CefdEvent } from '../event.js';
import { compileFilter, FilterSyntaxError, type Filter } from '../filter/filter.js';
import type { KscIntegration } from '../ksc/index.js';
import { chooseTask } from '../ksc/tasks.js';
import type { Telemetry } from '../telemetry/telemetry.js';
import { VERSION } from '../version.js';
import { checkConsolePassword, cookies, hasConsolePassword, LOGIN_COOKIE, newLoginNonce, passwordStamp, sameText, SESSION_COOKIE, Sessions, type Session } from './auth.js';
import { RateHistory, STEP_MS } from './history.js';
import { SigninLimiter, type LimitVerdict, type SigninLimitOptions } from './signin-limit.js';
import { TailHub, type RecentAsk, type RecentAttach, type TailEntry } from './tail.js';
import { nativeEncoder, type EventOptions } from '../codecs/encoders/native.js';

export interface ConsoleOptions {
  token: string;
  stateDir: string;
  tls: boolean;
  sessionTtlMs: number;
  tailEvents: number;
  /** Most bytes the recent events may hold (JSON and frames). */
  tailBytes: number;
  /** The configuration's `event` section: the native JSON the ring keeps is what a native output gets. */
  event?: EventOptions;
  quietAfterMs: number;
  telemetry: Telemetry;
  log: Logger;
  workers: () => number;
  outputs: () => string[];
  /** Starts, changes (a tail opened or closed) and stops (null) the recent events (Pipeline.setRecent). */
  recent: RecentAttach;
  /** Asks the decode workers for their recent events (Pipeline.queryRecent). */
  askRecent: RecentAsk;
  ksc: () => KscIntegration | undefined;
  /** A refused sign-in (`credentials`, `csrf`, `rate_limited`), for the metrics. */
  onSigninFailure?: (reason: 'credentials' | 'csrf' | 'rate_limited') => void;
  /** Events a live tail client did not get because it read too slowly (`TAIL_CLIENT_PENDING_BYTES`), for the metrics. */
  onTailDropped?: (events: number) => void;
  /** The limit on failed sign-ins (signin-limit.ts; its defaults otherwise). */
  signinLimit?: SigninLimitOptions;
}

const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
const STATIC_TYPES: Record<string, string> = { js: 'text/javascript; charset=utf-8', css: 'text/css; charset=utf-8', svg: 'image/svg+xml' };
const STATIC_DIR = new URL('./static/', import.meta.url);
const STARTED_MS = Date.now();

export function esc(s: unknown): string {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

const DETAIL_ENCODINGS = ['native', 'ecs', 'kuma'] as const;

/**
 * The most bytes a live tail client may have waiting in its response (not yet taken by the
 * socket): past it, its events are skipped (counted) until it catches up, and it is told how
 * many with an `event: dropped` message before its next event. Without it, a client that
 * reads more slowly than events arrive (a slow link, a stalled browser tab, `cefd tap | less`)
 * makes the response buffer every event in the daemon's memory.
 */
export const TAIL_CLIENT_PENDING_BYTES = 1024 * 1024;

/**
 * The most live tails open at once. Every tailed event is tested against each tail's filter
 * and written to it on the main thread, which also reads the sockets: without a limit, a
 * script opening tails in a loop (with a session or the token) would slow intake for all.
 */
export const MAX_TAIL_CLIENTS = 32;

export class Console {
  readonly sessions: Sessions;
  readonly tail: TailHub;
  private readonly history: RateHistory;
  private readonly tokenOk: (h: string | undefined) => boolean;
  private readonly statics = new Map<string, Buffer>();
  private readonly encoders = new Map(DETAIL_ENCODINGS.map((n) => [n, createEncoder({ codec: n })]));
  /** Open live tails, each with what ends it (its ping timer, its subscription). */
  private readonly streams = new Map<ServerResponse, () => void>();
  /** Failed sign-ins and wrong bearer tokens per address; the admin API shares it (src/ksc/extension.ts). */
  readonly limiter: SigninLimiter;

  constructor(private readonly o: ConsoleOptions) {
    this.sessions = new Sessions(o.sessionTtlMs, () => passwordStamp(o.stateDir));
    this.limiter = new SigninLimiter(o.signinLimit);
    this.tail = new TailHub(o.tailEvents, o.tailBytes, o.recent, o.askRecent, nativeEncoder(o.event));
    this.tail.start();
    this.history = new RateHistory(o.telemetry);
    this.history.start();
    this.tokenOk = bearerCheck(o.token);
  }

  /**
   * Takes the pipeline's one recent-events slot (Pipeline.setRecent) again, after another
   * console took it or gave it up: the admin API's console built anew by a reload next to
   * this one (src/ksc/extension.ts, applyAdmin).
   */
  reattach(): void {
    this.tail.start();
  }

  close(): void {
    this.history.stop();
    // Each stream's timer and subscription go now, not at its 'close': a client that stopped
    // reading keeps the response open after end(), and nothing may be written to it after.
    for (const [r, done] of [...this.streams]) {
      done();
      r.end();
    }
    this.streams.clear();
    this.tail.close();
  }

  // -- hooks for the JSON server ---------------------------------------------------------

  /** Session cookie (and CSRF token on changes) in place of the bearer token. */
  readonly altAuth = (req: IncomingMessage, method: string): true | ApiError | undefined => {
    const s = this.sessions.of(req);
    if (s === undefined) return undefined;
    if (method === 'GET' || method === 'HEAD') return true;
    const sent = req.headers['x-csrf-token'];
    if (typeof sent !== 'string' || !sameText(sent, s.csrf)) return new ApiError(403, 'console_csrf', 'missing or wrong CSRF token');
    return true;
  };

  readonly audit = (req: IncomingMessage, method: string, path: string, status: number): void => {
    const s = this.sessions.of(req);
    const who = s !== undefined ? { via: `console-${s.via}`, session: s.ref } : { via: 'bearer' };
    this.o.log.info({ audit: true, ...who, client: req.socket.remoteAddress ?? '', method, path, status }, `admin change: ${method} ${path} -> ${status}`);
  };

  /** The console's JSON endpoints (behind the same authentication as /api/v1). */
  routes(): Route[] {
    return [
      { method: 'GET', path: '/console/api/overview', handler: () => ({ status: 200, body: this.overview() }) },
      {
        method: 'GET',
        path: '/console/api/events',
        handler: async (c) => {
          const limit = Math.min(1000, Math.max(1, Number(c.query.get('limit') ?? 100) || 100));
          const filter = c.query.get('filter') ?? undefined;
          const text = c.query.get('text') ?? undefined;
          let found: { entries: TailEntry[]; kept: number };
          try {
            found = await this.tail.search({ ...(filter !== undefined ? { filter } : {}), ...(text !== undefined ? { text } : {}), limit });
          } catch (e) {
            if (e instanceof FilterSyntaxError) throw new ApiError(400, 'console_bad_filter', e.message);
            throw e;
          }
          return { status: 200, body: { tailing: this.tail.clientCount > 0, inMemory: found.kept, events: found.entries.map((e) => summary(e)) } };
        },
      },
      {
        method: 'GET',
        path: '/console/api/events/:id',
        handler: async (c) => {
          const e = await this.tail.get(c.params['id']!);
          if (e === undefined) throw new ApiError(404, 'console_not_found', `event ${c.params['id']} is no longer in memory`);
          const ev = JSON.parse(e.json) as CefdEvent;
          const encodings: Record<string, string> = { raw: e.raw };
          for (const [n, enc] of this.encoders) {
            try {
              encodings[n] = n === 'native' ? JSON.stringify(ev, null, 2) : JSON.stringify(JSON.parse(enc.encode(ev)), null, 2);
            } catch (err) {
              encodings[n] = `(cannot encode: ${(err as Error).message})`;
            }
          }
          return { status: 200, body: { event: { ...summary(e), encodings } } };
        },
      },
      {
        method: 'GET',
        path: '/console/api/assets/:id/tasks',
        handler: async (c) => {
          const k = this.o.ksc();
          if (k === undefined) throw new ApiError(409, 'console_ksc_off', 'the KSC integration is off');
          const asset = k.getAsset(c.params['id']!);
          if (asset === undefined) throw new ApiError(404, 'ksc_not_found', `no asset ${c.params['id']}`);
          const conn = k.store.getConnection(asset.connectionId);
          if (conn === undefined) throw new ApiError(404, 'ksc_not_found', 'the asset\'s connection is gone');
          const tasks = await k.listTasks(conn.id, { refresh: c.query.get('refresh') === 'true' });
          const client = k.clientFor(conn);
          const out = [];
          for (const t of tasks) {
            const choice = await chooseTask(client, tasks, asset, [t.displayName]);
            const cand = choice.candidates[0]!;
            out.push({ taskId: t.taskId, displayName: t.displayName, product: t.product, groupId: t.groupId, applicable: cand.applicable, reason: cand.applicable ? 'the asset is in the task\'s scope and has its product' : cand.reason });
          }
          return { status: 200, body: { connection: { id: conn.id, name: conn.name }, tasks: out } };
        },
      },
    ];
  }

  private overview(): unknown {
    const t = this.o.telemetry;
    const now = Date.now();
    // Only what the configuration has now: a listener or output a reload removed (or renamed)
    // keeps its counters for /metrics, not a place on the Overview.
    const configured = t.configured;
    const listeners = [...t.listeners.values()].filter((s) => configured === undefined || configured.listeners.has(s.name)).map((s) => {
      return {
        name: s.name,
        eventsTotal: s.eventsParsed,
        connectionsOpen: s.connectionsOpen,
        lastEventAt: s.lastEventMs > 0 ? new Date(s.lastEventMs).toISOString() : null,
        quiet: s.lastEventMs > 0 && now - s.lastEventMs > this.o.quietAfterMs,
        perSecond: this.history.of(s.name),
        senders: [...s.senders].reverse().map(([address, x]) => ({ address, events: x.events, lastEventAt: new Date(x.lastEventMs).toISOString(), quiet: now - x.lastEventMs > this.o.quietAfterMs })),
        parseErrors: Object.fromEntries(s.parseErrors.map),
        frameErrors: Object.fromEntries(s.frameErrors.map),
      };
    });
    const outputs = [...t.outputs.values()].filter((s) => configured === undefined || configured.outputs.has(s.name)).map((s) => ({
      name: s.name,
      state: s.retrying > 0 ? 'retrying' : 'ok',
      sent: s.sent,
      queued: s.queued,
      capacity: s.capacity,
      bufferFill: s.bufferMaxBytes > 0 && s.queue !== undefined ? bufferFill(s.queue, s.bufferMaxBytes) : null,
      lastError: s.lastError === '' ? null : s.lastError,
      lastErrorAt: s.lastErrorMs > 0 ? new Date(s.lastErrorMs).toISOString() : null,
      rejected: Object.fromEntries(s.rejected.map),
    }));
    return {
      version: VERSION,
      uptimeSeconds: Math.round((now - STARTED_MS) / 1000),
      workers: this.o.workers(),
      tailClients: this.tail.clientCount,
      stepSeconds: STEP_MS / 1000,
      quietAfterSeconds: this.o.quietAfterMs / 1000,
      listeners,
      deadLetters: Object.fromEntries(t.deadLetters.map),
      outputs,
    };
  }

  // -- pages, assets, sign-in, the event stream ----------------------------------------

  readonly before = async (req: IncomingMessage, res: ServerResponse, url: URL): Promise<boolean> => {
    const p = url.pathname;
    if (p === '/' && req.method === 'GET') return this.redirect(res, '/console/');
    if (p !== '/console' && !p.startsWith('/console/')) return false;
    if (p.startsWith('/console/api/') && p !== '/console/api/events/stream') return false;
    const method = req.method ?? 'GET';
    if (p.startsWith('/console/static/')) return this.serveStatic(res, p.slice('/console/static/'.length));
    if (p === '/console/login') return method === 'POST' ? this.login(req, res) : this.loginPage(res, undefined);
    const s = this.sessions.of(req);
    if (p === '/console/api/events/stream') return method === 'GET' ? this.stream(req, res, url, s) : this.text(res, 405, 'method not allowed');
    if (p === '/console/logout' && method === 'POST') return this.logout(req, res, s);
    if (s === undefined) return this.redirect(res, '/console/login');
    if (method !== 'GET') return this.text(res, 405, 'method not allowed');
    if (p === '/console' || p === '/console/') return this.page(res, s, 'overview', 'Overview', OVERVIEW_BODY);
    if (p === '/console/events') return this.page(res, s, 'events', 'Events', EVENTS_BODY);
    if (p === '/console/ksc') return this.page(res, s, 'ksc', 'KSC', KSC_BODY);
    const m = /^\/console\/ksc\/assets\/([^/]+)$/.exec(p);
    if (m !== null) {
      let id: string;
      try {
        id = decodeURIComponent(m[1]!);
      } catch {
        return this.text(res, 400, 'the asset id is not valid percent-encoding');
      }
      // A function, not a string: a replacement string would expand `$&`, `$'` and `` $` `` in the id.
      return this.page(res, s, 'asset', 'Asset', ASSET_BODY.replace('{{id}}', () => esc(id)));
    }
    return this.text(res, 404, 'no such page');
  };

  private headers(extra: Record<string, string | string[]> = {}): Record<string, string | string[]> {
    return {
      'Content-Security-Policy': CSP,
      'X-Content-Type-Options': 'nosniff',
      'X-Frame-Options': 'DENY',
      'Referrer-Policy': 'no-referrer',
      'Cache-Control': 'no-store',
      ...extra,
    };
  }

  private cookie(name: string, value: string, maxAgeS: number): string {
    return `${name}=${value}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAgeS}${this.o.tls ? '; Secure' : ''}`;
  }

  private text(res: ServerResponse, status: number, msg: string): true {
    res.writeHead(status, this.headers({ 'Content-Type': 'text/plain; charset=utf-8' }));
    res.end(msg + '\n');
    return true;
  }

  private redirect(res: ServerResponse, to: string, extra: Record<string, string | string[]> = {}): true {
    res.writeHead(303, this.headers({ Location: to, ...extra }));
    res.end();
    return true;
  }

  private serveStatic(res: ServerResponse, name: string): true {
    const ext = /^[a-z0-9-]+\.([a-z]+)$/.exec(name)?.[1];
    const type = ext !== undefined ? STATIC_TYPES[ext] : undefined;
    if (type === undefined) return this.text(res, 404, 'no such file');
    let body = this.statics.get(name);
    if (body === undefined) {
      try {
        body = readFileSync(new URL(name, STATIC_DIR));
      } catch {
        return this.text(res, 404, 'no such file');
      }
      this.statics.set(name, body);
    }
    res.writeHead(200, { ...this.headers({ 'Content-Type': type }), 'Cache-Control': 'no-cache' });
    res.end(body);
    return true;
  }

  private loginPage(res: ServerResponse, error: string | undefined, status = 200, extra: Record<string, string> = {}): true {
    const nonce = newLoginNonce();
    const html = layout(
      'Sign in',
      undefined,
      `<main class="login"><h1>cefd console</h1>
<form method="post" action="/console/login">
${error !== undefined ? `<p class="error" role="alert">${esc(error)}</p>` : ''}
<input type="hidden" name="csrf" value="${nonce}">
<label for="secret">Admin token or console password</label>
<input id="secret" name="secret" type="password" autocomplete="current-password" required autofocus>
<button type="submit">Sign in</button>
</form></main>`,
      [],
    );
    res.writeHead(status, this.headers({ 'Content-Type': 'text/html; charset=utf-8', 'Set-Cookie': this.cookie(LOGIN_COOKIE, nonce, 600), ...extra }));
    res.end(html);
    return true;
  }

  private async form(req: IncomingMessage): Promise<URLSearchParams> {
    const chunks: Buffer[] = [];
    let n = 0;
    try {
      for await (const c of req as AsyncIterable<Buffer>) {
        n += c.length;
        if (n > 16 * 1024) throw new ApiError(413, 'admin_body_too_large', 'the form is too large');
        chunks.push(c);
      }
    } catch (e) {
      if (e instanceof ApiError) throw e;
      // The client went away mid-form (a reset): not an internal error.
      throw new ApiError(408, 'admin_timeout', 'the form did not arrive');
    }
    const ct = String(req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    if (ct !== 'application/x-www-form-urlencoded') throw new ApiError(415, 'admin_unsupported_media_type', 'send the form as application/x-www-form-urlencoded');
    return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
  }

  private async login(req: IncomingMessage, res: ServerResponse): Promise<true> {
    const f = await this.form(req);
    const client = req.socket.remoteAddress ?? '';
    const nonce = cookies(req).get(LOGIN_COOKIE);
    const sent = f.get('csrf') ?? '';
    if (nonce === undefined || !sameText(nonce, sent)) {
      this.o.onSigninFailure?.('csrf');
      this.o.log.warn({ audit: true, event: 'console_login', ok: false, reason: 'csrf', client }, 'console sign-in refused: missing or wrong CSRF token');
      return this.loginPage(res, 'The sign-in form expired; try again.', 403);
    }
    const secret = f.get('secret') ?? '';
    let via: Session['via'] | undefined;
    let stamp = '';
    // The token first: a SHA-256 compare, never held up by others' failed passwords, and
    // taken even from a locked-out address (src/bearer.ts limitedBearer says why).
    if (secret !== '' && this.tokenOk(`Bearer ${secret}`)) via = 'token';
    else {
      // Before a password is looked at: an address that is locked out gets no answer about it.
      const own = this.limiter.check(client);
      if (own.waitMs > 0) return this.signinLimited(res, client, own);
      if (secret !== '' && hasConsolePassword(this.o.stateDir)) {
        // A password check runs scrypt: the overall limit applies (to addresses with failures on record).
        const all = this.limiter.checkPassword(client);
        if (all.waitMs > 0) return this.signinLimited(res, client, all);
        // Counted as a failure before the await (a success clears it): requests from one
        // address in parallel see each other and cannot get more checks than one by one.
        this.limiter.failed(client, { password: true });
        const checked = await checkConsolePassword(this.o.stateDir, secret);
        if (checked !== false) {
          via = 'password';
          stamp = checked;
        }
      } else this.limiter.failed(client);
    }
    if (via === undefined) {
      this.o.onSigninFailure?.('credentials');
      this.o.log.warn({ audit: true, event: 'console_login', ok: false, reason: 'credentials', client }, 'console sign-in refused: wrong token or password');
      return this.loginPage(res, 'Wrong token or password.', 401);
    }
    // A password sign-in clears the address; the token only when it is not locked out (src/bearer.ts startOver).
    if (via === 'token') startOver(this.limiter, client);
    else this.limiter.succeeded(client);
    const s = this.sessions.create(via, stamp);
    this.o.log.info({ audit: true, event: 'console_login', ok: true, via, client, session: s.ref }, `console sign-in (${via})`);
    return this.redirect(res, '/console/', { 'Set-Cookie': [this.cookie(SESSION_COOKIE, s.id, Math.ceil(this.o.sessionTtlMs / 1000)), this.cookie(LOGIN_COOKIE, '', 0)] });
  }

  private signinLimited(res: ServerResponse, client: string, limit: LimitVerdict): true {
    const secs = Math.ceil(limit.waitMs / 1000);
    this.o.onSigninFailure?.('rate_limited');
    this.o.log.warn(
      { audit: true, event: 'console_login', ok: false, reason: 'rate_limited', scope: limit.scope, client, retryAfterSeconds: secs },
      `console sign-in refused: too many failed sign-ins ${limit.scope === 'address' ? 'from this address' : 'overall'}`,
    );
    return this.loginPage(res, `Too many failed sign-ins; try again in ${secs} s.`, 429, { 'Retry-After': String(secs) });
  }

  private async logout(req: IncomingMessage, res: ServerResponse, s: Session | undefined): Promise<true> {
    const f = await this.form(req);
    if (s === undefined) return this.redirect(res, '/console/login');
    if (!sameText(f.get('csrf') ?? '', s.csrf)) return this.text(res, 403, 'missing or wrong CSRF token');
    this.sessions.end(s);
    this.o.log.info({ audit: true, event: 'console_logout', via: s.via }, 'console sign-out');
    return this.redirect(res, '/console/login', { 'Set-Cookie': this.cookie(SESSION_COOKIE, '', 0) });
  }

  private page(res: ServerResponse, s: Session, id: string, title: string, body: string): true {
    res.writeHead(200, this.headers({ 'Content-Type': 'text/html; charset=utf-8' }));
    res.end(layout(title, s, body, [`${id}.js`], id));
    return true;
  }

  /** Server-sent events: one `event` message per event that passes `?filter=`. */
  private stream(req: IncomingMessage, res: ServerResponse, url: URL, s: Session | undefined): true {
    const header = req.headers['authorization'];
    if (s === undefined) {
      // The bearer token is limited as on /api/v1 and the sign-in form: per address, before it is looked at.
      const client = req.socket.remoteAddress ?? '';
      const v = limitedBearer(this.tokenOk, this.limiter, header, client);
      const secs = v.retryAfterSeconds;
      if (secs !== undefined) {
        this.o.log.warn({ audit: true, code: 'admin_rate_limited', client, path: url.pathname, retryAfterSeconds: secs }, 'event stream refused: too many wrong bearer tokens from this address');
        res.writeHead(429, this.headers({ 'Content-Type': 'application/json; charset=utf-8', 'Retry-After': String(secs) }));
        res.end(JSON.stringify({ error: { code: 'admin_rate_limited', message: `too many wrong bearer tokens from this address: try again in ${secs} s` } }) + '\n');
        return true;
      }
      if (!v.ok) {
        res.writeHead(401, this.headers({ 'Content-Type': 'application/json; charset=utf-8' }));
        res.end(JSON.stringify({ error: { code: 'admin_unauthorized', message: 'sign in, or send the bearer token' } }) + '\n');
        return true;
      }
    }
    if (this.streams.size >= MAX_TAIL_CLIENTS) {
      res.writeHead(503, this.headers({ 'Content-Type': 'application/json; charset=utf-8', 'Retry-After': '10' }));
      res.end(JSON.stringify({ error: { code: 'console_tail_busy', message: `${MAX_TAIL_CLIENTS} live tails are open, the most the console serves at once: close one` } }) + '\n');
      return true;
    }
    let filter: Filter | undefined;
    const src = url.searchParams.get('filter') ?? '';
    if (src.trim() !== '') {
      try {
        filter = compileFilter(src);
      } catch (e) {
        res.writeHead(400, this.headers({ 'Content-Type': 'application/json; charset=utf-8' }));
        res.end(JSON.stringify({ error: { code: 'console_bad_filter', message: (e as Error).message } }) + '\n');
        return true;
      }
    }
    const full = url.searchParams.get('full') === 'true';
    res.writeHead(200, this.headers({ 'Content-Type': 'text/event-stream; charset=utf-8', Connection: 'keep-alive' }));
    res.write(': cefd live tail\n\n');
    res.socket?.setTimeout(0);
    // A write error (the client went away) ends the stream through 'close'; never uncaught.
    res.on('error', () => undefined);
    const ended = (): boolean => res.writableEnded || res.destroyed;
    let dropped = 0;
    /** Whether the client takes more now; if so, it is first told how many events it missed. */
    const ready = (): boolean => {
      if (res.writableLength > TAIL_CLIENT_PENDING_BYTES) return false;
      if (dropped > 0) {
        res.write(`event: dropped\ndata: ${JSON.stringify({ dropped })}\n\n`);
        dropped = 0;
      }
      return true;
    };
    // A stream opened with a session ends with it (sign-out, expiry): checked before every
    // message, so nothing is sent after it.
    const signedOut = (): boolean => {
      if (s === undefined || this.sessions.live(s)) return false;
      // Ended (the client sees the stream finish), and destroyed if it has not closed 5 s
      // later: a client that stopped reading would keep an ended response, and its tail
      // slot, open. Its 'close' unsubscribes it.
      res.end();
      const kill = setTimeout(() => res.destroy(), 5000);
      kill.unref();
      res.once('close', () => clearTimeout(kill));
      return true;
    };
    const off = this.tail.subscribe({
      filter,
      send: (e, ev) => {
        if (ended() || signedOut()) return;
        if (!ready()) {
          dropped++;
          this.o.onTailDropped?.(1);
          return;
        }
        res.write(`event: event\ndata: ${full ? e.json : JSON.stringify(summary(e, ev))}\n\n`);
      },
    });
    res.on('drain', ready);
    const ping = setInterval(() => {
      if (!ended() && !signedOut() && ready()) res.write(': ping\n\n');
    }, 15_000);
    ping.unref();
    const done = (): void => {
      clearInterval(ping);
      off();
      this.streams.delete(res);
    };
    this.streams.set(res, done);
    req.on('close', done);
    res.on('close', done);
    return true;
  }
}

function bufferFill(q: unknown, max: number): number | null {
  const bytes = (q as { bytes?: unknown }).bytes;
  return typeof bytes === 'number' ? Math.min(1, bytes / max) : null;
}

type Obj = Record<string, unknown>;
const obj = (v: unknown): Obj => (v !== null && typeof v === 'object' ? (v as Obj) : {});
const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);

/**
 * What a list shows of one event: CEF header fields, else (KSC's RFC 5424 "Syslog" export,
 * other syslog) what the `ksc` normalizer read (docs/ksc-normalizer.md), else the syslog
 * MSGID and the structured data's `et` and `etdn`, else the message.
 */
function summary(e: TailEntry, parsed?: object): Record<string, unknown> {
  const ev = (parsed ?? JSON.parse(e.json)) as Obj;
  const cef = obj(ev['cef']);
  const ext = obj(cef['extensions']);
  const syslog = obj(ev['syslog']);
  const ksc = obj(ev['ksc']);
  const sd = Object.values(obj(syslog['structuredData'])).map(obj);
  const fromSd = (k: string): string | undefined => sd.map((x) => str(x[k])).find((v) => v !== undefined);
  return {
    id: e.id,
    receivedAt: new Date(e.ms).toISOString(),
    listener: e.listener,
    peer: ev['peer'] ?? null,
    name: str(cef['name']) ?? str(ksc['eventName']) ?? fromSd('etdn') ?? str(ev['message']) ?? null,
    eventClassId: str(cef['deviceEventClassId']) ?? str(ksc['eventType']) ?? fromSd('et') ?? str(syslog['msgId']) ?? null,
    category: str(ksc['category']) ?? null,
    severity: ev['severity'] ?? cef['severity'] ?? str(ksc['severity']) ?? null,
    host: str(ext['destinationHostName']) ?? str(ext['deviceHostName']) ?? str(ext['sourceHostName']) ?? str(obj(ksc['host'])['name']) ?? fromSd('hdn') ?? str(syslog['hostname']) ?? null,
    assets: ev['assets'] ?? null,
  };
}

function layout(title: string, s: Session | undefined, body: string, scripts: string[], active = ''): string {
  const nav =
    s === undefined
      ? ''
      : `<header><nav aria-label="Console"><span class="brand">cefd</span>
<a href="/console/"${active === 'overview' ? ' aria-current="page"' : ''}>Overview</a>
<a href="/console/events"${active === 'events' ? ' aria-current="page"' : ''}>Events</a>
<a href="/console/ksc"${active === 'ksc' || active === 'asset' ? ' aria-current="page"' : ''}>KSC</a></nav>
<form method="post" action="/console/logout" class="logout"><input type="hidden" name="csrf" value="${esc(s.csrf)}"><button type="submit">Sign out</button></form></header>`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
${s !== undefined ? `<meta name="csrf-token" content="${esc(s.csrf)}">` : ''}
<title>${esc(title)} · cefd</title><link rel="stylesheet" href="/console/static/console.css">
${scripts.map((x) => `<script type="module" src="/console/static/${x}"></script>`).join('\n')}
</head><body>${nav}${body}</body></html>
`;
}

const OVERVIEW_BODY = `<main><h1>Overview</h1>
<p id="status" role="status">Loading…</p>
<section aria-labelledby="h-listeners"><h2 id="h-listeners">Listeners</h2><div id="listeners"></div></section>
<section aria-labelledby="h-outputs"><h2 id="h-outputs">Outputs</h2><table id="outputs"><thead><tr><th scope="col">Output</th><th scope="col">State</th><th scope="col">Sent</th><th scope="col">Queued</th><th scope="col">Disk buffer</th><th scope="col">Last error</th></tr></thead><tbody></tbody></table></section>
<section aria-labelledby="h-errors"><h2 id="h-errors">Parse errors and dead letters</h2><table id="errors"><thead><tr><th scope="col">Kind</th><th scope="col">Code</th><th scope="col">Count</th></tr></thead><tbody></tbody></table></section>
</main>`;

const EVENTS_BODY = `<main><h1>Events</h1>
<form id="tail-form" class="row"><label for="filter">Filter (route filter language)</label><input id="filter" name="filter" size="50" placeholder='ksc.category == "detection"'>
<button type="submit">Apply</button><button type="button" id="pause" aria-pressed="false">Pause</button></form>
<p id="tail-status" role="status"></p><p><button type="button" id="tail-retry" hidden>Retry</button></p>
<form id="search-form" class="row"><label for="search-text">Search the last events in memory</label><input id="search-text" name="text"><button type="submit">Search</button></form>
<div class="split"><section aria-labelledby="h-live"><h2 id="h-live">Live</h2>
<table id="events"><thead><tr><th scope="col">Received</th><th scope="col">Listener</th><th scope="col">Class</th><th scope="col">Name</th><th scope="col">Host</th></tr></thead><tbody></tbody></table></section>
<section aria-labelledby="h-detail" id="detail-section"><h2 id="h-detail">Detail</h2>
<div role="tablist" aria-label="Encoding" id="enc-tabs"><button role="tab" data-enc="raw" aria-selected="false">raw</button><button role="tab" data-enc="native" aria-selected="true">native</button><button role="tab" data-enc="ecs" aria-selected="false">ecs</button><button role="tab" data-enc="kuma" aria-selected="false">kuma</button></div>
<pre id="detail" tabindex="0">Choose an event.</pre></section></div>
</main>`;

const KSC_BODY = `<main><h1>Kaspersky Security Center</h1>
<p id="ksc-status" role="status"></p>
<section aria-labelledby="h-tenants"><h2 id="h-tenants">Tenants</h2><table id="tenants"><thead><tr><th scope="col">Tenant</th><th scope="col">Integration</th><th scope="col">Connections</th><th scope="col">Actions</th></tr></thead><tbody></tbody></table>
<form id="tenant-form" method="post" action="/console/ksc"><fieldset><legend>Add a tenant</legend>
<label for="tenant-name">Tenant name</label><input id="tenant-name" name="name" required maxlength="64" pattern="[A-Za-z0-9][A-Za-z0-9._\-]{0,63}" aria-describedby="tenant-name-help">
<span id="tenant-name-help" class="help">1-64 letters, digits, ".", "_" or "-".</span>
<label class="check"><input id="tenant-integration" name="integration" type="checkbox" checked> KSC integration on</label>
<button type="submit">Add tenant</button>
</fieldset></form></section>
<section aria-labelledby="h-conns"><h2 id="h-conns">Connections</h2>
<table id="connections"><thead><tr><th scope="col">Tenant</th><th scope="col">Name</th><th scope="col">URL</th><th scope="col">State</th><th scope="col">Secret</th><th scope="col">Actions</th></tr></thead><tbody></tbody></table>
<form id="conn-form" method="post" action="/console/ksc"><fieldset><legend id="conn-legend">Add a connection</legend>
<input type="hidden" name="id" id="conn-id">
<label for="conn-tenant">Tenant</label><input id="conn-tenant" name="tenant" value="default">
<label for="conn-name">Name</label><input id="conn-name" name="name" required>
<label for="conn-url">URL</label><input id="conn-url" name="url" required placeholder="ksc.example:13299">
<label for="conn-pin">Certificate SHA-256 pin</label><input id="conn-pin" name="pin">
<label for="conn-user">User</label><input id="conn-user" name="user" autocomplete="off">
<label for="conn-password">Password (write-only)</label><input id="conn-password" name="password" type="password" autocomplete="new-password" aria-describedby="conn-password-help">
<span id="conn-password-help" class="help">A changed URL or pin needs the user and password again: the stored password is only sent to the server it was given for.</span>
<label class="check"><input id="conn-disabled" name="disabled" type="checkbox"> Disabled</label>
<button type="submit">Save connection</button> <button type="reset" id="conn-reset">Clear</button>
</fieldset></form></section>
<section aria-labelledby="h-assets"><h2 id="h-assets">Assets</h2>
<form id="asset-search" class="row"><label for="asset-q">Search assets</label><input id="asset-q" name="q"><button type="submit">Search</button> <button type="button" id="import">Import assets now</button></form>
<table id="assets"><thead><tr><th scope="col">Name</th><th scope="col">IPs</th><th scope="col">Group</th><th scope="col">Products</th><th scope="col">Last seen</th></tr></thead><tbody></tbody></table></section>
<section aria-labelledby="h-runs"><h2 id="h-runs">Task runs</h2><table id="runs"><thead><tr><th scope="col">Run</th><th scope="col">Task</th><th scope="col">Host</th><th scope="col">Origin</th><th scope="col">State</th><th scope="col">Updated</th></tr></thead><tbody></tbody></table></section>
<section aria-labelledby="h-rules"><h2 id="h-rules">Response rules</h2><table id="rules"><thead><tr><th scope="col">Rule</th><th scope="col">Tasks</th><th scope="col">Filter</th><th scope="col">Triggered</th><th scope="col">Started</th><th scope="col">Failed</th><th scope="col">Skipped</th><th scope="col">No asset reference</th><th scope="col">Last triggers</th></tr></thead><tbody></tbody></table></section>
</main>`;

const ASSET_BODY = `<main data-asset="{{id}}" id="asset-main"><p><a href="/console/ksc">← KSC</a></p><h1 id="asset-title">Asset</h1>
<p id="asset-status" role="status"></p>
<dl id="asset-facts"></dl>
<section aria-labelledby="h-start"><h2 id="h-start">Start KSC task</h2>
<form id="start-form" method="post" action="/console/ksc"><label for="task">KUMA task of the connection</label><select id="task" name="task" required></select>
<p id="task-why" aria-live="polite"></p><p class="help" id="task-scope-help">KSC starts a task on its whole scope (every device of its administration group, or of its device selection), not only on this asset.</p><button type="submit" aria-describedby="task-scope-help">Start task</button></form></section>
<section aria-labelledby="h-aruns"><h2 id="h-aruns">Task runs</h2><table id="runs"><thead><tr><th scope="col">Run</th><th scope="col">Task</th><th scope="col">Origin</th><th scope="col">State</th><th scope="col">Updated</th></tr></thead><tbody></tbody></table></section>
<section aria-labelledby="h-aevents"><h2 id="h-aevents">Recent events (in memory)</h2><ul id="asset-events"></ul></section>
</main>`;

export type { Reply };
