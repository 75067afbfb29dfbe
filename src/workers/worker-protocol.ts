/** Messages between the pipeline and its decode workers (decode-worker.ts, worker-pool.ts). */
import type { FrameCountsData } from '../pipeline/ingest.js';
import type { RouteSpec } from '../pipeline/router.js';
import type { KscFindings, KscWatchSpec } from '../ksc/watch.js';
import type { EventOrigin } from '../event.js';
import type { EventOptions } from '../codecs/encoders/native.js';

export interface InitMessage {
  kind: 'init';
  version: number;
  defaultZone: string;
  includeRaw: boolean;
  /** Route (filter and encoding) of each output, in order. */
  routes: RouteSpec[];
  /** The config's `event` section (the native encoding's options). */
  event: EventOptions;
  /** Normalizer specs (names or module paths) per listener. */
  chains: Record<string, string[]>;
  /** Folder module paths are relative to. */
  baseDir: string;
}

/** The KSC integration's per-event work from now on (null: none). */
export interface WatchMessage {
  kind: 'watch';
  spec: KscWatchSpec | null;
}

export interface JobMessage {
  kind: 'job';
  jobId: number;
  listener: string;
  peer: string;
  /** The sender's TLS client certificate fingerprint (TLS listeners): the findings' origin carries it. */
  tlsFingerprint?: string;
  nowMs: number;
  idPrefix: string;
  firstSeq: number;
  /**
   * The frames' bytes, back to back: a SharedArrayBuffer the pipeline reuses once the result
   * is applied (so nothing of it may be kept past the job; it may be longer than the frames),
   * or an ArrayBuffer transferred to the worker.
   */
  data: ArrayBuffer | SharedArrayBuffer;
  /** Start and end of each frame in `data`. */
  offsets: Int32Array;
  /** 1 where the frame was truncated. */
  truncated: Uint8Array;
  /**
   * Frames that carry their own facts (a processor's `nats` source: a receiver read them):
   * the job's `listener` then only names the normalizer chain, and each frame has its own
   * id, received time and origin instead of idPrefix/firstSeq, nowMs and the job's
   * listener and peer.
   */
  carried?: CarriedFacts;
}

/** Per frame of a job: what the receiver that read it said about it (src/nats/headers.ts). */
export interface CarriedFacts {
  ids: string[];
  /** ms since the epoch. */
  receivedMs: Float64Array;
  /** Index of the frame's origin in `origins`. */
  origin: Uint32Array;
  /** Listener, peer and TLS client certificate fingerprint (empty: none) of each origin, flat: [listener0, peer0, fp0, listener1, ...]. */
  origins: string[];
}

/**
 * The console's recent events (recent.ts): keep the last `max` events decoded (0: none, the
 * default) and `bytes` of their frames; `all`: a live tail is open, results carry every
 * event of their job (ResultMessage.recent).
 */
export interface RecentMessage {
  kind: 'recent';
  max: number;
  bytes: number;
  all: boolean;
}

/** What the console looks for among the recent events: one id, or text and a filter. */
export interface RecentQuery {
  id?: string;
  text?: string;
  filter?: string;
  limit: number;
}

export interface RecentQueryMessage {
  kind: 'recent_query';
  reqId: number;
  query: RecentQuery;
}

/** A recent event as a query answers it. */
export interface RecentItem {
  id: string;
  /** Its number since boot (the order events were read in). */
  seq: number;
  /** When its read arrived (ms). */
  ms: number;
  listener: string;
  /** The native JSON. */
  json: string;
  /** The frame as text (its first 64 KiB; empty when the frame's bytes were overwritten). */
  raw: string;
}

export type WorkerMessage = InitMessage | WatchMessage | RecentMessage | RecentQueryMessage | JobMessage;

/** Every event of a job while a live tail is open (recent.ts), oldest first. */
export interface RecentBlock {
  /** Per event its native JSON, then the first bytes of its frame, back to back. */
  bytes: ArrayBuffer;
  /** Per event two offsets: the end of its JSON, the end of its frame (each starts at the end before). */
  ends: Int32Array;
  /** Per event the index of its frame in the job (its id: the job's `firstSeq` + index). */
  frames: Int32Array;
}

/** The routed events of a job in one encoding, one record per line. */
export interface EncodedBlock {
  /** The records (the first `length` bytes), each followed by a newline. */
  bytes: ArrayBuffer;
  length: number;
  events: number;
  /** End offset (after its newline) of each record. */
  lineEnds: Int32Array;
  /** Route mask of each record's event (bit i: output i). */
  masks: Uint32Array;
}

export interface ResultMessage {
  kind: 'result';
  jobId: number;
  version: number;
  /** One block per encoder in use, in the order of the routes' encoders. */
  blocks: EncodedBlock[];
  dead: ArrayBuffer;
  deadBytes: number;
  deadCount: number;
  counts: FrameCountsData;
  /** Where the job's frames came from (listener, peer, TLS client certificate), as the job said. */
  origin: EventOrigin;
  /** What the KSC watch found in these events, when anything. */
  ksc?: KscFindings;
  /** A job with carried facts: what the KSC watch found, per run of frames of one origin, in order. */
  findings?: { origin: EventOrigin; ksc: KscFindings }[];
  /** Every event of the job, while a live tail is open (RecentMessage.all). */
  recent?: RecentBlock;
}

export type WorkerReply =
  | ResultMessage
  | { kind: 'ready'; version: number }
  | { kind: 'init_failed'; version: number; error: string }
  | { kind: 'job_failed'; jobId: number; error: string }
  | { kind: 'recent_items'; reqId: number; items: RecentItem[]; kept: number };
