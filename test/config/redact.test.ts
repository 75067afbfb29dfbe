/** Secrets inside URLs (src/config/redact.ts). */
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { ConfigError, loadConfigText } from '../../src/config/load.js';
import { redactUrl, redactUrls } from '../../src/config/redact.js';
import { tempDir } from '../helpers/temp.js';

test('userinfo and credential-like query values are redacted; the rest stays', () => {
  expect(redactUrl('https://user:pw@siem.example:8443/x?index=a&access_token=t&sig=s#frag')).toBe('https://(redacted)@siem.example:8443/x?index=a&access_token=(redacted)&sig=(redacted)#frag');
  expect(redactUrl('https://user@siem.example/')).toBe('https://(redacted)@siem.example/');
  expect(redactUrl('http://siem.example/x?index=a')).toBe('http://siem.example/x?index=a');
  expect(redactUrl('not a url')).toBe('not a url');
  expect(redactUrls('expected an http:// URL, got "ftp://u:S3cret@h/p?apikey=K"')).toBe('expected an http:// URL, got "ftp://(redacted)@h/p?apikey=(redacted)"');
});

test('a URL that does not parse (a bad port) still has its userinfo and credential-like query values redacted', () => {
  expect(redactUrl('https://elastic:PwMark9@es.example:92OO/')).toBe('https://(redacted)@es.example:92OO/');
  // A password holding @ or : ; the last @ ends the userinfo.
  expect(redactUrl('https://u:p@s:s@w:rd@es.example:92OO/x')).toBe('https://(redacted)@es.example:92OO/x');
  expect(redactUrl('https://es.example:92OO/?index=a&api_key=K3y')).toBe('https://es.example:92OO/?index=a&api_key=(redacted)');
  expect(redactUrls('expected an http:// or https:// URL, got "https://elastic:PwMark9@es.example:92OO/"')).toBe(
    'expected an http:// or https:// URL, got "https://(redacted)@es.example:92OO/"',
  );
});

test('a configuration problem about such a URL does not show its password', () => {
  const file = join(tempDir('cefd-config-'), 'cefd.yaml');
  let message = '';
  try {
    loadConfigText('outputs: [{name: e, type: elasticsearch, url: "https://elastic:PwMark9@es.example:92OO/", index: x}]\n', file, {});
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    message = e.message;
  }
  expect(message).toContain(`${file}:1: outputs[0].url: `);
  expect(message).toContain('https://(redacted)@es.example:92OO/');
  expect(message).not.toContain('PwMark9');
});
