/**
 * Bearer-token checks for cefd's HTTP endpoints (metrics, admin API): the scheme is read
 * case-insensitively, and tokens are compared as SHA-256 digests in constant time, so
 * neither their bytes nor their length leak through timing. Both endpoints take tokens of
 * at least MIN_BEARER_TOKEN_CHARS characters (bearerTokenProblem, a config check) and limit
 * wrong ones per client address with the same SigninLimiter (src/console/signin-limit.ts).
 */
import { createHash, timingSafeEqual } from 'node:crypto';

const digest = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

/** A test of an `Authorization` header against `token`. */
export function bearerCheck(token: string): (header: string | string[] | undefined) => boolean {
  const want = digest(token);
  return (header) => {
    if (typeof header !== 'string') return false;
    const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
    return m !== null && timingSafeEqual(digest(m[1]!), want);
  };
}

/** The shortest bearer token accepted for the admin API and the metrics endpoint (characters). */
export const MIN_BEARER_TOKEN_CHARS = 32;

/**
 * Why `token` is too short to be a bearer token cefd serves, or undefined. 32 characters of
 * a random hex or base64 token are at least 128 bits: beyond guessing, even at the
 * per-address limit from many addresses (docs/console.md).
 */
export function bearerTokenProblem(token: string): string | undefined {
  const chars = [...token].length;
  return chars < MIN_BEARER_TOKEN_CHARS ? `has ${chars} characters: use at least ${MIN_BEARER_TOKEN_CHARS}, random (e.g. \`openssl rand -hex 32\`)` : undefined;
}

/** After the right token: the address's failures are forgotten, unless it is locked out now. */
export function startOver(limiter: BearerLimiter, client: string): void {
  if (limiter.check(client).waitMs <= 0) limiter.succeeded(client);
}

/** The part of a per-address limiter (src/console/signin-limit.ts) a bearer check uses. */
export interface BearerLimiter {
  check(address: string): { waitMs: number };
  failed(address: string): void;
  succeeded(address: string): void;
}

/**
 * A request's bearer token with wrong ones limited per client address: the right token is
 * always taken (it has at least 128 bits, beyond guessing even without a limit; were it
 * refused while the address is locked, any local process could keep every client on the
 * same host, loopback and SSH tunnels included, out with a wrong token now and then); a
 * wrong one from a locked-out address is refused (`retryAfterSeconds`) without counting,
 * else counts against the address; the right one starts its count over when the address
 * is not locked out (startOver); a request without one guessed nothing and is not counted.
 * The caller answers 429 / 401 its own way.
 */
export function limitedBearer<H extends string | string[]>(
  tokenOk: (header: H | undefined) => boolean,
  limiter: BearerLimiter,
  header: H | undefined,
  client: string,
): { ok: boolean; retryAfterSeconds?: number } {
  if (tokenOk(header)) {
    // The right token starts the address's count over, as a console sign-in does (a second
    // client on the same host with an old token, a forgotten scraper, must not lock the
    // working one out), but not while the address waits: else anyone with the token on
    // that address (loopback, a tunnel, a proxy) would lift a password guesser's lock at
    // each request (src/console/signin-limit.ts keeps both kinds of failure per address).
    startOver(limiter, client);
    return { ok: true };
  }
  if (header === undefined) return { ok: false };
  const { waitMs } = limiter.check(client);
  if (waitMs > 0) return { ok: false, retryAfterSeconds: Math.ceil(waitMs / 1000) };
  limiter.failed(client);
  return { ok: false };
}
