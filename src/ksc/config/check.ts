/**
 * Checks of the `ksc` section that the schema cannot express, for `cefd validate` and
 * start. Kept apart from the integration (../extension.ts) so that loading a config does
 * not load the KSC store and SQLite.
 */
import type { KscConfig, KscResponseRuleConfig } from './types.js';
import { ruleProblems, type RuleSpec } from '../rules.js';
import { bearerTokenProblem } from '../../bearer.js';

/** Problems of the `ksc` section that the schema cannot express (keys from the config root). */
export function kscConfigProblems(c: KscConfig): { key: string; message: string }[] {
  const out: { key: string; message: string }[] = [];
  const token = c.admin.bearer_token;
  if (c.admin.enabled && (token === undefined || token === '')) {
    out.push({ key: 'ksc.admin.bearer_token', message: 'is required when ksc.admin.enabled is true (or set ksc.admin.bearer_token_file)' });
  } else if (c.admin.enabled && token !== undefined) {
    const short = bearerTokenProblem(token);
    if (short !== undefined) out.push({ key: 'ksc.admin.bearer_token', message: short });
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
