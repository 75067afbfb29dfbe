/**
 * A decode worker thread: takes the frames of one socket read (a "job"), runs
 * processFrame on each (decode, normalizers, the KSC watch, routes, encoders) and sends
 * back, per encoder in use, the records as newline-separated bytes with each one's route
 * mask, plus the dead letters, the counts and the KSC findings. The bytes go straight
 * into the disk buffer and the outputs: the main thread never touches the events
 * themselves. See worker-pool.ts for the other side.
 */
import { parentPort } from 'node:worker_threads';
import { FrameCounts, eventId, processFrame, unencodableRecord, type IngestEnv } from '../pipeline/ingest.js';
import { stringifyEach } from './json-batch.js';
import type { Routes } from '../pipeline/router.js';
import type { Encoder } from '../codecs/encoders/encoder.js';
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

/**
 * The routes with each JSON encoder (one with Encoder.value) replaced by one that only
 * takes the value to write (into `values[e]`, for the caller to collect after
 * processFrame) and writes nothing: the worker writes those records at the end of the job,
 * many per JSON.stringify. Made again when the routes or the environment change.
 */
interface Deferred {
  routes: Routes;
  env: IngestEnv;
  base: IngestEnv;
  values: unknown[];
  /** Per encoder: whether it is deferred (a JSON encoder). */
  json: boolean[];
}
let deferredCache: Deferred | undefined;

function deferredRoutes(routes: Routes): Deferred | undefined {
  if (deferredCache !== undefined && deferredCache.routes === routes && deferredCache.base === env) return deferredCache;
  if (!routes.encoders.some((enc) => enc.value !== undefined)) return undefined;
  const values: unknown[] = new Array<unknown>(routes.encoders.length);
  const encoders = routes.encoders.map((enc, e): Encoder => {
    const value = enc.value;
    if (value === undefined) return enc;
    return {
      key: enc.key,
      codec: enc.codec,
      problems: enc.problems,
      encode: (event) => {
        values[e] = value.call(enc, event);
        return '';
      },
    };
  });
  deferredCache = { routes, base: env, values, json: routes.encoders.map((enc) => enc.value !== undefined), env: { ...env, routes: { ...routes, encoders } } };
  return deferredCache;
}

/**
 * A job's routed events waiting to be written: per encoder, the records or the values to
 * write; and the dead letters of frames after the first of them, in their place.
 */
class Pending {
  /** Events waiting (dead letters not counted). */
  count = 0;
  private readonly frames: number[] = [];
  /** Per entry: the route mask, or 0 for a dead letter (its text in `dead`). */
  private readonly masks: number[] = [];
  private readonly dead: string[] = [];
  /** Per encoder: a text record (an encoder without value) or a value to write as JSON. */
  private readonly items: unknown[][] = [];
  private readonly ne: number;
  constructor(
    /** Per encoder: whether its items are values (a JSON encoder) rather than records. */
    private readonly json: readonly boolean[],
    private readonly encoderMasks: readonly number[],
    /** Where the records, the events that cannot be written, and the dead letters go, in order. */
    private readonly write: (e: number, line: string, r: number) => void,
    private readonly failed: (frame: number, err: Error) => void,
    private readonly deadLine: (line: string) => void,
  ) {
    this.ne = json.length;
    for (let e = 0; e < this.ne; e++) this.items.push([]);
  }

  addDead(line: string): void {
    this.frames.push(-1);
    this.masks.push(0);
    this.dead.push(line);
    if (this.masks.length >= PENDING_MAX) this.finish();
  }

  add(i: number, r: number, values: unknown[], encoded: string[]): void {
    this.frames.push(i);
    this.masks.push(r);
    this.count++;
    for (let e = 0; e < this.ne; e++) {
      if ((r & this.encoderMasks[e]!) === 0) continue;
      if (this.json[e]) {
        this.items[e]!.push(values[e]);
        values[e] = undefined;
      } else {
        this.items[e]!.push(encoded[e]);
      }
    }
    if (this.masks.length >= PENDING_MAX) this.finish();
  }

