/**
 * An emulator of the Elasticsearch / OpenSearch `_bulk` API, for the elasticsearch output's
 * tests and benchmark. No Elasticsearch or OpenSearch server can be installed here (neither
 * is in Debian or npm), so this is written from their public API documentation:
 * - Elastic: "Bulk API" (NDJSON action and source lines, the body must end with a newline,
 *   `create` fails with 409 `version_conflict_engine_exception` when the id exists, `index`
 *   overwrites, per-item `status` and `error`, top-level `errors`, items in request order),
 *   "Data streams" (only `create` is allowed, `@timestamp` is required; the item names the
 *   backing index `.ds-<name>-<date>-000001`), "Dynamic mapping" (the first value of a field
 *   fixes its type; a later value that cannot be coerced is a per-item 400
 *   `document_parsing_exception`, `mapper_parsing_exception` before 8.8 and in OpenSearch),
 *   "Common options / API conventions" (index names lower case, no `\ / * ? " < > | , #`
 *   or space, not starting with `-_+`: `invalid_index_name_exception`), "Network settings"
 *   (`http.max_content_length`: 413 with no body), "Security" (401 with
 *   `WWW-Authenticate` and a `security_exception` body; `Authorization: Basic`, `ApiKey`,
 *   `Bearer`; a user without the index privilege: a per-item 403 `security_exception`
 *   "action [indices:data/write/bulk[s]] is unauthorized for user ..."), "Ingest pipelines"
 *   (`?pipeline=` naming no pipeline: a per-item 400 `illegal_argument_exception`
 *   "pipeline with id [x] does not exist"), "Index management settings"
 *   (`action.auto_create_index: false`: a write to an index that does not exist is a
 *   per-item 404 `index_not_found_exception` "no such index [x] and
 *   [action.auto_create_index] is [false]" (unless a template's `allow_auto_create` says
 *   otherwise, not emulated); the data streams of `dataStreams` exist and take writes),
 *   "Close index API" (a write to a closed index: per-item 400
 *   `index_closed_exception` "closed"), "Aliases" (writing through an alias goes to its
 *   write index; an alias on several indices with none `is_write_index`: per-item 400
 *   `illegal_argument_exception` "no write index is defined for alias [x]. ..."),
 *   "Thread pools" (a full write queue: per-item 429
 *   `es_rejected_execution_exception`; OpenSearch names it `rejected_execution_exception`),
 *   gzip request bodies (`Content-Encoding: gzip`), `X-Elastic-Product: Elasticsearch`.
 * - Faults a test injects: per-item rejections for load, whole-request statuses (429 with
 *   `Retry-After`, 503), a slow answer, going down and coming back on the same port, and a
 *   connection dropped after the cluster indexed the request (the answer is lost).
 */
import http from 'node:http';
import { gunzipSync } from 'node:zlib';
import { EmulatedServer } from './emulated-server.js';

export interface EsEmulatorOptions {
  flavor?: 'elasticsearch' | 'opensearch';
  /** TLS key and certificate (PEM): serve https. */
  tls?: { key: Buffer | string; cert: Buffer | string };
  /** Accepted credentials; none set: no security (every request allowed). */
  users?: Record<string, string>;
  apiKeys?: string[];
  bearerTokens?: string[];
  /** `http.max_content_length` in bytes (after decompression). Default 100 MiB. */
  maxContentLength?: number;
  /** Names that are data streams (an index template with `data_stream` matches them). */
  dataStreams?: string[];
  /** Per user (basic auth): the index patterns (`cefd-*`) the user may write; a user not listed may write any. */
  indexPrivileges?: Record<string, string[]>;
  /** Ingest pipelines that exist (`?pipeline=` naming another: per-item 400). */
  pipelines?: string[];
  /** `action.auto_create_index` (default true); false: only indices that exist take writes (createIndex). */
  autoCreateIndex?: boolean;
  /** Explicit mappings: `field.path` -> `long` | `boolean` | `keyword` | `date` | `object`. */
  mappings?: Record<string, Record<string, FieldType>>;
  port?: number;
}

