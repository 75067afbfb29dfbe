import { test, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { HttpOutput, parseRetryAfter } from '../../src/outputs/http/http.js';
import { HttpTransport } from '../../src/outputs/shared/http-transport.js';
import { HTTP_FIELDS } from '../../src/outputs/http/config.js';
import { loadFields } from '../../src/config/load.js';
import { Writable } from 'node:stream';
import { CONFIG_RETRY_MS, type SendResult } from '../../src/outputs/types.js';
import { BytesBatch, MemoryQueue } from '../../src/buffer/queue.js';
import { FlowControl } from '../../src/pipeline/flow-control.js';
import { OutputRunner } from '../../src/pipeline/output-runner.js';
import { Telemetry } from '../../src/telemetry/telemetry.js';
import { waitFor } from '../helpers/daemon.js';

interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}
type Handler = (req: http.IncomingMessage, res: http.ServerResponse, seen: Seen, n: number) => void;

interface TestServer {
  url: string;
  seen: Seen[];
  connections: number;
  close(): Promise<void>;
}

let dir: string;
let certFile: string;
let keyFile: string;
const open: TestServer[] = [];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'cefd-output-http-'));
  certFile = join(dir, 'cert.pem');
  keyFile = join(dir, 'key.pem');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '2',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
  ], { stdio: 'ignore' });
});
afterAll(async () => {
  await Promise.all(open.map((s) => s.close()));
  rmSync(dir, { recursive: true, force: true });
});

/** A local server: records every request (with its whole body) and answers with `handler`. */
async function serve(handler: Handler, tls?: https.ServerOptions): Promise<TestServer> {
  const seen: Seen[] = [];
  const listener = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const s: Seen = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks) };
      seen.push(s);
      handler(req, res, s, seen.length);
    });
  };
  const server = tls ? https.createServer(tls, listener) : http.createServer(listener);
  const t: TestServer = {
    url: '',
    seen,
    connections: 0,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  server.on(tls ? 'secureConnection' : 'connection', () => t.connections++);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.url = `${tls ? 'https' : 'http'}://127.0.0.1:${(server.address() as AddressInfo).port}/ingest`;
  open.push(t);
  return t;
}

const ok: Handler = (_q, res) => res.writeHead(200).end('{"ok":true}');

/** The options as a config file would give them: checked and defaulted by the schema. */
const cfg = (raw: Record<string, unknown>) => loadFields(HTTP_FIELDS, raw);

async function output(raw: Record<string, unknown>, now?: () => number): Promise<HttpOutput> {
  const out = new HttpOutput('h', cfg(raw), now ? { now } : {});
  await out.start();
  return out;
}

function records(n: number, tag: string): string[] {
  return Array.from({ length: n }, (_, i) => JSON.stringify({ tag, i, msg: 'Détection 木马 🐛 "q" \\', n: i * 1.5 }));
}

const errorOf = (r: SendResult) => (r.status === 'delivered' ? '' : r.error);

test('503 for the first requests, then 200: retry each time, then delivered, same body every time', async () => {
  const srv = await serve((_q, res, _s, n) => (n <= 3 ? res.writeHead(503).end('busy') : res.writeHead(200).end()));
  const out = await output({ url: srv.url });
  const r = records(20, 'a');
  const results: SendResult[] = [];
  for (let i = 0; i < 4; i++) results.push(await out.send({ records: r }));
  expect(results.map((x) => x.status)).toEqual(['retry', 'retry', 'retry', 'delivered']);
  expect(errorOf(results[0]!)).toMatch(/POST http:\/\/127\.0\.0\.1:\d+\/ingest: HTTP 503: busy/);
  expect(results[0]).not.toHaveProperty('retryAfterMs');
  expect(srv.seen.length).toBe(4);
  for (const s of srv.seen) expect(s.body.toString('utf8')).toBe(srv.seen[0]!.body.toString('utf8'));
  await out.close();
});

