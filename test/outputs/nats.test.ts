/**
 * The nats output against a real nats-server 2.9 (Debian) with JetStream, started here in a
 * temp folder on a free 127.0.0.1 port: PubAck before delivered, Nats-Msg-Id = event id and
 * the server's dedup, stream creation with limits, server down at start and restarted
 * mid-stream, wrong credentials, TLS with a wrong CA, a record over max_payload, a subject
 * the user may not publish to, a record over a `discard: new` stream's max_bytes, retries while
 * the server is down.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, expect, test } from 'vitest';
import { DiscardPolicy, connect, type NatsConnection } from 'nats';
import { loadFields } from '../../src/config/load.js';
import { NATS_FIELDS } from '../../src/outputs/nats/config.js';
import { NatsOutput, PERMISSION_RETRY_MS } from '../../src/outputs/nats/nats.js';
import type { Batch, SendResult } from '../../src/outputs/types.js';
import { natsServer, stopAllNats, type NatsServer } from '../helpers/nats-server.js';
import { makePki } from '../helpers/pki.js';
import { tempDir, waitFor } from '../helpers/daemon.js';
import { freePort } from '../helpers/child.js';

const outputs: NatsOutput[] = [];
const clients: NatsConnection[] = [];
afterEach(async () => {
  await Promise.all(outputs.splice(0).map((o) => o.close()));
  await Promise.all(clients.splice(0).map((c) => c.close()));
});
afterAll(stopAllNats);

function output(raw: Record<string, unknown>): NatsOutput {
  const o = new NatsOutput('n', { ...loadFields(NATS_FIELDS, raw), encoding: { codec: 'native' } } as never);
  outputs.push(o);
  return o;
}

const rec = (id: string, extra = '') => JSON.stringify({ schema: 2, id, message: `event ${id}${extra}` });
const batch = (records: string[]): Batch => ({ records });

async function client(s: NatsServer, opts: Record<string, unknown> = {}): Promise<NatsConnection> {
  const c = await connect({ servers: s.url, ...opts });
  clients.push(c);
  return c;
}

/** Every message of `stream`: its data and Nats-Msg-Id. */
async function streamMessages(c: NatsConnection, stream: string): Promise<{ id: string; data: string }[]> {
  const jsm = await c.jetstreamManager({ timeout: 30_000 });
  const info = await jsm.streams.info(stream);
  const out: { id: string; data: string }[] = [];
  for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
    const m = await jsm.streams.getMessage(stream, { seq });
    out.push({ id: m.header.get('Nats-Msg-Id'), data: new TextDecoder().decode(m.data) });
  }
  return out;
}

/** Sends until the runner would be done: the outcome of each attempt, the ones to retry sent again. */
async function sendUntilDone(o: NatsOutput, records: string[], attempts = 200): Promise<SendResult[]> {
  const seen: SendResult[] = [];
  let rest = records;
  for (let i = 0; i < attempts && rest.length > 0; i++) {
    const r = await o.send(batch(rest));
    seen.push(r);
    if (r.status === 'delivered' || r.status === 'rejected') return seen;
    if (r.status === 'partial') rest = (r.retry ?? []).map((k) => rest[k]!);
    if (rest.length > 0) await new Promise((res) => setTimeout(res, 100));
  }
  return seen;
}

test('publishes each event with its id as Nats-Msg-Id, creates the stream with its limits, and a resent batch is deduplicated by the server', async () => {
  const s = await natsServer();
  const o = output({ servers: [s.url], subject: 'cefd.events', stream: { create: true, name: 'CEFD', max_msgs: 100000, max_age: '1h', duplicate_window: '5m' } });
  await o.start();
  const records = Array.from({ length: 500 }, (_, i) => rec(`boot-${i}`));
  expect(await o.send(batch(records))).toEqual({ status: 'delivered' });
  // The same batch again (a retry after a lost PubAck, or a replay from the disk buffer).
  expect(await o.send(batch(records))).toEqual({ status: 'delivered' });
  const c = await client(s);
  const info = await (await c.jetstreamManager({ timeout: 30_000 })).streams.info('CEFD');
  expect(info.config.subjects).toEqual(['cefd.events']);
  expect(info.config.max_msgs).toBe(100000);
  expect(info.config.max_age).toBe(3600 * 1e9);
  expect(info.config.duplicate_window).toBe(300 * 1e9);
  const msgs = await streamMessages(c, 'CEFD');
  expect(msgs.map((m) => m.id)).toEqual(records.map((_, i) => `boot-${i}`));
  expect(msgs.map((m) => m.data)).toEqual(records);
});

