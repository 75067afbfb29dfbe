/**
 * Secrets inside values that are not secret options themselves: the userinfo of a URL
 * (`http://user:pw@host/`) and query parameters named like credentials (`?token=...`).
 * Used wherever a configured URL can be shown: `cefd validate --print`, configuration
 * errors, log lines. The HTTP output keeps its own list of exact secret strings for the
 * texts a server echoes back (src/outputs/http/http.ts).
 */

export const REDACTED = '(redacted)';

/** Query parameter names that carry credentials (`token`, `api_key`, `sig`, `password`, ...). */
export const SENSITIVE_PARAM = /token|key|secret|passw|pwd|auth|sig|credential|session/i;

/**
 * `url` with its userinfo and every credential-like query value replaced by
 * `(redacted)`. Text that is not a URL is returned unchanged.
 */
export function redactUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return url;
  }
  let changed = false;
  let userinfo = '';
  if (u.username !== '' || u.password !== '') {
    userinfo = `${REDACTED}@`;
    changed = true;
  }
  const params = [...u.searchParams].map(([k, v]) => {
    if (SENSITIVE_PARAM.test(k) && v !== '') {
      changed = true;
      return `${encodeURIComponent(k)}=${REDACTED}`;
    }
    return `${encodeURIComponent(k)}=${encodeURIComponent(v)}`;
  });
  if (!changed) return url;
  const query = params.length > 0 ? `?${params.join('&')}` : '';
  return `${u.protocol}//${userinfo}${u.host}${u.pathname}${query}${u.hash}`;
}

/** Every URL inside `text` (scheme://...) redacted as by `redactUrl`. */
export function redactUrls(text: string): string {
  if (text.indexOf('://') === -1) return text;
  return text.replace(/\b[a-zA-Z][a-zA-Z0-9+.-]*:\/\/[^\s"'<>]+/g, (m) => redactUrl(m));
}
