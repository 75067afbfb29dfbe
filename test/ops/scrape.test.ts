/**
 * A real Prometheus (Debian's `prometheus`) scrapes two running cefd processes: one with
 * an open metrics endpoint, one with `metrics.bearer_token_file` (scraped with the token,
 * and by a second job without it, which must fail). Its HTTP API then shows the series
 * under the documented names and labels, with no label that grows with senders.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { freePort, runCefd, type ChildDaemon } from '../helpers/child.js';
import { sendTcp, sendUdp, tempDir, waitFor } from '../helpers/daemon.js';
import { grafanaToPromql, namesFromExposition } from '../helpers/metric-names.js';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
const TOKEN = 'scrape-test-token-0123456789abcdef0123';

/**
 * Every label cefd puts on a metric (besides job and instance, which Prometheus adds), and
 * those of prom-client's process metrics (le, kind, space, major/minor/patch): each has
 * values from a fixed set or from the configuration, none from the traffic.
 */
const BOUNDED_LABELS = new Set(['__name__', 'job', 'listener', 'framing', 'code', 'reason', 'output', 'normalizer', 'type', 'result', 'rule', 'state', 'tenant', 'outcome', 'status', 'version', 'node_version', 'le', 'kind', 'space', 'major', 'minor', 'patch']);

let dir: string;
const cefds: ChildDaemon[] = [];
let prom: ChildProcess | undefined;
let promOut = '';
let api: string;
let open: { tcp: number; udp: number; metrics: number };
let exported: Map<string, string>;

async function query(q: string): Promise<{ metric: Record<string, string>; value: [number, string] }[]> {
  const r = (await (await fetch(`${api}/api/v1/query?query=${encodeURIComponent(q)}`)).json()) as { status: string; data: { result: { metric: Record<string, string>; value: [number, string] }[] } };
  expect(r.status).toBe('success');
  return r.data.result;
}

