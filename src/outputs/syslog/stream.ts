/**
 * A TCP or TLS connection to a syslog receiver, and what makes delivery over it at least
 * once although syslog has no acknowledgement.
 *
 * A write completes when the kernel has the bytes, not when the receiver read them: bytes
 * in this host's send buffer and in the receiver's receive buffer are lost when the
 * connection breaks (the receiver restarts, the network drops it). So the last
 * `resend_window` bytes written are kept (the "window"), and a connection that broke has
 * them written again first on the next one. This bound is sound when the window is at
 * least this host's send buffer plus the receiver's receive buffer: once that many bytes
 * were taken after a frame ON THE SAME CONNECTION, the receiver has read the frame (TCP is
 * in order). So a frame leaves the window only by bytes taken after it on the connection
 * it was last written to; a receiver that drops every connection before reading (a client
 * certificate refused after a TLS 1.3 handshake) makes the window grow, and past twice
 * `resend_window` new batches are refused (`retry`, with the receiver's reason) until a
 * connection takes it: memory stays bounded and nothing is acknowledged that was not read.
 * The cost is duplicates: after a break, up to the window is delivered twice.
 *
 * A closed connection of our own (shutdown, reload) half-closes and waits for the
 * receiver to close its side: a receiver closes after reading everything (rsyslog does),
 * which confirms the window, so an orderly stop resends nothing.
 *
 * A connection that breaks while idle is reopened in the background with capped
 * exponential backoff when it has a window to resend, so a quiet stream does not leave
 * its last events unread until the next one comes.
 */
import net from 'node:net';
import tls from 'node:tls';
import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import { errorText } from '../shared/encode.js';
import { normalizePin } from './config.js';

export interface StreamOptions {
  /** Names the output in every error (`syslog output siem`). */
  label: string;
  host: string;
  port: number;
  tls: false | { ca?: Buffer; cert?: Buffer; key?: Buffer; serverName?: string; pins: readonly string[] };
  connectTimeoutMs: number;
  writeTimeoutMs: number;
  resendWindowBytes: number;
  reconnectInitialMs: number;
  reconnectMaxMs: number;
}

/** Reads and checks the TLS files of the options (throws a clear Error). */
export function loadTls(label: string, o: { ca_file?: string; cert_file?: string; key_file?: string; server_name?: string; pin_sha256: readonly string[] }): Exclude<StreamOptions['tls'], false> {
  const read = (what: string, path: string | undefined) => {
    if (path === undefined) return undefined;
    try {
      return readFileSync(path);
    } catch (err) {
      throw new Error(`${label}: cannot read ${what} ${path}: ${errorText(err)}`);
    }
  };
  const ca = read('ca_file', o.ca_file);
  const cert = read('cert_file', o.cert_file);
  const key = read('key_file', o.key_file);
  try {
    // Bad PEM or a key that does not match the certificate: say so at start, not per connection.
    createSecureContext({ ...(ca !== undefined ? { ca } : {}), ...(cert !== undefined ? { cert, key } : {}) });
  } catch (err) {
    throw new Error(`${label}: ca_file/cert_file/key_file cannot be used: ${errorText(err)}`);
  }
  return {
    ...(ca !== undefined ? { ca } : {}),
    ...(cert !== undefined ? { cert, key } : {}),
    ...(o.server_name !== undefined ? { serverName: o.server_name } : {}),
    pins: o.pin_sha256.map(normalizePin),
  };
}

export class StreamSender {
  private sock: net.Socket | null = null;
  private connecting: Promise<net.Socket> | null = null;
  /**
   * Frames written to connections, newest last, each with its end offset on the current
   * connection; trimmed to about resendWindowBytes by bytes taken after them.
   */
  private window: { buf: Buffer; end: number }[] = [];
  private windowBytes = 0;
  /** Bytes queued on, and taken by the kernel of, the current connection. */
  private connWritten = 0;
  private connTaken = 0;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private reconnectBackoff = 0;
  private closed = false;
  /** Why the last connection ended, for the next error. */
  private lastBreak = '';
  /** Frames of the window written again after breaks (for tests and the doc's figures). */
  resentFrames = 0;
  connections = 0;

  constructor(private readonly o: StreamOptions) {}

