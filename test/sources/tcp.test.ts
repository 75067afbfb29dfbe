/**
 * The tcp and tls sources (src/sources/tcp/) on real sockets, alone: framing per
 * connection, the allowlist and connection limits, client-certificate checks, and stop()
 * reading what was sent before it. The pipeline is a recorder (helpers.ts).
 */
import net from 'node:net';
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import tls from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { afterEach, expect, test } from 'vitest';
import type { Source } from '../../src/sources/source.js';
import { tcpSource, tlsSource } from '../../src/sources/tcp/index.js';
import { checkTls, STREAM_FIELDS, TLS_FIELDS } from '../../src/sources/tcp/config.js';
import { makePki } from '../helpers/pki.js';
import { tempDir } from '../helpers/temp.js';
import { verifyReason } from '../../src/sources/tcp/tls-material.js';
import { listenerConfig, recording, type Recording } from './helpers.js';
import { LogCapture, waitFor } from '../helpers/daemon.js';
import { Telemetry } from '../../src/telemetry/telemetry.js';
import { Pipeline } from '../../src/pipeline/pipeline.js';
import { compileRoutes } from '../../src/pipeline/router.js';
import { FlowControl } from '../../src/pipeline/flow-control.js';
import type { OutputRunner } from '../../src/pipeline/output-runner.js';

const running: Source[] = [];
afterEach(async () => {
  for (const s of running.splice(0)) await s.stop(0);
});

async function tcp(raw: Record<string, unknown> = {}): Promise<{ src: Source; rec: Recording }> {
  const rec = recording();
  const src = await tcpSource.create(listenerConfig('tcp', STREAM_FIELDS, raw), rec.deps);
  await src.start();
  running.push(src);
  return { src, rec };
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => resolve(s));
    s.once('error', reject);
  });
}

/** `p`, or a rejection after `ms` (a regression fails fast instead of at the test's timeout). */
const within = <T>(p: Promise<T>, ms: number, what: string): Promise<T> =>
  Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms))]);

/** Resolves when the server has closed the socket (end or reset). */
const closedByServer = (s: net.Socket) => new Promise<void>((r) => (s.destroyed ? r() : (s.on('error', () => undefined), s.once('close', () => r()))));

test('LF and octet-counted frames of one connection arrive in order, with the peer; the last unterminated frame at end is kept', async () => {
  const { src, rec } = await tcp();
  const s = await connect(src.port()!);
  const local = `127.0.0.1:${s.localPort}`;
  s.write('<13>one\n');
  s.write('11 <13>two two');
  s.write('<13>thr');
  s.end('ee\n<13>last');
  await waitFor(() => rec.frames.length === 4, 30_000, 'four frames');
  expect(rec.frames).toEqual([
    { text: '<13>one', mode: 'lf', truncated: false, peer: local },
    { text: '<13>two two', mode: 'octet', truncated: false, peer: local },
    { text: '<13>three', mode: 'lf', truncated: false, peer: local },
    { text: '<13>last', mode: 'lf', truncated: false, peer: local },
  ]);
  expect(rec.deadLetters).toEqual([]);
  const stats = rec.telemetry.listener('in');
  await waitFor(() => stats.connectionsOpen === 0, 30_000, 'the connection closed');
  expect(stats.connectionsAccepted).toBe(1);
});

test('a connection reset in the middle of a frame: the partial frame is dead-lettered, not lost', async () => {
  const { src, rec } = await tcp();
  const s = await connect(src.port()!);
  s.write('<13>whole\n<13>half of a fr');
  await waitFor(() => rec.frames.length === 1, 30_000, 'the whole frame');
  s.resetAndDestroy();
  await waitFor(() => rec.deadLetters.length === 1, 30_000, 'the dead letter');
  expect(rec.deadLetters[0]).toMatchObject({ text: '<13>half of a fr', reason: 'frame_incomplete_at_close' });
});

test('frame_timeout: a frame begun and never ended is dead-lettered (truncated) and the connection closed; whole frames and quiet connections are not', async () => {
  const { src, rec } = await tcp({ frame_timeout: '200ms' });
  const quiet = await connect(src.port()!);
  quiet.write('<13>done\n');
  const slow = await connect(src.port()!);
  const slowPeer = `127.0.0.1:${slow.localPort}`;
  const slowClosed = closedByServer(slow);
  slow.write('<13>whole\n<13>half of a fr');
  const counted = await connect(src.port()!);
  const countedClosed = closedByServer(counted);
  counted.write('120 '); // an octet count and no body yet
  await slowClosed;
  await countedClosed;
  const dl = rec.deadLetters.filter((d) => d.reason === 'frame_timeout');
  expect(dl.find((d) => d.text === '<13>half of a fr')).toEqual({ text: '<13>half of a fr', reason: 'frame_timeout', truncated: true, peer: slowPeer });
  expect(dl.map((d) => d.text).sort()).toEqual(['120 ', '<13>half of a fr']);
  expect(rec.telemetry.listener('in').connectionsRejected.map.get('frame_timeout')).toBe(2);
  expect(rec.frames.map((f) => f.text).sort()).toEqual(['<13>done', '<13>whole']);
  // The quiet connection (its frames ended) stays open and still delivers.
  quiet.end('<13>later\n');
  await waitFor(() => rec.frames.length === 3, 30_000, 'the quiet connection still open');
});