test('NDJSON body: every record plus a newline, byte-exact, with its content type', async () => {
  const srv = await serve(ok);
  const out = await output({ url: srv.url });
  const r = records(500, 'n');
  expect(await out.send({ records: r })).toEqual({ status: 'delivered' });
  const s = srv.seen[0]!;
  expect(s.method).toBe('POST');
  expect(s.url).toBe('/ingest');
  expect(s.headers['content-type']).toBe('application/x-ndjson');
  expect(s.body.equals(Buffer.from(r.map((x) => x + '\n').join(''), 'utf8'))).toBe(true);
  expect(Number(s.headers['content-length'])).toBe(s.body.length);
  await out.close();
});

test('JSON-array body: [records joined by commas], byte-exact, with its content type', async () => {
  const srv = await serve(ok);
  const out = await output({ url: srv.url, format: 'json_array' });
  const r = records(7, 'j');
  expect(await out.send({ records: r })).toEqual({ status: 'delivered' });
  const s = srv.seen[0]!;
  expect(s.headers['content-type']).toBe('application/json');
  expect(s.body.toString('utf8')).toBe('[' + r.join(',') + ']');
  expect(JSON.parse(s.body.toString('utf8'))).toEqual(r.map((x) => JSON.parse(x)));
  expect(await out.send({ records: ['{"one":1}'] })).toEqual({ status: 'delivered' });
  expect(srv.seen[1]!.body.toString()).toBe('[{"one":1}]');
  // A batch from the disk buffer (NDJSON bytes in pieces): the same array, built from the bytes.
  const nd = Buffer.from(r.map((x) => x + '\n').join(''));
  expect(await out.send(new BytesBatch(r.length, [nd.subarray(0, 5), nd.subarray(5, 300), nd.subarray(300)]))).toEqual({ status: 'delivered' });
  expect(srv.seen[2]!.body.toString('utf8')).toBe('[' + r.join(',') + ']');
  await out.close();
});

test('gzip: the body is gzip-compressed NDJSON with Content-Encoding: gzip', async () => {
  const srv = await serve(ok);
  const out = await output({ url: srv.url, compress: true });
  const r = records(100, 'z');
  expect(await out.send({ records: r })).toEqual({ status: 'delivered' });
  const s = srv.seen[0]!;
  expect(s.headers['content-encoding']).toBe('gzip');
  expect(gunzipSync(s.body).toString('utf8')).toBe(r.map((x) => x + '\n').join(''));
  await out.close();
});

test('an empty batch is delivered without a request', async () => {
  const srv = await serve(ok);
  const out = await output({ url: srv.url });
  expect(await out.send({ records: [] })).toEqual({ status: 'delivered' });
  expect(srv.seen.length).toBe(0);
  await out.close();
});

test('custom headers and Authorization: Bearer are sent; the token is trimmed', async () => {
  const srv = await serve(ok);
  const out = await output({
    url: srv.url,
    headers: { 'X-Tenant': 'blue', 'User-Agent': 'cefd-test', 'Content-Length': '1' },
    bearer_token: 's3cr3t-t0ken-value\n',
  });
  expect((await out.send({ records: records(1, 'h') })).status).toBe('delivered');
  const h = srv.seen[0]!.headers;
  expect(h['x-tenant']).toBe('blue');
  expect(h['user-agent']).toBe('cefd-test');
  expect(h['authorization']).toBe('Bearer s3cr3t-t0ken-value');
  expect(Number(h['content-length'])).toBe(srv.seen[0]!.body.length); // not overridable
  await out.close();
});