test('server down at start: start() does not fail, batches are retried with a clear error, and delivered once the server is up', async () => {
  const s = await natsServer();
  await s.stop();
  const o = output({ servers: [s.url], subject: 'cefd.down', reconnect_wait: '50ms', stream: { create: true, name: 'DOWN' } });
  await o.start();
  const first = await o.send(batch([rec('a'), rec('b')]));
  expect(first.status).toBe('retry');
  expect((first as { error: string }).error).toMatch(/not connected.*CONNECTION_REFUSED/);
  await s.start();
  const results = await sendUntilDone(o, [rec('a'), rec('b')]);
  expect(results.at(-1)).toEqual({ status: 'delivered' });
  const msgs = await streamMessages(await client(s), 'DOWN');
  expect(msgs.map((m) => m.id)).toEqual(['a', 'b']);
});

test('server restarted mid-stream: nothing lost, nothing duplicated (resent events fall in the duplicate window)', async () => {
  const s = await natsServer();
  const o = output({ servers: [s.url], subject: 'cefd.restart', reconnect_wait: '50ms', ack_timeout: '10s', stream: { create: true, name: 'RESTART' } });
  await o.start();
  const all = Array.from({ length: 3000 }, (_, i) => rec(`r-${i}`));
  let restarted = false;
  // Batches of 100 as the runner sends them; the server is killed and restarted after the
  // tenth batch's publishes went out, so some of that batch's PubAcks may never arrive.
  for (let i = 0; i < all.length; i += 100) {
    const chunk = all.slice(i, i + 100);
    const pending = sendUntilDone(o, chunk);
    if (i === 1000 && !restarted) {
      restarted = true;
      await s.stop('SIGKILL');
      await s.start();
    }
    const r = await pending;
    expect(r.at(-1)).toEqual({ status: 'delivered' });
    // Every batch around the restart is resent whole once more, as the disk buffer does after a crash.
    if (i >= 900 && i <= 1100) expect(await o.send(batch(chunk))).toEqual({ status: 'delivered' });
  }
  expect(restarted).toBe(true);
  const msgs = await streamMessages(await client(s), 'RESTART');
  expect(msgs.length).toBe(3000);
  expect(new Set(msgs.map((m) => m.id)).size).toBe(3000);
});

test('wrong credentials: every batch is retried with an error that names the credentials, and the right token delivers', async () => {
  const s = await natsServer('authorization { token: "s3cret-token" }');
  const dir = tempDir();
  writeFileSync(join(dir, 'bad'), 'wrong-token\n');
  writeFileSync(join(dir, 'good'), 's3cret-token\n');
  const bad = output({ servers: [s.url], subject: 'cefd.auth', token_file: join(dir, 'bad'), reconnect_wait: '50ms', stream: { create: true, name: 'AUTH' } });
  await bad.start();
  const r = await bad.send(batch([rec('x')]));
  expect(r.status).toBe('retry');
  expect((r as { error: string }).error).toMatch(/Authorization Violation.*refused the credentials/);
  const good = output({ servers: [s.url], subject: 'cefd.auth', token_file: join(dir, 'good'), stream: { create: true, name: 'AUTH' } });
  await good.start();
  expect(await good.send(batch([rec('x')]))).toEqual({ status: 'delivered' });
});

