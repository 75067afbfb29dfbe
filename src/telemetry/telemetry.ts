/**
 * Telemetry through named internal events (STYLE lesson 5): pipeline code reports what
 * happened ("connection rejected", "output retrying"), and this one place counts it and
 * logs it. Hot-path counts (bytes, frames, events) are plain numbers on per-listener and
 * per-output stat objects; they are copied into the prom-client registry when /metrics is
 * scraped, so the per-event cost is one addition. No peer address or raw text is ever a
 * metric label.
 */
import pino, { type Logger } from 'pino';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { CODES } from '../errors.js';
import type { EventQueue } from '../buffer/queue.js';
import { VERSION } from '../version.js';

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';

/** Counts per code, for labelled counters. */
export class CodeCounts {
  readonly map = new Map<string, number>();
  add(code: string, n = 1): void {
    this.map.set(code, (this.map.get(code) ?? 0) + n);
  }
}

/** Label sets and values of a metric, read from plain stats when /metrics is scraped. */
export type MetricRows = () => Iterable<[Record<string, string>, number]>;

/** A counter in `reg` whose values are copied from `read()` at each scrape (zeros left out). */
export function collectedCounter(reg: Registry, name: string, help: string, labelNames: string[], read: MetricRows): Counter {
  return new Counter({
    name,
    help,
    labelNames,
    registers: [reg],
    collect() {
      this.reset();
      for (const [labels, v] of read()) if (v > 0) this.inc(labels, v);
    },
  });
}

/** A gauge in `reg` whose values are copied from `read()` at each scrape. */
export function collectedGauge(reg: Registry, name: string, help: string, labelNames: string[], read: MetricRows): Gauge {
  return new Gauge({
    name,
    help,
    labelNames,
    registers: [reg],
    collect() {
      this.reset();
      for (const [labels, v] of read()) this.set(labels, v);
    },
  });
}

export class ListenerStats {
  /**
   * UDP listeners: datagrams the kernel dropped because the socket's receive buffer was
   * full (cefd did not read fast enough), of the sockets closed since start, and a reader
   * of the open socket's count (src/sources/udp/kernel-drops.ts); undefined for others.
   */
  udpDropsClosed = 0;
  udpDropsOpen: (() => number) | undefined = undefined;
  bytes = 0;
  framesLf = 0;
  framesOctet = 0;
  framesDatagram = 0;
  discardedBytes = 0;
  connectionsOpen = 0;
  connectionsAccepted = 0;
  eventsParsed = 0;
  lastEventMs = 0;
  /** NATS sources: messages of the consumer not yet acknowledged (delivered or not); -1 for other sources. */
  natsPending = -1;
  /** NATS sources: messages acknowledged after every output's buffer took their events. */
  natsAcked = 0;
  /** TLS listeners: when the certificate presented now expires (s since the epoch); -1 for other listeners. */
  tlsCertificateExpiry = -1;
  /** NATS sources: messages received that the server had delivered before (not acknowledged in time, or given back). */
  natsRedelivered = 0;
  /** NATS sources: messages given back (nak) because the outputs refused their events, their KSC work failed, or cefd stopped. */
  natsNaked = 0;
  /** NATS sources: in-progress acknowledgements sent (one per message not settled a third of ack_wait after its hand-over, and every third of ack_wait after). */
  natsInProgress = 0;
  /** NATS sources: times the durable consumer was gone (deleted) and was made again. */
  natsConsumerRecreated = 0;
  readonly connectionsRejected = new CodeCounts();
  readonly frameErrors = new CodeCounts();
  readonly parseErrors = new CodeCounts();
  readonly parseWarnings = new CodeCounts();
  /**
   * Per sending address (without the port): events and the last event time, for the
   * console's Overview (which KSC server went quiet). Never a metric label (peer addresses
   * would make unbounded series); at most MAX_SENDERS, the least recently heard dropped.
   */
  readonly senders = new Map<string, { events: number; lastEventMs: number }>();
  constructor(readonly name: string) {}

