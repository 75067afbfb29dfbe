/**
 * KSC Open API emulator for tests: an HTTPS server, faithful to docs/reference/ksc-open-api.md
 * for the part cefd uses (§7 checklist).
 *
 * - Transport (§0): `POST /api/v1.0/Class.Method`, JSON in, JSON out (`PxgRetVal` + out
 *   parameters), gzip when asked (`Accept-Encoding: gzip`), `X-KSC-RequestId` accepted.
 * - Auth (§1): `POST /api/v1.0/login` with KSCBasic binds the login to the TCP connection
 *   (§1.1); `Session.StartSession` with KSCBasic returns a token for `X-KSC-Session` (§1.2);
 *   `Session.Ping`, `Session.EndSession` (403 afterwards). Bad credentials: 401 and no JSON.
 *   No auth: 401. Unknown, ended or idle-expired session: 403. The KSCBasic parser is lenient
 *   on quoting and on domain/internal, as the notes advise.
 * - Method errors (§0.2): HTTP 200 + `{"PxgError":{code,subcode,module,file,line,message}}`
 *   (bad accessor, unknown task, missing argument, unknown method, access denied). The codes
 *   are the emulator's own (no public source lists them).
 * - Hosts (§2.1-2.3): `HostGroup.FindHosts` (filter subset, field projection, ordering,
 *   `lMaxLifeTime` capped at 7200) → accessor; `ChunkAccessor.GetItemsCount`, `GetItemsChunk`
 *   (missing nStart = 0), `Release`; the accessor is invalid after Release or its lifetime.
 *   `HostGroup.GetHostInfo`, `HostGroup.GetHostProducts`, `HostGroup.GetStaticInfo`.
 * - Tasks (§2.4-2.6): `Tasks.ResetTasksIterator` / `GetNextTask` / `ReleaseTasksIterator`,
 *   `GetTask`, `GetTaskData`, `GetAllTasksOfHost` (scope membership), `RunTask` (runs on
 *   the whole scope), `GetTaskStatistics`.
 * - After RunTask, for every host of the scope that has the task's product, the emulator can
 *   send `KLPRCI_TaskState` CEF lines (0→1 Running, then 1→4 Completed or 1→3 Failed) to a
 *   TCP listener, with configurable delays and outcome.
 * - Inventory (§2.8): `InventoryApi.GetHostInvProducts` / `GetHostInvPatches`
 *   (`{"PxgRetVal":{"GNRL_EA_PARAM_1":[params...]}}`, InstallDate `YYYYMMDD`; empty for
 *   non-Windows hosts); `SrvView.ResetIterator` / `GetRecordCount` / `GetRecordRange` /
 *   `ReleaseIterator` over the vulnerability view `v_vapm_vulnerability` (attributes of
 *   §2.8; the host-id attribute `KLHST_WKS_HOSTNAME` and `ProductName` are GUESSES).
 * - Fault injection: `faults.delayMs` / per-method delays (slow answers), `failNext` (5xx or
 *   any status, N times, per method), `hangUpNext` (close the socket without an answer),
 *   `expireSessions()` (every session and connection-bound login becomes invalid),
 *   `ageAccessors(ms)` (open accessors age, so a lifetime passes without waiting),
 *   `failHosts` (per-host calls for these host ids answer a PxgError), `srvViewPageMax`
 *   (GetRecordRange returns at most this many records, so the client must page),
 *   `rejectAttributes` (FindHosts refuses these attributes, as an older server would).
 */
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import zlib from 'node:zlib';
import { makeSelfSignedCert, type TestCertificate } from './cert.js';
import { defaultModel, groupAncestry, taskScope, type EmuHost, type EmuModel, type EmuSoftware, type EmuTask, type EmuVulnerability } from './model.js';
import { filterAttributes, matchFilter, parseFilter, FilterSyntaxError, type FilterValue } from './filter.js';
import { CefTcpSender, taskStateCef } from './cef.js';

export interface TaskEventOptions {
  /** Where to send KLPRCI_TaskState lines; nothing is sent without it. */
  target?: { host: string; port: number };
  /** Delay before the "Running" line (ms, default 20). */
  runningAfterMs?: number;
  /** Delay before the final line, after "Running" (ms, default 50). */
  finishAfterMs?: number;
  /** Final state per host: 4 completed (default), 3 failed, 5 failed by timeout. */
  outcome?: (task: EmuTask, host: EmuHost) => 4 | 3 | 5;
}

export interface EmulatorOptions {
  model?: EmuModel;
  cert?: TestCertificate;
  /** Session idle timeout (ms, default 30 min). */
  sessionIdleMs?: number;
  /** Compress answers when the client asks for gzip (default true). */
  gzip?: boolean;
  taskEvents?: TaskEventOptions;
}

export interface CallRecord {
  method: string;
  status: number;
  /** Which auth the request carried: session token, connection-bound login, basic header, none. */
  auth: 'session' | 'connection' | 'basic' | 'none';
  body: Record<string, unknown>;
  /** Request headers (lower-case names), as received. */
  headers: Record<string, string | string[] | undefined>;
  socket: number;
}

interface Fault {
  method?: string;
  status: number;
  times: number;
  body?: string;
}

interface Accessor {
  items: Record<string, unknown>[];
  expiresAt: number;
}

interface RunState {
  taskId: string;
  hostId: string;
  state: number;
}

