import { test, expect } from 'vitest';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { Writable } from 'node:stream';
import { StdoutOutput, STDOUT_CLOSED } from '../../src/outputs/stdout/stdout.js';
import type { SendResult } from '../../src/outputs/types.js';

function records(n: number, tag: string): string[] {
  return Array.from({ length: n }, (_, i) => JSON.stringify({ tag, i, msg: 'événement 木马 🐛', pad: 'y'.repeat(i % 50) }));
}
const ndjson = (r: string[]) => r.map((x) => x + '\n').join('');
const ticks = async (n = 20) => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
};

/** A stream that records every chunk and completes each write only when told to. */
class GatedSink extends Writable {
  chunks: Buffer[] = [];
  private held: Array<() => void> = [];
  constructor(highWaterMark: number, private auto = false) {
    super({ highWaterMark });
  }
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.chunks.push(chunk);
    if (this.auto) setImmediate(cb);
    else this.held.push(() => cb());
  }
  /** Completes the oldest held write. */
  release(): boolean {
    const next = this.held.shift();
    next?.();
    return next !== undefined;
  }
  get heldCount(): number {
    return this.held.length;
  }
  text(): string {
    return Buffer.concat(this.chunks).toString('utf8');
  }
}

function track(p: Promise<SendResult>): { result: SendResult | null } {
  const box: { result: SendResult | null } = { result: null };
  void p.then((r) => (box.result = r));
  return box;
}

test('writes each batch as one write, every record once, in order, byte-exact', async () => {
  const sink = new GatedSink(16 * 1024, true);
  const out = new StdoutOutput('out', {}, { stream: sink });
  await out.start();
  const batches = [records(500, 'a'), records(1, 'b'), [], records(37, 'c')];
  for (const b of batches) expect(await out.send({ records: b })).toEqual({ status: 'delivered' });
  await out.close();
  expect(sink.chunks.length).toBe(3); // the empty batch writes nothing
  expect(Buffer.concat(sink.chunks).equals(Buffer.from(ndjson(batches.flat()), 'utf8'))).toBe(true);
});

test('backpressure: send settles only once the stream has taken the batch', async () => {
  const sink = new GatedSink(1024);
  const out = new StdoutOutput('out', {}, { stream: sink });
  await out.start();
  const r = records(50, 'a');
  const pending = track(out.send({ records: r }));
  await ticks();
  expect(sink.heldCount).toBe(1);
  expect(pending.result).toBeNull();
  sink.release();
  await ticks();
  expect(pending.result).toEqual({ status: 'delivered' });
  expect(sink.text()).toBe(ndjson(r));
  await out.close();
});

test('backpressure: when write() returned false, send waits for drain even after its own chunk is written', async () => {
  const sink = new GatedSink(1024);
  const out = new StdoutOutput('out', {}, { stream: sink });
  await out.start();
  const r = records(50, 'a');
  const pending = track(out.send({ records: r }));
  // Another writer on the same stream (as pino would be on process.stdout) queues behind us.
  sink.write('{"other":true}\n');
  await ticks();
  sink.release(); // our chunk is out, the other one is still buffered: no drain yet
  await ticks();
  expect(pending.result).toBeNull();
  expect(sink.writableNeedDrain).toBe(true);
  sink.release();
  await ticks();
  expect(pending.result).toEqual({ status: 'delivered' });
  expect(sink.text()).toBe(ndjson(r) + '{"other":true}\n');
  await out.close();
});

test('a batch below the high-water mark is delivered as soon as written', async () => {
  const sink = new GatedSink(1 << 20, true);
  const out = new StdoutOutput('out', {}, { stream: sink });
  await out.start();
  expect(await out.send({ records: ['{"a":1}'] })).toEqual({ status: 'delivered' });
  expect(sink.text()).toBe('{"a":1}\n');
});

