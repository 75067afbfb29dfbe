/**
 * cefd -> cefd: every KSC fixture decoded, encoded as CEF, forwarded by the syslog output
 * (octet counting, RFC 5424) to a second cefd daemon, keeps every CEF field (header and
 * extensions), plus the event's time and sender as `rt` and `dvchost` when the record had
 * none (src/codecs/encoders/cef.ts); and a `cefd run` child with a syslog output and a disk buffer loses nothing
 * across SIGTERM and kill -9 while its receiver (rsyslogd) is down.
 */
import { afterEach, describe, expect, test } from 'vitest';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeFrame } from '../../src/codecs/decode.js';
import { createEncoder } from '../../src/codecs/encoders/registry.js';
import { Framer } from '../../src/codecs/framing/framer.js';
import { loadFields } from '../../src/config/load.js';
import type { CefdEvent } from '../../src/event.js';
import { SYSLOG_FIELDS } from '../../src/outputs/syslog/config.js';
import { SyslogOutput } from '../../src/outputs/syslog/syslog.js';
import { freePort, runCefd, type ChildDaemon } from '../helpers/child.js';
import { scrape, sendTcp, startDaemon, waitFor, waitLines, type TestDaemon } from '../helpers/daemon.js';
import { startRsyslog, type Rsyslog } from '../helpers/rsyslog.js';
import { tempDir } from '../helpers/temp.js';

const GOLDEN = new URL('../../fixtures/ksc/golden/', import.meta.url).pathname;

/**
 * The CEF record of `e` as the `cef` encoding forwards it: the same, plus the event's time
 * (`rt`, epoch ms) and its syslog sender (`dvchost`) when the record has none.
 */
function forwarded(e: { timestamp: string; syslog?: { hostname?: string }; cef?: unknown }): unknown {
  const cef = JSON.parse(JSON.stringify(e.cef)) as { extensions: Record<string, string> };
  if (!cef.extensions['deviceReceiptTime']) cef.extensions['deviceReceiptTime'] = String(Date.parse(e.timestamp));
  if (!cef.extensions['deviceHostName'] && e.syslog?.hostname !== undefined) cef.extensions['deviceHostName'] = e.syslog.hostname;
  return cef;
}

const daemons: TestDaemon[] = [];
const children: ChildDaemon[] = [];
const receivers: Rsyslog[] = [];
afterEach(async () => {
  for (const c of children.splice(0)) {
    if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill('SIGKILL');
    await c.exit;
  }
  await Promise.all(daemons.splice(0).map((d) => d.stop()));
  await Promise.all(receivers.splice(0).map((r) => r.stop('SIGKILL')));
});

/** Every frame of every golden KSC fixture. */
function fixtureFrames(): Buffer[] {
  const out: Buffer[] = [];
  for (const f of readdirSync(GOLDEN).filter((n) => n.endsWith('.input.txt')).sort()) {
    const input = readFileSync(join(GOLDEN, f));
    const g = JSON.parse(readFileSync(join(GOLDEN, f.replace('.input.txt', '.json')), 'utf8')) as { mode: string };
    if (g.mode === 'line') {
      out.push(input);
      continue;
    }
    const framer = new Framer({ frame: (b) => out.push(Buffer.from(b)), discarded: () => {}, notice: () => {} });
    framer.push(input);
    framer.end();
  }
  return out;
}

describe('cefd -> cefd', () => {
  test('every CEF field of every KSC fixture arrives unchanged (plus rt and dvchost where the record had none)', async () => {
    const b = await startDaemon(`
state_dir: "{dir}/state"
metrics: { host: 127.0.0.1, port: 0 }
dead_letter: { path: "{dir}/dead.ndjson" }
listeners: [ { name: tcp, type: tcp, host: 127.0.0.1, port: 0 } ]
outputs: [ { name: events, type: file, path: "{dir}/events.ndjson" } ]
`);
    daemons.push(b);
    const enc = createEncoder({ codec: 'cef' });
    const sent: CefdEvent[] = [];
    for (const f of fixtureFrames()) {
      const r = decodeFrame(f, false, Date.now());
      if (r.ok && r.event.cef !== undefined) sent.push(r.event);
    }
    expect(sent.length).toBeGreaterThanOrEqual(40);
    const o = new SyslogOutput('fwd', loadFields(SYSLOG_FIELDS, { host: '127.0.0.1', port: b.port('tcp'), hostname: 'cefd-a' }));
    await o.start();
    expect(await o.send({ records: sent.map((e) => enc.encode(e)) })).toEqual({ status: 'delivered' });
    await o.close();
    const got = await waitLines(join(b.dir, 'events.ndjson'), sent.length);
    expect(got).toHaveLength(sent.length);
    got.forEach((e, i) => {
      expect(e['cef']).toEqual(forwarded(sent[i]!));
      expect((e['syslog'] as { hostname?: string }).hostname).toBe('cefd-a');
    });
    expect(enc.problems.counts.size).toBe(0);
  });
});

