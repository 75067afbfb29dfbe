/**
 * A lease in a JetStream key-value bucket: one holder per key at a time, so that one
 * processor of several acts on a KSC connection (docs/cluster.md, "KSC: one owner per KSC
 * connection").
 *
 * - The bucket's `ttl` (its stream's max_age) bounds the lease time: an entry not rewritten
 *   within it is removed by the server, whatever the clocks of the processors say. The
 *   holder's `ttlMs` must not exceed the bucket's real ttl (the caller reads it: a bucket
 *   made by another processor keeps that processor's ttl), and is lowered by `setTtl` when
 *   the bucket is found to keep entries for less.
 * - Taking: `create(key)` succeeds only when the key has no value (never written, expired,
 *   deleted); two processors trying at once cannot both succeed (the server checks the
 *   expected last sequence of the key's subject).
 * - Renewing: `update(key, value, revision)` every `renewMs`, a compare-and-set on the
 *   revision the holder wrote last; it fails when anyone else wrote the key since.
 * - Stepping down: when a renewal fails (conflict, timeout, no connection) the holder stops
 *   at once; and it never counts itself holder past `sentAt(last good renewal) + ttl`,
 *   which comes before the server expires the entry (stored after it was sent), so an old
 *   holder cut off from NATS has stopped before a new one can take the key.
 * - Releasing (a clean stop): the key is deleted, so another processor takes it at its
 *   next attempt instead of after the ttl.
 */
import type { KV } from 'nats';

export type LeaseChange = 'acquired' | 'lost' | 'released';

export interface LeaseOptions {
  /** The bucket (created by the caller with `ttl` as its max age). */
  kv: Pick<KV, 'get' | 'create' | 'update' | 'delete'>;
  key: string;
  /** This holder's id (the processor id): the value written. */
  holder: string;
  /** Lease time: at most the bucket's ttl (see setTtl). */
  ttlMs: number;
  /** Time between renewals (and between attempts to take the key); default ttl / 3. */
  renewMs?: number;
  /** Told when this holder acquires, loses or releases the lease; `owner` is the holder seen, when known. */
  onChange?(change: LeaseChange, detail: { owner?: string; reason?: string }): void;
  now?: () => number;
}

export class KvLease {
  private revision = 0;
  /** Local time until which this holder counts itself owner (0: not owner). */
  private until = 0;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private stopped = true;
  /** The holder last seen in the bucket (for logs), '' when none. */
  owner = '';
  private ttlMs: number;
  /** When the last successful take or renewal was sent (local time). */
  private sentAt = 0;
  private readonly now: () => number;

  constructor(private readonly o: LeaseOptions) {
    this.ttlMs = o.ttlMs;
    this.now = o.now ?? (() => performance.now());
  }

  /** Time between renewals (and between attempts to take the key). */
  get renewMs(): number {
    return this.o.renewMs ?? Math.max(50, Math.floor(this.ttlMs / 3));
  }

  /** The lease time in use (ms). */
  get leaseMs(): number {
    return this.ttlMs;
  }

  /**
   * Changes the lease time (the bucket was found to keep entries for another time than
   * assumed). A shorter one applies at once to the lease held: this holder counts itself
   * owner no longer than `sentAt(last good renewal) + ttlMs`, and the next renewal is
   * brought forward to a third of it.
   */
  setTtl(ttlMs: number): void {
    if (ttlMs === this.ttlMs) return;
    const shorter = ttlMs < this.ttlMs;
    this.ttlMs = ttlMs;
    if (this.until !== 0) this.until = Math.min(this.until, this.sentAt + ttlMs);
    if (shorter && this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
      this.schedule();
    }
  }

  /** True while this holder owns the key (checked against the local deadline on every call). */
  get held(): boolean {
    if (this.until === 0) return false;
    if (this.now() < this.until) return true;
    // No renewal went through within the ttl: step down now, whatever the timer does.
    this.lose('no renewal within the lease time');
    return false;
  }

  /** Starts trying to take (then renew) the lease; the first attempt is made before this resolves. */
  async start(): Promise<void> {
    this.stopped = false;
    await this.tick();
  }

  private schedule(): void {
    if (this.stopped || this.timer !== null) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.tick();
    }, this.renewMs);
    this.timer.unref();
  }

  /** One attempt: renew when held, else take when free. Never rejects. */
  tick(): Promise<void> {
    if (this.running !== null) return this.running;
    this.running = this.attempt().finally(() => {
      this.running = null;
      this.schedule();
    });
    return this.running;
  }

  private async attempt(): Promise<void> {
    if (this.stopped) return;
    const sentAt = this.now();
    const value = new TextEncoder().encode(this.o.holder);
    if (this.held) {
      try {
        const rev = await this.o.kv.update(this.o.key, value, this.revision);
        this.revision = rev;
        if (this.stopped) return;
        // The renewal went through after the local deadline had passed (a slow answer):
        // `held` stepped down meanwhile, but the compare-and-set proves nobody wrote the key
        // since, so this holder owns it again from `sentAt`, and says so (the owner's work
        // loop stopped when it lost the lease and must start again).
        const wasLost = this.until === 0;
        this.sentAt = sentAt;
        this.until = sentAt + this.ttlMs;
        if (wasLost) {
          this.owner = this.o.holder;
          this.o.onChange?.('acquired', { owner: this.o.holder });
        }
      } catch (e) {
        this.lose(`renewal failed: ${(e as Error).message}`);
      }
      return;
    }
    try {
      const e = await this.o.kv.get(this.o.key);
      const free = e === null || e.operation !== 'PUT';
      if (!free) {
        this.owner = e.string();
        return;
      }
      const rev = await this.o.kv.create(this.o.key, value);
      if (this.stopped) {
        await this.o.kv.delete(this.o.key, { previousSeq: rev }).catch(() => undefined);
        return;
      }
      this.revision = rev;
      this.sentAt = sentAt;
      this.until = sentAt + this.ttlMs;
      this.owner = this.o.holder;
      this.o.onChange?.('acquired', { owner: this.o.holder });
    } catch {
      // Someone else took it first, or NATS cannot be reached: try again at the next tick.
    }
  }

  private lose(reason: string): void {
    if (this.until === 0) return;
    this.until = 0;
    this.revision = 0;
    this.owner = '';
    this.o.onChange?.('lost', { reason });
  }

  /** Stops renewing; when held, deletes the key (compare-and-set) so another holder can take it at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    await this.running;
    if (this.until === 0) return;
    const rev = this.revision;
    this.until = 0;
    this.revision = 0;
    this.owner = '';
    await this.o.kv.delete(this.o.key, { previousSeq: rev }).catch(() => undefined);
    this.o.onChange?.('released', {});
  }
}
