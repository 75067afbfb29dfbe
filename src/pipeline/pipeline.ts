/**
 * The ingest pipeline: frame → decode (syslog, CEF) → normalizers → id, listener, peer →
 * JSON → every output whose route filter the event passes. Frames that are not events go
 * to the dead-letter output with their raw bytes and a reason code. Sources call
 * `frame()` for each frame of a read and `commit()` after the read, so each output queue
 * takes one append per read.
 */
import { isUtf8 } from 'node:buffer';
import { decodeFrame } from '../decode.js';
import type { FramingMode } from '../framing/framer.js';
import type { ListenerStats, Telemetry } from '../telemetry/telemetry.js';
import { isoFromMs } from '../time.js';
import { normalizeEvent, type Normalizer } from './normalize.js';
import type { OutputSlot } from './output-slot.js';
import type { CefdEvent } from '../event.js';

/** What a source knows about where a frame came from. */
export interface SourceContext {
  readonly listener: string;
  readonly stats: ListenerStats;
  readonly normalizers: readonly Normalizer[];
  /** `address:port` of the sender. */
  readonly peer: string;
}

export interface PipelineOptions {
  defaultZone: string;
  includeRaw: boolean;
}

/** Hook for code that watches events (KSC task status, response rules). */
export type EventTap = (event: CefdEvent) => void;

export class Pipeline {
  private slots: OutputSlot[];
  private pending: string[][];
  private deadPending: string[] = [];
  private readonly bootId: string;
  private seq = 0;
  private taps: EventTap[] = [];

  constructor(
    slots: OutputSlot[],
    private deadLetter: OutputSlot,
    private readonly telemetry: Telemetry,
    private opts: PipelineOptions,
  ) {
    this.slots = slots;
    this.pending = slots.map(() => []);
    // Event ids: boot time (ms, base 36) + a counter; unique across restarts.
    this.bootId = Date.now().toString(36);
  }

  /** Swaps outputs and options (config reload). Pending records are committed first. */
  reconfigure(slots: OutputSlot[], deadLetter: OutputSlot, opts: PipelineOptions): void {
    this.commit();
    this.slots = slots;
    this.pending = slots.map(() => []);
    this.deadLetter = deadLetter;
    this.opts = opts;
  }

  addTap(tap: EventTap): () => void {
    this.taps.push(tap);
    return () => {
      this.taps = this.taps.filter((t) => t !== tap);
    };
  }

  frame(buf: Buffer, mode: FramingMode | 'datagram', truncated: boolean, ctx: SourceContext): void {
    const stats = ctx.stats;
    if (mode === 'lf') stats.framesLf++;
    else if (mode === 'octet') stats.framesOctet++;
    else stats.framesDatagram++;
    if (truncated) this.telemetry.frameProblem(ctx.listener, mode === 'octet' ? 'frame_incomplete' : 'frame_truncated');
    const now = Date.now();
    const r = decodeFrame(buf, truncated, now, { defaultZone: this.opts.defaultZone, keepRaw: this.opts.includeRaw });
    if (!r.ok) {
      this.telemetry.frameUnparseable(ctx.listener, r.failure.code);
      this.deadLetterFrame(buf, r.failure.code, r.failure.message, ctx, now, truncated);
      return;
    }
    const event = r.event;
    event.id = `${this.bootId}-${(this.seq++).toString(36)}`;
    event.listener = ctx.listener;
    event.peer = ctx.peer;
    if (ctx.normalizers.length > 0) {
      const out = normalizeEvent(event, ctx.normalizers);
      if (out.kind === 'normalized') this.telemetry.eventNormalized(out.normalizer, out.type);
      else if (out.kind === 'failed') this.telemetry.normalizerFailed(out.normalizer, out.error);
    }
    stats.eventsParsed++;
    stats.lastEventMs = now;
    if (event.errors !== undefined || event.warnings !== undefined) this.telemetry.countProblems(stats, event.errors, event.warnings);
    for (let i = 0; i < this.taps.length; i++) {
      try {
        this.taps[i]!(event);
      } catch (e) {
        this.telemetry.log.error({ err: (e as Error).message }, 'an event tap threw');
      }
    }
    let json: string | undefined;
    const slots = this.slots;
    for (let i = 0; i < slots.length; i++) {
      const f = slots[i]!.filter;
      if (f !== undefined && !f.test(event)) continue;
      json ??= JSON.stringify(event);
      this.pending[i]!.push(json);
    }
  }

  /** A frame that is not an event, or a partial frame left at shutdown. */
  deadLetterFrame(buf: Buffer, reason: string, message: string, ctx: SourceContext, now = Date.now(), truncated = false): void {
    const rec: Record<string, unknown> = {
      time: isoFromMs(now),
      reason,
      message,
      listener: ctx.listener,
      peer: ctx.peer,
    };
    if (truncated) rec['truncated'] = true;
    if (isUtf8(buf)) rec['raw'] = buf.toString('utf8');
    else rec['rawBase64'] = buf.toString('base64');
    this.telemetry.deadLettered(reason);
    this.deadPending.push(JSON.stringify(rec));
  }

  /** Batches an output rejected for good: dead-lettered with the reason. */
  readonly rejectSink = (output: string, records: readonly string[], reason: string, error: string): void => {
    const time = JSON.stringify(isoFromMs(Date.now()));
    const head = `{"time":${time},"reason":${JSON.stringify(reason)},"message":${JSON.stringify(error.slice(0, 500))},"output":${JSON.stringify(output)},"event":`;
    const recs = records.map((r) => `${head}${r}}`);
    for (let i = 0; i < recs.length; i++) this.telemetry.deadLettered(reason);
    this.deadLetter.enqueueMany(recs);
  };

  /**
   * Hands the records of the current read to the output queues. `pausable` is false for
   * sources that cannot be paused (UDP): see OutputSlot.enqueueMany.
   */
  commit(pausable = true): void {
    const slots = this.slots;
    for (let i = 0; i < slots.length; i++) {
      const p = this.pending[i]!;
      if (p.length === 0) continue;
      this.pending[i] = [];
      slots[i]!.enqueueMany(p, pausable);
    }
    if (this.deadPending.length > 0) {
      const d = this.deadPending;
      this.deadPending = [];
      this.deadLetter.enqueueMany(d, pausable);
    }
  }
}