test('the token and other secrets never appear in any result, even when the server echoes them', async () => {
  const statuses = [400, 401, 503];
  const echo: Handler = (q, res, _s, n) =>
    res.writeHead(statuses[(n - 1) % statuses.length]!).end(`denied for ${JSON.stringify(q.headers)} at ${q.url}`);
  const srv = await serve(echo);
  const token = 'tok-9f8e7d6c5b4a';
  const url = srv.url.replace('http://', 'http://user:pa55word-xyz@') + '?apikey=q-secret-123';
  const out = await output({ url, bearer_token: token, headers: { 'X-Api-Key': 'key-abcdef-123' } });
  const results: SendResult[] = [];
  for (let i = 0; i < statuses.length; i++) results.push(await out.send({ records: records(1, 'a') }));
  expect(results.map((r) => r.status)).toEqual(['rejected', 'retry', 'retry']);
  expect(srv.seen[0]!.headers['authorization']).toBe(`Bearer ${token}`); // it was sent
  for (const r of results) {
    const text = JSON.stringify(r);
    expect(text).toContain('[redacted]');
    expect(text).not.toContain(token);
    expect(text).not.toContain('key-abcdef-123');
    expect(text).not.toContain('pa55word-xyz');
    expect(text).not.toContain('q-secret-123'); // the query is not shown
  }
  await out.close();
  // Nor in start() errors.
  await expect(
    new HttpOutput('h', cfg({ url: srv.url, bearer_token: token, headers: { 'X-Bad': 'a\nb' } })).start(),
  ).rejects.toThrow(/X-Bad/);
  const err = await new HttpOutput('h', cfg({ url: 'ftp://user:pa55word-xyz@x/', bearer_token: token })).start().catch((e: Error) => e.message);
  expect(err).toMatch(/http:\/\/ or https:\/\//);
  expect(err).not.toContain('pa55word-xyz');
});

test('Retry-After is honoured: seconds, an HTTP date, a cap; 429 retries with or without it', async () => {
  const now = Date.UTC(2026, 10, 28, 10, 15, 0);
  const date = new Date(now + 30_000).toUTCString();
  const answers: Array<[number, Record<string, string>]> = [
    [503, { 'Retry-After': '7' }],
    [429, { 'Retry-After': date }],
    [429, {}],
    [503, { 'Retry-After': '86400' }],
    [429, { 'Retry-After': 'soon' }],
  ];
  const srv = await serve((_q, res, _s, n) => res.writeHead(answers[n - 1]![0], answers[n - 1]![1]).end());
  const out = await output({ url: srv.url, max_retry_after: 60 }, () => now);
  const results: SendResult[] = [];
  for (let i = 0; i < answers.length; i++) results.push(await out.send({ records: records(1, 'r') }));
  expect(results.map((r) => r.status)).toEqual(['retry', 'retry', 'retry', 'retry', 'retry']);
  expect(results.map((r) => (r.status === 'retry' ? r.retryAfterMs : 'x'))).toEqual([7000, 30_000, undefined, 60_000, undefined]);
  expect(errorOf(results[1]!)).toMatch(/HTTP 429/);
  await out.close();
});

test('parseRetryAfter: the three HTTP date formats, the past, junk', () => {
  const now = Date.UTC(1994, 10, 6, 8, 49, 0);
  const cap = 3_600_000;
  expect(parseRetryAfter('Sun, 06 Nov 1994 08:49:37 GMT', now, cap)).toBe(37_000);
  expect(parseRetryAfter('Sunday, 06-Nov-94 08:49:37 GMT', now, cap)).toBe(37_000);
  expect(parseRetryAfter('Sun Nov  6 08:49:37 1994', now, cap)).toBe(37_000);
  expect(parseRetryAfter('Sun, 06 Nov 1994 08:00:00 GMT', now, cap)).toBe(0);
  expect(parseRetryAfter(' 120 ', now, cap)).toBe(120_000);
  expect(parseRetryAfter('0', now, cap)).toBe(0);
  expect(parseRetryAfter('99999999999999999999', now, cap)).toBe(cap);
  for (const junk of ['-5', '1.5', '', 'Sun', '2026-11-28T10:00:00Z', 'tomorrow']) expect(parseRetryAfter(junk, now, cap)).toBeUndefined();
  expect(parseRetryAfter(undefined, now, cap)).toBeUndefined();
  expect(parseRetryAfter(['3', '9'], now, cap)).toBe(3000);
});

test('400 and 422 are rejected with http_status_<code>; 401, 403, 404, 405 and redirects (the configuration, not the events) are retried no sooner than CONFIG_RETRY_MS apart; 408, 425 and 500 retry', async () => {
  const statuses = [400, 422, 401, 403, 404, 405, 301, 308, 408, 425, 500];
  const srv = await serve((_q, res, _s, n) => {
    const status = statuses[n - 1]!;
    res.writeHead(status, status === 301 || status === 308 ? { Location: '/elsewhere' } : {}).end(`{"error":"status ${status}"}`);
  });
  const out = await output({ url: srv.url });
  const results: SendResult[] = [];
  for (let i = 0; i < statuses.length; i++) results.push(await out.send({ records: records(1, 's') }));
  expect(results.slice(0, 2)).toEqual([
    { status: 'rejected', reason: 'http_status_400', error: expect.stringMatching(/HTTP 400: \{"error":"status 400"\}$/) },
    { status: 'rejected', reason: 'http_status_422', error: expect.stringMatching(/HTTP 422/) },
  ]);
  const credentials = /refuses the credentials or their permissions: check bearer_token, basic_auth_user and basic_auth_password, api_key or headers; retrying every 10 s or more\)$/;
  const url = /no receiver at this URL: check the output's url \(its path, a proxy in front, http redirected to https\); retrying every 10 s or more\)$/;
  expect(results.slice(2, 8)).toEqual([
    { status: 'retry', retryAfterMs: CONFIG_RETRY_MS, error: expect.stringMatching(new RegExp(`HTTP 401: \\{"error":"status 401"\\} \\(the receiver ${credentials.source}`)) },
    { status: 'retry', retryAfterMs: CONFIG_RETRY_MS, error: expect.stringMatching(new RegExp(`HTTP 403: .* \\(the receiver ${credentials.source}`)) },
    ...[404, 405, 301, 308].map((st) => ({ status: 'retry', retryAfterMs: CONFIG_RETRY_MS, error: expect.stringMatching(new RegExp(`HTTP ${st}: .* \\(${url.source}`)) })),
  ]);
  expect(results.slice(8)).toEqual([408, 425, 500].map((st) => ({ status: 'retry', error: expect.stringMatching(new RegExp(`HTTP ${st}`)) })));
  expect(srv.seen.length).toBe(statuses.length); // the redirects were not followed
  await out.close();
});

