/**
 * The `ksc` normalizer: Kaspersky Security Center events, from both KSC export formats,
 * into one typed `ksc` object (types.ts; docs/ksc-normalizer.md).
 *
 * - CEF: `CEF:0|KasperskyLab|SecurityCenter|...` (cef-format.ts).
 * - "Syslog": RFC 5424 with an `[event@<n> et=...]` element (syslog-format.ts), and KSC
 *   syslog lines that lost that element in an RFC 3164 relay, recognised by their
 *   APP-NAME `<product>|<version>`.
 *
 * `accepts` is a few field comparisons. `normalize` is pure (reads the event, builds a
 * new object; nothing on the event is changed) and does not throw on any event the
 * decoder can produce (test/normalizers/ksc/properties.test.ts). It returns the category as the
 * metrics `type`.
 */
import type { CefdEvent } from '../../src/event.js';
import type { NormalizeOutput, Normalizer } from '../../src/pipeline/normalize.js';
import { accepts, normalizeKsc } from './read.js';
import { kscView, leanKsc, normalizeKscLean, type KscLean } from './lean.js';

export type { KscAttack, KscCategory, KscFormat, KscObject, KscSeverity, KscTask, KscTaskState, KscThreat, KscWarning } from './types.js';
export { TASK_STATES, SEVERITIES, typeInfo } from './tables.js';
export { accepts, normalizeKsc, kscView, leanKsc, type KscLean };


const ksc: Normalizer = {
  name: 'ksc',
  accepts,
  normalize(event: CefdEvent): NormalizeOutput | null {
    const r = normalizeKscLean(event);
    if (r === null) return null;
    return {
      data: r.ksc as unknown as Record<string, unknown>,
      type: r.ksc.category,
      warnings: r.warnings.length > 0 ? r.warnings : undefined,
    };
  },
};

export default ksc;
