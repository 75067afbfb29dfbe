/**
 * Typed errors of the KSC integration. Each says what failed (which server, which call) and
 * carries a stable `code`. None ever contains a password, a session token or an
 * Authorization header: messages are built from method names, URLs and server-supplied
 * error text only, and every message goes through `redact()` as a last guard.
 */
import { redact } from './secrets.js';

export type KscErrorCode =
  | 'ksc_auth_failed'
  | 'ksc_session_rejected'
  | 'ksc_pxg_error'
  | 'ksc_http_error'
  | 'ksc_transport_error'
  | 'ksc_timeout'
  | 'ksc_tls_error'
  | 'ksc_protocol_error'
  | 'ksc_invalid_input'
  | 'ksc_not_found'
  | 'ksc_conflict'
  | 'ksc_disabled'
  | 'ksc_no_secret'
  | 'ksc_secret_required'
  | 'ksc_task_not_applicable'
  | 'ksc_task_running'
  | 'ksc_task_cooldown'
  | 'ksc_task_duplicate'
  | 'ksc_not_owner';

export interface KscErrorContext {
  /** `host:port` of the KSC server. */
  server?: string;
  /** Open API method (`HostGroup.FindHosts`) or `login`. */
  method?: string;
}

export class KscError extends Error {
  readonly code: KscErrorCode;
  readonly server: string | undefined;
  readonly method: string | undefined;
  /** True when retrying the same call later may succeed. */
  readonly transient: boolean;
  constructor(code: KscErrorCode, message: string, ctx: KscErrorContext = {}, transient = false, cause?: unknown) {
    const where = [ctx.server !== undefined ? `KSC ${ctx.server}` : undefined, ctx.method].filter((x) => x !== undefined).join(' ');
    super(redact(where.length > 0 ? `${where}: ${message}` : message), cause !== undefined ? { cause } : undefined);
    this.name = new.target.name;
    this.code = code;
    this.server = ctx.server;
    this.method = ctx.method;
    this.transient = transient;
  }
  /** A JSON view for APIs and logs (no stack, no cause). */
  toJSON(): Record<string, unknown> {
    return { error: this.name, code: this.code, message: this.message, server: this.server, method: this.method };
  }
}

/** Login refused (HTTP 401/403 on login or StartSession): wrong user name or password, or 2FA required. */
export class KscAuthError extends KscError {
  readonly status: number;
  constructor(status: number, detail: string, ctx: KscErrorContext) {
    super('ksc_auth_failed', `login refused (HTTP ${status})${detail ? `: ${detail}` : ''}; check the connection's user name and password`, ctx);
    this.status = status;
  }
}

/** A call was refused with 401/403 even right after a fresh login (missing rights, or the server drops sessions). */
export class KscSessionError extends KscError {
  readonly status: number;
  constructor(status: number, ctx: KscErrorContext) {
    super('ksc_session_rejected', `call refused with HTTP ${status} after a fresh login (the KSC user may lack the rights for this call)`, ctx);
    this.status = status;
  }
}

/** The server answered with a `PxgError` (docs/reference/ksc-open-api.md §0.2): a method-level error. Never retried. */
export class KscPxgError extends KscError {
  readonly pxgCode: number;
  readonly subcode: number | undefined;
  readonly module: string | undefined;
  readonly pxgMessage: string;
  readonly httpStatus: number;
  constructor(e: { code: number; subcode?: number; module?: string; message: string }, httpStatus: number, ctx: KscErrorContext) {
    super('ksc_pxg_error', `PxgError ${e.code}${e.module ? ` (${e.module})` : ''}: ${e.message}`, ctx);
    this.pxgCode = e.code;
    this.subcode = e.subcode;
    this.module = e.module;
    this.pxgMessage = e.message;
    this.httpStatus = httpStatus;
  }
  override toJSON(): Record<string, unknown> {
    return { ...super.toJSON(), pxgCode: this.pxgCode, pxgMessage: redact(this.pxgMessage) };
  }
}

