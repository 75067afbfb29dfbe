/**
 * Daemon extensions: features that live beside the ingest pipeline (the KSC integration:
 * asset import, task status, response rules, the admin API). An extension starts after
 * the outputs and before the listeners, sees every event through a tap (after the
 * normalizers, before routing: it may add fields, such as `assets`), and stops after the
 * listeners.
 */
import type { Logger } from 'pino';
import type { Config } from '../config/types.js';
import type { CefdEvent, EventOrigin } from '../event.js';
import type { Telemetry } from '../telemetry/telemetry.js';

export interface DaemonContext {
  readonly config: Config;
  readonly telemetry: Telemetry;
  readonly log: Logger;
  /** Sees every event after the normalizers and before routing; runs on the hot path. */
  addTap(tap: (event: CefdEvent, origin: EventOrigin) => void): () => void;
  /** A copy of every event and its frame while set (the console's live tail); off the hot path otherwise. */
  addTail?(tail: (event: CefdEvent, frame: Buffer) => void): () => void;
  /** Decode worker threads in use (0: decoding on the main thread). */
  workers?(): number;
}

export interface DaemonExtension {
  readonly name: string;
  start(ctx: DaemonContext): Promise<void>;
  /** SIGHUP with a new valid configuration. */
  reload?(config: Config): Promise<void>;
  stop(): Promise<void>;
  /** What is not ready yet, for /readyz. */
  notReady?(): string[];
}
