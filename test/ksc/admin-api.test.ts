/**
 * The admin HTTP API over a real socket, against a KSC emulator: every endpoint, the error
 * shape and statuses (400, 401, 404, 405, 409, 413, 415, 502, 504), no secret in answers.
 */
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { afterEach, beforeEach, expect, test } from 'vitest';
import { KscIntegration } from '../../src/ksc/index.js';
import { createAdminServer, type JsonServer, type RuleView } from '../../src/ksc/admin-server.js';
import { SigninLimiter } from '../../src/console/signin-limit.js';
import { startKscEmulator, defaultModel, type KscEmulator } from '../helpers/ksc-emulator/index.js';
import { tempDir } from '../helpers/ksc-emulator/testkit.js';
import { api as rawApi, type ApiAnswer } from '../helpers/ksc-daemon.js';

const PASSWORD = 'S3cret-KSC-pass!w0rd';
const TOKEN = 'the-admin-token-1234';
const WS42 = 'c2b22f83-307c-45aa-8533-5ffffbcc6bf1';

const RULES: RuleView[] = [
  {
    name: 'r1',
    type: 'ksctasks',
    tasks: ['KUMA Update (Windows)'],
    assetField: 'device',
    filter: 'ksc.category == "detection"',
    workers: 1,
    cooldownSeconds: 600,
    queueMax: 1000,
    queued: 0,
    inFlight: 0,
    counters: { triggered: 3, noAsset: 0, started: 1, failed: 0, skippedRunning: 2, skippedCooldown: 0, skippedQueued: 0, skippedDuplicate: 0, dropped: 0 },
    lastTriggers: [],
  },
];

let emu: KscEmulator;
let k: KscIntegration;
let server: JsonServer;
let cleanup: () => void;
const texts: string[] = [];

async function call(method: string, path: string, o: { body?: unknown; token?: string | null; headers?: Record<string, string> } = {}): Promise<ApiAnswer> {
  const r = await rawApi(server.port()!, method, path, { token: TOKEN, ...o });
  texts.push(r.text);
  return r;
}

function errorOf(r: ApiAnswer): { code: string; message: string } {
  return (r.json as { error: { code: string; message: string } }).error;
}

beforeEach(async () => {
  texts.length = 0;
  emu = await startKscEmulator({ model: defaultModel() });
  const t = tempDir();
  cleanup = t.cleanup;
  k = KscIntegration.open({ stateDir: t.dir, env: {}, client: { timeoutMs: 1000, retries: 0, backoffMs: 5 } });
  server = createAdminServer(
    { ksc: k, rules: () => RULES, sync: (o) => k.syncAssets(o), syncAttributes: (o) => k.syncAttributes(o), startTask: (req) => k.startTask(req) },
    { token: TOKEN, maxBodyBytes: 2048, requestTimeoutMs: 1000 },
  );
  await server.listen('127.0.0.1', 0);
});

afterEach(async () => {
  await server.close();
  await emu.close();
  await k.close();
  cleanup();
});

test('wrong bearer tokens count per address: after 5 free a wrong token waits (429, Retry-After); the right token is always taken', async () => {
  let now = 1_000_000;
  const limited = createAdminServer(
    { ksc: k, rules: () => RULES, sync: (o) => k.syncAssets(o), syncAttributes: (o) => k.syncAttributes(o), startTask: (req) => k.startTask(req) },
    { token: TOKEN, maxBodyBytes: 2048, requestTimeoutMs: 1000, authLimit: new SigninLimiter({ now: () => now }) },
  );
  await limited.listen('127.0.0.1', 0);
  try {
    const get = (token: string | null) => rawApi(limited.port()!, 'GET', '/api/v1/connections', { token });
    // No header: nothing guessed, nothing counted.
    for (let i = 0; i < 10; i++) expect((await get(null)).status).toBe(401);
    expect((await get(TOKEN)).status).toBe(200);
    for (let i = 0; i < 6; i++) expect((await get(`wrong-${i}`)).status).toBe(401);
    const r = await get('wrong-6');
    expect(r.status).toBe(429);
    expect(r.headers.get('retry-after')).toBe('1');
    expect(errorOf(r)).toEqual({ code: 'admin_rate_limited', message: 'too many wrong bearer tokens from this address: try again in 1 s' });
    // A POST with a wrong token is refused before its body is read.
    expect((await rawApi(limited.port()!, 'POST', '/api/v1/tenants', { token: 'wrong-post', body: { name: 'x' } })).status).toBe(429);
    expect(k.listTenants().map((t) => t.name)).toEqual(['default']);
    now += 1_000;
    // The next wrong one doubles the wait.
    expect((await get('wrong-again')).status).toBe(401);
    expect((await get('wrong-while-locked')).headers.get('retry-after')).toBe('2');
    // The right token is taken while the address waits (another process on the same host,
    // loopback or an SSH tunnel, cannot keep the operator out), but does not lift the lock.
    expect((await rawApi(limited.port()!, 'POST', '/api/v1/tenants', { token: TOKEN, body: { name: 'x' } })).status).toBe(201);
    expect((await get('wrong-still-locked')).status).toBe(429);
    // The wait over, the right token starts its count over: five wrong ones are free again,
    // the sixth locks it out for 1 s.
    now += 2_000;
    expect((await get(TOKEN)).status).toBe(200);
    for (let i = 0; i < 6; i++) expect((await get(`wrong-after-${i}`)).status).toBe(401);
    expect((await get('wrong-after-6')).headers.get('retry-after')).toBe('1');
    expect((await get(TOKEN)).status).toBe(200);
    now += 1_000;
    // A script with an old token beside a working client on one host: the working client is
    // never kept out (the script's tokens lock the address for wrong tokens and passwords).
    for (let round = 0; round < 12; round++) {
      expect([401, 429]).toContain((await get('old-token-of-a-forgotten-script')).status);
      expect((await get(TOKEN)).status).toBe(200);
      now += 500;
    }
  } finally {
    await limited.close();
  }
});

