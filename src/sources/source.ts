/**
 * What a source is: sockets (or later a database) in, frames handed to the pipeline. Each
 * source type is a folder `src/sources/<type>/` that owns its config fragment and factory
 * (plugin.ts); src/sources/registry.ts lists them.
 */
import type { FlowControl } from '../pipeline/flow-control.js';
import type { Normalizer } from '../pipeline/normalize.js';
import type { Pipeline } from '../pipeline/pipeline.js';
import type { Telemetry } from '../telemetry/telemetry.js';

export interface Source {
  readonly name: string;
  /** The listener's loaded config (src/sources/<type>/config.ts). */
  readonly config: { readonly name: string; readonly type: string };
  /** Bound and ready. */
  readonly ready: boolean;
  start(): Promise<void>;
  /** Stop accepting, read what connections already sent (up to `graceMs`), close. */
  stop(graceMs: number): Promise<void>;
  /**
   * A source that acknowledges upstream (nats): stop taking input only. The daemon then
   * drains the pipeline and calls `stop`, which acknowledges what the outputs took and
   * closes the connection: a stop leaves nothing delivered but unacknowledged (which
   * would come again to another processor, a copy).
   */
  stopReading?(): Promise<void>;
  /** SIGHUP with an unchanged config: re-read certificate files. False: they were refused (the old ones stay). */
  reload(): boolean;
  /** The bound port (for port 0). */
  port(): number | undefined;
}

/** What the daemon gives a source to work with. */
export interface SourceDeps {
  readonly pipeline: Pipeline;
  /** Pauses and resumes reading when outputs are full (sources that can pause use it). */
  readonly flow: FlowControl;
  readonly telemetry: Telemetry;
  /** The listener's normalizer chain, loaded. */
  readonly normalizers: readonly Normalizer[];
}

/** `address:port` (`[v6]:port`) of a peer, IPv4-mapped IPv6 addresses shown as IPv4. */
export function peerOf(address: string | undefined, port: number | undefined): string {
  if (address === undefined) return 'unknown';
  const a = address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
  return a.includes(':') ? `[${a}]:${port ?? 0}` : `${a}:${port ?? 0}`;
}