test('TLS: a server certificate from another CA is refused with a clear error; the right CA delivers', async () => {
  const pki = makePki();
  const s = await natsServer(`tls { cert_file: "${join(pki.dir, 'server.crt')}"\n key_file: "${join(pki.dir, 'server.key')}" }`);
  const wrong = output({ servers: [`tls://127.0.0.1:${s.port}`], subject: 'cefd.tls', ca_file: join(pki.dir, 'rogue-ca.crt'), reconnect_wait: '50ms', stream: { create: true, name: 'TLS' } });
  await wrong.start();
  const r = await wrong.send(batch([rec('t')]));
  expect(r.status).toBe('retry');
  expect((r as { error: string }).error).toMatch(/certificate/i);
  const right = output({ servers: [`tls://127.0.0.1:${s.port}`], subject: 'cefd.tls', ca_file: join(pki.dir, 'ca.crt'), stream: { create: true, name: 'TLS' } });
  await right.start();
  expect(await right.send(batch([rec('t')]))).toEqual({ status: 'delivered' });
});

test('one event over the server\'s max_payload is rejected alone (dead letter), the others are stored', async () => {
  const s = await natsServer('max_payload: 2048');
  const o = output({ servers: [s.url], subject: 'cefd.big', stream: { create: true, name: 'BIG' } });
  await o.start();
  const records = [rec('ok-1'), rec('huge', 'x'.repeat(4000)), rec('ok-2')];
  const r = await o.send(batch(records));
  expect(r).toMatchObject({ status: 'partial', retry: [], rejected: [{ index: 1, reason: 'nats_max_payload' }] });
  const msgs = await streamMessages(await client(s), 'BIG');
  expect(msgs.map((m) => m.id)).toEqual(['ok-1', 'ok-2']);
});

test('an event over the stream\'s max_msg_size (PubAck 400/10054) is rejected alone with nats_refused, not retried forever', async () => {
  const s = await natsServer();
  const c = await client(s);
  await (await c.jetstreamManager({ timeout: 30_000 })).streams.add({ name: 'SMALL', subjects: ['cefd.small'], max_msg_size: 100 });
  const o = output({ servers: [s.url], subject: 'cefd.small', stream: { name: 'SMALL' } });
  await o.start();
  const big = rec('big', 'x'.repeat(300));
  const r = await o.send(batch([rec('ok-1'), big, rec('ok-2')]));
  expect(r).toMatchObject({ status: 'partial', retry: [], rejected: [{ index: 1, reason: 'nats_refused' }] });
  expect(r.status === 'partial' ? r.rejected?.[0]?.error : '').toMatch(/code 400, err_code 10054/);
  // Alone (as the runner sends a retried record): rejected, so the queue moves on.
  expect(await o.send(batch([big]))).toMatchObject({ status: 'rejected', reason: 'nats_refused' });
  expect((await streamMessages(c, 'SMALL')).map((m) => m.id)).toEqual(['ok-1', 'ok-2']);
});

test('a full stream with discard: new (PubAck 503/10077) is retried, and delivered once there is room', async () => {
  const s = await natsServer();
  const o = output({ servers: [s.url], subject: 'cefd.full', stream: { create: true, name: 'FULL', max_msgs: 1, discard: 'new' } });
  await o.start();
  expect(await o.send(batch([rec('f1')]))).toEqual({ status: 'delivered' });
  const r = await o.send(batch([rec('f2')]));
  expect(r.status).toBe('retry');
  expect((r as { error: string }).error).toMatch(/err_code 10077/);
  const c = await client(s);
  await (await c.jetstreamManager({ timeout: 30_000 })).streams.purge('FULL');
  expect(await o.send(batch([rec('f2')]))).toEqual({ status: 'delivered' });
  expect((await streamMessages(c, 'FULL')).map((m) => m.id)).toEqual(['f2']);
});

