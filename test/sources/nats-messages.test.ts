/**
 * The nats source in process against a real nats-server 2.9, with the real Pipeline and an
 * output queue that keeps what it is given: what a processor makes of the messages a
 * receiver (or anyone else) put in the stream, and what it acknowledges.
 */
import { afterAll, afterEach, expect, test } from 'vitest';
import { AckPolicy, DeliverPolicy, connect, headers, nanos, type JsMsg, type NatsConnection } from 'nats';
import { Pipeline } from '../../src/pipeline/pipeline.js';
import { compileRoutes } from '../../src/pipeline/router.js';
import { loadChain } from '../../src/pipeline/normalize.js';
import type { OutputRunner } from '../../src/pipeline/output-runner.js';
import { FlowControl } from '../../src/pipeline/flow-control.js';
import { Telemetry, type ListenerStats } from '../../src/telemetry/telemetry.js';
import { buildSnapshot } from '../../src/ksc/asset-index.js';
import type { KscFindings } from '../../src/ksc/watch.js';
import type { EventOrigin } from '../../src/event.js';
import { NatsSource } from '../../src/sources/nats/nats.js';
import { LogCapture, waitFor } from '../helpers/daemon.js';
import { natsServer, stopAllNats, type NatsServer } from '../helpers/nats-server.js';

const clients: NatsConnection[] = [];
const sources: NatsSource[] = [];
afterEach(async () => {
  await Promise.all(sources.splice(0).map((s) => s.stop(0)));
  await Promise.all(clients.splice(0).map((c) => c.close()));
});
afterAll(stopAllNats);

const FP = 'CD'.repeat(32);
const DETECTION = 'CEF:0|KasperskyLab|SecurityCenter|14.2|GNRL_EV_VIRUS_FOUND|Virus found|4|rt=1795860000004 dhost=WS-1 dst=10.4.21.31';

