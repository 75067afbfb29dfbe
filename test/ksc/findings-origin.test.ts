/**
 * The KSC watch's findings reach the main thread with the origin of their frames: the
 * listener, the peer and the TLS client certificate's fingerprint, which travel with the
 * job to the decode worker and back with its result (worker-protocol.ts). The trust check
 * (trust.ts) reads that origin, so a forged frame on another connection cannot borrow a
 * trusted fingerprint. On real worker threads and on the main thread alike.
 */
import { afterEach, expect, test } from 'vitest';
import { Pipeline, type SourceContext } from '../../src/pipeline/pipeline.js';
import { compileRoutes } from '../../src/pipeline/router.js';
import { loadChain } from '../../src/pipeline/normalize.js';
import type { OutputRunner } from '../../src/pipeline/output-runner.js';
import { WorkerPool } from '../../src/workers/worker-pool.js';
import { Telemetry } from '../../src/telemetry/telemetry.js';
import { buildSnapshot } from '../../src/ksc/asset-index.js';
import type { KscFindings } from '../../src/ksc/watch.js';
import { compileTrustedSource, isTrustedOrigin } from '../../src/ksc/trust.js';
import type { EventOrigin } from '../../src/event.js';
import { LogCapture } from '../helpers/daemon.js';

const FP = 'AB'.repeat(32);
const DETECTION = 'CEF:0|KasperskyLab|SecurityCenter|14.2|GNRL_EV_VIRUS_FOUND|Virus found|4|rt=1795860000004 dhost=WS-1 dst=10.4.21.31\n';

/** An output runner that only keeps what it is given. */
function sink(name: string): OutputRunner & { records: number } {
  const s = {
    name,
    records: 0,
    enqueueMany(r: string[]) {
      s.records += r.length;
    },
    enqueueNdjson(_b: Buffer, n: number) {
      s.records += n;
    },
    refusesNow: () => false,
  };
  return s as unknown as OutputRunner & { records: number };
}

let pool: WorkerPool | undefined;
afterEach(async () => {
  await pool?.close();
  pool = undefined;
});

/** A pipeline watching for one rule ("scan": detections) with one asset, and the findings it reports. */
/** Puts the pipeline's decoding on `workers` threads running these chains (the pool is closed after the test). */
async function useWorkers(pipeline: Pipeline, workers: number, chains: Record<string, string[]>): Promise<void> {
  pool = new WorkerPool(workers, () => {});
  pipeline.useWorkers(pool, await pool.init({ defaultZone: 'UTC', includeRaw: false, routes: [{}], event: {}, chains, baseDir: process.cwd() }));
  expect(pipeline.onWorkers).toBe(true);
}

function watchedPipeline() {
  const telemetry = new Telemetry({ destination: new LogCapture(), processMetrics: false });
  const out = sink('out');
  const pipeline = new Pipeline([out], sink('dead_letter'), telemetry, { defaultZone: 'UTC', includeRaw: false, routes: compileRoutes([{}]) });
  const found: [EventOrigin, KscFindings][] = [];
  pipeline.setWatch(
    { version: 1, tenant: 'default', assets: buildSnapshot([{ id: 'a-ws1', tenant: 'default', displayName: 'WS-1', fqdn: null, ips: ['10.4.21.31'], macs: [], lastVisible: null }], 1), rules: [{ name: 'scan', filter: 'ksc.category == "detection"', assetField: 'device' }] },
    (origin, f) => found.push([origin, f]),
  );
  return { telemetry, out, pipeline, found };
}