test('a subject the user may not publish to: retried no sooner than 10 s apart with nats_permission_denied in the error, never dead-lettered; other outputs on the connection unaffected', async () => {
  const s = await natsServer('authorization { users = [ { user: cefd, password: pw, permissions: { publish: { deny: [ "cefd.denied" ] } } } ] }');
  const dir = tempDir();
  writeFileSync(join(dir, 'pw'), 'pw\n');
  const denied = output({ servers: [s.url], subject: 'cefd.denied', user: 'cefd', password_file: join(dir, 'pw'), ack_timeout: '5s', stream: { create: true, name: 'DENIED' } });
  await denied.start();
  const r = await denied.send(batch([rec('d1'), rec('d2')]));
  expect(r).toMatchObject({ status: 'retry', retryAfterMs: PERMISSION_RETRY_MS });
  expect((r as { error: string }).error).toMatch(/nats_permission_denied: .*may not publish to cefd\.denied/);
  // With an event too large for the server among them: that one alone is dead-lettered,
  // the denied ones wait.
  const big = rec('d3', 'x'.repeat(2 << 20));
  const mixed = await denied.send(batch([rec('d1'), big]));
  expect(mixed).toMatchObject({ status: 'partial', retry: [0], rejected: [{ index: 1, reason: 'nats_max_payload' }], retryAfterMs: PERMISSION_RETRY_MS });
  const allowed = output({ servers: [s.url], subject: 'cefd.allowed', user: 'cefd', password_file: join(dir, 'pw'), stream: { create: true, name: 'ALLOWED' } });
  await allowed.start();
  expect(await allowed.send(batch([rec('a1')]))).toEqual({ status: 'delivered' });
});

test('no stream captures the subject: retried with an error that says so', async () => {
  const s = await natsServer();
  const o = output({ servers: [s.url], subject: 'nobody.listens', ack_timeout: '1s' });
  await o.start();
  await waitFor(async () => (await o.send(batch([rec('n')]))).status === 'retry', 30_000, 'a retry');
  const r = await o.send(batch([rec('n')]));
  expect((r as { error: string }).error).toMatch(/no JetStream stream answered on nobody\.listens/);
});

test('a server without JetStream: each batch retried with the reason, and the failed stream checks leave no subscriptions or status watchers behind', async () => {
  const http = await freePort();
  const s = await natsServer(`http: "127.0.0.1:${http}"`, { jetstream: false });
  const o = output({ servers: [s.url], subject: 'cefd.nojs', ack_timeout: '2s', stream: { create: true, name: 'NOJS' } });
  await o.start();
  const nc = (o as unknown as { link: { current: NatsConnection & { protocol: { listeners: unknown[] } } } }).link.current;
  // Subscriptions of client connections only (/connz): /subsz also counts the server's own
  // system-account subscriptions, which it may add at any time. The flush first: the client
  // sends SUB and UNSUB asynchronously, and a PING answered means the server has processed
  // everything cefd's connection sent before it (an UNSUB still in flight counted once: 2 > 1).
  const subs = async () => {
    await nc.flush();
    return ((await (await fetch(`http://127.0.0.1:${http}/connz?subs=1`)).json()) as { connections: { subscriptions: number }[] })
      .connections.reduce((n, c) => n + c.subscriptions, 0);
  };
  const watchers = () => nc.protocol.listeners.length;
  let first: { subs: number; watchers: number } | null = null;
  for (let i = 0; i < 20; i++) {
    const r = await o.send(batch([rec(`n${i}`)]));
    expect(r.status).toBe('retry');
    expect((r as { error: string }).error).toMatch(/JetStream is not available/);
    first ??= { subs: await subs(), watchers: watchers() };
  }
  expect(first!.subs).toBeGreaterThan(0); // cefd's connection is seen
  // One inbox subscription and one status watcher at most, however many checks failed.
  expect(await subs()).toBeLessThanOrEqual(first!.subs);
  expect(watchers()).toBeLessThanOrEqual(first!.watchers);
});

