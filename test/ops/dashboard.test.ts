/**
 * deploy/grafana/cefd.json: importable (Grafana's export format: a datasource input,
 * unique panel ids, panels that do not overlap), every query valid PromQL (promtool parses
 * each as a recording rule) and naming only metrics a running cefd exports, and the
 * panels the operations guide promises.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, expect, test } from 'vitest';
import { stringify } from 'yaml';
import { tempDir } from '../helpers/daemon.js';
import { exporterMetricsIn, grafanaToPromql as plain, runningDaemonMetrics } from '../helpers/metric-names.js';

interface Target {
  expr: string;
  refId: string;
  datasource?: { uid: string };
}
interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos: { x: number; y: number; w: number; h: number };
  targets?: Target[];
  panels?: Panel[];
  datasource?: { uid: string };
}
interface Dashboard {
  __inputs: { name: string; type: string; pluginId: string }[];
  uid: string;
  title: string;
  panels: Panel[];
  templating: { list: { name: string; type: string; query?: string | { query: string } }[] };
  annotations: { list: { expr?: string }[] };
}

const dash = JSON.parse(readFileSync(new URL('../../deploy/grafana/cefd.json', import.meta.url), 'utf8')) as Dashboard;
const panels = dash.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
const graphs = panels.filter((p) => p.type !== 'row');
const queries = [
  ...graphs.flatMap((p) => (p.targets ?? []).map((t) => ({ where: `${p.title} ${t.refId}`, expr: t.expr }))),
  ...dash.templating.list.filter((v) => v.type === 'query').map((v) => ({ where: `variable ${v.name}`, expr: typeof v.query === 'string' ? v.query : v.query!.query })),
  ...dash.annotations.list.filter((a) => a.expr !== undefined).map((a) => ({ where: 'annotation', expr: a.expr! })),
];

let exported: Map<string, string>;
beforeAll(async () => {
  exported = (await runningDaemonMetrics()).names;
});

test('importable: a datasource input, unique ids, every panel on the grid without overlap', () => {
  expect(dash.uid).toBe('cefd-overview');
  expect(dash.__inputs.map((i) => `${i.name}:${i.pluginId}`)).toEqual(['DS_PROMETHEUS:prometheus']);
  const ids = panels.map((p) => p.id);
  expect(new Set(ids).size).toBe(ids.length);
  for (const p of graphs) {
    expect(p.datasource?.uid, p.title).toBe('${DS_PROMETHEUS}');
    expect(p.targets?.length, p.title).toBeGreaterThan(0);
  }
  const cells = new Map<string, string>();
  for (const p of panels) {
    const g = p.gridPos;
    expect(g.x + g.w, p.title).toBeLessThanOrEqual(24);
    expect(g.y, p.title).toBeGreaterThanOrEqual(0);
    for (let x = g.x; x < g.x + g.w; x++) {
      for (let y = g.y; y < g.y + g.h; y++) {
        const had = cells.get(`${x},${y}`);
        expect(had, `${p.title} overlaps ${had}`).toBeUndefined();
        cells.set(`${x},${y}`, p.title);
      }
    }
  }
});

test('every query is valid PromQL', () => {
  const dir = tempDir('cefd-dash-');
  try {
    const rules = { groups: [{ name: 'dashboard', rules: queries.map((q, i) => ({ record: `dashboard_query_${i}`, expr: plain(q.expr) })) }] };
    writeFileSync(join(dir, 'rules.yml'), stringify(rules));
    const r = spawnSync('promtool', ['check', 'rules', 'rules.yml'], { cwd: dir, encoding: 'utf8' });
    expect(r.stdout + r.stderr).toContain(`SUCCESS: ${queries.length} rules found`);
    expect(r.status).toBe(0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('every query names a metric, and every metric it names is one cefd exports', () => {
  expect(queries.length).toBeGreaterThan(30);
  const unknown: string[] = [];
  for (const q of queries) {
    const names = exporterMetricsIn(q.expr);
    expect(names.length, q.where).toBeGreaterThan(0);
    for (const n of names) if (!exported.has(n)) unknown.push(`${q.where}: ${n}`);
  }
  expect(unknown).toEqual([]);
});

test('the panels the operations guide names are there', () => {
  const all = queries.map((q) => q.expr).join('\n');
  for (const m of [
    'cefd_events_parsed_total',
    'cefd_events_normalized_total',
    'cefd_parse_errors_total',
    'cefd_dead_letters_total',
    'cefd_output_queue_events',
    'cefd_buffer_bytes',
    'cefd_output_retried_events_total',
    'cefd_ksc_asset_sync_total',
    'cefd_ksc_task_starts_total',
    'cefd_ksc_task_runs',
  ]) {
    expect(all).toContain(m);
  }
  expect(all).toMatch(/sum by \(listener\) \(rate\(cefd_events_parsed_total/);
  expect(all).toMatch(/sum by \(reason\) \(rate\(cefd_dead_letters_total/);
});
