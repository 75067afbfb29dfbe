import { afterAll, afterEach, beforeAll, expect, test } from 'vitest';
import { KscClient, certificateFingerprint, normalizePin, parseServerAddress, type KscClientOptions } from '../../src/ksc/client.js';
import { KscAuthError, KscHttpError, KscPxgError, KscSessionError, KscTimeoutError, KscTlsError, KscTransportError, KscError } from '../../src/ksc/errors.js';
import { decodeIpLong } from '../../src/ksc/params.js';
import type { KscLogger } from '../../src/ksc/secrets.js';
import { startKscEmulator, makeSelfSignedCert, type KscEmulator } from '../helpers/ksc-emulator/index.js';

const USER = 'kuma';
const PASSWORD = 'S3cret-KSC-pass!w0rd';

let emu: KscEmulator;
const clients: KscClient[] = [];

beforeAll(async () => {
  emu = await startKscEmulator();
});
afterAll(async () => {
  await emu.close();
});
afterEach(async () => {
  emu.faults.clear();
  while (clients.length > 0) await clients.pop()!.close();
});

function client(o: Partial<KscClientOptions> = {}): KscClient {
  const c = new KscClient({
    url: emu.url,
    credentials: { user: USER, password: PASSWORD },
    tls: { pinSha256: emu.cert.fingerprint256 },
    timeoutMs: 2000,
    retries: 2,
    backoffMs: 10,
    maxBackoffMs: 40,
    ...o,
  });
  clients.push(c);
  return c;
}

function memLogger(lines: string[]): KscLogger {
  const f = (level: string) => (obj: Record<string, unknown>, msg?: string) => lines.push(JSON.stringify({ level, ...obj, msg }));
  return { debug: f('debug'), info: f('info'), warn: f('warn'), error: f('error') };
}

const HOST_FIELDS = ['KLHST_WKS_HOSTNAME', 'KLHST_WKS_DN', 'KLHST_WKS_FQDN', 'KLHST_WKS_IP_LONG', 'KLHST_WKS_LAST_VISIBLE', 'name'];

test('server address parsing and the default port 13299', () => {
  expect(parseServerAddress('ksc.corp.example')).toEqual({ host: 'ksc.corp.example', port: 13299 });
  expect(parseServerAddress('10.0.0.5:8443')).toEqual({ host: '10.0.0.5', port: 8443 });
  expect(() => parseServerAddress('ksc:99999')).toThrow(/port/);
  expect(() => parseServerAddress('a b:1')).toThrow(KscError);
});

test('pins are normalized from openssl, bare hex and base64 forms', () => {
  const hex = certificateFingerprint(emu.cert.cert);
  expect(normalizePin(emu.cert.fingerprint256)).toBe(hex);
  expect(normalizePin(hex.toUpperCase())).toBe(hex);
  expect(normalizePin(Buffer.from(hex, 'hex').toString('base64'))).toBe(hex);
  expect(() => normalizePin('abc')).toThrow(/SHA-256/);
});

test('pinned TLS, one session, FindHosts paged through ChunkAccessor, accessor released', async () => {
  const c = client();
  const before = emu.calls.length;
  const hosts = await c.findHosts('', HOST_FIELDS, { chunkSize: 2 });
  expect(hosts.map((h) => h['KLHST_WKS_DN']).sort()).toEqual(['OLD-LAPTOP', 'SRV-FILE01', 'WS-0142', 'WS-0177', 'lnx-web01']);
  const ws = hosts.find((h) => h['KLHST_WKS_DN'] === 'WS-0142')!;
  expect(decodeIpLong(ws['KLHST_WKS_IP_LONG'])).toBe('10.0.12.42');
  expect(ws['name']).toBe('Workstations');
  expect(typeof ws['KLHST_WKS_LAST_VISIBLE']).toBe('string');
  const calls = emu.calls.slice(before).map((x) => x.method);
  expect(calls).toEqual([
    'Session.StartSession',
    'HostGroup.FindHosts',
    'ChunkAccessor.GetItemsCount',
    'ChunkAccessor.GetItemsChunk',
    'ChunkAccessor.GetItemsChunk',
    'ChunkAccessor.GetItemsChunk',
    'ChunkAccessor.Release',
  ]);
  // Every method call after the login carried the session token, not the password.
  for (const r of emu.calls.slice(before + 1)) {
    expect(r.auth).toBe('session');
    expect(r.headers['authorization']).toBeUndefined();
  }
  expect(emu.calls[before]!.headers['authorization']).toMatch(/^KSCBasic user="a3VtYQ==", pass="[^"]+", internal="1"$/);
  expect(emu.openAccessors()).toBe(0);
  expect(c.stats.logins).toBe(1);
});