test('the examples of docs/outputs-nats.md and docs/cluster.md validate; a receiver with a non-frame output does not', async () => {
  const { readFileSync } = await import('node:fs');
  const { loadConfigText } = await import('../../src/config/load.js');
  const blocks = ['outputs-nats.md', 'cluster.md'].flatMap((f) => [...readFileSync(new URL(`../../docs/${f}`, import.meta.url), 'utf8').matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!));
  expect(blocks.length).toBe(5);
  for (const b of blocks) {
    // Each example holds either outputs or listeners; the rest is the defaults.
    const yaml = b.includes('outputs:') ? b : `${b}\noutputs: [ { name: f, type: file, path: ./x.ndjson } ]\n`;
    expect(() => loadConfigText(yaml, 'example.yaml', {})).not.toThrow();
  }
  const bad = 'mode: receiver\noutputs: [ { name: f, type: file, path: ./x.ndjson } ]\n';
  expect(() => loadConfigText(bad, 'c.yaml', {})).toThrow(/c\.yaml:2: outputs\[0\]\.type: mode: receiver publishes raw frames/);
});

test('an event larger than the stream\'s whole max_bytes (discard: new, PubAck 503/10077) is rejected alone with nats_refused; smaller ones refused by the full stream are retried', async () => {
  const s = await natsServer();
  const o = output({ servers: [s.url], subject: 'cefd.mb', stream: { create: true, name: 'MB', max_bytes: '4KiB', discard: 'new' } });
  await o.start();
  const big = rec('big', 'x'.repeat(8000));
  const r = await o.send(batch([rec('mb-0'), big, rec('mb-1')]));
  expect(r).toMatchObject({ status: 'partial', retry: [], rejected: [{ index: 1, reason: 'nats_refused' }] });
  expect(r.status === 'partial' ? r.rejected?.[0]?.error : '').toMatch(/err_code 10077.*max_bytes \(4096\)/);
  // Alone (as the runner sends a retried record): rejected, so the queue moves on.
  expect(await o.send(batch([big]))).toMatchObject({ status: 'rejected', reason: 'nats_refused' });
  // Fill the stream with small events: the first one it refuses is retried, not rejected,
  // and so is a larger one that would fit in the empty stream.
  let full: SendResult | null = null;
  let n = 2;
  for (; n < 200 && full === null; n++) {
    const res = await o.send(batch([rec(`mb-${n}`, 'y'.repeat(200))]));
    if (res.status !== 'delivered') full = res;
  }
  expect(full).toMatchObject({ status: 'retry' });
  expect((full as { error: string }).error).toMatch(/err_code 10077/);
  const medium = rec('medium', 'z'.repeat(3000));
  expect(await o.send(batch([medium]))).toMatchObject({ status: 'retry' });
  const c = await client(s);
  await (await c.jetstreamManager({ timeout: 30_000 })).streams.purge('MB');
  expect(await o.send(batch([medium]))).toEqual({ status: 'delivered' });
  expect((await streamMessages(c, 'MB')).map((m) => m.id)).toEqual(['medium']);
});

test('max_bytes of a stream the output does not create is read from the server, again before an event is rejected (a limit raised meanwhile makes it fit)', async () => {
  const s = await natsServer();
  const c = await client(s);
  const jsm = await c.jetstreamManager({ timeout: 30_000 });
  const cfg = { name: 'MB2', subjects: ['cefd.mb2'], max_bytes: 4096, discard: DiscardPolicy.New };
  await jsm.streams.add(cfg);
  // No stream name in the output's configuration: the PubAck names the stream.
  const o = output({ servers: [s.url], subject: 'cefd.mb2' });
  await o.start();
  const big = rec('big2', 'x'.repeat(8000));
  expect(await o.send(batch([big]))).toMatchObject({ status: 'rejected', reason: 'nats_refused' });
  expect(await o.send(batch([rec('s-0')]))).toEqual({ status: 'delivered' });
  // Fill the stream, then raise max_bytes: the big event now fits once there is room, so
  // while the stream is full it is retried, not rejected on the limit read before.
  for (let n = 1; n < 200; n++) if ((await o.send(batch([rec(`s-${n}`, 'y'.repeat(200))]))).status !== 'delivered') break;
  await jsm.streams.update('MB2', { ...cfg, max_bytes: 9000 });
  expect(await o.send(batch([big]))).toMatchObject({ status: 'retry' });
  await jsm.streams.purge('MB2');
  expect(await o.send(batch([big]))).toEqual({ status: 'delivered' });
});

