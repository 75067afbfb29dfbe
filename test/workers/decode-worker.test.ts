/**
 * The decode worker's result (src/workers/decode-worker.ts) holds exactly what processFrame
 * makes on the main thread for the same frames: per encoder the records, one per line, with
 * each one's end and route mask, and the dead letters. Jobs of very different sizes and
 * output-to-input ratios in a row (the worker sizes its output buffers from the jobs before),
 * jobs with and without dead letters, routes that take every event and routes that take some.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { WorkerPool, type JobOutcome } from '../../src/workers/worker-pool.js';
import { FrameCounts, eventId, processFrame, type IngestEnv } from '../../src/pipeline/ingest.js';
import { compileRoutes, type RouteSpec } from '../../src/pipeline/router.js';
import { loadChain, type Normalizer } from '../../src/pipeline/normalize.js';
import type { ResultMessage } from '../../src/workers/worker-protocol.js';
import { SourceState } from '../../src/pipeline/source-state.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const KSC = readFileSync(fileURLToPath(new URL('../../fixtures/ksc/samples.txt', import.meta.url)), 'utf8')
  .split('\n')
  .filter((l) => l.length > 0 && !l.startsWith('#'));

const ROUTES: RouteSpec[] = [
  { encoding: { codec: 'native' } },
  { filter: 'cef.deviceProduct == "SecurityCenter"', encoding: { codec: 'ecs' } },
  { encoding: { codec: 'cef' } },
  { encoding: { codec: 'native', only_fields: ['id', 'cef.name'] } },
];
const NOW = Date.parse('2026-12-01T10:00:00.000Z');
/** Every JSON encoder, field options, and non-default event options (the native value is then the expanded event). */
const OTHER_ROUTES: RouteSpec[] = [
  { encoding: { codec: 'native' } },
  { encoding: { codec: 'kuma' } },
  { filter: 'cef.deviceProduct == "SecurityCenter"', encoding: { codec: 'ecs', except_fields: ['cef.extensions.message'] } },
  { encoding: { codec: 'cef' } },
  { encoding: { codec: 'native', except_fields: ['bad'] } },
];
const OTHER_EVENT = { ksc: 'full', typed: 'all' } as const;

let pool: WorkerPool;
let env: IngestEnv;
let chain: Normalizer[];

beforeAll(async () => {
  pool = new WorkerPool(1, () => {});
  await pool.init({ defaultZone: 'UTC', includeRaw: false, routes: ROUTES, event: {}, chains: { l: ['ksc'] }, baseDir: root });
  env = { defaultZone: 'UTC', includeRaw: false, routes: compileRoutes(ROUTES, {}) };
  chain = await loadChain(['ksc'], root);
});

afterAll(async () => {
  await pool.close();
});

function submit(frames: Buffer[], firstSeq: number, on: WorkerPool = pool): Promise<ResultMessage> {
  // Gathered as the pipeline gathers a source's frames (in shared memory).
  const st = new SourceState();
  for (const f of frames) st.gather(f, false);
  const g = st.take();
  return new Promise((resolve, reject) =>
    on.submit({ listener: 'l', peer: '192.0.2.7:514', nowMs: NOW, idPrefix: 'p', firstSeq, data: g.memory, offsets: g.offsets, truncated: g.flags }, (o: JobOutcome) =>
      o.ok ? resolve(o.result) : reject(new Error(o.error)),
    ),
  );
}

/** What the main thread makes of the same frames: per encoder the lines and masks, and the dead letters. */
function inThread(frames: Buffer[], firstSeq: number, normalizers: Normalizer[] = chain, e: IngestEnv = env) {
  const routes = e.routes;
  const counts = new FrameCounts();
  const blocks = routes.encoders.map(() => ({ text: '', masks: [] as number[], ends: [] as number[] }));
  let dead = '';
  let deadCount = 0;
  const encoded: string[] = [];
  frames.forEach((f, i) => {
    const r = processFrame(f, false, NOW, 'l', '192.0.2.7:514', normalizers, eventId('p', firstSeq + i), e, counts, encoded);
    if (typeof r !== 'number') {
      dead += `${r.dead}\n`;
      deadCount++;
      return;
    }
    routes.encoders.forEach((_, e) => {
      if ((r & routes.encoderMasks[e]!) === 0) return;
      const b = blocks[e]!;
      b.text += `${encoded[e]!}\n`;
      b.masks.push(r);
      b.ends.push(Buffer.byteLength(b.text));
    });
  });
  return { blocks, dead, deadCount, counts: counts.toJSON() };
}

function sortedCounts(c: ResultMessage['counts']): Record<string, unknown> {
  return Object.fromEntries(Object.entries(c).map(([k, v]) => [k, Array.isArray(v) ? [...(v as [string, unknown][])].sort((a, b) => a[0].localeCompare(b[0])) : v]));
}

