/**
 * The daemon in-process: listeners over real sockets (TCP with fragmented writes and
 * octet counting, TLS with certificates made by the test, UDP), routes, outputs, dead
 * letters, access control, backpressure and metrics.
 */
import http from 'node:http';
import { cpSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { SPILL_FILE, SpillWriter } from '../../src/pipeline/spill.js';
import net from 'node:net';
import tls from 'node:tls';
import { dirname, join } from 'node:path';
import { DiskQueue } from '../../src/buffer/disk-queue.js';
import { afterEach, describe, expect, test } from 'vitest';
import { makePki } from '../helpers/pki.js';
import { readNdjson, scrape, sendTcp, sendUdp, startDaemon, tempDir, waitFor, waitLines, type TestDaemon } from '../helpers/daemon.js';
import { MAX_IN_FLIGHT_PER_SOURCE } from '../../src/pipeline/source-state.js';

const KSC_LINES = readFileSync(new URL('../../fixtures/ksc/fixtures-draft.txt', import.meta.url), 'utf8')
  .split('\n')
  .filter((l) => l.startsWith('CEF:0|KasperskyLab'));
const OTHER = 'CEF:0|Security|threatmanager|1.0|100|worm successfully stopped|10|src=10.0.0.1 dst=2.1.2.2 spt=1232';

let running: TestDaemon[] = [];
afterEach(async () => {
  await Promise.all(running.map((d) => d.stop()));
  running = [];
});
async function start(yaml: string, env?: Record<string, string>): Promise<TestDaemon> {
  const d = await startDaemon(yaml, env ? { env } : {});
  running.push(d);
  return d;
}

const BASE = `
state_dir: "{dir}/state"
shutdown_timeout: 5s
metrics: { host: 127.0.0.1, port: 0 }
dead_letter: { path: "{dir}/dead.ndjson" }
`;

/** Cuts `s` into pieces of 1..17 bytes (deterministic). */
function fragments(s: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let i = 0;
  let k = 7;
  while (i < s.length) {
    k = (k * 31 + 11) % 17;
    const n = 1 + k;
    out.push(s.subarray(i, i + n));
    i += n;
  }
  return out;
}

describe('TCP', () => {
  test('decode workers: a long stream over one connection (many reads, gathered into jobs) arrives complete and in order (the unterminated last frame last); a malformed frame goes to the dead-letter output', async () => {
    const d = await start(`${BASE}
decode_workers: 2
listeners: [ { name: tcp, type: tcp, host: 127.0.0.1, port: 0, max_frame_bytes: 4096 } ]
outputs: [ { name: events, type: file, path: "{dir}/events.ndjson" } ]
`);
    const n = 30_000;
    const bad = 17_000;
    const lines = Array.from({ length: n }, (_, i) => (i === bad ? 'garbage that is not an event' : `CEF:0|V|P|1|${i}|n|5|cn1=${i} msg=${'x'.repeat(i % 300)}`));
    // Written in uneven pieces, so socket reads cut frames anywhere; the last frame has no LF.
    const stream = Buffer.from(lines.join('\n'));
    const pieces: Buffer[] = [];
    for (let at = 0, k = 0; at < stream.length; k++) {
      const len = 1 + ((k * 7919) % 90_000);
      pieces.push(stream.subarray(at, at + len));
      at += len;
    }
    await sendTcp(d.port('tcp'), pieces);
    const events = await waitLines(join(d.dir, 'events.ndjson'), n - 1);
    const seqs = events.map((e) => Number((e['cef'] as { deviceEventClassId: string }).deviceEventClassId));
    expect(seqs).toEqual(Array.from({ length: n }, (_, i) => i).filter((i) => i !== bad));
    const dead = await waitLines(join(d.dir, 'dead.ndjson'), 1);
    expect(dead[0]!['raw']).toBe('garbage that is not an event');
    const m = await scrape(d.metricsPort());
    expect(m.get('cefd_events_parsed_total{listener="tcp"}')).toBe(n - 1);
  });

  test('fragmented writes, LF and octet counting mixed, in order, routed by filter', async () => {
    const d = await start(`${BASE}
listeners: [ { name: tcp, type: tcp, host: 127.0.0.1, port: 0 } ]
outputs:
  - { name: events, type: file, path: "{dir}/events.ndjson" }
  - { name: ksc, type: file, path: "{dir}/ksc.ndjson", filter: 'cef.deviceProduct == "SecurityCenter"' }
`);
    const lines = [...KSC_LINES, OTHER];
    const stream = Buffer.concat(
      lines.map((l, i) => {
        const b = Buffer.from(l, 'utf8');
        return i % 2 === 0 ? Buffer.concat([b, Buffer.from('\n')]) : Buffer.concat([Buffer.from(`${b.length} `), b]);
      }),
    );
    await sendTcp(d.port('tcp'), fragments(stream));
    const events = await waitLines(join(d.dir, 'events.ndjson'), lines.length);
    expect(events).toHaveLength(lines.length);
    events.forEach((e, i) => {
      const cef = e['cef'] as { deviceEventClassId: string; name: string };
      const want = lines[i]!.split('|');
      expect(cef.deviceEventClassId).toBe(want[4]);
      expect(e['listener']).toBe('tcp');
      expect(String(e['peer'])).toMatch(/^127\.0\.0\.1:\d+$/);
    });
    // Every event id is distinct.
    expect(new Set(events.map((e) => e['id'])).size).toBe(events.length);
    const ksc = await waitLines(join(d.dir, 'ksc.ndjson'), KSC_LINES.length);
    expect(ksc).toHaveLength(KSC_LINES.length);
    expect(ksc.every((e) => (e['ksc'] as { category?: string } | undefined)?.category !== undefined)).toBe(true);
    const m = await scrape(d.metricsPort());
    expect(m.get('cefd_received_bytes_total{listener="tcp"}')).toBe(stream.length);
    expect(m.get('cefd_frames_total{listener="tcp",framing="lf"}')).toBe(Math.ceil(lines.length / 2));
    expect(m.get('cefd_frames_total{listener="tcp",framing="octet"}')).toBe(Math.floor(lines.length / 2));
    expect(m.get('cefd_events_parsed_total{listener="tcp"}')).toBe(lines.length);
    expect(m.get('cefd_output_sent_events_total{output="events"}')).toBe(lines.length);
    expect(m.get('cefd_output_sent_events_total{output="ksc"}')).toBe(KSC_LINES.length);
    expect(m.get('cefd_connections_accepted_total{listener="tcp"}')).toBe(1);
    expect(m.get('cefd_events_normalized_total{normalizer="ksc",type="task_state"}')).toBeGreaterThan(0);
  });

  test('frames that are not events go to the dead-letter output with their raw bytes; metrics count them', async () => {
    const d = await start(`${BASE}
listeners: [ { name: tcp, type: tcp, host: 127.0.0.1, port: 0, max_frame_bytes: 100 } ]
outputs: [ { name: events, type: file, path: "{dir}/events.ndjson" } ]
`);
    const bad = Buffer.concat([Buffer.from('not a syslog line \xff', 'latin1'), Buffer.from('\n')]);
    const long = `CEF:0|a|b|c|d|e|1|msg=${'x'.repeat(300)}\n`;
    await sendTcp(d.port('tcp'), [bad, 'hello\n', long, `${OTHER}\n`, 'partial CEF:0|a|b|c|d|e|1|no newline']);
    const events = await waitLines(join(d.dir, 'events.ndjson'), 3);
    const dead = await waitLines(join(d.dir, 'dead.ndjson'), 2);
    expect(dead.map((r) => r['reason'])).toEqual(['unparseable', 'unparseable']);
    expect(Buffer.from(String(dead[0]!['rawBase64']), 'base64').toString('latin1')).toBe('not a syslog line \xff');
    expect(dead[1]!['raw']).toBe('hello');
    expect(dead[0]!['listener']).toBe('tcp');
    const truncated = events.find((e) => e['truncated'] === true);
    expect((truncated?.['warnings'] as { code: string }[]).map((w) => w.code)).toContain('frame_truncated');
    // The last frame without its LF is an event at end of stream.
    expect((events[2]!['prefix'] as string) ?? '').toBe('partial');
    const m = await scrape(d.metricsPort());
    expect(m.get('cefd_parse_errors_total{listener="tcp",code="unparseable"}')).toBe(2);
    expect(m.get('cefd_dead_letters_total{reason="unparseable"}')).toBe(2);
    expect(m.get('cefd_frame_errors_total{listener="tcp",code="frame_truncated"}')).toBe(1);
    expect(m.get('cefd_discarded_bytes_total{listener="tcp"}')).toBe(long.length - 1 - 100);
  });

  test('a source outside allowed_cidrs gets nothing through, and is counted', async () => {
    const d = await start(`${BASE}
listeners: [ { name: tcp, type: tcp, host: 127.0.0.1, port: 0, allowed_cidrs: [10.0.0.0/8, "::1/128"] }, { name: udp, type: udp, host: 127.0.0.1, port: 0, allowed_cidrs: [192.168.0.0/16] } ]
outputs: [ { name: events, type: file, path: "{dir}/events.ndjson" } ]
`);
    await sendTcp(d.port('tcp'), [`${OTHER}\n`]).catch(() => undefined);
    await sendUdp(d.port('udp'), [OTHER]);
    await waitFor(async () => (await scrape(d.metricsPort())).get('cefd_connections_rejected_total{listener="udp",reason="cidr"}') === 1);
    const m = await scrape(d.metricsPort());
    expect(m.get('cefd_connections_rejected_total{listener="tcp",reason="cidr"}')).toBe(1);
    expect(m.get('cefd_events_parsed_total{listener="tcp"}') ?? 0).toBe(0);
    expect(readNdjson(join(d.dir, 'events.ndjson'))).toEqual([]);
  });

  test('max_connections: at the limit a new connection is refused when every open one has delivered frames', async () => {
    const d = await start(`${BASE}
listeners: [ { name: tcp, type: tcp, host: 127.0.0.1, port: 0, max_connections: 2 } ]
outputs: [ { name: events, type: file, path: "{dir}/events.ndjson" } ]
`);
    const held = await Promise.all([0, 1].map(() => new Promise<net.Socket>((r) => { const s = net.connect(d.port('tcp'), '127.0.0.1', () => r(s)); })));
    for (const h of held) h.write(`${OTHER}\n`);
    await waitLines(join(d.dir, 'events.ndjson'), 2);
    const third = net.connect(d.port('tcp'), '127.0.0.1');
    await new Promise((r) => third.on('close', r));
    held[0]!.end(`${OTHER}\n`);
    await waitLines(join(d.dir, 'events.ndjson'), 3);
    held[1]!.destroy();
    const m = await scrape(d.metricsPort());
    expect(m.get('cefd_connections_rejected_total{listener="tcp",reason="max_connections"}')).toBe(1);
    expect(m.has('cefd_connections_rejected_total{listener="tcp",reason="evicted_no_frame"}')).toBe(false);
  });

  test('max_connections: a connection that never sent a complete frame makes room for a new one (slowloris)', async () => {
    const d = await start(`${BASE}
listeners: [ { name: tcp, type: tcp, host: 127.0.0.1, port: 0, max_connections: 2 } ]
outputs: [ { name: events, type: file, path: "{dir}/events.ndjson" } ]
`);
    const idle = await new Promise<net.Socket>((r) => { const s = net.connect(d.port('tcp'), '127.0.0.1', () => r(s)); });
    idle.write('CEF:0|half a fra');
    const busy = await new Promise<net.Socket>((r) => { const s = net.connect(d.port('tcp'), '127.0.0.1', () => r(s)); });
    busy.write(`${OTHER}\n`);
    await waitLines(join(d.dir, 'events.ndjson'), 1);
    const idleClosed = new Promise((r) => idle.on('close', r));
    await sendTcp(d.port('tcp'), [`${OTHER}\n`]);
    await idleClosed;
    await waitLines(join(d.dir, 'events.ndjson'), 2);
    busy.destroy();
    const m = await scrape(d.metricsPort());
    expect(m.get('cefd_connections_rejected_total{listener="tcp",reason="evicted_no_frame"}')).toBe(1);
    // The evicted connection's half frame is kept as a dead letter.
    const dead = await waitLines(join(d.dir, 'dead.ndjson'), 1);
    expect(dead[0]!['reason']).toBe('frame_incomplete_at_close');
    expect(dead[0]!['raw']).toBe('CEF:0|half a fra');
  });

  test('max_connections_per_source: one source cannot take every slot', async () => {
    const d = await start(`${BASE}
listeners: [ { name: tcp, type: tcp, host: 127.0.0.1, port: 0, max_connections_per_source: 3 } ]
outputs: [ { name: events, type: file, path: "{dir}/events.ndjson" } ]
`);
    const held = await Promise.all([0, 1, 2].map(() => new Promise<net.Socket>((r) => { const s = net.connect(d.port('tcp'), '127.0.0.1', () => r(s)); })));
    const fourth = net.connect(d.port('tcp'), '127.0.0.1');
    await new Promise((r) => fourth.on('close', r));
    // Another source address (the loopback network is /8) still gets in.
    const other = net.connect({ port: d.port('tcp'), host: '127.0.0.1', localAddress: '127.0.0.2' });
    await new Promise((r) => other.on('connect', r));
    other.end(`${OTHER}\n`);
    await waitLines(join(d.dir, 'events.ndjson'), 1);
    for (const h of held) h.destroy();
    const m = await scrape(d.metricsPort());
    expect(m.get('cefd_connections_rejected_total{listener="tcp",reason="max_connections_per_source"}')).toBe(1);
  });
});

describe('UDP', () => {
  test('one message per datagram, or several LF-separated ones', async () => {
    const d = await start(`${BASE}
listeners: [ { name: udp, type: udp, host: 127.0.0.1, port: 0 } ]
outputs: [ { name: events, type: file, path: "{dir}/events.ndjson" } ]
`);
    await sendUdp(d.port('udp'), [KSC_LINES[0]!, `${KSC_LINES[1]}\n${KSC_LINES[2]}\n${KSC_LINES[3]}`, `123 ${OTHER}`]);
    const events = await waitLines(join(d.dir, 'events.ndjson'), 5);
    expect(events.map((e) => (e['cef'] as { deviceEventClassId: string }).deviceEventClassId)).toEqual([...KSC_LINES.slice(0, 4).map((l) => l.split('|')[4]), '100']);
    // No octet counting in datagrams: the digits are a prefix.
    expect(events[4]!['prefix']).toBe('123');
    const m = await scrape(d.metricsPort());
    expect(m.get('cefd_frames_total{listener="udp",framing="datagram"}')).toBe(5);
  });
});

describe('TLS', () => {
  const pki = makePki();
  const tlsListener = (extra: string) => `${BASE}
listeners:
  - name: tls
    type: tls
    host: 127.0.0.1
    port: 0
    tls: { cert_file: "${pki.serverCert}", key_file: "${pki.serverKey}", ${extra} }
outputs: [ { name: events, type: file, path: "{dir}/events.ndjson" } ]
`;

  test('client certificates verified against the CA: a good one gets through, a wrong CA and no certificate do not', async () => {
    const d = await start(tlsListener(`ca_file: "${pki.caCert}", client_auth: required`));
    const ca = readFileSync(pki.caCert);
    await sendTcp(d.port('tls'), [`${OTHER}\n`], { tls: { ca, cert: pki.clientCert, key: pki.clientKey, servername: 'localhost' } });
    await waitLines(join(d.dir, 'events.ndjson'), 1);
    await sendTcp(d.port('tls'), [`${OTHER}\n`], { tls: { ca, cert: pki.rogueClientCert, key: pki.rogueClientKey, servername: 'localhost' } }).catch(() => undefined);
    await sendTcp(d.port('tls'), [`${OTHER}\n`], { tls: { ca, servername: 'localhost' } }).catch(() => undefined);
    await waitFor(async () => (await scrape(d.metricsPort())).get('cefd_connections_rejected_total{listener="tls",reason="tls_unauthorized"}') === 2, 30_000, 'two refused client certificates');
    await new Promise((r) => setTimeout(r, 200));
    expect(readNdjson(join(d.dir, 'events.ndjson'))).toHaveLength(1);
    const msgs = d.logs.parsed().filter((l) => l['reason'] === 'tls_unauthorized').map((l) => String(l['msg']));
    expect(msgs.some((m) => m.includes('client certificate refused: UNABLE_TO_VERIFY_LEAF_SIGNATURE'))).toBe(true);
    expect(msgs.some((m) => m.includes('no client certificate'))).toBe(true);
  });

  test('a pinned SHA-256 fingerprint admits KSC\'s self-signed client certificate and nothing else', async () => {
    const d = await start(tlsListener(`client_fingerprints: ["${pki.selfSignedFingerprint}"]`));
    const ca = readFileSync(pki.caCert);
    await sendTcp(d.port('tls'), [`${OTHER}\n`], { tls: { ca, cert: pki.selfSignedCert, key: pki.selfSignedKey, servername: 'localhost' } });
    await waitLines(join(d.dir, 'events.ndjson'), 1);
    await sendTcp(d.port('tls'), [`${OTHER}\n`], { tls: { ca, cert: pki.clientCert, key: pki.clientKey, servername: 'localhost' } }).catch(() => undefined);
    await sendTcp(d.port('tls'), [`${OTHER}\n`], { tls: { ca, servername: 'localhost' } }).catch(() => undefined);
    await waitFor(async () => (await scrape(d.metricsPort())).get('cefd_connections_rejected_total{listener="tls",reason="tls_fingerprint"}') === 2, 30_000, 'two refused fingerprints');
    expect(readNdjson(join(d.dir, 'events.ndjson'))).toHaveLength(1);
  });

  test('an expired client certificate is refused with a log line and a counter', async () => {
    const d = await start(tlsListener(`ca_file: "${pki.caCert}", client_auth: required`));
    const ca = readFileSync(pki.caCert);
    // A client that waits for the server (as KSC keeps its connection open).
    const s = tls.connect({ host: '127.0.0.1', port: d.port('tls'), ca, cert: pki.expiredClientCert, key: pki.expiredClientKey, servername: 'localhost' });
    s.on('error', () => undefined);
    await new Promise((r) => s.on('close', r));
    await waitFor(async () => (await scrape(d.metricsPort())).get('cefd_connections_rejected_total{listener="tls",reason="tls_unauthorized"}') === 1, 30_000, 'refused certificate');
    expect(readNdjson(join(d.dir, 'events.ndjson'))).toHaveLength(0);
    const line = d.logs.parsed().find((l) => l['reason'] === 'tls_unauthorized');
    expect(String(line?.['msg'])).toMatch(/client certificate refused: CERT_HAS_EXPIRED/);
  });

  test('plain TCP on the TLS port is refused with a log line and a counter', async () => {
    const d = await start(tlsListener(''));
    await sendTcp(d.port('tls'), [`${OTHER}\n`]).catch(() => undefined);
    await waitFor(async () => (await scrape(d.metricsPort())).get('cefd_connections_rejected_total{listener="tls",reason="tls_handshake"}') === 1, 30_000, 'refused handshake');
    expect(readNdjson(join(d.dir, 'events.ndjson'))).toHaveLength(0);
  });
});

describe('metrics endpoint', () => {
  const TOKEN = 'm-secret-0123456789abcdef0123456789';
  const withToken = () => `${BASE.replace('metrics: { host: 127.0.0.1, port: 0 }', `metrics: { host: 127.0.0.1, port: 0, bearer_token: "${TOKEN}" }`)}
listeners: [ { name: tcp, type: tcp, host: 127.0.0.1, port: 0 } ]
outputs: [ { name: events, type: file, path: "{dir}/events.ndjson" } ]
`;

  test('with a bearer token, requests without it get 401', async () => {
    const d = await start(withToken());
    const base = `http://127.0.0.1:${d.metricsPort()}`;
    expect((await fetch(`${base}/metrics`)).status).toBe(401);
    expect((await fetch(`${base}/readyz`, { headers: { authorization: 'Bearer wrong' } })).status).toBe(401);
    const ok = await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(ok.status).toBe(200);
    expect(await ok.text()).toContain('cefd_events_parsed_total');
    expect((await fetch(`${base}/healthz`, { headers: { authorization: `Bearer ${TOKEN}` } })).status).toBe(200);
  });
});

describe('HTTP output', () => {
  async function server(handler: http.RequestListener): Promise<{ url: string; close: () => Promise<void> }> {
    const s = http.createServer(handler);
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    const port = (s.address() as net.AddressInfo).port;
    return { url: `http://127.0.0.1:${port}/ingest`, close: () => new Promise((r) => { s.closeAllConnections(); s.close(() => r()); }) };
  }

  test('a server that fails its first requests with 503 gets every event, in order, once; retries are counted', async () => {
    const received: string[] = [];
    let failures = 3;
    let auth = '';
    const srv = await server((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        auth = String(req.headers.authorization);
        if (failures > 0) {
          failures--;
          res.writeHead(503).end('busy');
          return;
        }
        received.push(...Buffer.concat(chunks).toString('utf8').split('\n').filter((l) => l !== ''));
        res.writeHead(200).end('ok');
      });
    });
    try {
      const d = await start(
        `${BASE}
listeners: [ { name: tcp, type: tcp, host: 127.0.0.1, port: 0 } ]
outputs: [ { name: siem, type: http, url: "${srv.url}", bearer_token: "\${SIEM_TOKEN}", batch_max_events: 7, retry: { initial_backoff: 10ms, max_backoff: 50ms } } ]
`,
        { SIEM_TOKEN: 'tok-123' },
      );
      const n = 40;
      const lines = Array.from({ length: n }, (_, i) => `CEF:0|V|P|1|${i}|n|5|cnt=${i}\n`);
      await sendTcp(d.port('tcp'), lines);
      await waitFor(() => received.length >= n, 30_000, 'all events at the HTTP server');
      expect(received.map((r) => (JSON.parse(r) as { cef: { deviceEventClassId: string } }).cef.deviceEventClassId)).toEqual(lines.map((_, i) => String(i)));
      expect(auth).toBe('Bearer tok-123');
      const m = await scrape(d.metricsPort());
      expect(m.get('cefd_output_sent_events_total{output="siem"}')).toBe(n);
      expect(m.get('cefd_output_retried_events_total{output="siem"}')).toBeGreaterThanOrEqual(3);
      expect(d.logs.lines.join('\n')).not.toContain('tok-123');
    } finally {
      await srv.close();
    }
  });

  test('a 400 is a rejection: counted, and the events go to the dead-letter output with the reason', async () => {
    const srv = await server((req, res) => {
      req.resume();
      req.on('end', () => res.writeHead(400).end('bad request'));
    });
    try {
      const d = await start(`${BASE}
listeners: [ { name: tcp, type: tcp, host: 127.0.0.1, port: 0 } ]
outputs: [ { name: siem, type: http, url: "${srv.url}" } ]
`);
      await sendTcp(d.port('tcp'), [`${OTHER}\n`, `${OTHER}\n`]);
      const dead = await waitLines(join(d.dir, 'dead.ndjson'), 2);
      expect(dead.map((r) => r['reason'])).toEqual(['http_status_400', 'http_status_400']);
      expect(dead[0]!['output']).toBe('siem');
      expect((dead[0]!['event'] as { cef: { name: string } }).cef.name).toBe('worm successfully stopped');
      const m = await scrape(d.metricsPort());
      expect(m.get('cefd_output_rejected_events_total{output="siem",reason="http_status_400"}')).toBe(2);
    } finally {
      await srv.close();
    }
  });

  test('a rejected record of a non-JSON encoding (cef) is dead-lettered as a string, a JSON one (ecs) as it is; both name their encoding', async () => {
    const srv = await server((req, res) => {
      req.resume();
      req.on('end', () => res.writeHead(400).end('bad request'));
    });
    try {
      const d = await start(`${BASE}
listeners: [ { name: tcp, type: tcp, host: 127.0.0.1, port: 0 } ]
outputs:
  - { name: siem_cef, type: http, url: "${srv.url}", encoding: { codec: cef } }
  - { name: siem_ecs, type: http, url: "${srv.url}", encoding: { codec: ecs } }
`);
      await sendTcp(d.port('tcp'), [`${OTHER}\n`]);
      // waitLines parses every line as JSON: the dead-letter file stays NDJSON.
      const dead = await waitLines(join(d.dir, 'dead.ndjson'), 2);
      const byOutput = new Map(dead.map((r) => [r['output'], r]));
      const cef = byOutput.get('siem_cef')!;
      expect(cef).toMatchObject({ reason: 'http_status_400', encoding: 'cef' });
      expect(cef['event']).toBeUndefined();
      // The record the output had: the event written back as CEF (what `cefd parse --encoding cef` prints),
      // with its time as `rt` (the record had none: the time cefd received it).
      const record = String(cef['record']);
      expect(record.startsWith(`${OTHER} rt=`)).toBe(true);
      expect(Math.abs(Number(record.slice(OTHER.length + 4)) - Date.now())).toBeLessThan(600_000);
      const ecs = byOutput.get('siem_ecs')!;
      expect(ecs).toMatchObject({ reason: 'http_status_400', encoding: 'ecs', event: { message: 'worm successfully stopped' } });
      expect(ecs['record']).toBeUndefined();
    } finally {
      await srv.close();
    }
  });
});

