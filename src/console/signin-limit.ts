/**
 * Failed console sign-ins, limited per client address and overall, so that the admin
 * token and the console password cannot be guessed at speed (and so that scrypt, which
 * each password check runs, cannot be used to load the daemon).
 *
 * - Per address: the first `free` failures cost nothing; each further one locks the
 *   address out for twice as long as the one before (`baseMs`, 2×, 4×, ... up to `maxMs`).
 *   A success clears the address; an address is forgotten after `forgetMs` (24 h) without
 *   a failure. That is much longer than the longest lock: were it the same, waiting out the
 *   longest lock would also reset the address to its free failures (about 720 guesses a day
 *   instead of about 110).
 * - Overall: a bucket of `globalBurst` failures that refills at `globalPerMinute`; when it
 *   is empty every address waits for the next token (many addresses guessing at once).
 *
 * The address is the TCP peer: behind a reverse proxy it is the proxy's (docs/console.md).
 */

export interface SigninLimitOptions {
  free?: number;
  baseMs?: number;
  maxMs?: number;
  /** An address without a failure for this long starts afresh (keep it well above `maxMs`). */
  forgetMs?: number;
  globalBurst?: number;
  globalPerMinute?: number;
  /** Most addresses remembered; the longest idle go first. */
  maxAddresses?: number;
  now?: () => number;
}

interface AddressState {
  fails: number;
  untilMs: number;
  lastMs: number;
}

export class SigninLimiter {
  private readonly free: number;
  private readonly baseMs: number;
  private readonly maxMs: number;
  private readonly forgetMs: number;
  private readonly burst: number;
  private readonly perMs: number;
  private readonly maxAddresses: number;
  private readonly now: () => number;
  private readonly addrs = new Map<string, AddressState>();
  private tokens: number;
  private tokensAtMs: number;

  constructor(o: SigninLimitOptions = {}) {
    this.free = o.free ?? 5;
    this.baseMs = o.baseMs ?? 1_000;
    this.maxMs = o.maxMs ?? 15 * 60_000;
    this.forgetMs = Math.max(this.maxMs, o.forgetMs ?? 24 * 3_600_000);
    this.burst = o.globalBurst ?? 100;
    this.perMs = (o.globalPerMinute ?? 30) / 60_000;
    this.maxAddresses = o.maxAddresses ?? 10_000;
    this.now = o.now ?? Date.now;
    this.tokens = this.burst;
    this.tokensAtMs = this.now();
  }

  private refill(now: number): void {
    this.tokens = Math.min(this.burst, this.tokens + (now - this.tokensAtMs) * this.perMs);
    this.tokensAtMs = now;
  }

  /**
   * Milliseconds `address` has to wait before its next attempt (0: it may try now), and
   * whether the per-address lock or the overall bucket says so.
   */
  check(address: string): { waitMs: number; scope: 'address' | 'global' | null } {
    const now = this.now();
    const a = this.addrs.get(address);
    if (a !== undefined && a.untilMs > now) return { waitMs: a.untilMs - now, scope: 'address' };
    this.refill(now);
    if (this.tokens < 1) return { waitMs: Math.ceil((1 - this.tokens) / this.perMs), scope: 'global' };
    return { waitMs: 0, scope: null };
  }

  /** A wrong token or password from `address`. */
  failed(address: string): void {
    const now = this.now();
    this.refill(now);
    this.tokens = Math.max(0, this.tokens - 1);
    let a = this.addrs.get(address);
    if (a === undefined || now - a.lastMs > this.forgetMs) {
      a = { fails: 0, untilMs: 0, lastMs: now };
      this.sweep(now);
    }
    this.addrs.delete(address);
    a.fails++;
    a.lastMs = now;
    if (a.fails > this.free) a.untilMs = now + Math.min(this.maxMs, this.baseMs * 2 ** Math.min(30, a.fails - this.free - 1));
    // Map order is insertion order: re-inserted, the most recently failed address is last.
    this.addrs.set(address, a);
  }

  succeeded(address: string): void {
    this.addrs.delete(address);
  }

  private sweep(now: number): void {
    for (const [k, a] of this.addrs) {
      if (now - a.lastMs > this.forgetMs || this.addrs.size >= this.maxAddresses) this.addrs.delete(k);
      else break;
    }
  }
}
