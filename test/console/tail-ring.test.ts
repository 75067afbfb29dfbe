/**
 * The main thread's recent events (src/console/tail.ts) stay within `maxBytes` whatever the
 * events' size: frames larger than the 64 KiB the ring copies (a raised max_frame_bytes), and
 * events without a frame (SQL rows), whose size the frame cannot tell.
 */
import { expect, test } from 'vitest';
import { TailHub } from '../../src/console/tail.js';
import type { RecentSink } from '../../src/pipeline/pipeline.js';
import type { CefdEvent } from '../../src/event.js';

const MAX_BYTES = 1024 * 1024;

function hub(): { hub: TailHub; sink: RecentSink } {
  let sink: RecentSink | null = null;
  const h = new TailHub(1000, MAX_BYTES, (s) => (sink = s), () => Promise.resolve({ items: [], kept: 0 }));
  h.start();
  return { hub: h, sink: sink! };
}

const event = (i: number, text: string): CefdEvent => ({ id: `b-${i.toString(36)}`, listener: 'in', cef: { name: `e${i}`, extensions: { message: text } } }) as unknown as CefdEvent;

test('events from 512 KiB frames: the ring keeps no more of them than maxBytes holds', async () => {
  const { hub: h, sink } = hub();
  const text = 'm'.repeat(512 * 1024);
  for (let i = 0; i < 50; i++) sink.event(event(i, text), Buffer.from(`CEF:0|V|P|1|1|e${i}|5|msg=${text}`));
  const { kept, entries } = await h.search({ limit: 1000 });
  // Each kept event holds its 512 KiB message (as the event object, later as JSON).
  expect(kept * text.length).toBeLessThanOrEqual(MAX_BYTES);
  expect(kept).toBeGreaterThanOrEqual(1);
  expect(entries[0]!.id).toBe('b-1d'); // the newest (49) is kept
  h.close();
});

test('events without a frame (SQL rows): counted by their JSON', async () => {
  const { hub: h, sink } = hub();
  const text = 'r'.repeat(100 * 1024);
  for (let i = 0; i < 50; i++) sink.event(event(i, text), undefined);
  const { kept, entries } = await h.search({ limit: 1000 });
  expect(kept * text.length).toBeLessThanOrEqual(MAX_BYTES);
  expect(kept).toBeGreaterThanOrEqual(1);
  expect(JSON.parse(entries[0]!.json)).toMatchObject({ id: 'b-1d', cef: { extensions: { message: text } } });
  h.close();
});