export type FieldType = 'long' | 'double' | 'boolean' | 'keyword' | 'date' | 'object';

export interface StoredDoc {
  index: string;
  id: string;
  source: Record<string, unknown>;
}

/** What a test injects for the items of the next requests. */
export type ItemFault = (source: string, id: string | undefined) => { status: number; type: string; reason: string } | undefined;

export interface RequestFault {
  status: number;
  headers?: Record<string, string>;
  body?: string;
  /** Index the request first, then drop the connection without answering. */
  dropAfterIndexing?: boolean;
}

export class EsEmulator extends EmulatedServer {
  readonly flavor: 'elasticsearch' | 'opensearch';
  /** index -> id -> document */
  readonly indices = new Map<string, Map<string, Record<string, unknown>>>();
  private readonly mappings = new Map<string, Map<string, FieldType>>();
  /** Every `_bulk` request that reached the handler (after auth), with its item count. */
  readonly requests: { items: number; bytes: number; gzip: boolean; path: string; headers: http.IncomingHttpHeaders }[] = [];
  /** Requests refused for credentials. */
  authFailures = 0;
  /** Answers to give to the next requests, in order (before indexing). */
  readonly requestFaults: RequestFault[] = [];
  itemFault: ItemFault | undefined;
  /** Wait before each answer (a slow cluster). */
  delayMs = 0;
  private seq = 0;
  private autoId = 0;
  /** Ingest pipelines that exist; a test adds one as PUT _ingest/pipeline/<id> would. */
  readonly pipelines: Set<string>;
  /** user -> index patterns it may write (a test grants more as a role change would). */
  readonly indexPrivileges: Map<string, string[]>;
  /** `action.auto_create_index`; a test changes it as `PUT _cluster/settings` would. */
  autoCreateIndex: boolean;
  /** Closed indices (`POST <index>/_close`; a test deletes one as `_open` would). */
  readonly closed = new Set<string>();
  /** alias -> its write index, null for none (several indices, none `is_write_index`); as `POST _aliases` would set. */
  readonly aliases = new Map<string, string | null>();

  constructor(private readonly opts: EsEmulatorOptions = {}) {
    super(opts);
    this.flavor = opts.flavor ?? 'elasticsearch';
    this.pipelines = new Set(opts.pipelines ?? []);
    this.indexPrivileges = new Map(Object.entries(opts.indexPrivileges ?? {}));
    this.autoCreateIndex = opts.autoCreateIndex ?? true;
    for (const [index, fields] of Object.entries(opts.mappings ?? {})) this.mappings.set(index, new Map(Object.entries(fields)));
  }


  /** An empty index, as `PUT <index>` would make it. */
  createIndex(index: string): void {
    if (!this.indices.has(index)) this.indices.set(index, new Map());
  }

  /** Every stored document, all indices. */
  docs(): StoredDoc[] {
    const out: StoredDoc[] = [];
    for (const [index, m] of this.indices) for (const [id, source] of m) out.push({ index, id, source });
    return out;
  }


  private authorized(h: http.IncomingHttpHeaders): { ok: true; user?: string } | { ok: false; user: string } {
    const o = this.opts;
    if (o.users === undefined && o.apiKeys === undefined && o.bearerTokens === undefined) return { ok: true };
    const a = h['authorization'] ?? '';
    const [scheme, value = ''] = a.split(' ', 2) as [string, string?];
    if (/^basic$/i.test(scheme)) {
      const [u, ...p] = Buffer.from(value, 'base64').toString('utf8').split(':');
      if (u !== undefined && o.users?.[u] !== undefined && o.users[u] === p.join(':')) return { ok: true, user: u };
      return { ok: false, user: u ?? '' };
    }
    if (scheme === 'ApiKey' && o.apiKeys?.includes(value)) return { ok: true };
    if (scheme === 'Bearer' && o.bearerTokens?.includes(value)) return { ok: true };
    return { ok: false, user: '' };
  }

