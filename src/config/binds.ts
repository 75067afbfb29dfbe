/**
 * The addresses the daemon binds: its listeners, the metrics endpoint, the KSC admin API.
 * Two that collide (the same port and protocol, addresses that overlap), or a host that is
 * not an address, make `run` fail after `validate` passed, so `validate` reports them (exit 78).
 */
import { isIP } from 'node:net';
import type { Config } from './types.js';
import type { FieldProblem } from './spec.js';
import { sourcePlugin } from '../sources/registry.js';

/** The IPv4 and the IPv6 addresses a bind takes: `any` for a wildcard, null for none. */
interface Scope {
  v4: string | null;
  v6: string | null;
}

/**
 * An IPv6 address in one spelling (`0:0::1` and `::1` are the same bind); a zone
 * (`fe80::1%eth0`, which URL refuses) is kept, lower-cased, after it.
 */
function canonical6(ip: string): string {
  const pct = ip.indexOf('%');
  const addr = pct === -1 ? ip : ip.slice(0, pct);
  const zone = pct === -1 ? '' : ip.slice(pct).toLowerCase();
  try {
    return new URL(`http://[${addr}]/`).hostname.slice(1, -1) + zone;
  } catch {
    return ip.toLowerCase();
  }
}

/**
 * What binding `host` takes on Linux, as Node.js binds it:
 * - `0.0.0.0`: every IPv4 address; `::`: every IPv4 and IPv6 address (Node.js leaves
 *   IPV6_V6ONLY off, so the socket is dual-stack);
 * - `''` (no host): `::` for TCP (`net.Server.listen`), `0.0.0.0` for UDP (an udp4 socket);
 * - `localhost`: resolved when binding, to 127.0.0.1 or ::1 depending on the system, so
 *   both are taken to be safe (an udp4 socket only resolves it to 127.0.0.1);
 * - an IPv4-mapped IPv6 address (`::ffff:127.0.0.1`) is its IPv4 address.
 */
function scope(host: string, proto: 'tcp' | 'udp'): Scope {
  if (host === '0.0.0.0') return { v4: 'any', v6: null };
  if (host === '') return proto === 'tcp' ? { v4: 'any', v6: 'any' } : { v4: 'any', v6: null };
  if (host === 'localhost') return { v4: '127.0.0.1', v6: proto === 'tcp' ? '::1' : null };
  if (isIP(host) === 4) return { v4: host, v6: null };
  if (isIP(host) === 6) {
    const c = canonical6(host);
    if (c === '::') return { v4: 'any', v6: 'any' };
    const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(c);
    if (mapped !== null) {
      const hi = parseInt(mapped[1]!, 16);
      const lo = parseInt(mapped[2]!, 16);
      return { v4: `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`, v6: null };
    }
    return { v4: null, v6: c };
  }
  // Not an address (reported by bindHostProblem): compared by its text.
  return { v4: host, v6: host };
}

/**
 * Two binds of one port and protocol collide (EADDRINUSE on Linux, without SO_REUSEPORT)
 * when they share an address: equal ones, a wildcard and any address of its family.
 */
export function overlaps(a: string, b: string, proto: 'tcp' | 'udp' = 'tcp'): boolean {
  const x = scope(a, proto);
  const y = scope(b, proto);
  const meet = (p: string | null, q: string | null) => p !== null && q !== null && (p === 'any' || q === 'any' || p === q);
  return meet(x.v4, y.v4) || meet(x.v6, y.v6);
}

/** A host to bind must be an IP address (`0.0.0.0`, `::`, `127.0.0.1`) or `localhost`: a name would be resolved when binding, and may fail then. */
export function bindHostProblem(host: string): string | undefined {
  if (host === '' || host === 'localhost' || isIP(host) !== 0) return undefined;
  return `expected an IP address to bind (such as 127.0.0.1, 0.0.0.0 or ::) or localhost, got ${JSON.stringify(host)}`;
}

export function bindProblems(c: Config): FieldProblem[] {
  const out: FieldProblem[] = [];
  // Listeners: each against the ones before it, on its own protocol (TCP and UDP on one port do not collide).
  const bound: { name: string; proto: 'tcp' | 'udp'; host: string; port: number }[] = [];
  c.listeners.forEach((l, i) => {
    const host = bindHostProblem(l.host);
    if (host !== undefined) out.push({ key: `listeners[${i}].host`, message: host });
    const proto = sourcePlugin(l.type)?.protocol ?? 'none';
    if (proto === 'none' || l.port === 0) return;
    const prev = bound.find((b) => b.proto === proto && b.port === l.port && overlaps(b.host, l.host, proto));
    if (prev !== undefined) {
      const same = prev.host === l.host;
      out.push({ key: `listeners[${i}].port`, message: `${proto} port ${l.port} on ${l.host || '(any address)'} is already used by listener ${prev.name}${same ? '' : ` (on ${prev.host || '(any address)'}: the addresses overlap)`}` });
    }
    bound.push({ name: l.name, proto, host: l.host, port: l.port });
  });
  const others: { key: string; what: string; host: string; port: number }[] = [];
  if (c.metrics.enabled) {
    const host = bindHostProblem(c.metrics.host);
    if (host !== undefined) out.push({ key: 'metrics.host', message: host });
    if (c.metrics.port !== 0) others.push({ key: 'metrics.port', what: 'the metrics endpoint', host: c.metrics.host, port: c.metrics.port });
  }
  const admin = c.ksc?.admin;
  if (c.ksc?.enabled && admin?.enabled) {
    const host = bindHostProblem(admin.host);
    if (host !== undefined) out.push({ key: 'ksc.admin.host', message: host });
    if (admin.port !== 0) others.push({ key: 'ksc.admin.port', what: 'the KSC admin API', host: admin.host, port: admin.port });
  }
  for (const o of others) {
    for (const b of bound) {
      if (b.proto !== 'tcp' || b.port !== o.port || !overlaps(b.host, o.host)) continue;
      const l = c.listeners.find((x) => x.name === b.name)!;
      out.push({ key: o.key, message: `port ${o.port} of ${o.what} is also bound by listener ${l.name} (${l.type} on ${l.host}:${l.port})` });
    }
  }
  if (others.length === 2 && others[0]!.port === others[1]!.port && overlaps(others[0]!.host, others[1]!.host)) {
    out.push({ key: 'ksc.admin.port', message: `port ${others[1]!.port} of the KSC admin API is also bound by the metrics endpoint` });
  }
  return out;
}