/** A non-200 HTTP status that is not an auth refusal: 5xx are transient (retried), others are not. */
export class KscHttpError extends KscError {
  readonly status: number;
  constructor(status: number, body: string, ctx: KscErrorContext) {
    // Redacted before the cut: a secret across the 200th character would leave its start.
    const text = redact(body.replace(/\s+/g, ' ').trim()).slice(0, 200);
    super('ksc_http_error', `HTTP ${status}${text ? `: ${text}` : ''}`, ctx, status >= 500);
    this.status = status;
  }
}

/**
 * The TCP connection could not be made or broke (refused, reset, DNS), or no connection was
 * free for the request within the timeout (it waited behind an earlier call). Transient.
 */
export class KscTransportError extends KscError {
  readonly errno: string | undefined;
  /** True when the request cannot have reached the server (connect failed, or it was never written to a socket). */
  readonly beforeSend: boolean;
  constructor(detail: string, errno: string | undefined, beforeSend: boolean, ctx: KscErrorContext, cause?: unknown) {
    super('ksc_transport_error', `connection failed${errno ? ` (${errno})` : ''}: ${detail}`, ctx, true, cause);
    this.errno = errno;
    this.beforeSend = beforeSend;
  }
}

/**
 * No answer within the per-request timeout to a request that was sent: KSC may have acted on
 * it. (A request that timed out before it was sent is a `KscTransportError` with `beforeSend`.)
 * Transient.
 */
export class KscTimeoutError extends KscError {
  readonly timeoutMs: number;
  constructor(timeoutMs: number, ctx: KscErrorContext) {
    super('ksc_timeout', `no answer within ${timeoutMs} ms`, ctx, true);
    this.timeoutMs = timeoutMs;
  }
}

/** The server's certificate was not trusted: CA verification failed or the SHA-256 pin did not match. Never retried. */
export class KscTlsError extends KscError {
  constructor(detail: string, ctx: KscErrorContext, cause?: unknown) {
    super('ksc_tls_error', `TLS: ${detail}`, ctx, false, cause);
  }
}

/** The answer was not the JSON the Open API promises. */
export class KscProtocolError extends KscError {
  constructor(detail: string, ctx: KscErrorContext) {
    super('ksc_protocol_error', `unexpected answer: ${detail}`, ctx);
  }
}

/** Bad input to the library (a connection name, a URL, a task list). */
export class KscInputError extends KscError {
  readonly field: string;
  constructor(field: string, message: string) {
    super('ksc_invalid_input', message);
    this.field = field;
  }
}

export class KscNotFoundError extends KscError {
  constructor(what: string) {
    super('ksc_not_found', what);
  }
}

export class KscConflictError extends KscError {
  constructor(what: string) {
    super('ksc_conflict', what);
  }
}

/** Raised by task starts and syncs that cannot run for a reason that is not an error of KSC. */
export class KscRefusedError extends KscError {
  constructor(code: 'ksc_disabled' | 'ksc_no_secret' | 'ksc_secret_required' | 'ksc_task_not_applicable' | 'ksc_task_running' | 'ksc_task_cooldown' | 'ksc_task_duplicate' | 'ksc_not_owner', message: string, ctx: KscErrorContext = {}) {
    super(code, message, ctx);
  }
}

/** HTTP status a console API should answer for an error code. */
export function httpStatusOf(e: unknown): number {
  if (!(e instanceof KscError)) return 500;
  switch (e.code) {
    case 'ksc_invalid_input':
      return 400;
    case 'ksc_not_found':
      return 404;
    case 'ksc_conflict':
    case 'ksc_disabled':
    case 'ksc_no_secret':
    case 'ksc_secret_required':
    case 'ksc_task_not_applicable':
    case 'ksc_task_running':
    case 'ksc_task_cooldown':
    case 'ksc_task_duplicate':
    case 'ksc_not_owner':
      return 409;
    case 'ksc_timeout':
      return 504;
    default:
      return 502;
  }
}
