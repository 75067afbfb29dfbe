/** The udp source (src/sources/udp/) on a real socket, alone: datagrams to frames, per sender, and the allowlist. */
import dgram from 'node:dgram';
import { afterEach, expect, test } from 'vitest';
import type { Source } from '../../src/sources/source.js';
import { udpSource } from '../../src/sources/udp/index.js';
import { UDP_FIELDS } from '../../src/sources/udp/config.js';
import { waitFor } from '../helpers/daemon.js';
import { listenerConfig, recording, type Recording } from './helpers.js';

const running: Source[] = [];
const sockets: dgram.Socket[] = [];
afterEach(async () => {
  for (const s of running.splice(0)) await s.stop(0);
  for (const s of sockets.splice(0)) s.close();
});

async function udp(raw: Record<string, unknown> = {}): Promise<{ src: Source; rec: Recording }> {
  const rec = recording();
  const src = await udpSource.create(listenerConfig('udp', UDP_FIELDS, raw), rec.deps);
  await src.start();
  running.push(src);
  return { src, rec };
}

async function sender(): Promise<{ send: (port: number, text: string) => Promise<void>; peer: string }> {
  const s = dgram.createSocket('udp4');
  sockets.push(s);
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  return {
    peer: `127.0.0.1:${s.address().port}`,
    send: (port, text) => new Promise((r, j) => s.send(text, port, '127.0.0.1', (e) => (e ? j(e) : r()))),
  };
}

test('one message per datagram, or several LF-separated ones; each frame carries its sender', async () => {
  const { src, rec } = await udp();
  const a = await sender();
  const b = await sender();
  await a.send(src.port()!, '<13>a1');
  await a.send(src.port()!, '<13>a2\n<13>a3\n');
  await b.send(src.port()!, '<13>b1\n');
  await waitFor(() => rec.frames.length === 4, 30_000, 'four frames');
  const of = (peer: string) => rec.frames.filter((f) => f.peer === peer).map((f) => f.text);
  expect(of(a.peer)).toEqual(['<13>a1', '<13>a2', '<13>a3']);
  expect(of(b.peer)).toEqual(['<13>b1']);
  expect(rec.frames.every((f) => f.mode === 'datagram')).toBe(true);
  expect(rec.telemetry.listener('in').bytes).toBe(6 + 14 + 7);
});

test('allowed_cidrs: datagrams from a sender outside are ignored and counted', async () => {
  const { src, rec } = await udp({ allowed_cidrs: ['10.0.0.0/8'] });
  const a = await sender();
  await a.send(src.port()!, '<13>no');
  await waitFor(() => rec.telemetry.listener('in').connectionsRejected.map.get('cidr') === 1, 30_000, 'the refusal counted');
  expect(rec.frames).toEqual([]);
});

test('a port in use is a clear start error', async () => {
  const { src } = await udp();
  const rec = recording();
  const clash = await udpSource.create(listenerConfig('udp', UDP_FIELDS, { port: src.port() }), rec.deps);
  await expect(clash.start()).rejects.toThrow(/listener in: cannot bind udp 127\.0\.0\.1:\d+/);
});
