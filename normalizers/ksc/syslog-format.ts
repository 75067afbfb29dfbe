/**
 * KSC "Syslog" export (RFC 5424 with one `[event@23668 ...]` element) → the `ksc` object.
 * docs/reference/ksc-format.md §2.
 *
 * - The event type is SD `et`: the MSGID is cut at 32 characters
 *   (`GNRL_EV_APPLICATION_LAUNCH_DENIE`), so it is used only when `et` is missing.
 * - The managed device is `hdn`/`hip` (hip may be 127.0.0.1); the RFC 5424 HOSTNAME is
 *   the same device, often as an FQDN, reported as `host.fqdn`.
 * - p1..p9 are read per event type (tables.ts `ParamLayout`), best effort: all SD params
 *   are also kept raw in `params`.
 * - MSG: line breaks arrive as the literal 4-char text `\r\n` while backslashes are NOT
 *   escaped (`C:\Windows\...\rm.bat`). It is split on that exact sequence only; nothing
 *   is unescaped, so `\rm.bat` stays intact.
 *
 * Also: KSC lines relayed with an RFC 3164 template lose their SD (FORMAT.md §7 item 9);
 * those are recognised by APP-NAME `<product>|<version>` and give what is left
 * (`format: 'syslog_nosd'`, warning `ksc_no_structured_data`).
 */
import { isIP } from 'node:net';
import type { CefdEvent, SyslogHeader } from '../../src/event.js';
import { isThreatCategory } from './derive.js';
import { severityFromPri, typeInfo, type TypeInfo } from './tables.js';
import { hexOrUndefined, ipv4Text, jsonStringMember, kscAppNameBar, looksLikeFqdn, portNumber, splitLines } from './text.js';
import type { KscAttack, KscObject, KscThreat, KscWarning } from './types.js';

/** The literal line break of KSC's syslog MSG: backslash, r, backslash, n. */
const LITERAL_CRLF = '\\r\\n';

const NO_PARAMS: Readonly<Record<string, string>> = Object.freeze({});

/**
 * A param's value; an empty one is no value, as when it is not sent (KSC sends only the
 * p-params that have one, FORMAT.md §2.2), so `hdn=""` leaves the host name to HOSTNAME
 * and `p3=""` is not a bad address. `params` keeps it as sent.
 */
function val(p: Readonly<Record<string, string>>, key: string): string | undefined {
  const v = p[key];
  return v === '' ? undefined : v;
}

/**
 * The KSC element of the structured data: an SD-ID `event@<digits>` (23668 is
 * Kaspersky's enterprise number; one public sample is anonymized to `event@11111`)
 * with an `et` param.
 */
export function kscElement(sd: Record<string, Record<string, string>> | undefined): Record<string, string> | undefined {
  if (sd === undefined) return undefined;
  for (const id in sd) {
    if (id.length < 7 || !id.startsWith('event@')) continue;
    let digits = true;
    for (let i = 6; i < id.length; i++) {
      const c = id.charCodeAt(i);
      if (c < 48 || c > 57) digits = false;
    }
    if (!digits) continue;
    const el = sd[id]!;
    if (Object.prototype.hasOwnProperty.call(el, 'et')) return el;
  }
  return undefined;
}

function product(app: string | undefined): KscObject['product'] {
  if (app === undefined) return undefined;
  const bar = app.indexOf('|');
  return bar === -1 ? { name: app, version: undefined } : { name: app.slice(0, bar), version: app.slice(bar + 1) };
}

/** True for a syslog frame that is a KSC line without its SD element. */
export function isRelayedKsc(sys: SyslogHeader): boolean {
  return kscAppNameBar(sys.appName) !== -1;
}

