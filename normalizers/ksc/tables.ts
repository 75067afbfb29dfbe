/**
 * The ksc normalizer's tables: event type → category (+ threat action, syslog p1..p9
 * layout), task-state codes, and severity. Every table here is in docs/ksc-normalizer.md;
 * keep the two in step.
 *
 * The category comes from the event type code only (CEF Signature ID, syslog `et`),
 * never from the display name: that is localized (docs/reference/ksc-format.md §7 item 3).
 */
import type { KscCategory, KscSeverity, KscTaskState } from './types.js';

/**
 * How the syslog format's p1..p9 (GNRL_EA_PARAM_1..9) read for a type (FORMAT.md §2.3):
 * - `object`: detection and result events: p1 SHA256, p2 object, p5 threat name,
 *   p7 user, p9 JSON extras (md5).
 * - `attack`: p1 attack name, p2 protocol, p3 attacker IPv4 as a decimal integer,
 *   p4 port, p6 attacked IPv4 as a decimal integer.
 * - `app_launch`: as observed (the API table differs): p2 user, p6 file name, p7 path,
 *   p8 `;<SHA256>`.
 */
export type ParamLayout = 'object' | 'attack' | 'app_launch';

export interface TypeInfo {
  readonly category: KscCategory;
  /** What happened to the object (`threat.action`), when the type says it. */
  readonly action?: string;
  readonly layout?: ParamLayout;
}

const T = (category: KscCategory, action?: string, layout?: ParamLayout): TypeInfo => ({ category, action, layout });

/** Known event types (FORMAT.md §4), exact match. */
const EXACT: ReadonlyMap<string, TypeInfo> = new Map<string, TypeInfo>([
  ['KLPRCI_TaskState', T('task_state')],
  ['KLEVP_GroupTaskSyncState', T('task_state')],
  ['GNRL_EV_VIRUS_FOUND', T('detection', 'detected', 'object')],
  ['GNRL_EV_VIRUS_FOUND_BY_KSN', T('detection', 'detected', 'object')],
  ['GNRL_EV_VIRUS_FOUND_AND_BLOCKED', T('detection', 'blocked', 'object')],
  ['GNRL_EV_SUSPICIOUS_OBJECT_FOUND', T('detection', 'detected', 'object')],
  ['GNRL_EV_PASSWD_ARCHIVE_FOUND', T('detection', 'detected', 'object')],
  ['GNRL_EV_VIRUS_OUTBREAK', T('detection')],
  ['GNRL_EV_ADSEC_DETECT', T('detection', 'detected')],
  ['GNRL_EV_OBJECT_CURED', T('object_action', 'disinfected', 'object')],
  ['GNRL_EV_OBJECT_DELETED', T('object_action', 'deleted', 'object')],
  ['GNRL_EV_OBJECT_QUARANTINED', T('object_action', 'quarantined', 'object')],
  ['GNRL_EV_OBJECT_NOTCURED', T('object_action', 'not_disinfected', 'object')],
  ['GNRL_EV_OBJECT_BLOCKED', T('object_action', 'blocked', 'object')],
  ['GNRL_EV_OBJECT_PASSED', T('object_action', 'passed', 'object')],
  ['GNRL_EV_OBJECT_REPORTED', T('object_action', 'reported', 'object')],
  ['GNRL_EV_ATTACK_DETECTED', T('attack', undefined, 'attack')],
  ['GNRL_EV_APPLICATION_LAUNCH_DENIED', T('application_control', 'blocked', 'app_launch')],
  ['GNRL_EV_WEB_URL_BLOCKED', T('web', 'blocked', 'object')],
  ['GNRL_EV_WEB_URL_BLOCKED_BY_KSN', T('web', 'blocked', 'object')],
  ['GNRL_EV_DEVCTRL_DEV_PLUGGED', T('device_control')],
  ['GNRL_EV_DEVCTRL_DEV_UNPLUGGED', T('device_control')],
  ['GNRL_EV_DEVCTRL_DEV_PLUG_DENIED', T('device_control')],
]);

/**
 * Families, tried in order when the exact table has no entry (new KSC versions add
 * types; a truncated MSGID, used only when `et` is missing, still hits its family). The
 * order is docs/ksc-normalizer.md's table, top to bottom: the first family that matches wins.
 * `p` = prefix, `s` = substring.
 */