test('an octet count and no frame after it, then a reset or an orderly close: the count is dead-lettered', async () => {
  const { src, rec } = await tcp();
  const reset = await connect(src.port()!);
  reset.write('<13>whole\n456 ');
  await waitFor(() => rec.frames.length === 1, 30_000, 'the whole frame');
  reset.resetAndDestroy();
  await waitFor(() => rec.deadLetters.length === 1, 30_000, 'the reset one');
  expect(rec.deadLetters[0]).toMatchObject({ text: '456 ', reason: 'frame_incomplete_at_close' });
  const closed = await connect(src.port()!);
  closed.end('123 ');
  await waitFor(() => rec.deadLetters.length === 2, 30_000, 'the closed one');
  expect(rec.deadLetters[1]).toMatchObject({ text: '123 ', reason: 'frame_incomplete_at_close', truncated: true });
  // A frame cut by a reset comes with its count.
  const cut = await connect(src.port()!);
  cut.write('30 <13>part');
  await waitFor(() => rec.telemetry.listener('in').bytes >= 8 + 4 + 4 + 11, 30_000, 'the bytes read');
  cut.resetAndDestroy();
  await waitFor(() => rec.deadLetters.length === 3, 30_000, 'the cut one');
  expect(rec.deadLetters[2]).toMatchObject({ text: '30 <13>part', reason: 'frame_incomplete_at_close' });
});

test('a frame longer than max_frame_bytes is truncated and marked', async () => {
  const { src, rec } = await tcp({ max_frame_bytes: 16 });
  const s = await connect(src.port()!);
  s.end(`<13>${'x'.repeat(40)}\n<13>ok\n`);
  await waitFor(() => rec.frames.length === 2, 30_000, 'two frames');
  expect(rec.frames[0]!.truncated).toBe(true);
  expect(Buffer.byteLength(rec.frames[0]!.text)).toBeLessThanOrEqual(16);
  expect(rec.frames[1]).toMatchObject({ text: '<13>ok', truncated: false });
});

test('allowed_cidrs: a sender outside is closed at once and counted; nothing it sent arrives', async () => {
  const { src, rec } = await tcp({ allowed_cidrs: ['10.0.0.0/8'] });
  const s = net.connect({ host: '127.0.0.1', port: src.port()! });
  s.on('error', () => undefined);
  s.write('<13>not allowed\n');
  await closedByServer(s);
  expect(rec.telemetry.listener('in').connectionsRejected.map.get('cidr')).toBe(1);
  expect(rec.frames).toEqual([]);
});

test('max_connections_per_source: one more connection from the same address is closed and counted; the first still delivers', async () => {
  const { src, rec } = await tcp({ max_connections_per_source: 1 });
  const first = await connect(src.port()!);
  first.write('<13>a\n');
  await waitFor(() => rec.frames.length === 1, 30_000, 'the first frame');
  const second = net.connect({ host: '127.0.0.1', port: src.port()! });
  await closedByServer(second);
  expect(rec.telemetry.listener('in').connectionsRejected.map.get('max_connections_per_source')).toBe(1);
  first.end('<13>b\n');
  await waitFor(() => rec.frames.length === 2, 30_000, 'the second frame');
});

test('max_connections: a new connection takes the place of one that never sent a whole frame', async () => {
  const { src, rec } = await tcp({ max_connections: 1 });
  const idle = await connect(src.port()!);
  const idleClosed = closedByServer(idle);
  await waitFor(() => rec.telemetry.listener('in').connectionsAccepted === 1, 30_000, 'the idle connection served');
  const fresh = await connect(src.port()!);
  await idleClosed;
  expect(rec.telemetry.listener('in').connectionsRejected.map.get('evicted_no_frame')).toBe(1);
  fresh.end('<13>fresh\n');
  await waitFor(() => rec.frames.length === 1, 30_000, 'the fresh frame');
});

test('max_connections: a connection evicted to make room for another from the same address stops counting against max_connections_per_source (three rounds, no count left over)', async () => {
  const { src, rec } = await tcp({ max_connections: 2, max_connections_per_source: 3 });
  const st = rec.telemetry.listener('in');
  for (let round = 1; round <= 3; round++) {
    // Three connections from 127.0.0.1, one at a time, none sending: the third evicts the first.
    const open: net.Socket[] = [];
    for (let i = 0; i < 3; i++) {
      const s = await connect(src.port()!);
      s.on('error', () => undefined);
      open.push(s);
      await waitFor(() => st.connectionsAccepted === (round - 1) * 3 + i + 1 || st.connectionsRejected.map.get('max_connections_per_source') !== undefined, 30_000, `round ${round}: connection ${i + 1} served`);
    }
    await waitFor(() => st.connectionsRejected.map.get('evicted_no_frame') === round || st.connectionsRejected.map.has('max_connections_per_source'), 30_000, `round ${round}: the third connection placed or refused`);
    // Only two were open from the address (limit 3): the third evicts, it is not refused.
    expect([...st.connectionsRejected.map]).toEqual([['evicted_no_frame', round]]);
    await within(closedByServer(open[0]!), 10_000, `round ${round}: the first connection evicted`);
    for (const s of open) s.destroy();
    await waitFor(() => st.connectionsOpen === 0, 30_000, `round ${round}: every connection closed`);
  }
});

