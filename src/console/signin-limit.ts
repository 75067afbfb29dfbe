/**
 * Failed sign-ins and bearer tokens, limited per client address and, for password checks,
 * overall: so that the admin token and the console password cannot be guessed at speed
 * (and so that scrypt, which each password check runs, cannot be used to load the daemon),
 * while nobody else's failures can keep a user with the right secret out.
 *
 * - Per address: the first `free` failures cost nothing; each further one locks the
 *   address out for twice as long as the one before (`baseMs`, 2×, 4×, ... up to `maxMs`).
 *   A success clears the address; an address is forgotten after `forgetMs` (24 h) without
 *   a failure. That is much longer than the longest lock: were it the same, waiting out the
 *   longest lock would also reset the address to its free failures (about 720 guesses a day
 *   instead of about 110). An IPv6 address counts as its /64 (one host gets a whole /64 and
 *   could otherwise change address at every guess).
 * - Overall, for password checks only: a bucket of `globalBurst` failed password checks
 *   that refills at `globalPerMinute`. It holds only addresses that have failures on record
 *   (checkPassword): an address that never failed (or whose success cleared it) is checked
 *   at once, so that many addresses guessing together cannot lock everyone out. While the
 *   table of addresses is full (`maxAddresses`, someone guessing from that many) every
 *   address waits for the bucket. The token is a cheap SHA-256 compare and never waits for it.
 *
 * The address is the TCP peer: behind a reverse proxy it is the proxy's (docs/console.md).
 */
import { isIPv6 } from 'node:net';

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

/** How long to wait before the next attempt (0: now), and which limit says so. */
export interface LimitVerdict {
  waitMs: number;
  scope: 'address' | 'global' | null;
}

interface AddressState {
  fails: number;
  untilMs: number;
  lastMs: number;
}

/**
 * The key an address is limited under: an IPv6 address's /64 (`2001:db8:0:1::/64`), an
 * IPv4-mapped IPv6 address's IPv4 address, otherwise the address itself.
 */
export function addressKey(address: string): string {
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(address);
  if (mapped !== null) return mapped[1]!;
  const a = address.replace(/%.*$/, '');
  if (!isIPv6(a)) return address;
  const [head = '', tail] = a.split('::') as [string, string | undefined];
  const groups = head === '' ? [] : head.split(':');
  // Only the first four groups matter; `::` fills with zeros (an IPv4 tail comes after them).
  if (tail !== undefined) while (groups.length < 4) groups.push('0');
  return `${groups.slice(0, 4).map((g) => parseInt(g, 16).toString(16)).join(':')}::/64`;
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

  /** The address's record, unless it was idle long enough to be forgotten. */
  private record(key: string, now: number): AddressState | undefined {
    const a = this.addrs.get(key);
    return a !== undefined && now - a.lastMs <= this.forgetMs ? a : undefined;
  }

  /** Before any secret from `address` is looked at: is the address itself locked out? */
  check(address: string): LimitVerdict {
    const now = this.now();
    const a = this.record(addressKey(address), now);
    if (a !== undefined && a.untilMs > now) return { waitMs: a.untilMs - now, scope: 'address' };
    return { waitMs: 0, scope: null };
  }

  /**
   * Before a password check (scrypt): the address's own lock, then the overall bucket for
   * an address with failures on record (every address while the table is full).
   */
  checkPassword(address: string): LimitVerdict {
    const own = this.check(address);
    if (own.waitMs > 0) return own;
    const now = this.now();
    if (this.record(addressKey(address), now) === undefined && this.addrs.size < this.maxAddresses) return { waitMs: 0, scope: null };
    this.refill(now);
    if (this.tokens < 1) return { waitMs: Math.ceil((1 - this.tokens) / this.perMs), scope: 'global' };
    return { waitMs: 0, scope: null };
  }

  /** A wrong token or password from `address`; `password`: a password check ran (it takes from the overall bucket). */
  failed(address: string, o: { password?: boolean } = {}): void {
    const now = this.now();
    if (o.password === true) {
      this.refill(now);
      this.tokens = Math.max(0, this.tokens - 1);
    }
    const key = addressKey(address);
    let a = this.record(key, now);
    if (a === undefined) {
      a = { fails: 0, untilMs: 0, lastMs: now };
      this.addrs.delete(key);
      this.sweep(now);
    }
    this.addrs.delete(key);
    a.fails++;
    a.lastMs = now;
    if (a.fails > this.free) a.untilMs = now + Math.min(this.maxMs, this.baseMs * 2 ** Math.min(30, a.fails - this.free - 1));
    // Map order is insertion order: re-inserted, the most recently failed address is last.
    this.addrs.set(key, a);
  }

  succeeded(address: string): void {
    this.addrs.delete(addressKey(address));
  }

  private sweep(now: number): void {
    for (const [k, a] of this.addrs) {
      if (now - a.lastMs > this.forgetMs || this.addrs.size >= this.maxAddresses) this.addrs.delete(k);
      else break;
    }
  }
}
