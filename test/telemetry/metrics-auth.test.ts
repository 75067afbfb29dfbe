/**
 * The metrics endpoint's bearer token (src/telemetry/http.ts) on a real HTTP server: wrong
 * tokens are limited per client address with the admin API's SigninLimiter. The limiter
 * runs on a clock the test moves, so no assertion depends on how fast the machine is.
 */
import http from 'node:http';
import { Writable } from 'node:stream';
import { afterEach, expect, test } from 'vitest';
import { SigninLimiter } from '../../src/console/signin-limit.js';
import { MetricsServer } from '../../src/telemetry/http.js';
import { Telemetry } from '../../src/telemetry/telemetry.js';

const TOKEN = 'metrics-token-0123456789abcdef0123456789';

let servers: MetricsServer[] = [];
afterEach(async () => {
  await Promise.all(servers.map((s) => s.stop()));
  servers = [];
});

async function serve(): Promise<{ port: number; clock: { now: number }; logs: string[] }> {
  const logs: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      logs.push(chunk.toString());
      cb();
    },
  });
  const telemetry = new Telemetry({ level: 'debug', destination, processMetrics: false, repeatIntervalMs: 0 });
  const clock = { now: 1_000_000 };
  const server = new MetricsServer(telemetry, { notReady: () => [] }, TOKEN, new SigninLimiter({ now: () => clock.now }));
  servers.push(server);
  await server.start('127.0.0.1', 0);
  return { port: server.port()!, clock, logs };
}

/** A GET from a chosen local address (the loopback network is 127/8: each is a client of its own). */
function get(port: number, from: string, path: string, token?: string): Promise<{ status: number; retryAfter: string | undefined; body: string }> {
  return new Promise((resolve, reject) => {
    const headers = token === undefined ? {} : { authorization: `Bearer ${token}` };
    const req = http.get({ host: '127.0.0.1', port, path, localAddress: from, agent: false, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'], body }));
    });
    req.on('error', reject);
  });
}

test('wrong tokens are limited per address: 429 metrics_rate_limited after 5, the right token and other addresses never kept out', async () => {
  const { port, clock, logs } = await serve();
  // Five wrong tokens cost nothing but a 401; the sixth locks the address out for 1 s.
  for (let i = 0; i < 6; i++) expect((await get(port, '127.0.0.2', '/metrics', `wrong-${i}`)).status).toBe(401);
  const limited = await get(port, '127.0.0.2', '/metrics', 'wrong-again');
  expect(limited.status).toBe(429);
  expect(limited.retryAfter).toBe('1');
  expect(limited.body).toBe('metrics_rate_limited: too many wrong bearer tokens from this address: try again in 1 s\n');
  expect((await get(port, '127.0.0.2', '/metrics', 'wrong-while-locked')).status).toBe(429);
  expect(logs.join('')).toContain('"code":"metrics_rate_limited"');

  // Others' failures keep nobody out: the right token from another address gets in, and
  // a request without a token guessed nothing (401, not counted).
  const other = await get(port, '127.0.0.3', '/metrics', TOKEN);
  expect(other.status).toBe(200);
  expect(other.body).toContain('cefd_build_info');
  for (let i = 0; i < 10; i++) expect((await get(port, '127.0.0.4', '/healthz')).status).toBe(401);
  expect((await get(port, '127.0.0.4', '/healthz', TOKEN)).status).toBe(200);

  // The right token gets in while the address waits (a local process sending wrong tokens
  // cannot keep Prometheus out; the token has 128 bits at least, beyond guessing), without
  // lifting the lock; once the wait is over it starts the address's count over: five wrong
  // ones are free again, the sixth locks it out for 1 s.
  expect((await get(port, '127.0.0.2', '/metrics', TOKEN)).status).toBe(200);
  expect((await get(port, '127.0.0.2', '/metrics', 'wrong-still-locked')).status).toBe(429);
  clock.now += 1_000;
  expect((await get(port, '127.0.0.2', '/metrics', TOKEN)).status).toBe(200);
  for (let i = 0; i < 6; i++) expect((await get(port, '127.0.0.2', '/metrics', `wrong-${i}`)).status).toBe(401);
  expect((await get(port, '127.0.0.2', '/readyz', 'wrong-again')).retryAfter).toBe('1');
});

test('a second scraper with an old token on Prometheus\'s address does not lock Prometheus out', async () => {
  const { port } = await serve();
  for (let round = 0; round < 20; round++) {
    expect((await get(port, '127.0.0.5', '/metrics', 'old-token-of-a-forgotten-agent')).status).toBe(401);
    expect((await get(port, '127.0.0.5', '/metrics', TOKEN)).status).toBe(200);
  }
});
