/**
 * The KSC admin HTTP API: the generic JSON server (src/admin/http.ts) with the KSC
 * endpoints (admin-api.ts), KSC errors mapped to their HTTP status, and every answer body
 * passed through `redact()` (secrets registered by the KSC code never leave the process).
 */
import { JsonServer, type JsonServerOptions, type Reply, type Route } from '../admin/http.js';
import { adminRoutes, type AdminBackend } from './admin-api.js';
import { KscError, httpStatusOf } from './errors.js';
import { redact, type KscLogger } from './secrets.js';

export { JsonServer, ApiError, type Route, type Reply, type RequestContext, type JsonServerOptions } from '../admin/http.js';
export { adminRoutes, type AdminBackend, type RuleView } from './admin-api.js';

export interface AdminServerOptions {
  token: string;
  maxBodyBytes: number;
  requestTimeoutMs: number;
  logger?: KscLogger;
  onResponse?: (status: number, method: string, route: string) => void;
  tls?: JsonServerOptions['tls'];
  before?: JsonServerOptions['before'];
  altAuth?: JsonServerOptions['altAuth'];
  audit?: JsonServerOptions['audit'];
  authLimit?: JsonServerOptions['authLimit'];
  /** More routes behind the same authentication (the console's JSON). */
  extraRoutes?: Route[];
}

/** A KscError as an answer: its status, code, message and (when it names one) field. */
export function kscErrorReply(e: unknown): Reply | undefined {
  if (!(e instanceof KscError)) return undefined;
  return { status: httpStatusOf(e), body: { error: { code: e.code, message: e.message, ...('field' in e ? { field: (e as { field: string }).field } : {}) } } };
}

/** The admin API server for a backend; call `listen(host, port)`, then `close()`. */
export function createAdminServer(backend: AdminBackend, o: AdminServerOptions): JsonServer {
  const { extraRoutes, ...rest } = o;
  return new JsonServer({ routes: [...adminRoutes(backend), ...(extraRoutes ?? [])], mapError: kscErrorReply, redact, ...rest });
}
