/** A console user agent for the API tests: the sign-in form, the session cookie, the CSRF token. */
import https from 'node:https';
import http from 'node:http';
import { sseReader } from '../../src/console/sse.js';

export interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  json: Record<string, unknown> | undefined;
}

/** One request with node:http(s) (fetch hides Set-Cookie handling and redirects). */
export function request(base: string, method: string, path: string, o: { headers?: Record<string, string>; body?: string; ca?: string; localAddress?: string } = {}): Promise<Answer> {
  const u = new URL(path, base);
  const mod = u.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = mod.request(u, { method, headers: { ...(o.body !== undefined ? { 'content-length': String(Buffer.byteLength(o.body)) } : {}), ...o.headers }, ...(o.ca !== undefined ? { ca: o.ca } : {}), ...(o.localAddress !== undefined ? { localAddress: o.localAddress, agent: false } : {}) }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (d: string) => (text += d));
      res.on('end', () => {
        let json: Record<string, unknown> | undefined;
        try {
          json = JSON.parse(text) as Record<string, unknown>;
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
      });
    });
    req.on('error', reject);
    req.end(o.body);
  });
}

export function setCookies(a: Answer): string[] {
  const h = a.headers['set-cookie'];
  return h === undefined ? [] : h;
}

function cookieValue(a: Answer, name: string): string | undefined {
  for (const c of setCookies(a)) {
    const m = new RegExp(`^${name}=([^;]*)`).exec(c);
    if (m !== null) return m[1];
  }
  return undefined;
}

export class ConsoleAgent {
  session = '';
  csrf = '';
  /** `localAddress`: the client address to connect from (any 127.x.y.z on Linux), for the per-address limits. */
  constructor(readonly base: string, readonly ca?: string, readonly localAddress?: string) {}

  /** The sign-in page's nonce (hidden field and cookie). */
  async loginForm(): Promise<{ nonce: string; cookie: string; page: Answer }> {
    const page = await request(this.base, 'GET', '/console/login', this.opts());
    const nonce = /name="csrf" value="([^"]+)"/.exec(page.text)?.[1] ?? '';
    return { nonce, cookie: cookieValue(page, 'cefd_login') ?? '', page };
  }

  async login(secret: string): Promise<Answer> {
    const f = await this.loginForm();
    const r = await request(this.base, 'POST', '/console/login', {
      ...this.opts(),
      headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: `cefd_login=${f.cookie}` },
      body: new URLSearchParams({ csrf: f.nonce, secret }).toString(),
    });
    const s = cookieValue(r, 'cefd_session');
    if (r.status === 303 && s !== undefined) {
      this.session = s;
      const home = await this.get('/console/');
      this.csrf = /name="csrf-token" content="([^"]+)"/.exec(home.text)?.[1] ?? '';
    }
    return r;
  }

  private opts(): { ca?: string; localAddress?: string } {
    return { ...(this.ca !== undefined ? { ca: this.ca } : {}), ...(this.localAddress !== undefined ? { localAddress: this.localAddress } : {}) };
  }

  get(path: string): Promise<Answer> {
    return request(this.base, 'GET', path, { ...this.opts(), headers: { cookie: `cefd_session=${this.session}` } });
  }

  /** A JSON change; `csrf: false` leaves the token out, a string sends that one. */
  send(method: string, path: string, body?: unknown, o: { csrf?: false | string } = {}): Promise<Answer> {
    const headers: Record<string, string> = { cookie: `cefd_session=${this.session}` };
    if (o.csrf !== false) headers['x-csrf-token'] = o.csrf ?? this.csrf;
    if (body !== undefined) headers['content-type'] = 'application/json';
    return request(this.base, method, path, { ...this.opts(), headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  }

  logout(csrf = this.csrf): Promise<Answer> {
    return request(this.base, 'POST', '/console/logout', {
      ...this.opts(),
      headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: `cefd_session=${this.session}` },
      body: new URLSearchParams({ csrf }).toString(),
    });
  }
}

/** Reads server-sent events from a stream until `want` of them came (or `ms` passed: then rejects). */
export function readSse(base: string, path: string, headers: Record<string, string>, want: number, ms = 30_000, onOpen?: () => void): Promise<{ status: number; events: string[]; body: string }> {
  const u = new URL(path, base);
  return new Promise((resolve, reject) => {
    const events: string[] = [];
    const req = http.request(u, { headers }, (res) => {
      let buf = '';
      if (res.statusCode !== 200) {
        res.setEncoding('utf8').on('data', (d: string) => (buf += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, events, body: buf }));
        return;
      }
      onOpen?.();
      res.setEncoding('utf8').on(
        'data',
        sseReader((data) => {
          events.push(data);
          if (events.length === want) {
            clearTimeout(t);
            req.destroy();
            resolve({ status: 200, events, body: '' });
          }
        }),
      );
    });
    const t = setTimeout(() => {
      req.destroy();
      reject(new Error(`got ${events.length} of ${want} events`));
    }, ms);
    req.on('error', (e) => {
      if (events.length < want) reject(e);
    });
    req.end();
  });
}