  /**
   * Writes the frames in order and resolves when the kernel has taken them all: null, or
   * the error text (the connection is then closed; the caller retries the frames).
   */
  async write(frames: readonly Buffer[]): Promise<string | null> {
    if (this.closed) return 'the output is closed';
    let sock: net.Socket;
    try {
      sock = await this.connection();
    } catch (err) {
      return (err as Error).message;
    }
    this.trimWindow();
    if (this.o.resendWindowBytes > 0 && this.windowBytes > 2 * this.o.resendWindowBytes) {
      return `the receiver ${this.o.host}:${this.o.port} dropped its connections before reading ${this.windowBytes} bytes already written (${this.lastBreak || 'no reason given'}); new records wait until a connection takes them`;
    }
    const start = this.connWritten;
    const ends: number[] = [];
    for (const f of frames) ends.push((this.connWritten += f.length));
    const err = await this.writeTo(sock, frames);
    if (err !== null) return err;
    const current = this.sock === sock;
    if (current) this.connTaken = Math.max(this.connTaken, this.connWritten);
    // Taken by the kernel, but the connection may already be gone: such frames stay until
    // written again on the next one (no offset on it yet).
    const added = frames.map((f, i) => ({ buf: f, end: current ? ends[i]! : Infinity }));
    for (const w of added) this.window.push(w);
    this.windowBytes += ends[ends.length - 1]! - start;
    this.trimWindow();
    if (!current) {
      // A new connection opened meanwhile resent the window without these: write them to it.
      const next = this.sock;
      if (next !== null && !next.destroyed) {
        for (const w of added) {
          w.end = this.connWritten += w.buf.length;
          next.write(w.buf);
        }
      } else this.scheduleReconnect();
    }
    return null;
  }

