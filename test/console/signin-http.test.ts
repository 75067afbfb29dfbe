/**
 * The sign-in limit over real HTTP, with the limiter's clock in the test's hands: the web
 * console (src/console/console.ts) on the admin listener on 127.0.0.1, clients connecting
 * from several loopback addresses (127.x.y.z) so that each has its own per-address limit.
 */
import { rmSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterEach, expect, test } from 'vitest';
import { checkConsolePassword, setConsolePassword } from '../../src/console/auth.js';
import { Console } from '../../src/console/console.js';
import type { SigninLimitOptions } from '../../src/console/signin-limit.js';
import { KscIntegration } from '../../src/ksc/index.js';
import { createAdminServer, type JsonServer } from '../../src/ksc/admin-server.js';
import { Telemetry } from '../../src/telemetry/telemetry.js';
import { ConsoleAgent, request } from '../helpers/console.js';
import { tempDir } from '../helpers/temp.js';

const TOKEN = 'console-test-token-0123456789abcdef';
const PASSWORD = 'correct horse battery staple';

interface Started {
  base: string;
  stateDir: string;
  logs: Record<string, unknown>[];
  tick(ms: number): void;
}

const closers: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});

/** The status of a request for the (endless) event stream, which is then closed. */
function streamStatus(base: string, localAddress: string, token: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get(`${base}/console/api/events/stream`, { localAddress, headers: { authorization: `Bearer ${token}` } }, (res) => {
      resolve(res.statusCode ?? 0);
      req.destroy();
    });
    req.on('error', (e) => {
      if ((e as NodeJS.ErrnoException).code !== 'ECONNRESET') reject(e);
    });
  });
}

async function start(limit: SigninLimitOptions = {}): Promise<Started> {
  const stateDir = tempDir('cefd-signin-');
  let now = 1_000_000;
  const logs: Record<string, unknown>[] = [];
  const log = pino({ level: 'debug' }, new Writable({ write: (c: Buffer, _e, cb) => (logs.push(JSON.parse(c.toString('utf8')) as Record<string, unknown>), cb()) }));
  const telemetry = new Telemetry({ processMetrics: false, destination: new Writable({ write: (_c, _e, cb) => cb() }) });
  const k = KscIntegration.open({ stateDir, env: {} });
  const con = new Console({
    token: TOKEN,
    stateDir,
    tls: false,
    sessionTtlMs: 60_000,
    tailEvents: 10,
    tailBytes: 1 << 20,
    quietAfterMs: 60_000,
    telemetry,
    log,
    workers: () => 0,
    outputs: () => [],
    recent: () => undefined,
    askRecent: () => Promise.resolve({ items: [], kept: 0 }),
    ksc: () => k,
    signinLimit: { ...limit, now: () => now },
  });
  const server: JsonServer = createAdminServer(
    { ksc: k, rules: () => [], sync: (o) => k.syncAssets(o), syncAttributes: (o) => k.syncAttributes(o), startTask: (req) => k.startTask(req) },
    // The daemon's wiring (src/ksc/extension.ts): the API counts wrong tokens in the console's limiter.
    { token: TOKEN, maxBodyBytes: 4096, requestTimeoutMs: 5_000, before: con.before, altAuth: con.altAuth, extraRoutes: con.routes(), authLimit: con.limiter },
  );
  await server.listen('127.0.0.1', 0);
  closers.push(() => k.close(), () => con.close(), () => server.close());
  setConsolePassword(stateDir, PASSWORD);
  return { base: `http://127.0.0.1:${server.port()!}`, stateDir, logs, tick: (ms) => (now += ms) };
}

const agent = (s: Started, from: string) => new ConsoleAgent(s.base, undefined, from);

