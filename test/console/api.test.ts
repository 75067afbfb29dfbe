/**
 * The console's HTTP side against a real daemon: sign-in (token, password, CSRF nonce),
 * the session cookie, CSRF on every change of the admin API and the console, the pages'
 * headers (CSP, no inline script), the live tail (SSE) with a filter, search and detail
 * in memory, audit log lines, session expiry, sign-out, TLS, and `cefd tap`.
 */
import { spawn } from 'node:child_process';
import net from 'node:net';
import { readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, expect, test } from 'vitest';
import { scrape, sendTcp, waitFor } from '../helpers/daemon.js';
import { ADMIN_TOKEN, CLI, runCli, startKscDaemon, type KscTestDaemon, DAEMON_BASE_YAML } from '../helpers/ksc-daemon.js';
import { ConsoleAgent, readSse, request, setCookies } from '../helpers/console.js';
import { makePki } from '../helpers/pki.js';

const yaml = (consoleOpts = 'enabled: true', tls = '') => `
${DAEMON_BASE_YAML}ksc:
  sync_on_start: false
  admin: { enabled: true, host: 127.0.0.1, port: 0, bearer_token: ${ADMIN_TOKEN}, console: { ${consoleOpts} }${tls} }
`;

const cef = (n: number, name = 'Malicious object detected') => `CEF:0|KasperskyLab|SecurityCenter|13.2|GNRL_EV_VIRUS_FOUND|${name}|5|rt=${Date.now()} dhost=WS-${n} cs1=EICAR-${n} cs1Label=VirusName\n`;

let d: KscTestDaemon | undefined;
afterEach(async () => {
  if (d !== undefined) {
    await d.stop();
    rmSync(d.dir, { recursive: true, force: true });
    d = undefined;
  }
});

const base = () => `http://127.0.0.1:${d!.adminPort()}`;
const audits = () => d!.logs.parsed().filter((l) => l['audit'] === true);

test('off unless enabled: no console pages, the admin API as before', async () => {
  d = await startKscDaemon(yaml('enabled: false'));
  const r = await request(base(), 'GET', '/console/');
  expect(r.status).toBe(401);
  const login = await request(base(), 'GET', '/console/login');
  expect(login.status).toBe(401);
});

test('sign-in page: strict CSP, no inline script or style, a CSRF nonce; wrong secret and missing nonce refused', async () => {
  d = await startKscDaemon(yaml());
  const a = new ConsoleAgent(base());
  const f = await a.loginForm();
  expect(f.page.status).toBe(200);
  const csp = String(f.page.headers['content-security-policy']);
  expect(csp).toContain("default-src 'none'");
  expect(csp).toContain("script-src 'self'");
  expect(csp).not.toContain('unsafe-inline');
  expect(f.page.text).not.toMatch(/<script(?![^>]*\ssrc=)/);
  expect(f.page.text).not.toMatch(/\sstyle=/);
  expect(f.page.text).not.toContain(ADMIN_TOKEN);
  expect(f.nonce.length).toBeGreaterThan(20);
  expect(f.cookie).toBe(f.nonce);

  // Without the nonce cookie: 403; wrong secret: 401; both logged.
  const noNonce = await request(base(), 'POST', '/console/login', { headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `csrf=${f.nonce}&secret=${ADMIN_TOKEN}` });
  expect(noNonce.status).toBe(403);
  expect(setCookies(noNonce).some((c) => c.startsWith('cefd_session='))).toBe(false);
  expect((await a.login('wrong-token')).status).toBe(401);
  expect(a.session).toBe('');
  expect(audits().filter((l) => l['event'] === 'console_login' && l['ok'] === false).map((l) => l['reason'])).toEqual(['csrf', 'credentials']);

  // Pages need a session.
  const anon = await request(base(), 'GET', '/console/ksc');
  expect(anon.status).toBe(303);
  expect(anon.headers['location']).toBe('/console/login');
  expect((await request(base(), 'GET', '/console/api/overview')).status).toBe(401);
});

