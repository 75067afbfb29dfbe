/**
 * Reads KSC's event into the whole `ksc` object (types.ts), from either export format:
 * CEF (cef-format.ts) or "Syslog" (syslog-format.ts). index.ts is the normalizer around
 * it; lean.ts rebuilds the whole object of an event with it.
 */
import type { CefRecord, CefdEvent } from '../../src/event.js';
import { normalizeCef } from './cef-format.js';
import { isRelayedKsc, kscElement, normalizeSyslog } from './syslog-format.js';
import type { KscObject, KscWarning } from './types.js';

/** KSC's CEF header: vendor without a space (other Kaspersky products send "Kaspersky Lab"). */
const VENDOR = 'KasperskyLab';
const PRODUCT = 'SecurityCenter';

/** A CEF record from KSC (its vendor and product). */
export function isKscCef(cef: CefRecord): boolean {
  return cef.deviceVendor === VENDOR && cef.deviceProduct === PRODUCT;
}

export function accepts(event: CefdEvent): boolean {
  const cef = event.cef;
  if (cef !== undefined) return isKscCef(cef);
  const sys = event.syslog;
  if (sys === undefined) return false;
  return kscElement(sys.structuredData) !== undefined || isRelayedKsc(sys);
}

/** The whole `ksc` object and its warnings, or null for an event `accepts` would refuse. */
export function normalizeKsc(event: CefdEvent): { ksc: KscObject; warnings: KscWarning[] } | null {
  const warnings: KscWarning[] = [];
  const cef = event.cef;
  if (cef !== undefined) {
    if (!isKscCef(cef)) return null;
    return { ksc: normalizeCef(cef, warnings), warnings };
  }
  const sys = event.syslog;
  if (sys === undefined) return null;
  const el = kscElement(sys.structuredData);
  if (el === undefined && !isRelayedKsc(sys)) return null;
  return { ksc: normalizeSyslog(event, sys, el, warnings), warnings };
}
