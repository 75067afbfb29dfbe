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