  senderSeen(peer: string, events: number, lastEventMs: number): void {
    const i = peer.lastIndexOf(':');
    const addr = i > 0 ? peer.slice(0, i) : peer;
    const s = this.senders.get(addr);
    if (s !== undefined) {
      this.senders.delete(addr);
      s.events += events;
      if (lastEventMs > s.lastEventMs) s.lastEventMs = lastEventMs;
      this.senders.set(addr, s);
      return;
    }
    if (this.senders.size >= MAX_SENDERS) this.senders.delete(this.senders.keys().next().value!);
    this.senders.set(addr, { events, lastEventMs });
  }
}

const MAX_SENDERS = 256;

export class OutputStats {
  sent = 0;
  retried = 0;
  queued = 0;
  capacity = 0;
  retrying = 0;
  /** The output's queue, for the buffer gauges (bytes, fill). */
  queue: EventQueue | undefined;
  bufferMaxBytes = 0;
  bufferWriteErrors = 0;
  bufferDegraded = 0;
  bufferCorruptBytes = 0;
  bufferReplayed = 0;
  readonly rejected = new CodeCounts();
  readonly dropped = new CodeCounts();
  /** The last delivery error and when (ms), for the console; empty when none. */
  lastError = '';
  lastErrorMs = 0;
  /** What this output's encoding could not carry, per code (`encode_key_dropped`, `encode_field_cut`). */
  readonly encodeProblems = new CodeCounts();
  constructor(readonly name: string) {}
}

/** Logs the first occurrence of a code at once, then at most once per interval with a count. */
export class RepeatLimiter {
  private readonly last = new Map<string, { at: number; held: number }>();
  /** Settable: a reload applies logging.repeat_interval (src/daemon.ts). */
  constructor(public intervalMs: number) {}
  /**
   * `n` more occurrences of `key`: returns the number of held-back repeats to report with
   * a log line now, or -1 to stay quiet (of `n` occurrences, one is logged, the rest held).
   */
  check(key: string, now: number, n = 1): number {
    const s = this.last.get(key);
    if (s === undefined) {
      if (this.last.size > 10_000) this.last.clear();
      this.last.set(key, { at: now, held: n - 1 });
      return 0;
    }
    if (now - s.at >= this.intervalMs) {
      const held = s.held;
      s.at = now;
      s.held = n - 1;
      return held;
    }
    s.held += n;
    return -1;
  }
}

/** The fields and message of a log line that also reports `held` repeats held back since the last one. */
export function withRepeats(fields: Record<string, unknown>, msg: string | undefined, held: number): [Record<string, unknown>, string | undefined] {
  if (held <= 0) return [fields, msg];
  return [{ ...fields, repeated: held }, msg === undefined ? msg : `${msg} (and ${held} more like it since the last report)`];
}

export interface TelemetryOptions {
  level?: LogLevel;
  repeatIntervalMs?: number;
  /** Where logs go (default stdout; see `logToStderr`). */
  destination?: NodeJS.WritableStream;
  /** Log to stderr instead of stdout (when an output writes events to stdout). */
  logToStderr?: boolean;
  /** Collect Node process metrics (default true). */
  processMetrics?: boolean;
}

export class Telemetry {
  readonly registry = new Registry();
  readonly log: Logger;
  readonly listeners = new Map<string, ListenerStats>();
  readonly outputs = new Map<string, OutputStats>();
  readonly normalized = new Map<string, CodeCounts>();
  readonly normalizerErrors = new CodeCounts();
  readonly deadLetters = new CodeCounts();
  readonly reloads = new CodeCounts();
  /**
   * The listeners (SQL sources included) and outputs (`dead_letter` included) of the
   * configuration running now (the daemon sets it at start and after each reload). The maps
   * above keep the counters of removed or renamed ones for /metrics; what shows the current
   * state (the console's Overview) lists only these. Undefined: not known (all are current).
   */
  configured: { listeners: Set<string>; outputs: Set<string> } | undefined = undefined;
  /** Undelivered bytes of each orphaned disk buffer found by the last check (src/buffer/inventory.ts), by output name. */
  orphanedBuffers = new Map<string, number>();
  paused = false;
  pausedSinceMs = 0;
  pausedTotalMs = 0;
  private readonly limiter: RepeatLimiter;
  /**
   * Where the logs go: the process's stdout or stderr, or the `destination` stream given.
   * Logs on stdout and a stdout output would mix (src/daemon.ts refuses a reload that adds one).
   */
  readonly logsTo: 'stdout' | 'stderr' | 'stream';