async function addMain(): Promise<string> {
  const r = await call('POST', '/api/v1/connections', {
    body: { name: 'main', url: emu.url, tls: { pinSha256: emu.cert.fingerprint256 }, secret: { user: 'kuma', password: PASSWORD } },
  });
  expect(r.status).toBe(201);
  return (r.json!['connection'] as { id: string }).id;
}

test('bearer token: required on every endpoint, compared exactly', async () => {
  for (const [token, headers] of [
    [null, {}],
    ['wrong-token', {}],
    [`${TOKEN}x`, {}],
    [null, { authorization: `Basic ${Buffer.from(`x:${TOKEN}`).toString('base64')}` }],
    [null, { authorization: 'Bearer' }],
  ] as const) {
    for (const path of ['/api/v1/connections', '/api/v1/no-such-endpoint']) {
      const r = await call('GET', path, { token, headers });
      expect(r.status).toBe(401);
      expect(r.headers.get('www-authenticate')).toBe('Bearer realm="cefd-admin"');
      expect(errorOf(r)).toEqual({ code: 'admin_unauthorized', message: 'missing or wrong bearer token' });
    }
  }
  const ok = await call('GET', '/api/v1/connections', { headers: { authorization: `bearer ${TOKEN}` } });
  expect(ok.status).toBe(200);
  expect(ok.headers.get('content-type')).toBe('application/json; charset=utf-8');
  expect(ok.headers.get('cache-control')).toBe('no-store');
  expect(ok.json).toEqual({ connections: [] });
  // A POST without the token is refused before its body is read.
  const post = await call('POST', '/api/v1/connections', { token: null, body: { name: 'x', url: 'a:1', secret: { user: 'u', password: PASSWORD } } });
  expect(post.status).toBe(401);
  expect(k.listConnections()).toEqual([]);
});