  /**
   * Writes every event's records in order (an event one of whose records cannot be
   * written goes to `failed` instead), and empties the list.
   */
  finish(): void {
    const { encoderMasks, write, failed, deadLine } = this;
    const texts: (readonly (string | Error)[])[] = this.items.map((items, e) => (this.json[e] ? stringifyEach(items) : (items as string[])));
    const at = new Array<number>(this.ne).fill(0);
    let d = 0;
    for (let p = 0; p < this.masks.length; p++) {
      const r = this.masks[p]!;
      if (r === 0) {
        deadLine(this.dead[d++]!);
        continue;
      }
      let err: Error | undefined;
      for (let e = 0; e < this.ne; e++) {
        if ((r & encoderMasks[e]!) === 0) continue;
        const t = texts[e]![at[e]!];
        if (t instanceof Error) err ??= t;
      }
      if (err !== undefined) {
        failed(this.frames[p]!, err);
        for (let e = 0; e < this.ne; e++) if ((r & encoderMasks[e]!) !== 0) at[e]!++;
        continue;
      }
      for (let e = 0; e < this.ne; e++) {
        if ((r & encoderMasks[e]!) === 0) continue;
        write(e, texts[e]![at[e]!] as string, r);
        at[e]!++;
      }
    }
    this.count = 0;
    this.frames.length = 0;
    this.masks.length = 0;
    this.dead.length = 0;
    for (const items of this.items) items.length = 0;
  }
}

/**
 * Entries (events and dead letters) held before they are written, so at most this many
 * events per JSON.stringify: most of the gain of writing many at once (a job's few hundred
 * gain little more) without keeping a whole job's events alive until its end (they would
 * survive young-generation collections).
 */
const PENDING_MAX = 64;

function run(m: JobMessage): ResultMessage {
  const n = m.offsets.length >> 1;
  // Shared memory may be longer than the frames.
  const data = Buffer.from(m.data, 0, n === 0 ? 0 : m.offsets[2 * n - 1]!);
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
  // Records of JSON encoders are written at the end of the job, many per JSON.stringify
  // (json-batch.ts), unless the console keeps recent events (it reads each record from the
  // output bytes as soon as it is written).
  const deferred = keep ? undefined : deferredRoutes(routes);
  const penv = deferred === undefined ? env : deferred.env;
  const write = (e: number, line: string, r: number): void => {
    const o = outs[e]!;
    o.writeLine(line);
    const k = counts_[e]!;
    lineEnds[e]![k] = o.len;
    masks[e]![k] = r;
    counts_[e] = k + 1;
  };
  // An event one of the JSON encoders cannot write (a user normalizer's BigInt or cycle) is
  // dead-lettered whole, as processFrame does with one that fails at once.
  const deadLine = (line: string): void => {
    (dead ??= new Out(1024)).writeLine(line);
    deadCount++;
  };
  const failed = (i: number, err: Error): void => {
    const frame = data.subarray(m.offsets[2 * i]!, m.offsets[2 * i + 1]!);
    const o = carried === undefined ? -1 : carried.origin[i]!;
    FrameCounts.add(counts.unparseable, 'event_unserializable');
    if (o < 0) deadLine(unencodableRecord(frame, err, m.listener, m.peer, m.nowMs, m.truncated[i] === 1));
    else deadLine(unencodableRecord(frame, err, carried!.origins[3 * o]!, carried!.origins[3 * o + 1]!, carried!.receivedMs[i]!, m.truncated[i] === 1));
  };
  const pending = deferred === undefined ? undefined : new Pending(deferred.json, routes.encoderMasks, write, failed, deadLine);
  for (let i = 0; i < n; i++) {
    const frame = data.subarray(m.offsets[2 * i]!, m.offsets[2 * i + 1]!);
    let r;
    if (carried === undefined) {
      r = processFrame(frame, m.truncated[i] === 1, m.nowMs, m.listener, m.peer, normalizers, eventId(m.idPrefix, m.firstSeq + i), penv, counts, encoded, m.tlsFingerprint);
    } else {
      const o = carried.origin[i]!;
      if (o !== lastOrigin) {
        if (lastOrigin >= 0) takeFindings();
        lastOrigin = o;
      }
      const fp = carried.origins[3 * o + 2]!;
      r = processFrame(frame, m.truncated[i] === 1, carried.receivedMs[i]!, carried.origins[3 * o]!, carried.origins[3 * o + 1]!, normalizers, carried.ids[i]!, penv, counts, encoded, fp !== '' ? fp : undefined);
    }
    if (keep) recent.after(i, r);
    if (typeof r !== 'number') {
      // Behind the events waiting to be written, so dead letters keep the frames' order.
      if (pending !== undefined && pending.count > 0) pending.addDead(r.dead);
      else deadLine(r.dead);
      continue;
    }
    if (r === 0) continue;
    if (pending !== undefined) {
      pending.add(i, r, deferred!.values, encoded);
      continue;
    }
    for (let e = 0; e < ne; e++) if ((r & routes.encoderMasks[e]!) !== 0) write(e, encoded[e]!, r);
  }
  if (pending !== undefined && pending.count > 0) pending.finish();
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