function check(res: ResultMessage, frames: Buffer[], firstSeq: number, normalizers?: Normalizer[], e?: IngestEnv): ReturnType<typeof inThread> {
  const want = inThread(frames, firstSeq, normalizers, e);
  expect(res.blocks.length).toBe(want.blocks.length);
  res.blocks.forEach((b, e) => {
    const w = want.blocks[e]!;
    expect(Buffer.from(b.bytes, 0, b.length).toString('utf8')).toBe(w.text);
    expect(b.events).toBe(w.masks.length);
    expect([...b.masks]).toEqual(w.masks);
    expect([...b.lineEnds]).toEqual(w.ends);
  });
  expect(res.deadCount).toBe(want.deadCount);
  expect(Buffer.from(res.dead, 0, res.deadBytes).toString('utf8')).toBe(want.dead);
  // The same counts (a dead-lettered unencodable event is counted when its batch is written: order aside).
  expect(sortedCounts(res.counts)).toEqual(sortedCounts(want.counts));
  return want;
}

test('a worker job gives the records, line ends, masks and dead letters the main thread would make', async () => {
  // Many small KSC events first (the buffers learn their size), then few events that grow
  // far more in the output (escapes, non-ASCII, a non-BMP character, U+2028, a lone
  // surrogate's replacement): the buffers must grow rather than cut a record.
  const small = Array.from({ length: 400 }, (_, i) => Buffer.from(KSC[i % KSC.length]!));
  const grows = [
    `CEF:0|V|P|1|1|${'"\\\\'.repeat(3000)}|5|msg=${'\\n"'.repeat(4000)}`,
    `CEF:0|V|P|1|2|имя ${'й'.repeat(2000)}|5|msg=${'😀\u2028'.repeat(2000)} cs1=x cs1Label=y`,
    `CEF:0|V|P|1|3|n|5|msg=${'\u0001\u001f'.repeat(3000)}`,
  ].map((s) => Buffer.from(s));
  const bad = Buffer.from('\u0000\u0001 not syslog, not CEF');
  // One event, then more bad frames than the worker holds before writing (64), then events:
  // written in between, still in frame order.
  const mostlyBad = [small[0]!, ...Array.from({ length: 150 }, () => bad), ...small.slice(1, 11)];
  const jobs: Buffer[][] = [small, grows, [...small.slice(0, 50), bad, ...grows.slice(0, 1), bad], small.slice(0, 3), mostlyBad, small];
  let seq = 0;
  for (const frames of jobs) {
    const res = await submit(frames, seq);
    check(res, frames, seq);
    seq += frames.length;
  }
});

test('a job without dead letters sends an empty dead-letter buffer; the next one with some still gets them', async () => {
  const frames = KSC.slice(0, 5).map((l) => Buffer.from(l));
  const clean = await submit(frames, 0);
  expect(clean.deadCount).toBe(0);
  expect(clean.deadBytes).toBe(0);
  const withDead = [...frames, Buffer.from('')];
  const res = await submit(withDead, 5);
  expect(res.deadCount).toBe(1);
  check(res, withDead, 5);
});

test('an event a normalizer made unencodable (a BigInt, a cycle) among hundreds is dead-lettered alone, in its place; the others are written in order', async () => {
  // The worker writes JSON records many per JSON.stringify (src/workers/json-batch.ts): one
  // bad event must neither take its neighbours with it nor shift them.
  const dir = mkdtempSync(join(tmpdir(), 'cefd-test-worker-'));
  const path = join(dir, 'bad.mjs');
  writeFileSync(
    path,
    `export default { name: 'bad', accepts: () => true, normalize(event) {
      const n = event.cef?.name ?? '';
      if (n.includes('BIG')) return { data: { n: 10n }, type: 'big' };
      if (n.includes('CYCLE')) { const o = { n }; o.self = o; return { data: o, type: 'cycle' }; }
      return { data: { ok: true }, type: 'ok' };
    } };\n`,
  );
  const specs = ['ksc', path];
  const other = new WorkerPool(1, () => {});
  try {
    await other.init({ defaultZone: 'UTC', includeRaw: false, routes: OTHER_ROUTES, event: OTHER_EVENT, chains: { l: specs }, baseDir: root });
    const normalizers = await loadChain(specs, root);
    const frames = Array.from({ length: 300 }, (_, i) =>
      Buffer.from(i === 0 || i === 64 || i === 65 || i === 299 ? `CEF:0|V|P|1|${i}|${i % 2 ? 'BIG' : 'CYCLE'} ${i}|5|msg=m${i}` : KSC[i % KSC.length]!),
    );
    const res = await submit(frames, 0, other);
    const want = check(res, frames, 0, normalizers, { defaultZone: 'UTC', includeRaw: false, routes: compileRoutes(OTHER_ROUTES, OTHER_EVENT) });
    const unencodable = want.dead
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as { reason: string; raw: string })
      .filter((d) => d.reason === 'event_unserializable');
    expect(unencodable.map((d) => d.raw)).toEqual([0, 64, 65, 299].map((i) => frames[i]!.toString()));
    expect(res.blocks[0]!.events + res.deadCount).toBe(300);
    expect(new Map(res.counts.unparseable).get('event_unserializable')).toBe(4);
  } finally {
    await other.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