test('max_connections: with every connection served, the one quiet longer than evict_quiet_after makes room; one quiet for less does not', async () => {
  const { src, rec } = await tcp({ max_connections: 2, evict_quiet_after: '1s' });
  const quiet = await connect(src.port()!);
  quiet.write('<13>quiet one\n');
  const quietClosed = closedByServer(quiet);
  await waitFor(() => rec.frames.length === 1, 30_000, 'the first frame');
  await new Promise((r) => setTimeout(r, 1_100));
  const recent = await connect(src.port()!);
  recent.write('<13>recent one\n');
  await waitFor(() => rec.frames.length === 2, 30_000, 'the second frame');
  // Both served; the first quiet for over a second: the new connection takes its place.
  const fresh = await connect(src.port()!);
  await quietClosed;
  fresh.write('<13>fresh\n');
  await waitFor(() => rec.frames.length === 3, 30_000, 'the fresh frame');
  const st = rec.telemetry.listener('in');
  expect(st.connectionsRejected.map.get('evicted_quiet')).toBe(1);
  // Now the two open ones sent a moment ago: a further connection is refused, nobody evicted.
  const refused = net.connect({ host: '127.0.0.1', port: src.port()! });
  await closedByServer(refused);
  expect(st.connectionsRejected.map.get('max_connections')).toBe(1);
  expect(st.connectionsRejected.map.get('evicted_quiet')).toBe(1);
  expect(recent.destroyed).toBe(false);
  recent.destroy();
  fresh.destroy();
  expect(rec.frames.map((f) => f.text)).toEqual(['<13>quiet one', '<13>recent one', '<13>fresh']);
});

test('max_connections: a connection paused by backpressure is not quiet (cefd stopped reading it); its quiet time counts again from the resume', async () => {
  const { src, rec } = await tcp({ max_connections: 1, evict_quiet_after: '1s' });
  const busy = await connect(src.port()!);
  busy.write('<13>one\n');
  await waitFor(() => rec.frames.length === 1, 30_000, 'the first frame');
  // An output is full: every source paused, for longer than evict_quiet_after.
  rec.flow.block('out');
  await new Promise((r) => setTimeout(r, 1_100));
  const refused = net.connect({ host: '127.0.0.1', port: src.port()! });
  await within(closedByServer(refused), 10_000, 'the new connection refused');
  const st = rec.telemetry.listener('in');
  expect(st.connectionsRejected.map.get('max_connections')).toBe(1);
  expect(st.connectionsRejected.map.get('evicted_quiet')).toBeUndefined();
  // Reading again: not quiet until a whole evict_quiet_after passed without a byte.
  rec.flow.unblock('out');
  const again = net.connect({ host: '127.0.0.1', port: src.port()! });
  await within(closedByServer(again), 10_000, 'the next connection refused');
  expect(st.connectionsRejected.map.get('max_connections')).toBe(2);
  expect(busy.destroyed).toBe(false);
  busy.end('<13>two\n');
  await waitFor(() => rec.frames.length === 2, 30_000, 'the second frame');
});

test('max_connections: a connection quiet in the middle of a frame is not taken for a quiet one (frame_timeout ends it)', async () => {
  const { src, rec } = await tcp({ max_connections: 1, evict_quiet_after: '1s', frame_timeout: '0s' });
  const half = await connect(src.port()!);
  half.write('<13>whole\n<13>half of a fr');
  await waitFor(() => rec.frames.length === 1, 30_000, 'the whole frame');
  await new Promise((r) => setTimeout(r, 1_100));
  const refused = net.connect({ host: '127.0.0.1', port: src.port()! });
  await closedByServer(refused);
  expect(rec.telemetry.listener('in').connectionsRejected.map.get('max_connections')).toBe(1);
  expect(half.destroyed).toBe(false);
  half.destroy();
});

test('frame_timeout also ends a line cut at max_frame_bytes whose rest never comes (bytes dribbled one at a time)', async () => {
  const { src, rec } = await tcp({ max_frame_bytes: 64, frame_timeout: '500ms' });
  const s = await connect(src.port()!);
  const closed = closedByServer(s);
  s.write(`<13>${'A'.repeat(200)}`);
  const drip = setInterval(() => {
    if (!s.destroyed) s.write('x');
  }, 100);
  try {
    await within(closed, 10_000, 'the connection closed');
  } finally {
    clearInterval(drip);
  }
  const st = rec.telemetry.listener('in');
  expect(st.connectionsRejected.map.get('frame_timeout')).toBe(1);
  // The cut frame itself was delivered (truncated); nothing is left to dead-letter.
  expect(rec.frames).toHaveLength(1);
  expect(rec.frames[0]!.truncated).toBe(true);
  expect(rec.deadLetters).toEqual([]);
});

test('frame_timeout counts from the first byte of the frame now pending: the frame after a cut line gets its own frame_timeout, not what was left of the cut line\'s', async () => {
  // Seconds apart, with a second or more of margin either way on a busy machine.
  const { src, rec } = await tcp({ max_frame_bytes: 100, frame_timeout: '4s' });
  const st = rec.telemetry.listener('in');
  const s = await connect(src.port()!);
  s.on('error', () => undefined);
  // 0 s: a line longer than max_frame_bytes, cut at once, its end not sent yet.
  s.write(`<13>${'L'.repeat(214)}`);
  await waitFor(() => rec.frames.length === 1, 30_000, 'the cut frame');
  await new Promise((r) => setTimeout(r, 2000));
  // 2 s: the end of the cut line and the first bytes of the next frame.
  const rest = 'LLLL\n<13>next frame begins';
  s.write(rest);
  await waitFor(() => st.bytes === 218 + rest.length, 30_000, 'the next frame\'s first bytes read');
  await new Promise((r) => setTimeout(r, 2800));
  // 4.8 s: past the cut line's 4 s, within the next frame's own (due at 6 s).
  s.end(', and ends\n');
  await waitFor(() => rec.frames.length === 2 || rec.deadLetters.length > 0, 30_000, 'the next frame');
  expect(rec.deadLetters).toEqual([]);
  expect(st.connectionsRejected.map.get('frame_timeout')).toBeUndefined();
  expect(rec.frames.map((f) => [f.text, f.truncated])).toEqual([[`<13>${'L'.repeat(96)}`, true], ['<13>next frame begins, and ends', false]]);
});

