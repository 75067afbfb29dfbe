/**
 * The NATS connection the `nats` output and the `nats` source share: servers, TLS,
 * credentials read from files (a `.creds` file, an NKey seed, a token, or a user and
 * password), and a connect loop.
 *
 * The official client (`nats` on npm) reconnects by itself once it has connected; its
 * first connect, though, fails at once when no server answers or the credentials are
 * refused. cefd must start while the NATS cluster is down (events wait in the output's
 * buffer), so the first connect is retried here with a capped backoff, the last error is
 * kept for the caller's messages, and a connection the client closed for good (it gave
 * up, or the server refused our credentials on a reconnect) starts the loop again.
 */
import {
  connect,
  credsAuthenticator,
  nkeyAuthenticator,
  tokenAuthenticator,
  usernamePasswordAuthenticator,
  type Authenticator,
  type ConnectionOptions,
  type NatsConnection,
} from 'nats';
import type { NatsConnectionConfig } from './config.js';
import { MAX_PEM_FILE_BYTES, MAX_SECRET_FILE_BYTES, readBoundedFile, readSecretFile } from '../config/read-file.js';

export type { NatsConnectionConfig } from './config.js';

/**
 * The client's options for `c`: the credential files are read now (a missing file throws),
 * the way `cefd validate` checks them (src/nats/config.ts): a token, password or NKey seed
 * without the whitespace at its ends (readSecretFile), a `.creds` file as it is (the
 * client's parser needs the newline after its last line).
 */
