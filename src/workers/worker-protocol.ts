/** Messages between the pipeline and its decode workers (decode-worker.ts, worker-pool.ts). */
import type { FrameCountsData } from '../pipeline/ingest.js';

export interface InitMessage {
  kind: 'init';
  version: number;
  defaultZone: string;
  includeRaw: boolean;
  /** Route filter source of each output, in order ('' = every event). */
  filters: string[];
  /** Normalizer specs (names or module paths) per listener. */
  chains: Record<string, string[]>;
  /** Folder module paths are relative to. */
  baseDir: string;
}

export interface JobMessage {
  kind: 'job';
  jobId: number;
  listener: string;
  peer: string;
  nowMs: number;
  idPrefix: string;
  firstSeq: number;
  /** The frames' bytes, back to back. */
  data: ArrayBuffer;
  /** Start and end of each frame in `data`. */
  offsets: Int32Array;
  /** 1 where the frame was truncated. */
  truncated: Uint8Array;
}

export type WorkerMessage = InitMessage | JobMessage;

export interface ResultMessage {
  kind: 'result';
  jobId: number;
  version: number;
  /** The routed events as NDJSON (the first `ndjsonBytes` bytes). */
  ndjson: ArrayBuffer;
  ndjsonBytes: number;
  events: number;
  /** End offset (after its newline) of each event line. */
  lineEnds: Int32Array;
  /** Route mask of each event (bit i: output i). */
  masks: Uint32Array;
  dead: ArrayBuffer;
  deadBytes: number;
  deadCount: number;
  counts: FrameCountsData;
}

export type WorkerReply =
  | ResultMessage
  | { kind: 'ready'; version: number }
  | { kind: 'init_failed'; version: number; error: string }
  | { kind: 'job_failed'; jobId: number; error: string };