test('filters are sent as written and select on the server', async () => {
  const c = client();
  const hosts = await c.findHosts('(&(KLHST_WKS_GROUPID_GP = 0)(KLHST_WKS_STATUS&4<>0)(KLHST_WKS_DN = "WS-*"))', ['KLHST_WKS_DN']);
  expect(hosts.map((h) => h['KLHST_WKS_DN']).sort()).toEqual(['WS-0142', 'WS-0177']);
  await expect(c.findHosts('(NO_SUCH_ATTR = 1)', ['KLHST_WKS_DN'])).rejects.toBeInstanceOf(KscPxgError);
});

test('calls are serialized: one request at a time on one connection', async () => {
  const c = client();
  emu.faults.delayMs = 15;
  emu.maxConcurrent = 0;
  const conns = emu.connections;
  const res = await Promise.all(Array.from({ length: 8 }, () => c.call('Session.Ping')));
  expect(res).toHaveLength(8);
  expect(emu.maxConcurrent).toBe(1);
  expect(emu.connections - conns).toBe(1);
});

test('the default verifies the certificate: a self-signed server without pin or CA is refused', async () => {
  const c = client({ tls: {} });
  const before = emu.calls.length;
  const e = await c.call('Session.Ping').catch((x: unknown) => x);
  expect(e).toBeInstanceOf(KscTlsError);
  expect((e as Error).message).toMatch(/certificate not trusted/);
  expect(emu.calls.length).toBe(before);
});

test('a wrong pin is refused before any byte of the request (and so the password) is sent', async () => {
  const other = makeSelfSignedCert('other-server');
  const c = client({ tls: { pinSha256: other.fingerprint256 } });
  const before = emu.calls.length;
  const e = await c.call('Session.Ping').catch((x: unknown) => x);
  expect(e).toBeInstanceOf(KscTlsError);
  expect((e as Error).message).toMatch(/does not match the pinned one/);
  expect(emu.calls.length).toBe(before);
});

test('CA mode: the server certificate as CA works; another CA is refused', async () => {
  const ok = client({ tls: { ca: emu.cert.cert } });
  await ok.call('Session.Ping');
  const bad = client({ tls: { ca: makeSelfSignedCert('other-server').cert } });
  await expect(bad.call('Session.Ping')).rejects.toBeInstanceOf(KscTlsError);
});

test('insecure mode works and says so loudly in the log', async () => {
  const lines: string[] = [];
  const c = client({ tls: { insecure: true }, logger: memLogger(lines) });
  await c.call('Session.Ping');
  expect(lines.filter((l) => l.includes('"level":"warn"') && /verif/i.test(l)).length).toBeGreaterThanOrEqual(2);
});

test('wrong credentials: KscAuthError (401), and no trace of the password', async () => {
  const lines: string[] = [];
  const wrong = 'Wr0ng-Passw0rd-xyz';
  const c = client({ credentials: { user: USER, password: wrong }, logger: memLogger(lines) });
  const e = await c.call('Session.Ping').catch((x: unknown) => x);
  expect(e).toBeInstanceOf(KscAuthError);
  expect((e as KscAuthError).status).toBe(401);
  expect((e as Error).message).toMatch(/login refused/);
  // A second call does not try the bad password again (account lockout): same error, no request.
  const before = emu.calls.length;
  await expect(c.call('Session.Ping')).rejects.toBe(e);
  expect(emu.calls.length).toBe(before);
  expect(lines.some((l) => l.includes('KSC login refused'))).toBe(true);
  const all = JSON.stringify([String(e), (e as Error).stack, (e as KscError).toJSON(), lines]);
  expect(all).not.toContain(wrong);
  expect(all).not.toContain(Buffer.from(wrong).toString('base64'));
});