export function natsOptions(c: NatsConnectionConfig, name: string): ConnectionOptions {
  let authenticator: Authenticator | undefined;
  if (c.creds_file !== undefined) authenticator = credsAuthenticator(new TextEncoder().encode(readBoundedFile(c.creds_file, MAX_SECRET_FILE_BYTES)));
  else if (c.nkey_seed_file !== undefined) authenticator = nkeyAuthenticator(new TextEncoder().encode(readSecretFile(c.nkey_seed_file)));
  else if (c.token_file !== undefined) authenticator = tokenAuthenticator(readSecretFile(c.token_file));
  else if (c.user !== undefined && c.password_file !== undefined) authenticator = usernamePasswordAuthenticator(c.user, readSecretFile(c.password_file));
  const wantTls = c.tls_required || c.ca_file !== undefined || c.cert_file !== undefined || c.servers.some((s) => s.startsWith('tls://'));
  const opts: ConnectionOptions = {
    servers: c.servers.map((s) => s.replace(/^tls:\/\//, 'nats://')),
    name,
    timeout: Math.round(c.connect_timeout * 1000),
    reconnect: true,
    maxReconnectAttempts: -1,
    reconnectTimeWait: Math.round(c.reconnect_wait * 1000),
    // A refused login while reconnecting is retried like any failure, instead of closing the connection.
    ignoreAuthErrorAbort: true,
    pingInterval: 10_000,
    // The client otherwise makes an Error (a stack trace) for every request and publish
    // with an acknowledgement, for async stack traces in its errors: measured as a third of
    // a receiver's CPU time (bench/nats-hop.mjs with --cpu-prof, docs/performance.md).
    noAsyncTraces: true,
  };
  if (authenticator !== undefined) opts.authenticator = authenticator;
  if (wantTls) {
    opts.tls = {
      ...(c.ca_file !== undefined ? { ca: readBoundedFile(c.ca_file, MAX_PEM_FILE_BYTES) } : {}),
      ...(c.cert_file !== undefined ? { cert: readBoundedFile(c.cert_file, MAX_PEM_FILE_BYTES) } : {}),
      ...(c.key_file !== undefined ? { key: readBoundedFile(c.key_file, MAX_PEM_FILE_BYTES) } : {}),
    };
  }
  return opts;
}

/** The JetStream API error code of a client error (`err_code`: 10014 consumer not found, 10059 stream not found...), if any. */
export function jsErrCode(err: unknown): number | undefined {
  return (err as { api_error?: { err_code?: number } } | null | undefined)?.api_error?.err_code;
}

/** The text of a client error, with the server's own words when it sent some. */
export function natsErrorText(err: unknown): string {
  const e = err as { message?: string; code?: string; chainedError?: Error; api_error?: { description?: string; err_code?: number } };
  let msg = e?.message ?? String(err);
  if (e?.chainedError?.message !== undefined && !msg.includes(e.chainedError.message)) msg += `: ${e.chainedError.message}`;
  if (/authorization violation|authentication/i.test(msg)) msg += ' (the server refused the credentials: check creds_file, nkey_seed_file, token_file or user/password_file)';
  if (/certificate|self.signed|CERT_|unable to verify/i.test(msg)) msg += ' (the server certificate was not accepted: check ca_file and the server name)';
  return msg;
}

export interface NatsLinkEvents {
  /** Connected (first time or again after the client closed). */
  connected?(nc: NatsConnection): void;
  /** A connection attempt failed or the connection closed; `error` says why. */
  failed?(error: string): void;
}

/**
 * A connection kept open: `current` is the live connection or null, `lastError` why not.
 * `current` stays set while the client reconnects it (`reconnecting`): its subscriptions
 * and JetStream handles come back with it, but what is published meanwhile waits in the
 * client's outbound buffer, which has no limit (nats.js 2.29 empties it at each attempt
 * to reconnect: prepare() in node_modules/nats/lib/nats-base-client/protocol.js).
 * `start()` never rejects; `close()` drains nothing and closes.
 */
export class NatsLink {
  current: NatsConnection | null = null;
  /** `current` lost its server and the client is reconnecting it (from its 'disconnect' status until 'reconnect'). */
  reconnecting = false;
  lastError = 'not connected yet';
  private stopped = false;
  private timer: NodeJS.Timeout | null = null;
  private attempt = 0;

  constructor(
    private readonly config: NatsConnectionConfig,
    private readonly clientName: string,
    private readonly events: NatsLinkEvents = {},
  ) {}

  /** Starts connecting in the background; resolves after the first attempt settled. */
  async start(): Promise<void> {
    this.stopped = false;
    await this.tryOnce();
  }

  private async tryOnce(): Promise<void> {
    if (this.stopped) return;
    let nc: NatsConnection;
    try {
      nc = await connect(natsOptions(this.config, this.clientName));
    } catch (err) {
      this.lastError = natsErrorText(err);
      this.events.failed?.(this.lastError);
      this.schedule();
      return;
    }
    if (this.stopped) {
      await nc.close().catch(() => undefined);
      return;
    }
    this.attempt = 0;
    this.current = nc;
    this.reconnecting = false;
    this.lastError = '';
    this.watch(nc);
    this.events.connected?.(nc);
  }

  private watch(nc: NatsConnection): void {
    void (async () => {
      for await (const s of nc.status()) {
        if (s.type === 'disconnect') {
          this.lastError = `disconnected from ${String(s.data)}`;
          if (this.current === nc) this.reconnecting = true;
        } else if (s.type === 'error') this.lastError = natsErrorText(s.data);
        else if (s.type === 'reconnect') {
          this.lastError = '';
          if (this.current === nc) this.reconnecting = false;
        }
      }
    })().catch(() => undefined);
    void nc.closed().then((err) => {
      if (this.current === nc) {
        this.current = null;
        this.reconnecting = false;
      }
      if (this.stopped) return;
      this.lastError = err ? natsErrorText(err) : 'the connection was closed';
      this.events.failed?.(this.lastError);
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.stopped || this.timer !== null) return;
    const base = Math.max(1, Math.round(this.config.reconnect_wait * 1000));
    const wait = Math.min(base * 2 ** Math.min(this.attempt, 4), 60_000);
    this.attempt++;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.tryOnce();
    }, wait);
    this.timer.unref();
  }

  async close(): Promise<void> {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    const nc = this.current;
    this.current = null;
    this.reconnecting = false;
    if (nc !== null) {
      // Acknowledgements and publishes still in the client's buffer go out first.
      await nc.flush().catch(() => undefined);
      await nc.close().catch(() => undefined);
    }
  }
}