export interface Faults {
  /** Delay before every answer (ms). */
  delayMs: number;
  /** Extra delay for one method (ms). */
  methodDelayMs: Record<string, number>;
  /**
   * Delay of the answer of one method after the call took effect (ms): a slow KSC that
   * started the task and has not answered yet. Unlike `methodDelayMs`, the call acts even
   * when the client goes away meanwhile.
   */
  answerDelayMs: Record<string, number>;
  /** Answer the next `times` calls (of `method`, or any) with `status` and `body`. */
  failNext(status: number, o?: { method?: string; times?: number; body?: string }): void;
  /** Close the socket of the next `times` calls (of `method`, or any) without answering. */
  hangUpNext(o?: { method?: string; times?: number }): void;
  /** Send the next `times` answers (of `method`, or any) half-way, then close the socket. */
  breakNext(o?: { method?: string; times?: number }): void;
  /**
   * Hold the next call (of `method`, or any) after it is recorded in `calls`, until the
   * returned function is called; then the call goes on (and meets the other faults). For a
   * test to act while a call is under way, without guessing a delay. `onHeld` is called when
   * the call arrives and is held (the test may release it from there).
   */
  holdNext(o?: { method?: string; onHeld?: () => void }): () => void;
  /** Per-host calls (InventoryApi.*, GetHostInfo, a SrvView filtered on the host) for these host ids fail with a PxgError. */
  failHosts: Set<string>;
  /** SrvView.GetRecordRange returns at most this many records per call (0: no cap). */
  srvViewPageMax: number;
  /**
   * ChunkAccessor.GetItemsChunk returns at most this many items per call (0: no cap):
   * OPEN-API.md §2.1, it "returns the actual number of elements, <= nCount".
   */
  chunkMax: number;
  /** Host attributes FindHosts refuses in vecFieldsToReturn (PxgError), like a server that does not know them. */
  rejectAttributes: Set<string>;
  /** Remove every pending fault. */
  clear(): void;
}

const PXG = {
  badArg: (m: string) => ({ code: 1185, module: 'KLSTD', message: `Invalid argument: ${m}` }),
  notFound: (m: string) => ({ code: 1168, module: 'KLSTD', message: `Object not found: ${m}` }),
  noMethod: (m: string) => ({ code: 1184, module: 'KLOAPI', message: `Method "${m}" not found` }),
  denied: (m: string) => ({ code: 1150, module: 'KLSTD', message: `Access denied: ${m}` }),
};

class PxgFailure extends Error {
  constructor(readonly e: { code: number; module: string; message: string }) {
    super(e.message);
  }
}

const HOST_FIELDS = new Set([
  'KLHST_WKS_HOSTNAME', 'KLHST_WKS_DN', 'KLHST_WKS_FQDN', 'KLHST_WKS_DNSNAME', 'KLHST_WKS_DNSDOMAIN', 'KLHST_WKS_WINHOSTNAME',
  'KLHST_WKS_WINDOMAIN', 'KLHST_WKS_IP_LONG', 'KLHST_WKS_CONNECT_IP_LONG', 'KLHST_WKS_GROUPID', 'KLHST_WKS_OS_NAME',
  'KLHST_WKS_LAST_VISIBLE', 'KLHST_WKS_LAST_NAGENT_CONNECTED', 'KLHST_WKS_STATUS', 'KLHST_INSTANCEID', 'KLHST_WKS_NAG_VERSION',
  'KLHST_WKS_RTP_AV_VERSION', 'name', 'KLHST_WKS_MAC_ADDRESSES', 'KLHST_WKS_STATUS_ID', 'KLHST_WKS_RTP_AV_BASES_TIME', 'KLHST_WKS_LAST_UPDATE',
  'KLHST_WKS_LAST_FULLSCAN', 'KLHST_WKS_VIRUS_COUNT', 'KLHST_WKS_CTYPE', 'KLHST_WKS_PTYPE', 'KLHST_WKS_OS_VER_MAJOR', 'KLHST_WKS_OS_VER_MINOR',
  'KLHST_WKS_OS_BUILD_NUMBER', 'KLWNF_OS_IS_SERVER', 'KLHST_WKS_OWNER_NAME', 'KLHST_WKS_OWNER_ID',
]);
/** The vulnerability view (OPEN-API.md §2.8) and its attributes. */
const VULN_VIEW = 'v_vapm_vulnerability';
const VULN_FIELDS = new Set(['KLHST_WKS_HOSTNAME', 'VulnerabilityId', 'SeverityRating', 'DescriptionURL', 'ProductName', 'ProductVersion', 'DetectionTime', 'nVulnId', 'strVulnUid', 'bIgnore', 'ObjPath']);
const SEARCH_ONLY = new Set(['KLHST_WKS_GROUPID_GP', 'KLHST_WKS_PRODUCT_NAME', 'KLHST_WKS_PRODUCT_VERSION']);

function ipLong(ip: string | undefined): number | undefined {
  if (ip === undefined) return undefined;
  const p = ip.split('.').map(Number);
  return p[0]! * 16777216 + p[1]! * 65536 + p[2]! * 256 + p[3]!;
}
const dt = (d: Date | undefined): { type: 'datetime'; value: string } => ({ type: 'datetime', value: d === undefined ? '' : d.toISOString().replace(/\.\d{3}Z$/, 'Z') });
const lng = (n: number | undefined): { type: 'long'; value: number } | null => (n === undefined ? null : { type: 'long', value: n });

export class KscEmulator {
  readonly model: EmuModel;
  readonly cert: TestCertificate;
  readonly calls: CallRecord[] = [];
  /** Every KLPRCI_TaskState line sent. */
  readonly sentEvents: string[] = [];
  /** Task starts: task id and the host ids of the scope. */
  readonly runs: { taskId: string; hostIds: string[]; user: string }[] = [];
  taskEvents: TaskEventOptions;
  sessionIdleMs: number;
  gzip: boolean;
  readonly faults: Faults;

