/**
 * Pure asset-identity helpers shared by the import (merge of re-created devices) and the
 * enrichment (lookups by MAC): no store, no I/O, so a worker thread can use them on a
 * snapshot of the assets.
 *
 * - MAC addresses are kept as `aa:bb:cc:dd:ee:ff` (lower case, colons): KSC sends
 *   `KLHST_WKS_MAC_ADDRESSES` as paramBinary(6) (OPEN-API.md §3.1), events write them in
 *   whatever form the device likes (CEF `smac`/`dmac`/`dvcmac` is "six colon-separated
 *   hexadecimal numbers", Cisco writes `aabb.ccdd.eeff`, Windows `AA-BB-CC-DD-EE-FF`).
 * - KUMA merges an imported asset with an existing one when at least two of IP, MAC and
 *   FQDN match "and the others are empty" (OPEN-API.md §6): `mergeMatches`.
 */

/** `aa:bb:cc:dd:ee:ff` from 6 bytes; null for anything else or an all-zero address. */
export function macFromBytes(b: Uint8Array): string | null {
  if (b.length !== 6) return null;
  if (b.every((x) => x === 0)) return null;
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

/**
 * A MAC written as `aa:bb:cc:dd:ee:ff`, `AA-BB-CC-DD-EE-FF`, `aabb.ccdd.eeff` or 12 hex
 * digits, normalized to `aa:bb:cc:dd:ee:ff`; null when it is none of these (or all zeros).
 */
export function normalizeMac(s: string | null | undefined): string | null {
  if (typeof s !== 'string') return null;
  const t = s.trim();
  let hex: string;
  if (/^[0-9a-f]{1,2}([:-])[0-9a-f]{1,2}(\1[0-9a-f]{1,2}){4}$/i.test(t)) {
    hex = t.split(/[:-]/).map((p) => p.padStart(2, '0')).join('');
  } else if (/^[0-9a-f]{4}\.[0-9a-f]{4}\.[0-9a-f]{4}$/i.test(t)) {
    hex = t.replace(/\./g, '');
  } else if (/^[0-9a-f]{12}$/i.test(t)) {
    hex = t;
  } else return null;
  return macFromBytes(Buffer.from(hex, 'hex'));
}

/** The identity attributes the merge rule compares. */
export interface IdentityKeys {
  ips: readonly string[];
  macs: readonly string[];
  fqdn: string | null;
}

type Verdict = 'match' | 'empty' | 'conflict';

function setVerdict(a: readonly string[], b: readonly string[]): Verdict {
  if (a.length === 0 || b.length === 0) return 'empty';
  return a.some((x) => b.includes(x)) ? 'match' : 'conflict';
}

function fqdnKey(f: string | null): string | null {
  if (f === null) return null;
  const t = f.trim().toLowerCase().replace(/\.$/, '');
  return t === '' ? null : t;
}

/**
 * KUMA's merge rule: at least two of IP, MAC and FQDN match, and the third is empty on
 * one side or matches too. A value present on both sides and different is a conflict and
 * prevents the merge. IPs and MACs are sets: one shared element is a match.
 */
export function mergeMatches(a: IdentityKeys, b: IdentityKeys): boolean {
  const fa = fqdnKey(a.fqdn);
  const fb = fqdnKey(b.fqdn);
  const verdicts: Verdict[] = [
    setVerdict(a.ips, b.ips),
    setVerdict(a.macs, b.macs),
    fa === null || fb === null ? 'empty' : fa === fb ? 'match' : 'conflict',
  ];
  if (verdicts.includes('conflict')) return false;
  return verdicts.filter((v) => v === 'match').length >= 2;
}

/**
 * Among `candidates`, the one asset `incoming` merges with under KUMA's rule; undefined
 * when none or more than one qualifies (an ambiguous merge is not done).
 */
export function mergeTarget<T extends IdentityKeys>(incoming: IdentityKeys, candidates: readonly T[]): T | undefined {
  const hits = candidates.filter((c) => mergeMatches(incoming, c));
  return hits.length === 1 ? hits[0] : undefined;
}