describe('backpressure', () => {
  test('the raw shutdown spill of the last stop stays until its events are on disk: a crash while they wait behind a full buffer replays it again', async () => {
    const dir = tempDir();
    const state = join(dir, 'state');
    // The output's buffer is full at start (its own spill waits), so the replayed events wait in memory.
    const outSpill = join(state, 'shutdown-spill', 'siem.ndjson');
    mkdirSync(dirname(outSpill), { recursive: true, mode: 0o700 });
    writeFileSync(outSpill, Array.from({ length: 2000 }, (_, i) => `${JSON.stringify({ i, pad: 'x'.repeat(100) })}\n`).join(''), { mode: 0o600 });
    const raw = new SpillWriter(state);
    raw.write({ listener: 'tcp', peer: '127.0.0.1:5000', receivedMs: Date.now(), frames: Array.from({ length: 50 }, (_, i) => Buffer.from(`CEF:0|V|P|1|r|n|5|cnt=${i}`)), truncated: Array(50).fill(false) });
    raw.close();
    const closed = net.createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(closed.address() as net.AddressInfo).port}/`;
    await new Promise<void>((r) => closed.close(() => r()));
    const d = await startDaemon(`${BASE}
listeners: [ { name: tcp, type: tcp, host: 127.0.0.1, port: 0 } ]
outputs: [ { name: siem, type: http, url: "${url}", buffer: { type: disk, max_size: 64KiB } } ]
`, { dir });
    running.push(d);
    expect(d.logs.lines.join('\n')).toMatch(/decoded 50 frames kept by the last stop/);
    // A crash now (kill -9): the files as they are. The raw spill is still there.
    const crashed = tempDir();
    cpSync(dir, crashed, { recursive: true });
    expect(existsSync(join(crashed, 'state', `${SPILL_FILE}.replaying`))).toBe(true);
    // The next start (the output answering) gets the 50 events.
    const again = await startDaemon(`${BASE}
listeners: [ { name: tcp, type: tcp, host: 127.0.0.1, port: 0 } ]
outputs: [ { name: siem, type: file, path: "{dir}/siem.ndjson", buffer: { type: disk, max_size: 64KiB } } ]
`, { dir: crashed });
    running.push(again);
    // Waits for the 50 events and the 2000 spilled records by content, not by a line count:
    // the first daemon has moved the first ~550 spilled records into its buffer while its
    // spill file still holds all 2000 (it goes once they are all on disk), so the crashed copy
    // delivers those twice (at least once after a crash: 2601 lines) and the 50 events last;
    // a count of 2050 lines was reached before them on a loaded machine.
    const seen = () => {
      const recs = readNdjson(join(crashed, 'siem.ndjson'), { tolerateTornTail: true });
      const cef = recs.filter((e) => e['cef'] !== undefined).map((e) => (e['cef'] as { typed: { baseEventCount: number } }).typed.baseEventCount);
      const spilled = recs.filter((e) => e['cef'] === undefined).map((e) => e['i'] as number);
      return { cnts: new Set(cef), spilled: new Set(spilled) };
    };
    await waitFor(() => seen().cnts.size >= 50 && seen().spilled.size >= 2000, 30_000, 'every event in siem.ndjson');
    const got = seen();
    expect(got.cnts).toEqual(new Set(Array.from({ length: 50 }, (_, i) => i)));
    expect(got.spilled).toEqual(new Set(Array.from({ length: 2000 }, (_, i) => i)));
    await again.stop();
    // The first daemon's stop keeps them in its output's spill file: then the raw one goes.
    await d.stop();
    expect(existsSync(join(state, `${SPILL_FILE}.replaying`))).toBe(false);
  });

  test('a disk buffer full at start (a spill the last stop left) pauses reading before any listener reads; restarts while the output is down do not grow it', async () => {
    const dir = tempDir();
    const spill = join(dir, 'state', 'shutdown-spill', 'siem.ndjson');
    mkdirSync(dirname(spill), { recursive: true, mode: 0o700 });
    const n = 5000;
    writeFileSync(spill, Array.from({ length: n }, (_, i) => `${JSON.stringify({ i, pad: 'x'.repeat(100) })}\n`).join(''), { mode: 0o600 });
    // An endpoint that refuses: nothing is delivered.
    const closed = net.createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(closed.address() as net.AddressInfo).port}/`;
    await new Promise<void>((r) => closed.close(() => r()));
    const yaml = `${BASE}
listeners: [ { name: tcp, type: tcp, host: 127.0.0.1, port: 0 } ]
outputs: [ { name: siem, type: http, url: "${url}", buffer: { type: disk, max_size: 64KiB } } ]
`;
    for (let cycle = 0; cycle < 2; cycle++) {
      const d = await startDaemon(yaml, { dir });
      expect(d.daemon.flow.paused).toBe(true);
      const sock = net.connect(d.port('tcp'), '127.0.0.1');
      sock.on('error', () => undefined);
      await new Promise((r) => sock.once('connect', r));
      await new Promise((r) => sock.write(Array.from({ length: 100 }, (_, i) => `CEF:0|V|P|1|${i}|n|5|cnt=${i}\n`).join(''), r));
      await d.stop();
      sock.destroy();
      const q = DiskQueue.open({ dir: join(dir, 'state', 'buffers', 'siem'), maxBytes: 64 * 1024, fsync: 'never', fsyncIntervalMs: 1000, spillFile: spill });
      const length = q.length;
      // Close without touching the files (the spill goes back where it was).
      await q.close();
      expect(length).toBe(n);
    }
  });

  test('a stalled output pauses the sockets with a bounded queue; reading resumes when it recovers and nothing is lost', async () => {
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => (release = r));
    let got = 0;
    const srv = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        void gate.then(() => {
          got += Buffer.concat(chunks).toString().split('\n').filter((l) => l).length;
          res.writeHead(200).end();
        });
      });
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(srv.address() as net.AddressInfo).port}/`;
    try {
      const d = await start(`${BASE}
