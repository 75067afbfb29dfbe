/**
 * KSC client retries against the emulator: the login is retried like any safe call, and a
 * call that creates server state (tasks iterator, chunk accessor) is not repeated after a
 * timeout; what KSC created anyway is released when its late answer arrives. A call queued
 * behind such a call meanwhile times out before it is sent, and says so.
 */
import { afterAll, afterEach, beforeAll, expect, test } from 'vitest';
import { KscClient, type KscClientOptions } from '../../src/ksc/client.js';
import { KscTimeoutError, KscTransportError } from '../../src/ksc/errors.js';
import { startKscEmulator, type KscEmulator } from '../helpers/ksc-emulator/index.js';
import { waitFor } from '../helpers/ksc-emulator/testkit.js';

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
    credentials: { user: 'kuma', password: 'S3cret-KSC-pass!w0rd' },
    tls: { pinSha256: emu.cert.fingerprint256 },
    timeoutMs: 2000,
    retries: 3,
    backoffMs: 10,
    maxBackoffMs: 40,
    ...o,
  });
  clients.push(c);
  return c;
}

const count = (method: string): number => emu.methods().filter((m) => m === method).length;

test('one 503 on Session.StartSession is retried: the call succeeds', async () => {
  const before = count('Session.StartSession');
  emu.faults.failNext(503, { method: 'Session.StartSession', times: 1 });
  const c = client();
  const tasks = await c.listTasks();
  expect(tasks.length).toBeGreaterThan(0);
  expect(count('Session.StartSession') - before).toBe(2);
  expect(c.stats.retries).toBe(1);
});

test('a timed-out ResetTasksIterator is sent once, and the iterator KSC made is released', async () => {
  const before = count('Tasks.ResetTasksIterator');
  const c = client({ timeoutMs: 500 });
  await c.ping();
  emu.faults.methodDelayMs['Tasks.ResetTasksIterator'] = 800;
  await expect(c.listTasks()).rejects.toBeInstanceOf(KscTimeoutError);
  expect(count('Tasks.ResetTasksIterator') - before).toBe(1);
  await waitFor(() => c.stats.lateReleases === 1, 5000, 'the late answer');
  await waitFor(() => emu.openTaskIterators() === 0, 5000, 'the iterator released');
});

test('a timed-out FindHosts is sent once, and the accessor KSC made is released', async () => {
  const before = count('HostGroup.FindHosts');
  const c = client({ timeoutMs: 500 });
  await c.ping();
  emu.faults.methodDelayMs['HostGroup.FindHosts'] = 800;
  await expect(c.findHosts('', ['KLHST_WKS_HOSTNAME'])).rejects.toBeInstanceOf(KscTimeoutError);
  expect(count('HostGroup.FindHosts') - before).toBe(1);
  await waitFor(() => emu.openAccessors() === 0 && c.stats.lateReleases === 1, 5000, 'the accessor released');
});

test('a timed-out SrvView.ResetIterator is sent once, and the iterator KSC made is released', async () => {
  const before = count('SrvView.ResetIterator');
  const c = client({ timeoutMs: 500 });
  await c.ping();
  emu.faults.methodDelayMs['SrvView.ResetIterator'] = 800;
  const read = async (): Promise<number> => {
    let n = 0;
    for await (const page of c.srvViewPaged('v_vapm_vulnerability', '', ['KLHST_WKS_HOSTNAME', 'VulnerabilityId'])) n += page.length;
    return n;
  };
  await expect(read()).rejects.toBeInstanceOf(KscTimeoutError);
  expect(count('SrvView.ResetIterator') - before).toBe(1);
  await waitFor(() => emu.openViewIterators() === 0 && c.stats.lateReleases === 1, 5000, 'the view iterator released');
});

test('a 503 on ResetTasksIterator (KSC made nothing) is retried', async () => {
  const before = count('Tasks.ResetTasksIterator');
  emu.faults.failNext(503, { method: 'Tasks.ResetTasksIterator', times: 1 });
  const c = client();
  expect((await c.listTasks()).length).toBeGreaterThan(0);
  expect(count('Tasks.ResetTasksIterator') - before).toBe(2);
  expect(emu.openTaskIterators()).toBe(0);
});

test('a RunTask queued behind a timed-out ResetTasksIterator times out unsent: reported as not sent, and it never reaches KSC', async () => {
  const c = client({ timeoutMs: 300, retries: 1 });
  await c.ping();
  const runTasks = count('Tasks.RunTask');
  // KSC holds the iterator call: the client times out and keeps the socket for the late
  // answer (to release the iterator KSC makes), so the RunTask queued behind it waits.
  const releaseIterator = emu.faults.holdNext({ method: 'Tasks.ResetTasksIterator' });
  const list = c.listTasks().catch((e: unknown) => e);
  const run = c.call('Tasks.RunTask', { strTask: '21' }, { idempotent: false }).catch((e: unknown) => e);
  expect(await list).toBeInstanceOf(KscTimeoutError);
  const e = await run;
  expect(e).toBeInstanceOf(KscTransportError);
  expect(e).toMatchObject({ code: 'ksc_transport_error', method: 'Tasks.RunTask', beforeSend: true });
  expect((e as Error).message).toMatch(/Tasks\.RunTask: .*the request was not sent: no connection to KSC was free within 300 ms/);
  // Never sent, so it was safe to repeat: the retry timed out unsent as well.
  expect(c.stats.retries).toBe(1);
  releaseIterator();
  await waitFor(() => c.stats.lateReleases === 1 && emu.openTaskIterators() === 0, 5000, 'the iterator released');
  expect(count('Tasks.RunTask')).toBe(runTasks);
  // The socket is free again: the next call goes out and is answered.
  await c.call('Tasks.RunTask', { strTask: '21' }, { idempotent: false });
  expect(count('Tasks.RunTask')).toBe(runTasks + 1);
});
