/**
 * An emulator of Splunk's HTTP Event Collector, for the splunk_hec output's tests and
 * benchmark. Splunk cannot be installed here (no Debian or npm package), so this is
 * written from Splunk's public documentation ("Format events for HTTP Event Collector",
 * "HTTP Event Collector REST API endpoints", "Troubleshoot HTTP Event Collector": the
 * status and `code` table):
 * - `POST /services/collector/event` (also `/services/collector`, `/event/1.0`): one or
 *   more JSON event objects one after another; `event` required (code 12) and not blank
 *   (13); `time` epoch seconds, a number or a numeric string (else 6, invalid data
 *   format); `host`, `source`, `sourcetype`, `index` strings; an index the token may not
 *   write to is code 7. A bad event answers 400 with `invalid-event-number` (its index in
 *   the request) and nothing of the request is kept; an empty body is code 5, no data.
 * - `Authorization: Splunk <token>`: none 401 code 2, another form 401 code 3, an unknown
 *   token 403 code 4, a disabled one 403 code 1.
 * - Success 200 `{"text":"Success","code":0}`; busy 503 code 9 and unhealthy 503 code 18
 *   (injected); `GET /services/collector/health` 200 code 17. A body above
 *   `max_content_length` answers 413. gzip bodies (`Content-Encoding: gzip`) are read.
 * - Faults a test injects: whole-request answers, a slow answer, going down and coming
 *   back on the same port, and a connection dropped after the events were kept.
 */
import http from 'node:http';
import { gunzipSync } from 'node:zlib';
import { EmulatedServer } from './emulated-server.js';

export interface HecEmulatorOptions {
  tokens?: string[];
  disabledTokens?: string[];
  /** Indexes the tokens may write to; unset: any. */
  indexes?: string[];
  maxContentLength?: number;
  tls?: { key: Buffer | string; cert: Buffer | string };
  port?: number;
}

export interface HecEvent {
  time?: number | string;
  host?: string;
  source?: string;
  sourcetype?: string;
  index?: string;
  event: unknown;
}

export interface HecFault {
  status: number;
  code?: number;
  text?: string;
  dropAfterIndexing?: boolean;
}

export class HecEmulator extends EmulatedServer {
  readonly events: HecEvent[] = [];
  readonly requests: { events: number; gzip: boolean; headers: http.IncomingHttpHeaders }[] = [];
  authFailures = 0;
  readonly faults: HecFault[] = [];
  /** A test marks events HEC refuses (returns the code, 6 or 13 ...). */
  invalidEvent: ((e: HecEvent) => number | undefined) | undefined;
  delayMs = 0;

  constructor(private readonly opts: HecEmulatorOptions = {}) {
    super(opts);
  }



  private answer(res: http.ServerResponse, status: number, body: Record<string, unknown>): void {
    res.writeHead(status, { 'content-type': 'application/json; charset=UTF-8' });
    res.end(JSON.stringify(body));
  }