listeners: [ { name: tcp, type: tcp, host: 127.0.0.1, port: 0 } ]
outputs: [ { name: slow, type: http, url: "${url}", queue_max_events: 200, batch_max_events: 50, timeout: 60s, buffer: { type: memory } } ]
`);
      const n = 20_000;
      const body = Buffer.from(Array.from({ length: n }, (_, i) => `CEF:0|V|P|1|${i}|n|5|msg=${'m'.repeat(200)}\n`).join(''));
      const sending = sendTcp(d.port('tcp'), [body]);
      await waitFor(async () => (await scrape(d.metricsPort())).get('cefd_ingestion_paused') === 1, 30_000, 'paused');
      let maxQueue = 0;
      for (let i = 0; i < 10; i++) {
        const m = await scrape(d.metricsPort());
        maxQueue = Math.max(maxQueue, m.get('cefd_output_queue_events{output="slow"}')!);
        await new Promise((r) => setTimeout(r, 20));
      }
      // Bounded: the queue never holds more than its capacity plus the socket reads in
      // flight when it filled: the one being handled (64 KiB of ~227-byte lines: at most
      // 289 events) and up to MAX_IN_FLIGHT_PER_SOURCE jobs on the decode workers (reads
      // gathered up to 128 KiB, so less than 192 KiB each: at most 866 events).
      expect(maxQueue).toBeLessThanOrEqual(200 + 289 + MAX_IN_FLIGHT_PER_SOURCE * 866);
      expect(maxQueue).toBeGreaterThanOrEqual(200);
      release();
      await sending;
      await waitFor(() => got >= n, 20_000, "all events delivered").catch(async (e) => { console.log("got", got, [...(await scrape(d.metricsPort())).entries()].filter(([k]) => k.startsWith("cefd_")).join("\n")); throw e; });
      const m = await scrape(d.metricsPort());
      expect(m.get('cefd_ingestion_paused')).toBe(0);
      expect(m.get('cefd_output_sent_events_total{output="slow"}')).toBe(n);
      expect(m.get('cefd_ingestion_paused_seconds_total')).toBeGreaterThan(0);
      expect([...m.keys()].filter((k) => k.startsWith('cefd_output_dropped_events_total'))).toEqual([]);
    } finally {
      srv.closeAllConnections();
      srv.close();
    }
  });
});
