/**
 * The `syslog` output: each record (a CEF line by default, or JSON) behind a syslog header,
 * framed, to another collector or SIEM over TCP, TLS or UDP (docs/outputs-syslog.md).
 *
 * - tcp/tls: a batch is delivered once the kernel took its bytes; the connection keeps a
 *   resend window for breaks (stream.ts), so delivery is at least once.
 * - udp: one message per datagram, at most once: a datagram the network or a stopped
 *   receiver drops is not known. An ICMP "port unreachable" the kernel reports makes the
 *   next batch `retry` once, so the refusal is logged and counted.
 * - A record that cannot be sent at all (larger than `max_message_size`; holding a newline
 *   with `framing: lf`) is rejected alone, with its reason, and the rest of the batch goes.
 *
 * The output never counts, logs or sleeps between attempts: the output runner does
 * (src/pipeline/output-runner.ts). Reconnecting after a break while idle is the stream's.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { hostname as osHostname } from 'node:os';
import { errorText, isEmptyBatch } from '../shared/encode.js';
import { DELIVERED, type Batch, type CloseReport, type Output, type SendResult } from '../types.js';
import { UDP_MAX_PAYLOAD, type SyslogConfig } from './config.js';
import { frame, headerText, type HeaderOptions } from './format.js';
import { loadTls, StreamSender } from './stream.js';

export type { SyslogConfig } from './config.js';

/** The common options the output reads besides its own (the runner's backoff for reconnects). */
type Config = SyslogConfig & { retry?: { initial_backoff: number; max_backoff: number } };

export class SyslogOutput implements Output {
  readonly type = 'syslog';
  private readonly label: string;
  private readonly head: HeaderOptions;
  private readonly port: number;
  private readonly maxMessage: number;
  private stream: StreamSender | null = null;
  private closed = false;
  private udp: dgram.Socket | null = null;
  private udpRefused = '';
  /** Whether the UDP socket is connected to the receiver's address (resolved from `host`). */
  private udpConnected = false;
  /** Why the UDP socket is not connected ('' when it is). */
  private udpProblem = '';
  /** The header's text of the last batch, and the second it was made for. */
  private headerCache: { second: number; bytes: Buffer } = { second: -1, bytes: Buffer.alloc(0) };

  constructor(
    readonly name: string,
    private readonly config: Config,
  ) {
    this.label = `syslog output ${name}`;
    this.port = config.port !== 0 ? config.port : config.transport === 'tls' ? 6514 : 514;
    this.maxMessage = config.transport === 'udp' ? Math.min(config.max_message_size, UDP_MAX_PAYLOAD) : config.max_message_size;
    this.head = {
      header: config.header,
      facility: config.facility,
      severity: config.severity,
      hostname: config.hostname ?? (osHostname().replace(/[^\x21-\x7e]/g, '') || '-'),
      appName: config.app_name,
      msgId: config.msg_id,
      procId: String(process.pid),
    };
  }

  /**
   * Never waits for the receiver: one that is down at start gets the events once it is up.
   * Nor for its name: a UDP host that does not resolve yet is resolved again by each batch
   * (sendUdp), so start() does not fail and the output recovers without a restart.
   */
  async start(): Promise<void> {
    const c = this.config;
    if (c.transport === 'udp') {
      const sock = dgram.createSocket(net.isIPv6(c.host) ? 'udp6' : 'udp4');
      // Asynchronous ICMP reports (the receiver's port is closed) arrive as 'error' events.
      sock.on('error', (e) => (this.udpRefused = errorText(e)));
      this.udp = sock;
      this.udpProblem = (await this.connectUdp(sock)) ?? '';
      return;
    }
    this.stream = new StreamSender({
      label: this.label,
      host: c.host,
      port: this.port,
      tls: c.transport === 'tls' ? loadTls(this.label, c) : false,
      connectTimeoutMs: Math.round(c.connect_timeout * 1000),
      writeTimeoutMs: Math.round(c.write_timeout * 1000),
      resendWindowBytes: c.resend_window,
      reconnectInitialMs: Math.round((c.retry?.initial_backoff ?? 0.1) * 1000),
      reconnectMaxMs: Math.round((c.retry?.max_backoff ?? 30) * 1000),
    });
  }

  async send(batch: Batch, signal?: AbortSignal): Promise<SendResult> {
    try {
      if (isEmptyBatch(batch)) return DELIVERED;
      // (Sent again by the runner, if it still runs, to the output that replaces this one.)
      if (this.stream === null && this.udp === null) return { status: 'retry', error: `${this.label}: the output is ${this.closed ? 'closed' : 'not started'}` };
      const framing = this.config.transport === 'udp' ? 'datagram' : this.config.framing;
      const header = this.header();
      const frames: Buffer[] = [];
      const sentIndex: number[] = [];
      const rejected: { index: number; reason: string; error: string }[] = [];
      const records = batch.records;
      for (let i = 0; i < records.length; i++) {
        const r = records[i]!;
        const bytes = Buffer.byteLength(r, 'utf8');
        if (header.length + bytes > this.maxMessage) {
          rejected.push({ index: i, reason: 'syslog_message_too_big', error: `a message of ${header.length + bytes} bytes is over max_message_size (${this.maxMessage})` });
        } else if (framing === 'lf' && r.includes('\n')) {
          rejected.push({ index: i, reason: 'syslog_record_has_newline', error: 'the record holds a newline, which ends a message with framing: lf' });
        } else if (framing === 'lf' && r.includes('\0')) {
          rejected.push({ index: i, reason: 'syslog_record_has_nul', error: 'the record holds a NUL byte, which ends a message for receivers that split at NUL (cefd, KUMA) with framing: lf' });
        } else {
          frames.push(frame(framing, header, r, bytes));
          sentIndex.push(i);
        }
      }
      const failed = frames.length === 0 ? null : await untilAborted(this.udp !== null ? this.sendUdp(frames) : this.stream!.write(frames), signal);
      if (failed !== null) {
        // Nothing of the batch counts as sent: the runner sends it again (rejections stand).
        if (rejected.length === 0) return { status: 'retry', error: `${this.label}: ${failed}` };
        return { status: 'partial', error: `${this.label}: ${failed}`, retry: sentIndex, rejected };
      }
      return rejected.length === 0 ? DELIVERED : { status: 'partial', error: '', rejected };
    } catch (err) {
      return { status: 'retry', error: `${this.label}: unexpected error: ${errorText(err)}` };
    }
  }