test('framing warnings (frame_truncated, frame_incomplete, octet_count_too_large) name the peer; they stay rate-limited per listener and code, not per peer, and no metric has the peer', async () => {
  const logs = new LogCapture();
  const telemetry = new Telemetry({ destination: logs, processMetrics: false });
  const keep = { name: 'out', refusesNow: () => false, enqueueMany: () => undefined, enqueueNdjson: () => undefined, queue: { fill: () => 0 } };
  const pipeline = new Pipeline([keep as unknown as OutputRunner], { ...keep, name: 'dead_letter' } as unknown as OutputRunner, telemetry, { defaultZone: 'UTC', includeRaw: false, routes: compileRoutes([{}]) });
  const src = await tcpSource.create(listenerConfig('tcp', STREAM_FIELDS, { max_frame_bytes: 16 }), { pipeline, flow: new FlowControl(telemetry), telemetry, normalizers: [] });
  await src.start();
  running.push(src);
  const st = telemetry.listener('in');
  const framing = () => logs.parsed().filter((l) => l['level'] === 'warn' && typeof l['msg'] === 'string' && (l['msg'] as string).startsWith('framing'));
  // An over-long line, a count too large to be one, and an octet-counted frame cut by the end.
  const first = await connect(src.port()!);
  const peer = `127.0.0.1:${first.localPort}`;
  first.end(`<13>${'x'.repeat(40)}\n99999 <13>digits\n9 <13>pa`);
  await waitFor(() => framing().length === 3, 30_000, 'three framing warnings');
  expect(framing().map((l) => [l['code'], l['peer']]).sort()).toEqual([['frame_incomplete', peer], ['frame_truncated', peer], ['octet_count_too_large', peer]]);
  for (const l of framing()) expect(l['msg']).toContain(`from ${peer}:`);
  // Another sender's over-long line within the interval: counted, its line held back.
  const second = await connect(src.port()!);
  second.end(`<13>${'y'.repeat(40)}\n`);
  await waitFor(() => st.frameErrors.map.get('frame_truncated') === 2, 30_000, 'the second frame_truncated counted');
  expect(framing()).toHaveLength(3);
  expect(await telemetry.registry.metrics()).not.toContain('127.0.0.1');
});

test('stop() reads what connections already sent before closing them', async () => {
  const { src, rec } = await tcp();
  const s = await connect(src.port()!);
  s.on('error', () => undefined);
  const lines = Array.from({ length: 200 }, (_, i) => `<13>line ${i}\n`).join('');
  await new Promise<void>((r) => s.write(lines, () => r()));
  await src.stop(5000);
  running.pop();
  expect(rec.frames.length).toBe(200);
  expect(rec.frames[199]!.text).toBe('<13>line 199');
});

async function tlsListener(raw: Record<string, unknown>): Promise<{ src: Source; rec: Recording }> {
  const rec = recording();
  const src = await tlsSource.create(listenerConfig('tls', TLS_FIELDS, raw), rec.deps);
  await src.start();
  running.push(src);
  return { src, rec };
}

/** A TLS client to the listener on `port` with its handshake done (nothing sent yet). */
function tlsHandshaken(port: number): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const c = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false }, () => resolve(c));
    c.once('error', reject);
  });
}

function tlsSend(port: number, opts: tls.ConnectionOptions, text: string): Promise<void> {
  return new Promise((resolve) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ...opts }, () => s.end(text));
    s.on('error', () => resolve());
    s.on('close', () => resolve());
  });
}

test('tls with a pinned client fingerprint: the pinned client delivers, another certificate is refused and counted', async () => {
  const pki = makePki();
  const { src, rec } = await tlsListener({ tls: { cert_file: pki.serverCert, key_file: pki.serverKey, client_fingerprints: [pki.selfSignedFingerprint] } });
  const ca = (await import('node:fs')).readFileSync(pki.caCert);
  await tlsSend(src.port()!, { ca, cert: pki.selfSignedCert, key: pki.selfSignedKey }, '<13>pinned\n');
  await waitFor(() => rec.frames.length === 1, 30_000, 'the pinned frame');
  expect(rec.frames[0]!.text).toBe('<13>pinned');
  await tlsSend(src.port()!, { ca, cert: pki.rogueClientCert, key: pki.rogueClientKey }, '<13>rogue\n');
  await waitFor(() => rec.telemetry.listener('in').connectionsRejected.map.get('tls_fingerprint') === 1, 30_000, 'the rogue refused');
  expect(rec.frames.length).toBe(1);
});

test('tls with client_auth required and a CA: a client signed by it delivers, one without a certificate is refused', async () => {
  const pki = makePki();
  const { src, rec } = await tlsListener({ tls: { cert_file: pki.serverCert, key_file: pki.serverKey, ca_file: pki.caCert, client_auth: 'required' } });
  const ca = (await import('node:fs')).readFileSync(pki.caCert);
  await tlsSend(src.port()!, { ca, cert: pki.clientCert, key: pki.clientKey }, '<13>signed\n');
  await waitFor(() => rec.frames.length === 1, 30_000, 'the signed frame');
  await tlsSend(src.port()!, { ca }, '<13>anonymous\n');
  await waitFor(() => (rec.telemetry.listener('in').connectionsRejected.map.get('tls_unauthorized') ?? 0) + (rec.telemetry.listener('in').connectionsRejected.map.get('tls_handshake') ?? 0) >= 1, 30_000, 'the anonymous client refused');
  expect(rec.frames.map((f) => f.text)).toEqual(['<13>signed']);
});