  private server: https.Server;
  private readonly sessions = new Map<string, { user: string; lastUsed: number }>();
  private readonly socketAuth = new WeakMap<Socket, { user: string; epoch: number }>();
  private readonly socketIds = new WeakMap<Socket, number>();
  private socketCount = 0;
  private epoch = 0;
  private readonly accessors = new Map<string, Accessor>();
  private readonly taskIterators = new Map<string, EmuTask[]>();
  private readonly viewIterators = new Map<string, Record<string, unknown>[]>();
  private readonly runStates = new Map<string, RunState>();
  private readonly pendingFaults: Fault[] = [];
  private readonly pendingHangups: { method?: string; times: number }[] = [];
  private readonly pendingBreaks: { method?: string; times: number }[] = [];
  private readonly pendingHolds: { method?: string; gate: Promise<void>; onHeld?: () => void }[] = [];
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly eventQueue: Promise<void>[] = [];
  private sender: CefTcpSender | undefined;
  private openSockets = new Set<Socket>();
  port = 0;
  /** Highest number of requests handled at the same time (the client must keep it at 1). */
  maxConcurrent = 0;
  private inFlight = 0;

  constructor(o: EmulatorOptions = {}) {
    this.model = o.model ?? defaultModel();
    this.cert = o.cert ?? makeSelfSignedCert();
    this.sessionIdleMs = o.sessionIdleMs ?? 30 * 60_000;
    this.gzip = o.gzip ?? true;
    this.taskEvents = o.taskEvents ?? {};
    const self = this;
    this.faults = {
      delayMs: 0,
      methodDelayMs: {},
      answerDelayMs: {},
      failNext(status, f = {}) {
        self.pendingFaults.push({ status, times: f.times ?? 1, ...(f.method !== undefined ? { method: f.method } : {}), ...(f.body !== undefined ? { body: f.body } : {}) });
      },
      hangUpNext(f = {}) {
        self.pendingHangups.push({ times: f.times ?? 1, ...(f.method !== undefined ? { method: f.method } : {}) });
      },
      breakNext(f = {}) {
        self.pendingBreaks.push({ times: f.times ?? 1, ...(f.method !== undefined ? { method: f.method } : {}) });
      },
      holdNext(f = {}) {
        let release!: () => void;
        const gate = new Promise<void>((r) => (release = r));
        self.pendingHolds.push({ gate, ...(f.method !== undefined ? { method: f.method } : {}), ...(f.onHeld !== undefined ? { onHeld: f.onHeld } : {}) });
        return release;
      },
      failHosts: new Set<string>(),
      srvViewPageMax: 0,
      chunkMax: 0,
      rejectAttributes: new Set<string>(),
      clear() {
        this.failHosts.clear();
        this.srvViewPageMax = 0;
        this.chunkMax = 0;
        this.rejectAttributes.clear();
        self.pendingFaults.length = 0;
        self.pendingHangups.length = 0;
        self.pendingBreaks.length = 0;
        self.pendingHolds.length = 0;
        this.delayMs = 0;
        this.methodDelayMs = {};
        this.answerDelayMs = {};
      },
    };
    this.server = https.createServer({ key: this.cert.key, cert: this.cert.cert }, (req, res) => {
      void this.handle(req, res);
    });
    this.server.keepAliveTimeout = 60_000;
    this.server.on('secureConnection', (s: Socket) => {
      this.socketIds.set(s, ++this.socketCount);
      this.openSockets.add(s);
      s.on('close', () => this.openSockets.delete(s));
    });
  }

