/** The trust rules (src/ksc/trust.ts): which origins may act on which KSC connection. */
import { expect, test } from 'vitest';
import { addressOfPeer, compileTrustedSource, isTrustedOrigin, TrustPolicy, trustedSourceProblems, type TrustedSource } from '../../src/ksc/trust.js';
import { loadConfigText } from '../../src/config/load.js';

const FP = 'AB'.repeat(32);
const entry = (o: Partial<TrustedSource>): TrustedSource => ({ connection: 'main', listeners: [], cidrs: [], client_fingerprints: [], ...o });

test('every criterion given must hold', () => {
  const t = compileTrustedSource(entry({ listeners: ['ksc-tls'], cidrs: ['10.0.0.0/24'], client_fingerprints: [FP.match(/../g)!.join(':').toLowerCase()] }));
  const ok = { listener: 'ksc-tls', peer: '10.0.0.5:6514', tlsFingerprint: FP };
  expect(isTrustedOrigin(t, ok)).toBe(true);
  expect(isTrustedOrigin(t, { ...ok, listener: 'tcp' })).toBe(false);
  expect(isTrustedOrigin(t, { ...ok, peer: '10.0.1.5:6514' })).toBe(false);
  expect(isTrustedOrigin(t, { ...ok, tlsFingerprint: 'CD'.repeat(32) })).toBe(false);
  expect(isTrustedOrigin(t, { listener: 'ksc-tls', peer: '10.0.0.5:6514' })).toBe(false);
});

test('an entry without criteria trusts no one; peers of both address families are read', () => {
  expect(isTrustedOrigin(compileTrustedSource(entry({})), { listener: 'x', peer: '127.0.0.1:1' })).toBe(false);
  expect(addressOfPeer('[2001:db8::5]:514')).toBe('2001:db8::5');
  expect(addressOfPeer('192.0.2.1:514')).toBe('192.0.2.1');
  const v6 = compileTrustedSource(entry({ cidrs: ['2001:db8::/64'] }));
  expect(isTrustedOrigin(v6, { listener: 'x', peer: '[2001:db8::5]:514' })).toBe(true);
  expect(isTrustedOrigin(v6, { listener: 'x', peer: '[2001:db9::5]:514' })).toBe(false);
});

test('a policy names the connections that trust an origin', () => {
  const p = new TrustPolicy([entry({ listeners: ['a'] }), entry({ connection: 'second', cidrs: ['192.0.2.0/24'] })]);
  expect([...p.connectionsFor({ listener: 'a', peer: '192.0.2.1:1' })].sort()).toEqual(['main', 'second']);
  expect([...p.connectionsFor({ listener: 'b', peer: '192.0.2.1:1' })]).toEqual(['second']);
  expect(p.connectionsFor({ listener: 'b', peer: '198.51.100.1:1' }).size).toBe(0);
  expect(new TrustPolicy([]).empty).toBe(true);
});

test('config: an entry needs a criterion, known listeners and real fingerprints', () => {
  expect(trustedSourceProblems([entry({ listeners: ['nope'], client_fingerprints: ['xyz'] }), entry({})], ['tcp'])).toEqual([
    { key: 'ksc.trusted_sources[0].listeners', message: 'no listener named "nope"' },
    { key: 'ksc.trusted_sources[0].client_fingerprints', message: 'not a SHA-256 fingerprint: "xyz"' },
    { key: 'ksc.trusted_sources[1]', message: 'give at least one of listeners, cidrs, client_fingerprints (an entry without any would trust every sender)' },
  ]);
  expect(() => loadConfigText('ksc:\n  trusted_sources:\n    - { connection: main }\n', undefined, {})).toThrow(/ksc\.trusted_sources\[0\]: give at least one/);
  expect(() => loadConfigText('ksc:\n  trusted_sources:\n    - { connection: main, cidrs: [not-a-cidr] }\n', undefined, {})).toThrow(/expected an IPv4\/IPv6 address or CIDR/);
  // A processor (a nats listener) gets the receivers' listener names: any name is accepted there.
  expect(() => loadConfigText('listeners: [ { name: bus, type: nats, servers: [ "nats://127.0.0.1:4222" ], stream: RAW, consumer: p } ]\nksc:\n  trusted_sources:\n    - { connection: main, listeners: [ksc] }\n', undefined, {})).not.toThrow();
  expect(() => loadConfigText('listeners: [ { name: tcp, type: tcp, port: 0 } ]\nksc:\n  trusted_sources:\n    - { connection: main, listeners: [ksc] }\n', undefined, {})).toThrow(/no listener named "ksc"/);
  const c = loadConfigText('ksc:\n  trusted_sources:\n    - { connection: main, listeners: [tcp] }\n', undefined, {});
  expect(c.ksc.trusted_sources).toEqual([{ connection: 'main', listeners: ['tcp'], cidrs: [], client_fingerprints: [] }]);
});
