/** Configuration of the KSC integration (issue 7). Merged into SCHEMA by schema.ts. */
import type { Spec } from './schema.js';

export const KSC_FIELDS: Record<string, Spec> = {};