test('tls: a plain TCP client and a silent one fail their handshake (closed at handshake_timeout), counted once each as tls_handshake; none is served', async () => {
  const pki = makePki();
  const { src, rec } = await tlsListener({ tls: { cert_file: pki.serverCert, key_file: pki.serverKey, handshake_timeout: '300ms' } });
  const st = rec.telemetry.listener('in');
  const plain = await connect(src.port()!);
  plain.write('<13>plain\n');
  await closedByServer(plain);
  const silent = await connect(src.port()!);
  await closedByServer(silent);
  expect([...st.connectionsRejected.map]).toEqual([['tls_handshake', 2]]);
  expect(st.connectionsAccepted).toBe(0);
  expect(rec.frames).toEqual([]);
});

test('tls: connections cefd itself closes before their handshake ends (allowed_cidrs, max_connections, eviction at the limit) count once, under their own reason, not also as failed handshakes', async () => {
  const pki = makePki();
  const outside = await tlsListener({ allowed_cidrs: ['10.0.0.0/8'], tls: { cert_file: pki.serverCert, key_file: pki.serverKey } });
  await closedByServer(await connect(outside.src.port()!));
  await waitFor(() => outside.rec.telemetry.listener('in').connectionsRejected.map.get('cidr') === 1, 30_000, 'the cidr refusal');
  // Two handshakes begun and never finished hold both slots; a real client takes the oldest one's place.
  const { src, rec } = await tlsListener({ max_connections: 2, tls: { cert_file: pki.serverCert, key_file: pki.serverKey } });
  const st = rec.telemetry.listener('in');
  const a = await connect(src.port()!);
  a.write(Buffer.from([0x16, 0x03, 0x01, 0x02]));
  const b = await connect(src.port()!);
  b.write(Buffer.from([0x16, 0x03, 0x01, 0x02]));
  await Promise.all([tlsSend(src.port()!, { rejectUnauthorized: false }, '<13>ok\n'), closedByServer(a)]);
  await waitFor(() => rec.frames.length === 1, 30_000, 'the real client\'s frame');
  expect(rec.frames[0]!.text).toBe('<13>ok');
  // Let any handshake error of the evicted connection come out before counting.
  await new Promise((r) => setImmediate(r));
  expect([...st.connectionsRejected.map]).toEqual([['evicted_no_frame', 1]]);
  expect([...outside.rec.telemetry.listener('in').connectionsRejected.map]).toEqual([['cidr', 1]]);
  b.destroy();
  await waitFor(() => st.connectionsOpen === 0, 30_000, 'no connection open');
});