test('routing and bodies: 404, 405, 400, 413, 415', async () => {
  const nf = await call('GET', '/api/v1/nothing');
  expect(nf.status).toBe(404);
  expect(errorOf(nf).code).toBe('admin_not_found');
  const na = await call('PUT', '/api/v1/connections');
  expect(na.status).toBe(405);
  expect(na.headers.get('allow')).toBe('GET, POST');
  expect(errorOf(na).code).toBe('admin_method_not_allowed');
  const del = await call('DELETE', '/api/v1/assets/abc');
  expect(del.status).toBe(405);
  expect(del.headers.get('allow')).toBe('GET');

  const bad = await call('POST', '/api/v1/connections', { body: '{"name": ' });
  expect(bad.status).toBe(400);
  expect(errorOf(bad)).toEqual({ code: 'admin_bad_json', message: 'the request body is not valid JSON' });
  const media = await call('POST', '/api/v1/connections', { body: 'name=x', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
  expect(media.status).toBe(415);
  expect(errorOf(media).code).toBe('admin_unsupported_media_type');
  const big = await call('POST', '/api/v1/connections', { body: { name: 'x'.repeat(3000), url: 'a:1' } });
  expect(big.status).toBe(413);
  expect(errorOf(big)).toEqual({ code: 'admin_body_too_large', message: 'the request body is larger than 2048 bytes' });
  const arr = await call('POST', '/api/v1/connections', { body: [1, 2] });
  expect(arr.status).toBe(400);
  expect(arr.json).toEqual({ error: { code: 'ksc_invalid_input', field: 'body', message: 'the request body must be a JSON object' } });
  const unknown = await call('POST', '/api/v1/connections', { body: { name: 'x', url: 'a:1', pasword: 'typo' } });
  expect(unknown.status).toBe(400);
  expect(unknown.json).toMatchObject({ error: { code: 'ksc_invalid_input', message: expect.stringContaining('unknown field "pasword"') } });
  const pct = await call('GET', '/api/v1/connections/%E0%A4%A');
  expect(pct.status).toBe(400);
  expect(errorOf(pct).code).toBe('admin_bad_request');
});

test('a client that sends its request too slowly is cut off', async () => {
  const sock = net.connect(server.port()!, '127.0.0.1');
  await new Promise<void>((r) => sock.once('connect', () => r()));
  let answer = '';
  sock.setEncoding('utf8').on('data', (d: string) => (answer += d));
  sock.write(`POST /api/v1/connections HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"na`);
  await new Promise<void>((r) => sock.once('close', () => r()));
  expect(answer).toMatch(/^HTTP\/1\.1 408 Request Timeout\r\n/);
  expect(answer).toContain('{"error":{"code":"admin_timeout","message":"the request took too long to arrive"}}');
  expect(k.listConnections()).toEqual([]);
});

test('connections: create, read, update, enable/disable, test, delete', async () => {
  const id = await addMain();
  const list = await call('GET', '/api/v1/connections');
  expect(list.json).toEqual({
    connections: [
      {
        id,
        tenant: 'default',
        name: 'main',
        url: emu.url,
        disabled: false,
        tls: { pinSha256: emu.cert.fingerprint256.replace(/:/g, '').toLowerCase() },
        createdAt: expect.any(String),
        updatedAt: expect.any(String),
        lastSync: null,
        secret: { set: true, source: 'file' },
      },
    ],
  });
  expect((await call('GET', `/api/v1/connections/${id}`)).json).toEqual({ connection: (list.json!['connections'] as unknown[])[0] });
  expect((await call('GET', '/api/v1/connections/main')).json!['connection']).toMatchObject({ id });
  expect((await call('GET', '/api/v1/connections?tenant=other')).json).toEqual({ connections: [] });

  const dup = await call('POST', '/api/v1/connections', { body: { name: 'main', url: emu.url, secret: { user: 'kuma', password: PASSWORD } } });
  expect(dup.status).toBe(409);
  expect(errorOf(dup)).toEqual({ code: 'ksc_conflict', message: 'tenant "default" already has a KSC connection named "main"' });
  const noSecret = await call('POST', '/api/v1/connections', { body: { name: 'other', url: emu.url } });
  expect(noSecret.status).toBe(400);
  expect(noSecret.json).toMatchObject({ error: { code: 'ksc_invalid_input', field: 'secret' } });
  const badUrl = await call('POST', '/api/v1/connections', { body: { name: 'other', url: 'http://x:1/y', secret: { user: 'kuma', password: PASSWORD } } });
  expect(badUrl.status).toBe(400);
  expect(badUrl.json).toMatchObject({ error: { code: 'ksc_invalid_input', field: 'url' } });
  const longName = await call('POST', '/api/v1/connections', { body: { name: 'я'.repeat(129), url: emu.url, secret: { user: 'kuma', password: PASSWORD } } });
  expect(longName.status).toBe(400);
  const t2 = await call('POST', '/api/v1/connections', { body: { tenant: 'branch', name: 'main', url: 'ksc2.corp.example', disabled: true, secret: { user: 'kuma', password: PASSWORD } } });
  expect(t2.status).toBe(201);
  expect(t2.json!['connection']).toMatchObject({ tenant: 'branch', name: 'main', url: 'ksc2.corp.example:13299', disabled: true, tls: {} });
  expect((await call('GET', '/api/v1/connections/main?tenant=branch')).json!['connection']).toMatchObject({ tenant: 'branch' });

  const renamed = await call('PATCH', `/api/v1/connections/${id}`, { body: { name: 'primary' } });
  expect(renamed.status).toBe(200);
  expect(renamed.json!['connection']).toMatchObject({ id, name: 'primary', url: emu.url });
  const badPatch = await call('PATCH', `/api/v1/connections/${id}`, { body: { url: 'not a url' } });
  expect(badPatch.status).toBe(400);
  expect(badPatch.json).toMatchObject({ error: { code: 'ksc_invalid_input', field: 'url' } });
  const typePatch = await call('PATCH', `/api/v1/connections/${id}`, { body: { disabled: 'yes' } });
  expect(typePatch.status).toBe(400);

  expect((await call('POST', `/api/v1/connections/${id}/disable`)).json!['connection']).toMatchObject({ disabled: true });
  const syncOff = await call('POST', '/api/v1/assets/sync', { body: { connection: id } });
  expect(syncOff.json!['results']).toMatchObject([{ ok: false, error: 'KSC connection "primary" is disabled' }]);
  expect((await call('POST', `/api/v1/connections/${id}/enable`)).json!['connection']).toMatchObject({ disabled: false });

  const ok = await call('POST', `/api/v1/connections/${id}/test`);
  expect(ok.json).toEqual({ result: { ok: true } });
  await call('PATCH', `/api/v1/connections/${id}`, { body: { secret: { user: 'kuma', password: 'not-the-password' } } });
  const refused = await call('POST', `/api/v1/connections/${id}/test`);
  expect(refused.status).toBe(200);
  expect(refused.json!['result']).toMatchObject({ ok: false, code: 'ksc_auth_failed' });

  const gone = await call('DELETE', `/api/v1/connections/${id}`);
  expect(gone.status).toBe(204);
  expect(gone.text).toBe('');
  const again = await call('GET', `/api/v1/connections/${id}`);
  expect(again.status).toBe(404);
  expect(errorOf(again).code).toBe('ksc_not_found');
  expect((await call('DELETE', `/api/v1/connections/${id}`)).status).toBe(404);

  for (const t of texts) {
    expect(t).not.toContain(PASSWORD);
    expect(t).not.toContain('not-the-password');
  }
});

/** A TCP server that counts the connections made to it (a server the stored password must never reach). */
async function countingServer(): Promise<{ url: string; connections: () => number; close: () => Promise<void> }> {
  let n = 0;
  const srv = net.createServer((s) => {
    n++;
    s.destroy();
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return { url: `127.0.0.1:${(srv.address() as net.AddressInfo).port}`, connections: () => n, close: () => new Promise((r) => srv.close(() => r())) };
}

test('a caller of the API cannot send a stored password to a server of its choosing: a new server or TLS settings need the secret again', async () => {
  const id = await addMain();
  const evil = await countingServer();
  try {
    for (const body of [{ url: evil.url }, { url: evil.url, tls: { insecure: true } }, { tls: { insecure: true } }, { tls: {} }, { url: evil.url, name: 'moved' }]) {
      const r = await call('PATCH', `/api/v1/connections/${id}`, { body });
      expect(r.status, JSON.stringify(body)).toBe(409);
      expect(errorOf(r).code).toBe('ksc_secret_required');
      expect(errorOf(r).message).toContain(`the stored one was given for ${emu.url}`);
    }
    // Nothing changed, and the connection still works against its own server.
    const kept = (await call('GET', `/api/v1/connections/${id}`)).json!['connection'];
    expect(kept).toMatchObject({ name: 'main', url: emu.url, tls: { pinSha256: expect.any(String) } });
    expect((await call('POST', `/api/v1/connections/${id}/test`)).json).toEqual({ result: { ok: true } });
    // The same URL written another way, a rename, disabling: no secret needed.
    expect((await call('PATCH', `/api/v1/connections/${id}`, { body: { url: `https://${emu.url}/`, name: 'primary', disabled: true } })).status).toBe(200);
    expect((await call('POST', `/api/v1/connections/${id}/enable`)).status).toBe(200);
    // With the secret in the same change, the move is the caller's own password's.
    const moved = await call('PATCH', `/api/v1/connections/${id}`, { body: { url: evil.url, tls: { insecure: true }, secret: { user: 'other', password: 'the-callers-own-pass' } } });
    expect(moved.status).toBe(200);
    expect(moved.json!['connection']).toMatchObject({ url: evil.url, tls: { insecure: true }, secret: { set: true, source: 'file' } });
    expect(k.secrets.get({ id, url: evil.url })).toMatchObject({ user: 'other', password: 'the-callers-own-pass' });
    // The command line (not remote) may still move a connection with its stored secret.
    k.editConnection(id, { url: emu.url, tls: { pinSha256: emu.cert.fingerprint256 } });
    expect(evil.connections()).toBe(0);
  } finally {
    await evil.close();
  }
  for (const t of texts) expect(t).not.toContain(PASSWORD);
});

test('a credential file secret goes only where the operator allowed: the API cannot add, rename into, move or re-TLS a connection that takes one; an entry with "url" is the secret of that server only', async () => {
  const t = tempDir();
  const credFile = `${t.dir}/ksc-secrets`;
  writeFileSync(credFile, JSON.stringify({ 'default/prod': { user: 'kuma', password: 'cred-unbound-pass' }, 'default/bound': { user: 'kuma', password: PASSWORD, url: `https://${emu.url}` } }));
  const kc = KscIntegration.open({ stateDir: `${t.dir}/state`, credentialsFile: credFile, env: {}, client: { timeoutMs: 1000, retries: 0, backoffMs: 5 } });
  const srv = createAdminServer(
    { ksc: kc, rules: () => RULES, sync: (o) => kc.syncAssets(o), syncAttributes: (o) => kc.syncAttributes(o), startTask: (req) => kc.startTask(req) },
    { token: TOKEN, maxBodyBytes: 2048, requestTimeoutMs: 1000 },
  );
  await srv.listen('127.0.0.1', 0);
  const evil = await countingServer();
  const c = (method: string, path: string, body?: unknown) => rawApi(srv.port()!, method, path, { token: TOKEN, ...(body !== undefined ? { body } : {}) });
  const refused = (r: ApiAnswer) => {
    expect(r.status).toBe(409);
    expect((r.json as { error: { code: string } }).error.code).toBe('ksc_secret_required');
  };
  try {
    // Made again under the entry's name (delete and add back), at another server: refused, with or without a secret.
    for (const body of [{ name: 'prod', url: evil.url }, { name: 'prod', url: evil.url, secret: { user: 'x', password: 'caller-pass' } }]) {
      const r = await c('POST', '/api/v1/connections', body);
      refused(r);
      expect((r.json as { error: { message: string } }).error.message).toContain('with the command line only (cefd ksc connections add)');
    }
    // An entry with "url" at its own server, but TLS of the caller's choosing (a MITM's
    // certificate would do): refused too. The API adds no connection that takes a credential.
    refused(await c('POST', '/api/v1/connections', { name: 'bound', url: emu.url, tls: { insecure: true } }));
    refused(await c('POST', '/api/v1/connections', { name: 'bound', url: emu.url, tls: { pinSha256: emu.cert.fingerprint256 } }));
    // An entry with "url" is not this connection's secret at another server: no secret at all.
    const other = await c('POST', '/api/v1/connections', { name: 'bound', url: evil.url });
    expect(other.status).toBe(400);
    expect(other.json).toMatchObject({ error: { code: 'ksc_invalid_input', field: 'secret' } });
    // The command line adds it (the operator's file, the operator's choice).
    const bound = kc.addConnection({ name: 'bound', url: emu.url, tls: { pinSha256: emu.cert.fingerprint256 } });
    expect(bound.secret).toEqual({ set: true, source: 'credential' });
    expect((await c('POST', `/api/v1/connections/${bound.id}/test`)).json).toEqual({ result: { ok: true } });
    // The API can switch it off and on, not change its TLS, even with a secret of its own
    // (the credential file's would still be the one sent).
    expect((await c('POST', `/api/v1/connections/${bound.id}/disable`)).status).toBe(200);
    expect((await c('POST', `/api/v1/connections/${bound.id}/enable`)).status).toBe(200);
    refused(await c('PATCH', `/api/v1/connections/${bound.id}`, { tls: { insecure: true }, secret: { user: 'x', password: 'caller-pass' } }));
    // Renamed away from its entry: it simply has no secret any more; renamed back into it: refused.
    const away = await c('PATCH', `/api/v1/connections/${bound.id}`, { name: 'renamed' });
    expect(away.json!['connection']).toMatchObject({ name: 'renamed', secret: { set: false, source: null } });
    refused(await c('PATCH', `/api/v1/connections/${bound.id}`, { name: 'bound' }));
    kc.editConnection(bound.id, { name: 'bound' });
    // Moved with the caller's own secret to another server: the entry no longer applies (it
    // names its server), the caller's secret does.
    const moved = await c('PATCH', `/api/v1/connections/${bound.id}`, { url: evil.url, secret: { user: 'x', password: 'caller-pass' } });
    expect(moved.status).toBe(200);
    expect(moved.json!['connection']).toMatchObject({ url: evil.url, secret: { set: true, source: 'file' } });
    expect(kc.secrets.get({ id: bound.id, tenant: 'default', name: 'bound', url: evil.url })?.password).toBe('caller-pass');
    // A connection of the caller's renamed to the unbound entry's name: refused.
    const mine = await c('POST', '/api/v1/connections', { name: 'mine', url: evil.url, secret: { user: 'x', password: 'caller-pass' } });
    expect(mine.status).toBe(201);
    refused(await c('PATCH', `/api/v1/connections/${(mine.json!['connection'] as { id: string }).id}`, { name: 'prod' }));
    // The command line may add the unbound entry's connection; the API cannot move it.
    const cli = kc.addConnection({ name: 'prod', url: 'ksc.corp.example' });
    expect(cli.secret).toEqual({ set: true, source: 'credential' });
    refused(await c('PATCH', `/api/v1/connections/${cli.id}`, { url: evil.url, secret: { user: 'x', password: 'caller-pass' } }));
    expect(evil.connections()).toBe(0);
  } finally {
    await evil.close();
    await srv.close();
    await kc.close();
    t.cleanup();
  }
});

test('tenants: list and the integration switch', async () => {
  await addMain();
  expect((await call('GET', '/api/v1/tenants')).json).toEqual({ tenants: [{ name: 'default', integrationEnabled: true, createdAt: expect.any(String) }] });
  const off = await call('PATCH', '/api/v1/tenants/default', { body: { integrationEnabled: false } });
  expect(off.json).toEqual({ tenant: { name: 'default', integrationEnabled: false, createdAt: expect.any(String) } });
  // A full import skips the tenant; asking for its connection says why.
  expect((await call('POST', '/api/v1/assets/sync')).json).toEqual({ results: [] });
  expect((await call('POST', '/api/v1/assets/sync', { body: { connection: 'main' } })).json!['results']).toMatchObject([{ ok: false, error: 'the KSC integration of tenant "default" is off' }]);
  const bad = await call('PATCH', '/api/v1/tenants/default', { body: {} });
  expect(bad.status).toBe(400);
  expect(errorOf(bad).code).toBe('ksc_invalid_input');
  // A tenant that does not exist: 404, nothing made (create it with POST /api/v1/tenants).
  for (const name of ['branch', 'a%2Fb', '%20x']) {
    const missing = await call('PATCH', `/api/v1/tenants/${name}`, { body: { integrationEnabled: true } });
    expect(missing.status, name).toBe(404);
    expect(errorOf(missing).code).toBe('ksc_not_found');
  }
  expect(k.listTenants().map((t) => t.name)).toEqual(['default']);
  // A connection may make its tenant, under the same name rules as POST /api/v1/tenants.
  for (const tenant of ['a/b', '-x', 'x'.repeat(65), ' ']) {
    const r = await call('POST', '/api/v1/connections', { body: { tenant, name: 'm', url: 'ksc.example', secret: { user: 'u', password: PASSWORD } } });
    expect(r.status, tenant).toBe(400);
    expect((r.json as { error: { code: string; field: string } }).error).toMatchObject({ code: 'ksc_invalid_input', field: 'tenant' });
  }
  expect(k.listTenants().map((t) => t.name)).toEqual(['default']);
  expect((await call('POST', '/api/v1/connections', { body: { tenant: 'branch', name: 'm', url: 'ksc.example', secret: { user: 'u', password: PASSWORD } } })).status).toBe(201);
  const on = await call('PATCH', '/api/v1/tenants/branch', { body: { integrationEnabled: false } });
  expect(on.json!['tenant']).toMatchObject({ name: 'branch', integrationEnabled: false });
});

test('tenants: create (validation, duplicate 409) and delete (refused with connections unless force; default kept)', async () => {
  const made = await call('POST', '/api/v1/tenants', { body: { name: 'branch-1', integrationEnabled: false } });
  expect(made.status).toBe(201);
  expect(made.json).toEqual({ tenant: { name: 'branch-1', integrationEnabled: false, createdAt: expect.any(String) } });
  const dup = await call('POST', '/api/v1/tenants', { body: { name: 'branch-1' } });
  expect(dup.status).toBe(409);
  expect(errorOf(dup)).toEqual({ code: 'ksc_conflict', message: 'tenant "branch-1" already exists' });
  for (const body of [undefined, {}, { name: '' }, { name: 'a/b' }, { name: '-x' }, { name: 'x'.repeat(65) }, { name: 7 }, { name: 'ok', extra: 1 }, { name: 'ok', integrationEnabled: 'yes' }]) {
    const r = await call('POST', '/api/v1/tenants', body === undefined ? {} : { body });
    expect(r.status, JSON.stringify(body)).toBe(400);
    expect(errorOf(r).code).toBe('ksc_invalid_input');
  }
  expect((await call('GET', '/api/v1/tenants')).json!['tenants']).toMatchObject([{ name: 'branch-1' }, { name: 'default' }]);

  // A tenant with a connection, its assets and a task run.
  const conn = await call('POST', '/api/v1/connections', { body: { tenant: 'branch-1', name: 'main', url: emu.url, tls: { pinSha256: emu.cert.fingerprint256 }, secret: { user: 'kuma', password: PASSWORD } } });
  expect(conn.status).toBe(201);
  const id = (conn.json!['connection'] as { id: string }).id;
  await call('PATCH', '/api/v1/tenants/branch-1', { body: { integrationEnabled: true } });
  expect((await call('POST', '/api/v1/assets/sync', { body: { tenant: 'branch-1' } })).json!['results']).toMatchObject([{ ok: true, hosts: 5 }]);
  const ws = (k.listAssets({ tenant: 'branch-1' })).find((a) => a.displayName === 'WS-0142')!;
  expect((await call('POST', '/api/v1/tasks/start', { body: { asset: ws.id, tasks: ['KUMA Update (Windows)'] } })).status).toBe(201);
  expect(k.secrets.get({ id, tenant: 'branch-1', name: 'main' })).toBeDefined();

  const refused = await call('DELETE', '/api/v1/tenants/branch-1');
  expect(refused.status).toBe(409);
  expect(errorOf(refused).code).toBe('ksc_conflict');
  expect(errorOf(refused).message).toContain('has 1 KSC connection (main)');
  expect(k.listConnections({ tenant: 'branch-1' })).toHaveLength(1);
  expect((await call('DELETE', '/api/v1/tenants/branch-1?force=maybe')).status).toBe(400);

  const gone = await call('DELETE', '/api/v1/tenants/branch-1?force=true');
  expect(gone.status).toBe(204);
  expect(gone.text).toBe('');
  expect((await call('GET', '/api/v1/tenants')).json!['tenants']).toMatchObject([{ name: 'default' }]);
  expect(k.listConnections()).toEqual([]);
  expect(k.listAssets({ tenant: 'branch-1', includeArchived: true })).toEqual([]);
  expect(k.taskStatus({ tenant: 'branch-1' })).toEqual([]);
  expect(k.secrets.get({ id, tenant: 'branch-1', name: 'main' })).toBeUndefined();

  expect((await call('DELETE', '/api/v1/tenants/branch-1')).status).toBe(404);
  const dflt = await call('DELETE', '/api/v1/tenants/default?force=true');
  expect(dflt.status).toBe(409);
  expect(errorOf(dflt).message).toBe('the tenant "default" cannot be deleted');
  // An empty tenant goes without force.
  expect((await call('POST', '/api/v1/tenants', { body: { name: 'empty' } })).status).toBe(201);
  expect((await call('DELETE', '/api/v1/tenants/empty')).status).toBe(204);
  // Without the token: 401, nothing made.
  expect((await call('POST', '/api/v1/tenants', { token: null, body: { name: 'nope' } })).status).toBe(401);
  expect((await call('DELETE', '/api/v1/tenants/default', { token: null })).status).toBe(401);
  expect(k.listTenants().map((t) => t.name)).toEqual(['default']);
  for (const t of texts) expect(t).not.toContain(PASSWORD);
});

test('tenants: the daemon\'s own ksc.tenant cannot be deleted', async () => {
  const s2 = createAdminServer(
    { ksc: k, tenant: 'site', rules: () => RULES, sync: (o) => k.syncAssets(o), syncAttributes: (o) => k.syncAttributes(o), startTask: (req) => k.startTask(req) },
    { token: TOKEN, maxBodyBytes: 2048, requestTimeoutMs: 1000 },
  );
  await s2.listen('127.0.0.1', 0);
  try {
    expect((await rawApi(s2.port()!, 'POST', '/api/v1/tenants', { token: TOKEN, body: { name: 'site' } })).status).toBe(201);
    const r = await rawApi(s2.port()!, 'DELETE', '/api/v1/tenants/site', { token: TOKEN });
    expect(r.status).toBe(409);
    expect(errorOf(r).message).toContain('ksc.tenant');
    expect(k.listTenants().map((t) => t.name)).toEqual(['default', 'site']);
  } finally {
    await s2.close();
  }
});

test('assets: sync, list, get', async () => {
  const id = await addMain();
  const sync = await call('POST', '/api/v1/assets/sync', { body: {} });
  expect(sync.status).toBe(200);
  expect(sync.json!['results']).toEqual([
    { connectionId: id, connection: 'main', tenant: 'default', ok: true, hosts: 5, created: 5, updated: 0, archived: 1, removed: 0, productErrors: 0, skippedNoAgent: 0, merged: 0, durationMs: expect.any(Number) },
  ]);
  const list = (await call('GET', '/api/v1/assets')).json!['assets'] as { id: string; displayName: string }[];
  expect(list.map((a) => a.displayName)).toEqual(['lnx-web01', 'SRV-FILE01', 'WS-0142', 'WS-0177']);
  const all = (await call('GET', `/api/v1/assets?archived=true&connection=main`)).json!['assets'] as { status: string }[];
  expect(all).toHaveLength(5);
  expect(all.filter((a) => a.status === 'archived')).toHaveLength(1);
  expect((await call('GET', '/api/v1/assets?tenant=branch')).json).toEqual({ assets: [] });
  const ws = list.find((a) => a.displayName === 'WS-0142')!;
  const one = await call('GET', `/api/v1/assets/${ws.id}`);
  expect(one.json!['asset']).toMatchObject({ id: ws.id, kscHostId: WS42, fqdn: 'ws-0142.corp.example', ips: ['10.0.12.42'], platform: 'windows', nagent: true, group: { id: 1, name: 'Workstations' }, status: 'active' });
  expect((await call('GET', '/api/v1/assets/no-such-asset')).status).toBe(404);
  expect(one.json).toMatchObject({ software: [], patches: [], vulnerabilities: [] });
  // The attribute import on demand, then the asset has its software and vulnerabilities.
  const attrs = await call('POST', '/api/v1/assets/sync', { body: { connection: 'main', attributes: true } });
  expect(attrs.status).toBe(200);
  expect(attrs.json!['results']).toMatchObject([{ connection: 'main', ok: true, imported: 4, failed: 0 }]);
  const withAttrs = await call('GET', `/api/v1/assets/${ws.id}`);
  expect((withAttrs.json!['software'] as unknown[]).length).toBe(3);
  expect(withAttrs.json!['vulnerabilities']).toMatchObject([{ id: 'KLA10001', severity: 3 }, { id: 'KLA10002', ignored: true }]);
  expect(withAttrs.json!['asset']).toMatchObject({ macs: ['00:1a:2b:3c:4d:42', '00:1a:2b:3c:4d:43'], attributes: { software: 3, patches: 1, vulnerabilities: 2 } });
  expect((await call('POST', '/api/v1/assets/sync', { body: { attributes: 'yes' } })).status).toBe(400);
  expect((await call('GET', '/api/v1/assets?archived=maybe')).status).toBe(400);
  expect((await call('GET', '/api/v1/assets?connection=nope')).status).toBe(404);
});

test('tasks: list, start, runs; refused starts answer 409', async () => {
  const id = await addMain();
  await call('POST', '/api/v1/assets/sync');
  const tasks = await call('GET', `/api/v1/connections/${id}/tasks`);
  expect((tasks.json!['tasks'] as { displayName: string }[]).map((t) => t.displayName)).toEqual(['KUMA Scan selection', 'KUMA Scan servers', 'KUMA Update (Windows)', 'kuma virus scan (Linux)', 'KUMA Virus scan (Windows)']);
  expect((await call('GET', `/api/v1/connections/${id}/tasks?refresh=true`)).status).toBe(200);

  const ws = ((await call('GET', '/api/v1/assets')).json!['assets'] as { id: string; kscHostId: string }[]).find((a) => a.kscHostId === WS42)!;
  const started = await call('POST', '/api/v1/tasks/start', { body: { asset: ws.id, tasks: ['KUMA Scan servers', 'KUMA Update (Windows)'] } });
  expect(started.status).toBe(201);
  expect(started.json).toMatchObject({
    run: { assetId: ws.id, taskId: '22', state: 'requested', origin: 'manual' },
    task: { taskId: '22', displayName: 'KUMA Update (Windows)' },
    candidates: [
      { requested: 'KUMA Scan servers', applicable: false, reason: "the asset is not in the task's scope" },
      { requested: 'KUMA Update (Windows)', applicable: true },
    ],
    wholeScope: true,
  });
  const runId = (started.json!['run'] as { id: number }).id;
  expect((await call('GET', `/api/v1/tasks/runs/${runId}`)).json!['run']).toMatchObject({ id: runId, state: 'requested' });
  expect((await call('GET', `/api/v1/tasks/runs?asset=${ws.id}&active=true`)).json!['runs']).toHaveLength(1);
  expect((await call('GET', `/api/v1/tasks/runs?connection=main&task=22&limit=5`)).json!['runs']).toHaveLength(1);
  expect((await call('GET', '/api/v1/tasks/runs?task=17')).json).toEqual({ runs: [] });
  expect((await call('GET', '/api/v1/tasks/runs?limit=0')).status).toBe(400);
  expect((await call('GET', '/api/v1/tasks/runs/999')).status).toBe(404);
  expect((await call('GET', '/api/v1/tasks/runs/abc')).status).toBe(404);

  const running = await call('POST', '/api/v1/tasks/start', { body: { asset: ws.id, tasks: ['KUMA Update (Windows)'] } });
  expect(running.status).toBe(409);
  expect(errorOf(running).code).toBe('ksc_task_running');
  const na = await call('POST', '/api/v1/tasks/start', { body: { asset: ws.id, tasks: ['kuma virus scan (Linux)'] } });
  expect(na.status).toBe(409);
  expect(errorOf(na)).toEqual({ code: 'ksc_task_not_applicable', message: expect.stringContaining('the asset has no KESL installed') });
  expect((await call('POST', '/api/v1/tasks/start', { body: { asset: 'nope', tasks: ['x'] } })).status).toBe(404);
  const noTasks = await call('POST', '/api/v1/tasks/start', { body: { asset: ws.id, tasks: [] } });
  expect(noTasks.status).toBe(400);
  expect(noTasks.json).toMatchObject({ error: { code: 'ksc_invalid_input', field: 'tasks' } });
  expect((await call('POST', '/api/v1/tasks/start')).status).toBe(400);
});

test('KSC failures: 502 for errors of KSC, 504 for timeouts', async () => {
  const id = await addMain();
  emu.faults.failNext(503, { method: 'Tasks.ResetTasksIterator' });
  const e502 = await call('GET', `/api/v1/connections/${id}/tasks?refresh=true`);
  expect(e502.status).toBe(502);
  expect(errorOf(e502)).toEqual({ code: 'ksc_http_error', message: expect.stringMatching(/^KSC 127\.0\.0\.1:\d+ Tasks\.ResetTasksIterator: HTTP 503/) });
  emu.faults.methodDelayMs['Tasks.ResetTasksIterator'] = 3000;
  const e504 = await call('GET', `/api/v1/connections/${id}/tasks?refresh=true`);
  expect(e504.status).toBe(504);
  expect(errorOf(e504).code).toBe('ksc_timeout');
  emu.faults.clear();
  await call('PATCH', `/api/v1/connections/${id}`, { body: { secret: { user: 'kuma', password: 'wrong-password-1' } } });
  const auth = await call('GET', `/api/v1/connections/${id}/tasks?refresh=true`);
  expect(auth.status).toBe(502);
  expect(errorOf(auth).code).toBe('ksc_auth_failed');
  for (const t of texts) {
    expect(t).not.toContain(PASSWORD);
    expect(t).not.toContain('wrong-password-1');
  }
});

test('response rules: list and get', async () => {
  expect((await call('GET', '/api/v1/rules')).json).toEqual({ rules: RULES });
  expect((await call('GET', '/api/v1/rules/r1')).json).toEqual({ rule: RULES[0] });
  const nf = await call('GET', '/api/v1/rules/nope');
  expect(nf.status).toBe(404);
  expect(errorOf(nf)).toEqual({ code: 'ksc_not_found', message: 'no response rule "nope"' });
});