test('a 401 after a 413 split: the halves wait in the buffer too, nothing is dead-lettered', async () => {
  // A body limit (413 above it), and then the credentials are refused.
  const limit = 1000;
  const srv = await serve((_q, res, s) => (s.body.length > limit ? res.writeHead(413).end() : res.writeHead(401).end('token expired')));
  const out = await output({ url: srv.url });
  const r = await out.send({ records: records(40, 'x') });
  expect(r).toEqual({ status: 'retry', retryAfterMs: CONFIG_RETRY_MS, error: expect.stringMatching(/HTTP 401: token expired \(the receiver refuses the credentials/) });
  expect(srv.seen.filter((x) => x.body.length <= limit).length).toBeGreaterThan(1); // it was split
  await out.close();
});

test('an expired token under the runner: the events wait in the buffer, retried slowly (no retry storm), nothing dead-lettered, all delivered once the receiver takes the token again', async () => {
  let valid = false;
  let refused = 0;
  const srv = await serve((q, res) => {
    if (!valid || q.headers['authorization'] !== 'Bearer tok-expired-1') {
      refused++;
      res.writeHead(401, { 'WWW-Authenticate': 'Bearer error="invalid_token"' }).end('{"error":"token expired"}');
      return;
    }
    res.writeHead(200).end();
  });
  const out = await output({ url: srv.url, bearer_token: 'tok-expired-1' });
  const t = new Telemetry({ level: 'silent', destination: new Writable({ write: (_c, _e, cb) => cb() }), processMetrics: false, repeatIntervalMs: 0 });
  const dead: string[] = [];
  // A 1 ms backoff: only the output's retry delay keeps the receiver from a storm of requests.
  const runner = new OutputRunner({ name: 'h', capacity: 100, whenFull: 'block', batchMax: 100, initialBackoffMs: 1, maxBackoffMs: 60_000 }, out, new MemoryQueue(100), new FlowControl(t), t, (_o, recs) => dead.push(...recs));
  await runner.start();
  try {
    const sent = records(20, 'tok');
    runner.enqueueMany(sent);
    await waitFor(() => refused >= 1, 30_000, 'the first refused request');
    // Counted and logged as a retry (cefd_output_retried_events_total, the retry warning), not as rejected.
    const stats = t.output('h');
    await waitFor(() => stats.retried >= 20 || dead.length > 0, 30_000, 'the retry counted');
    expect(dead).toEqual([]);
    expect(stats.lastError).toMatch(/HTTP 401: \{"error":"token expired"\} \(the receiver refuses the credentials/);
    expect([...stats.rejected.map]).toEqual([]);
    // The receiver takes the token again (re-enabled there): the next try, CONFIG_RETRY_MS
    // after the refusal, delivers what waited in the buffer.
    valid = true;
    await waitFor(() => runner.stats.sent === 20, 30_000, 'the buffered events delivered');
    expect(dead).toEqual([]);
    expect(refused).toBe(1); // with a 1 ms backoff and no CONFIG_RETRY_MS, a storm of requests
    expect(srv.seen.slice(refused).map((x) => x.body.toString('utf8'))).toEqual([sent.map((x) => x + '\n').join('')]);
  } finally {
    await runner.stop(100);
  }
});

test('413: the batch is split in halves until the receiver takes them; one record too large alone is rejected (NDJSON, JSON array, disk-buffer bytes)', async () => {
  // A receiver with a body limit (nginx's client_max_body_size): 413 above it.
  const limit = 1500;
  for (const format of ['ndjson', 'json_array'] as const) {
    const srv = await serve((_q, res, s) => (s.body.length > limit ? res.writeHead(413).end('<html>413 Request Entity Too Large</html>') : res.writeHead(200).end()));
    const out = await output({ url: srv.url, format });
    const r = records(24, format);
    r[13] = JSON.stringify({ tag: format, i: 13, big: 'b'.repeat(2000) });
    // From a disk buffer: the queue's NDJSON bytes, as the runner hands them over.
    const batch = format === 'ndjson' ? new BytesBatch(r.length, [Buffer.from(r.map((x) => x + '\n').join(''))]) : { records: r };
    const res = await out.send(batch);
    expect(res).toEqual({ status: 'partial', error: '', retry: [], rejected: [{ index: 13, reason: 'http_status_413', error: expect.stringMatching(/HTTP 413/) }] });
    const taken = srv.seen.filter((s) => s.body.length <= limit).flatMap((s) => {
      const text = s.body.toString('utf8');
      return format === 'ndjson' ? text.split('\n').filter((l) => l !== '') : (JSON.parse(text) as unknown[]).map((x) => JSON.stringify(x));
    });
    expect(taken).toEqual(r.filter((_x, i) => i !== 13));
    await out.close();
  }
});

test('a long error body is truncated in the error string, control characters removed', async () => {
  const srv = await serve((_q, res) => res.writeHead(400).end('line one\r\nline two\t' + 'z'.repeat(200_000)));
  const out = await output({ url: srv.url });
  const r = await out.send({ records: records(1, 'b') });
  expect(r.status).toBe('rejected');
  const e = errorOf(r);
  expect(e).toMatch(/HTTP 400: line one line two zzz+\.\.\.$/);
  expect(e.length).toBeLessThan(400);
  await out.close();
});

test('connection refused is a retry', async () => {
  const srv = await serve(ok);
  const url = srv.url;
  await srv.close();
  const out = await output({ url });
  const r = await out.send({ records: records(1, 'c') });
  expect(r.status).toBe('retry');
  expect(errorOf(r)).toMatch(/network error: .*ECONNREFUSED/);
  await out.close();
});

test('the server closing the socket without an answer is a retry; the next send goes through', async () => {
  const srv = await serve((q, res, _s, n) => (n === 1 ? q.socket.destroy() : res.writeHead(204).end()));
  const out = await output({ url: srv.url });
  const r = await out.send({ records: records(3, 'd') });
  expect(r.status).toBe('retry');
  expect(errorOf(r)).toMatch(/network error: .*(ECONNRESET|socket hang up)/);
  expect(await out.send({ records: records(3, 'd') })).toEqual({ status: 'delivered' });
  await out.close();
});

test('no answer within timeout is a retry', async () => {
  const srv = await serve(() => undefined); // never answers
  const out = await output({ url: srv.url, timeout: '150ms' });
  const r = await out.send({ records: records(1, 't') });
  expect(r.status).toBe('retry');
  expect(errorOf(r)).toMatch(/no response within 150 ms \(timeout\)/);
  await out.close();
});

test('connections are kept alive across batches', async () => {
  const srv = await serve(ok);
  const out = await output({ url: srv.url });
  for (let i = 0; i < 5; i++) expect((await out.send({ records: records(2, `k${i}`) })).status).toBe('delivered');
  expect(srv.seen.length).toBe(5);
  expect(srv.connections).toBe(1);
  await out.close();
});

test('close aborts a request in flight: its send reports retry', async () => {
  const srv = await serve(() => undefined);
  const out = await output({ url: srv.url });
  const p = out.send({ records: records(1, 'x') });
  while (srv.seen.length === 0) await new Promise((r) => setTimeout(r, 5));
  await out.close();
  expect((await p).status).toBe('retry');
  expect((await out.send({ records: records(1, 'x') })).status).toBe('retry');
});

test('close while a gzip body is being compressed: the send reports retry and no request goes out after close', async () => {
  const srv = await serve(ok);
  const out = await output({ url: srv.url, compress: true });
  const p = out.send({ records: records(2000, 'z') }); // compressing on the thread pool now
  await out.close();
  expect(await p).toMatchObject({ status: 'retry', error: expect.stringMatching(/closed/) });
  expect(srv.connections).toBe(0);
});

test('https with a self-signed certificate: verified with ca_file, a TLS-error retry without it', async () => {
  const srv = await serve(ok, { key: readFileSync(keyFile), cert: readFileSync(certFile) });
  const trusted = await output({ url: srv.url, ca_file: certFile });
  expect(await trusted.send({ records: records(2, 's') })).toEqual({ status: 'delivered' });
  await trusted.close();

  const untrusted = await output({ url: srv.url });
  const r = await untrusted.send({ records: records(2, 's') });
  expect(r.status).toBe('retry');
  expect(errorOf(r)).toMatch(/TLS error: self[- ]signed certificate \(DEPTH_ZERO_SELF_SIGNED_CERT\)/);
  await untrusted.close();

  const insecure = await output({ url: srv.url, insecure_skip_verify: true });
  expect(await insecure.send({ records: records(2, 's') })).toEqual({ status: 'delivered' });
  await insecure.close();

  // The certificate names localhost and 127.0.0.1, not this name.
  const wrongName = await output({ url: srv.url, ca_file: certFile, server_name: 'collector.example' });
  const w = await wrongName.send({ records: records(1, 's') });
  expect(w.status).toBe('retry');
  expect(errorOf(w)).toMatch(/TLS error: .*(ERR_TLS_CERT_ALTNAME_INVALID|altnames)/);
  await wrongName.close();
  expect(srv.seen.length).toBe(2);
});

test('https with a client certificate (mTLS)', async () => {
  const cert = readFileSync(certFile);
  const srv = await serve(ok, { key: readFileSync(keyFile), cert, ca: cert, requestCert: true, rejectUnauthorized: true });
  const withCert = await output({ url: srv.url, ca_file: certFile, cert_file: certFile, key_file: keyFile });
  expect(await withCert.send({ records: records(1, 'm') })).toEqual({ status: 'delivered' });
  await withCert.close();
  const without = await output({ url: srv.url, ca_file: certFile });
  expect((await without.send({ records: records(1, 'm') })).status).toBe('retry');
  await without.close();
  expect(srv.seen.length).toBe(1);
});

test('start rejects what cannot work, with a clear message', async () => {
  const bad = (o: Record<string, unknown>) => new HttpOutput('h', cfg(o)).start();
  await expect(bad({ url: 'not a url' })).rejects.toThrow(/http output h: url is not a valid URL/);
  await expect(bad({ url: 'ftp://x/' })).rejects.toThrow(/http:\/\/ or https:\/\//);
  await expect(bad({ url: 'https://x/', ca_file: join(dir, 'missing.pem') })).rejects.toThrow(/cannot read ca_file .*missing\.pem: ENOENT/);
  await expect(bad({ url: 'https://x/', cert_file: certFile })).rejects.toThrow(/cert_file and key_file/);
  const junk = join(dir, 'junk.pem');
  writeFileSync(junk, 'not a certificate');
  await expect(bad({ url: 'https://x/', cert_file: junk, key_file: keyFile })).rejects.toThrow(/cannot be used/);
  await expect(bad({ url: 'https://x/', cert_file: keyFile, key_file: certFile })).rejects.toThrow(/cannot be used/);
  // Option kinds and ranges are the schema's (config.ts), checked when the config loads.
  expect(() => cfg({ url: 'http://x/', format: 'xml' })).toThrow(/format: expected one of ndjson, json_array/);
  expect(() => cfg({ url: 'http://x/', timeout: 0 })).toThrow(/timeout: must be at least/);
  expect(() => cfg({ url: 'http://x/', max_retry_after: -1 })).toThrow(/max_retry_after/);
  expect(() => cfg({})).toThrow(/url: is required/);
  await expect(bad({ url: 'http://x/', bearer_token: ' \n' })).rejects.toThrow(/bearer_token is empty/);
  const tokenFile = join(dir, 'token');
  writeFileSync(tokenFile, 'bad\ntoken');
  await expect(bad({ url: 'http://x/', bearer_token: readFileSync(tokenFile, 'utf8') })).rejects.toThrow(/bearer_token contains/);
  // tls settings are ignored for http://
  await new HttpOutput('h', cfg({ url: 'http://127.0.0.1:1/', ca_file: join(dir, 'missing.pem') })).start();
});

test('basic authentication and an API-key header from secret files; neither value appears in errors', async () => {
  const echo: Handler = (q, res) => res.writeHead(403).end(`you sent ${q.headers['authorization']} and ${q.headers['x-tenant-key']}`);
  const srv = await serve(echo);
  writeFileSync(join(dir, 'basic-pass'), 'p4ss-w0rd-xyz\n');
  writeFileSync(join(dir, 'api-key'), 'k3y-abcdef-987\n');
  const out = await output({
    url: srv.url,
    basic_auth_user: 'cefd',
    basic_auth_password_file: join(dir, 'basic-pass'),
    api_key_file: join(dir, 'api-key'),
    api_key_header: 'X-Tenant-Key',
  });
  const r = await out.send({ records: records(1, 'b') });
  const h = srv.seen[0]!.headers;
  expect(h['authorization']).toBe(`Basic ${Buffer.from('cefd:p4ss-w0rd-xyz').toString('base64')}`);
  expect(h['x-tenant-key']).toBe('k3y-abcdef-987');
  expect(r).toMatchObject({ status: 'retry', retryAfterMs: CONFIG_RETRY_MS });
  const text = JSON.stringify(r);
  expect(text).not.toContain('p4ss-w0rd-xyz');
  expect(text).not.toContain(Buffer.from('cefd:p4ss-w0rd-xyz').toString('base64'));
  expect(text).not.toContain('k3y-abcdef-987');
  await out.close();
});

test('the shared transport hands a 2xx body to an output that asks for it (a bulk API\'s per-item answer)', async () => {
  const srv = await serve((_q, res) => res.writeHead(200, { 'Content-Type': 'application/json' }).end('{"items":[{"status":201},{"status":400}]}'));
  const t = new HttpTransport('bulk output b', cfg({ url: srv.url }), 'application/x-ndjson');
  await t.start();
  const r = await t.send(Buffer.from('{}\n{}\n'), true);
  expect(r.status).toBe('delivered');
  expect(r.body?.toString('utf8')).toBe('{"items":[{"status":201},{"status":400}]}');
  expect(srv.seen[0]!.headers['content-type']).toBe('application/x-ndjson');
  await t.close();
});

test('send before start is a retry, not a throw', async () => {
  const out = new HttpOutput('h', cfg({ url: 'http://127.0.0.1:1/' }));
  expect((await out.send({ records: ['{}'] })).status).toBe('retry');
});