test('a TLS client on a plain tcp listener is closed at once and counted (tls_on_plain_listener); its handshake bytes become neither frames nor dead letters', async () => {
  // frame_timeout off: before, only the sender's own timeout ended such a connection.
  const { src, rec } = await tcp({ frame_timeout: '0s' });
  const err = await new Promise<string>((resolve) => {
    const s = tls.connect({ host: '127.0.0.1', port: src.port()!, servername: 'localhost', rejectUnauthorized: false }, () => resolve('handshake finished'));
    s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
  expect(err).toBe('ECONNRESET');
  expect(rec.telemetry.listener('in').connectionsRejected.map.get('tls_on_plain_listener')).toBe(1);
  expect(rec.frames).toEqual([]);
  expect(rec.deadLetters).toEqual([]);
  // A plain sender on the same listener is served as before.
  const s = await connect(src.port()!);
  s.end('<13>plain\n');
  await waitFor(() => rec.frames.length === 1, 30_000, 'the plain frame');
  expect(rec.frames[0]!.text).toBe('<13>plain');
});

test('tls: a client cannot renegotiate (TLS 1.2): each renegotiation would be a full handshake at the listener\'s cost, which Node only reports after the third', async () => {
  const pki = makePki();
  const { src, rec } = await tlsListener({ tls: { cert_file: pki.serverCert, key_file: pki.serverKey } });
  // openssl s_client renegotiates on a line "R" (a command, not data).
  const client = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${src.port()!}`, '-tls1_2', '-servername', 'localhost'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let err = '';
  client.stderr.on('data', (c: Buffer) => (err += c.toString()));
  client.stdout.on('data', () => undefined);
  try {
    client.stdin.write('<13>before\n');
    await waitFor(() => rec.frames.length === 1, 30_000, 'the first frame');
    client.stdin.write('R\n');
    // Either the server refuses (the client says "no renegotiation") or a second handshake verifies the certificate again.
    const second = () => err.slice(err.indexOf('RENEGOTIATING')).includes('verify return');
    await waitFor(() => err.includes('no renegotiation') || (err.includes('RENEGOTIATING') && second()), 30_000, 'the renegotiation\'s outcome');
    expect(err).toContain('no renegotiation');
    expect(rec.frames.map((f) => f.text)).toEqual(['<13>before']);
  } finally {
    client.kill('SIGKILL');
  }
});

/**
 * A TLS client whose handshake is done over `raw`, a TCP socket the test keeps: bytes
 * written on `raw` go to the server as they are, outside the TLS session.
 */
function tlsOverRaw(port: number): Promise<{ raw: net.Socket; client: tls.TLSSocket }> {
  return new Promise((resolve, reject) => {
    const raw = net.connect({ host: '127.0.0.1', port }, () => {
      const client = tls.connect({ socket: raw, servername: 'localhost', rejectUnauthorized: false }, () => resolve({ raw, client }));
      client.once('error', reject);
    });
    raw.once('error', reject);
  });
}

/** A TLS application-data record whose content no key decrypts (a bad record MAC for the receiver). */
const GARBAGE_RECORD = Buffer.concat([Buffer.from([0x17, 0x03, 0x03, 0x00, 0x40]), Buffer.alloc(0x40, 0x5a)]);

test('tls: a fatal TLS error after the handshake (bad record MAC) closes the connection at once; its partial frame is dead-lettered, never delivered as an event, also when the peer then closes TCP; the log line names the peer and the code, without OpenSSL\'s raw text', async () => {
  const pki = makePki();
  const { src, rec } = await tlsListener({ tls: { cert_file: pki.serverCert, key_file: pki.serverKey }, frame_timeout: '0s' });
  const st = rec.telemetry.listener('in');
  const warned: Record<string, unknown>[] = [];
  const messages: string[] = [];
  rec.telemetry.log.warn = ((o: Record<string, unknown>, m: string) => void (warned.push(o), messages.push(m))) as never;
  // One client keeps TCP open after the garbage (the server must close it), one closes TCP
  // right after it (the cut frame must not come out as a whole event at the end of the stream).
  for (const [i, peerCloses] of [false, true].entries()) {
    const { raw, client } = await tlsOverRaw(src.port()!);
    client.on('error', () => undefined);
    raw.on('error', () => undefined);
    const closed = closedByServer(raw);
    const peer = `127.0.0.1:${raw.localPort}`;
    const text = `<13>whole ${i}\n<13>partial ${i}`;
    client.write(text);
    await waitFor(() => rec.frames.length === i + 1 && st.bytes >= (i + 1) * text.length, 30_000, `client ${i}: its bytes read`);
    expect(st.connectionsOpen).toBe(1);
    raw.write(GARBAGE_RECORD);
    if (peerCloses) raw.end();
    await within(closed, 10_000, `client ${i}: closed by the server`);
    await waitFor(() => st.connectionsOpen === 0 && rec.deadLetters.length === i + 1, 10_000, `client ${i}: its slot released and its partial frame dead-lettered`);
    expect(rec.deadLetters[i]).toMatchObject({ text: `<13>partial ${i}`, reason: 'frame_incomplete_at_close', peer });
    const line = warned[i]!;
    expect(line).toMatchObject({ listener: 'in', peer, code: 'ERR_SSL_DECRYPTION_FAILED_OR_BAD_RECORD_MAC' });
    expect(String(line['err'])).toMatch(/bad record mac/);
    expect(messages[i]).toContain(peer);
    expect(messages[i]).not.toMatch(/\n|error:0A|\.c:\d/);
  }
  expect(rec.frames.map((f) => f.text)).toEqual(['<13>whole 0', '<13>whole 1']);
});

test('tls: a fatal TLS error while cefd does not read (backpressure): the whole frames Node read before it are delivered, the partial one dead-lettered', async () => {
  const pki = makePki();
  const { src, rec } = await tlsListener({ tls: { cert_file: pki.serverCert, key_file: pki.serverKey } });
  const st = rec.telemetry.listener('in');
  const { raw, client } = await tlsOverRaw(src.port()!);
  client.on('error', () => undefined);
  raw.on('error', () => undefined);
  await waitFor(() => st.connectionsOpen === 1, 30_000, 'served');
  rec.flow.block('out');
  const lines = Array.from({ length: 50 }, (_, i) => `<13>held ${i}\n`).join('');
  await new Promise<void>((r) => client.write(`${lines}<13>partial`, () => r()));
  raw.write(GARBAGE_RECORD);
  await within(closedByServer(raw), 10_000, 'closed by the server');
  await waitFor(() => st.connectionsOpen === 0, 10_000, 'its slot released');
  expect(rec.frames).toHaveLength(50);
  expect(rec.frames[49]!.text).toBe('<13>held 49');
  expect(rec.deadLetters).toMatchObject([{ text: '<13>partial', reason: 'frame_incomplete_at_close' }]);
  rec.flow.unblock('out');
});

test('tls: a sender that closes TCP without close_notify ends the stream as a TCP FIN does: its last frame without a terminator is an event (docs/framing.md, End of stream)', async () => {
  const pki = makePki();
  const { src, rec } = await tlsListener({ tls: { cert_file: pki.serverCert, key_file: pki.serverKey } });
  const { raw, client } = await tlsOverRaw(src.port()!);
  client.on('error', () => undefined);
  raw.on('error', () => undefined);
  const text = '<13>complete\n<13>last, no LF';
  client.write(text);
  await waitFor(() => rec.telemetry.listener('in').bytes >= text.length, 30_000, 'its bytes read');
  // A TCP FIN under the TLS session: no close_notify.
  raw.end();
  await waitFor(() => rec.frames.length === 2, 30_000, 'the last frame');
  expect(rec.frames.map((f) => [f.text, f.truncated])).toEqual([['<13>complete', false], ['<13>last, no LF', false]]);
  expect(rec.deadLetters).toEqual([]);
});

/** A CA run with `openssl ca` (it keeps the index a CRL is made from), two client certificates, and a CRL of it. */
function revokingCa() {
  const dir = tempDir('cefd-crl-');
  const run = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  writeFileSync(join(dir, 'index.txt'), '');
  writeFileSync(join(dir, 'serial'), '1000\n');
  writeFileSync(join(dir, 'crlnumber'), '1000\n');
  writeFileSync(
    join(dir, 'ca.cnf'),
    `[ca]\ndefault_ca=c\n[c]\ndir=${dir}\ndatabase=$dir/index.txt\nserial=$dir/serial\ncrlnumber=$dir/crlnumber\nnew_certs_dir=${dir}\ncertificate=$dir/ca.crt\nprivate_key=$dir/ca.key\ndefault_md=sha256\ndefault_days=30\ndefault_crl_days=7\npolicy=p\nunique_subject=no\n[p]\ncommonName=supplied\n[ext]\nextendedKeyUsage=clientAuth\n`,
  );
  run(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '30', '-subj', '/CN=crl-ca', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  for (const n of ['good', 'bad']) {
    run(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${n}.key`, '-out', `${n}.csr`, '-subj', `/CN=${n}`]);
    run(['ca', '-batch', '-config', 'ca.cnf', '-extensions', 'ext', '-in', `${n}.csr`, '-out', `${n}.crt`, '-notext']);
  }
  const crl = () => run(['ca', '-config', 'ca.cnf', '-gencrl', '-out', 'ca.crl']);
  crl();
  const file = (n: string) => join(dir, n);
  return { dir, file, revokeBad: () => (run(['ca', '-config', 'ca.cnf', '-revoke', 'bad.crt']), crl()) };
}