  /** `127.0.0.1:<port>`. */
  get url(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Number of TLS connections accepted so far. */
  get connections(): number {
    return this.socketCount;
  }

  listen(port = 0, host = '127.0.0.1'): Promise<this> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.port = (this.server.address() as AddressInfo).port;
        resolve(this);
      });
    });
  }

  /** Invalidates every session token and connection-bound login (next calls get 403/401). */
  expireSessions(): void {
    this.sessions.clear();
    this.epoch++;
  }

  /** Makes every session look idle for `ms` more (to test the idle timeout without waiting). */
  ageSessions(ms: number): void {
    for (const s of this.sessions.values()) s.lastUsed -= ms;
  }

  /**
   * Makes every open accessor `ms` older: one whose lMaxLifeTime has passed is destroyed, as
   * KSC does (OPEN-API.md §2.1), without a test waiting up to 7200 s.
   */
  ageAccessors(ms: number): void {
    for (const a of this.accessors.values()) a.expiresAt -= ms;
  }

  /** Drops open connections (the client must reconnect; connection-bound logins are lost). */
  dropConnections(): void {
    for (const s of this.openSockets) s.destroy();
  }

  /** Method names called, in order. */
  methods(): string[] {
    return this.calls.map((c) => c.method);
  }

  /** Open accessors (not released, not expired). */
  openAccessors(): number {
    const now = Date.now();
    return [...this.accessors.values()].filter((a) => a.expiresAt > now).length;
  }

  /** Open tasks iterators (not released). */
  openTaskIterators(): number {
    return this.taskIterators.size;
  }

  /** Waits until every scheduled task-state line has been sent. */
  async flushEvents(): Promise<void> {
    while (this.eventQueue.length > 0) await this.eventQueue.shift();
  }

  async close(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.sender?.close();
    for (const s of this.openSockets) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  // -------------------------------------------------------------------------------------

  private sleep(ms: number): Promise<void> {
    return new Promise((r) => {
      const t = setTimeout(() => {
        this.timers.delete(t);
        r();
      }, ms);
      this.timers.add(t);
    });
  }

  private send(req: IncomingMessage, res: ServerResponse, status: number, body: unknown, extraHeaders: Record<string, string> = {}): void {
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    let buf = Buffer.from(text, 'utf8');
    const headers: Record<string, string> = { 'Content-Type': typeof body === 'string' ? 'text/plain; charset=utf-8' : 'application/json; charset=utf-8', ...extraHeaders };
    if (this.gzip && /\bgzip\b/.test(String(req.headers['accept-encoding'] ?? '')) && buf.length > 0) {
      buf = zlib.gzipSync(buf);
      headers['Content-Encoding'] = 'gzip';
    }
    headers['Content-Length'] = String(buf.length);
    res.writeHead(status, headers);
    res.end(buf);
  }

  private parseBasic(h: string | undefined): { user: string; pass: string } | undefined {
    if (h === undefined || !/^KSCBasic\s/i.test(h)) return undefined;
    const kv = new Map<string, string>();
    for (const m of h.slice(8).matchAll(/([A-Za-z]+)\s*=\s*(?:"([^"]*)"|([^,\s]*))/g)) kv.set(m[1]!.toLowerCase(), m[2] ?? m[3] ?? '');
    const u = kv.get('user');
    const p = kv.get('pass');
    if (u === undefined || p === undefined) return undefined;
    return { user: Buffer.from(u, 'base64').toString('utf8'), pass: Buffer.from(p, 'base64').toString('utf8') };
  }

  private checkUser(h: string | undefined): string | undefined {
    const b = this.parseBasic(h);
    if (b === undefined) return undefined;
    const u = this.model.users.find((x) => x.user === b.user && x.password === b.pass);
    return u?.user;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.inFlight++;
    this.maxConcurrent = Math.max(this.maxConcurrent, this.inFlight);
    res.on('close', () => this.inFlight--);
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks).toString('utf8');
    const m = /^\/api\/v1\.0\/([A-Za-z0-9_.]+)$/.exec(req.url ?? '');
    const method = m?.[1] ?? String(req.url);
    const sock = req.socket;
    const rec: CallRecord = { method, status: 0, auth: 'none', body: {}, headers: req.headers, socket: this.socketIds.get(sock) ?? 0 };
    this.calls.push(rec);
    const answer = (status: number, body: unknown): void => {
      const later = this.faults.answerDelayMs[method] ?? 0;
      if (later <= 0) {
        rec.status = status;
        this.send(req, res, status, body);
        return;
      }
      setTimeout(() => {
        rec.status = status;
        if (!res.destroyed && !sock.destroyed) this.send(req, res, status, body);
      }, later);
    };

    const delay = this.faults.delayMs + (this.faults.methodDelayMs[method] ?? 0);
    if (delay > 0) await this.sleep(delay);
    const hold = this.pendingHolds.find((f) => f.method === undefined || f.method === method);
    if (hold !== undefined) {
      this.pendingHolds.splice(this.pendingHolds.indexOf(hold), 1);
      hold.onHeld?.();
      await hold.gate;
    }
    if (res.destroyed || sock.destroyed) return;

    const hang = this.pendingHangups.find((f) => f.method === undefined || f.method === method);
    if (hang !== undefined) {
      if (--hang.times <= 0) this.pendingHangups.splice(this.pendingHangups.indexOf(hang), 1);
      rec.status = -1;
      sock.destroy();
      return;
    }
    const brk = this.pendingBreaks.find((f) => f.method === undefined || f.method === method);
    if (brk !== undefined) {
      if (--brk.times <= 0) this.pendingBreaks.splice(this.pendingBreaks.indexOf(brk), 1);
      rec.status = -2;
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': '1000' });
      res.write('{"PxgRetVal":');
      setTimeout(() => sock.destroy(), 5);
      return;
    }
    const fault = this.pendingFaults.find((f) => f.method === undefined || f.method === method);
    if (fault !== undefined) {
      if (--fault.times <= 0) this.pendingFaults.splice(this.pendingFaults.indexOf(fault), 1);
      return answer(fault.status, fault.body ?? `<html><body>${fault.status} Server Error</body></html>`);
    }

    if (req.method !== 'POST' || m === null) return answer(404, 'Not Found');
    let body: Record<string, unknown> = {};
    if (raw.trim() !== '') {
      try {
        const v = JSON.parse(raw) as unknown;
        if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error('not an object');
        body = v as Record<string, unknown>;
      } catch {
        return answer(400, { PxgError: { ...PXG.badArg('the request body is not a JSON object'), subcode: 0, file: 'emulator', line: 0 } });
      }
    }
    rec.body = body;
    const authz = req.headers['authorization'];

    // --- login variants (§1.1, §1.2)
    if (method === 'login') {
      const user = this.checkUser(typeof authz === 'string' ? authz : undefined);
      rec.auth = 'basic';
      if (user === undefined) return answer(401, '');
      this.socketAuth.set(sock, { user, epoch: this.epoch });
      return answer(200, {});
    }
    if (method === 'Session.StartSession') {
      const user = this.checkUser(typeof authz === 'string' ? authz : undefined);
      rec.auth = 'basic';
      if (user === undefined) return answer(401, '');
      const tok = randomBytes(16).toString('base64');
      this.sessions.set(tok, { user, lastUsed: Date.now() });
      return answer(200, { PxgRetVal: tok });
    }

    // --- authentication of a method call
    let user: string | undefined;
    const tok = req.headers['x-ksc-session'];
    if (typeof tok === 'string') {
      rec.auth = 'session';
      const s = this.sessions.get(tok);
      if (s === undefined || Date.now() - s.lastUsed > this.sessionIdleMs) {
        this.sessions.delete(tok);
        return answer(403, '');
      }
      s.lastUsed = Date.now();
      user = s.user;
    } else if (typeof authz === 'string') {
      rec.auth = 'basic';
      user = this.checkUser(authz);
      if (user === undefined) return answer(401, '');
      this.socketAuth.set(sock, { user, epoch: this.epoch });
    } else {
      const a = this.socketAuth.get(sock);
      rec.auth = a !== undefined ? 'connection' : 'none';
      if (a === undefined) return answer(401, '');
      if (a.epoch !== this.epoch) return answer(403, '');
      user = a.user;
    }

    try {
      const out = this.dispatch(method, body, user, typeof tok === 'string' ? tok : undefined);
      answer(200, out);
    } catch (e) {
      if (e instanceof PxgFailure) return answer(200, { PxgError: { ...e.e, subcode: 0, file: 'emulator.ts', line: 1 } });
      answer(500, `internal emulator error: ${(e as Error).message}`);
    }
  }

  private hostAttr(h: EmuHost, attr: string): FilterValue | FilterValue[] {
    const g = this.model.groups.find((x) => x.id === h.groupId);
    switch (attr) {
      case 'KLHST_WKS_HOSTNAME':
        return h.id;
      case 'KLHST_WKS_DN':
        return h.displayName;
      case 'KLHST_WKS_FQDN':
        return h.fqdn ?? '';
      case 'KLHST_WKS_DNSNAME':
        return h.fqdn?.split('.')[0] ?? '';
      case 'KLHST_WKS_DNSDOMAIN':
        return h.fqdn?.split('.').slice(1).join('.') ?? '';
      case 'KLHST_WKS_WINHOSTNAME':
        return h.displayName.toUpperCase();
      case 'KLHST_WKS_WINDOMAIN':
        return h.domain ?? '';
      case 'KLHST_WKS_IP_LONG':
        return ipLong(h.ip) ?? 0;
      case 'KLHST_WKS_CONNECT_IP_LONG':
        return ipLong(h.connectIp ?? h.ip) ?? 0;
      case 'KLHST_WKS_GROUPID':
        return h.groupId;
      case 'KLHST_WKS_GROUPID_GP':
        return groupAncestry(this.model, h.groupId);
      case 'KLHST_WKS_OS_NAME':
        return h.os ?? '';
      case 'KLHST_WKS_LAST_VISIBLE':
        return h.lastVisible ?? null;
      case 'KLHST_WKS_LAST_NAGENT_CONNECTED':
        return h.nagentConnected ?? null;
      case 'KLHST_WKS_STATUS':
        return (h.lastVisible !== undefined && Date.now() - h.lastVisible.getTime() < 3_600_000 ? 1 : 0) | 2 | (h.nagent ? 4 | 8 : 0) | (h.products.some((p) => p.product !== '1103') ? 16 : 0);
      case 'KLHST_INSTANCEID':
        return h.nagent ? `inst-${h.id.slice(0, 8)}` : '';
      case 'KLHST_WKS_NAG_VERSION':
        return h.products.find((p) => p.product === '1103')?.build ?? '';
      case 'KLHST_WKS_RTP_AV_VERSION':
        return h.products.find((p) => p.product !== '1103')?.build ?? '';
      case 'KLHST_WKS_PRODUCT_NAME':
        return h.products.map((p) => p.product);
      case 'KLHST_WKS_PRODUCT_VERSION':
        return h.products.map((p) => p.version);
      case 'name':
        return g?.name ?? '';
      case 'KLHST_WKS_MAC_ADDRESSES':
        return h.macs ?? [];
      case 'KLHST_WKS_STATUS_ID':
        return h.statusId ?? 0;
      case 'KLHST_WKS_RTP_AV_BASES_TIME':
      case 'KLHST_WKS_LAST_UPDATE':
        return h.avBases ?? null;
      case 'KLHST_WKS_LAST_FULLSCAN':
        return null;
      case 'KLHST_WKS_VIRUS_COUNT':
        return 0;
      case 'KLHST_WKS_CTYPE':
        return h.computerType ?? 0;
      case 'KLHST_WKS_PTYPE':
        return h.platformType ?? 0;
      case 'KLHST_WKS_OS_VER_MAJOR':
        return /windows 1[01]/i.test(h.os ?? '') ? 10 : 0;
      case 'KLHST_WKS_OS_VER_MINOR':
        return 0;
      case 'KLHST_WKS_OS_BUILD_NUMBER':
        return /windows 11/i.test(h.os ?? '') ? 22631 : /windows 10/i.test(h.os ?? '') ? 19045 : 0;
      case 'KLWNF_OS_IS_SERVER':
        return /server/i.test(h.os ?? '');
      case 'KLHST_WKS_OWNER_NAME':
        return h.owner?.name ?? '';
      case 'KLHST_WKS_OWNER_ID':
        return h.owner?.id ?? '';
      default:
        return undefined;
    }
  }

  /** A host attribute in wire form (inside a params container). */
  private hostWire(h: EmuHost, attr: string): unknown {
    const v = this.hostAttr(h, attr);
    switch (attr) {
      case 'KLHST_WKS_IP_LONG':
      case 'KLHST_WKS_CONNECT_IP_LONG':
        return lng(typeof v === 'number' && v !== 0 ? v : undefined);
      case 'KLHST_WKS_LAST_VISIBLE':
        return dt(h.lastVisible);
      case 'KLHST_WKS_LAST_NAGENT_CONNECTED':
        return dt(h.nagentConnected);
      case 'KLHST_WKS_RTP_AV_BASES_TIME':
      case 'KLHST_WKS_LAST_UPDATE':
      case 'KLHST_WKS_LAST_FULLSCAN':
        return dt(v instanceof Date ? v : undefined);
      case 'KLHST_WKS_VIRUS_COUNT':
        return lng(typeof v === 'number' ? v : 0);
      case 'KLHST_WKS_MAC_ADDRESSES':
        return (h.macs ?? []).map((m) => ({ type: 'binary', value: Buffer.from(m.replace(/:/g, ''), 'hex').toString('base64') }));
      default:
        return v;
    }
  }

  private dispatch(method: string, b: Record<string, unknown>, user: string, session: string | undefined): Record<string, unknown> {
    const str = (k: string, optional = false): string => {
      const v = b[k];
      if (v === undefined || v === null) {
        if (optional) return '';
        throw new PxgFailure(PXG.badArg(`${k} is required`));
      }
      if (typeof v !== 'string') throw new PxgFailure(PXG.badArg(`${k} must be a string`));
      return v;
    };
    const int = (k: string, dflt?: number): number => {
      const v = b[k];
      if (v === undefined || v === null) {
        if (dflt !== undefined) return dflt;
        throw new PxgFailure(PXG.badArg(`${k} is required`));
      }
      if (typeof v !== 'number' || !Number.isInteger(v)) throw new PxgFailure(PXG.badArg(`${k} must be an integer`));
      return v;
    };
    const accessor = (k: string): Accessor => {
      const id = str(k);
      const a = this.accessors.get(id);
      if (a === undefined || a.expiresAt <= Date.now()) {
        this.accessors.delete(id);
        throw new PxgFailure(PXG.notFound(`accessor "${id}" does not exist or has expired`));
      }
      return a;
    };
    const task = (): EmuTask => {
      const id = str('strTask');
      const t = this.model.tasks.find((x) => x.id === id);
      if (t === undefined) throw new PxgFailure(PXG.notFound(`task "${id}"`));
      return t;
    };
    const host = (k: string): EmuHost => {
      const id = str(k);
      const h = this.hostById(id);
      if (h === undefined) throw new PxgFailure(PXG.notFound(`host "${id}"`));
      return h;
    };

    switch (method) {
      case 'Session.Ping':
        return {};
      case 'Session.EndSession':
        if (session !== undefined) this.sessions.delete(session);
        return {};
      case 'HostGroup.GetStaticInfo':
        return { PxgRetVal: { KLADMSRV_SERVER_VERSION_ID: '14.2.0.26967', KLADMSRV_IS_VIRTUAL: false } };

      case 'HostGroup.FindHosts': {
        const filterText = str('wstrFilter', true);
        let filter;
        try {
          filter = parseFilter(filterText);
        } catch (e) {
          if (e instanceof FilterSyntaxError) throw new PxgFailure(PXG.badArg(e.message));
          throw e;
        }
        for (const a of filterAttributes(filter)) {
          if (!HOST_FIELDS.has(a) && !SEARCH_ONLY.has(a)) throw new PxgFailure(PXG.badArg(`unknown attribute "${a}" in filter`));
        }
        const fields = b['vecFieldsToReturn'];
        if (!Array.isArray(fields) || fields.some((f) => typeof f !== 'string')) throw new PxgFailure(PXG.badArg('vecFieldsToReturn must be an array of strings'));
        for (const f of fields as string[]) {
          if (!HOST_FIELDS.has(f) || this.faults.rejectAttributes.has(f)) throw new PxgFailure(PXG.badArg(`unknown attribute "${f}" in vecFieldsToReturn`));
        }
        const order = Array.isArray(b['vecFieldsToOrder']) ? (b['vecFieldsToOrder'] as unknown[]) : [];
        const life = Math.min(int('lMaxLifeTime', 7200), 7200);
        let hosts = this.model.hosts.filter((h) => matchFilter(filter, (a) => this.hostAttr(h, a)));
        for (const o of [...order].reverse()) {
          const ov = (o as { type?: string; value?: { Name?: unknown; Asc?: unknown } })?.value;
          if ((o as { type?: string })?.type !== 'params' || typeof ov?.Name !== 'string') throw new PxgFailure(PXG.badArg('vecFieldsToOrder items must be params {Name, Asc}'));
          const name = ov.Name;
          const asc = ov.Asc !== false;
          hosts = [...hosts].sort((x, y) => {
            const a = this.hostAttr(x, name);
            const c = this.hostAttr(y, name);
            const r = String(a ?? '') < String(c ?? '') ? -1 : String(a ?? '') > String(c ?? '') ? 1 : 0;
            return asc ? r : -r;
          });
        }
        const items = hosts.map((h) => {
          const value: Record<string, unknown> = {};
          for (const f of fields as string[]) value[f] = this.hostWire(h, f);
          return { type: 'params', value };
        });
        const id = randomBytes(12).toString('hex');
        this.accessors.set(id, { items, expiresAt: Date.now() + life * 1000 });
        return { PxgRetVal: items.length, strAccessor: id };
      }
      case 'ChunkAccessor.GetItemsCount':
        return { PxgRetVal: accessor('strAccessor').items.length };
      case 'ChunkAccessor.GetItemsChunk': {
        const a = accessor('strAccessor');
        const start = int('nStart', 0);
        const count = int('nCount');
        if (start < 0 || count < 0) throw new PxgFailure(PXG.badArg('nStart and nCount must be >= 0'));
        const slice = a.items.slice(start, start + (this.faults.chunkMax > 0 ? Math.min(count, this.faults.chunkMax) : count));
        return { PxgRetVal: slice.length, pChunk: { KLCSP_ITERATOR_ARRAY: slice } };
      }
      case 'ChunkAccessor.Release':
        this.accessors.delete(str('strAccessor'));
        return {};

      case 'HostGroup.GetHostInfo': {
        const h = host('strHostName');
        if (this.faults.failHosts.has(h.id)) throw new PxgFailure(PXG.denied(`host "${h.id}" is not reachable`));
        const fields = Array.isArray(b['pFields2Return']) ? (b['pFields2Return'] as string[]) : [];
        const out: Record<string, unknown> = {};
        for (const f of fields) if (HOST_FIELDS.has(f)) out[f] = this.hostWire(h, f);
        return { PxgRetVal: out };
      }
      case 'HostGroup.GetHostProducts': {
        const h = host('strHostName');
        const out: Record<string, unknown> = {};
        for (const p of h.products) {
          const prev = (out[p.product] as { value: Record<string, unknown> } | undefined) ?? { type: 'params', value: {} as Record<string, unknown> };
          prev.value[p.version] = {
            type: 'params',
            value: {
              DisplayName: p.displayName,
              ...(p.build !== undefined ? { ProdVersion: p.build } : {}),
              InstallTime: dt(new Date('2024-01-01T00:00:00Z')),
              InstallationId: `${p.product}-${h.id.slice(0, 8)}`,
              BaseRecords: 0,
            },
          };
          out[p.product] = prev;
        }
        return { PxgRetVal: out };
      }

      case 'InventoryApi.GetHostInvProducts':
      case 'InventoryApi.GetHostInvPatches': {
        const h = host('szwHostId');
        if (this.faults.failHosts.has(h.id)) throw new PxgFailure(PXG.denied(`inventory of host "${h.id}" is not available`));
        const inv = this.inventoryOf(h);
        const list = method === 'InventoryApi.GetHostInvProducts' ? inv.software : inv.patches;
        return {
          PxgRetVal: {
            GNRL_EA_PARAM_1: list.map((p, i) => ({
              type: 'params',
              value: {
                DisplayName: p.name, DisplayVersion: p.version, Publisher: p.publisher, ProductID: `{${i.toString(16).padStart(8, '0')}-0000-0000-0000-000000000000}`,
                InstallDate: p.installDate ?? '', InstallDir: `C:\\Program Files\\${p.name}`, ARPRegKey: `${p.name}`, bIsMsi: i % 2 === 0,
              },
            })),
          },
        };
      }
      case 'SrvView.ResetIterator': {
        const view = str('wstrViewName');
        if (view !== VULN_VIEW) throw new PxgFailure(PXG.notFound(`view "${view}"`));
        let filter;
        try {
          filter = parseFilter(str('wstrFilter', true));
        } catch (e) {
          if (e instanceof FilterSyntaxError) throw new PxgFailure(PXG.badArg(e.message));
          throw e;
        }
        for (const a of filterAttributes(filter)) if (!VULN_FIELDS.has(a)) throw new PxgFailure(PXG.badArg(`unknown attribute "${a}" in filter`));
        const fields = b['vecFieldsToReturn'];
        if (!Array.isArray(fields) || fields.some((f) => typeof f !== 'string' || !VULN_FIELDS.has(f))) throw new PxgFailure(PXG.badArg('vecFieldsToReturn: unknown attribute'));
        const rows: Record<string, unknown>[] = [];
        // A filter on one host id (the usual per-device query) needs only that host.
        const one = /^\(?\s*KLHST_WKS_HOSTNAME\s*=\s*"([^"]*)"\s*\)?$/.exec(str('wstrFilter', true).trim());
        const candidates = one !== null ? [this.hostById(one[1]!)].filter((x): x is EmuHost => x !== undefined) : this.model.hosts;
        for (const h of candidates) {
          for (const [i, v] of this.inventoryOf(h).vulnerabilities.entries()) {
            const attr = (a: string): FilterValue => {
              switch (a) {
                case 'KLHST_WKS_HOSTNAME': return h.id;
                case 'VulnerabilityId': return v.id;
                case 'SeverityRating': return v.severity;
                case 'DescriptionURL': return v.url;
                case 'ProductName': return v.product;
                case 'ProductVersion': return v.productVersion ?? '';
                case 'DetectionTime': return v.detected;
                case 'nVulnId': return i + 1;
                case 'strVulnUid': return `${v.id}-${h.id.slice(0, 8)}`;
                case 'bIgnore': return v.ignored === true;
                case 'ObjPath': return `C:\\Program Files\\${v.product}`;
                default: return undefined;
              }
            };
            if (!matchFilter(filter, attr)) continue;
            if (this.faults.failHosts.has(h.id)) throw new PxgFailure(PXG.denied(`vulnerabilities of host "${h.id}" are not available`));
            const value: Record<string, unknown> = {};
            for (const f of fields as string[]) {
              const x = attr(f);
              value[f] = x instanceof Date ? dt(x) : x;
            }
            rows.push({ type: 'params', value });
          }
        }
        const id = randomBytes(8).toString('hex');
        this.viewIterators.set(id, rows);
        return { wstrIteratorId: id };
      }
      case 'SrvView.GetRecordCount': {
        const it = this.viewIterators.get(str('wstrIteratorId'));
        if (it === undefined) throw new PxgFailure(PXG.notFound('view iterator'));
        return { PxgRetVal: it.length };
      }
      case 'SrvView.GetRecordRange': {
        const it = this.viewIterators.get(str('wstrIteratorId'));
        if (it === undefined) throw new PxgFailure(PXG.notFound('view iterator'));
        const start = int('nStart', 0);
        let end = int('nEnd');
        if (start < 0 || end < start) throw new PxgFailure(PXG.badArg('need 0 <= nStart <= nEnd'));
        if (this.faults.srvViewPageMax > 0) end = Math.min(end, start + this.faults.srvViewPageMax);
        return { pRecords: { KLCSP_ITERATOR_ARRAY: it.slice(start, end) } };
      }
      case 'SrvView.ReleaseIterator':
        this.viewIterators.delete(str('wstrIteratorId'));
        return {};

      case 'Tasks.ResetTasksIterator': {
        const gid = int('nGroupId', 0);
        const significant = b['bGroupIdSignificant'] === true;
        const supers = b['bIncludeSupergroups'] === true;
        const prod = str('strProductName', true);
        const ver = str('strVersion', true);
        const name = str('strTaskName', true);
        const groups = significant ? (supers ? groupAncestry(this.model, gid) : [gid]) : undefined;
        const list = this.model.tasks.filter(
          (t) =>
            (groups === undefined || (t.groupId !== undefined && groups.includes(t.groupId))) &&
            (prod === '' || t.product === prod) &&
            (ver === '' || t.version === ver) &&
            (name === '' || t.taskType === name),
        );
        const id = randomBytes(8).toString('hex');
        this.taskIterators.set(id, [...list]);
        return { strTaskIteratorId: id };
      }
      case 'Tasks.GetNextTask': {
        const id = str('strTaskIteratorId');
        const it = this.taskIterators.get(id);
        if (it === undefined) throw new PxgFailure(PXG.notFound(`task iterator "${id}"`));
        const t = it.shift();
        return t === undefined ? {} : { pTaskData: this.taskData(t) };
      }
      case 'Tasks.ReleaseTasksIterator':
        this.taskIterators.delete(str('strTaskIteratorId'));
        return {};
      case 'Tasks.GetTask': {
        const t = task();
        return {
          PxgRetVal: {
            DisplayName: t.displayName, TASK_NAME: t.taskType, TASK_UNIQUE_ID: t.id, TASKID_PRODUCT_NAME: t.product, TASKID_VERSION: t.version,
            PRTS_TASK_CREATION_DATE: dt(new Date('2024-01-01T00:00:00Z')),
          },
        };
      }
      case 'Tasks.GetTaskData':
        return { PxgRetVal: this.taskData(task()) };
      case 'Tasks.GetAllTasksOfHost': {
        str('strDomainName', true);
        const h = host('strHostName');
        const ids = this.model.tasks.filter((t) => taskScope(this.model, t).some((x) => x.id === h.id)).map((t) => t.id);
        return { PxgRetVal: ids };
      }
      case 'Tasks.RunTask': {
        const t = task();
        const u = this.model.users.find((x) => x.user === user);
        if (u?.readOnly === true) throw new PxgFailure(PXG.denied(`user "${user}" may not modify tasks`));
        const scope = taskScope(this.model, t);
        this.runs.push({ taskId: t.id, hostIds: scope.map((h) => h.id), user });
        for (const h of scope) {
          if (!h.products.some((p) => p.product === t.product)) continue;
          this.runStates.set(`${t.id}/${h.id}`, { taskId: t.id, hostId: h.id, state: 0 });
          this.scheduleTaskEvents(t, h);
        }
        return {};
      }
      case 'Tasks.GetTaskStatistics': {
        const t = task();
        const stats: Record<string, number> = { '1': 0, '2': 0, '4': 0, '8': 0, '16': 0, '32': 0, '64': 0 };
        const scope = taskScope(this.model, t);
        let done = 0;
        for (const h of scope) {
          const s = this.runStates.get(`${t.id}/${h.id}`)?.state;
          const bit = s === undefined ? '1' : s === 4 ? '4' : s === 3 || s === 5 ? '16' : s === 2 ? '64' : '2';
          if (bit === '4' || bit === '16') done++;
          stats[bit]!++;
        }
        return { PxgRetVal: { ...stats, GNRL_COMPLETED_PERCENT: scope.length === 0 ? 0 : Math.round((done * 100) / scope.length), KLTSK_NEED_RBT_CNT: 0 } };
      }
      default:
        throw new PxgFailure(PXG.noMethod(method));
    }
  }

  /** A host's inventory: KSC has software and vulnerability data for Windows devices only (OPEN-API.md §6). */
  private inventoryOf(h: EmuHost): { software: EmuSoftware[]; patches: EmuSoftware[]; vulnerabilities: EmuVulnerability[] } {
    if (!/windows/i.test(h.os ?? '')) return { software: [], patches: [], vulnerabilities: [] };
    if (this.model.inventory !== undefined) return this.model.inventory(h);
    return { software: h.software ?? [], patches: h.patches ?? [], vulnerabilities: h.vulnerabilities ?? [] };
  }

  private hostIndex: { arr: EmuHost[]; len: number; map: Map<string, EmuHost> } | undefined;

  /** A host by KLHST_WKS_HOSTNAME, through an index rebuilt when the model's host list changed. */
  private hostById(id: string): EmuHost | undefined {
    const hosts = this.model.hosts;
    let ix = this.hostIndex;
    if (ix === undefined || ix.arr !== hosts || ix.len !== hosts.length) {
      ix = { arr: hosts, len: hosts.length, map: new Map(hosts.map((h) => [h.id, h])) };
      this.hostIndex = ix;
    }
    const h = ix.map.get(id);
    if (h !== undefined && h.id === id) return h;
    // Not found, or an id changed in place: look at the list itself.
    this.hostIndex = undefined;
    return hosts.find((x) => x.id === id);
  }

  /** SrvView iterators not released. */
  openViewIterators(): number {
    return this.viewIterators.size;
  }

  private taskData(t: EmuTask): Record<string, unknown> {
    return {
      TASK_UNIQUE_ID: t.id,
      TASK_NAME: t.taskType,
      TASKID_PRODUCT_NAME: t.product,
      TASKID_VERSION: t.version,
      TASKID_COMPONENT_NAME: t.component ?? '',
      TASKSCH_TYPE: 0,
      TASK_INFO_PARAMS: {
        type: 'params',
        value: {
          DisplayName: t.displayName,
          PRTS_TASK_GROUPID: t.groupId ?? -1,
          PRTS_TASK_CREATION_DATE: dt(new Date('2024-01-01T00:00:00Z')),
          ...(t.hostIds !== undefined ? { HostList: t.hostIds.map((id) => ({ type: 'params', value: { KLHST_WKS_HOSTNAME: id } })) } : {}),
        },
      },
    };
  }

  private scheduleTaskEvents(t: EmuTask, h: EmuHost): void {
    const o = this.taskEvents;
    const key = `${t.id}/${h.id}`;
    const group = this.model.groups.find((g) => g.id === h.groupId)?.name ?? '';
    const product = h.products.find((p) => p.product === t.product);
    const line = (oldState: number, newState: number): string =>
      taskStateCef({
        time: new Date(),
        groupName: group,
        host: h.displayName,
        ...(h.ip !== undefined ? { ip: h.ip } : {}),
        product: t.product,
        version: product?.version ?? t.version,
        taskName: t.displayName,
        taskId: t.id,
        oldState,
        newState,
      });
    const deliver = async (l: string): Promise<void> => {
      this.sentEvents.push(l);
      if (o.target === undefined) return;
      this.sender ??= new CefTcpSender(o.target.host, o.target.port);
      await this.sender.send(l).catch(() => undefined);
    };
    const p = (async () => {
      await this.sleep(o.runningAfterMs ?? 20);
      const st = this.runStates.get(key);
      if (st === undefined) return;
      st.state = 1;
      await deliver(line(0, 1));
      await this.sleep(o.finishAfterMs ?? 50);
      const fin = o.outcome?.(t, h) ?? 4;
      st.state = fin;
      await deliver(line(1, fin));
    })();
    this.eventQueue.push(p);
  }
}

/** Starts an emulator on an ephemeral port of 127.0.0.1. */
export async function startKscEmulator(o: EmulatorOptions = {}): Promise<KscEmulator> {
  return new KscEmulator(o).listen();
}
