/**
 * A decode worker thread: takes the frames of one socket read (a "job"), runs
 * processFrame on each (decode, normalizers, the KSC watch, routes, encoders) and sends
 * back, per encoder in use, the records as newline-separated bytes with each one's route
 * mask, plus the dead letters, the counts and the KSC findings. The bytes go straight
 * into the disk buffer and the outputs: the main thread never touches the events
 * themselves. See worker-pool.ts for the other side.
 */
import { parentPort } from 'node:worker_threads';
import { FrameCounts, eventId, processFrame, type IngestEnv } from '../pipeline/ingest.js';
import { loadChain, type Normalizer } from '../pipeline/normalize.js';
import { compileRoutes } from '../pipeline/router.js';
import { KscWatch } from '../ksc/watch.js';
import { RecentKeeper } from './recent.js';
import type { EncodedBlock, InitMessage, JobMessage, RecentItem, ResultMessage, WorkerMessage } from './worker-protocol.js';
import type { EventOrigin } from '../event.js';
import type { KscFindings } from '../ksc/watch.js';

let env: IngestEnv = { defaultZone: 'UTC', includeRaw: false, routes: compileRoutes([]) };
let watch: KscWatch | undefined;
let chains = new Map<string, Normalizer[]>();
let version = -1;
/** The console's recent events (off unless a RecentMessage asks). */
const recent = new RecentKeeper();
const tails = (): IngestEnv['tails'] => (recent.max > 0 ? [recent.tail] : undefined);

async function init(m: InitMessage): Promise<void> {
  const routes = compileRoutes(m.routes, m.event);
  const next = new Map<string, Normalizer[]>();
  for (const [listener, specs] of Object.entries(m.chains)) next.set(listener, await loadChain(specs, m.baseDir));
  env = { defaultZone: m.defaultZone, includeRaw: m.includeRaw, routes, watch, tails: tails() };
  recent.configure(routes, m.event);
  chains = next;
  version = m.version;
  // The encoders may differ now: learn their sizes anew.
  outRatio.length = 0;
}

/** A growing byte buffer on its own ArrayBuffer (so it can be transferred). */
class Out {
  buf: Buffer;
  len = 0;
  constructor(size: number) {
    this.buf = Buffer.allocUnsafeSlow(Math.max(1024, size));
  }
  writeLine(s: string): void {
    // At most 3 bytes per UTF-16 unit (a surrogate pair: 4 bytes for 2 units).
    const max = s.length * 3 + 1;
    if (this.len + max > this.buf.length) this.grow(max);
    // All four arguments: Buffer#write skips its argument shuffling.
    this.len += this.buf.write(s, this.len, this.buf.length - this.len, 'utf8');
    this.buf[this.len++] = 0x0a;
  }
  private grow(need: number): void {
    const bigger = Buffer.allocUnsafeSlow(Math.max(this.buf.length * 2, this.len + need));
    this.buf.copy(bigger, 0, 0, this.len);
    this.buf = bigger;
  }
}

/**
 * Output bytes per input byte of each encoder, as seen in the last jobs: the next job's
 * buffers are sized from it (with a margin) rather than from a fixed guess, so they are
 * seldom grown (a copy) and not much larger than needed (the output queues keep the
 * whole buffer while they hold its records).
 */
const outRatio: number[] = [];

const NO_BYTES = new ArrayBuffer(0);

function sizeFor(e: number, inBytes: number): number {
  const r = outRatio[e] ?? (e === 0 ? 4 : 2);
  return Math.ceil(inBytes * r * 1.125) + 4096;
}

function learnRatio(e: number, inBytes: number, outBytes: number): void {
  if (inBytes < 4096) return;
  const seen = outBytes / inBytes;
  const prev = outRatio[e];
  // Up at once (a bigger share of large events), down slowly (a job of small ones).
  outRatio[e] = prev === undefined || seen > prev ? seen : prev * 0.9 + seen * 0.1;
}

