/** The `sql_sources` config section as registered in src/config/sections.ts: its options and its checks. */
import type { ConfigSection } from '../../config/section.js';
import { SQL_SOURCES_SPEC, sqlSourceProblems } from './config.js';

export const sqlConfigSection: ConfigSection = {
  fields: { sql_sources: SQL_SOURCES_SPEC },
  check: (c) => {
    const out: { key: string; message: string }[] = [];
    c.sql_sources.forEach((q, i) => sqlSourceProblems(q, `sql_sources[${i}]`, (key, message) => out.push({ key, message })));
    return out;
  },
};