test('tls crl_file: a client certificate the CA revoked is refused (tls_certificate_revoked); a new CRL takes effect on reload; a client of a CA without a CRL is refused (fails closed)', async () => {
  const pki = makePki();
  const ca = revokingCa();
  try {
    writeFileSync(ca.file('both-cas.crt'), readFileSync(ca.file('ca.crt'), 'utf8') + readFileSync(pki.caCert, 'utf8'));
    const { src, rec } = await tlsListener({ tls: { cert_file: pki.serverCert, key_file: pki.serverKey, ca_file: ca.file('both-cas.crt'), client_auth: 'required', crl_file: ca.file('ca.crl') } });
    const st = rec.telemetry.listener('in');
    const codes: (string | undefined)[] = [];
    const rejected = rec.telemetry.connectionRejected.bind(rec.telemetry);
    rec.telemetry.connectionRejected = (l, reason, detail, fields = {}) => (codes.push(fields.code), rejected(l, reason, detail, fields));
    const as = (n: string) => ({ cert: readFileSync(ca.file(`${n}.crt`)), key: readFileSync(ca.file(`${n}.key`)), rejectUnauthorized: false });
    // Nothing revoked yet: both deliver.
    await tlsSend(src.port()!, as('good'), '<13>good 1\n');
    await tlsSend(src.port()!, as('bad'), '<13>bad 1\n');
    await waitFor(() => rec.frames.length === 2, 30_000, 'both clients\' frames');
    // The CA revokes "bad" and publishes a new CRL; cefd reads it on reload (SIGHUP).
    ca.revokeBad();
    expect(src.reload()).toBe(true);
    await tlsSend(src.port()!, as('bad'), '<13>bad 2\n');
    await waitFor(() => st.connectionsRejected.map.get('tls_unauthorized') === 1, 30_000, 'the revoked client refused');
    await tlsSend(src.port()!, as('good'), '<13>good 2\n');
    await waitFor(() => rec.frames.length === 3, 30_000, 'the good client\'s second frame');
    // A client of the other CA in ca_file, which has no CRL in crl_file: refused.
    await tlsSend(src.port()!, { cert: pki.clientCert, key: pki.clientKey, rejectUnauthorized: false }, '<13>no crl\n');
    await waitFor(() => st.connectionsRejected.map.get('tls_unauthorized') === 2, 30_000, 'the client without a CRL refused');
    expect(rec.frames.map((f) => f.text)).toEqual(['<13>good 1', '<13>bad 1', '<13>good 2']);
    expect(codes).toEqual(['tls_certificate_revoked', 'tls_crl_unusable']);
  } finally {
    rmSync(ca.dir, { recursive: true, force: true });
  }
});

test('tls crl_file: the reason codes of revocation and of an unusable CRL', () => {
  expect(verifyReason('CERT_REVOKED')).toBe('tls_certificate_revoked');
  expect(verifyReason('UNABLE_TO_GET_CRL')).toBe('tls_crl_unusable');
  expect(verifyReason('CRL_HAS_EXPIRED')).toBe('tls_crl_unusable');
  // A CRL where no certificate is verified against a CA would check nothing: refused by validate.
  const cfg = (tlsOpts: Record<string, unknown>) => listenerConfig('tls', TLS_FIELDS, { tls: { cert_file: 'a', key_file: 'b', ...tlsOpts } }) as { tls: Parameters<typeof checkTls>[0]['tls'] };
  expect(checkTls(cfg({ crl_file: 'c.crl', client_fingerprints: ['AB'.repeat(32)] })).map((p) => p.key)).toEqual(['tls.crl_file']);
  expect(checkTls(cfg({ crl_file: 'c.crl', ca_file: 'ca.crt', client_auth: 'required' }))).toEqual([]);
});

