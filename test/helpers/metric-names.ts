/**
 * The metric names a running cefd exports: `cefd run` as a child process (process
 * metrics and the KSC integration on, as in production), its /metrics read once. Read
 * from the daemon rather than listed here, so metrics added to the code are known to the
 * dashboard and alert tests without editing them.
 */
import { rmSync } from 'node:fs';
import { freePort, runCefd } from './child.js';
import { tempDir } from './daemon.js';

/** Names from `# TYPE` lines; histograms and summaries also by their series names. */
export function namesFromExposition(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    const [, name, type] = m as unknown as [string, string, string];
    out.set(name, type);
    if (type === 'histogram') for (const s of ['_bucket', '_sum', '_count']) out.set(name + s, type);
    if (type === 'summary') for (const s of ['_sum', '_count']) out.set(name + s, type);
  }
  return out;
}

export async function runningDaemonMetrics(): Promise<{ names: Map<string, string>; text: string }> {
  const dir = tempDir('cefd-metrics-');
  const metrics = await freePort();
  const c = runCefd(
    dir,
    `state_dir: ./state
listeners:
  - { name: ksc, type: tcp, host: 127.0.0.1, port: 0 }
  - { name: udp, type: udp, host: 127.0.0.1, port: 0 }
outputs: [{ name: events, type: file, path: ./events.ndjson }]
dead_letter: { path: ./dead.ndjson }
metrics: { host: 127.0.0.1, port: ${metrics} }
`,
  );
  try {
    await c.until('cefd started');
    const text = await (await fetch(`http://127.0.0.1:${metrics}/metrics`)).text();
    return { names: namesFromExposition(text), text };
  } finally {
    c.proc.kill('SIGTERM');
    await c.exit;
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Metric names in a PromQL expression that belong to cefd's exporter (cefd_, process_, nodejs_). */
export function exporterMetricsIn(expr: string): string[] {
  const out = new Set<string>();
  for (const m of expr.matchAll(/\b((?:cefd|process|nodejs)_[a-zA-Z0-9_]+)\b/g)) out.add(m[1]!);
  return [...out];
}

/** A Grafana query with its variables replaced by what they stand for: plain PromQL. */
export function grafanaToPromql(expr: string): string {
  const labelValues = /^label_values\((?:(.+),\s*)?(\w+)\)$/.exec(expr.trim());
  if (labelValues) return labelValues[1] ?? 'up';
  return expr.replaceAll('$__rate_interval', '1m').replaceAll('$__interval', '1m').replaceAll('$__range', '1h').replaceAll('$job', '.+').replaceAll('$instance', '.+');
}
