/**
 * The `ecs` encoding's mapping: ONE table, read by ecs.ts and printed in docs/encodings.md
 * (test/codecs/encoders.test.ts keeps the two in step). Sources follow Elastic Beats'
 * `decode_cef` processor and the KSC choices of docs/reference/receivers.md §1.
 *
 * `from`: where the value comes from, first present wins (alternatives joined by ` | `):
 * - `cef.<field>`: the CEF header; `ext.<fullName>`: an extension (custom pairs included);
 * - `ksc.<path>`: the whole ksc object (normalizers/ksc/lean.ts kscView);
 * - `event.<path>` / `syslog.<path>`: the event; `'text'`: that text;
 * - `derive.<name>`: computed in ecs.ts (named in the table so the docs say it).
 * `as`: conversion of the value (ecs.ts `convert`); a value that does not convert is left
 * out (it stays in `cef.extensions`): Elasticsearch refuses the whole document for text
 * in an `ip`, `long` or `date` field. An empty text is absent too (the next alternative,
 * else no field): an empty CEF header field or extension value says nothing, and an empty
 * keyword would. `when`: `ksc` only for events the ksc normalizer read, `other` only for
 * the rest; both when absent.
 */
export type EcsWhen = 'ksc' | 'other';
export type EcsAs = 'int' | 'port' | 'ip' | 'ips' | 'lower' | 'sha256' | 'md5' | 'sha1' | 'iso' | 'fields' | 'keywords';

export interface EcsRow {
  /** ECS field (dotted). */
  field: string;
  from: string;
  as?: EcsAs;
  when?: EcsWhen;
  /** Why, for the docs table. */
  note?: string;
}

export const ECS_VERSION = '8.11.0';

