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
 * `(redacted)`. Text that is not a URL is returned unchanged; text that starts like one
 * (`scheme://`) but does not parse (a bad port) is redacted by its shape.
 */
export function redactUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return redactUnparsed(url);
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

/**
 * A `scheme://...` text that is not a valid URL (`https://u:pw@host:92OO/`), which may still
 * hold a password (src/sources/sql/url.ts does the same for its database URLs): everything
 * between `scheme://` and the last `@` is taken as the userinfo (a password may hold `@`,
 * `/` or `:`), and credential-like query values are redacted as written.
 */
function redactUnparsed(url: string): string {
  const m = /^([a-zA-Z][a-zA-Z0-9+.-]*:\/\/)([\s\S]*)$/.exec(url);
  if (m === null) return url;
  const rest = m[2]!;
  const at = rest.lastIndexOf('@');
  const hostAndRest = at === -1 ? rest : rest.slice(at + 1);
  const q = hostAndRest.indexOf('?');
  const query = q === -1 ? '' : hostAndRest.slice(q).replace(/([?&;])([^=&;#]*)=([^&;#]*)/g, (all, sep: string, key: string, value: string) => {
    let name = key;
    try {
      name = decodeURIComponent(key.replace(/\+/g, ' '));
    } catch {
      // A key that does not decode is judged as written.
    }
    return value !== '' && SENSITIVE_PARAM.test(name) ? `${sep}${key}=${REDACTED}` : all;
  });
  return `${m[1]}${at === -1 ? '' : `${REDACTED}@`}${q === -1 ? hostAndRest : hostAndRest.slice(0, q)}${query}`;
}

/** Every URL inside `text` (scheme://...) redacted as by `redactUrl`. */
export function redactUrls(text: string): string {
  if (text.indexOf('://') === -1) return text;
  return text.replace(/\b[a-zA-Z][a-zA-Z0-9+.-]*:\/\/[^\s"'<>]+/g, (m) => redactUrl(m));
}