  protected async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req as AsyncIterable<Buffer>) chunks.push(c);
    if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
    const path = (req.url ?? '/').split('?')[0]!;
    if (req.method === 'GET' && path === '/services/collector/health') return this.answer(res, 200, { text: 'HEC is healthy', code: 17 });
    if (!['/services/collector/event', '/services/collector', '/services/collector/event/1.0'].includes(path)) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('Not Found');
      return;
    }
    const auth = req.headers['authorization'];
    const tokens = this.opts.tokens ?? [];
    if (auth === undefined) {
      this.authFailures++;
      return this.answer(res, 401, { text: 'Token is required', code: 2 });
    }
    const m = /^Splunk (\S+)$/.exec(auth);
    if (m === null) {
      this.authFailures++;
      return this.answer(res, 401, { text: 'Invalid authorization', code: 3 });
    }
    if (this.opts.disabledTokens?.includes(m[1]!)) {
      this.authFailures++;
      return this.answer(res, 403, { text: 'Token disabled', code: 1 });
    }
    if (!tokens.includes(m[1]!)) {
      this.authFailures++;
      return this.answer(res, 403, { text: 'Invalid token', code: 4 });
    }
    let body = Buffer.concat(chunks);
    const gzip = /gzip/i.test(String(req.headers['content-encoding'] ?? ''));
    if (gzip) {
      try {
        body = gunzipSync(body);
      } catch {
        return this.answer(res, 400, { text: 'Invalid data format', code: 6 });
      }
    }
    const max = this.opts.maxContentLength ?? 838_860_800; // inputs.conf [http] max_content_length default (800 MB)
    if (body.length > max) {
      res.writeHead(413, { 'content-type': 'text/plain' });
      res.end(`Content-Length of ${body.length} too large (maximum is ${max})`);
      return;
    }
    const fault = this.faults.shift();
    if (fault !== undefined && !fault.dropAfterIndexing) return this.answer(res, fault.status, { text: fault.text ?? 'Server is busy', code: fault.code ?? 9 });
    const parsed = this.parse(body.toString('utf8'));
    if ('error' in parsed) return this.answer(res, 400, parsed.error);
    this.events.push(...parsed.events);
    this.requests.push({ events: parsed.events.length, gzip, headers: req.headers });
    if (fault?.dropAfterIndexing) {
      req.socket.destroy();
      return;
    }
    this.answer(res, 200, { text: 'Success', code: 0 });
  }

  /** Reads the concatenated event objects; the first bad one fails the request. */
  private parse(text: string): { events: HecEvent[] } | { error: Record<string, unknown> } {
    const events: HecEvent[] = [];
    let at = 0;
    const bad = (code: number, msg: string, n: number) => ({ error: { text: msg, code, 'invalid-event-number': n } });
    for (;;) {
      while (at < text.length && /\s/.test(text[at]!)) at++;
      if (at >= text.length) break;
      const n = events.length;
      const end = objectEnd(text, at);
      if (end < 0) return bad(6, 'Invalid data format', n);
      let e: HecEvent;
      try {
        e = JSON.parse(text.slice(at, end)) as HecEvent;
      } catch {
        return bad(6, 'Invalid data format', n);
      }
      at = end;
      if (e === null || typeof e !== 'object' || Array.isArray(e)) return bad(6, 'Invalid data format', n);
      if (!('event' in e) || e.event === null) return bad(12, 'Event field is required', n);
      if (e.event === '' || (typeof e.event === 'string' && e.event.trim() === '')) return bad(13, 'Event field cannot be blank', n);
      if (e.time !== undefined && !(typeof e.time === 'number' || (typeof e.time === 'string' && /^\d+(\.\d+)?$/.test(e.time)))) return bad(6, 'Invalid data format', n);
      for (const k of ['host', 'source', 'sourcetype', 'index'] as const) if (e[k] !== undefined && typeof e[k] !== 'string') return bad(6, 'Invalid data format', n);
      if (e.index !== undefined && this.opts.indexes !== undefined && !this.opts.indexes.includes(e.index)) return bad(7, 'Incorrect index', n);
      const injected = this.invalidEvent?.(e);
      if (injected !== undefined) return bad(injected, injected === 13 ? 'Event field cannot be blank' : 'Invalid data format', n);
      events.push(e);
    }
    if (events.length === 0) return { error: { text: 'No data', code: 5 } };
    return { events };
  }
}

/** End (exclusive) of the JSON object starting at `from`, or -1. */
function objectEnd(s: string, from: number): number {
  if (s[from] !== '{') return -1;
  let depth = 0;
  let inStr = false;
  for (let i = from; i < s.length; i++) {
    const c = s[i];
    if (inStr) {
      if (c === '\\') i++;
      else if (c === '"') inStr = false;
    } else if (c === '"') inStr = true;
    else if (c === '{' || c === '[') depth++;
    else if (c === '}' || c === ']') {
      depth--;
      if (depth === 0) return i + 1;
    }
  }
  return -1;
}