beforeAll(async () => {
  dir = tempDir('cefd-scrape-');
  const ports = async () => ({ tcp: await freePort(), udp: await freePort(), metrics: await freePort() });
  open = await ports();
  const secured = await ports();
  writeFileSync(join(dir, 'token'), `${TOKEN}\n`, { mode: 0o600 });
  for (const [name, p, extra] of [['open', open, ''], ['secured', secured, `, bearer_token_file: ${join(dir, 'token')}`]] as const) {
    const d = join(dir, name);
    mkdirSync(d);
    const c = runCefd(
      d,
      `state_dir: ./state
listeners:
  - { name: ksc, type: tcp, host: 127.0.0.1, port: ${p.tcp}, normalizers: [ksc] }
  - { name: udp, type: udp, host: 127.0.0.1, port: ${p.udp} }
outputs: [{ name: events, type: file, path: ./events.ndjson }]
dead_letter: { path: ./dead.ndjson }
metrics: { host: 127.0.0.1, port: ${p.metrics}${extra} }
`,
    );
    cefds.push(c);
    await c.until('cefd started');
  }
  // Events, a frame that is not an event, and datagrams: labelled series to look at.
  const line = (i: number) => `<14>1 2026-11-28T10:00:00.000Z ksc01 KES - - - CEF:0|KasperskyLab|SecurityCenter|14.2|GNRL_EV_VIRUS_FOUND|Virus found|4|msg=event ${i}\n`;
  await sendTcp(open.tcp, [Array.from({ length: 25 }, (_, i) => line(i)).join(''), 'this is not syslog\n']);
  await sendUdp(open.udp, [line(100), line(101)]);
  exported = namesFromExposition(await (await fetch(`http://127.0.0.1:${open.metrics}/metrics`)).text());

  const promPort = await freePort();
  api = `http://127.0.0.1:${promPort}`;
  writeFileSync(
    join(dir, 'prometheus.yml'),
    `global: { scrape_interval: 1s, scrape_timeout: 1s }
scrape_configs:
  - job_name: cefd-open
    static_configs: [{ targets: ['127.0.0.1:${open.metrics}'] }]
  - job_name: cefd-token
    authorization: { type: Bearer, credentials_file: ${join(dir, 'token')} }
    static_configs: [{ targets: ['127.0.0.1:${secured.metrics}'] }]
  - job_name: cefd-token-missing
    static_configs: [{ targets: ['127.0.0.1:${secured.metrics}'] }]
`,
  );
  prom = spawn('prometheus', [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${promPort}`], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  prom.stdout!.on('data', (c: Buffer) => (promOut += c.toString()));
  prom.stderr!.on('data', (c: Buffer) => (promOut += c.toString()));
  await waitFor(async () => (await fetch(`${api}/-/ready`).catch(() => undefined))?.status === 200, 30_000, 'prometheus ready');
  // Two scrapes of every target, the second after the events above were counted.
  await waitFor(async () => (await query('count_over_time(up[1m])')).filter((r) => Number(r.value[1]) >= 2).length === 3, 30_000, 'two scrapes of each target');
}, 90_000);

afterAll(async () => {
  if (prom !== undefined && prom.exitCode === null) {
    prom.kill('SIGTERM');
    await new Promise((r) => prom!.once('exit', r));
  }
  for (const c of cefds) {
    if (c.proc.exitCode === null) {
      c.proc.kill('SIGTERM');
      await c.exit;
    }
  }
  rmSync(dir, { recursive: true, force: true });
});

test('the endpoint with a bearer token is scraped with it and refused without it', async () => {
  const up = new Map((await query('up')).map((r) => [r.metric['job']!, r.value[1]]));
  expect(Object.fromEntries(up)).toEqual({ 'cefd-open': '1', 'cefd-token': '1', 'cefd-token-missing': '0' });
  const targets = (await (await fetch(`${api}/api/v1/targets`)).json()) as { data: { activeTargets: { labels: { job: string }; lastError: string }[] } };
  const missing = targets.data.activeTargets.find((t) => t.labels.job === 'cefd-token-missing')!;
  expect(missing.lastError).toContain('401');
  // The target behind the token delivers cefd's series (counters appear once they count:
  // it received nothing, so its families are a part of the open one's).
  const families = async (job: string) => new Set((await query(`count by (__name__) ({job="${job}", __name__=~"cefd_.+"})`)).map((r) => r.metric['__name__']!));
  const secured = await families('cefd-token');
  const opened = await families('cefd-open');
  expect(secured).toContain('cefd_build_info');
  expect(secured).toContain('cefd_output_queue_capacity_events');
  expect([...secured].filter((n) => !opened.has(n))).toEqual([]);
  expect(promOut).not.toMatch(/level=error/);
});

test('the series carry the documented names, labels and counts', async () => {
  const v = async (q: string) => (await query(q)).map((r) => Number(r.value[1]));
  expect(await v('cefd_events_parsed_total{job="cefd-open", listener="ksc"}')).toEqual([25]);
  expect(await v('cefd_events_parsed_total{job="cefd-open", listener="udp"}')).toEqual([2]);
  expect(await v('cefd_frames_total{job="cefd-open", listener="ksc", framing="lf"}')).toEqual([26]);
  expect(await v('cefd_frames_total{job="cefd-open", listener="udp", framing="datagram"}')).toEqual([2]);
  expect(await v('sum(cefd_dead_letters_total{job="cefd-open"})')).toEqual([1]);
  expect(await v('cefd_connections_accepted_total{job="cefd-open", listener="ksc"}')).toEqual([1]);
  // Both listeners normalize with ksc (the default chain).
  expect(await v('sum(cefd_events_normalized_total{job="cefd-open", normalizer="ksc"})')).toEqual([27]);
  expect(await v('cefd_ingestion_paused{job="cefd-open"}')).toEqual([0]);
  expect(await v(`cefd_build_info{job="cefd-open", version="${pkg.version}"}`)).toEqual([1]);
  expect((await v('cefd_last_event_received_timestamp_seconds{job="cefd-open", listener="ksc"}'))[0]).toBeGreaterThan(1.7e9);
  expect((await v('process_start_time_seconds{job="cefd-open"}'))[0]).toBeGreaterThan(1.7e9);
  // Metadata: Prometheus read the types cefd declared.
  const meta = (await (await fetch(`${api}/api/v1/metadata?metric=cefd_events_parsed_total`)).json()) as { data: Record<string, { type: string }[]> };
  expect(meta.data['cefd_events_parsed_total']![0]!.type).toBe('counter');
});

test('no series has a label that grows with senders (no address, port or free text)', async () => {
  const series = (await (await fetch(`${api}/api/v1/series?match[]=${encodeURIComponent('{__name__=~"cefd_.+|process_.+|nodejs_.+"}')}`)).json()) as { data: Record<string, string>[] };
  expect(series.data.length).toBeGreaterThan(50);
  const names = new Set<string>();
  for (const s of series.data) {
    names.add(s['__name__']!);
    for (const [k, val] of Object.entries(s)) {
      if (k === 'instance') continue;
      expect(BOUNDED_LABELS, `label ${k} of ${s['__name__']}`).toContain(k);
      // The sender was 127.0.0.1 with an ephemeral port: neither may show up in a label.
      expect(val, `${k} of ${s['__name__']}`).not.toMatch(/\d+\.\d+\.\d+\.\d+|\[[0-9a-f:]+\]|:\d{4,5}$|\s/);
    }
  }
  // Every series name is one the exposition declares (prom-client's own names included).
  expect([...names].filter((n) => !exported.has(n))).toEqual([]);
});

test('every dashboard query runs on this Prometheus; the intake panels show the events', async () => {
  const dash = JSON.parse(readFileSync(new URL('../../deploy/grafana/cefd.json', import.meta.url), 'utf8')) as { panels: { title: string; targets?: { expr: string }[] }[] };
  const exprs = dash.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ title: p.title, expr: grafanaToPromql(t.expr) })));
  expect(exprs.length).toBeGreaterThan(30);
  for (const e of exprs) await query(e.expr);
  const byListener = exprs.find((e) => e.title === 'Events/s by listener')!;
  // The rate needs two samples after the events: Prometheus scraped each target at least twice.
  const rows = await query(byListener.expr.replace('[1m]', '[10m]'));
  expect(rows.map((r) => r.metric['listener']).sort()).toEqual(['ksc', 'udp']);
  const version = await query(grafanaToPromql(dash.panels.find((p) => p.title === 'Version')!.targets![0]!.expr));
  expect(version.map((r) => r.metric['version'])).toEqual([pkg.version, pkg.version]);
});