describe('cefd run with a syslog output, receiver down', () => {
  for (const how of ['SIGTERM', 'SIGKILL'] as const) {
    test(`${how} with events buffered on disk: all delivered after the restart`, async () => {
      const dir = tempDir();
      const rport = await freePort();
      const lport = await freePort();
      const mport = await freePort();
      const yaml = `
state_dir: "${dir}/state"
metrics: { host: 127.0.0.1, port: ${mport} }
shutdown_timeout: 2s
dead_letter: { path: "${dir}/dead.ndjson" }
listeners: [ { name: tcp, type: tcp, host: 127.0.0.1, port: ${lport} } ]
outputs:
  - name: siem
    type: syslog
    host: 127.0.0.1
    port: ${rport}
    hostname: cefd-buffered
    connect_timeout: 1s
    retry: { initial_backoff: 50ms, max_backoff: 200ms }
    buffer: { type: disk, fsync: batch }
`;
      const n = 300;
      let c = runCefd(dir, yaml);
      children.push(c);
      await c.until('cefd started', 20_000);
      await sendTcp(lport, Array.from({ length: n }, (_, i) => `CEF:0|KasperskyLab|SecurityCenter|15|E|buffered|3|externalId=${i}\n`));
      // The receiver is down: the output retries and the events wait in the disk buffer.
      await waitFor(async () => (await scrape(mport)).get('cefd_output_queue_events{output="siem"}') === n, 20_000, `${n} events queued`);
      await c.until('syslog output siem: cannot connect to 127.0.0.1', 20_000);
      c.proc.kill(how);
      await c.exit;
      const r = await startRsyslog(rport);
      receivers.push(r);
      c = runCefd(dir, yaml);
      children.push(c);
      await c.until('cefd started', 20_000);
      await waitFor(() => new Set(r.lines().map((l) => /externalId=(\d+)/.exec(l.msg)?.[1] ?? /"externalId":"(\d+)"/.exec(l.msg)?.[1])).size >= n, 30_000, `${n} events at rsyslog`);
      const ids = new Set(r.lines().map((l) => /externalId=(\d+)/.exec(l.msg)?.[1] ?? /"externalId":"(\d+)"/.exec(l.msg)?.[1]));
      for (let i = 0; i < n; i++) expect(ids.has(String(i))).toBe(true);
      expect(r.lines().every((l) => l.hostname === 'cefd-buffered')).toBe(true);
      c.proc.kill('SIGTERM');
      expect(await c.exit).toBe(0);
    }, 120_000);
  }
});

describe('cefd -> cefd through the daemons (the runner encodes with the output\'s encoding)', () => {
  test('a syslog output with the default cef encoding: the second daemon gets every CEF field', async () => {
    const lines = readFileSync(new URL('../../fixtures/ksc/fixtures-draft.txt', import.meta.url), 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('CEF:0|'));
    const b = await startDaemon(`
state_dir: "{dir}/state"
metrics: { host: 127.0.0.1, port: 0 }
dead_letter: { path: "{dir}/dead.ndjson" }
listeners: [ { name: tcp, type: tcp, host: 127.0.0.1, port: 0 } ]
outputs: [ { name: events, type: file, path: "{dir}/events.ndjson" } ]
`);
    daemons.push(b);
    const a = await startDaemon(`
state_dir: "{dir}/state"
metrics: { host: 127.0.0.1, port: 0 }
dead_letter: { path: "{dir}/dead.ndjson" }
listeners: [ { name: tcp, type: tcp, host: 127.0.0.1, port: 0 } ]
outputs:
  - { name: local, type: file, path: "{dir}/events.ndjson" }
  - { name: fwd, type: syslog, host: 127.0.0.1, port: ${b.port('tcp')}, hostname: cefd-a }
`);
    daemons.push(a);
    await sendTcp(a.port('tcp'), lines.map((l) => `${l}\n`));
    const here = await waitLines(join(a.dir, 'events.ndjson'), lines.length);
    const there = await waitLines(join(b.dir, 'events.ndjson'), lines.length);
    expect(there).toHaveLength(lines.length);
    there.forEach((e, i) => expect(e['cef']).toEqual(forwarded(here[i] as Parameters<typeof forwarded>[0])));
    expect(there.every((e) => (e['syslog'] as { hostname?: string }).hostname === 'cefd-a')).toBe(true);
  });
});