test('an expired session is renewed once, transparently', async () => {
  const c = client();
  await c.call('Session.Ping');
  emu.expireSessions();
  const before = emu.calls.length;
  await c.call('Session.Ping');
  expect(emu.calls.slice(before).map((x) => [x.method, x.status])).toEqual([
    ['Session.Ping', 403],
    ['Session.StartSession', 200],
    ['Session.Ping', 200],
  ]);
  expect(c.stats.relogins).toBe(1);
});

test('idle session timeout on the server is handled the same way', async () => {
  const c = client();
  await c.call('Session.Ping');
  emu.ageSessions(emu.sessionIdleMs + 1000);
  const before = emu.calls.length;
  await c.call('Session.Ping');
  expect(emu.calls.slice(before).map((x) => x.status)).toEqual([403, 200, 200]);
  expect(c.stats.relogins).toBe(1);
});

test('403 even after a fresh login: KscSessionError, no loop', async () => {
  const c = client();
  await c.call('Session.Ping');
  emu.faults.failNext(403, { method: 'HostGroup.GetStaticInfo', times: 2, body: '' });
  const e = await c.call('HostGroup.GetStaticInfo').catch((x: unknown) => x);
  expect(e).toBeInstanceOf(KscSessionError);
  expect(c.stats.relogins).toBe(1);
});

test('5xx answers are retried with backoff, then succeed', async () => {
  const c = client();
  await c.call('Session.Ping');
  emu.faults.failNext(503, { method: 'Session.Ping', times: 2 });
  await c.call('Session.Ping');
  expect(c.stats.retries).toBe(2);
});

test('5xx beyond the retry budget: KscHttpError with the status', async () => {
  const c = client();
  emu.faults.failNext(500, { method: 'Session.Ping', times: 5 });
  const e = await c.call('Session.Ping').catch((x: unknown) => x);
  expect(e).toBeInstanceOf(KscHttpError);
  expect((e as KscHttpError).status).toBe(500);
  expect((e as Error).message).toContain('Session.Ping');
  expect(c.stats.retries).toBe(2);
});

test('a slow answer times out (KscTimeoutError); the next call works on a new connection', async () => {
  const c = client({ timeoutMs: 100, retries: 0 });
  await c.call('Session.Ping');
  emu.faults.methodDelayMs['Session.Ping'] = 400;
  const e = await c.call('Session.Ping').catch((x: unknown) => x);
  expect(e).toBeInstanceOf(KscTimeoutError);
  expect((e as Error).message).toMatch(/no answer within 100 ms/);
  emu.faults.methodDelayMs = {};
  await c.call('Session.Ping');
});

test('timeouts are retried for idempotent calls', async () => {
  const c = client({ timeoutMs: 150, retries: 5 });
  await c.call('Session.Ping');
  emu.faults.methodDelayMs['HostGroup.GetStaticInfo'] = 400;
  setTimeout(() => (emu.faults.methodDelayMs = {}), 200);
  const r = await c.call('HostGroup.GetStaticInfo');
  expect(r['PxgRetVal']).toBeTruthy();
  expect(c.stats.retries).toBeGreaterThanOrEqual(1);
});

test('a dropped connection (no answer) is a transport error, retried for idempotent calls', async () => {
  const c = client();
  await c.call('Session.Ping');
  emu.faults.hangUpNext({ method: 'HostGroup.GetStaticInfo' });
  await c.call('HostGroup.GetStaticInfo');
  expect(c.stats.retries).toBe(1);
  const c0 = client({ retries: 0 });
  await c0.call('Session.Ping');
  emu.faults.hangUpNext({ method: 'HostGroup.GetStaticInfo' });
  await expect(c0.call('HostGroup.GetStaticInfo')).rejects.toBeInstanceOf(KscTransportError);
});