test('tls: the certificate\'s expiry is a gauge that follows a renewal on reload; a certificate about to expire is warned about (tls_certificate_expiring)', async () => {
  const pki = makePki();
  const dir = tempDir('cefd-renew-');
  try {
    const cert = join(dir, 'server.crt');
    const make = (days: number) => execFileSync('openssl', ['req', '-x509', '-key', pki.serverKey, '-out', cert, '-days', String(days), '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'pipe' });
    const notAfter = () => Math.floor(Date.parse(new X509Certificate(readFileSync(cert)).validTo) / 1000);
    make(5);
    const soon = notAfter();
    const rec = recording();
    const warned: Record<string, unknown>[] = [];
    rec.telemetry.log.warn = ((o: Record<string, unknown>) => void warned.push(o)) as never;
    const src = await tlsSource.create(listenerConfig('tls', TLS_FIELDS, { tls: { cert_file: cert, key_file: pki.serverKey } }), rec.deps);
    await src.start();
    running.push(src);
    const st = rec.telemetry.listener('in');
    expect(st.tlsCertificateExpiry).toBe(soon);
    expect(warned.map((w) => w['code'])).toEqual(['tls_certificate_expiring']);
    expect(await rec.telemetry.registry.metrics()).toContain(`cefd_tls_certificate_expiry_timestamp_seconds{listener="in"} ${soon}`);
    // Renewed (60 days) and reloaded: the gauge moves, no new warning.
    make(60);
    expect(notAfter()).toBeGreaterThan(soon);
    expect(src.reload()).toBe(true);
    expect(st.tlsCertificateExpiry).toBe(notAfter());
    expect(warned.length).toBe(1);
    // The listener presents the renewed certificate.
    const presented = await new Promise<string>((resolve, reject) => {
      const c = tls.connect({ host: '127.0.0.1', port: src.port()!, servername: 'localhost', rejectUnauthorized: false }, () => {
        resolve(c.getPeerX509Certificate()!.validTo);
        c.destroy();
      });
      c.on('error', reject);
    });
    expect(Math.floor(Date.parse(presented) / 1000)).toBe(notAfter());
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('tls: an unencrypted private key every user can read is warned about (tls_key_readable_by_others), at start and on reload; a 0640 key or an encrypted one is not', async () => {
  const pki = makePki();
  const dir = tempDir('cefd-keymode-');
  try {
    const key = join(dir, 'server.key');
    writeFileSync(key, readFileSync(pki.serverKey));
    chmodSync(key, 0o644);
    const enc = join(dir, 'server-enc.key');
    execFileSync('openssl', ['pkey', '-in', pki.serverKey, '-aes256', '-passout', 'pass:pw', '-out', enc], { stdio: 'pipe' });
    chmodSync(enc, 0o644);
    const start = async (tlsOpts: Record<string, unknown>) => {
      const rec = recording();
      const warned: Record<string, unknown>[] = [];
      rec.telemetry.log.warn = ((o: Record<string, unknown>) => void warned.push(o)) as never;
      const src = await tlsSource.create(listenerConfig('tls', TLS_FIELDS, { tls: { cert_file: pki.serverCert, ...tlsOpts } }), rec.deps);
      await src.start();
      running.push(src);
      return { src, codes: () => warned.map((w) => w['code']) };
    };
    const plain = await start({ key_file: key });
    expect(plain.codes()).toEqual(['tls_key_readable_by_others']);
    chmodSync(key, 0o640);
    expect(plain.src.reload()).toBe(true);
    expect(plain.codes()).toEqual(['tls_key_readable_by_others']);
    chmodSync(key, 0o644);
    expect(plain.src.reload()).toBe(true);
    expect(plain.codes()).toEqual(['tls_key_readable_by_others', 'tls_key_readable_by_others']);
    const encrypted = await start({ key_file: enc, key_passphrase: 'pw' });
    expect(encrypted.codes()).toEqual([]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('tls max_connections: at the limit, a slow handshake makes room before a served connection that is quiet (KSC keeps its connection open between events)', async () => {
  const pki = makePki();
  const { src, rec } = await tlsListener({ max_connections: 2, tls: { cert_file: pki.serverCert, key_file: pki.serverKey, handshake_timeout: '2s' } });
  const st = rec.telemetry.listener('in');
  // The sender: handshake done, nothing sent yet.
  const quiet = await tlsHandshaken(src.port()!);
  let quietClosed = false;
  quiet.on('error', () => undefined);
  quiet.on('close', () => (quietClosed = true));
  await waitFor(() => st.connectionsAccepted === 1, 30_000, 'the quiet sender served');
  // A slowloris handshake takes the second slot; after a while (a handshake counts as
  // slow after half of handshake_timeout: 1 s here) another connection needs room.
  const slow = await connect(src.port()!);
  slow.write(Buffer.from([0x16, 0x03, 0x01, 0x02]));
  const slowClosed = closedByServer(slow);
  await new Promise((r) => setTimeout(r, 1500));
  const third = await connect(src.port()!);
  third.on('error', () => undefined);
  await slowClosed;
  expect(st.connectionsRejected.map.get('evicted_no_frame')).toBe(1);
  expect(quietClosed).toBe(false);
  quiet.end('<13>from the quiet sender\n');
  await waitFor(() => rec.frames.length === 1, 30_000, 'the quiet sender\'s frame');
  expect(rec.frames[0]!.text).toBe('<13>from the quiet sender');
  third.destroy();
});

test('tls max_connections: a handshake that has just begun is not what makes room; an idle served connection is (a flood that finishes handshakes and idles cannot kill KSC\'s reconnects)', async () => {
  const pki = makePki();
  // A handshake counts as slow after half of handshake_timeout: 60 s, far beyond this test.
  const { src, rec } = await tlsListener({ max_connections: 2, tls: { cert_file: pki.serverCert, key_file: pki.serverKey, handshake_timeout: '120s' } });
  const st = rec.telemetry.listener('in');
  // An idle connection with its handshake done (the attacker's), then KSC's reconnect in
  // the middle of its handshake (its ClientHello not complete yet).
  const idle = await tlsHandshaken(src.port()!);
  idle.on('error', () => undefined);
  const idleClosed = new Promise<void>((r) => idle.once('close', () => r()));
  await waitFor(() => st.connectionsAccepted === 1, 30_000, 'the idle connection served');
  const reconnect = await connect(src.port()!);
  reconnect.on('error', () => undefined);
  reconnect.write(Buffer.from([0x16, 0x03, 0x01]));
  const reconnectClosed = new Promise<void>((r) => reconnect.once('close', () => r()));
  // One more connection: the idle served one makes room, not the young handshake.
  const third = await connect(src.port()!);
  third.on('error', () => undefined);
  const first = await Promise.race([idleClosed.then(() => 'idle'), reconnectClosed.then(() => 'the reconnect')]);
  expect(first).toBe('idle');
  expect(st.connectionsRejected.map.get('evicted_no_frame')).toBe(1);
  reconnect.destroy();
  third.destroy();
});
