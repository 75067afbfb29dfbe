import { expect, test } from 'vitest';
import pino from 'pino';
import { Writable } from 'node:stream';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { KscIntegration, KscClient, assetIdFor } from '../../src/ksc/index.js';
import { decodeFrame } from '../../src/codecs/decode.js';
import { startKscEmulator, defaultModel } from '../helpers/ksc-emulator/index.js';
import { LineCollector, tempDir, waitFor } from '../helpers/ksc-emulator/testkit.js';

/**
 * The check: run everything the KSC code does (connections, sync, tasks, failures,
 * events) with a real pino logger at debug level, then grep the log, every value returned,
 * every error, and the SQLite files for the password, its base64 form and the user name.
 */
test('the KSC password appears nowhere: logs, returned views, errors, state store', async () => {
  const PASSWORD = 'Gr3p-Me-If-You-Can!42';
  const USER = 'kuma-redaction-user';
  const WRONG = 'Wr0ng-But-Still-Secret#7';
  const model = defaultModel();
  model.users.push({ user: USER, password: PASSWORD }, { user: 'kuma-wrong', password: 'other-pass-zzz' });
  const collector = await new LineCollector().listen();
  const emu = await startKscEmulator({ model, taskEvents: { target: { host: '127.0.0.1', port: collector.port }, runningAfterMs: 5, finishAfterMs: 10 } });
  const t = tempDir();
  const logText: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      logText.push(chunk.toString());
      cb();
    },
  });
  const logger = pino({ level: 'debug' }, sink);
  const outputs: unknown[] = [];
  const errors: unknown[] = [];
  const keep = <T>(v: T): T => {
    outputs.push(v);
    return v;
  };
  const k = KscIntegration.open({ stateDir: t.dir, env: {}, logger, client: { retries: 1, backoffMs: 5 } });
  try {
    collector.onLine((l) => {
      const r = decodeFrame(Buffer.from(l), false, Date.now());
      if (r.ok) keep(k.applyTaskStateEvent(r.event));
    });
    const conn = keep(k.addConnection({ name: 'main', url: emu.url, tls: { pinSha256: emu.cert.fingerprint256 }, secret: { user: USER, password: PASSWORD } }));
    keep(k.listConnections());
    keep(k.getConnection('main'));
    keep(await k.testConnection('main'));
    keep(await k.syncAssets());
    keep(k.listAssets({ includeArchived: true }));
    keep(await k.listTasks('main', { refresh: true }));
    keep(await k.startTask({ assetId: assetIdFor(conn.id, 'c2b22f83-307c-45aa-8533-5ffffbcc6bf1'), tasks: ['KUMA Update (Windows)'] }));
    await waitFor(() => k.taskStatus()[0]?.state === 'completed', 30_000, 'completion');
    keep(k.taskStatus());
    // Failures: a 5xx with retries, an expired session, a refused start, then wrong credentials.
    emu.faults.failNext(503, { method: 'HostGroup.FindHosts' });
    emu.expireSessions();
    keep(await k.syncAssets());
    await k.startTask({ assetId: assetIdFor(conn.id, 'c2b22f83-307c-45aa-8533-5ffffbcc6bf1'), tasks: ['KUMA Update (Windows)'], cooldownMs: 3_600_000 }).catch((e: unknown) => errors.push(e));
    k.editConnection('main', { secret: { user: USER, password: WRONG } });
    keep(await k.testConnection('main'));
    keep(await k.syncAssets());
    await k.startTask({ assetId: assetIdFor(conn.id, '7d1e0a51-93c6-4a2b-9d0e-2b9c5d3e0177'), tasks: ['KUMA Scan selection'] }).catch((e: unknown) => errors.push(e));
    // A client used directly, with the wrong password, in insecure mode (warns), and failing TLS.
    const c = new KscClient({ url: emu.url, credentials: { user: USER, password: WRONG }, tls: { insecure: true }, logger });
    await c.call('Session.Ping').catch((e: unknown) => errors.push(e));
    await c.close();
    const c2 = new KscClient({ url: emu.url, credentials: { user: USER, password: PASSWORD }, tls: {}, logger });
    await c2.call('Session.Ping').catch((e: unknown) => errors.push(e));
    await c2.close();
  } finally {
    await k.close();
    await emu.close();
    await collector.close();
  }
  expect(errors.length).toBe(4);
  expect(logText.length).toBeGreaterThan(10);

  const files = readdirSync(t.dir)
    .filter((f) => f.startsWith('ksc.sqlite'))
    .map((f) => readFileSync(join(t.dir, f)).toString('latin1'));
  const haystack = [
    logText.join(''),
    JSON.stringify(outputs),
    ...errors.map((e) => `${String(e)}\n${(e as Error).stack}\n${JSON.stringify(e)}\n${JSON.stringify((e as { toJSON?: () => unknown }).toJSON?.())}`),
    ...files,
  ].join('\n');
  for (const secret of [PASSWORD, WRONG]) {
    expect(haystack).not.toContain(secret);
    expect(haystack).not.toContain(Buffer.from(secret).toString('base64'));
  }
  expect(haystack).not.toContain(USER);
  // The emulator saw the password (so it was really used), and it is only in the secrets file, mode 0600.
  expect(readFileSync(join(t.dir, 'ksc-secrets.json'), 'utf8')).toContain(WRONG);
  expect(statSync(join(t.dir, 'ksc-secrets.json')).mode & 0o777).toBe(0o600);
  expect(logText.join('')).toContain('login refused');
  expect(logText.join('')).toContain('WITHOUT verifying');
  t.cleanup();
});

test('a registered secret across the 200th character of an HTTP error body, or in a PxgError message, is redacted whole (message and JSON view)', async () => {
  const { registerSecret } = await import('../../src/ksc/secrets.js');
  const { KscHttpError, KscPxgError } = await import('../../src/ksc/errors.js');
  const secret = 'Kp-SECRET-pass-9876-xyz';
  registerSecret(secret);
  const http = new KscHttpError(502, `${'x'.repeat(188)} ${secret}`, { server: 'ksc:13299', method: 'Session.Ping' });
  expect(http.message).not.toContain(secret.slice(0, 6));
  const pxg = new KscPxgError({ code: 1, message: `login as kuma with ${secret} refused` }, 500, {});
  expect(pxg.message).not.toContain(secret);
  expect(JSON.stringify(pxg)).not.toContain(secret);
  expect(JSON.stringify(pxg)).toContain('[REDACTED]');
});
