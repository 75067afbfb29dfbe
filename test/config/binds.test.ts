/**
 * src/config/binds.ts: binds that `run` would fail on are problems of `validate` too:
 * listeners whose addresses overlap on one port and protocol (Linux semantics: a wildcard
 * takes every address of its family, `::` both families), and hosts that are not addresses.
 */
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { ConfigError, loadConfigText } from '../../src/config/load.js';
import { overlaps } from '../../src/config/binds.js';
import { tempDir } from '../helpers/temp.js';

function problemsOf(text: string): string[] {
  try {
    loadConfigText(text, join(tempDir('cefd-binds-'), 'cefd.yaml'), {});
  } catch (e) {
    if (e instanceof ConfigError) return e.problems.map((p) => `${p.line ?? '-'}: ${p.key}: ${p.message}`);
    throw e;
  }
  return [];
}

const two = (a: string, b: string) => `listeners:\n  - { name: a, ${a} }\n  - { name: b, ${b} }\n`;

test('two listeners on one port and protocol whose addresses overlap are refused, at the later one', () => {
  // Before: only the same host text was seen (0.0.0.0 vs 127.0.0.1 passed validate, then run failed with EADDRINUSE).
  expect(problemsOf(two('type: tcp, port: 21001', 'type: tcp, host: 127.0.0.1, port: 21001'))).toEqual([
    '3: listeners[1].port: tcp port 21001 on 127.0.0.1 is already used by listener a (on 0.0.0.0: the addresses overlap)',
  ]);
  for (const [a, b] of [
    ['0.0.0.0', '127.0.0.1'],
    ['127.0.0.1', '0.0.0.0'],
    ['::', '0.0.0.0'],
    ['::', '127.0.0.1'],
    ['::', '::1'],
    ['0:0:0:0:0:0:0:0', '::1'],
    ['localhost', '127.0.0.1'],
    ['localhost', '::1'],
    ['::ffff:127.0.0.1', '127.0.0.1'],
    ['10.0.0.1', '10.0.0.1'],
  ]) {
    for (const type of ['tcp', 'udp']) {
      // An udp4 socket resolves localhost to 127.0.0.1 only; ::1 is an udp6 socket.
      if (type === 'udp' && a === 'localhost' && b === '::1') continue;
      const p = problemsOf(two(`type: ${type}, host: "${a}", port: 21001`, `type: ${type}, host: "${b}", port: 21001`));
      expect(p, `${type} ${a} ${b}`).toHaveLength(1);
      expect(p[0], `${type} ${a} ${b}`).toMatch(new RegExp(`^3: listeners\\[1\\]\\.port: ${type} port 21001 on .* is already used by listener a`));
    }
  }
  // TLS is TCP too.
  expect(problemsOf(two('type: tcp, port: 21001', 'type: tls, host: "::1", port: 21001, tls: { cert_file: c, key_file: k }'))).toEqual([]);
  expect(problemsOf(two('type: tcp, host: "::", port: 21001', 'type: tls, host: 127.0.0.1, port: 21001, tls: { cert_file: c, key_file: k }'))).toEqual([
    '3: listeners[1].port: tcp port 21001 on 127.0.0.1 is already used by listener a (on ::: the addresses overlap)',
  ]);
});

test('binds that do not collide are accepted: TCP and UDP on one port, different addresses, IPv4 wildcard and an IPv6 address', () => {
  expect(problemsOf(two('type: tcp, port: 21001', 'type: udp, port: 21001'))).toEqual([]);
  expect(problemsOf(two('type: tcp, host: "::", port: 21001', 'type: udp, host: 127.0.0.1, port: 21001'))).toEqual([]);
  for (const [a, b] of [
    ['127.0.0.1', '127.0.0.2'],
    ['0.0.0.0', '::1'],
    ['127.0.0.1', '::1'],
    ['::1', 'fe80::1'],
    // Link-local addresses with a zone (URL refuses them: validate crashed with "Invalid URL").
    ['fe80::1%lo', 'fe80::2%lo'],
    ['fe80::1%lo', 'fe80::1%eth0'],
  ]) {
    expect(problemsOf(two(`type: tcp, host: "${a}", port: 21001`, `type: tcp, host: "${b}", port: 21001`)), `${a} ${b}`).toEqual([]);
  }
  expect(problemsOf(two('type: tcp, port: 21001', 'type: tcp, port: 21002'))).toEqual([]);
  // Port 0 picks a free port each time.
  expect(problemsOf(two('type: tcp, port: 0', 'type: tcp, host: 127.0.0.1, port: 0'))).toEqual([]);
  expect(overlaps('fe80::1%lo', 'FE80:0::1%LO')).toBe(true);
  expect(overlaps('0.0.0.0', '::1')).toBe(false);
  expect(overlaps('', '::1')).toBe(true);
  expect(overlaps('', '::1', 'udp')).toBe(false);
});

test('the metrics endpoint and the KSC admin API are checked against listeners with the same overlap rule', () => {
  expect(problemsOf('listeners: [{ name: t, type: tcp, host: "::", port: 21002 }]\nmetrics: { host: 127.0.0.1, port: 21002 }\n')).toEqual([
    '2: metrics.port: port 21002 of the metrics endpoint is also bound by listener t (tcp on :::21002)',
  ]);
  // A UDP listener on the metrics port does not collide; nor does an IPv6 address with an IPv4 wildcard.
  expect(problemsOf('listeners: [{ name: u, type: udp, port: 21002 }]\nmetrics: { host: 0.0.0.0, port: 21002 }\n')).toEqual([]);
  expect(problemsOf('listeners: [{ name: t, type: tcp, host: "::1", port: 21002 }]\nmetrics: { host: 0.0.0.0, port: 21002 }\n')).toEqual([]);
});

test('metrics.host and ksc.admin.host must be IP addresses (or localhost), as listeners[].host', () => {
  // Before: validate passed, run failed with getaddrinfo ENOTFOUND.
  expect(problemsOf('metrics: { port: 21002, host: no-such-host.invalid }\n')).toEqual([
    '1: metrics.host: expected an IP address to bind (such as 127.0.0.1, 0.0.0.0 or ::) or localhost, got "no-such-host.invalid"',
  ]);
  const token = '0123456789abcdef0123456789abcdef';
  expect(problemsOf(`ksc:\n  admin:\n    enabled: true\n    host: admin.example\n    bearer_token: ${token}\n`)).toEqual([
    '4: ksc.admin.host: expected an IP address to bind (such as 127.0.0.1, 0.0.0.0 or ::) or localhost, got "admin.example"',
  ]);
  expect(problemsOf('listeners: [{ name: t, type: tcp, host: collector.example }]\n')).toEqual([
    '1: listeners[0].host: expected an IP address to bind (such as 127.0.0.1, 0.0.0.0 or ::) or localhost, got "collector.example"',
  ]);
  for (const host of ['127.0.0.1', '"::1"', '0.0.0.0', 'localhost', '"::"']) {
    expect(problemsOf(`metrics: { port: 21002, host: ${host} }\nksc: { admin: { enabled: true, port: 21003, host: ${host}, bearer_token: ${token} } }\n`), host).toEqual([]);
  }
  // An endpoint that is off binds nothing.
  expect(problemsOf('metrics: { enabled: false, host: no-such-host.invalid }\n')).toEqual([]);
});
