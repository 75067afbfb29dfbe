/** Secrets inside URLs (src/config/redact.ts). */
import { expect, test } from 'vitest';
import { redactUrl, redactUrls } from '../../src/config/redact.js';

test('userinfo and credential-like query values are redacted; the rest stays', () => {
  expect(redactUrl('https://user:pw@siem.example:8443/x?index=a&access_token=t&sig=s#frag')).toBe('https://(redacted)@siem.example:8443/x?index=a&access_token=(redacted)&sig=(redacted)#frag');
  expect(redactUrl('https://user@siem.example/')).toBe('https://(redacted)@siem.example/');
  expect(redactUrl('http://siem.example/x?index=a')).toBe('http://siem.example/x?index=a');
  expect(redactUrl('not a url')).toBe('not a url');
  expect(redactUrls('expected an http:// URL, got "ftp://u:S3cret@h/p?apikey=K"')).toBe('expected an http:// URL, got "ftp://(redacted)@h/p?apikey=(redacted)"');
});
