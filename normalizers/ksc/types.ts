/**
 * The `ksc` object the normalizer writes on an event (`event.ksc`). Both KSC export
 * formats (CEF and the RFC 5424 "Syslog" format) yield this same shape; docs/ksc-normalizer.md
 * documents it field by field. Absent fields are left out of
 * the JSON (they are `undefined` on the object, so every object has the same shape).
 */
import type { Code } from '../../src/errors.js';

/** The closed set of categories, chosen from the event type (never from localized text). */
export type KscCategory =
  | 'task_state'
  | 'detection'
  | 'object_action'
  | 'attack'
  | 'application_control'
  | 'web'
  | 'device_control'
  | 'device_status'
  | 'inventory'
  | 'update'
  | 'license'
  | 'audit'
  | 'infrastructure'
  | 'other';

/** KLPRCI task states (docs/reference/ksc-format.md §5), plus `unknown` for any other code. */
export type KscTaskState =
  | 'created'
  | 'running'
  | 'suspended'
  | 'failed'
  | 'completed'
  | 'failed_timeout'
  | 'reloading'
  | 'inactive'
  | 'unknown';

/** KSC importance (GNRL_EA_SEVERITY 1-4) as a name; `unknown` for anything else. */
export type KscSeverity = 'info' | 'warning' | 'error' | 'critical' | 'unknown';

/** Which KSC export the event came in. */
export type KscFormat = 'cef' | 'syslog' | 'syslog_nosd' | 'sql';

/** The object a threat-related event is about: detections, object actions, web and application control. */
export interface KscThreat {
  /** Threat (virus) name: label VirusName, syslog p5. */
  name?: string;
  /** Object path, file path or URL: label ObjectName, syslog p2 (p7 for application control). */
  objectPath?: string;
  /** User as sent (`DOMAIN\user`): label UserName, CEF duser, syslog p7 (p2 for application control). */
  user?: string;
  /** What happened to the object, from the event type (`detected`, `deleted`, `blocked`, ...); CEF `act` as sent when the type says nothing. */
  action?: string;
  /** SHA-256, lower-case hex (only when 64 hex digits were sent). */
  sha256?: string;
  /** MD5, lower-case hex (only when 32 hex digits were sent; syslog: from the p9 JSON). */
  md5?: string;
}

/** A network attack (GNRL_EV_ATTACK_DETECTED). */
export interface KscAttack {
  /** Attack name: label AttackName, syslog p1. */
  name?: string;
  /** Protocol: label AttackedProtocol, syslog p2. */
  protocol?: string;
  /** Attacker IPv4 address, dotted (KSC sends a decimal integer in syslog p3; label AttackerIPv4). */
  sourceIp?: string;
  /** Attacked (local) IPv4 address, dotted (syslog p6; label AttackedIPv4). */
  targetIp?: string;
  /** Attacked port: label AttackedPort, syslog p4. */
  port?: number;
}

/** A task-state change (KLPRCI_TaskState and the other task_state types). */
export interface KscTask {
  /** Task display name: label TaskName; syslog `tdn`. */
  name?: string;
  /** Task id as sent (text): label TaskId. */
  id?: string;
  oldState?: KscTaskState;
  newState?: KscTaskState;
  /** The codes as sent (integers); kept also when the state is `unknown`. */
  oldStateCode?: number;
  newStateCode?: number;
}

export interface KscObject {
  format: KscFormat;
  /** KSC event type code: CEF Signature ID, syslog `et` (never the truncated MSGID when `et` is there). */
  eventType: string | undefined;
  /** Display name as sent, localized or not: CEF Name, syslog `etdn`. */
  eventName: string | undefined;
  category: KscCategory;
  severity: KscSeverity;
  /** KSC importance code as sent in the CEF header (integer); absent for the syslog format. */
  severityCode: number | undefined;
  /** The managed device the event is about: CEF dhost/dst, syslog hdn/hip (+ HOSTNAME as fqdn). */
  host: { name?: string; ip?: string; fqdn?: string };
  /** Administration group: label GroupName, syslog `gn`. */
  group: string | undefined;
  /** Kaspersky application that raised the event: labels ProductName/ProductVersion, syslog APP-NAME `KES|11.0.0.0`. */
  product: { name?: string; version?: string } | undefined;
  /** The KSC Administration Server: syslog `kscfqdn` (name), CEF Device Version (version). */
  server: { name?: string; version?: string } | undefined;
  /** Protection component / task display name for non-task events: syslog `tdn`, label Component. */
  component: string | undefined;
  task: KscTask | undefined;
  threat: KscThreat | undefined;
  attack: KscAttack | undefined;
  /** CEF: every custom label/value pair `{Label: value}` (cnN and flexNumberN as numbers). Syslog: `{}`. */
  labels: Record<string, string | number>;
  /** Syslog: every parameter of the `event@<n>` element as sent (et, etdn, p1..p9, ...). */
  params: Record<string, string> | undefined;
  /** The description text split into lines: syslog MSG on the literal 4-char `\r\n`; CEF `msg` on line breaks. */
  messageLines: string[] | undefined;
}

/** A warning the ksc normalizer returns (codes from src/errors.ts). */
export interface KscWarning {
  code: Code;
  key?: string;
  message?: string;
}

/** The `ksc` object an event carries by default: the derived fields of `KscObject` (lean.ts). */
export interface KscLean {
  category: KscObject['category'];
  severity: KscObject['severity'];
  task: { oldState?: string; newState?: string } | undefined;
  threat: { action?: string } | undefined;
  attack: KscObject['attack'];
  messageLines: string[] | undefined;
}