  constructor(opts: TelemetryOptions = {}) {
    this.logsTo = opts.destination !== undefined ? 'stream' : opts.logToStderr === true ? 'stderr' : 'stdout';
    this.log = pino(
      { level: opts.level ?? 'info', base: { service: 'cefd' }, timestamp: pino.stdTimeFunctions.isoTime, formatters: { level: (label) => ({ level: label }) } },
      (opts.destination as pino.DestinationStream | undefined) ?? pino.destination({ dest: opts.logToStderr ? 2 : 1, sync: false }),
    );
    this.limiter = new RepeatLimiter(opts.repeatIntervalMs ?? 10_000);
    if (opts.processMetrics !== false) collectDefaultMetrics({ register: this.registry });
    this.defineMetrics();
  }

  listener(name: string): ListenerStats {
    let s = this.listeners.get(name);
    if (s === undefined) {
      s = new ListenerStats(name);
      this.listeners.set(name, s);
    }
    return s;
  }

  output(name: string): OutputStats {
    let s = this.outputs.get(name);
    if (s === undefined) {
      s = new OutputStats(name);
      this.outputs.set(name, s);
    }
    return s;
  }

  /** logging.repeat_interval, in ms (a reload changes it). */
  get repeatIntervalMs(): number {
    return this.limiter.intervalMs;
  }

  set repeatIntervalMs(ms: number) {
    this.limiter.intervalMs = ms;
  }

  /** A log line that may repeat: rate-limited per key. */
  private limited(level: 'warn' | 'error', key: string, fields: Record<string, unknown>, msg: string, n = 1): void {
    const held = this.limiter.check(key, Date.now(), n);
    if (held >= 0) this.log[level](...withRepeats(fields, msg, held));
  }

  /**
   * An error or warning that can repeat per occurrence (per frame, per read, per batch):
   * rate-limited per key like every internal event's log line.
   */
  repeated(level: 'warn' | 'error', key: string, fields: Record<string, unknown>, msg: string, n = 1): void {
    this.limited(level, key, fields, msg, n);
  }

  // ---- internal events ----

  /** A decode worker failed a read (`frames` frames): they go to the dead-letter output. */
  decodeWorkerFailed(listener: string, frames: number, err: string): void {
    this.limited('error', `worker_failed:${listener}`, { listener, frames, err }, `a decode worker failed; ${frames} frames go to the dead-letter output`);
  }

  connectionRejected(listener: string, reason: 'cidr' | 'max_connections' | 'max_connections_per_source' | 'evicted_no_frame' | 'evicted_quiet' | 'frame_timeout' | 'tls_handshake' | 'tls_fingerprint' | 'tls_unauthorized' | 'tls_on_plain_listener', detail?: string, fields: { code?: string; cause?: string; fingerprint?: string } = {}): void {
    this.listener(listener).connectionsRejected.add(reason);
    this.limited('warn', `reject:${listener}:${reason}:${fields.code ?? ''}`, { listener, reason, ...fields, detail }, `connection refused on listener ${listener}: ${reason}${detail ? ` (${detail})` : ''}`);
  }

