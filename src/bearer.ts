/**
 * Bearer-token checks for cefd's HTTP endpoints (metrics, admin API): the scheme is read
 * case-insensitively, and tokens are compared as SHA-256 digests in constant time, so
 * neither their bytes nor their length leak through timing.
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