  /** UDP: why the socket has no receiver's address (its name did not resolve), or undefined. */
  unready(): string | undefined {
    if (this.udp === null || this.udpConnected) return undefined;
    return this.udpProblem === '' ? 'not connected' : this.udpProblem;
  }

  /** Reason code of resend-window frames let go unconfirmed at close (src/errors.ts). */
  static readonly UNCONFIRMED = 'syslog_unconfirmed';

  async close(): Promise<CloseReport> {
    this.closed = true;
    const s = this.stream;
    this.stream = null;
    const left = s === null ? null : await s.close();
    const report: CloseReport = { abandoned: null };
    if (left !== null && left.frames > 0) {
      report.abandoned = {
        events: left.frames,
        reason: SyslogOutput.UNCONFIRMED,
        error: `${this.label}: ${left.frames} message(s) (${left.bytes} bytes) of the resend window were not confirmed by ${this.config.host}:${this.port} (it did not close the connection in time, or the connection was broken) and may not have arrived`,
      };
    }
    const u = this.udp;
    this.udp = null;
    this.udpConnected = false;
    if (u !== null) await new Promise<void>((r) => u.close(() => r()));
    return report;
  }

  /** For tests and the benchmark: the stream's counters. */
  get streamStats(): { connections: number; resentFrames: number; heldBytes: number } | null {
    return this.stream === null ? null : { connections: this.stream.connections, resentFrames: this.stream.resentFrames, heldBytes: this.stream.heldBytes };
  }

  private header(): Buffer {
    const now = Date.now();
    const second = Math.floor(now / 1000);
    // RFC 5424 carries milliseconds: make it per batch; RFC 3164 has seconds: reuse within one.
    if (this.head.header === 'rfc3164' && second === this.headerCache.second) return this.headerCache.bytes;
    const bytes = Buffer.from(headerText(this.head, new Date(now)), 'utf8');
    this.headerCache = { second, bytes };
    return bytes;
  }

  /**
   * Resolves `host` and connects the socket to it; why not, or null. Node 20's
   * dgram.connect() hands a DNS failure to its callback (not to an 'error' event) and leaves
   * the socket unconnected, so the callback's argument is the outcome.
   */
  private connectUdp(sock: dgram.Socket): Promise<string | null> {
    const where = `${this.config.host}:${this.port}`;
    return new Promise<string | null>((resolve) => {
      try {
        (sock.connect as (port: number, host: string, cb: (err?: Error) => void) => void)(this.port, this.config.host, (err) => {
          if (err !== undefined && err !== null) return resolve(`cannot use ${where}: ${errorText(err)}`);
          this.udpConnected = true;
          resolve(null);
        });
      } catch (err) {
        resolve(`cannot use ${where}: ${errorText(err)}`);
      }
    });
  }

  /** Forgets the address, so the next batch resolves `host` again (its address may have changed). */
  private disconnectUdp(sock: dgram.Socket): void {
    if (!this.udpConnected) return;
    this.udpConnected = false;
    try {
      sock.disconnect();
    } catch {
      // Not connected after all: nothing to undo.
    }
  }

  private async sendUdp(frames: readonly Buffer[]): Promise<string | null> {
    const sock = this.udp!;
    if (!this.udpConnected) {
      const why = await this.connectUdp(sock);
      this.udpProblem = why ?? '';
      if (why !== null) return why;
    }
    if (this.udpRefused !== '') {
      const why = this.udpRefused;
      this.udpRefused = '';
      return `the receiver refused datagrams (${why}): datagrams sent before this may be lost`;
    }
    for (const f of frames) {
      const err = await new Promise<Error | null>((r) => sock.send(f, (e) => r(e ?? null)));
      if (err !== null) {
        this.disconnectUdp(sock);
        this.udpProblem = `sending a datagram failed: ${errorText(err)}`;
        return this.udpProblem;
      }
    }
    return null;
  }
}

/**
 * The outcome of `p`, or an error text as soon as `signal` aborts (the shutdown deadline):
 * a receiver that stopped reading must not hold the stop up. The frames may still reach
 * the kernel afterwards; the batch stays queued and is sent again (at least once).
 */
function untilAborted(p: Promise<string | null>, signal: AbortSignal | undefined): Promise<string | null> {
  if (signal === undefined) return p;
  const aborted = 'aborted at the shutdown deadline; the batch stays queued';
  if (signal.aborted) return Promise.resolve(aborted);
  let onAbort: () => void = () => undefined;
  const stop = new Promise<string>((r) => {
    onAbort = () => r(aborted);
    signal.addEventListener('abort', onAbort, { once: true });
  });
  return Promise.race([p, stop]).finally(() => signal.removeEventListener('abort', onAbort));
}