test('others\' failed passwords cannot lock out the token, nor a password from an address that never failed', async () => {
  // A small overall bucket (4 failed password checks, 1 a minute), so that two addresses empty it.
  const s = await start({ globalBurst: 4, globalPerMinute: 1 });
  const a1 = agent(s, '127.0.1.1');
  const a2 = agent(s, '127.0.1.2');
  expect((await a1.login('wrong-1')).status).toBe(401);
  expect((await a1.login('wrong-2')).status).toBe(401);
  expect((await a2.login('wrong-3')).status).toBe(401);
  expect((await a2.login('wrong-4')).status).toBe(401);
  // The bucket is empty: a further password from an address with failures waits for it.
  const held = await a1.login('wrong-5');
  expect(held.status).toBe(429);
  expect(held.headers['retry-after']).toBe('60');
  expect(s.logs.filter((l) => l['reason'] === 'rate_limited').map((l) => l['scope'])).toEqual(['global']);
  // The right token from that same address: a cheap compare, not held by the bucket.
  expect((await a1.login(TOKEN)).status).toBe(303);
  // The right password from an address that never failed is checked at once.
  expect((await agent(s, '127.0.2.1').login(PASSWORD)).status).toBe(303);
  // An address with failures of its own waits for the bucket, even with the right password; then signs in.
  expect((await a2.login(PASSWORD)).status).toBe(429);
  s.tick(60_000);
  expect((await a2.login(PASSWORD)).status).toBe(303);
  expect(s.logs.filter((l) => l['event'] === 'console_login' && l['ok'] === true).map((l) => l['via'])).toEqual(['token', 'password', 'password']);
});

test('an address locked out by its own failures is refused before a password is looked at; the right token still signs in (a local process cannot lock the operators out)', async () => {
  const s = await start();
  const a = agent(s, '127.0.3.1');
  for (let i = 0; i < 6; i++) expect((await a.login(`wrong-${i}`)).status).toBe(401);
  // The right password waits: it is not even checked.
  const r = await a.login(PASSWORD);
  expect(r.status).toBe(429);
  expect(r.headers['retry-after']).toBe('1');
  expect((await a.login('wrong-again')).status).toBe(429);
  // The token (128 bits at least: beyond guessing) is taken, but does not lift the lock:
  // else anyone with the token on this address would let a password guesser go on.
  expect((await a.login(TOKEN)).status).toBe(303);
  expect((await a.login(PASSWORD)).status).toBe(429);
  // Another address was never held up.
  expect((await agent(s, '127.0.3.2').login(PASSWORD)).status).toBe(303);
  // The wait over, the right password signs in (and clears the address).
  s.tick(1_000);
  expect((await a.login(PASSWORD)).status).toBe(303);
});

test('a session signed in with the console password ends when the password is changed or removed; token sessions do not', async () => {
  const s = await start();
  const byPassword = agent(s, '127.0.5.1');
  const byToken = agent(s, '127.0.5.2');
  expect((await byPassword.login(PASSWORD)).status).toBe(303);
  expect((await byToken.login(TOKEN)).status).toBe(303);
  expect((await byPassword.get('/api/v1/connections')).status).toBe(200);
  // The operator rotates a leaked password.
  setConsolePassword(s.stateDir, 'a-new-console-password-2');
  expect((await byPassword.get('/api/v1/connections')).status).toBe(401);
  expect((await byToken.get('/api/v1/connections')).status).toBe(200);
  // The new password signs in; removing the password file ends that session too.
  const again = agent(s, '127.0.5.3');
  expect((await again.login('a-new-console-password-2')).status).toBe(303);
  expect((await again.get('/api/v1/connections')).status).toBe(200);
  rmSync(join(s.stateDir, 'console-password'));
  expect((await again.get('/api/v1/connections')).status).toBe(401);
  expect((await byToken.get('/api/v1/connections')).status).toBe(200);
  // The sign-in is audited with where it came from and a session reference (not the id).
  const ins = s.logs.filter((l) => l['event'] === 'console_login' && l['ok'] === true);
  expect(ins.map((l) => [l['via'], l['client']])).toEqual([
    ['password', '127.0.5.1'],
    ['token', '127.0.5.2'],
    ['password', '127.0.5.3'],
  ]);
  for (const l of ins) expect(l['session']).toMatch(/^[0-9a-f]{8}$/);
});

