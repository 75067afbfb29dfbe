/**
 * The syslog output against a real rsyslogd from Debian (test/helpers/rsyslog.ts): framing
 * and headers as rsyslog reads them, UDP, per-record rejections, a receiver down at start
 * and killed mid-stream (nothing lost), a receiver that stops reading, and TLS through
 * rsyslog's ossl driver (CA, pin, wrong certificate, wrong pin, client certificate).
 */
import { afterEach, describe, expect, test, vi } from 'vitest';
import dgram from 'node:dgram';
import dns from 'node:dns';
import net from 'node:net';
import { X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../helpers/temp.js';
import { loadFields } from '../../src/config/load.js';
import { SYSLOG_FIELDS, checkSyslog } from '../../src/outputs/syslog/config.js';
import { SyslogOutput } from '../../src/outputs/syslog/syslog.js';
import type { SendResult } from '../../src/outputs/types.js';
import { freePort } from '../helpers/child.js';
import { waitFor } from '../helpers/daemon.js';
import { expectSendAborted } from '../helpers/abort.js';
import { makePki } from '../helpers/pki.js';
import { startRsyslog, type Rsyslog } from '../helpers/rsyslog.js';

const running: Rsyslog[] = [];
const outputs: SyslogOutput[] = [];
const servers: net.Server[] = [];

afterEach(async () => {
  await Promise.all(outputs.splice(0).map((o) => o.close()));
  await Promise.all(running.splice(0).map((r) => r.stop('SIGKILL')));
  for (const s of servers.splice(0)) s.close();
});

async function rsyslog(port: number, opts: Parameters<typeof startRsyslog>[1] = {}): Promise<Rsyslog> {
  const r = await startRsyslog(port, opts);
  running.push(r);
  return r;
}

function output(raw: Record<string, unknown>): SyslogOutput {
  const c = loadFields(SYSLOG_FIELDS, raw);
  expect(checkSyslog(c)).toEqual([]);
  const o = new SyslogOutput('fwd', { ...c, retry: { initial_backoff: 0.05, max_backoff: 0.2 } });
  outputs.push(o);
  return o;
}

/** Sends until the batch is settled (delivered, or partial without retries), as the runner would. */
async function sendUntilSettled(o: SyslogOutput, records: string[]): Promise<SendResult> {
  for (;;) {
    const r = await o.send({ records });
    if (r.status === 'delivered' || r.status === 'rejected') return r;
    if (r.status === 'partial' && (r.retry ?? []).length === 0) return r;
    await new Promise((res) => setTimeout(res, 50));
  }
}

const cef = (i: number) => `CEF:0|KasperskyLab|SecurityCenter|15.0|GNRL_EV_VIRUS_FOUND|Virus found|4|rt=1700000000000 dhost=pc-${i} cs3=ünïcode \\= ok cs3Label=Note externalId=${i}`;

describe('against rsyslog', () => {
  test('tcp, octet counting, RFC 5424: every record as rsyslog reads it', async () => {
    const r = await rsyslog(await freePort());
    const o = output({ host: '127.0.0.1', port: r.port, hostname: 'fwd01', app_name: 'cefd', facility: 'local4', severity: 'warning' });
    await o.start();
    const records = [cef(1), cef(2), '{"json":"works too","n":3}'];
    expect(await o.send({ records })).toEqual({ status: 'delivered' });
    await waitFor(() => r.lines().length >= 3, 30_000, 'three messages');
    expect(r.lines()).toEqual(records.map((msg) => ({ pri: String(20 * 8 + 4), hostname: 'fwd01', app: 'cefd', msg })));
  });

  test('tcp, LF framing, RFC 3164; a record with a newline, one with a NUL and one too big are dead-lettered alone', async () => {
    const r = await rsyslog(await freePort());
    const o = output({ host: '127.0.0.1', port: r.port, framing: 'lf', header: 'rfc3164', hostname: 'fwd02', max_message_size: 2048 });
    await o.start();
    const res = await o.send({ records: [cef(1), 'CEF:0|a|b|1|x|line\nbreak|1|', cef(3), `CEF:0|a|b|1|x|big|1|msg=${'x'.repeat(3000)}`, cef(5), 'CEF:0|a|b|1|x|nul\0byte|1|'] });
    expect(res.status).toBe('partial');
    if (res.status !== 'partial') return;
    expect(res.retry ?? []).toEqual([]);
    expect(res.rejected!.map((x) => [x.index, x.reason])).toEqual([
      [1, 'syslog_record_has_newline'],
      [3, 'syslog_message_too_big'],
      [5, 'syslog_record_has_nul'],
    ]);
    await waitFor(() => r.lines().length >= 3, 30_000, 'three messages');
    expect(r.lines().map((l) => [l.pri, l.hostname, l.app, l.msg])).toEqual([1, 3, 5].map((i) => ['14', 'fwd02', 'cefd', cef(i)]));
  });

  test('header none: the CEF record alone, octet-counted', async () => {
    const r = await rsyslog(await freePort());
    const o = output({ host: '127.0.0.1', port: r.port, header: 'none' });
    await o.start();
    expect((await o.send({ records: [cef(7)] })).status).toBe('delivered');
    await waitFor(() => r.lines().length >= 1, 30_000, 'one message');
    // rsyslog finds no header: it reads `CEF:` as the tag, the rest as the message.
    const l = r.lines()[0]!;
    expect(`${l.app}:${l.msg}`).toBe(cef(7));
  });

  test('udp: one datagram per message; a record over 65507 bytes is dead-lettered', async () => {
    const r = await rsyslog(await freePort());
    const o = output({ transport: 'udp', host: '127.0.0.1', port: r.port, hostname: 'fwd03', max_message_size: '1MiB' });
    await o.start();
    const res = await o.send({ records: [cef(1), `CEF:0|a|b|1|x|big|1|msg=${'y'.repeat(70_000)}`, cef(2)] });
    expect(res.status).toBe('partial');
    if (res.status === 'partial') expect(res.rejected!.map((x) => [x.index, x.reason])).toEqual([[1, 'syslog_message_too_big']]);
    await waitFor(() => r.lines().length >= 2, 30_000, 'two datagrams');
    expect(r.lines().map((l) => l.msg)).toEqual([cef(1), cef(2)]);
  });

  test('udp to a closed port: the kernel\'s ICMP report makes a batch retry, with the reason', async () => {
    const o = output({ transport: 'udp', host: '127.0.0.1', port: await freePort() });
    await o.start();
    let res: SendResult = { status: 'delivered' };
    for (let i = 0; i < 100 && res.status === 'delivered'; i++) {
      res = await o.send({ records: [cef(i)] });
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(res.status).toBe('retry');
    if (res.status === 'retry') expect(res.error).toMatch(/refused datagrams \(.*ECONNREFUSED.*\): datagrams sent before this may be lost/);
  });

  test('udp to a host that does not resolve at start: start() succeeds, batches retry with the DNS error, then flow once it resolves', async () => {
    // The real resolver both times: `siem.invalid` (RFC 6761: never resolves), then the same
    // name looked up as `localhost` (as if DNS now had it), so no test depends on /etc/hosts edits.
    let resolvable = false;
    const realLookup = dns.lookup;
    const spy = vi.spyOn(dns, 'lookup').mockImplementation(((host: string, ...rest: unknown[]) =>
      (realLookup as (...a: unknown[]) => void)(host === 'siem.invalid' && resolvable ? 'localhost' : host, ...rest)) as typeof dns.lookup);
    const rx = dgram.createSocket('udp4');
    try {
      await new Promise<void>((r) => rx.bind(0, '127.0.0.1', r));
      const got: string[] = [];
      rx.on('message', (m) => got.push(m.toString('utf8')));
      const o = output({ transport: 'udp', host: 'siem.invalid', port: rx.address().port, header: 'none' });
      await o.start();
      for (let i = 0; i < 2; i++) {
        const res = await o.send({ records: [cef(i)] });
        expect(res.status).toBe('retry');
        if (res.status === 'retry') expect(res.error).toMatch(/cannot use siem\.invalid:\d+: .*(ENOTFOUND|EAI_AGAIN)/);
        expect(o.unready()).toMatch(/ENOTFOUND|EAI_AGAIN/);
      }
      resolvable = true;
      expect(await o.send({ records: [cef(1)] })).toEqual({ status: 'delivered' });
      expect(o.unready()).toBeUndefined();
      await waitFor(() => got.length >= 1, 30_000, 'one datagram');
      expect(got).toEqual([cef(1)]);
    } finally {
      spy.mockRestore();
      rx.close();
    }
  });

  test('receiver down at start, then killed mid-stream and restarted: every record arrives', async () => {
    const port = await freePort();
    const o = output({ host: '127.0.0.1', port, hostname: 'fwd04', connect_timeout: '2s', write_timeout: '5s' });
    await o.start();
    // Down at start: a retry with a clear error, nothing counted as sent.
    const first = await o.send({ records: [cef(0)] });
    expect(first.status).toBe('retry');
    if (first.status === 'retry') expect(first.error).toMatch(/cannot connect to 127\.0\.0\.1:\d+: .*ECONNREFUSED/);
    let r = await rsyslog(port);
    const total = 20_000;
    const batch = 500;
    let killed = false;
    for (let i = 0; i < total; i += batch) {
      const records = Array.from({ length: batch }, (_, k) => cef(i + k));
      await sendUntilSettled(o, records);
      if (!killed && i >= total / 2) {
        // Mid-stream: kill -9 (whatever it had not read is gone), then back on the same port.
        killed = true;
        await r.stop('SIGKILL');
        running.splice(running.indexOf(r), 1);
        r = await rsyslog(port, { dir: r.dir });
      }
    }
    const ids = () => new Set(r.lines().map((l) => Number(/externalId=(\d+)/.exec(l.msg)?.[1])));
    await waitFor(() => ids().size >= total, 30_000, `${total} distinct records`);
    const got = ids();
    for (let i = 0; i < total; i++) expect(got.has(i)).toBe(true);
    // Duplicates only from the resend window (8 MiB by default) after the break.
    const dups = r.lines().length - got.size;
    expect(dups).toBeGreaterThanOrEqual(0);
    expect(dups * 200).toBeLessThanOrEqual(8 * 1024 * 1024 + 200 * batch);
    expect(o.streamStats!.connections).toBeGreaterThanOrEqual(2);
  });
});

describe('orderly stop', () => {
  async function receiver(closesOnEnd: boolean): Promise<{ port: number; bytes: () => number }> {
    let got = 0;
    // allowHalfOpen: our side stays open after cefd's FIN (a receiver that never closes).
    const srv = net.createServer({ allowHalfOpen: !closesOnEnd }, (sock) => sock.on('data', (d: Buffer) => (got += d.length)));
    servers.push(srv);
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    return { port: (srv.address() as net.AddressInfo).port, bytes: () => got };
  }

  /** An output that sent three messages to the receiver and had them taken by the kernel. */
  async function sentThree(closesOnEnd: boolean): Promise<SyslogOutput> {
    const rx = await receiver(closesOnEnd);
    const o = output({ host: '127.0.0.1', port: rx.port, header: 'none', write_timeout: '300ms' });
    await o.start();
    expect(await o.send({ records: [cef(1), cef(2), cef(3)] })).toEqual({ status: 'delivered' });
    outputs.splice(outputs.indexOf(o), 1);
    return o;
  }

  test('a receiver that closes after reading confirms the window: nothing reported', async () => {
    expect(await (await sentThree(true)).close()).toEqual({ abandoned: null });
  });

  test('a receiver that does not close in time: the window\'s messages are reported unconfirmed (counted by the runner), not let go silently', async () => {
    const report = await (await sentThree(false)).close();
    expect(report.abandoned).toMatchObject({ events: 3, reason: 'syslog_unconfirmed' });
    expect(report.abandoned!.error).toMatch(/3 message\(s\) \(\d+ bytes\) of the resend window were not confirmed by 127\.0\.0\.1:\d+/);
  });
});

test('the shutdown deadline (AbortSignal) ends a send the receiver does not read: retry, the batch stays queued', async () => {
  // A receiver that accepts and never reads: the kernel buffers fill and the write waits.
  const srv = net.createServer((c) => c.pause());
  servers.push(srv);
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const o = output({ host: '127.0.0.1', port: (srv.address() as net.AddressInfo).port, header: 'none', write_timeout: '3s', max_message_size: '64KiB' });
  await o.start();
  const big = Array.from({ length: 2000 }, (_, i) => `${cef(i)} msg=${'q'.repeat(8000)}`); // 16 MB: more than the socket buffers hold
  await expectSendAborted(o, { records: big });
});

describe('a receiver that stops reading', () => {
  test('rsyslogd stopped (SIGSTOP): sends stall and are retried, memory stays bounded; after SIGCONT every record arrives', async () => {
    const r = await rsyslog(await freePort());
    const o = output({ host: '127.0.0.1', port: r.port, write_timeout: '1s', resend_window: '2MiB' });
    await o.start();
    r.proc.kill('SIGSTOP');
    const batch = 1000;
    let sent = 0;
    let res: SendResult = { status: 'delivered' };
    // Until the kernel buffers are full and a batch is given up after write_timeout.
    while (res.status === 'delivered' && sent < 200_000) {
      const records = Array.from({ length: batch }, (_, k) => `${cef(sent + k)} msg=${'s'.repeat(300)}`);
      res = await o.send({ records });
      if (res.status === 'delivered') sent += batch;
    }
    expect(res.status).toBe('retry');
    expect(o.streamStats!.heldBytes).toBeLessThanOrEqual(2 * 2 * 1024 * 1024 + batch * 600);
    r.proc.kill('SIGCONT');
    for (let i = sent; i < sent + 2 * batch; i += batch) {
      await sendUntilSettled(o, Array.from({ length: batch }, (_, k) => `${cef(i + k)} msg=${'s'.repeat(300)}`));
    }
    const total = sent + 2 * batch;
    const ids = () => new Set(r.lines().map((l) => Number(/externalId=(\d+)/.exec(l.msg)?.[1])));
    await waitFor(() => ids().size >= total, 60_000, `${total} distinct records`);
    const got = ids();
    for (let i = 0; i < total; i++) expect(got.has(i)).toBe(true);
  });


  test('backpressure: the batch waits, then is retried after write_timeout; memory held stays within the resend window', async () => {
    const received: Buffer[] = [];
    const sockets: net.Socket[] = [];
    const server = net.createServer((s) => {
      sockets.push(s);
      s.pause(); // reads nothing: the kernel buffers fill, then the sender's writes stall
      s.on('data', (c: Buffer) => received.push(c));
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    const o = output({ host: '127.0.0.1', port, header: 'none', write_timeout: '500ms', resend_window: '1MiB' });
    await o.start();
    const big = 'x'.repeat(1000);
    const records = Array.from({ length: 2000 }, (_, i) => `CEF:0|a|b|1|x|n|1|externalId=${i} msg=${big}`);
    let res: SendResult = { status: 'delivered' };
    for (let round = 0; round < 200 && res.status === 'delivered'; round++) res = await o.send({ records });
    // More than the kernel can hold was offered: a send stalled and was given up.
    expect(res.status).toBe('retry');
    if (res.status === 'retry') expect(res.error).toMatch(/took no bytes for 500 ms \(write_timeout\)/);
    expect(o.streamStats!.heldBytes).toBeLessThanOrEqual(1024 * 1024 + 1100);
    // The receiver reads again: the retried batch goes through on a new connection.
    for (const s of sockets) s.resume();
    expect((await sendUntilSettled(o, records.slice(0, 10))).status).toBe('delivered');
  });
});

describe('a connection that breaks with bytes the receiver never read', () => {
  /** A receiver whose first connection reads nothing and is then reset; later ones read everything. */
  async function dropFirstConnection(): Promise<{ port: number; second: () => string; drop: () => void }> {
    let n = 0;
    let first: net.Socket | null = null;
    const later: Buffer[] = [];
    const server = net.createServer((s) => {
      if (++n === 1) {
        first = s;
        s.pause();
        return;
      }
      s.on('data', (c: Buffer) => later.push(c));
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return {
      port: (server.address() as net.AddressInfo).port,
      second: () => Buffer.concat(later).toString('utf8'),
      drop: () => first!.resetAndDestroy(),
    };
  }

  test('the resend window is written first on the next connection, in order', async () => {
    const rx = await dropFirstConnection();
    const o = output({ host: '127.0.0.1', port: rx.port, header: 'none', framing: 'lf' });
    await o.start();
    // The kernel takes these (delivered), but the receiver never reads them.
    expect(await o.send({ records: [cef(1), cef(2)] })).toEqual({ status: 'delivered' });
    rx.drop();
    // Reopened in the background (a window waits), or by the next batch.
    expect(await sendUntilSettled(o, [cef(3)])).toEqual({ status: 'delivered' });
    await waitFor(() => rx.second().split('\n').length > 3, 30_000, 'three lines on the second connection');
    expect(rx.second()).toBe(`${cef(1)}\n${cef(2)}\n${cef(3)}\n`);
    expect(o.streamStats!.resentFrames).toBe(2);
  });

  test('resend_window: 0 turns it off: the unread records are lost (why the window exists)', async () => {
    const rx = await dropFirstConnection();
    const o = output({ host: '127.0.0.1', port: rx.port, header: 'none', framing: 'lf', resend_window: 0 });
    await o.start();
    expect(await o.send({ records: [cef(1), cef(2)] })).toEqual({ status: 'delivered' });
    rx.drop();
    expect(await sendUntilSettled(o, [cef(3)])).toEqual({ status: 'delivered' });
    await waitFor(() => rx.second().length > 0, 30_000, 'a line on the second connection');
    expect(rx.second()).toBe(`${cef(3)}\n`);
  });
});

describe('tls against rsyslog (ossl driver)', () => {
  const pki = makePki();
  const fp = new X509Certificate(readFileSync(pki.serverCert)).fingerprint256;
  const tlsFiles = { ca: pki.caCert, cert: pki.serverCert, key: pki.serverKey };

  test('CA-verified, and pinned without a CA: delivered', async () => {
    const r = await rsyslog(await freePort(), { tls: tlsFiles });
    const a = output({ transport: 'tls', host: '127.0.0.1', port: r.port, ca_file: pki.caCert, hostname: 'tls-ca' });
    await a.start();
    expect(await sendUntilSettled(a, [cef(1)])).toEqual({ status: 'delivered' });
    const b = output({ transport: 'tls', host: '127.0.0.1', port: r.port, pin_sha256: [fp.toLowerCase()], hostname: 'tls-pin' });
    await b.start();
    expect(await sendUntilSettled(b, [cef(2)])).toEqual({ status: 'delivered' });
    await waitFor(() => r.lines().length >= 2, 30_000, 'two messages');
    expect(r.lines().map((l) => [l.hostname, l.msg]).sort()).toEqual([['tls-ca', cef(1)], ['tls-pin', cef(2)]]);
  });

  test('a receiver that requires a client certificate gets one from cert_file/key_file', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'client.crt'), pki.clientCert);
    writeFileSync(join(dir, 'client.key'), pki.clientKey);
    const r = await rsyslog(await freePort(), { tls: { ...tlsFiles, authMode: 'x509/certvalid' } });
    const o = output({ transport: 'tls', host: '127.0.0.1', port: r.port, ca_file: pki.caCert, cert_file: join(dir, 'client.crt'), key_file: join(dir, 'client.key'), hostname: 'tls-client' });
    await o.start();
    expect(await sendUntilSettled(o, [cef(5)])).toEqual({ status: 'delivered' });
    await waitFor(() => r.lines().length >= 1, 30_000, 'one message');
    expect(r.lines().map((l) => [l.hostname, l.msg])).toEqual([['tls-client', cef(5)]]);
  });

  test('without the client certificate: refused; what counted as delivered is still held, memory bounded', async () => {
    const r = await rsyslog(await freePort(), { tls: { ...tlsFiles, authMode: 'x509/certvalid' } });
    // TLS 1.3 refuses the client after the handshake, so the kernel takes the first writes.
    const o = output({ transport: 'tls', host: '127.0.0.1', port: r.port, ca_file: pki.caCert });
    await o.start();
    const records = Array.from({ length: 200 }, (_, i) => `${cef(i)} msg=${'p'.repeat(400)}`);
    const recordBytes = records.reduce((n, x) => n + Buffer.byteLength(x), 0);
    let delivered = 0;
    let refused = 0;
    let last: SendResult = { status: 'delivered' };
    for (let round = 0; round < 200; round++) {
      last = await o.send({ records });
      if (last.status === 'delivered') delivered++;
      else refused++;
      if (last.status === 'retry' && last.error.includes('dropped its connections before reading')) break;
    }
    // Nothing was read, so nothing acknowledged may have left the window...
    expect(o.streamStats!.heldBytes).toBeGreaterThanOrEqual(delivered * recordBytes);
    // ...which stays bounded: past twice resend_window new batches are refused, with the reason.
    expect(o.streamStats!.heldBytes).toBeLessThanOrEqual(2 * 8 * 1024 * 1024 + 2 * recordBytes);
    // Refused: each new connection takes writes until the server resets it, so batches are
    // refused (a reset, or the window's reason) between runs that a fresh connection took;
    // which of the two the last round was is the timing's (it was 'delivered' in one CI run).
    expect(refused).toBeGreaterThan(0);
    if (last.status === 'retry') expect(last.error).toMatch(/ECONNRESET|ERR_STREAM_DESTROYED|EPIPE|dropped its connections before reading|closed|reset/i);
    expect(r.lines()).toEqual([]);
  });

  test('wrong CA and wrong pin are refused with a clear error, nothing sent', async () => {
    const r = await rsyslog(await freePort(), { tls: tlsFiles });
    // The system CAs do not know the test CA.
    const a = output({ transport: 'tls', host: '127.0.0.1', port: r.port });
    await a.start();
    const ra = await a.send({ records: [cef(1)] });
    expect(ra.status).toBe('retry');
    if (ra.status === 'retry') expect(ra.error).toMatch(/cannot connect to 127\.0\.0\.1:\d+: .*(UNABLE_TO_VERIFY_LEAF_SIGNATURE|unable to verify|self.signed)/i);
    const b = output({ transport: 'tls', host: '127.0.0.1', port: r.port, pin_sha256: ['00'.repeat(32)] });
    await b.start();
    const rb = await b.send({ records: [cef(2)] });
    expect(rb.status).toBe('retry');
    if (rb.status === 'retry') expect(rb.error).toContain(`does not match pin_sha256 (it presented SHA-256 ${fp.replace(/:/g, '')})`);
    // A CA check that passes does not excuse a wrong pin.
    const c = output({ transport: 'tls', host: '127.0.0.1', port: r.port, ca_file: pki.caCert, pin_sha256: ['11'.repeat(32)] });
    await c.start();
    expect((await c.send({ records: [cef(3)] })).status).toBe('retry');
    const d = output({ transport: 'tls', host: '127.0.0.1', port: r.port, ca_file: pki.caCert, hostname: 'ok' });
    await d.start();
    expect(await sendUntilSettled(d, [cef(4)])).toEqual({ status: 'delivered' });
    await waitFor(() => r.lines().length >= 1, 30_000, 'one message');
    expect(r.lines().map((l) => l.msg)).toEqual([cef(4)]);
  });
});

describe('config', () => {
  test('checks: TLS options need transport tls, pins must be SHA-256, header names printable', () => {
    const c = loadFields(SYSLOG_FIELDS, { host: 'h', ca_file: '/x', pin_sha256: ['zz'], app_name: 'two words' });
    expect(checkSyslog(c).map((p) => p.key).sort()).toEqual(['app_name', 'ca_file', 'pin_sha256', 'pin_sha256']);
    expect(loadFields(SYSLOG_FIELDS, { host: 'h' }).encoding.codec).toBe('cef');
  });
});

describe('lifecycle', () => {
  test('a send before start or after close is a retry that says so (not a TypeError text)', async () => {
    for (const transport of ['tcp', 'udp'] as const) {
      const o = output({ transport, host: '127.0.0.1', port: await freePort() });
      const before = await o.send({ records: [cef(1)] });
      expect(before).toEqual({ status: 'retry', error: expect.stringMatching(/: the output is not started$/) });
      await o.start();
      await o.close();
      const after = await o.send({ records: [cef(2)] });
      expect(after).toEqual({ status: 'retry', error: expect.stringMatching(/: the output is closed$/) });
    }
  });
});