  /**
   * A served connection failed (`code`: Node's or OpenSSL's error code; `err`: a one-line
   * reason). Rate-limited per listener and code, not per peer: a line names the peer of
   * the occurrence it reports.
   */
  connectionError(listener: string, peer: string, code: string, err: string): void {
    this.limited('warn', `connerr:${listener}:${code}`, { listener, peer, code, err }, `connection error on listener ${listener} from ${peer}: ${code} (${err})`);
  }

  /**
   * A framing problem of a frame from `peer` (`address:port`). Rate-limited per listener and
   * code, not per peer (a peer per key would multiply the keys): a line names the peer of
   * the occurrence it reports; the metric has no peer label.
   */
  frameProblem(listener: string, code: 'frame_truncated' | 'octet_count_too_large' | 'frame_incomplete', peer: string): void {
    this.listener(listener).frameErrors.add(code);
    this.limited('warn', `frame:${listener}:${code}`, { listener, peer, code }, `framing on listener ${listener} from ${peer}: ${CODES[code].description}`);
  }

  /** `n` frames of a listener that are not events (they go to the dead-letter output). */
  frameUnparseable(listener: string, reason: string, n = 1): void {
    const s = this.listener(listener);
    s.parseErrors.add(reason, n);
    this.limited('warn', `unparseable:${listener}`, { listener, code: reason }, `frame on listener ${listener} is not an event; sent to the dead-letter output`, n);
  }

  /** A normalizer threw, `n` times (on a batch of events), the last time with `error`. */
  normalizerFailed(normalizer: string, error: unknown, n = 1): void {
    this.normalizerErrors.add(normalizer, n);
    this.limited('warn', `norm:${normalizer}`, { normalizer, err: error instanceof Error ? error.message : String(error) }, `normalizer ${normalizer} threw; the event passes on un-normalized`, n);
  }

  eventNormalized(normalizer: string, type: string, n = 1): void {
    let m = this.normalized.get(normalizer);
    if (m === undefined) {
      m = new CodeCounts();
      this.normalized.set(normalizer, m);
    }
    m.add(type, n);
  }

  outputRetrying(output: string, events: number, error: string, backoffMs: number): void {
    const s = this.output(output);
    s.retried += events;
    s.retrying = 1;
    s.lastError = error;
    s.lastErrorMs = Date.now();
    this.limited('warn', `retry:${output}`, { output, events, err: error, backoffMs: Math.round(backoffMs) }, `output ${output} could not deliver ${events} events; retrying in ${Math.round(backoffMs)} ms: ${error}`);
  }

  outputRecovered(output: string): void {
    const s = this.output(output);
    if (s.retrying === 0) return;
    s.retrying = 0;
    this.log.info({ output }, `output ${output} delivers again`);
  }

  outputRejected(output: string, events: number, reason: string, error: string): void {
    this.output(output).rejected.add(reason, events);
    this.limited('error', `rejected:${output}:${reason}`, { output, events, reason, err: error }, `output ${output} rejected ${events} events (${reason}); they went to the dead-letter output: ${error}`);
  }

  /** `n` records of an output whose encoding could not carry something (codes `encode_*`); `detail`: the last one's field. */
  encodeProblem(output: string, code: string, n: number, detail: string): void {
    this.output(output).encodeProblems.add(code, n);
    this.limited('warn', `encode:${output}:${code}`, { output, code, detail }, `output ${output}: its encoding could not carry a value as it was (${code})${detail === '' ? '' : `: ${detail}`}`, n);
  }

  /**
   * Records an output reported delivered earlier but can no longer vouch for (a syslog
   * window let go unconfirmed at close, a failed interval fsync): counted with the dropped
   * ones, by reason, and logged at the code's level.
   */
  outputAbandoned(output: string, events: number, reason: string, error: string): void {
    this.output(output).dropped.add(reason, events);
    const level = (CODES as Record<string, { level: string }>)[reason]?.level === 'warning' ? 'warn' : 'error';
    this.log[level]({ output, events, code: reason, err: error }, `output ${output}: ${events} events delivered earlier may not have arrived (${reason}): ${error}`);
  }