test('while the server is down, retries publish nothing (the client buffers no copies of the batch), and the batch is delivered once it is back', async () => {
  const s = await natsServer();
  // nats.js empties its outbound buffer at each attempt to reconnect (src/nats/connection.ts),
  // so what piles up is what was published since the last attempt: reconnect_wait long
  // enough for the retries below to fall between two attempts.
  const o = output({ servers: [s.url], subject: 'cefd.out', ack_timeout: '200ms', reconnect_wait: '3s', stream: { create: true, name: 'OUT' } });
  await o.start();
  expect(await o.send(batch([rec('o-first')]))).toEqual({ status: 'delivered' });
  const link = (o as unknown as { link: { lastError: string; current: NatsConnection & { protocol: { outbound: { size(): number } } } } }).link;
  const nc = link.current;
  await s.stop('SIGKILL');
  // The client has seen the server go (it reconnects meanwhile, on the same connection object).
  await waitFor(() => link.lastError.startsWith('disconnected'), 30_000, 'the client to see the disconnect');
  const records = Array.from({ length: 200 }, (_, i) => rec(`o-${i}`, 'x'.repeat(1000)));
  const retries: SendResult[] = [];
  let buffered = 0;
  for (let i = 0; i < 10; i++) {
    retries.push(await o.send(batch(records)));
    buffered = Math.max(buffered, nc.protocol.outbound.size());
  }
  // Not one copy of the batch (200 kB) in the client's buffer after any retry.
  expect(link.current).toBe(nc);
  expect(buffered).toBeLessThan(1000);
  for (const r of retries) {
    expect(r.status).toBe('retry');
    expect((r as { error: string }).error).toMatch(/not connected: disconnected from/);
  }
  expect(o.unready()).toMatch(/not connected to NATS/);
  await s.start();
  const results = await sendUntilDone(o, records);
  expect(results.at(-1)).toEqual({ status: 'delivered' });
  expect(o.unready()).toBeUndefined();
  const msgs = await streamMessages(await client(s), 'OUT');
  expect(msgs.map((m) => m.id)).toEqual(['o-first', ...records.map((_, i) => `o-${i}`)]);
});

test('a receiver\'s stream with max_msgs or max_bytes must discard new: discard old (the default) would delete raw frames not processed yet', async () => {
  const { loadConfigText } = await import('../../src/config/load.js');
  const receiver = (stream: string) => `mode: receiver\nlisteners: [ { name: ksc, type: tcp, port: 5141 } ]\noutputs:\n  - name: raw\n    type: nats\n    payload: frame\n    servers: [ "nats://127.0.0.1:4222" ]\n    subject: cefd.raw\n    stream: { create: true, name: RAW, ${stream} }\n`;
  expect(() => loadConfigText(receiver('max_msgs: 1000000'), 'r.yaml', {})).toThrow(/r\.yaml:9: outputs\[0\]\.stream\.discard: mode: receiver with stream\.max_msgs needs stream\.discard: new/);
  expect(() => loadConfigText(receiver('max_bytes: 10GiB, discard: old'), 'r.yaml', {})).toThrow(/outputs\[0\]\.stream\.discard: mode: receiver with stream\.max_bytes needs stream\.discard: new/);
  expect(() => loadConfigText(receiver('max_msgs: 1000000, max_bytes: 10GiB, discard: new'), 'r.yaml', {})).not.toThrow();
  // No limit (max_age only) and an output that does not create the stream: nothing to say.
  expect(() => loadConfigText(receiver('max_age: 7d'), 'r.yaml', {})).not.toThrow();
  // Not a receiver: events, not the only copy of a frame.
  const single = `outputs:\n  - { name: ev, type: nats, servers: [ "nats://127.0.0.1:4222" ], subject: cefd.ev, stream: { create: true, name: EV, max_msgs: 1000 } }\n`;
  expect(() => loadConfigText(single, 's.yaml', {})).not.toThrow();
});
