/**
 * Checks of the `ksc` section that the schema cannot express, for `cefd validate` and
 * start. Kept apart from the integration (../extension.ts) so that loading a config does
 * not load the KSC store and SQLite.
 */
import type { KscConfig, KscResponseRuleConfig } from './types.js';
import { ruleProblems, type RuleSpec } from '../rules.js';

/** Problems of the `ksc` section that the schema cannot express (keys from the config root). */
export function kscConfigProblems(c: KscConfig): { key: string; message: string }[] {
  const out: { key: string; message: string }[] = [];
  if (c.admin.enabled && (c.admin.bearer_token === undefined || c.admin.bearer_token === '')) {
    out.push({ key: 'ksc.admin.bearer_token', message: 'is required when ksc.admin.enabled is true (or set ksc.admin.bearer_token_file)' });
  }
  const tls = c.admin.tls ?? {};
  if ((tls.cert_file === undefined) !== (tls.key_file === undefined)) {
    out.push({ key: 'ksc.admin.tls', message: 'give both cert_file and key_file (or neither)' });
  }
  c.response_rules.forEach((r, i) => {
    for (const p of ruleProblems(specOf(r))) out.push({ key: `ksc.response_rules[${i}]`, message: p });
  });
  return out;
}

export function specOf(r: KscResponseRuleConfig): RuleSpec {
  return {
    name: r.name,
    tasks: r.tasks,
    assetField: r.asset_field,
    filter: r.filter,
    workers: r.workers,
    cooldownMs: r.cooldown * 1000,
    queueMax: r.queue_max,
  };
}