test('session: cookie flags, pages, the admin API with the cookie, CSRF on every change, audit lines, sign-out', async () => {
  d = await startKscDaemon(yaml());
  const a = new ConsoleAgent(base());
  const r = await a.login(ADMIN_TOKEN);
  expect(r.status).toBe(303);
  const cookie = setCookies(r).find((c) => c.startsWith('cefd_session='))!;
  expect(cookie).toContain('HttpOnly');
  expect(cookie).toContain('SameSite=Strict');
  expect(cookie).not.toContain('Secure');
  expect(a.csrf.length).toBeGreaterThan(20);

  for (const p of ['/console/', '/console/events', '/console/ksc', '/console/ksc/assets/nope']) {
    const page = await a.get(p);
    expect(page.status, p).toBe(200);
    expect(page.text).not.toMatch(/<script(?![^>]*\ssrc=)/);
    expect(page.text).not.toContain(ADMIN_TOKEN);
    expect(page.headers['content-security-policy']).toBeDefined();
  }
  // The asset id is written into the page escaped and as it is: `$&`, `$'` and `` $` `` are not replacement patterns.
  const odd = await a.get(`/console/ksc/assets/${encodeURIComponent("a$&b$'c$`d")}`);
  expect(odd.status).toBe(200);
  expect(odd.text).toContain('data-asset="a$&#38;b$&#39;c$`d"');
  expect(odd.text).not.toContain('{{id}}');
  expect((await a.get('/console/ksc/assets/%E0%A4%A')).status).toBe(400);
  for (const f of ['common.js', 'overview.js', 'events.js', 'ksc.js', 'asset.js', 'console.css']) {
    const s = await request(base(), 'GET', `/console/static/${f}`);
    expect(s.status, f).toBe(200);
    expect(String(s.headers['content-type'])).toMatch(f.endsWith('.js') ? /^text\/javascript/ : /^text\/css/);
  }
  expect((await request(base(), 'GET', '/console/static/..%2Fconsole.js')).status).toBe(404);
  expect((await request(base(), 'GET', '/console/static/nope.js')).status).toBe(404);

  // Reads with the cookie alone.
  expect((await a.get('/api/v1/connections')).status).toBe(200);
  const ov = await a.get('/console/api/overview');
  expect(ov.status).toBe(200);
  expect(ov.json).toMatchObject({ listeners: [{ name: 'tcp', eventsTotal: 0, quiet: false }], });
  expect(ov.json!['outputs']).toEqual(expect.arrayContaining([expect.objectContaining({ name: 'events', state: 'ok', lastError: null })]));

  // Changes need the CSRF token.
  const conn = { name: 'main', url: 'https://127.0.0.1:1', secret: { user: 'kuma', password: 'Very-Secret-Pass1' } };
  const noCsrf = await a.send('POST', '/api/v1/connections', conn, { csrf: false });
  expect(noCsrf.status).toBe(403);
  expect(noCsrf.json).toMatchObject({ error: { code: 'console_csrf' } });
  expect((await a.send('POST', '/api/v1/connections', conn, { csrf: 'x'.repeat(43) })).status).toBe(403);
  expect((await a.get('/api/v1/connections')).json).toEqual({ connections: [] });
  const created = await a.send('POST', '/api/v1/connections', conn);
  expect(created.status).toBe(201);
  expect(created.text).not.toContain('Very-Secret-Pass1');
  const id = (created.json!['connection'] as { id: string }).id;
  // Validation answers as the admin API does.
  expect((await a.send('POST', '/api/v1/connections', { name: 'x' })).status).toBe(400);
  expect((await a.send('POST', '/api/v1/connections', { ...conn, extra: 1 })).status).toBe(400);
  expect((await a.send('PATCH', `/api/v1/connections/${id}`, { disabled: true }, { csrf: false })).status).toBe(403);
  expect((await a.send('PATCH', `/api/v1/connections/${id}`, { disabled: true })).status).toBe(200);
  expect((await a.send('POST', `/api/v1/connections/${id}/enable`, undefined, { csrf: false })).status).toBe(403);
  expect((await a.send('POST', `/api/v1/connections/${id}/enable`)).status).toBe(200);
  expect((await a.send('POST', '/api/v1/assets/sync', {}, { csrf: false })).status).toBe(403);
  expect((await a.send('POST', '/api/v1/tasks/start', { asset: 'nope', tasks: ['KUMA x'] }, { csrf: false })).status).toBe(403);
  expect((await a.send('POST', '/api/v1/tasks/start', { asset: 'nope', tasks: ['KUMA x'] })).status).toBe(404);
  expect((await a.send('DELETE', `/api/v1/connections/${id}`, undefined, { csrf: false })).status).toBe(403);
  expect((await a.send('DELETE', `/api/v1/connections/${id}`)).status).toBe(204);
  // The console's own reads.
  expect((await a.get('/console/api/assets/nope/tasks')).status).toBe(404);
  expect((await a.get('/console/api/events/nope')).status).toBe(404);
  const bad = await a.get('/console/api/events?filter=' + encodeURIComponent('a =='));
  expect(bad.status).toBe(400);
  expect(bad.json).toMatchObject({ error: { code: 'console_bad_filter' } });

  // Every change made an audit line (refused ones too), with how the user signed in and no secret.
  const changes = audits().filter((l) => l['method'] !== undefined);
  expect(changes.map((l) => `${String(l['method'])} ${String(l['status'])}`)).toEqual([
    'POST 403', 'POST 403', 'POST 201', 'POST 400', 'POST 400', 'PATCH 403', 'PATCH 200', 'POST 403', 'POST 200', 'POST 403', 'POST 403', 'POST 404', 'DELETE 403', 'DELETE 204',
  ]);
  expect(changes.find((l) => l['status'] === 201)).toMatchObject({ via: 'console-token', path: '/api/v1/connections' });
  expect(d.logs.lines.join('\n')).not.toContain('Very-Secret-Pass1');
  expect(d.logs.lines.join('\n')).not.toContain(a.session);

  // Sign-out needs the CSRF token too; then the session is gone.
  expect((await a.logout('wrong')).status).toBe(403);
  expect((await a.get('/console/')).status).toBe(200);
  const out = await a.logout();
  expect(out.status).toBe(303);
  expect(setCookies(out).some((c) => /^cefd_session=;.*Max-Age=0/.test(c))).toBe(true);
  expect((await a.get('/console/')).status).toBe(303);
  expect((await a.get('/api/v1/connections')).status).toBe(401);
  expect((await a.send('POST', '/api/v1/connections', conn)).status).toBe(401);
});

test('tenants from the console: create and delete need the session and its CSRF token; validation, 409, audit lines', async () => {
  d = await startKscDaemon(yaml());
  const a = new ConsoleAgent(base());
  // Without a session: 401, nothing made.
  expect((await a.send('POST', '/api/v1/tenants', { name: 'branch' })).status).toBe(401);
  await a.login(ADMIN_TOKEN);
  expect((await a.send('POST', '/api/v1/tenants', { name: 'branch' }, { csrf: false })).status).toBe(403);
  expect((await a.send('POST', '/api/v1/tenants', { name: 'branch' }, { csrf: 'y'.repeat(43) })).status).toBe(403);
  expect((await a.get('/api/v1/tenants')).json!['tenants']).toMatchObject([{ name: 'default' }]);
  const made = await a.send('POST', '/api/v1/tenants', { name: 'branch', integrationEnabled: false });
  expect(made.status).toBe(201);
  expect(made.json).toMatchObject({ tenant: { name: 'branch', integrationEnabled: false } });
  expect((await a.send('POST', '/api/v1/tenants', { name: 'branch' })).status).toBe(409);
  expect((await a.send('POST', '/api/v1/tenants', { name: 'no spaces' })).status).toBe(400);
  // With a connection: refused unless force.
  const conn = await a.send('POST', '/api/v1/connections', { tenant: 'branch', name: 'main', url: 'https://127.0.0.1:1', secret: { user: 'kuma', password: 'Very-Secret-Pass1' } });
  expect(conn.status).toBe(201);
  expect((await a.send('DELETE', '/api/v1/tenants/branch')).status).toBe(409);
  expect((await a.send('DELETE', '/api/v1/tenants/branch?force=true', undefined, { csrf: false })).status).toBe(403);
  expect((await a.send('DELETE', '/api/v1/tenants/branch?force=true')).status).toBe(204);
  expect((await a.get('/api/v1/tenants')).json!['tenants']).toMatchObject([{ name: 'default' }]);
  expect((await a.get('/api/v1/connections')).json).toEqual({ connections: [] });
  // The daemon's own tenant (ksc.tenant: default) stays.
  expect((await a.send('DELETE', '/api/v1/tenants/default')).status).toBe(409);
  const changes = audits().filter((l) => String(l['path'] ?? '').startsWith('/api/v1/tenants'));
  expect(changes.map((l) => `${String(l['method'])} ${String(l['path'])} ${String(l['status'])} ${String(l['via'])}`)).toEqual([
    'POST /api/v1/tenants 401 bearer',
    'POST /api/v1/tenants 403 console-token',
    'POST /api/v1/tenants 403 console-token',
    'POST /api/v1/tenants 201 console-token',
    'POST /api/v1/tenants 409 console-token',
    'POST /api/v1/tenants 400 console-token',
    'DELETE /api/v1/tenants/branch 409 console-token',
    'DELETE /api/v1/tenants/branch 403 console-token',
    'DELETE /api/v1/tenants/branch 204 console-token',
    'DELETE /api/v1/tenants/default 409 console-token',
  ]);
  // The deletion's own line says what went.
  expect(d.logs.parsed().find((l) => l['msg'] !== undefined && String(l['msg']).startsWith('tenant deleted'))).toMatchObject({ tenant: 'branch', connections: 1, assets: 0, taskRuns: 0 });
});

test('sign-in limit: after 5 wrong secrets the address waits (429, Retry-After), but for the right token; counted and audited', async () => {
  d = await startKscDaemon(yaml() + 'metrics: { enabled: true, host: 127.0.0.1, port: 0 }\n');
  const a = new ConsoleAgent(base());
  for (let i = 0; i < 6; i++) expect((await a.login(`wrong-${i}`)).status).toBe(401);
  const limited = await a.login('wrong-while-locked');
  expect(limited.status).toBe(429);
  expect(Number(limited.headers['retry-after'])).toBeGreaterThanOrEqual(1);
  expect(limited.text).toContain('Too many failed sign-ins');
  expect(setCookies(limited).some((c) => c.startsWith('cefd_session='))).toBe(false);
  expect(a.session).toBe('');
  // The right token signs in at once (src/bearer.ts limitedBearer says why).
  expect((await a.login(ADMIN_TOKEN)).status).toBe(303);
  expect((await a.get('/console/')).status).toBe(200);
  const m = await scrape(d.metricsPort());
  expect(m.get('cefd_console_signin_failures_total{reason="credentials"}')).toBe(6);
  expect(m.get('cefd_console_signin_failures_total{reason="rate_limited"}')).toBeGreaterThanOrEqual(1);
  const refused = audits().filter((l) => l['event'] === 'console_login' && l['reason'] === 'rate_limited');
  expect(refused.length).toBeGreaterThanOrEqual(1);
  expect(refused[0]).toMatchObject({ ok: false, scope: 'address', client: '127.0.0.1' });
  expect(d.logs.lines.join('\n')).not.toContain(ADMIN_TOKEN);
});

test('session expiry: an expired session is refused for pages, reads and changes', async () => {
  d = await startKscDaemon(yaml('enabled: true, session_ttl: 1s'));
  const a = new ConsoleAgent(base());
  expect((await a.login(ADMIN_TOKEN)).status).toBe(303);
  const ov = await a.get('/console/api/overview');
  if (ov.status !== 200) console.log(d.logs.lines.filter((l) => l.includes('failed')));
  expect(ov.status).toBe(200);
  await new Promise((r) => setTimeout(r, 1_100));
  await waitFor(async () => (await a.get('/console/api/overview')).status === 401, 30_000, 'the session to expire');
  expect((await a.get('/console/events')).status).toBe(303);
  expect((await a.send('POST', '/api/v1/connections', { name: 'x', url: 'https://127.0.0.1:1' })).status).toBe(401);
});

test('console password: set with the CLI (scrypt hash, 0600), signs in; a short one is refused', async () => {
  d = await startKscDaemon(yaml());
  const state = join(d.dir, 'state');
  const short = await runCli(['console', 'set-password', '--state-dir', state], { input: 'short\n' });
  expect(short.code).toBe(64);
  const set = await runCli(['console', 'set-password', '--state-dir', state], { input: 'correct horse battery staple\n' });
  expect(set.stderr).toBe('');
  expect(set.code).toBe(0);
  const file = join(state, 'console-password');
  expect(statSync(file).mode & 0o777).toBe(0o600);
  const a = new ConsoleAgent(base());
  expect((await a.login('correct horse battery stapl')).status).toBe(401);
  expect((await a.login('correct horse battery staple')).status).toBe(303);
  expect((await a.get('/console/')).status).toBe(200);
  expect(audits().find((l) => l['event'] === 'console_login' && l['ok'] === true)).toMatchObject({ via: 'password' });
});

test('live tail: SSE with the session or the bearer token, route filter, search and detail with encodings in memory', async () => {
  d = await startKscDaemon(yaml());
  const a = new ConsoleAgent(base());
  await a.login(ADMIN_TOKEN);
  expect((await readSse(base(), '/console/api/events/stream', {}, 1)).status).toBe(401);
  const badFilter = await readSse(base(), '/console/api/events/stream?filter=' + encodeURIComponent('(('), { cookie: `cefd_session=${a.session}` }, 1);
  expect(badFilter.status).toBe(400);

  const port = d.port('tcp');
  const filter = encodeURIComponent('cef.extensions.destinationHostName == "WS-2"');
  let sending: Promise<void> | undefined;
  const got = await readSse(base(), `/console/api/events/stream?filter=${filter}`, { cookie: `cefd_session=${a.session}` }, 1, 30_000, () => {
    sending = sendTcp(port, [cef(1), cef(2), cef(3)]);
  });
  await sending;
  expect(got.events.length).toBe(1);
  const ev = JSON.parse(got.events[0]!) as { id: string; host: string; listener: string };
  expect(ev).toMatchObject({ listener: 'tcp', eventClassId: 'GNRL_EV_VIRUS_FOUND' });

  // The ring kept all three; search by text and by filter; the detail has every encoding.
  const all = await a.get('/console/api/events?limit=10');
  expect((all.json!['events'] as unknown[]).length).toBe(3);
  const byText = await a.get('/console/api/events?text=eicar-3');
  expect((byText.json!['events'] as { id: string }[]).length).toBe(1);
  const byFilter = await a.get(`/console/api/events?filter=${filter}`);
  expect((byFilter.json!['events'] as { id: string }[]).map((e) => e.id)).toEqual([ev.id]);
  const detail = await a.get(`/console/api/events/${ev.id}`);
  expect(detail.status).toBe(200);
  const enc = (detail.json!['event'] as { encodings: Record<string, string> }).encodings;
  expect(enc['raw']).toContain('cs1=EICAR-2');
  expect(JSON.parse(enc['native']!)).toMatchObject({ id: ev.id, listener: 'tcp' });
  expect(Object.keys(JSON.parse(enc['ecs']!))).toContain('@timestamp');
  expect(enc['kuma']).toContain('GNRL_EV_VIRUS_FOUND');

  // The bearer token works too (cefd tap), and the full event comes with ?full=true.
  let sent2: Promise<void> | undefined;
  const bearer = await readSse(base(), '/console/api/events/stream?full=true', { authorization: `Bearer ${ADMIN_TOKEN}` }, 1, 30_000, () => {
    sent2 = sendTcp(port, [cef(4)]);
  });
  await sent2;
  expect(JSON.parse(bearer.events[0]!)).toMatchObject({ listener: 'tcp', cef: { deviceEventClassId: 'GNRL_EV_VIRUS_FOUND' } });
  await waitFor(async () => (await a.get('/console/api/overview')).json!['tailClients'] === 0, 30_000, 'the tail clients to go');
  // Per sender address too (which KSC server sends), without the port.
  expect((await a.get('/console/api/overview')).json).toMatchObject({ listeners: [{ name: 'tcp', eventsTotal: 4, senders: [{ address: '127.0.0.1', events: 4, quiet: false }] }] });
});

test('the event stream answers GET only; a sign-in form cut off by a reset is not an internal error', async () => {
  d = await startKscDaemon(yaml());
  for (const method of ['PUT', 'POST', 'DELETE']) {
    const r = await request(base(), method, '/console/api/events/stream', { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(r.status, method).toBe(405);
  }
  // Anyone can start a sign-in: a form that never arrives whole (the client resets).
  for (let i = 0; i < 3; i++) {
    await new Promise<void>((resolve) => {
      const sock = net.connect(d!.adminPort(), '127.0.0.1', () => {
        sock.write('POST /console/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ncsrf=', () => setTimeout(() => sock.destroy(), 50));
      });
      sock.on('error', () => undefined);
      sock.on('close', () => resolve());
    });
  }
  /** Admin requests counted with this status, over every method and route. */
  const counted = async (status: number) => {
    let n = 0;
    for (const [k, v] of await scrape(d!.metricsPort())) if (k.startsWith('cefd_ksc_admin_requests_total{') && k.includes(`status="${status}"`)) n += v;
    return n;
  };
  await waitFor(async () => (await counted(408)) >= 3, 10_000, 'three 408 answers counted');
  expect(await counted(500)).toBe(0);
  expect(d.logs.parsed().filter((l) => l['code'] === 'admin_internal')).toEqual([]);
});

test('recent events without a tail client: search and detail over the events the workers kept', async () => {
  d = await startKscDaemon(yaml());
  const a = new ConsoleAgent(base());
  await a.login(ADMIN_TOKEN);
  await sendTcp(d.port('tcp'), [cef(11), cef(12), cef(13)]);
  await waitFor(async () => ((await a.get('/console/api/events?limit=10')).json!['events'] as unknown[]).length === 3, 30_000, 'three events in memory');
  const r = await a.get('/console/api/events?text=eicar-12');
  expect(r.json).toMatchObject({ tailing: false, inMemory: 3 });
  const [ev] = r.json!['events'] as { id: string }[];
  const detail = await a.get(`/console/api/events/${ev!.id}`);
  expect((detail.json!['event'] as { encodings: Record<string, string> }).encodings['raw']).toContain('cs1=EICAR-12');
  expect((await a.get('/console/api/overview')).json).toMatchObject({ tailClients: 0 });
});

test('cefd tap streams the live events of a running daemon, with --filter', async () => {
  d = await startKscDaemon(yaml());
  const cfg = join(d.dir, 'tap.yaml');
  writeFileSync(cfg, `state_dir: ${d.dir}/state\nksc:\n  admin: { enabled: true, port: ${d.adminPort()}, bearer_token: ${ADMIN_TOKEN} }\n`);
  const p = spawn(process.execPath, [CLI, 'tap', '--config', cfg, '--filter', 'cef.extensions.destinationHostName == "WS-7"'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  p.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
  p.stderr.setEncoding('utf8').on('data', (s: string) => (err += s));
  try {
    await waitFor(async () => ((await request(base(), 'GET', '/console/api/overview', { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json!['tailClients'] as number) === 1, 30_000, 'cefd tap to connect');
    await sendTcp(d.port('tcp'), [cef(6), cef(7), cef(8)]);
    await waitFor(() => out.includes('\n'), 30_000, 'a line from cefd tap');
  } finally {
    p.kill('SIGTERM');
    await new Promise((r) => p.once('close', r));
  }
  expect(err).toBe('');
  const lines = out.trim().split('\n').map((l) => JSON.parse(l) as { cef: { extensions: Record<string, string> } });
  expect(lines.map((l) => l.cef.extensions['destinationHostName'])).toEqual(['WS-7']);

  // Exit codes (docs/console.md, docs/cli.md): a filter the daemon refuses and a daemon
  // that cannot be reached are failures (1); no token at all is a usage error (64).
  const bad = await runCli(['tap', '--config', cfg, '--filter', 'cef.name =='], { cwd: d.dir });
  expect(bad.stderr).toContain('console_bad_filter');
  // The filter error in words, not the answer's JSON.
  expect(bad.stderr).toMatch(/^error: .+ \(console_bad_filter, HTTP 400\)$/m);
  expect(bad.stderr).not.toContain('{"error"');
  expect(bad.code).toBe(1);
  const closed = await runCli(['tap', '--config', cfg, '--url', 'http://127.0.0.1:1'], { cwd: d.dir });
  expect(closed.stderr).toContain('cannot reach');
  expect(closed.code).toBe(1);
  const noToken = join(d.dir, 'no-token.yaml');
  writeFileSync(noToken, `state_dir: ${d.dir}/state\n`);
  const usage = await runCli(['tap', '--config', noToken], { cwd: d.dir, env: { CEFD_ADMIN_TOKEN: '' } });
  expect(usage.stderr).toContain('no admin token');
  expect(usage.code).toBe(64);
});

test('TLS admin listener: HTTPS with the certificate files, the session cookie is Secure', async () => {
  const pki = makePki();
  d = await startKscDaemon(yaml('enabled: true', `, tls: { cert_file: ${join(pki.dir, 'server.crt')}, key_file: ${join(pki.dir, 'server.key')} }`));
  const a = new ConsoleAgent(`https://127.0.0.1:${d.adminPort()}`, readFileSync(pki.caCert, 'utf8'));
  const r = await a.login(ADMIN_TOKEN);
  expect(r.status).toBe(303);
  expect(setCookies(r).find((c) => c.startsWith('cefd_session='))).toContain('; Secure');
  expect((await a.get('/console/api/overview')).status).toBe(200);
  const api = await request(`https://127.0.0.1:${d.adminPort()}`, 'GET', '/api/v1/connections', { ca: readFileSync(pki.caCert, 'utf8'), headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  expect(api.status).toBe(200);
  await expect(request(`http://127.0.0.1:${d.adminPort()}`, 'GET', '/console/login')).rejects.toThrow();
});
