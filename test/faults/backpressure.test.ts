/**
 * Backpressure, measured: 1,000,000 KSC events sent to cefd while its only
 * output is stalled, with a 100 MB disk buffer and `when_full: block`. cefd's memory must
 * stay bounded (peak RSS under 300 MB) while reading is paused, and reading must resume,
 * with every event delivered, when the output recovers.
 */
import { createReadStream } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { afterAll, expect, test } from 'vitest';
import { scrape, tempDir, waitFor } from '../helpers/daemon.js';
import { freePort, peakRss, printReport, runCefd, type FaultResult } from '../helpers/child.js';
import { dataFile } from '../../bench/data.mjs';

const report: FaultResult[] = [];
afterAll(() => printReport(report));

test('1,000,000 events into a stalled output with a 100 MB buffer: RSS stays under 300 MB, reading resumes, all delivered', async () => {
  const n = 1_000_000;
  const file = dataFile(n, 'lf');
  let stalled = true;
  const held: (() => void)[] = [];
  let received = 0;
  const srv = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      const done = () => {
        let k = 0;
        for (let i = body.indexOf('\n'); i !== -1; i = body.indexOf('\n', i + 1)) k++;
        received += k;
        res.writeHead(200).end();
      };
      if (stalled) held.push(done);
      else done();
    });
  });
  srv.keepAliveTimeout = 120_000;
  srv.requestTimeout = 0;
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(srv.address() as net.AddressInfo).port}/ingest`;
  const dir = tempDir();
  const port = await freePort();
  const metrics = await freePort();
  const d = runCefd(
    dir,
    `state_dir: ./state
listeners: [ { name: tcp, type: tcp, host: 127.0.0.1, port: ${port} } ]
outputs:
  - { name: siem, type: http, url: "${url}", timeout: 600s, batch_max_events: 1000, buffer: { max_size: 100MB } }
dead_letter: { path: ./dead.ndjson }
metrics: { host: 127.0.0.1, port: ${metrics} }
`,
  );
  try {
    await d.until('cefd started');
    const sock = net.connect(port, '127.0.0.1');
    await new Promise((r) => sock.once('connect', r));
    const sent = new Promise<void>((resolve, reject) => {
      const rs = createReadStream(file, { highWaterMark: 1 << 20 });
      rs.pipe(sock);
      rs.on('end', () => resolve());
      rs.on('error', reject);
    });
    // Stalled: the buffer fills to its limit and reading pauses.
    await waitFor(async () => (await scrape(metrics)).get('cefd_ingestion_paused') === 1, 120_000, 'reading paused');
    let maxBuffer = 0;
    let samples = 0;
    const t0 = Date.now();
    while (Date.now() - t0 < 3000) {
      const m = await scrape(metrics);
      maxBuffer = Math.max(maxBuffer, m.get('cefd_buffer_bytes{output="siem"}') ?? 0);
      expect(m.get('cefd_ingestion_paused')).toBe(1);
      samples++;
      await new Promise((r) => setTimeout(r, 200));
    }
    const parsedWhilePaused = (await scrape(metrics)).get('cefd_events_parsed_total{listener="tcp"}')!;
    const rssStalled = await peakRss(d.proc.pid!);
    // Recover: reading resumes and everything arrives.
    stalled = false;
    for (const h of held.splice(0)) h();
    await sent;
    sock.end();
    await waitFor(() => received >= n, 300_000, 'all events delivered');
    const m = await scrape(metrics);
    const rss = await peakRss(d.proc.pid!);
    expect(received).toBe(n);
    expect(m.get('cefd_output_sent_events_total{output="siem"}')).toBe(n);
    expect([...m.keys()].filter((k) => k.startsWith('cefd_output_dropped_events_total'))).toEqual([]);
    expect(parsedWhilePaused).toBeLessThan(n);
    expect(maxBuffer).toBeLessThan(110 * 1e6);
    expect(rss).toBeLessThan(300 * 1024 * 1024);
    const pausedS = m.get('cefd_ingestion_paused_seconds_total')!;
    console.log(`backpressure: ${n} events, buffer peak ${(maxBuffer / 1e6).toFixed(1)} MB (${samples} samples), parsed while paused ${parsedWhilePaused}, peak RSS stalled ${(rssStalled / 2 ** 20).toFixed(0)} MiB, overall ${(rss / 2 ** 20).toFixed(0)} MiB, paused ${pausedS.toFixed(1)} s`);
    report.push({
      test: 'output stalled, 1,000,000 events sent, 100 MB disk buffer (`when_full: block`)',
      sent: `${n} events (${(m.get('cefd_received_bytes_total{listener="tcp"}')! / 1e6).toFixed(0)} MB)`,
      arrived: `${received} after the output recovered`,
      lost: '0',
      why: `buffer peaked at ${(maxBuffer / 1e6).toFixed(1)} MB, reading paused (${parsedWhilePaused} events read until then), peak RSS ${(rss / 2 ** 20).toFixed(0)} MiB`,
    });
    d.proc.kill('SIGTERM');
    expect(await d.exit).toBe(0);
  } finally {
    d.proc.kill('SIGKILL');
    srv.closeAllConnections();
    srv.close();
  }
});
