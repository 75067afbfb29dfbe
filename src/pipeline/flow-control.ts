/**
 * Flow control: the one backpressure signal. An output runner whose queue is full
 * (`when_full: block`) blocks; while anyone blocks, every registered source is paused
 * (reading from its sockets stops), and they resume when the last one unblocks.
 */
import type { Telemetry } from '../telemetry/telemetry.js';

/** What flow control needs from a source (or from one of its connections). */
export interface Pausable {
  pause(): void;
  resume(): void;
}

export class FlowControl {
  private readonly blocking = new Set<string>();
  private readonly sources = new Set<Pausable>();

  constructor(private readonly telemetry: Pick<Telemetry, 'setPaused'>) {}

  get paused(): boolean {
    return this.blocking.size > 0;
  }

  /** Registers a source (paused at once if flow is blocked); returns its unregister. */
  register(source: Pausable): () => void {
    this.sources.add(source);
    if (this.paused) source.pause();
    return () => this.sources.delete(source);
  }

  /** `who` is full: pause every source (once, whoever blocks first). */
  block(who: string, why = `queue of output ${who} is full`): void {
    if (this.blocking.has(who)) return;
    this.blocking.add(who);
    if (this.blocking.size === 1) {
      this.telemetry.setPaused(true, why);
      for (const s of this.sources) s.pause();
    }
  }

  /** `who` drained: resume the sources when nobody else blocks. */
  unblock(who: string): void {
    if (!this.blocking.delete(who)) return;
    if (this.blocking.size === 0) {
      this.telemetry.setPaused(false);
      for (const s of this.sources) s.resume();
    }
  }
}