function run(m: JobMessage): ResultMessage {
  const data = Buffer.from(m.data);
  const n = m.offsets.length >> 1;
  const normalizers = chains.get(m.listener) ?? [];
  const counts = new FrameCounts();
  const routes = env.routes;
  const ne = routes.encoders.length;
  const outs: Out[] = [];
  const lineEnds: Int32Array[] = [];
  const masks: Uint32Array[] = [];
  const counts_: number[] = [];
  for (let e = 0; e < ne; e++) {
    outs.push(new Out(sizeFor(e, data.length)));
    lineEnds.push(new Int32Array(n));
    masks.push(new Uint32Array(n));
    counts_.push(0);
  }
  // Made at the first dead letter: most jobs have none.
  let dead: Out | undefined;
  const encoded: string[] = new Array<string>(ne);
  let deadCount = 0;
  const carried = m.carried;
  // The console's recent events know an event by the job's id prefix and sequence: jobs
  // with carried ids are not kept (the pipeline decodes them on the main thread while the
  // console wants recent events).
  const keep = recent.max > 0 && carried === undefined;
  if (keep) recent.begin(m.nowMs, m.listener, m.idPrefix, m.firstSeq, recent.nativeEncoder >= 0 ? outs[recent.nativeEncoder] : undefined);
  // Carried facts: the KSC watch's findings are taken at each change of origin, so each
  // batch of findings goes with the origin (listener, peer) its events came from.
  let findings: { origin: EventOrigin; ksc: KscFindings }[] | undefined;
  let lastOrigin = -1;
  const takeFindings = () => {
    const found = watch?.take();
    if (found === undefined || carried === undefined) return;
    const fp = carried.origins[3 * lastOrigin + 2]!;
    (findings ??= []).push({ origin: { listener: carried.origins[3 * lastOrigin]!, peer: carried.origins[3 * lastOrigin + 1]!, ...(fp !== '' ? { tlsFingerprint: fp } : {}) }, ksc: found });
  };
  for (let i = 0; i < n; i++) {
    const frame = data.subarray(m.offsets[2 * i]!, m.offsets[2 * i + 1]!);
    let r;
    if (carried === undefined) {
      r = processFrame(frame, m.truncated[i] === 1, m.nowMs, m.listener, m.peer, normalizers, eventId(m.idPrefix, m.firstSeq + i), env, counts, encoded, m.tlsFingerprint);
    } else {
      const o = carried.origin[i]!;
      if (o !== lastOrigin) {
        if (lastOrigin >= 0) takeFindings();
        lastOrigin = o;
      }
      const fp = carried.origins[3 * o + 2]!;
      r = processFrame(frame, m.truncated[i] === 1, carried.receivedMs[i]!, carried.origins[3 * o]!, carried.origins[3 * o + 1]!, normalizers, carried.ids[i]!, env, counts, encoded, fp !== '' ? fp : undefined);
    }
    if (keep) recent.after(i, r);
    if (typeof r !== 'number') {
      (dead ??= new Out(1024)).writeLine(r.dead);
      deadCount++;
      continue;
    }
    if (r === 0) continue;
    for (let e = 0; e < ne; e++) {
      if ((r & routes.encoderMasks[e]!) === 0) continue;
      const o = outs[e]!;
      o.writeLine(encoded[e]!);
      const k = counts_[e]!;
      lineEnds[e]![k] = o.len;
      masks[e]![k] = r;
      counts_[e] = k + 1;
    }
  }
  const blocks: EncodedBlock[] = [];
  for (let e = 0; e < ne; e++) {
    const o = outs[e]!;
    const k = counts_[e]!;
    learnRatio(e, data.length, o.len);
    // Every event routed (the usual case): the arrays go as they are, no copy.
    blocks.push({ bytes: o.buf.buffer as ArrayBuffer, length: o.len, events: k, lineEnds: k === n ? lineEnds[e]! : lineEnds[e]!.slice(0, k), masks: k === n ? masks[e]! : masks[e]!.slice(0, k) });
  }
  const res: ResultMessage = {
    kind: 'result',
    jobId: m.jobId,
    version,
    blocks,
    origin: { listener: m.listener, peer: m.peer, ...(m.tlsFingerprint !== undefined ? { tlsFingerprint: m.tlsFingerprint } : {}) },
    // No dead letters: an empty buffer, copied (not transferred: it is shared).
    dead: dead === undefined ? NO_BYTES : (dead.buf.buffer as ArrayBuffer),
    deadBytes: dead === undefined ? 0 : dead.len,
    deadCount,
    counts: counts.toJSON(),
  };
  if (carried !== undefined) {
    if (lastOrigin >= 0) takeFindings();
    if (findings !== undefined) res.findings = findings;
    return res;
  }
  const found = watch?.take();
  if (found !== undefined) res.ksc = found;
  if (keep) {
    const all = recent.finish(data, m.offsets);
    if (all !== undefined) res.recent = all;
  }
  return res;
}

if (parentPort !== null) {
  const port = parentPort;
  // Jobs that arrive while an init is loading modules wait for it, in order.
  let chain: Promise<void> = Promise.resolve();
  port.on('message', (m: WorkerMessage) => {
    chain = chain.then(async () => {
      if (m.kind === 'init') {
        try {
          await init(m);
          port.postMessage({ kind: 'ready', version: m.version });
        } catch (e) {
          port.postMessage({ kind: 'init_failed', version: m.version, error: (e as Error).message });
        }
        return;
      }
      if (m.kind === 'recent') {
        recent.set(m.max, m.bytes, m.all);
        env = { ...env, tails: tails() };
        return;
      }
      if (m.kind === 'recent_query') {
        let found: { items: RecentItem[]; kept: number } = { items: [], kept: 0 };
        try {
          found = recent.query(m.query);
        } catch {
          // A filter the main thread compiled already: it cannot fail here.
        }
        port.postMessage({ kind: 'recent_items', reqId: m.reqId, ...found });
        return;
      }
      if (m.kind === 'watch') {
        // The spec was compiled on the main thread already (the same code): it cannot fail here.
        watch = m.spec === null ? undefined : new KscWatch(m.spec);
        env = { ...env, watch };
        return;
      }
      let res: ResultMessage;
      try {
        res = run(m);
      } catch (e) {
        // processFrame never throws by design; if it does, the frames are not lost: the
        // main thread dead-letters them.
        port.postMessage({ kind: 'job_failed', jobId: m.jobId, error: (e as Error).stack ?? String(e) });
        return;
      }
      // Only the large buffers are transferred: transferring a small typed array costs more
      // than copying it (measured: about 100 µs against 30 µs per message with the line
      // ends and masks in the transfer list).
      const transfer: ArrayBuffer[] = res.dead === NO_BYTES ? [] : [res.dead];
      for (const b of res.blocks) transfer.push(b.bytes);
      if (res.recent !== undefined) transfer.push(res.recent.bytes);
      port.postMessage(res, transfer);
    });
  });
}
