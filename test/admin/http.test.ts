/**
 * The generic JSON server (src/admin/http.ts) over a real socket, for what any client can
 * send before a route is reached: request targets that are not URLs, paths that start
 * with `//`, and a client that goes away in the middle of its body. None of them is an
 * internal error (no 500, no error log line).
 */
import net from 'node:net';
import { afterEach, beforeEach, expect, test } from 'vitest';
import { JsonServer } from '../../src/admin/http.js';

const TOKEN = 'a-token-for-the-json-server';
let server: JsonServer;
let statuses: number[];
let errors: Record<string, unknown>[];

beforeEach(async () => {
  statuses = [];
  errors = [];
  server = new JsonServer({
    token: TOKEN,
    maxBodyBytes: 4096,
    requestTimeoutMs: 5000,
    routes: [
      { method: 'GET', path: '/api/v1/ping', handler: async () => ({ status: 200, body: { pong: true } }) },
      { method: 'POST', path: '/api/v1/echo', handler: async (r) => ({ status: 200, body: { got: r.body } }) },
    ],
    logger: { debug: () => undefined, error: (o) => errors.push(o) },
    onResponse: (status) => statuses.push(status),
  });
  await server.listen('127.0.0.1', 0);
});

afterEach(async () => {
  await server.close();
});

/** Sends `text` as it is and gives the answer (the server closes, or the client once one answer came; `destroyAfterWrite`: a reset 50 ms after the write). */
function raw(text: string, opts: { destroyAfterWrite?: boolean } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(server.port()!, '127.0.0.1');
    let answer = '';
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      answer += d;
      // One answer is all these tests want (the connection may be kept alive).
      if (/\r\n\r\n[\s\S]*\n$/.test(answer)) sock.end();
    });
    sock.on('error', reject);
    sock.on('close', () => resolve(answer));
    sock.once('connect', () => {
      sock.write(text, () => {
        if (opts.destroyAfterWrite === true) setTimeout(() => sock.destroy(), 50);
      });
    });
  });
}

test('a request target that is not a URL is a 400 admin_bad_request, not a 500', async () => {
  for (const target of ['http://[', 'http://%zz/']) {
    const answer = await raw(`GET ${target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nConnection: close\r\n\r\n`);
    expect(answer, target).toMatch(/^HTTP\/1\.1 400 /);
    expect(answer, target).toContain('"code":"admin_bad_request"');
  }
  expect(statuses).not.toContain(500);
  expect(errors).toEqual([]);
});

test('a path that starts with // is a path, not a host: //x/api/v1/ping is not /api/v1/ping', async () => {
  const odd = await raw(`GET //x/api/v1/ping HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nConnection: close\r\n\r\n`);
  expect(odd).toMatch(/^HTTP\/1\.1 404 /);
  for (const target of ['//%zz', '//[', '//a%0d']) {
    const answer = await raw(`GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    expect(answer, target).toMatch(/^HTTP\/1\.1 401 /);
  }
  const ok = await raw(`GET /api/v1/ping HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nConnection: close\r\n\r\n`);
  expect(ok).toMatch(/^HTTP\/1\.1 200 /);
  expect(statuses).not.toContain(500);
  expect(errors).toEqual([]);
});

test('a client that resets the connection in the middle of its body is a 408 admin_timeout, not an internal error', async () => {
  for (let i = 0; i < 3; i++) {
    await raw(`POST /api/v1/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"partial"`, { destroyAfterWrite: true });
  }
  // The server notices the reset a moment after the client.
  const deadline = Date.now() + 10_000;
  while (statuses.length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  expect(statuses).toEqual([408, 408, 408]);
  expect(errors).toEqual([]);
});
