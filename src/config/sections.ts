/**
 * Top-level config sections that features beside the pipeline add (the KSC integration's
 * `ksc`): their options join the schema and their checks run when a config loads. Each
 * section module must be light (no store, no SQLite): loading a config loads it.
 */

import type { ConfigSection } from './section.js';
import { kscConfigSection } from '../ksc/config/index.js';
import { sqlConfigSection } from '../sources/sql/section.js';

export const CONFIG_SECTIONS: readonly ConfigSection[] = [
  kscConfigSection,
  sqlConfigSection,
];
