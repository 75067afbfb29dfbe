/** The admin HTTP API: a JSON server (http.ts) with the KSC endpoints (../ksc/admin-api.ts). */
import { JsonServer } from './http.js';
import { adminRoutes, type AdminBackend } from '../ksc/admin-api.js';
import type { KscLogger } from '../ksc/secrets.js';

export { JsonServer, ApiError, type Route, type Reply, type RequestContext, type JsonServerOptions } from './http.js';
export { adminRoutes, type AdminBackend, type RuleView } from '../ksc/admin-api.js';

export interface AdminServerOptions {
  token: string;
  maxBodyBytes: number;
  requestTimeoutMs: number;
  logger?: KscLogger;
  onResponse?: (status: number, method: string, route: string) => void;
}

/** The admin API server for a backend; call `listen(host, port)`, then `close()`. */
export function createAdminServer(backend: AdminBackend, o: AdminServerOptions): JsonServer {
  return new JsonServer({ routes: adminRoutes(backend), ...o });
}