test('a password check runs scrypt off the event loop: the loop turns while checks are under way', async () => {
  const dir = tempDir('cefd-signin-');
  setConsolePassword(dir, PASSWORD);
  const order: string[] = [];
  const checks = [PASSWORD, 'wrong password one', PASSWORD].map((p) => Promise.resolve(checkConsolePassword(dir, p)).then((ok) => order.push(`checked ${ok !== false}`)));
  setImmediate(() => order.push('loop turned'));
  await Promise.all(checks);
  expect(order).toEqual(['loop turned', 'checked true', 'checked false', 'checked true']);
});

test('wrong passwords sent in parallel from one address get no more checks than one by one', async () => {
  const s = await start();
  const a = agent(s, '127.0.4.1');
  const forms = await Promise.all(Array.from({ length: 10 }, () => a.loginForm()));
  const answers = await Promise.all(
    forms.map((f, i) =>
      request(s.base, 'POST', '/console/login', {
        localAddress: '127.0.4.1',
        headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: `cefd_login=${f.cookie}` },
        body: new URLSearchParams({ csrf: f.nonce, secret: `wrong password ${i}` }).toString(),
      }),
    ),
  );
  // 5 free failures and the one that locks the address; the rest wait without a check.
  expect(answers.map((r) => r.status).sort()).toEqual([401, 401, 401, 401, 401, 401, 429, 429, 429, 429]);
  expect(s.logs.filter((l) => l['reason'] === 'credentials')).toHaveLength(6);
});

test('wrong bearer tokens on the API and the event stream count with the sign-in form\'s failures, per address', async () => {
  const s = await start();
  const from = '127.0.5.1';
  const call = (path: string, token: string) => request(s.base, 'GET', path, { localAddress: from, headers: { authorization: `Bearer ${token}` } });
  const a = agent(s, from);
  expect((await a.login('wrong-1')).status).toBe(401);
  expect((await a.login('wrong-2')).status).toBe(401);
  expect((await call('/api/v1/connections', 'wrong-3')).status).toBe(401);
  expect((await call('/api/v1/connections', 'wrong-4')).status).toBe(401);
  expect((await call('/console/api/events/stream', 'wrong-5')).status).toBe(401);
  expect((await call('/console/api/events/stream', 'wrong-6')).status).toBe(401);
  // Six failures: the address waits 1 s wherever it sends a wrong token, and for any password.
  for (const path of ['/api/v1/connections', '/console/api/events/stream']) {
    const r = await call(path, 'wrong-7');
    expect(r.status, path).toBe(429);
    expect(r.headers['retry-after'], path).toBe('1');
    expect((r.json!['error'] as Record<string, unknown>)['code'], path).toBe('admin_rate_limited');
  }
  expect((await a.login(PASSWORD)).status).toBe(429);
  // The right token is taken wherever it is sent, but while the address waits it does not
  // lift the lock (a guesser sharing the address must not go on at each of its requests).
  expect((await call('/api/v1/connections', TOKEN)).status).toBe(200);
  expect(await streamStatus(s.base, from, TOKEN)).toBe(200);
  expect((await call('/api/v1/connections', 'wrong-8')).status).toBe(429);
  expect((await a.login(PASSWORD)).status).toBe(429);
  // The wait over, the right token starts the address afresh.
  s.tick(1_000);
  expect((await call('/api/v1/connections', TOKEN)).status).toBe(200);
  expect((await call('/api/v1/connections', 'wrong-8')).status).toBe(401);
  expect((await a.login(PASSWORD)).status).toBe(303);
  // Another address is not held up.
  expect((await request(s.base, 'GET', '/api/v1/connections', { localAddress: '127.0.5.2', headers: { authorization: `Bearer ${TOKEN}` } })).status).toBe(200);
  // The right token starts the count over, on the event stream too: a client with an old
  // token beside a working one on the same host never locks the working one out.
  for (let round = 0; round < 8; round++) {
    expect((await call('/console/api/events/stream', 'old-token')).status).toBe(401);
    const r = await streamStatus(s.base, from, TOKEN);
    expect(r).toBe(200);
  }
});