test('an answer cut in the middle is a transport error, retried for idempotent calls', async () => {
  const c = client();
  await c.call('Session.Ping');
  emu.faults.breakNext({ method: 'HostGroup.GetStaticInfo' });
  expect((await c.call('HostGroup.GetStaticInfo'))['PxgRetVal']).toBeTruthy();
  expect(c.stats.retries).toBe(1);
  const c0 = client({ retries: 0 });
  await c0.call('Session.Ping');
  emu.faults.breakNext({ method: 'HostGroup.GetStaticInfo' });
  const e = await c0.call('HostGroup.GetStaticInfo').catch((x: unknown) => x);
  expect(e).toBeInstanceOf(KscTransportError);
  expect((e as Error).message).toMatch(/closed before the whole answer arrived/);
});

test('RunTask is not repeated after a 5xx or a lost answer (no double start)', async () => {
  const c = client();
  await c.call('Session.Ping');
  const runs = emu.runs.length;
  emu.faults.failNext(500, { method: 'Tasks.RunTask' });
  await expect(c.runTask('21')).rejects.toBeInstanceOf(KscHttpError);
  emu.faults.hangUpNext({ method: 'Tasks.RunTask' });
  await expect(c.runTask('21')).rejects.toBeInstanceOf(KscTransportError);
  expect(emu.calls.filter((x) => x.method === 'Tasks.RunTask').length).toBe(2);
  expect(emu.runs.length).toBe(runs);
});

test('a connection refused before sending is retried even for RunTask, then reported', async () => {
  const c = new KscClient({ url: '127.0.0.1:1', credentials: { user: USER, password: PASSWORD }, tls: { pinSha256: emu.cert.fingerprint256 }, retries: 1, backoffMs: 5 });
  clients.push(c);
  const e = await c.runTask('21').catch((x: unknown) => x);
  expect(e).toBeInstanceOf(KscTransportError);
  expect((e as KscTransportError).errno).toBe('ECONNREFUSED');
  expect((e as Error).message).toContain('KSC 127.0.0.1:1');
  expect(c.stats.retries).toBe(1);
});

test('PxgError answers become KscPxgError with code and method, never retried', async () => {
  const c = client();
  await c.call('Session.Ping');
  const before = emu.calls.length;
  const e = await c.call('ChunkAccessor.GetItemsCount', { strAccessor: 'nope' }).catch((x: unknown) => x);
  expect(e).toBeInstanceOf(KscPxgError);
  const p = e as KscPxgError;
  expect(p.pxgCode).toBe(1168);
  expect(p.method).toBe('ChunkAccessor.GetItemsCount');
  expect(p.message).toMatch(/PxgError 1168 \(KLSTD\): Object not found/);
  expect(emu.calls.length - before).toBe(1);
  await expect(c.call('Tasks.RunTask', { strTask: '999' })).rejects.toMatchObject({ code: 'ksc_pxg_error' });
  await expect(c.call('No.SuchMethod')).rejects.toMatchObject({ pxgCode: 1184 });
});

test('gzip answers are decompressed; plain answers too', async () => {
  const c = client();
  await c.call('Session.Ping');
  const last = emu.calls.at(-1)!;
  expect(String(last.headers['accept-encoding'])).toContain('gzip');
  const withGzip = await c.findHosts('', ['KLHST_WKS_DN']);
  emu.gzip = false;
  try {
    const plain = await c.findHosts('', ['KLHST_WKS_DN']);
    expect(plain).toEqual(withGzip);
  } finally {
    emu.gzip = true;
  }
});

test('connection-bound login mode: /login once, calls without auth, re-login after the connection drops', async () => {
  const c = client({ auth: 'login' });
  await c.ping();
  await c.call('HostGroup.GetStaticInfo');
  const mine = emu.calls.filter((x) => x.method === 'login' || x.auth === 'connection');
  expect(mine.at(0)?.method).toBe('login');
  expect(mine.slice(1).every((x) => x.auth === 'connection' && x.headers['authorization'] === undefined)).toBe(true);
  emu.dropConnections();
  await new Promise((r) => setTimeout(r, 20));
  await c.call('HostGroup.GetStaticInfo');
  expect(c.stats.logins).toBe(2);
});