  eventsDropped(output: string, events: number, reason: string): void {
    this.output(output).dropped.add(reason, events);
    this.limited('error', `dropped:${output}:${reason}`, { output, events, reason }, `output ${output} dropped ${events} events: ${reason}`);
  }

  bufferCorrupt(output: string, bytes: number, where: string): void {
    this.output(output).bufferCorruptBytes += bytes;
    this.log.error({ output, bytes, where }, `disk buffer of output ${output}: ${bytes} corrupt bytes skipped at ${where} (events in them are lost)`);
  }

  bufferWriteFailed(output: string, error: string): void {
    const s = this.output(output);
    s.bufferWriteErrors++;
    s.bufferDegraded = 1;
    this.log.error({ output, err: error }, `disk buffer of output ${output} cannot be written (${error}); events are held in memory and reading is paused until it can`);
  }

  bufferWriteRecovered(output: string): void {
    this.output(output).bufferDegraded = 0;
    this.log.info({ output }, `disk buffer of output ${output} can be written again`);
  }

  /** At the stop: records the disk buffer still held in memory (after a write error) kept in `path` for the next start (or lost: `error`). */
  bufferSpilled(output: string, events: number, path: string, error?: string): void {
    if (error === undefined) this.log.info({ output, events, path }, `disk buffer of output ${output}: ${events} events it held in memory are kept in ${path} for the next start`);
    else this.log.error({ output, events, path, err: error }, `disk buffer of output ${output}: ${path} cannot be written (${error}): ${events} events it held in memory are lost`);
  }

  /**
   * The orphaned disk buffers the last check found (start, reload): one warning each, and
   * the gauge holds exactly these (a buffer gone or adopted since leaves it).
   */
  buffersOrphaned(found: readonly { output: string; records: number; bytes: number; dir?: string; spill?: string; oldestMs?: number }[]): void {
    this.orphanedBuffers = new Map(found.map((b) => [b.output, b.bytes]));
    for (const b of found) {
      const where = [b.dir, b.spill].filter((p) => p !== undefined).join(' and ');
      this.log.warn(
        { code: 'buffer_orphaned', output: b.output, events: b.records, bytes: b.bytes, paths: [b.dir, b.spill].filter((p) => p !== undefined), ...(b.oldestMs !== undefined ? { oldest: new Date(b.oldestMs).toISOString() } : {}) },
        `disk buffer of output ${b.output}, which the configuration no longer has, holds ${b.records} undelivered events (${b.bytes} bytes) in ${where}: nothing delivers them. Add an output named ${b.output} back to deliver them, or delete them with: cefd buffers drop ${b.output} (while cefd is stopped)`,
      );
    }
  }

  bufferReplay(output: string, events: number): void {
    this.output(output).bufferReplayed += events;
    if (events > 0) this.log.info({ output, events }, `disk buffer of output ${output}: ${events} undelivered events from before the restart will be delivered`);
  }

  deadLettered(reason: string, n = 1): void {
    this.deadLetters.add(reason, n);
  }

  setPaused(paused: boolean, why?: string): void {
    if (paused === this.paused) return;
    const now = Date.now();
    this.paused = paused;
    if (paused) {
      this.pausedSinceMs = now;
      this.limited('warn', 'paused', { why }, `reading paused: ${why ?? 'an output queue is full'}`);
    } else {
      this.pausedTotalMs += now - this.pausedSinceMs;
      this.log.debug('reading resumed');
    }
  }

  // ---- metrics ----