export const ECS_TABLE: readonly EcsRow[] = [
  { field: '@timestamp', from: 'event.timestamp | event.received', as: 'iso', note: 'CEF `rt`, else the syslog time stamp, else when cefd read it; when cefd read it also for a time Elasticsearch cannot take (a year past 9999)' },
  { field: 'ecs.version', from: `'${ECS_VERSION}'` },
  { field: 'message', from: 'derive.message | ext.message | cef.name | event.message', note: 'KSC "Syslog" format: its description with real CR LF line breaks (`ksc.messageLines`), as the CEF form\'s decoded `msg` has them' },
  { field: 'event.kind', from: 'derive.kind', note: '`alert` for detections, attacks, object actions, web and application control; else `event`' },
  { field: 'event.category', from: 'derive.category', note: 'from the KSC category: `malware`, `intrusion_detection`, `web`, `file`, `host`, `configuration`, `package`, ...' },
  { field: 'event.type', from: 'derive.type', note: '`info`, or `denied` / `deletion` / `change` by the action; task states `change`' },
  { field: 'event.action', from: 'derive.action', note: 'task states `task-state-changed`; else the KSC action, else CEF `act`' },
  { field: 'event.outcome', from: 'derive.outcome', note: 'task states: `success` (4 completed), `failure` (3 failed, 5 timeout), else `unknown`; else CEF `outcome` when it is success, failure or unknown (any case)' },
  { field: 'event.severity', from: 'derive.severity', note: 'CEF severity as an integer: Low 0, Medium 4, High 7, Very-High 9, Unknown absent' },
  { field: 'event.code', from: 'ksc.eventType | cef.deviceEventClassId' },
  { field: 'event.created', from: 'ext.agentReceiptTime | event.received', as: 'iso', note: 'when the first agent read it (cefd: `received`)' },
  { field: 'event.start', from: 'ext.startTime', as: 'iso' },
  { field: 'event.end', from: 'ext.endTime', as: 'iso' },
  { field: 'event.timezone', from: 'ext.deviceTimeZone' },
  { field: 'event.id', from: 'event.id', note: 'cefd\'s event id (daemon)' },
  { field: 'event.original', from: 'event.raw', note: 'when the event has `raw` (`include_raw`, `cefd parse --raw`)' },
  { field: 'event.dataset', from: "'kaspersky.ksc'", when: 'ksc' },
  { field: 'log.level', from: 'ksc.severity', when: 'ksc', note: 'KSC importance: info, warning, error, critical' },
  { field: 'log.syslog.priority', from: 'derive.priority', note: 'the syslog header, under the names of Beats\' `syslog` processor (this row and the next seven): PRI, facility × 8 + severity' },
  { field: 'log.syslog.facility.code', from: 'syslog.facility' },
  { field: 'log.syslog.severity.code', from: 'syslog.severity' },
  { field: 'log.syslog.hostname', from: 'syslog.hostname' },
  { field: 'log.syslog.appname', from: 'syslog.appName' },
  { field: 'log.syslog.procid', from: 'syslog.procId' },
  { field: 'log.syslog.msgid', from: 'syslog.msgId' },
  { field: 'log.syslog.structured_data', from: 'syslog.structuredData', note: 'RFC 5424 structured data, `{SD-ID: {PARAM: value}}` (ECS type `flattened`)' },
  { field: 'observer.vendor', from: "'Kaspersky'", when: 'ksc' },
  { field: 'observer.product', from: "'Security Center'", when: 'ksc' },
  { field: 'observer.vendor', from: 'cef.deviceVendor', when: 'other' },
  { field: 'observer.product', from: 'cef.deviceProduct', when: 'other' },
  { field: 'observer.version', from: 'ksc.server.version | cef.deviceVersion' },
  { field: 'observer.hostname', from: 'ext.deviceHostName | derive.sender', note: 'CEF `dvchost` (the device that wrote the record; a relay, cefd\'s `cef` encoding included, names the original sender so), else the syslog HOSTNAME, the Administration Server for KSC CEF; for KSC\'s "Syslog" format `kscfqdn` (its HOSTNAME is the managed device)' },
  { field: 'host.hostname', from: 'ksc.host.name', when: 'ksc', note: 'KSC `dhost`/`hdn` is the managed device, not a network destination' },
  { field: 'host.ip', from: 'ksc.host.ip', as: 'ips', when: 'ksc', note: 'an array; a value that is not an IP address is left out (ECS type `ip`)' },
  { field: 'host.domain', from: 'ksc.host.fqdn', when: 'ksc' },
  { field: 'host.hostname', from: 'ext.deviceHostName', when: 'other' },
  { field: 'host.ip', from: 'ext.deviceAddress', as: 'ips', when: 'other' },
  { field: 'host.id', from: 'ext.deviceExternalId', when: 'other' },
  { field: 'source.ip', from: 'ksc.attack.sourceIp | ext.sourceAddress', as: 'ip' },
  { field: 'source.domain', from: 'ext.sourceHostName' },
  { field: 'source.user.name', from: 'ext.sourceUserName' },
  { field: 'source.port', from: 'ext.sourcePort', as: 'port' },
  { field: 'source.bytes', from: 'ext.bytesIn', as: 'int' },
  { field: 'destination.ip', from: 'ksc.attack.targetIp', as: 'ip', when: 'ksc', note: 'only the attacked address of an attack' },
  { field: 'destination.port', from: 'ksc.attack.port', as: 'port', when: 'ksc' },
  { field: 'destination.ip', from: 'ext.destinationAddress', as: 'ip', when: 'other' },
  { field: 'destination.domain', from: 'ext.destinationHostName', when: 'other' },
  { field: 'destination.user.name', from: 'ext.destinationUserName', when: 'other' },
  { field: 'destination.port', from: 'ext.destinationPort', as: 'port', when: 'other' },
  { field: 'destination.bytes', from: 'ext.bytesOut', as: 'int' },
  { field: 'user.name', from: 'ksc.threat.user | ext.destinationUserName', when: 'ksc', note: 'the user on the managed device' },
  { field: 'process.name', from: 'ext.deviceProcessName' },
  { field: 'process.pid', from: 'ext.deviceProcessId', as: 'int' },
  { field: 'file.path', from: 'derive.filePath', note: 'the KSC object path unless it is a URL, else CEF `filePath`' },
  { field: 'file.name', from: 'ext.fileName' },
  { field: 'file.size', from: 'ext.fileSize', as: 'int' },
  { field: 'file.type', from: 'ext.fileType' },
  { field: 'file.hash.sha256', from: 'ksc.threat.sha256 | ext.fileHash', as: 'sha256', note: 'lowercase; `fileHash` only when it is 64 hex digits' },
  { field: 'file.hash.md5', from: 'ksc.threat.md5 | ext.fileHash', as: 'md5' },
  { field: 'file.hash.sha1', from: 'ext.fileHash', as: 'sha1' },
  { field: 'url.original', from: 'derive.url | ext.requestUrl', note: 'a KSC object path that is a URL (web events), else CEF `request`' },
  { field: 'user_agent.original', from: 'ext.requestClientApplication' },
  { field: 'http.request.method', from: 'ext.requestMethod' },
  { field: 'network.application', from: 'ext.applicationProtocol', as: 'lower' },
  { field: 'network.transport', from: 'ksc.attack.protocol | ext.transportProtocol', as: 'lower' },
  { field: 'threat.software.name', from: 'ksc.threat.name', when: 'ksc' },
  { field: 'rule.name', from: 'ksc.threat.name | ksc.attack.name', when: 'ksc', note: 'the threat or attack name' },
  { field: 'kaspersky.ksc.event_type', from: 'ksc.eventType', when: 'ksc' },
  { field: 'kaspersky.ksc.event_name', from: 'ksc.eventName', when: 'ksc' },
  { field: 'kaspersky.ksc.category', from: 'ksc.category', when: 'ksc' },
  { field: 'kaspersky.ksc.format', from: 'ksc.format', when: 'ksc' },
  { field: 'kaspersky.ksc.severity', from: 'ksc.severity', when: 'ksc' },
  { field: 'kaspersky.ksc.group', from: 'ksc.group', when: 'ksc' },
  { field: 'kaspersky.ksc.product.name', from: 'ksc.product.name', when: 'ksc' },
  { field: 'kaspersky.ksc.product.version', from: 'ksc.product.version', when: 'ksc' },
  { field: 'kaspersky.ksc.component', from: 'ksc.component', when: 'ksc' },
  { field: 'kaspersky.ksc.task.id', from: 'ksc.task.id', when: 'ksc' },
  { field: 'kaspersky.ksc.task.name', from: 'ksc.task.name', when: 'ksc' },
  { field: 'kaspersky.ksc.task.old_state', from: 'ksc.task.oldState', when: 'ksc' },
  { field: 'kaspersky.ksc.task.new_state', from: 'ksc.task.newState', when: 'ksc' },
  { field: 'kaspersky.ksc.task.old_state_code', from: 'ksc.task.oldStateCode', when: 'ksc' },
  { field: 'kaspersky.ksc.task.new_state_code', from: 'ksc.task.newStateCode', when: 'ksc' },
  { field: 'kaspersky.ksc.threat.action', from: 'ksc.threat.action', when: 'ksc' },
  { field: 'kaspersky.ksc.labels', from: 'ksc.labels', as: 'keywords', when: 'ksc', note: 'every KSC custom field by its label, as text (a label\'s value is a number in one event and text in another: one Elasticsearch mapping must take both)' },
  { field: 'cef.version', from: 'cef.version' },
  { field: 'cef.device.vendor', from: 'cef.deviceVendor' },
  { field: 'cef.device.product', from: 'cef.deviceProduct' },
  { field: 'cef.device.version', from: 'cef.deviceVersion' },
  { field: 'cef.device.event_class_id', from: 'cef.deviceEventClassId' },
  { field: 'cef.name', from: 'cef.name' },
  { field: 'cef.severity', from: 'cef.severity' },
  { field: 'cef.extensions', from: 'derive.extensions', as: 'fields', note: 'every extension under its full name, custom pairs as two keys (as Beats keeps them)' },
];
