/** The udp source (src/sources/udp/) on a real socket, alone: datagrams to frames, per sender, and the allowlist. */
import dgram from 'node:dgram';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, expect, test } from 'vitest';
import type { Source } from '../../src/sources/source.js';
import { udpSource } from '../../src/sources/udp/index.js';
import { UDP_FIELDS } from '../../src/sources/udp/config.js';
import { waitFor } from '../helpers/daemon.js';
import { tempDir } from '../helpers/temp.js';
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

test('receive_buffer_bytes: at most 1GiB (SO_RCVBUF takes a C int; 2GiB was EINVAL, thrown where nothing caught it); a size the socket refuses leaves the OS default with a warning, the listener works', async () => {
  expect(() => listenerConfig('udp', UDP_FIELDS, { receive_buffer_bytes: '2GiB' })).toThrow(/receive_buffer_bytes: must be at most 1073741824 bytes \(1GiB\), got "2GiB"/);
  expect(() => listenerConfig('udp', UDP_FIELDS, { receive_buffer_bytes: '4GiB' })).toThrow(/must be at most/);
  expect(listenerConfig('udp', UDP_FIELDS, { receive_buffer_bytes: '1GiB' }) as object).toMatchObject({ receive_buffer_bytes: 2 ** 30 });
  // Past the config's check (a plugin's own config, a future option): the kernel's refusal is a warning, not a crash.
  for (const bytes of [2 ** 31, 2 ** 32]) {
    const rec = recording();
    const lines: string[] = [];
    rec.telemetry.log.warn = ((_o: unknown, msg: string) => void lines.push(msg)) as never;
    const src = await udpSource.create({ ...(listenerConfig('udp', UDP_FIELDS, {}) as object), receive_buffer_bytes: bytes } as never, rec.deps);
    await src.start();
    running.push(src);
    expect(src.ready).toBe(true);
    expect(lines.find((l) => l.includes('cannot be set'))).toMatch(new RegExp(`receive_buffer_bytes ${bytes} cannot be set .*OS default`));
    const a = await sender();
    await a.send(src.port()!, '<13>still here');
    await waitFor(() => rec.frames.length === 1, 30_000, 'the datagram');
  }
});

test('a receive_buffer_bytes above net.core.rmem_max (which Linux caps silently) is reported with the size the kernel gave', async () => {
  const rmemMax = Number(readFileSync('/proc/sys/net/core/rmem_max', 'utf8'));
  const want = Math.min(2 ** 30, rmemMax * 4);
  const lines: { o: Record<string, unknown>; msg: string }[] = [];
  const rec = recording();
  rec.telemetry.log.warn = ((o: Record<string, unknown>, msg: string) => void lines.push({ o, msg })) as never;
  const src = await udpSource.create({ ...(listenerConfig('udp', UDP_FIELDS, {}) as object), receive_buffer_bytes: want } as never, rec.deps);
  await src.start();
  running.push(src);
  const w = lines.find((l) => l.msg.includes('the kernel gave a receive buffer'));
  expect(w?.msg).toMatch(/less than receive_buffer_bytes .*raise net\.core\.rmem_max/);
  expect(w?.o['configured']).toBe(want);
  expect(w?.o['receiveBufferBytes']).toBeLessThan(want);
  // Within rmem_max: no such warning.
  const quiet: string[] = [];
  const rec2 = recording();
  rec2.telemetry.log.warn = ((_o: unknown, msg: string) => void quiet.push(msg)) as never;
  const ok = await udpSource.create({ ...(listenerConfig('udp', UDP_FIELDS, {}) as object), receive_buffer_bytes: Math.min(rmemMax, 65536) } as never, rec2.deps);
  await ok.start();
  running.push(ok);
  expect(quiet.filter((m) => m.includes('receive buffer'))).toEqual([]);
});

test('datagrams the kernel drops while cefd does not read (a full receive buffer) are counted: every datagram sent is a frame or a drop', async () => {
  const { src, rec } = await udp({ receive_buffer_bytes: 4096 });
  const st = rec.telemetry.listener('in');
  expect(st.udpDropsOpen).toBeTypeOf('function');
  const drops = () => st.udpDropsClosed + (st.udpDropsOpen?.() ?? 0);
  expect(drops()).toBe(0);
  // Another process sends 300 datagrams of 1 KiB while this thread (the listener's) is held.
  const n = 300;
  const dir = tempDir();
  const done = join(dir, 'done');
  const child = spawn(process.execPath, [
    '-e',
    `const s = require('node:dgram').createSocket('udp4'); let i = 0; const msg = Buffer.alloc(1024, 0x61); msg.write('<13>'); const next = () => { if (i === ${n}) { s.close(); require('node:fs').writeFileSync(${JSON.stringify(done)}, ''); return; } i++; s.send(msg, ${src.port()!}, '127.0.0.1', next); }; next();`,
  ]);
  const exited = new Promise<number | null>((r) => child.once('exit', r));
  const hold = new Int32Array(new SharedArrayBuffer(4));
  const until = Date.now() + 30_000;
  // Held until the sender is done (a file it writes: no event can run meanwhile).
  while (!existsSync(done) && Date.now() < until) Atomics.wait(hold, 0, 0, 5);
  expect(await exited).toBe(0);
  await waitFor(() => rec.frames.length + drops() === n, 30_000, 'every datagram a frame or a drop');
  expect(drops()).toBeGreaterThan(0);
  expect(rec.frames.length).toBeGreaterThan(0);
  // A stopped listener keeps its count.
  const before = drops();
  await src.stop(0);
  running.splice(running.indexOf(src), 1);
  expect(st.udpDropsClosed).toBe(before);
  expect(st.udpDropsOpen).toBeUndefined();
});