for (const workers of [2, 0]) {
  test(`rule triggers come back with the frames' listener, peer and TLS fingerprint (decode_workers: ${workers})`, async () => {
    const { telemetry, out, pipeline, found } = watchedPipeline();
    if (workers > 0) {
      await useWorkers(pipeline, workers, { tls: ['ksc'], open: ['ksc'] });
    }
    const normalizers = await loadChain(['ksc']);
    const ctx = (listener: string, peer: string, tlsFingerprint?: string): SourceContext => ({
      listener,
      peer,
      normalizers,
      stats: telemetry.listener(listener),
      ...(tlsFingerprint !== undefined ? { tlsFingerprint } : {}),
      pause: () => {},
      resume: () => {},
    });
    const kscConn = ctx('tls', '127.0.0.1:40001', FP);
    const forger = ctx('open', '127.0.0.1:40002');
    pipeline.frame(Buffer.from(DETECTION), 'lf', false, kscConn);
    pipeline.commit(kscConn);
    pipeline.frame(Buffer.from(DETECTION), 'lf', false, forger);
    pipeline.commit(forger);
    await pipeline.drain();
    expect(out.records).toBe(2);
    const byListener = new Map(found.map(([o, f]) => [o.listener, [o, f] as const]));
    expect(byListener.get('tls')?.[0]).toEqual({ listener: 'tls', peer: '127.0.0.1:40001', tlsFingerprint: FP });
    expect(byListener.get('tls')?.[1].triggers).toEqual([{ rule: 'scan', assetId: 'a-ws1', eventId: expect.any(String) }]);
    expect(byListener.get('open')?.[0]).toMatchObject({ listener: 'open', peer: '127.0.0.1:40002' });
    expect(byListener.get('open')?.[0].tlsFingerprint).toBeUndefined();
    // What the KSC extension decides from them: only the pinned certificate is trusted.
    const trusted = compileTrustedSource({ connection: 'main', listeners: [], cidrs: [], client_fingerprints: [FP] });
    expect(isTrustedOrigin(trusted, byListener.get('tls')![0])).toBe(true);
    expect(isTrustedOrigin(trusted, byListener.get('open')![0])).toBe(false);
  });
}

for (const workers of [2, 0]) {
  test(`frames a processor read from NATS: findings come back per run of frames with the origin each frame carried (decode_workers: ${workers})`, async () => {
    const { telemetry, out, pipeline, found } = watchedPipeline();
    if (workers > 0) {
      await useWorkers(pipeline, workers, { bus: ['ksc'] });
    }
    const ctx: SourceContext = { listener: 'bus', peer: 'nats', normalizers: await loadChain(['ksc']), stats: telemetry.listener('bus') };
    // One batch (large enough for a worker): 70 frames from r1's ksc listener, 30 from r2's open one, 70 from r1 again.
    const origins = [...Array(70).fill(['ksc', '10.0.0.1:5000']), ...Array(30).fill(['open', '10.0.0.2:5000']), ...Array(70).fill(['ksc', '10.0.0.1:5000'])] as [string, string][];
    const frames = origins.map(([listener, peer], i) => ({ data: Buffer.from(DETECTION.trimEnd()), truncated: false, receivedMs: Date.now(), id: `r-${i}`, listener, peer }));
    const taken = await new Promise<boolean>((resolve) => pipeline.submitFramesAsync(frames, ctx, resolve));
    expect(taken).toBe(true);
    expect(out.records).toBe(170);
    // Each run of frames of one origin reported under that origin, in order; the processor's own listener never.
    expect(found.map(([o, f]) => [o.listener, o.peer, f.triggers.length])).toEqual(
      workers > 0
        ? [['ksc', '10.0.0.1:5000', 70], ['open', '10.0.0.2:5000', 30], ['ksc', '10.0.0.1:5000', 70]]
        : origins.map(([l, p]) => [l, p, 1]),
    );
  });
}

for (const workers of [2, 0]) {
  test(`frames a processor read from NATS keep the TLS fingerprint the receiver's listener verified: findings carry it, and only those frames are trusted by a pin (decode_workers: ${workers})`, async () => {
    const { telemetry, out, pipeline, found } = watchedPipeline();
    if (workers > 0) {
      await useWorkers(pipeline, workers, { bus: ['ksc'] });
    }
    const ctx: SourceContext = { listener: 'bus', peer: 'nats', normalizers: await loadChain(['ksc']), stats: telemetry.listener('bus') };
    // 70 frames from KSC's pinned TLS connection, then 70 from the same listener and address without a certificate.
    const frames = Array.from({ length: 140 }, (_, i) => ({ data: Buffer.from(DETECTION.trimEnd()), truncated: false, receivedMs: Date.now(), id: `r-${i}`, listener: 'ksc-tls', peer: '10.0.0.1:5000', ...(i < 70 ? { tlsFingerprint: FP } : {}) }));
    const taken = await new Promise<boolean>((resolve) => pipeline.submitFramesAsync(frames, ctx, resolve));
    expect(taken).toBe(true);
    expect(out.records).toBe(140);
    const trusted = compileTrustedSource({ connection: 'main', listeners: [], cidrs: [], client_fingerprints: [FP] });
    const verdicts = found.flatMap(([o, f]) => Array<boolean>(f.triggers.length).fill(isTrustedOrigin(trusted, o)));
    expect(verdicts).toEqual(Array.from({ length: 140 }, (_, i) => i < 70));
    expect(found[0]![0]).toEqual({ listener: 'ksc-tls', peer: '10.0.0.1:5000', tlsFingerprint: FP });
  });
}
