/**
 * Daemon extensions: features that live beside the ingest pipeline (the KSC integration:
 * asset import, task status, response rules, the admin API). An extension starts after
 * the outputs and before the listeners, may see every event (after the normalizers, before
 * routing: it may add fields, such as `assets`), and stops after the listeners.
 */
import type { Logger } from 'pino';
import type { Config } from '../config/types.js';
import type { CefdEvent, EventOrigin } from '../event.js';
import type { Telemetry } from '../telemetry/telemetry.js';
import type { FindingsHandler, KscWatchSpec } from '../ksc/watch.js';
import type { RecentOptions, RecentSink } from '../pipeline/pipeline.js';
import type { RecentItem, RecentQuery } from '../workers/worker-protocol.js';

export interface DaemonContext {
  readonly config: Config;
  readonly telemetry: Telemetry;
  readonly log: Logger;
  /**
   * Sees every event after the normalizers and before routing, with its origin (listener,
   * peer, TLS client certificate), on the main thread: while a tap is registered, events
   * are decoded on the main thread. Prefer `watchEvents`.
   */
  addTap(tap: (event: CefdEvent, origin: EventOrigin) => void): () => void;
  /**
   * The KSC integration's per-event work (ksc/watch.ts), run where events are decoded (the
   * decode workers); its findings come to `onFindings` on the main thread with the frames'
   * origin (listener, peer, TLS client certificate). Call again whenever the spec changes
   * (rules, assets); null stops it.
   */
  watchEvents(spec: KscWatchSpec | null, onFindings: FindingsHandler): void;
  /**
   * The console's recent events (Pipeline.setRecent): kept by the decode workers (queried
   * with `queryRecent`), events decoded on the main thread to `sink.event`, and while `all`
   * every event to `sink.block`; null stops it.
   */
  recentEvents?(sink: RecentSink | null, o: RecentOptions): void;
  queryRecent?(q: RecentQuery): Promise<{ items: RecentItem[]; kept: number }>;
  /**
   * Holds the upstream acknowledgement of submitted frames (a `nats` source) until the
   * promise `hold` returns after each batch settles; a rejection gives the batch back.
   */
  holdAcks?(hold: () => Promise<void> | undefined): () => void;
  /** Decode worker threads in use (0: decoding on the main thread). */
  workers?(): number;
}

export interface DaemonExtension {
  readonly name: string;
  start(ctx: DaemonContext): Promise<void>;
  /**
   * SIGHUP with a new valid configuration, once the daemon has applied the rest of it. A
   * rejection counts the reload as failed (`config_reload_failed`, the rest stays applied:
   * src/daemon.ts); the extension keeps running what it could not change.
   */
  reload?(config: Config): Promise<void>;
  stop(): Promise<void>;
  /** What is not ready yet, for /readyz. */
  notReady?(): string[];
}
