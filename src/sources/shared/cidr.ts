/**
 * Source address allowlists: IPv4 and IPv6 CIDRs (or single addresses). IPv4-mapped IPv6
 * peers (`::ffff:10.0.0.1`, what a dual-stack socket reports) match IPv4 rules.
 */
import { isIP } from 'node:net';

export interface Cidr {
  v: 4 | 6;
  /** Address as 4 or 16 bytes. */
  bytes: Uint8Array;
  prefix: number;
}

function v4bytes(a: string): Uint8Array | null {
  const parts = a.split('.');
  if (parts.length !== 4) return null;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const n = Number(parts[i]);
    if (!/^\d{1,3}$/.test(parts[i]!) || n > 255) return null;
    out[i] = n;
  }
  return out;
}

function v6bytes(a: string): Uint8Array | null {
  let addr = a;
  const zone = addr.indexOf('%');
  if (zone !== -1) addr = addr.slice(0, zone);
  if (isIP(addr) !== 6) return null;
  // Expand an embedded IPv4 tail.
  const last = addr.lastIndexOf(':');
  const tail = addr.slice(last + 1);
  let groups: string[];
  if (tail.includes('.')) {
    const v4 = v4bytes(tail);
    if (v4 === null) return null;
    addr = `${addr.slice(0, last + 1)}${((v4[0]! << 8) | v4[1]!).toString(16)}:${((v4[2]! << 8) | v4[3]!).toString(16)}`;
  }
  const dbl = addr.indexOf('::');
  if (dbl !== -1) {
    const head = addr.slice(0, dbl).split(':').filter((x) => x !== '');
    const rest = addr.slice(dbl + 2).split(':').filter((x) => x !== '');
    groups = [...head, ...new Array<string>(8 - head.length - rest.length).fill('0'), ...rest];
  } else {
    groups = addr.split(':');
  }
  if (groups.length !== 8) return null;
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    const n = parseInt(g, 16);
    out[i * 2] = n >> 8;
    out[i * 2 + 1] = n & 255;
  });
  return out;
}

export function parseCidr(text: string): Cidr | null {
  const slash = text.indexOf('/');
  const addr = slash === -1 ? text.trim() : text.slice(0, slash).trim();
  const kind = isIP(addr);
  if (kind === 0) return null;
  const max = kind === 4 ? 32 : 128;
  let prefix = max;
  if (slash !== -1) {
    const p = text.slice(slash + 1).trim();
    if (!/^\d{1,3}$/.test(p) || Number(p) > max) return null;
    prefix = Number(p);
  }
  const bytes = kind === 4 ? v4bytes(addr) : v6bytes(addr);
  if (bytes === null) return null;
  return { v: kind === 4 ? 4 : 6, bytes, prefix };
}

function matches(c: Cidr, bytes: Uint8Array): boolean {
  let bits = c.prefix;
  for (let i = 0; bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((c.bytes[i]! & mask) !== (bytes[i]! & mask)) return false;
  }
  return true;
}

/** A compiled allowlist; empty allows everyone. */
export class AddressAllowlist {
  private readonly cidrs: Cidr[];
  constructor(entries: readonly string[]) {
    this.cidrs = entries.map((e) => {
      const c = parseCidr(e);
      if (c === null) throw new Error(`not a CIDR: ${e}`);
      return c;
    });
  }

  allows(address: string | undefined): boolean {
    if (this.cidrs.length === 0) return true;
    if (address === undefined) return false;
    let a = address;
    if (a.startsWith('::ffff:') && a.includes('.')) a = a.slice(7);
    const kind = isIP(a);
    const bytes = kind === 4 ? v4bytes(a) : kind === 6 ? v6bytes(a) : null;
    if (bytes === null) return false;
    for (const c of this.cidrs) {
      if ((c.v === 4) === (kind === 4) && matches(c, bytes)) return true;
    }
    return false;
  }
}
