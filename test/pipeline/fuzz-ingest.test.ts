/**
 * Hostile input through the whole ingest path: random bytes, random framing,
 * absurd octet counts (up to 2^53 and beyond), long escape runs, invalid UTF-8 and a
 * 10 MB line, over real TCP into an in-process daemon. No crash, no hang, and every frame
 * accounted for: events + dead letters = frames (truncated frames are events flagged
 * `truncated`, and counted).
 */
import fc from 'fast-check';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { readNdjson, scrape, sendTcp, startDaemon, type TestDaemon } from '../helpers/daemon.js';

let d: TestDaemon;
beforeAll(async () => {
  d = await startDaemon(`
state_dir: "{dir}/state"
metrics: { host: 127.0.0.1, port: 0 }
listeners: [ { name: tcp, type: tcp, host: 127.0.0.1, port: 0, max_frame_bytes: 4KiB } ]
outputs: [ { name: events, type: file, path: "{dir}/events.ndjson" } ]
dead_letter: { path: "{dir}/dead.ndjson" }
`);
});
afterAll(async () => {
  await d.stop();
});

const piece = fc.oneof(
  { weight: 3, arbitrary: fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)) },
  { weight: 2, arbitrary: fc.constantFrom('CEF:0|', '|', '=', '\\', '\\\\', '\\=', ' ', '\n', '\r\n', '\0', '<13>1 ', '[event@23668 a="', '"]', 'cs1Label=', 'rt=').map((s) => Buffer.from(s)) },
  { weight: 1, arbitrary: fc.constantFrom('9007199254740993 ', '99999999999999999999999 ', '4097 ', '1 x', '65535 ').map((s) => Buffer.from(s)) },
  { weight: 1, arbitrary: fc.nat({ max: 5000 }).map((n) => Buffer.from(`CEF:0|V|P|1|2|n|5|msg=${'\\\\'.repeat(n)}\n`)) },
  { weight: 1, arbitrary: fc.constantFrom(Buffer.from([0xff, 0xfe, 0xc3, 0x28, 0xe2, 0x82]), Buffer.from([0xed, 0xa0, 0x80])) },
);

/**
 * Waits until every frame read has been decoded (on the workers too) and delivered: events +
 * unparseable = frames, nothing queued, and the counts unchanged for one more poll; at most
 * 30 s (a loaded machine), after which check() reports whatever is missing.
 */
async function settle(): Promise<Map<string, number>> {
  let last = '';
  const deadline = Date.now() + 30_000;
  for (;;) {
    const m = await scrape(d.metricsPort());
    const get = (k: string) => m.get(k) ?? 0;
    const frames = get('cefd_frames_total{listener="tcp",framing="lf"}') + get('cefd_frames_total{listener="tcp",framing="octet"}');
    const decoded = get('cefd_events_parsed_total{listener="tcp"}') + get('cefd_dead_letters_total{reason="unparseable"}');
    const key = `${frames}/${get('cefd_output_sent_events_total{output="events"}')}/${get('cefd_output_sent_events_total{output="dead_letter"}')}`;
    const idle = get('cefd_output_queue_events{output="events"}') === 0 && get('cefd_output_queue_events{output="dead_letter"}') === 0;
    if ((key === last && idle && decoded === frames) || Date.now() > deadline) return m;
    last = key;
    await new Promise((r) => setTimeout(r, 60));
  }
}

function check(m: Map<string, number>): void {
  const get = (k: string) => m.get(k) ?? 0;
  const frames = get('cefd_frames_total{listener="tcp",framing="lf"}') + get('cefd_frames_total{listener="tcp",framing="octet"}');
  const events = get('cefd_events_parsed_total{listener="tcp"}');
  const unparseable = get('cefd_dead_letters_total{reason="unparseable"}');
  expect(events + unparseable).toBe(frames);
  expect(readNdjson(join(d.dir, 'events.ndjson')).length).toBe(events);
  let deadLetters = 0;
  for (const [k, v] of m) if (k.startsWith('cefd_dead_letters_total')) deadLetters += v;
  expect(readNdjson(join(d.dir, 'dead.ndjson')).length).toBe(deadLetters);
  expect(get('cefd_output_sent_events_total{output="events"}')).toBe(events);
}

test('random streams: no crash, every frame an event or a dead letter', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(piece, { minLength: 1, maxLength: 40 }), fc.nat({ max: 50 }), async (pieces, cut) => {
      const buf = Buffer.concat(pieces);
      // Random write sizes.
      const chunks: Buffer[] = [];
      const step = 1 + cut * 7;
      for (let i = 0; i < buf.length; i += step) chunks.push(buf.subarray(i, i + step));
      await sendTcp(d.port('tcp'), chunks);
      check(await settle());
    }),
    { numRuns: 40 },
  );
});

test('a 10 MB line is cut at max_frame_bytes, the rest discarded and counted; the next line is intact', async () => {
  const before = await settle();
  const huge = Buffer.alloc(10 * 1024 * 1024, 'x');
  await sendTcp(d.port('tcp'), [Buffer.from('CEF:0|V|P|1|2|n|5|msg='), huge, Buffer.from('\nCEF:0|V|P|1|2|after|5|a=b\n')]);
  const m = await settle();
  check(m);
  const discarded = (m.get('cefd_discarded_bytes_total{listener="tcp"}') ?? 0) - (before.get('cefd_discarded_bytes_total{listener="tcp"}') ?? 0);
  expect(discarded).toBe(22 + huge.length - 4096);
  const events = readNdjson(join(d.dir, 'events.ndjson'));
  const last = events[events.length - 1]!;
  expect((last['cef'] as { name: string }).name).toBe('after');
  const cut = events[events.length - 2]!;
  expect(cut['truncated']).toBe(true);
});

test('the daemon is still healthy', async () => {
  const res = await fetch(`http://127.0.0.1:${d.metricsPort()}/readyz`);
  expect(res.status).toBe(200);
});