test('EPIPE (the reader went away) is rejected with stdout_closed, never thrown', async () => {
  // A reader that closes its end of the pipe and stays alive: writing gets EPIPE.
  const child = spawn(process.execPath, ['-e', 'require("fs").closeSync(0); process.stdout.write("closed"); setInterval(() => {}, 1000)'], {
    stdio: ['pipe', 'pipe', 'ignore'],
  });
  await once(child.stdout!, 'data');
  const out = new StdoutOutput('out', {}, { stream: child.stdin });
  await out.start();
  const big = records(2000, 'a');
  const first = await out.send({ records: big });
  expect(first.status).toBe('rejected');
  if (first.status === 'rejected') {
    expect(first.reason).toBe(STDOUT_CLOSED);
    expect(first.error).toMatch(/EPIPE/);
  }
  const second = await out.send({ records: records(1, 'b') });
  expect(second.status).toBe('rejected');
  if (second.status === 'rejected') expect(second.reason).toBe(STDOUT_CLOSED);
  await out.close();
  child.kill();
  await once(child, 'exit');
});

test('a destroyed stream is rejected with stdout_closed', async () => {
  const sink = new GatedSink(1024, true);
  const out = new StdoutOutput('out', {}, { stream: sink });
  await out.start();
  sink.destroy();
  const r = await out.send({ records: records(1, 'a') });
  expect(r).toMatchObject({ status: 'rejected', reason: STDOUT_CLOSED });
});

test('a stream destroyed while send waits is rejected, not left pending', async () => {
  const sink = new GatedSink(1024);
  const out = new StdoutOutput('out', {}, { stream: sink });
  await out.start();
  const p = out.send({ records: records(50, 'a') });
  await ticks();
  sink.destroy(new Error('EIO: i/o error'));
  const r = await p;
  expect(r).toMatchObject({ status: 'rejected', reason: STDOUT_CLOSED });
  if (r.status === 'rejected') expect(r.error).toMatch(/EIO|destroyed/);
});

test('an error that leaves the stream writable is a retry, and the next send goes through', async () => {
  let fail = true;
  const chunks: string[] = [];
  class Flaky extends Writable {
    override write(chunk: unknown, ...rest: unknown[]): boolean {
      if (fail) {
        fail = false;
        throw Object.assign(new Error('EAGAIN: resource temporarily unavailable'), { code: 'EAGAIN' });
      }
      return (super.write as (...a: unknown[]) => boolean)(chunk, ...rest);
    }
    override _write(chunk: Buffer, _e: BufferEncoding, cb: () => void): void {
      chunks.push(chunk.toString());
      cb();
    }
  }
  const out = new StdoutOutput('out', {}, { stream: new Flaky() });
  await out.start();
  const r = records(3, 'a');
  const first = await out.send({ records: r });
  expect(first.status).toBe('retry');
  if (first.status === 'retry') expect(first.error).toMatch(/EAGAIN/);
  expect(await out.send({ records: r })).toEqual({ status: 'delivered' });
  expect(chunks.join('')).toBe(ndjson(r));
});

test('close waits for the batch being written; sends after close are retry', async () => {
  const sink = new GatedSink(1024);
  const out = new StdoutOutput('out', {}, { stream: sink });
  await out.start();
  const sent = track(out.send({ records: records(5, 'a') }));
  let closed = false;
  const closing = out.close().then(() => (closed = true));
  await ticks();
  expect(closed).toBe(false);
  sink.release();
  await closing;
  expect(sent.result).toEqual({ status: 'delivered' });
  expect((await out.send({ records: records(1, 'b') })).status).toBe('retry');
  expect(sink.destroyed).toBe(false); // the output never closes the stream it was given
});

test('defaults to process.stdout without taking it over', async () => {
  const out = new StdoutOutput('stdout');
  await out.start();
  expect(await out.send({ records: [] })).toEqual({ status: 'delivered' });
  await out.close();
  expect(process.stdout.destroyed).toBe(false);
});