export function normalizeSyslog(event: CefdEvent, sys: SyslogHeader, el: Record<string, string> | undefined, warnings: KscWarning[]): KscObject {
  // A copy, so the event's syslog.structuredData and ksc.params never share an object.
  const params: Record<string, string> | undefined = el === undefined ? undefined : { ...el };
  const eventType = params !== undefined ? val(params, 'et') ?? sys.msgId : sys.msgId;
  const info = typeInfo(eventType);
  const category = info.category;
  if (params === undefined) {
    warnings.push({
      code: 'ksc_no_structured_data',
      message:
        sys.msgId !== undefined
          ? `KSC syslog line without [event@23668 ...]: event type from MSGID ${JSON.stringify(sys.msgId)}${sys.msgId.length === 32 ? ' (may be cut at 32 characters)' : ''}`
          : 'KSC syslog line without [event@23668 ...] (relayed with an RFC 3164 template?): event type unknown',
    });
  }
  const p = params ?? NO_PARAMS;
  const tdn = val(p, 'tdn');
  const kscfqdn = val(p, 'kscfqdn');
  const message = event.message;
  return {
    format: params !== undefined ? 'syslog' : 'syslog_nosd',
    eventType,
    eventName: val(p, 'etdn'),
    category,
    severity: severityFromPri(sys.severity),
    severityCode: undefined,
    host: { name: val(p, 'hdn') ?? sys.hostname, ip: val(p, 'hip'), fqdn: looksLikeFqdn(sys.hostname) ? sys.hostname : undefined },
    group: val(p, 'gn'),
    product: product(sys.appName),
    server: kscfqdn !== undefined ? { name: kscfqdn, version: undefined } : undefined,
    component: category !== 'task_state' ? tdn : undefined,
    task:
      category === 'task_state'
        ? { name: tdn, id: undefined, oldState: undefined, newState: undefined, oldStateCode: undefined, newStateCode: undefined }
        : undefined,
    threat: syslogThreat(p, info),
    attack: info.layout === 'attack' ? syslogAttack(p, warnings) : undefined,
    labels: {},
    params,
    messageLines: message !== undefined && message !== '' ? splitLines(message, LITERAL_CRLF) : undefined,
  };
}

/** The threat, or undefined when it has no field at all (as the CEF path gives for such an event). */
export function syslogThreat(p: Record<string, string>, info: TypeInfo): KscThreat | undefined {
  const t = threatFields(p, info);
  if (t === undefined) return undefined;
  for (const k in t) if (t[k as keyof KscThreat] !== undefined) return t;
  return undefined;
}

function threatFields(p: Record<string, string>, info: TypeInfo): KscThreat | undefined {
  const layout = info.layout;
  if (layout === 'object') {
    const p9 = val(p, 'p9');
    return {
      name: val(p, 'p5'),
      objectPath: val(p, 'p2'),
      user: val(p, 'p7'),
      action: info.action,
      sha256: hexOrUndefined(val(p, 'p1'), 64),
      md5: p9 !== undefined ? hexOrUndefined(jsonStringMember(p9, 'md5'), 32) : undefined,
    };
  }
  if (layout === 'app_launch') {
    let sha = val(p, 'p8');
    if (sha !== undefined && sha.charCodeAt(0) === 59 /* ; */) sha = sha.slice(1);
    return {
      name: undefined,
      objectPath: val(p, 'p7') ?? val(p, 'p6'),
      user: val(p, 'p2'),
      action: info.action,
      sha256: hexOrUndefined(sha, 64),
      md5: undefined,
    };
  }
  if (isThreatCategory(info.category) && info.action !== undefined) {
    return { name: undefined, objectPath: undefined, user: undefined, action: info.action, sha256: undefined, md5: undefined };
  }
  return undefined;
}

export function syslogAttack(p: Record<string, string>, warnings: KscWarning[]): KscAttack {
  return {
    name: val(p, 'p1'),
    protocol: val(p, 'p2'),
    sourceIp: decimalIp(p, 'p3', warnings),
    // Without p6 (absent, empty, or not an address): the managed device's address (hip), as
    // the CEF path falls back to dst.
    targetIp: decimalIp(p, 'p6', warnings) ?? deviceIp(p),
    port: port(p, 'p4', warnings),
  };
}

/** `hip` when it is an IP address. */
function deviceIp(p: Record<string, string>): string | undefined {
  const v = val(p, 'hip');
  return v !== undefined && isIP(v) !== 0 ? v : undefined;
}

function decimalIp(p: Record<string, string>, key: string, warnings: KscWarning[]): string | undefined {
  const v = val(p, key);
  if (v === undefined) return undefined;
  // KSC writes a decimal integer; a dotted address (a relay's rewrite) is read as the CEF path reads one.
  const ip = ipv4Text(v);
  if (ip === undefined) warnings.push({ code: 'ksc_bad_number', key, message: `${key} ${JSON.stringify(v)} is neither a decimal nor a dotted IPv4 address` });
  return ip;
}

function port(p: Record<string, string>, key: string, warnings: KscWarning[]): number | undefined {
  const v = val(p, key);
  if (v === undefined) return undefined;
  const n = portNumber(v);
  if (n === undefined) warnings.push({ code: 'ksc_bad_number', key, message: `${key} ${JSON.stringify(v)} is not a port number (an integer 0-65535)` });
  return n;
}