const RULES: ReadonlyArray<readonly ['p' | 's', string, TypeInfo]> = [
  ['s', 'TaskState', T('task_state')],
  ['p', 'GNRL_EV_VIRUS_FOUND', T('detection', 'detected', 'object')],
  ['p', 'GNRL_EV_VIRUS_', T('detection')],
  ['p', 'GNRL_EV_SUSPICIOUS_', T('detection', 'detected', 'object')],
  ['p', 'GNRL_EV_ADSEC_', T('detection')],
  ['p', 'GNRL_EV_OBJECT_', T('object_action', undefined, 'object')],
  ['p', 'GNRL_EV_ATTACK', T('attack', undefined, 'attack')],
  ['p', 'GNRL_EV_APPLICATION_LAUNCH_DENIE', T('application_control', 'blocked', 'app_launch')],
  ['p', 'GNRL_EV_APPLICATION_', T('application_control')],
  ['p', 'GNRL_EV_WEB_', T('web')],
  ['p', 'GNRL_EV_DEVCTRL_', T('device_control')],
  ['p', 'KLNAG_EV_DEVICE_', T('device_control')],
  // Before the `_UPD` substring: KLSRV_HOST_UPDATED_STATUS is a device's status,
  // KLNAG_EV_INV_APP_UPDATED an inventory change, not an update of bases or patches.
  ['p', 'KLSRV_HOST_', T('device_status')],
  ['p', 'KLSRV_HOSTS_', T('device_status')],
  ['p', 'KLSRV_EVENT_HOSTS_', T('device_status')],
  ['p', 'KLSRV_INVISIBLE_HOSTS_', T('device_status')],
  ['p', 'KLNAG_EV_INV_', T('inventory')],
  ['s', '_UPD', T('update')],
  ['p', 'KLNAG_EV_PATCH_', T('update')],
  ['s', 'LICENSE', T('license')],
  ['p', 'KLAUD_', T('audit')],
  ['p', 'KLSRV_', T('infrastructure')],
  ['p', 'KLNAG_', T('infrastructure')],
  ['p', 'KSNPROXY_', T('infrastructure')],
];

const OTHER: TypeInfo = T('other');

/** Resolved types, so the rules run once per distinct type; bounded against type floods. */
const cache = new Map<string, TypeInfo>();
const CACHE_MAX = 4096;

/** Category, action and p-layout for an event type code. */
export function typeInfo(eventType: string | undefined): TypeInfo {
  if (eventType === undefined || eventType === '') return OTHER;
  const hit = EXACT.get(eventType) ?? cache.get(eventType);
  if (hit !== undefined) return hit;
  let info = OTHER;
  for (const [kind, text, i] of RULES) {
    if (kind === 'p' ? eventType.startsWith(text) : eventType.includes(text)) {
      info = i;
      break;
    }
  }
  if (cache.size < CACHE_MAX) cache.set(eventType, info);
  return info;
}

/** KLPRCI task states, index = code (FORMAT.md §5, KSC Open API a00029). */
export const TASK_STATES: readonly KscTaskState[] = [
  'created', // 0 task was just created
  'running', // 1 task is running
  'suspended', // 2 task is suspended (paused)
  'failed', // 3 task failed
  'completed', // 4 task is completed
  'failed_timeout', // 5 task failed via timeout
  'reloading', // 6 task is reloading
  'inactive', // 7 task is inactive
];

/** State name for a code; `unknown` outside 0..7 (e.g. the host-task bitmask's 8, 16, 64). */
export function taskState(code: number): KscTaskState {
  return code >= 0 && code < TASK_STATES.length && Number.isInteger(code) ? TASK_STATES[code]! : 'unknown';
}

/** KSC importance GNRL_EA_SEVERITY (FORMAT.md §4.3), index = code; 0 is "invalid". */
export const SEVERITIES: readonly KscSeverity[] = ['unknown', 'info', 'warning', 'error', 'critical'];

export function severityName(code: number): KscSeverity {
  return code >= 1 && code <= 4 ? SEVERITIES[code]! : 'unknown';
}

/**
 * The CEF severity words (CEF spec: Unknown, Low 0-3, Medium 4-6, High 7-8, Very-High
 * 9-10), any case, as KSC's four importances in their order (Unknown as unknown). KSC sends its importance as a number
 * 1-4, but its conversion rules (`siem_conversion_rules.xml`) are editable and FORMAT.md
 * §3.1 asks to accept the words too. Undefined for anything else.
 */
export function severityWord(s: string): KscSeverity | undefined {
  switch (s.toLowerCase()) {
    case 'low': return 'info';
    case 'medium': return 'warning';
    case 'high': return 'error';
    case 'very-high': case 'very high': case 'veryhigh': return 'critical';
    case 'unknown': return 'unknown';
    default: return undefined;
  }
}

/**
 * Syslog format: the KSC importance is not sent; the PRI severity is (only `<10>`, crit,
 * was seen on critical events). Inferred mapping, FORMAT.md §2.1: 0-2 → critical,
 * 3 → error, 4 → warning, 5-7 → info.
 */
export function severityFromPri(sev: number | undefined): KscSeverity {
  if (sev === undefined) return 'unknown';
  if (sev <= 2) return 'critical';
  if (sev === 3) return 'error';
  if (sev === 4) return 'warning';
  return 'info';
}