test('tasks iterator, GetAllTasksOfHost, GetHostProducts, RunTask and statistics', async () => {
  const c = client();
  const tasks = await c.listTasks();
  expect(tasks.map((t) => t.displayName)).toContain('KUMA Update (Windows)');
  expect(tasks.find((t) => t.id === '31')).toMatchObject({ product: 'KESL', version: '11.4.0.0', groupId: 3, taskType: 'ODS' });
  expect(tasks.find((t) => t.id === '41')?.groupId).toBeUndefined();
  const ids = await c.getAllTasksOfHost('CORP', '7d1e0a51-93c6-4a2b-9d0e-2b9c5d3e0177');
  expect(ids.sort()).toEqual(['17', '21', '22', '41', '50']);
  const prods = await c.getHostProducts('c2b22f83-307c-45aa-8533-5ffffbcc6bf1');
  expect(prods).toContainEqual({ product: 'KES', version: '11.0.0.0', displayName: 'Kaspersky Endpoint Security for Windows', build: '11.11.0.452' });
  await c.runTask('40');
  await emu.flushEvents();
  const st = await c.getTaskStatistics('40');
  expect(st['4']).toBe(1);
  expect(st['GNRL_COMPLETED_PERCENT']).toBe(100);
});

test('EndSession on close: the token is refused afterwards', async () => {
  const c = new KscClient({ url: emu.url, credentials: { user: USER, password: PASSWORD }, tls: { pinSha256: emu.cert.fingerprint256 } });
  await c.call('Session.Ping');
  const tokenCall = emu.calls.at(-1)!;
  const token = String(tokenCall.headers['x-ksc-session']);
  await c.close();
  expect(emu.calls.at(-1)!.method).toBe('Session.EndSession');
  const c2 = client();
  // Use the old token directly through a raw request: the emulator must answer 403.
  const https = await import('node:https');
  const status = await new Promise<number>((resolve, reject) => {
    const r = https.request({ host: '127.0.0.1', port: emu.port, method: 'POST', path: '/api/v1.0/Session.Ping', rejectUnauthorized: false, headers: { 'X-KSC-Session': token, 'Content-Type': 'application/json' } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    r.on('error', reject);
    r.end('{}');
  });
  expect(status).toBe(403);
  await c2.call('Session.Ping');
});

test('an answer that unpacks past the answer limit (a gzip or deflate bomb) is a protocol error of that call, not a crash', async () => {
  const { createServer } = await import('node:https');
  const zlib = await import('node:zlib');
  const cert = makeSelfSignedCert('ksc-bomb');
  // 4 MiB of JSON that compresses to a few KiB; the client allows 1 MiB.
  const big = Buffer.concat([Buffer.from('{"PxgRetVal":"'), Buffer.alloc(4 * 1024 * 1024, 97), Buffer.from('"}')]);
  const bodies: Record<string, Buffer> = { gzip: zlib.gzipSync(big), deflate: zlib.deflateSync(big) };
  let encoding = 'gzip';
  const server = createServer({ key: cert.key, cert: cert.cert }, (req, res) => {
    req.resume();
    req.on('end', () => {
      if (req.url === '/api/v1.0/login') {
        res.writeHead(200, { 'Content-Type': 'application/json', 'X-KSC-Session': 'nsession-bomb' });
        res.end('{}');
        return;
      }
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Encoding': encoding });
      res.end(bodies[encoding]);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  try {
    const port = (server.address() as { port: number }).port;
    const c = client({ url: `127.0.0.1:${port}`, tls: { pinSha256: cert.fingerprint256 }, retries: 0, maxAnswerBytes: 1024 * 1024 });
    for (encoding of ['gzip', 'deflate']) {
      const err = await c.call('HostGroup.GetStaticInfo').then(
        () => null,
        (e: unknown) => e,
      );
      expect(err, encoding).toBeInstanceOf(KscError);
      expect((err as KscError).code, encoding).toBe('ksc_protocol_error');
      expect((err as Error).message, encoding).toMatch(/cannot read a (gzip|deflate) answer/);
    }
  } finally {
    await new Promise<void>((r) => server.close(() => r()));
  }
});