  private defineMetrics(): void {
    const reg = this.registry;
    const listeners = () => [...this.listeners.values()];
    /** The nats sources (the others keep natsPending at -1). */
    const natsSources = () => listeners().filter((s) => s.natsPending >= 0);
    const outputs = () => [...this.outputs.values()];
    const counter = (name: string, help: string, labelNames: string[], read: MetricRows) => collectedCounter(reg, name, help, labelNames, read);
    const gauge = (name: string, help: string, labelNames: string[], read: MetricRows) => collectedGauge(reg, name, help, labelNames, read);
    const byCode = (rows: [string, CodeCounts][], label: string, key: string) =>
      rows.flatMap(([name, cc]) => [...cc.map].map(([code, v]) => [{ [label]: name, [key]: code }, v] as [Record<string, string>, number]));

    counter('cefd_received_bytes_total', 'Bytes read from sockets, per listener.', ['listener'], () => listeners().map((s) => [{ listener: s.name }, s.bytes]));
    counter('cefd_frames_total', 'Frames read, per listener and framing (lf, octet, datagram).', ['listener', 'framing'], () =>
      listeners().flatMap((s) => [
        [{ listener: s.name, framing: 'lf' }, s.framesLf],
        [{ listener: s.name, framing: 'octet' }, s.framesOctet],
        [{ listener: s.name, framing: 'datagram' }, s.framesDatagram],
      ]),
    );
    counter('cefd_frame_errors_total', 'Framing problems, per listener and code (frame_truncated, octet_count_too_large, frame_incomplete).', ['listener', 'code'], () =>
      byCode(listeners().map((s) => [s.name, s.frameErrors]), 'listener', 'code'),
    );
    counter('cefd_discarded_bytes_total', 'Bytes thrown away after a frame was truncated, per listener.', ['listener'], () => listeners().map((s) => [{ listener: s.name }, s.discardedBytes]));
    counter('cefd_udp_receive_dropped_total', 'UDP listeners: datagrams the kernel dropped because the socket\'s receive buffer was full (cefd read too slowly; raise receive_buffer_bytes and net.core.rmem_max, or add cores), read from /proc/net/udp at each scrape (Linux), per listener.', ['listener'], () =>
      listeners()
        .filter((s) => s.udpDropsOpen !== undefined || s.udpDropsClosed > 0)
        .map((s) => [{ listener: s.name }, s.udpDropsClosed + (s.udpDropsOpen?.() ?? 0)]),
    );
    gauge('cefd_tls_certificate_expiry_timestamp_seconds', 'TLS listeners: when the certificate the listener presents now expires (notAfter, s since the epoch), per listener; follows a SIGHUP that installed a renewed one.', ['listener'], () =>
      listeners().filter((s) => s.tlsCertificateExpiry >= 0).map((s) => [{ listener: s.name }, s.tlsCertificateExpiry]),
    );
    // Only listeners of the running configuration (a gauge of one a reload removed would
    // keep CefdSourceQuiet, deploy/prometheus/cefd-alerts.yml, joined on it, alive).
    const current = () => listeners().filter((s) => this.configured === undefined || this.configured.listeners.has(s.name));
    gauge('cefd_connections_open', 'Connections open now, per listener of the running configuration.', ['listener'], () => current().map((s) => [{ listener: s.name }, s.connectionsOpen]));
    counter('cefd_connections_accepted_total', 'Connections accepted, per listener.', ['listener'], () => listeners().map((s) => [{ listener: s.name }, s.connectionsAccepted]));
    counter('cefd_connections_rejected_total', 'Connections (or UDP datagrams) refused or closed by cefd, per listener and reason (cidr, max_connections, max_connections_per_source, evicted_no_frame, evicted_quiet, frame_timeout, tls_handshake, tls_fingerprint, tls_unauthorized, tls_on_plain_listener).', ['listener', 'reason'], () =>
      byCode(listeners().map((s) => [s.name, s.connectionsRejected]), 'listener', 'reason'),
    );
    gauge('cefd_nats_consumer_pending_messages', 'NATS sources: messages of the stream the durable consumer has not had acknowledged yet (its lag), per listener.', ['listener'], () =>
      natsSources().map((s) => [{ listener: s.name }, s.natsPending]),
    );
    counter('cefd_nats_acked_messages_total', 'NATS sources: messages acknowledged to JetStream after every output\'s buffer took their events, per listener.', ['listener'], () =>
      natsSources().map((s) => [{ listener: s.name }, s.natsAcked]),
    );
    counter('cefd_nats_redelivered_messages_total', 'NATS sources: messages received that JetStream had delivered before (to this or another processor) without an acknowledgement, per listener: their events are written again, with the same ids.', ['listener'], () =>
      natsSources().map((s) => [{ listener: s.name }, s.natsRedelivered]),
    );
    counter('cefd_nats_nacked_messages_total', 'NATS sources: messages given back to JetStream (negative acknowledgement) to be delivered again, per listener: the outputs refused their events (a full drop_newest queue), the KSC work they started could not be published, or cefd stopped before they were taken.', ['listener'], () =>
      natsSources().map((s) => [{ listener: s.name }, s.natsNaked]),
    );
    counter('cefd_nats_in_progress_acks_total', 'NATS sources: in-progress acknowledgements sent (one per message handed to the outputs and not settled after a third of ack_wait, then every third of ack_wait up to max_in_progress), per listener: a steady rise means batches take longer than a third of ack_wait to settle.', ['listener'], () =>
      natsSources().map((s) => [{ listener: s.name }, s.natsInProgress]),
    );
    counter('cefd_nats_consumer_recreated_total', 'NATS sources: times the durable consumer was gone (deleted while cefd ran) and was made again from the first stream sequence this processor may not have processed, per listener.', ['listener'], () =>
      natsSources().map((s) => [{ listener: s.name }, s.natsConsumerRecreated]),
    );
    counter('cefd_events_parsed_total', 'Frames that became events, per listener.', ['listener'], () => listeners().map((s) => [{ listener: s.name }, s.eventsParsed]));
    counter('cefd_parse_errors_total', 'Parse errors, per listener and code: unparseable frames (dead-lettered) and errors on kept events.', ['listener', 'code'], () =>
      byCode(listeners().map((s) => [s.name, s.parseErrors]), 'listener', 'code'),
    );
    counter('cefd_parse_warnings_total', 'Warnings on kept events, per listener and code.', ['listener', 'code'], () =>
      byCode(listeners().map((s) => [s.name, s.parseWarnings]), 'listener', 'code'),
    );
    gauge('cefd_last_event_received_timestamp_seconds', 'Unix time of the last event received, per listener.', ['listener'], () =>
      listeners().filter((s) => s.lastEventMs > 0).map((s) => [{ listener: s.name }, s.lastEventMs / 1000]),
    );
    counter('cefd_events_normalized_total', 'Events a normalizer accepted, per normalizer and event type.', ['normalizer', 'type'], () =>
      byCode([...this.normalized.entries()], 'normalizer', 'type'),
    );
    counter('cefd_normalizer_errors_total', 'Normalizer calls that threw, per normalizer.', ['normalizer'], () => [...this.normalizerErrors.map].map(([n, v]) => [{ normalizer: n }, v]));
    counter('cefd_output_sent_events_total', 'Events an output delivered.', ['output'], () => outputs().map((s) => [{ output: s.name }, s.sent]));
    counter('cefd_output_retried_events_total', 'Events in batches an output will send again after a failure.', ['output'], () => outputs().map((s) => [{ output: s.name }, s.retried]));
    counter('cefd_output_rejected_events_total', 'Events an output rejected for good (dead-lettered), per reason.', ['output', 'reason'], () =>
      byCode(outputs().map((s) => [s.name, s.rejected]), 'output', 'reason'),
    );
    counter('cefd_output_dropped_events_total', 'Events dropped (queue full with when_full: drop_newest, or shutdown with an output down), or delivered earlier but no longer vouched for (syslog_unconfirmed, file_fsync_failed), per reason.', ['output', 'reason'], () =>
      byCode(outputs().map((s) => [s.name, s.dropped]), 'output', 'reason'),
    );
    counter('cefd_output_encode_problems_total', 'What an output\'s encoding could not carry, per code (encode_key_dropped: a key the cef or ecs encoding cannot write, left out; encode_field_cut: a value cut to KUMA\'s length limit, or trailing blanks cef cannot carry; encode_value_moved: a value kuma moved to Extra; encode_key_renamed: a value kuma wrote under another Extra key, its own being taken).', ['output', 'code'], () =>
      byCode(outputs().map((s) => [s.name, s.encodeProblems]), 'output', 'code'),
    );
    gauge('cefd_output_queue_events', 'Events waiting in an output\'s queue.', ['output'], () => outputs().map((s) => [{ output: s.name }, s.queued]));
    gauge('cefd_output_queue_capacity_events', 'Capacity of an output\'s queue.', ['output'], () => outputs().map((s) => [{ output: s.name }, s.capacity]));
    gauge('cefd_output_retrying', '1 while an output is failing and retrying.', ['output'], () => outputs().map((s) => [{ output: s.name }, s.retrying]));
    gauge('cefd_buffer_bytes', 'Bytes in an output\'s disk buffer (its segment files, events held in memory after a write error, and the part of a shutdown spill file not yet taken back).', ['output'], () =>
      outputs().filter((s) => s.queue?.bytes !== undefined).map((s) => [{ output: s.name }, s.queue!.bytes!]),
    );
    gauge('cefd_buffer_max_bytes', 'Size limit of an output\'s disk buffer.', ['output'], () => outputs().filter((s) => s.bufferMaxBytes > 0).map((s) => [{ output: s.name }, s.bufferMaxBytes]));
    gauge('cefd_buffer_degraded', '1 while an output\'s disk buffer cannot be written (events held in memory, reading paused).', ['output'], () =>
      outputs().filter((s) => s.bufferMaxBytes > 0).map((s) => [{ output: s.name }, s.bufferDegraded]),
    );
    counter('cefd_buffer_write_errors_total', 'Failed writes to an output\'s disk buffer.', ['output'], () => outputs().map((s) => [{ output: s.name }, s.bufferWriteErrors]));
    counter('cefd_buffer_corrupt_bytes_total', 'Corrupt or truncated bytes skipped in an output\'s disk buffer.', ['output'], () => outputs().map((s) => [{ output: s.name }, s.bufferCorruptBytes]));
    counter('cefd_buffer_replayed_events_total', 'Undelivered events found in an output\'s disk buffer at start, delivered after the restart.', ['output'], () => outputs().map((s) => [{ output: s.name }, s.bufferReplayed]));
    gauge('cefd_buffer_orphaned_bytes', 'Undelivered bytes in a disk buffer (and spill file) of an output the configuration no longer has: events nothing delivers (checked at start and after each reload; cefd buffers lists them).', ['output'], () =>
      [...this.orphanedBuffers].map(([output, bytes]) => [{ output }, bytes]),
    );
    gauge('cefd_ingestion_paused', '1 while reading from sockets is paused because an output queue is full.', [], () => [[{}, this.paused ? 1 : 0]]);
    counter('cefd_ingestion_paused_seconds_total', 'Time reading was paused.', [], () => [[{}, (this.pausedTotalMs + (this.paused ? Date.now() - this.pausedSinceMs : 0)) / 1000]]);
    counter('cefd_dead_letters_total', 'Records written to the dead-letter output, per reason code.', ['reason'], () => [...this.deadLetters.map].map(([r, v]) => [{ reason: r }, v]));
    // The info-metric idiom: join on it to label other series with the running version.
    gauge('cefd_build_info', 'Always 1; the labels say which cefd runs (version) on which Node.js (node_version).', ['version', 'node_version'], () => [[{ version: VERSION, node_version: process.versions.node }, 1]]);
    counter('cefd_config_reloads_total', 'Configuration reloads (SIGHUP), per result (ok, failed).', ['result'], () => [...this.reloads.map].map(([r, v]) => [{ result: r }, v]));
  }
}