  /**
   * Half-closes and waits (up to the write timeout, at most 5 s) for the receiver to close
   * its side, which confirms the window. Returns the frames and bytes of the window let go
   * unconfirmed: the receiver did not close in time, or no connection was open to resend it
   * on (a break not yet repaired). Those may never have reached the receiver.
   */
  async close(): Promise<{ frames: number; bytes: number }> {
    this.closed = true;
    if (this.reconnectTimer !== null) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    const sock = this.sock ?? (await this.connecting?.catch(() => null)) ?? null;
    this.sock = null;
    let confirmed = false;
    if (sock !== null && !sock.destroyed) {
      confirmed = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => {
          sock.destroy();
          resolve(false);
        }, Math.min(this.o.writeTimeoutMs, 5000));
        sock.once('close', (hadError: boolean) => {
          clearTimeout(timer);
          resolve(!hadError);
        });
        sock.resume();
        sock.end();
      });
    }
    const left = confirmed ? { frames: 0, bytes: 0 } : { frames: this.window.length, bytes: this.windowBytes };
    this.window = [];
    this.windowBytes = 0;
    return left;
  }

  /** Bytes held for resending. */
  get heldBytes(): number {
    return this.windowBytes;
  }

  private trimWindow(): void {
    // A frame goes once the current connection took resendWindowBytes after it.
    while (this.window.length > 0 && this.connTaken - this.window[0]!.end >= this.o.resendWindowBytes) {
      this.windowBytes -= this.window.shift()!.buf.length;
    }
    if (this.o.resendWindowBytes === 0) {
      this.window = [];
      this.windowBytes = 0;
    }
  }

  /** The open connection, or a new one with the window written first. */
  private connection(): Promise<net.Socket> {
    if (this.sock !== null && !this.sock.destroyed && this.sock.writable) return Promise.resolve(this.sock);
    this.connecting ??= this.open().finally(() => (this.connecting = null));
    return this.connecting;
  }

  private open(): Promise<net.Socket> {
    const o = this.o;
    const where = `${o.host}:${o.port}`;
    return new Promise<net.Socket>((resolve, reject) => {
      let sock: net.Socket;
      const t = o.tls;
      if (t === false) {
        sock = net.connect({ host: o.host, port: o.port });
      } else {
        sock = tls.connect({
          host: o.host,
          port: o.port,
          ...(t.ca !== undefined ? { ca: t.ca } : {}),
          ...(t.cert !== undefined ? { cert: t.cert, key: t.key } : {}),
          servername: t.serverName ?? (net.isIP(o.host) === 0 ? o.host : undefined),
          // A pin alone (no CA) stands for a self-signed receiver: the pin is checked below instead.
          rejectUnauthorized: !(t.pins.length > 0 && t.ca === undefined),
          ...(t.serverName !== undefined && net.isIP(o.host) !== 0 ? { checkServerIdentity: (_h: string, cert: tls.PeerCertificate) => tls.checkServerIdentity(t.serverName!, cert) } : {}),
        });
      }
      const fail = (msg: string) => {
        clearTimeout(timer);
        sock.destroy();
        reject(new Error(`cannot connect to ${where}: ${msg}`));
      };
      const timer = setTimeout(() => fail(`no connection within ${o.connectTimeoutMs} ms (connect_timeout)`), o.connectTimeoutMs);
      sock.once('error', (e) => fail(tlsText(e)));
      sock.once(t === false ? 'connect' : 'secureConnect', () => {
        if (t !== false && t.pins.length > 0) {
          const fp = normalizePin((sock as tls.TLSSocket).getPeerCertificate().fingerprint256 ?? '');
          if (!t.pins.includes(fp)) return fail(`the server certificate does not match pin_sha256 (it presented SHA-256 ${fp || 'no certificate'})`);
        }
        clearTimeout(timer);
        sock.removeAllListeners('error');
        sock.setNoDelay(true);
        sock.setKeepAlive(true, 30_000);
        this.watch(sock);
        this.sock = sock;
        this.connections++;
        this.lastBreak = '';
        const openedAt = Date.now();
        // The backoff resets only for a connection that lasted: a receiver that accepts and
        // then drops every connection (a client certificate it refuses after a TLS 1.3
        // handshake) must not be reconnected to in a tight loop.
        sock.once('close', () => {
          if (Date.now() - openedAt >= Math.max(this.o.reconnectMaxMs, 5000)) this.reconnectBackoff = 0;
        });
        // What the last connection may not have delivered goes first, in order.
        this.connWritten = 0;
        this.connTaken = 0;
        if (this.window.length > 0) {
          this.resentFrames += this.window.length;
          sock.cork();
          for (const f of this.window) f.end = this.connWritten += f.buf.length;
          const upTo = this.connWritten;
          this.window.forEach((f, i) =>
            sock.write(f.buf, i < this.window.length - 1 ? undefined : (e) => {
              if (e || this.sock !== sock) return;
              this.connTaken = Math.max(this.connTaken, upTo);
              this.trimWindow();
            }),
          );
          sock.uncork();
        }
        resolve(sock);
      });
    });
  }

  /** Notices a connection that ends, and reopens it in the background when a window waits. */
  private watch(sock: net.Socket): void {
    // Syslog receivers send nothing: read and drop, so a FIN or RST is seen at once.
    sock.on('data', () => {});
    sock.on('error', (e) => (this.lastBreak = tlsText(e)));
    sock.on('end', () => {
      this.lastBreak ||= 'the receiver closed the connection';
      sock.destroy();
    });
    sock.on('close', () => {
      if (this.sock === sock) this.sock = null;
      if (!this.closed && this.window.length > 0) this.scheduleReconnect();
    });
  }

  private scheduleReconnect(): void {
    if (this.reconnectTimer !== null || this.closed) return;
    this.reconnectBackoff = this.reconnectBackoff === 0 ? this.o.reconnectInitialMs : Math.min(this.o.reconnectMaxMs, this.reconnectBackoff * 2);
    const wait = this.reconnectBackoff / 2 + (Math.random() * this.reconnectBackoff) / 2;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (this.closed || (this.sock !== null && !this.sock.destroyed)) return;
      this.connection().catch(() => this.scheduleReconnect());
    }, wait);
    this.reconnectTimer.unref();
  }

  /** Writes frames and waits until the kernel took the last; a connection making no progress for the write timeout is dead. */
  private writeTo(sock: net.Socket, frames: readonly Buffer[]): Promise<string | null> {
    return new Promise<string | null>((resolve) => {
      let done = false;
      const finish = (err: string | null) => {
        if (done) return;
        done = true;
        clearInterval(stall);
        sock.off('close', onClose);
        if (err !== null) sock.destroy();
        resolve(err);
      };
      const onClose = () => finish(`the connection to ${this.o.host}:${this.o.port} broke: ${this.lastBreak || 'closed'}`);
      sock.once('close', onClose);
      let lastLeft = Infinity;
      const stall = setInterval(() => {
        const left = sock.writableLength;
        if (left > 0 && left >= lastLeft) finish(`the receiver ${this.o.host}:${this.o.port} took no bytes for ${this.o.writeTimeoutMs} ms (write_timeout)`);
        lastLeft = left;
      }, this.o.writeTimeoutMs);
      stall.unref();
      sock.cork();
      for (let i = 0; i < frames.length - 1; i++) sock.write(frames[i]!);
      sock.write(frames[frames.length - 1]!, (e) => {
        if (e === null || e === undefined) return finish(null);
        // The receiver's own reason (a TLS alert) when it sent one before the reset.
        const why = this.lastBreak !== '' && !this.lastBreak.includes(tlsText(e)) ? `${tlsText(e)} (${this.lastBreak})` : tlsText(e);
        finish(`writing to ${this.o.host}:${this.o.port} failed: ${why}`);
      });
      sock.uncork();
    });
  }
}

/** An error's text, with the OpenSSL reason for TLS refusals (`CERT_HAS_EXPIRED: certificate has expired`). */
function tlsText(e: Error): string {
  return errorText(e);
}
