/** Events per listener over the last hour, sampled every 10 s from the listener counters. */
import type { Telemetry } from '../telemetry/telemetry.js';

export const STEP_MS = 10_000;
export const SLOTS = 360;

export class RateHistory {
  private readonly series = new Map<string, number[]>();
  private readonly last = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private lastMs = 0;

  constructor(private readonly telemetry: Telemetry) {}

  start(): void {
    this.sample();
    this.timer = setInterval(() => this.sample(), STEP_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  private sample(): void {
    this.lastMs = Date.now();
    for (const [name, s] of this.telemetry.listeners) {
      const prev = this.last.get(name);
      this.last.set(name, s.eventsParsed);
      if (prev === undefined) continue;
      const arr = this.series.get(name) ?? [];
      arr.push(Math.max(0, s.eventsParsed - prev) / (STEP_MS / 1000));
      if (arr.length > SLOTS) arr.splice(0, arr.length - SLOTS);
      this.series.set(name, arr);
    }
  }

  /** Events/s per 10 s step, oldest first, the last one the step under way (its rate so far). */
  of(name: string): number[] {
    const s = this.telemetry.listeners.get(name);
    const prev = this.last.get(name) ?? 0;
    const secs = Math.max(1, (Date.now() - this.lastMs) / 1000);
    const now = s !== undefined ? Math.max(0, s.eventsParsed - prev) / secs : 0;
    const done = this.series.get(name) ?? [];
    return [...done.slice(Math.max(0, done.length - (SLOTS - 1))), now];
  }
}
