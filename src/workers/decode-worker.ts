/**
 * A decode worker thread: takes the frames of one socket read (a "job"), runs
 * processFrame on each (decode, normalizers, routes, JSON) and sends back the events as
 * NDJSON bytes, with each event's route mask, the dead letters, and the counts. The bytes
 * go straight into the disk buffer and the outputs: the main thread never touches the
 * events themselves. See worker-pool.ts for the other side.
 */
import { parentPort } from 'node:worker_threads';
import { compileFilter } from '../filter/filter.js';
import { FrameCounts, processFrame, type FilterLike, type IngestEnv } from '../pipeline/ingest.js';
import { loadNormalizer, normalizerSpec, type Normalizer } from '../pipeline/normalize.js';
import type { InitMessage, JobMessage, ResultMessage, WorkerMessage } from './worker-protocol.js';

let env: IngestEnv = { defaultZone: 'UTC', includeRaw: false, filters: [] };
let chains = new Map<string, Normalizer[]>();
let version = -1;

async function init(m: InitMessage): Promise<void> {
  const filters: (FilterLike | undefined)[] = m.filters.map((f) => (f.trim() === '' ? undefined : compileFilter(f)));
  const next = new Map<string, Normalizer[]>();
  for (const [listener, specs] of Object.entries(m.chains)) {
    const chain: Normalizer[] = [];
    for (const spec of specs) chain.push(await loadNormalizer(normalizerSpec(spec), m.baseDir));
    next.set(listener, chain);
  }
  env = { defaultZone: m.defaultZone, includeRaw: m.includeRaw, filters };
  chains = next;
  version = m.version;
}

/** A growing byte buffer on its own ArrayBuffer (so it can be transferred). */
class Out {
  buf: Buffer;
  len = 0;
  constructor(size: number) {
    this.buf = Buffer.allocUnsafeSlow(Math.max(1024, size));
  }
  writeLine(s: string): void {
    const max = s.length * 3 + 1;
    if (this.len + max > this.buf.length) {
      const bigger = Buffer.allocUnsafeSlow(Math.max(this.buf.length * 2, this.len + max));
      this.buf.copy(bigger, 0, 0, this.len);
      this.buf = bigger;
    }
    this.len += this.buf.write(s, this.len, 'utf8');
    this.buf[this.len++] = 0x0a;
  }
}

function run(m: JobMessage): ResultMessage {
  const data = Buffer.from(m.data);
  const n = m.offsets.length >> 1;
  const normalizers = chains.get(m.listener) ?? [];
  const counts = new FrameCounts();
  // Events grow about 4x from the frame (full key names, typed values, the ksc object).
  const out = new Out(data.length * 4);
  const dead = new Out(256);
  const lineEnds = new Int32Array(n);
  const masks = new Uint32Array(n);
  let events = 0;
  let deadCount = 0;
  for (let i = 0; i < n; i++) {
    const frame = data.subarray(m.offsets[2 * i]!, m.offsets[2 * i + 1]!);
    const r = processFrame(frame, m.truncated[i] === 1, m.nowMs, m.listener, m.peer, normalizers, `${m.idPrefix}-${(m.firstSeq + i).toString(36)}`, env, counts);
    if ('dead' in r) {
      dead.writeLine(r.dead);
      deadCount++;
      continue;
    }
    if (r.mask === 0) continue;
    out.writeLine(r.json);
    lineEnds[events] = out.len;
    masks[events] = r.mask;
    events++;
  }
  return {
    kind: 'result',
    jobId: m.jobId,
    version,
    ndjson: out.buf.buffer as ArrayBuffer,
    ndjsonBytes: out.len,
    events,
    lineEnds,
    masks,
    dead: dead.buf.buffer as ArrayBuffer,
    deadBytes: dead.len,
    deadCount,
    counts: counts.toJSON(),
  };
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
      let res: ResultMessage;
      try {
        res = run(m);
      } catch (e) {
        // processFrame never throws by design; if it does, the frames are not lost: the
        // main thread dead-letters them.
        port.postMessage({ kind: 'job_failed', jobId: m.jobId, error: (e as Error).stack ?? String(e) });
        return;
      }
      port.postMessage(res, [res.ndjson, res.dead, res.lineEnds.buffer as ArrayBuffer, res.masks.buffer as ArrayBuffer]);
    });
  });
}