/** An output queue that keeps what it is given (as parsed events). */
function sink(name: string) {
  const s = {
    name,
    events: [] as Record<string, unknown>[],
    /** Refuses every batch while true (a full drop_newest queue). */
    refusing: false,
    refusesNow: () => s.refusing,
    enqueueMany: (r: string[]) => void s.events.push(...r.map((x) => JSON.parse(x) as Record<string, unknown>)),
    enqueueNdjson: (b: Buffer) => void s.events.push(...b.toString('utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>)),
    queue: { fill: () => 0 },
  };
  return s;
}

async function stream(s: NatsServer): Promise<NatsConnection> {
  const c = await connect({ servers: s.url });
  clients.push(c);
  await (await c.jetstreamManager({ timeout: 30_000 })).streams.add({ name: 'RAW', subjects: ['cefd.raw'] });
  return c;
}

/** A nats source on `s` feeding a real pipeline that watches for detections of one asset. */
async function processor(s: NatsServer, extra: Record<string, unknown> = {}) {
  const log = new LogCapture();
  const telemetry = new Telemetry({ destination: log, processMetrics: false });
  const out = sink('out');
  const dead = sink('dead_letter');
  const pipeline = new Pipeline([out as unknown as OutputRunner], dead as unknown as OutputRunner, telemetry, { defaultZone: 'UTC', includeRaw: false, routes: compileRoutes([{}]) });
  const found: [EventOrigin, KscFindings][] = [];
  pipeline.setWatch(
    { version: 1, tenant: 'default', assets: buildSnapshot([{ id: 'a-ws1', tenant: 'default', displayName: 'WS-1', fqdn: null, ips: ['10.4.21.31'], macs: [], lastVisible: null }], 1), rules: [{ name: 'scan', filter: 'ksc.category == "detection"', assetField: 'device' }] },
    (origin, f) => found.push([origin, f]),
  );
  const flow = new FlowControl(telemetry);
  const config = {
    name: 'bus',
    type: 'nats',
    servers: [s.url],
    tls_required: false,
    connect_timeout: 5,
    reconnect_wait: 0.2,
    stream: 'RAW',
    consumer: 'processors',
    batch_size: 100,
    max_ack_pending: 500,
    ack_wait: 30,
    max_in_progress: 300,
    fetch_wait: 0.2,
    ...extra,
  };
  const src = new NatsSource(config as unknown as ConstructorParameters<typeof NatsSource>[0], { pipeline, flow, telemetry, normalizers: await loadChain(['ksc']) });
  sources.push(src);
  return { src, out, dead, found, log, telemetry, pipeline, flow };
}

async function ackPending(c: NatsConnection): Promise<{ pending: number; ackPending: number }> {
  const info = await (await c.jetstreamManager({ timeout: 30_000 })).consumers.info('RAW', 'processors');
  return { pending: info.num_pending, ackPending: info.num_ack_pending };
}

/** `n` frames without headers (ids RAW-<stream sequence>), each a distinct event. */
async function publish(c: NatsConnection, n: number): Promise<void> {
  const js = c.jetstream({ timeout: 30_000 });
  for (let i = 0; i < n; i++) await js.publish('cefd.raw', new TextEncoder().encode(`${DETECTION} cnt=${i}`));
}

/** Each event's id, and how many times it was written. */
function copies(events: Record<string, unknown>[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const e of events) m.set(e['id'] as string, (m.get(e['id'] as string) ?? 0) + 1);
  return m;
}

const ids = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => `RAW-${from + i}`);

test('the TLS client-certificate fingerprint a receiver publishes (Cefd-Tls-Fingerprint) reaches the trust check on the processor', async () => {
  const s = await natsServer();
  const c = await stream(s);
  const js = c.jetstream();
  for (let i = 0; i < 4; i++) {
    const h = headers();
    h.set('Cefd-Id', `r1-${i}`);
    h.set('Cefd-Listener', 'ksc-tls');
    h.set('Cefd-Peer', '10.0.0.5:40000');
    h.set('Cefd-Received', String(Date.UTC(2026, 10, 28, 10, 0, 1)));
    h.set('Cefd-Framing', 'octet');
    if (i % 2 === 0) h.set('Cefd-Tls-Fingerprint', FP);
    await js.publish('cefd.raw', new TextEncoder().encode(DETECTION), { headers: h });
  }
  const p = await processor(s);
  await p.src.start();
  await waitFor(async () => p.out.events.length === 4 && (await ackPending(c)).ackPending === 0, 60_000, '4 events, acknowledged');
  const fps = p.found.map(([o]) => o.tlsFingerprint);
  expect(fps).toEqual([FP, undefined, FP, undefined]);
  expect(p.found.map(([o]) => [o.listener, o.peer])).toEqual(Array(4).fill(['ksc-tls', '10.0.0.5:40000']));
});

test('messages given back (the output refused them) and delivered again are counted: cefd_nats_nacked_messages_total, cefd_nats_redelivered_messages_total', async () => {
  const s = await natsServer();
  const c = await stream(s);
  await c.jetstream().publish('cefd.raw', new TextEncoder().encode(DETECTION));
  const p = await processor(s);
  const st = p.telemetry.listener('bus');
  p.out.refusing = true;
  await p.src.start();
  await waitFor(() => st.natsNaked >= 1, 60_000, 'the refused message given back');
  p.out.refusing = false;
  await waitFor(async () => p.out.events.length === 1 && (await ackPending(c)).ackPending === 0, 60_000, 'the message taken and acknowledged');
  // Each message given back came again once; the last time it was taken.
  expect(st.natsRedelivered).toBe(st.natsNaked);
  expect(st.natsAcked).toBe(1);
  const text = await p.telemetry.registry.metrics();
  expect(text).toContain(`cefd_nats_nacked_messages_total{listener="bus"} ${st.natsNaked}`);
  expect(text).toContain(`cefd_nats_redelivered_messages_total{listener="bus"} ${st.natsRedelivered}`);
});

/**
 * Starts `p` with the acknowledgements of its first `k` events held until `inProgress`
 * in-progress acknowledgements went out (about three ack_wait periods) or the server
 * delivered something again, then lets them go and waits until every message is acknowledged.
 */
async function holdThenRelease(p: Awaited<ReturnType<typeof processor>>, c: NatsConnection, k: number, inProgress: number): Promise<ListenerStats> {
  const st = p.telemetry.listener('bus');
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  p.pipeline.holdAcks(() => gate);
  await p.src.start();
  await waitFor(() => p.out.events.length >= k, 60_000, `${k} events in the output, their acknowledgement held`);
  await waitFor(() => st.natsInProgress >= inProgress || st.natsRedelivered > 0, 60_000, 'three ack_wait periods held, or a redelivery');
  release();
  await waitFor(async () => st.natsAcked >= k && (await ackPending(c)).ackPending === 0, 60_000, 'every message acknowledged');
  return st;
}

test('a batch whose acknowledgement is held for several ack_wait periods (KSC work not yet published) is kept by in-progress acknowledgements: delivered once, not again while it is worked on', async () => {
  const s = await natsServer();
  const c = await stream(s);
  const K = 40;
  await publish(c, K);
  // ack_wait 6 s: in-progress acknowledgements every 2 s. The first goes out 2-4 s after
  // the hand-over (a batch younger than a tick waits for the next): 2 s to spare before
  // the server would deliver again, for an event loop stalled on a loaded machine.
  const p = await processor(s, { ack_wait: 6 });
  // Held for about three ack_wait periods (9 rounds of in-progress acknowledgements for
  // every message), or until the server delivered something again (what happened before).
  const st = await holdThenRelease(p, c, K, 9 * K);
  const info = await (await c.jetstreamManager({ timeout: 30_000 })).consumers.info('RAW', 'processors');
  expect(st.natsRedelivered).toBe(0);
  expect(info.num_redelivered).toBe(0);
  expect(st.natsAcked).toBe(K);
  expect([...copies(p.out.events).keys()].sort()).toEqual(ids(1, K).sort());
  expect(p.out.events.length).toBe(K);
  expect(await p.telemetry.registry.metrics()).toContain(`cefd_nats_in_progress_acks_total{listener="bus"} ${st.natsInProgress}`);
});

test('in-progress acknowledgements are bounded: a batch held past max_in_progress is delivered again (at least once), with a warning', async () => {
  const s = await natsServer();
  const c = await stream(s);
  await publish(c, 5);
  const p = await processor(s, { ack_wait: 1, max_in_progress: 2 });
  const st = p.telemetry.listener('bus');
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  p.pipeline.holdAcks(() => gate);
  await p.src.start();
  await waitFor(() => st.natsRedelivered >= 5, 60_000, 'the held messages delivered again');
  expect(p.log.lines.join('\n')).toContain('no more in-progress acknowledgements (max_in_progress)');
  release();
  await waitFor(async () => (await ackPending(c)).ackPending === 0, 60_000, 'every message acknowledged');
  expect(new Set(copies(p.out.events).keys())).toEqual(new Set(ids(1, 5)));
});

test('the durable consumer deleted while cefd runs is made again after what it processed: new messages come, the stream is not read again from its start', async () => {
  const s = await natsServer();
  const c = await stream(s);
  const N = 50;
  const M = 30;
  await publish(c, N);
  const p = await processor(s, { ack_wait: 3 });
  const st = p.telemetry.listener('bus');
  await p.src.start();
  await waitFor(async () => p.out.events.length >= N && (await ackPending(c)).ackPending === 0, 60_000, `${N} events, acknowledged`);
  // The source's reading of the consumer (every third of ack_wait) found nothing held by anyone else.
  await waitFor(() => p.src.restartSequence() === N + 1, 60_000, 'the source knows everything up to N is processed');
  const jsm = await c.jetstreamManager({ timeout: 30_000 });
  await jsm.consumers.delete('RAW', 'processors');
  await publish(c, M);
  await waitFor(async () => {
    const info = await jsm.consumers.info('RAW', 'processors').catch(() => null);
    return info !== null && p.out.events.length >= N + M && info.num_pending === 0 && info.num_ack_pending === 0;
  }, 60_000, `${M} more events, the consumer made again and drained`);
  // Each frame once: the N were not read again.
  const got = copies(p.out.events);
  expect([...got.keys()].sort()).toEqual(ids(1, N + M).sort());
  expect(p.out.events.length).toBe(N + M);
  const info = await jsm.consumers.info('RAW', 'processors');
  expect(info.config.deliver_policy).toBe('by_start_sequence');
  expect(info.config.opt_start_seq).toBe(N + 1);
  expect(st.natsConsumerRecreated).toBe(1);
  expect(p.log.lines.join('\n')).toContain(`made again from stream sequence ${N + 1}`);
});

test('the durable consumer deleted while another processor holds messages unacknowledged: made again from the acknowledgement floor, those messages come again (at least once)', async () => {
  const s = await natsServer();
  const c = await stream(s);
  await publish(c, 10);
  // Another processor takes the first 10 and keeps them (in-progress acknowledgements) without acknowledging.
  const jsm = await c.jetstreamManager({ timeout: 30_000 });
  await jsm.consumers.add('RAW', { durable_name: 'processors', ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.All, ack_wait: nanos(3000), max_ack_pending: 500 });
  const held: JsMsg[] = [];
  const other = await (await c.jetstream().consumers.get('RAW', 'processors')).fetch({ max_messages: 10, expires: 5000 });
  for await (const m of other) {
    held.push(m);
    if (held.length === 10) break;
  }
  const keep = setInterval(() => held.forEach((m) => m.working()), 500);
  try {
    await publish(c, 40);
    const p = await processor(s, { ack_wait: 3 });
    await p.src.start();
    await waitFor(() => p.out.events.length >= 40, 60_000, '40 events at this processor');
    expect(new Set(copies(p.out.events).keys())).toEqual(new Set(ids(11, 50)));
    // It knows someone else holds messages above the floor (0).
    await waitFor(() => p.src.restartSequence() === 1, 60_000, 'the others\' messages seen in the consumer\'s state');
    clearInterval(keep);
    // The other processor dies; the consumer is deleted.
    await jsm.consumers.delete('RAW', 'processors');
    await publish(c, 10);
    await waitFor(() => ids(1, 60).every((id) => copies(p.out.events).has(id)), 60_000, 'the other processor\'s 10 and the 10 new ones');
  } finally {
    clearInterval(keep);
  }
});

test('the durable consumer deleted after another processor took messages this one never saw (and died with them): made again no later than the consumer\'s position at this one\'s last reading, so they are not lost', async () => {
  const s = await natsServer();
  const c = await stream(s);
  await publish(c, 5);
  // ack_wait 120 s: no reading of the consumer's state (every 40 s) within the test, and
  // the other processor's messages are not delivered again by the server on their own.
  const p = await processor(s, { ack_wait: 120 });
  await p.src.start();
  await waitFor(async () => p.out.events.length >= 5 && (await ackPending(c)).ackPending === 0, 60_000, 'the first 5 processed and acknowledged');
  // Reading paused while another processor takes 6-10 and dies without acknowledging them.
  p.flow.block('test');
  await waitFor(() => (p.src as unknown as { fetching: unknown }).fetching === null, 60_000, 'no fetch open');
  await publish(c, 5);
  const taken: JsMsg[] = [];
  const other = await (await c.jetstream().consumers.get('RAW', 'processors')).fetch({ max_messages: 5, expires: 5000 });
  for await (const m of other) {
    taken.push(m);
    if (taken.length === 5) break;
  }
  expect(taken.map((m) => m.seq)).toEqual([6, 7, 8, 9, 10]);
  p.flow.unblock('test');
  await publish(c, 5);
  await waitFor(async () => ids(11, 15).every((id) => copies(p.out.events).has(id)) && (await ackPending(c)).ackPending === 5, 60_000, '11-15 processed by this one');
  const jsm = await c.jetstreamManager({ timeout: 30_000 });
  await jsm.consumers.delete('RAW', 'processors');
  await publish(c, 5);
  await waitFor(() => ids(1, 20).every((id) => copies(p.out.events).has(id)), 60_000, 'the other processor\'s 6-10 and the new 16-20');
  expect((await jsm.consumers.info('RAW', 'processors')).config.opt_start_seq).toBeLessThanOrEqual(6);
});

/** A processor (ack_wait 3 s) that processed 10 published messages and holds their acknowledgement until `release`. */
async function tenHeld() {
  const s = await natsServer();
  const c = await stream(s);
  await publish(c, 10);
  const p = await processor(s, { ack_wait: 3 });
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  p.pipeline.holdAcks(() => gate);
  await p.src.start();
  await waitFor(() => p.out.events.length >= 10, 60_000, '10 events, their acknowledgement held');
  return { c, p, release };
}

test('the durable consumer made again by another processor after messages this one holds unsettled: made again from the first of them, so that none is lost', async () => {
  const { c, p, release } = await tenHeld();
  // Another processor, that knew only its own messages, made the consumer again after sequence 10.
  const jsm = await c.jetstreamManager({ timeout: 30_000 });
  const cfg = { durable_name: 'processors', ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: 11, ack_wait: nanos(3000), max_ack_pending: 500 };
  // This processor may make it again first (after its fetch fails): deleted and made again until ours is the one.
  await waitFor(async () => {
    await jsm.consumers.delete('RAW', 'processors').catch(() => undefined);
    return jsm.consumers.add('RAW', cfg).then(() => true, () => false);
  }, 60_000, 'the consumer made again from sequence 11 by the other processor');
  // Its warning is logged once the consumer is made: waited for, not raced.
  await waitFor(() => p.log.lines.join('\n').includes('was made again by another processor from stream sequence 11'), 60_000, 'the warning');
  expect((await jsm.consumers.info('RAW', 'processors')).config.opt_start_seq).toBe(1);
  release();
  await publish(c, 5);
  await waitFor(async () => {
    const info = await jsm.consumers.info('RAW', 'processors');
    return ids(1, 15).every((id) => copies(p.out.events).has(id)) && info.num_pending === 0 && info.num_ack_pending === 0;
  }, 60_000, 'every message processed and acknowledged');
});

test('the durable consumer deleted and made again by another processor while this one was not fetching (its reading paused): found by its reading of the consumer\'s state, made again from the first message it holds', async () => {
  const { c, p, release } = await tenHeld();
  // Reading paused (an output blocks): no fetch open, so no fetch fails when the consumer goes.
  p.flow.block('test');
  await waitFor(() => (p.src as unknown as { fetching: unknown }).fetching === null, 60_000, 'no fetch open');
  const jsm = await c.jetstreamManager({ timeout: 30_000 });
  await jsm.consumers.delete('RAW', 'processors');
  await jsm.consumers.add('RAW', { durable_name: 'processors', ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: 11, ack_wait: nanos(3000), max_ack_pending: 500 });
  p.flow.unblock('test');
  await waitFor(async () => (await jsm.consumers.info('RAW', 'processors').catch(() => null))?.config.opt_start_seq === 1, 60_000, 'made again from sequence 1 by this processor');
  release();
  await waitFor(async () => {
    const info = await jsm.consumers.info('RAW', 'processors');
    return info.num_pending === 0 && info.num_ack_pending === 0;
  }, 60_000, 'every message acknowledged');
  expect(new Set(copies(p.out.events).keys())).toEqual(new Set(ids(1, 10)));
});

test('a processor joining the shared consumer with a shorter ack_wait does not change it: the first one\'s held batches are not delivered again while it works on them', async () => {
  const s = await natsServer();
  const c = await stream(s);
  const K = 20;
  // A (ack_wait 6 s) makes the consumer; B (ack_wait 1 s) joins it. Before, B rewrote the
  // consumer's ack_wait to 1 s while A sent in-progress acknowledgements every 2 s (a third
  // of its own 6 s): A's held batches were delivered again while A still worked on them.
  const a = await processor(s, { ack_wait: 6 });
  const st = a.telemetry.listener('bus');
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  a.pipeline.holdAcks(() => gate);
  await a.src.start();
  const jsm = await c.jetstreamManager({ timeout: 30_000 });
  await waitFor(async () => (await jsm.consumers.info('RAW', 'processors').catch(() => null)) !== null, 60_000, 'the consumer made by A');
  const b = await processor(s, { ack_wait: 1 });
  await b.src.start();
  await waitFor(() => b.log.lines.join('\n').includes('is shared and kept as it is, with ack_wait 6s (this listener: 1s'), 60_000, 'B warns about the consumer\'s ack_wait');
  await b.src.stop(0);
  expect((await jsm.consumers.info('RAW', 'processors')).config.ack_wait).toBe(nanos(6000));
  await publish(c, K);
  await waitFor(() => a.out.events.length >= K, 60_000, `${K} events in A's output, their acknowledgement held`);
  // Two rounds of in-progress acknowledgements (4-6 s: past the 1 s B would have set), or a redelivery.
  await waitFor(() => st.natsInProgress >= 2 * K || st.natsRedelivered > 0, 60_000, 'two rounds of in-progress acknowledgements, or a redelivery');
  release();
  await waitFor(async () => st.natsAcked >= K && (await ackPending(c)).ackPending === 0, 60_000, 'every message acknowledged');
  expect(st.natsRedelivered).toBe(0);
  expect((await jsm.consumers.info('RAW', 'processors')).num_redelivered).toBe(0);
  expect(a.out.events.length).toBe(K);
});

test('in-progress acknowledgements follow the consumer\'s ack_wait, not the listener\'s: a consumer made with ack_wait 2 s is kept so, with a warning, and a held batch is not delivered again', async () => {
  const s = await natsServer();
  const c = await stream(s);
  const K = 20;
  const jsm = await c.jetstreamManager({ timeout: 30_000 });
  // Made by another processor (or an operator) with ack_wait 2 s; this one is configured with 30 s.
  await jsm.consumers.add('RAW', { durable_name: 'processors', ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.All, ack_wait: nanos(2000), max_ack_pending: 500 });
  await publish(c, K);
  const p = await processor(s, { ack_wait: 30 });
  // Three of the consumer's ack_wait periods (in-progress acknowledgements every 2/3 s), or a redelivery.
  const st = await holdThenRelease(p, c, K, 6 * K);
  const info = await jsm.consumers.info('RAW', 'processors');
  expect(info.config.ack_wait).toBe(nanos(2000));
  expect(st.natsRedelivered).toBe(0);
  expect(info.num_redelivered).toBe(0);
  expect(p.log.lines.join('\n')).toContain('is shared and kept as it is, with ack_wait 2s (this listener: 30s; in-progress acknowledgements follow the consumer\'s');
});

test('a listener whose filter_subject differs from the existing consumer\'s reads nothing from it (nats_consumer_mismatch, not ready) until the consumer matches', async () => {
  const s = await natsServer();
  const c = await connect({ servers: s.url });
  clients.push(c);
  const jsm = await c.jetstreamManager({ timeout: 30_000 });
  await jsm.streams.add({ name: 'RAW', subjects: ['cefd.raw.*'] });
  // Made without a filter (a processor reading every partition).
  await jsm.consumers.add('RAW', { durable_name: 'processors', ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.All, ack_wait: nanos(30_000), max_ack_pending: 500 });
  const js = c.jetstream({ timeout: 30_000 });
  for (let i = 0; i < 3; i++) {
    await js.publish('cefd.raw.0', new TextEncoder().encode(`${DETECTION} cnt=0${i}`));
    await js.publish('cefd.raw.1', new TextEncoder().encode(`${DETECTION} cnt=1${i}`));
  }
  const p = await processor(s, { filter_subject: 'cefd.raw.1' });
  await p.src.start();
  await waitFor(() => p.log.lines.some((l) => l.includes('"code":"nats_consumer_mismatch"')), 60_000, 'the mismatch logged');
  expect(p.log.lines.join('\n')).toContain('reads every subject of the stream (no filter_subject), this listener is configured with filter_subject cefd.raw.1');
  expect(p.src.ready).toBe(false);
  // Nothing was taken from the consumer.
  let info = await jsm.consumers.info('RAW', 'processors');
  expect(info.delivered.stream_seq).toBe(0);
  expect(p.out.events).toEqual([]);
  // The consumer deleted: the listener makes it with its filter and reads its partition only.
  await jsm.consumers.delete('RAW', 'processors');
  await waitFor(async () => p.out.events.length >= 3 && (await ackPending(c)).ackPending === 0, 60_000, 'partition 1 read');
  info = await jsm.consumers.info('RAW', 'processors');
  expect(info.config.filter_subject).toBe('cefd.raw.1');
  expect(p.out.events.length).toBe(3);
  expect(p.out.events.map((e) => e['id']).sort()).toEqual(['RAW-2', 'RAW-4', 'RAW-6']);
  expect(p.src.ready).toBe(true);
});
