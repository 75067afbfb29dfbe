/**
 * TCP ports the daemon binds besides its listeners (the metrics endpoint, the KSC admin
 * API): one that a TCP or TLS listener also binds makes `run` fail after `validate`
 * passed, so `validate` reports it (exit 78).
 */
import type { Config } from './types.js';
import type { FieldProblem } from './spec.js';

const ANY = new Set(['0.0.0.0', '::', '']);

/** Two binds on the same port collide when the hosts are equal or either is a wildcard. */
function overlaps(a: string, b: string): boolean {
  return a === b || ANY.has(a) || ANY.has(b) || (a === 'localhost' && b === '127.0.0.1') || (a === '127.0.0.1' && b === 'localhost');
}

export function bindProblems(c: Config): FieldProblem[] {
  const out: FieldProblem[] = [];
  const others: { key: string; what: string; host: string; port: number }[] = [];
  if (c.metrics.enabled && c.metrics.port !== 0) others.push({ key: 'metrics.port', what: 'the metrics endpoint', host: c.metrics.host, port: c.metrics.port });
  const admin = c.ksc?.admin;
  if (c.ksc?.enabled && admin?.enabled && admin.port !== 0) others.push({ key: 'ksc.admin.port', what: 'the KSC admin API', host: admin.host, port: admin.port });
  for (const o of others) {
    c.listeners.forEach((l) => {
      if (l.type === 'udp' || l.type === 'nats' || l.port !== o.port || !overlaps(l.host, o.host)) return;
      out.push({ key: o.key, message: `port ${o.port} of ${o.what} is also bound by listener ${l.name} (${l.type} on ${l.host}:${l.port})` });
    });
  }
  if (others.length === 2 && others[0]!.port === others[1]!.port && overlaps(others[0]!.host, others[1]!.host)) {
    out.push({ key: 'ksc.admin.port', message: `port ${others[1]!.port} of the KSC admin API is also bound by the metrics endpoint` });
  }
  return out;
}
