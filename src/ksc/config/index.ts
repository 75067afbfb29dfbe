/** The `ksc` config section as registered in src/config/sections.ts: its options and its checks. */
import type { ConfigSection } from '../../config/section.js';
import { kscConfigProblems } from './check.js';
import { KSC_FIELDS } from './schema.js';
import { trustedSourceProblems } from '../trust.js';

export const kscConfigSection: ConfigSection = {
  fields: KSC_FIELDS,
  check: (c) => [
    ...kscConfigProblems(c.ksc),
    // A processor (a `nats` listener) gets the listener names the receivers gave its frames.
    ...trustedSourceProblems(c.ksc.trusted_sources, c.listeners.some((l) => l.type === 'nats') ? null : [...c.listeners.map((l) => l.name), ...c.sql_sources.map((q) => q.name)]),
  ],
};
