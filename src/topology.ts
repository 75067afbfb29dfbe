/**
 * The daemon's factories, in one place: normalizer chains (loaded once, cached), output
 * runners with their queues (disk buffer or memory) and outputs, the dead-letter runner,
 * and sources, all through the registries (src/outputs/registry.ts,
 * src/sources/registry.ts). src/daemon.ts only orders start, stop and reload.
 */
import { join } from 'node:path';
import type { BufferConfig, Config, ListenerConfig, OutputConfig } from './config/types.js';
import { loadChain, type Normalizer, type NormalizerCache } from './pipeline/normalize.js';
import type { FlowControl } from './pipeline/flow-control.js';
import { OutputRunner } from './pipeline/output-runner.js';
import type { Pipeline } from './pipeline/pipeline.js';
import { MemoryQueue, type EventQueue } from './buffer/queue.js';
import { DiskQueue } from './buffer/disk-queue.js';
import { createDeadLetterOutput, createOutput } from './outputs/index.js';
import type { Output } from './outputs/types.js';
import { outputPlugin } from './outputs/registry.js';
import type { Source } from './sources/source.js';
import { sourcePlugin } from './sources/registry.js';
import type { Telemetry } from './telemetry/telemetry.js';

/** The state directory cannot be used: an operator must act (exit 78, no restart loop). */
export class StateDirError extends Error {
  override readonly name = 'StateDirError';
}

/** Whether an output's `buffer` gives it a disk buffer (`auto`: the output type's default). */
export function wantsDisk(b: BufferConfig, outputType: string): boolean {
  return b.type === 'disk' || (b.type === 'auto' && outputPlugin(outputType)?.diskBuffer === true);
}

/**
 * The names whose folder under `state_dir/buffers/` (and spill file) a configuration
 * uses: outputs with a disk buffer, and `dead_letter` when the dead-letter output has one.
 * Any other buffer there is orphaned (src/buffer/inventory.ts).
 */
export function diskBufferOwners(c: Config): Set<string> {
  const owners = new Set(c.outputs.filter((o) => wantsDisk(o.buffer, o.type)).map((o) => o.name));
  if (wantsDisk(c.dead_letter.buffer, 'file')) owners.add('dead_letter');
  return owners;
}

export class Topology {
  private readonly normalizerCache: NormalizerCache = new Map();

  constructor(
    private readonly telemetry: Telemetry,
    private readonly flow: FlowControl,
    private readonly pipeline: () => Pipeline | null,
    private readonly stateDir: () => string,
  ) {}

  /** A listener's (or sql source's) normalizer chain, loaded (modules are loaded once per daemon; normalize.ts's loadChain). */
  chain(l: Pick<ListenerConfig, 'normalizers'>, c: Config): Promise<Normalizer[]> {
    return loadChain(l.normalizers, c.base_dir, { cache: this.normalizerCache });
  }

  /** The output's queue: a disk buffer (default for all but stdout) or memory. */
  private queue(name: string, b: BufferConfig, capacity: number, outputType: string, whenFull: 'block' | 'drop_newest', slotRef: { slot?: OutputRunner }, reuse?: DiskQueue): EventQueue {
    if (!wantsDisk(b, outputType)) return new MemoryQueue(capacity);
    const t = this.telemetry;
    t.output(name).bufferMaxBytes = b.max_size;
    const dir = join(this.stateDir(), 'buffers', name);
    const opts = {
      maxBytes: b.max_size,
      fsync: b.fsync,
      fsyncIntervalMs: b.fsync_interval * 1000,
      onCorrupt: (bytes: number, where: string) => t.bufferCorrupt(name, bytes, where),
      onWriteError: (e: string) => t.bufferWriteFailed(name, e),
      onWriteRecovered: () => {
        t.bufferWriteRecovered(name);
        slotRef.slot?.recheck();
      },
      whenFull,
      onDropped: (n: number) => t.eventsDropped(name, n, 'queue_full'),
      // Beside the buffers, not in them: what a stop could not fit within max_size.
      spillFile: join(this.stateDir(), 'shutdown-spill', `${name}.ndjson`),
      onSpilled: (n: number, path: string, error?: string) => t.bufferSpilled(name, n, path, error),
    };
    if (reuse !== undefined) {
      reuse.setOptions(opts);
      return reuse;
    }
    let q: DiskQueue;
    try {
      q = DiskQueue.open({ dir, ...opts });
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      throw new StateDirError(`the disk buffer of output ${name} cannot be used: ${dir}: ${err.code ?? ''} ${err.message}`.replace(/\s+/g, ' '));
    }
    t.bufferReplay(name, q.replayed);
    return q;
  }

  /** An output's runner: its output (through the registry) and its queue (`reuse`: a reload's disk buffer). */
  runner(o: OutputConfig, reuse?: DiskQueue): OutputRunner {
    const ref: { slot?: OutputRunner } = {};
    ref.slot = new OutputRunner(
      {
        name: o.name,
        capacity: o.queue_max_events,
        whenFull: o.when_full,
        batchMax: o.batch_max_events,
        initialBackoffMs: o.retry.initial_backoff * 1000,
        maxBackoffMs: o.retry.max_backoff * 1000,
        encoding: o.encoding,
      },
      createOutput(o),
      this.queue(o.name, o.buffer, o.queue_max_events, o.type, o.when_full, ref, reuse),
      this.flow,
      this.telemetry,
      (name, recs, reason, err, codec) => this.pipeline()?.rejectSink(name, recs, reason, err, codec),
    );
    return ref.slot;
  }

  /** An output alone, not started (a failed reload gives it back to the runner it took a buffer from). */
  output(o: OutputConfig): Output {
    return createOutput(o);
  }

  /** The dead-letter output alone, not started (see output()). */
  deadLetterOutput(c: Config): Output {
    return createDeadLetterOutput(c.dead_letter);
  }

  /** A failed reload gives `q` back to `runner`, with the options and callbacks of its configuration `o`. */
  adoptQueue(o: OutputConfig, q: DiskQueue, runner: OutputRunner): void {
    this.queue(o.name, o.buffer, o.queue_max_events, o.type, o.when_full, { slot: runner }, q);
  }

  /** The same for the dead-letter output (configuration `c`). */
  adoptDeadLetterQueue(c: Config, q: DiskQueue, runner: OutputRunner): void {
    const d = c.dead_letter;
    this.queue('dead_letter', d.buffer, d.queue_max_events, 'file', 'block', { slot: runner }, q);
  }

  deadLetterRunner(c: Config, reuse?: DiskQueue): OutputRunner {
    const d = c.dead_letter;
    const ref: { slot?: OutputRunner } = {};
    ref.slot = new OutputRunner(
      { name: 'dead_letter', capacity: d.queue_max_events, whenFull: 'block', batchMax: 1000, initialBackoffMs: 100, maxBackoffMs: 30_000 },
      createDeadLetterOutput(d),
      this.queue('dead_letter', d.buffer, d.queue_max_events, 'file', 'block', ref, reuse),
      this.flow,
      this.telemetry,
      null,
    );
    return ref.slot;
  }

  /** A listener's source, through the registry. */
  source(l: ListenerConfig, chain: Normalizer[]): Promise<Source> {
    const p = sourcePlugin(l.type);
    if (p === undefined) throw new Error(`listener ${l.name}: unknown type ${JSON.stringify(l.type)}`);
    return p.create(l, { pipeline: this.pipeline()!, flow: this.flow, telemetry: this.telemetry, normalizers: chain });
  }
}