  private send(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    const text = body === undefined ? '' : JSON.stringify(body);
    const h: Record<string, string> = { 'content-type': 'application/json; charset=UTF-8', ...headers };
    if (this.flavor === 'elasticsearch') h['x-elastic-product'] = 'Elasticsearch';
    res.writeHead(status, h);
    res.end(text);
  }

  private requestError(type: string, reason: string, status: number): unknown {
    return { error: { root_cause: [{ type, reason }], type, reason }, status };
  }

  protected async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    let size = 0;
    const max = this.opts.maxContentLength ?? 100 * 1024 * 1024;
    let tooLarge = false;
    for await (const c of req as AsyncIterable<Buffer>) {
      size += c.length;
      if (size <= max * 2) chunks.push(c);
      else tooLarge = true;
    }
    if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
    const auth = this.authorized(req.headers);
    if (!auth.ok) {
      this.authFailures++;
      const reason = auth.user !== '' ? `unable to authenticate user [${auth.user}] for REST request [${req.url}]` : `missing authentication credentials for REST request [${req.url}]`;
      this.send(res, 401, this.requestError('security_exception', reason, 401), { 'www-authenticate': 'Basic realm="security" charset="UTF-8", ApiKey' });
      return;
    }
    const path = (req.url ?? '/').split('?')[0]!;
    const pipeline = new URL(req.url ?? '/', 'http://x').searchParams.get('pipeline');
    const user = auth.user;
    const m = /^\/(?:([^/_][^/]*)\/)?_bulk$/.exec(path);
    if (req.method !== 'POST' && req.method !== 'PUT') {
      this.send(res, 405, this.requestError('method_not_allowed', `Incorrect HTTP method for uri [${req.url}] and method [${req.method}]`, 405));
      return;
    }
    if (m === null) {
      this.send(res, 404, this.requestError('index_not_found_exception', `no such index [${path}]`, 404));
      return;
    }
    let body = Buffer.concat(chunks);
    const gzip = /gzip/i.test(String(req.headers['content-encoding'] ?? ''));
    if (gzip) {
      try {
        body = gunzipSync(body);
      } catch {
        this.send(res, 400, this.requestError('parse_exception', 'request body is not valid gzip', 400));
        return;
      }
    }
    if (tooLarge || body.length > max) {
      res.writeHead(413, {}); // ES answers an over-long body with 413 and no content
      res.end();
      return;
    }
    const ct = String(req.headers['content-type'] ?? '');
    if (!/^application\/(x-ndjson|json)/.test(ct) && !/^application\/vnd\.elasticsearch\+x-ndjson/.test(ct)) {
      this.send(res, 406, { error: `Content-Type header [${ct}] is not supported`, status: 406 });
      return;
    }
    const fault = this.requestFaults.shift();
    if (fault !== undefined && !fault.dropAfterIndexing) {
      res.writeHead(fault.status, { 'content-type': 'application/json', ...(fault.headers ?? {}) });
      res.end(fault.body ?? JSON.stringify(this.requestError(fault.status === 429 ? 'es_rejected_execution_exception' : 'cluster_block_exception', 'injected', fault.status)));
      return;
    }
    const text = body.toString('utf8');
    if (text.length > 0 && !text.endsWith('\n')) {
      this.send(res, 400, this.requestError('illegal_argument_exception', 'The bulk request must be terminated by a newline [\\n]', 400));
      return;
    }
    const lines = text.split('\n');
    lines.pop();
    const items: unknown[] = [];
    let errors = false;
    for (let i = 0; i < lines.length; i++) {
      let action: Record<string, { _index?: string; _id?: string }>;
      try {
        action = JSON.parse(lines[i]!) as typeof action;
      } catch {
        this.send(res, 400, this.requestError('x_content_parse_exception', `[1:1] Malformed action/metadata line [${i + 1}]`, 400));
        return;
      }
      const op = Object.keys(action)[0] ?? '';
      const meta = action[op] ?? {};
      if (!['create', 'index'].includes(op)) {
        this.send(res, 400, this.requestError('illegal_argument_exception', `Malformed action/metadata line [${i + 1}], expected one of [create, delete, index, update] but found [${op}]`, 400));
        return;
      }
      const source = lines[++i];
      if (source === undefined) {
        this.send(res, 400, this.requestError('illegal_argument_exception', 'The bulk request must be terminated by a newline [\\n]', 400));
        return;
      }
      const item = this.item(op, meta._index ?? m[1] ?? '', meta._id, source, user, pipeline);
      if ((item as { status: number }).status >= 300) errors = true;
      items.push({ [op]: item });
    }
    this.requests.push({ items: items.length, bytes: body.length, gzip, path: req.url ?? '', headers: req.headers });
    if (fault?.dropAfterIndexing) {
      req.socket.destroy();
      return;
    }
    this.send(res, 200, { took: 1, errors, items });
  }

  private item(op: string, index: string, id: string | undefined, source: string, user?: string, pipeline?: string | null): Record<string, unknown> {
    const fail = (status: number, type: string, reason: string, idx = index) => ({
      _index: idx,
      _id: id ?? null,
      status,
      error: { type, reason, index_uuid: 'emulated', shard: '0', index: idx },
    });
    if (index === '' || index !== index.toLowerCase() || /[\\/*?"<>| ,#]/.test(index) || /^[-_+]/.test(index)) {
      return fail(400, 'invalid_index_name_exception', `Invalid index name [${index}], must be lowercase and must not contain the following characters [ , ", *, \\, <, |, ,, >, /, ?]`);
    }
    const allowed = user === undefined ? undefined : this.indexPrivileges.get(user);
    if (allowed !== undefined && !allowed.some((p) => (p.endsWith('*') ? index.startsWith(p.slice(0, -1)) : index === p))) {
      return fail(403, 'security_exception', `action [indices:data/write/bulk[s]] is unauthorized for user [${user}] with effective roles [cefd_writer] on indices [${index}], this action is granted by the index privileges [create_doc,create,index,write,all]`);
    }
    if (pipeline !== undefined && pipeline !== null && !this.pipelines.has(pipeline)) return fail(400, 'illegal_argument_exception', `pipeline with id [${pipeline}] does not exist`);
    if (this.aliases.has(index)) {
      const write = this.aliases.get(index) ?? null;
      if (write === null) {
        return fail(400, 'illegal_argument_exception', `no write index is defined for alias [${index}]. The write index may be explicitly disabled using is_write_index=false or the alias points to multiple indices without one being designated as a write index`);
      }
      index = write;
    }
    if (!this.autoCreateIndex && !this.indices.has(index) && this.opts.dataStreams?.includes(index) !== true) {
      const reason = `no such index [${index}] and [action.auto_create_index] is [false]`;
      return { _index: index, _id: id ?? null, status: 404, error: { type: 'index_not_found_exception', reason, 'resource.type': 'index_expression', 'resource.id': index, index_uuid: '_na_', index } };
    }
    if (this.closed.has(index)) return fail(400, 'index_closed_exception', 'closed');
    const injected = this.itemFault?.(source, id);
    if (injected !== undefined) return fail(injected.status, injected.type === 'es_rejected_execution_exception' && this.flavor === 'opensearch' ? 'rejected_execution_exception' : injected.type, injected.reason);
    const parseType = this.flavor === 'elasticsearch' ? 'document_parsing_exception' : 'mapper_parsing_exception';
    let doc: unknown;
    try {
      doc = JSON.parse(source);
    } catch {
      return fail(400, parseType, '[1:1] failed to parse: source is not valid JSON');
    }
    if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) return fail(400, parseType, '[1:1] failed to parse: the document is not a JSON object');
    let target = index;
    const stream = this.opts.dataStreams?.includes(index) === true;
    if (stream) {
      if (op !== 'create') return fail(400, 'illegal_argument_exception', `only write ops with an op_type of create are allowed in data streams`);
      const ts = (doc as Record<string, unknown>)['@timestamp'];
      if (ts === undefined) return fail(400, parseType, `[1:1] failed to parse: data stream timestamp field [@timestamp] is missing`);
      target = `.ds-${index}-${new Date().toISOString().slice(0, 10).replace(/-/g, '.')}-000001`;
    }
    const mapErr = this.map(target, doc as Record<string, unknown>, '', id ?? '');
    if (mapErr !== undefined) return fail(400, parseType, mapErr, target);
    let docs = this.indices.get(target);
    if (docs === undefined) this.indices.set(target, (docs = new Map()));
    const docId = id ?? `emu${(++this.autoId).toString(36).padStart(12, '0')}`;
    if (docs.has(docId) && op === 'create') {
      return fail(409, 'version_conflict_engine_exception', `[${docId}]: version conflict, document already exists (current version [1])`, target);
    }
    const existed = docs.has(docId);
    docs.set(docId, doc as Record<string, unknown>);
    return {
      _index: target,
      _id: docId,
      _version: 1,
      result: existed ? 'updated' : 'created',
      _shards: { total: 2, successful: 1, failed: 0 },
      _seq_no: this.seq++,
      _primary_term: 1,
      status: existed ? 200 : 201,
    };
  }

  /** Dynamic mapping: the first value fixes a field's type; returns the parse error of a value that does not fit. */
  private map(index: string, doc: Record<string, unknown>, prefix: string, id: string): string | undefined {
    let m = this.mappings.get(index);
    if (m === undefined) this.mappings.set(index, (m = new Map()));
    const typeOf = (v: unknown): FieldType => {
      if (typeof v === 'boolean') return 'boolean';
      if (typeof v === 'number') return Number.isInteger(v) ? 'long' : 'double';
      if (typeof v === 'string') return /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}/.test(v) ? 'date' : 'keyword';
      return 'object';
    };
    for (const [k, raw] of Object.entries(doc)) {
      const path = prefix + k;
      const values = Array.isArray(raw) ? raw : [raw];
      for (const v of values) {
        if (v === null) continue;
        const have = m.get(path);
        const got = typeOf(v);
        if (have === undefined) {
          m.set(path, got);
        } else if (have === 'object' && got !== 'object') {
          return `[1:1] failed to parse: tried to parse field [${path}] as object, but found a concrete value`;
        } else if (have !== 'object' && got === 'object') {
          return `[1:1] failed to parse field [${path}] of type [${have}] in document with id '${id}'. Preview of field's value: '${JSON.stringify(v).slice(0, 40)}'`;
        } else if ((have === 'long' || have === 'double') && got !== 'long' && got !== 'double' && !(typeof v === 'string' && v.trim() !== '' && Number.isFinite(Number(v)))) {
          return `[1:1] failed to parse field [${path}] of type [${have}] in document with id '${id}'. Preview of field's value: '${String(v).slice(0, 40)}'`;
        } else if (have === 'date' && typeof v === 'string' && Number.isNaN(Date.parse(v))) {
          return `[1:1] failed to parse field [${path}] of type [date] in document with id '${id}'. Preview of field's value: '${v.slice(0, 40)}'`;
        } else if (have === 'boolean' && typeof v !== 'boolean' && v !== 'true' && v !== 'false') {
          return `[1:1] failed to parse field [${path}] of type [boolean] in document with id '${id}'. Preview of field's value: '${String(v).slice(0, 40)}'`;
        }
        if (got === 'object') {
          const e = this.map(index, v as Record<string, unknown>, `${path}.`, id);
          if (e !== undefined) return e;
        }
      }
    }
    return undefined;
  }
}
