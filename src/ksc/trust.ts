/**
 * Which events may drive KSC actions. Anyone who can reach a listener can send a line that
 * looks like a KSC detection (a response rule then starts a KUMA task on its whole scope)
 * or like a `KLPRCI_TaskState` event (a task run is then marked completed or failed). So
 * response rules and task-status updates take an event only from an origin a KSC
 * connection trusts: per connection (`ksc.trusted_sources`), the listeners, source
 * addresses (CIDR) and TLS client-certificate fingerprints its events come from. Events
 * from anywhere else are still collected and delivered; they just act on nothing
 * (counted in `cefd_ksc_untrusted_events_total`, logged once). Threat model and set-up:
 * docs/ksc-trust.md.
 *
 * Pure code with no I/O: callable wherever events are evaluated. The KSC extension calls
 * it on the main thread for the findings the decode workers send back (ksc/watch.ts), with
 * the origin that travelled with the job.
 */
import { AddressAllowlist } from '../sources/shared/cidr.js';
import type { EventOrigin } from '../event.js';

export type { EventOrigin };

/** One `ksc.trusted_sources` entry: every criterion given must hold (at least one is given). */
export interface TrustedSource {
  connection: string;
  listeners: readonly string[];
  cidrs: readonly string[];
  client_fingerprints: readonly string[];
}

export interface CompiledTrustedSource {
  readonly connection: string;
  readonly listeners: ReadonlySet<string> | null;
  readonly cidrs: AddressAllowlist | null;
  readonly fingerprints: ReadonlySet<string> | null;
}

const normFp = (fp: string): string => fp.replace(/:/g, '').toUpperCase();

export function compileTrustedSource(t: TrustedSource): CompiledTrustedSource {
  return {
    connection: t.connection,
    listeners: t.listeners.length > 0 ? new Set(t.listeners) : null,
    cidrs: t.cidrs.length > 0 ? new AddressAllowlist(t.cidrs) : null,
    fingerprints: t.client_fingerprints.length > 0 ? new Set(t.client_fingerprints.map(normFp)) : null,
  };
}

/** The address part of `address:port` / `[v6]:port`. */
export function addressOfPeer(peer: string): string {
  if (peer.startsWith('[')) {
    const end = peer.indexOf(']');
    return end > 0 ? peer.slice(1, end) : peer;
  }
  const i = peer.lastIndexOf(':');
  return i > 0 && peer.indexOf(':') === i ? peer.slice(0, i) : peer;
}

/** True when `origin` meets every criterion of the entry (an entry with none trusts no one). */
export function isTrustedOrigin(t: CompiledTrustedSource, origin: EventOrigin): boolean {
  if (t.listeners === null && t.cidrs === null && t.fingerprints === null) return false;
  if (t.listeners !== null && !t.listeners.has(origin.listener)) return false;
  if (t.cidrs !== null && !t.cidrs.allows(addressOfPeer(origin.peer))) return false;
  if (t.fingerprints !== null && (origin.tlsFingerprint === undefined || !t.fingerprints.has(normFp(origin.tlsFingerprint)))) return false;
  return true;
}

/** All trusted sources of a configuration, by connection name. */
export class TrustPolicy {
  private readonly sources: CompiledTrustedSource[];
  constructor(entries: readonly TrustedSource[]) {
    this.sources = entries.map(compileTrustedSource);
  }

  get empty(): boolean {
    return this.sources.length === 0;
  }

  /**
   * Names of the connections that trust `origin` (empty: none, the event must not act).
   * The same (frozen) empty set is returned for untrusted origins, so the hot path does
   * not allocate for them.
   */
  connectionsFor(origin: EventOrigin): ReadonlySet<string> {
    let out: Set<string> | undefined;
    for (const s of this.sources) {
      if ((out === undefined || !out.has(s.connection)) && isTrustedOrigin(s, origin)) (out ??= new Set()).add(s.connection);
    }
    return out ?? NONE;
  }
}

const NONE: ReadonlySet<string> = Object.freeze(new Set<string>());

/** Problems of `ksc.trusted_sources` that the schema cannot see. */
/** `listenerNames` null: any name (a processor's events carry the listener names of the receivers). */
export function trustedSourceProblems(entries: readonly TrustedSource[], listenerNames: readonly string[] | null): { key: string; message: string }[] {
  const out: { key: string; message: string }[] = [];
  entries.forEach((t, i) => {
    const k = `ksc.trusted_sources[${i}]`;
    if (t.listeners.length === 0 && t.cidrs.length === 0 && t.client_fingerprints.length === 0) {
      out.push({ key: k, message: 'give at least one of listeners, cidrs, client_fingerprints (an entry without any would trust every sender)' });
    }
    if (listenerNames !== null) for (const l of t.listeners) if (!listenerNames.includes(l)) out.push({ key: `${k}.listeners`, message: `no listener named ${JSON.stringify(l)}` });
    for (const fp of t.client_fingerprints) {
      if (!/^[0-9a-fA-F]{64}$/.test(fp.replace(/:/g, ''))) out.push({ key: `${k}.client_fingerprints`, message: `not a SHA-256 fingerprint: ${JSON.stringify(fp)}` });
    }
  });
  return out;
}
