/**
 * TCP and TLS listeners: sockets in, frames out. Each connection has its own framer (LF or
 * RFC 6587 octet counting, detected per frame) and reads are handed to the pipeline one
 * chunk at a time, so events keep their order per connection. The source address is
 * checked against the allowlist before anything else (before the TLS handshake), and the
 * connection limit is enforced here so refusals are counted.
 */
import net from 'node:net';
import tls from 'node:tls';
import { constants as cryptoConstants } from 'node:crypto';
import { Framer } from '../../codecs/framing/framer.js';
import type { StreamListenerConfig } from './config.js';
import { peerOf, type Source } from '../source.js';
import type { Normalizer } from '../../pipeline/normalize.js';
import type { FlowControl } from '../../pipeline/flow-control.js';
import type { Pipeline, SourceContext } from '../../pipeline/pipeline.js';
import type { ListenerStats, Telemetry } from '../../telemetry/telemetry.js';
import { AddressAllowlist } from '../shared/cidr.js';
import { cleanOpenSslText, handshakeReason, loadTlsMaterial, pinnedCertificateProblem, verifyReason } from './tls-material.js';
import { inheritedSocket } from '../shared/systemd.js';

interface Conn {
  socket: net.Socket;
  /** Its slot: when it last sent a byte (lastDataMs), whether cefd reads it. */
  slot: Slot;
  unregister: () => void;
  /** Stopping: never resume this socket again (a paused one stays paused). */
  halt: () => void;
  /** Whether the socket is paused (backpressure, or halted while paused). */
  paused: () => boolean;
  /** Hands what Node already read from the kernel (user space) to the framer. */
  flush: () => void;
}

/** A raw accepted socket, counted against the limits from accept on (TLS: before the handshake). */
interface Slot {
  socket: net.Socket;
  source: string;
  /** Complete frames this connection delivered: 0 marks a slowloris candidate. */
  frames: number;
  peer: string;
  /** Being served (TLS: the handshake is done). */
  served?: boolean;
  /** When it was accepted (ms): a handshake gets a moment before it counts as slow. */
  acceptedMs: number;
  /**
   * When it last sent a byte, or cefd last began reading it again (ms): the idle timeout,
   * the stop's quiet check, and evict_quiet_after (the quietest goes first) count from it.
   */
  lastDataMs: number;
  /** Holds part of a frame (or is skipping the rest of a cut one). */
  inFrame: () => boolean;
  /** cefd reads it (false while paused by backpressure: quiet then is not the sender's doing). */
  reading: boolean;
}

/** Normalizes `AA:bb:..` / `aabb..` fingerprints. */
export function normalizeFingerprint(fp: string): string {
  return fp.replace(/:/g, '').toUpperCase();
}

export class StreamSource implements Source {
  readonly name: string;
  private server: net.Server | null = null;
  private readonly conns = new Set<Conn>();
  /** Raw sockets counted against the limits, oldest first (a Set keeps insertion order). */
  private readonly slots = new Set<Slot>();
  private readonly perSource = new Map<string, number>();
  /** Slots by peer `address:port`, to find a TLS socket's raw slot after the handshake. */
  private readonly slotByPeer = new Map<string, Slot>();
  private readonly stats: ListenerStats;
  private readonly allow: AddressAllowlist;
  private readonly fingerprints: Set<string>;
  /**
   * Raw sockets cefd closed before their TLS handshake ended (allowlist, limits, eviction,
   * stop): Node then reports a handshake error (ECONNRESET) for them, which is not one.
   */
  private readonly closedHere = new WeakSet<net.Socket>();
  private stopping = false;
  ready = false;

  constructor(
    readonly config: StreamListenerConfig,
    private readonly pipeline: Pipeline,
    private readonly flow: FlowControl,
    private readonly telemetry: Telemetry,
    private readonly normalizers: readonly Normalizer[],
  ) {
    this.name = config.name;
    this.stats = telemetry.listener(config.name);
    this.allow = new AddressAllowlist(config.allowed_cidrs);
    this.fingerprints = new Set((config.tls?.client_fingerprints ?? []).map(normalizeFingerprint));
  }

  /** Throws TlsMaterialError (the daemon checked the files before; they may have changed since). */
  private tlsOptions(): tls.TlsOptions {
    const t = this.config.tls!;
    const m = loadTlsMaterial(this.name, t);
    this.noteCertificate(m.notAfter);
    if (m.keyReadableByOthers) {
      this.telemetry.log.warn(
        { listener: this.name, code: 'tls_key_readable_by_others', file: t.key_file },
        `listener ${this.name}: the private key ${t.key_file} is not encrypted and every user on this host can read it: chmod o-r ${t.key_file} (cefd's user or group must keep read access)`,
      );
    }
    const opts: tls.TlsOptions = {
      cert: m.cert,
      key: m.key,
      minVersion: t.min_version,
      ciphers: t.ciphers,
      honorCipherOrder: true,
      // No client-initiated renegotiation (TLS 1.2): each one is a full handshake at the
      // listener's CPU cost on an open connection, and Node only reports it (an error
      // event, not a close) after the third in ten minutes. Syslog senders never need it.
      secureOptions: cryptoConstants.SSL_OP_NO_RENEGOTIATION,
      handshakeTimeout: Math.round(t.handshake_timeout * 1000),
      requestCert: t.client_auth !== 'none' || this.fingerprints.size > 0,
      // Client certificates are checked after the handshake (secured()), before a byte is
      // read: that way the log says why (expired, unknown CA, no certificate), which
      // OpenSSL's own rejection hides behind "socket hang up". Node's OpenSSL verify
      // callback accepts every certificate on a server, so rejectUnauthorized would not
      // make OpenSSL send an alert either (see refuse()). Pinned fingerprints replace CA
      // verification (KSC presents a self-signed certificate).
      rejectUnauthorized: false,
    };
    if (m.ca !== undefined) opts.ca = m.ca;
    if (m.crl !== undefined) opts.crl = m.crl;
    return opts;
  }

  /** Days before its expiry from which the listener's certificate is warned about at start and reload. */
  private static readonly EXPIRY_WARN_DAYS = 14;

  /**
   * The expiry of the certificate about to be installed: the gauge (an alert can watch it,
   * and it shows a SIGHUP installed the renewed one), and a warning when it has expired or
   * expires soon: OpenSSL serves an expired certificate without a word, and every client
   * then fails its handshake.
   */
  private noteCertificate(notAfter: string): void {
    const ms = Date.parse(notAfter);
    if (!Number.isFinite(ms)) return;
    this.pendingExpiry = ms;
    const days = (ms - Date.now()) / 86_400_000;
    if (days < StreamSource.EXPIRY_WARN_DAYS) {
      const when = new Date(ms).toISOString();
      this.telemetry.log.warn(
        { listener: this.name, code: 'tls_certificate_expiring', not_after: when, file: this.config.tls!.cert_file },
        days <= 0 ? `listener ${this.name}: its certificate ${this.config.tls!.cert_file} expired on ${when}: clients will refuse it; install a renewed one and send SIGHUP` : `listener ${this.name}: its certificate ${this.config.tls!.cert_file} expires on ${when} (in ${Math.floor(days)} days): install a renewed one and send SIGHUP`,
      );
    }
  }

  /** The expiry of the certificate loaded last (installed once the server or setSecureContext took it). */
  private pendingExpiry = -1;

  async start(): Promise<void> {
    const isTls = this.config.type === 'tls';
    const server = isTls ? tls.createServer(this.tlsOptions()) : net.createServer();
    this.server = server;
    server.on('connection', (raw: net.Socket) => this.accept(raw, isTls));
    if (isTls) {
      server.on('secureConnection', (s: tls.TLSSocket) => this.secured(s));
      // A listener that needs a client certificate: under TLS 1.3 OpenSSL itself refuses a
      // client that sends none, with a `certificate_required` alert (see requireCertificate()).
      if (this.config.tls!.client_auth === 'required' || this.fingerprints.size > 0) server.on('keylog', (_line: Buffer, s: tls.TLSSocket) => this.requireCertificate(s));
      server.on('tlsClientError', (err: Error, s: tls.TLSSocket) => {
        if ((err as NodeJS.ErrnoException).code === 'ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE') {
          // Refused by OpenSSL (requireCertificate()): counted as the refusal it is.
          const pinned = this.fingerprints.size > 0;
          this.telemetry.connectionRejected(this.name, pinned ? 'tls_fingerprint' : 'tls_unauthorized', `${peerOf(s.remoteAddress, s.remotePort)}: no client certificate`, { code: 'tls_no_client_certificate' });
          s.destroy();
          return;
        }
        // A connection cefd closed itself, counted under its own reason already.
        if (this.closedHere.has((s as unknown as { _parent?: net.Socket })._parent!)) {
          s.destroy();
          return;
        }
        // OpenSSL's text has error numbers, source paths and a newline: log the code only.
        const { code, cause } = handshakeReason(err);
        this.telemetry.connectionRejected(this.name, 'tls_handshake', `${peerOf(s.remoteAddress, s.remotePort)}: ${code} (${cause})`, { code, cause });
        s.destroy();
      });
      if (this.config.tls!.allow_insecure_pinned_certificates && this.fingerprints.size > 0) {
        this.telemetry.log.warn(
          { listener: this.name },
          `listener ${this.name}: allow_insecure_pinned_certificates is on: pinned client certificates are accepted even when expired or with weak keys`,
        );
      }
    }
    // A socket systemd holds (deploy/cefd.socket) survives restarts: see shared/systemd.ts.
    const inherited = inheritedSocket(this.name, 'tcp', this.config.port);
    await new Promise<void>((resolve, reject) => {
      const onError = (e: Error) => reject(new Error(`listener ${this.name}: cannot listen on ${this.config.host}:${this.config.port}: ${e.message}`));
      server.once('error', onError);
      server.listen(inherited !== undefined ? { fd: inherited.fd } : { port: this.config.port, host: this.config.host, backlog: 511 }, () => {
        server.off('error', onError);
        server.on('error', (e) => this.telemetry.repeated('error', `listener_error:${this.name}`, { listener: this.name, err: e.message }, `listener ${this.name} failed: ${e.message}`));
        resolve();
      });
    });
    this.ready = true;
    if (isTls && this.pendingExpiry >= 0) this.stats.tlsCertificateExpiry = Math.floor(this.pendingExpiry / 1000);
    const a = this.server?.address();
    const where = inherited !== undefined && a !== null && typeof a === 'object' ? `${a.address}:${a.port}` : `${this.config.host}:${this.port()}`;
    this.telemetry.log.info({ listener: this.name, type: this.config.type, address: where, inherited: inherited !== undefined }, `listening for ${this.config.type} on ${where}${inherited !== undefined ? ' (socket from systemd)' : ''}`);
  }

  port(): number | undefined {
    const a = this.server?.address();
    return a !== null && typeof a === 'object' ? a.port : undefined;
  }

  /**
   * Every accepted TCP socket (TLS: before the handshake). Checks, in order: the source
   * allowlist, the per-source limit, the global limit (at which the oldest connection that
   * has not delivered a complete frame yet makes room; slowloris connections never do).
   */
  private accept(raw: net.Socket, isTls: boolean): void {
    const peer = peerOf(raw.remoteAddress, raw.remotePort);
    const source = raw.remoteAddress ?? 'unknown';
    if (!this.allow.allows(raw.remoteAddress)) {
      this.close(raw);
      this.telemetry.connectionRejected(this.name, 'cidr', peer);
      return;
    }
    if (this.stopping) {
      this.close(raw);
      return;
    }
    const fromSource = this.perSource.get(source) ?? 0;
    const perSourceMax = this.config.max_connections_per_source;
    if (perSourceMax > 0 && fromSource >= perSourceMax) {
      this.close(raw);
      this.telemetry.connectionRejected(this.name, 'max_connections_per_source', peer);
      return;
    }
    if (this.slots.size >= this.config.max_connections) {
      // The oldest slow TLS handshake first (a slowloris that has not even finished its
      // handshake after a while), then the oldest connection without a complete frame: a
      // served sender that is merely quiet (KSC keeps its connection open between events)
      // goes only when no slow handshake is left to make room. A handshake younger than
      // that is not taken first: else a flood of connections that finish their handshake
      // and idle would kill every reconnect of KSC in the middle of its handshake.
      const now = Date.now();
      // Slow: in its handshake for half of handshake_timeout already.
      const slowAfterMs = ((this.config.tls?.handshake_timeout ?? 10) * 1000) / 2;
      let victim: Slot | undefined;
      // Failing those, the connection quiet the longest, quiet for evict_quiet_after at least.
      const quietMs = Math.round(this.config.evict_quiet_after * 1000);
      let quietest: Slot | undefined;
      for (const s of this.slots) {
        if (s.served !== true && now - s.acceptedMs >= slowAfterMs) {
          victim = s;
          break;
        }
        if (s.frames === 0) victim ??= s;
        else if (quietMs > 0 && s.reading && now - s.lastDataMs >= quietMs && (quietest === undefined || s.lastDataMs < quietest.lastDataMs) && !s.inFrame()) quietest = s;
      }
      const reason = victim !== undefined ? 'evicted_no_frame' : 'evicted_quiet';
      victim ??= quietest;
      if (victim === undefined) {
        this.close(raw);
        this.telemetry.connectionRejected(this.name, 'max_connections', peer);
        return;
      }
      this.release(victim);
      this.close(victim.socket);
      this.telemetry.connectionRejected(this.name, reason, victim.peer);
    }
    const slot: Slot = { socket: raw, source, frames: 0, peer, acceptedMs: Date.now(), lastDataMs: Date.now(), inFrame: () => false, reading: true };
    this.slots.add(slot);
    this.slotByPeer.set(peer, slot);
    // Read again: an eviction above may have released a connection from this same address.
    this.perSource.set(source, (this.perSource.get(source) ?? 0) + 1);
    raw.once('close', () => this.release(slot));
    raw.setKeepAlive(true, 60_000);
    if (!isTls) this.serve(raw, peer, slot);
  }

  /** Closes a raw socket cefd refuses or evicts (see closedHere). */
  private close(raw: net.Socket): void {
    this.closedHere.add(raw);
    raw.destroy();
  }

  private release(slot: Slot): void {
    if (!this.slots.delete(slot)) return;
    // The open-connections gauge follows the slots (an evicted connection stops counting at
    // once, not when its socket's close event comes), so it never shows more than the limit.
    if (slot.served === true) this.stats.connectionsOpen--;
    if (this.slotByPeer.get(slot.peer) === slot) this.slotByPeer.delete(slot.peer);
    const n = (this.perSource.get(slot.source) ?? 1) - 1;
    if (n <= 0) this.perSource.delete(slot.source);
    else this.perSource.set(slot.source, n);
  }

  private secured(s: tls.TLSSocket): void {
    const peer = peerOf(s.remoteAddress, s.remotePort);
    if (this.stopping) {
      // A handshake that finished after stop() began: not served.
      s.destroy();
      return;
    }
    const t = this.config.tls!;
    const x509 = s.getPeerX509Certificate();
    const fp = x509 !== undefined ? normalizeFingerprint(x509.fingerprint256) : '';
    const slot = this.slotByPeer.get(peer);
    if (this.fingerprints.size > 0) {
      if (!this.fingerprints.has(fp)) {
        this.refuse(s, slot, 'tls_fingerprint', fp === '' ? 'tls_no_client_certificate' : 'tls_fingerprint_not_allowed', peer, fp, fp === '' ? 'no client certificate' : `certificate SHA-256 ${fp} is not allowed`);
        return;
      }
      // A pin names the certificate, not whether it is still fit for use: OpenSSL's
      // verdict is ignored for pinned certificates, so expiry and key strength are checked here.
      const bad = pinnedCertificateProblem(x509!, Date.now());
      if (bad !== null) {
        if (!t.allow_insecure_pinned_certificates) {
          this.refuse(s, slot, 'tls_unauthorized', bad.code, peer, fp, `pinned client certificate refused: ${bad.text}`);
          return;
        }
        this.telemetry.repeated('warn', `insecure_pin:${this.name}:${fp}:${bad.code}`, { listener: this.name, peer, code: bad.code, fingerprint: fp }, `listener ${this.name}: accepting pinned client certificate ${fp} although ${bad.text} (allow_insecure_pinned_certificates)`);
      }
    } else if (t.client_auth !== 'none' && !s.authorized) {
      const presented = x509 !== undefined;
      if (presented || t.client_auth === 'required') {
        const why = presented ? String(s.authorizationError) : 'no client certificate';
        this.refuse(s, slot, 'tls_unauthorized', presented ? verifyReason(why) : 'tls_no_client_certificate', peer, fp, `client certificate refused: ${why}`);
        return;
      }
    }
    // The TLS socket wraps the raw one accepted (and counted) in accept().
    this.serve(s, peer, slot ?? { socket: s, source: s.remoteAddress ?? 'unknown', frames: 1, peer, acceptedMs: Date.now(), lastDataMs: Date.now(), inFrame: () => false, reading: true }, fp === '' ? undefined : fp);
  }

  /** Sockets requireCertificate() has seen (the keylog event comes several times per handshake). */
  private readonly certRequired = new WeakSet<tls.TLSSocket>();

  /**
   * Makes OpenSSL refuse, inside the handshake, a client that sends no certificate where
   * one is needed (`client_auth: required`, or pinned fingerprints): it then sends the
   * `certificate_required` alert (TLS 1.3), which the client reports as that, instead of
   * the reset refuse() can give after the handshake. Node sets OpenSSL's "fail if no peer
   * certificate" flag only together with `rejectUnauthorized`, which would also close
   * connections with a refused certificate without saying why (and under TLS 1.3 with what
   * looks like a clean close): so the flag is set per connection here, from the first
   * `keylog` event, which under TLS 1.3 comes before the client's certificate (under TLS
   * 1.2 after it: too late, refuse() handles it). `setVerifyMode` is Node's own binding
   * (what `rejectUnauthorized` calls); where it is missing, refuse() handles it too.
   * A presented certificate is never refused inside the handshake: Node's OpenSSL verify
   * callback accepts every one (docs/security.md).
   */
  private requireCertificate(s: tls.TLSSocket): void {
    if (this.certRequired.has(s)) return;
    this.certRequired.add(s);
    const handle = (s as unknown as { _handle?: { setVerifyMode?: (requestCert: boolean, failIfNoCert: boolean) => void } })._handle;
    if (typeof handle?.setVerifyMode === 'function') handle.setVerifyMode(true, true);
  }

  /**
   * Refuses a client after the handshake. Under TLS 1.3 the client finished its handshake
   * before it sent its certificate, and Node cannot make OpenSSL send an alert for a
   * certificate it accepted: a plain close would look like a clean end of the session to
   * the client (KSC would count its events as delivered). The TCP connection is reset
   * instead (RST), which every TLS client reports as an error. See docs/security.md.
   */
  private refuse(s: tls.TLSSocket, slot: Slot | undefined, reason: 'tls_fingerprint' | 'tls_unauthorized', code: string, peer: string, fp: string, text: string): void {
    this.telemetry.connectionRejected(this.name, reason, `${peer}: ${text}`, { code, ...(fp !== '' ? { fingerprint: fp } : {}) });
    const raw = slot?.socket;
    if (raw !== undefined && raw !== s && !raw.destroyed) {
      // Only the raw socket: destroying the TLS socket on top of a reset TCP handle crashes
      // Node 20 (the TLS socket closes by itself when its stream ends).
      raw.resetAndDestroy();
    } else {
      s.destroy();
    }
  }

  private serve(socket: net.Socket, peer: string, slot: Slot, tlsFingerprint?: string): void {
    slot.served = true;
    const stats = this.stats;
    stats.connectionsAccepted++;
    stats.connectionsOpen++;
    // Two reasons to stop reading: a full output queue (flow control) and too many reads
    // of this connection on the decode workers (the pipeline). Read only when neither holds.
    let flowPaused = false;
    let pipelinePaused = false;
    // Stopping: once paused, a socket is never resumed (what its kernel buffer holds is
    // the sender's to resend: docs/reliability.md).
    let halted = false;
    let haltedPaused = false;
    const idleMs = Math.round(this.config.idle_timeout * 1000);
    // frame_timeout: a timer from a frame's first byte, while we read (a slowloris sender
    // starts frames and never ends them, and idle_timeout, off by default, never fires on
    // it). `frameMark` is the framer's count of frames begun when it was set: another count
    // means another frame, with a timer of its own (also after a cut line or an empty one,
    // which emit nothing when they end).
    const frameMs = Math.round(this.config.frame_timeout * 1000);
    let frameTimer: NodeJS.Timeout | undefined;
    let frameMark = -1;
    const stopFrameTimer = () => {
      if (frameTimer !== undefined) clearTimeout(frameTimer);
      frameTimer = undefined;
    };
    // A frame cut at max_frame_bytes whose rest is being skipped counts too: else a sender
    // could hold the connection by dribbling bytes that never end the cut line.
    const inFrame = () => framer.midFrame || framer.discarding;
    slot.inFrame = inFrame;
    const watchFrame = () => {
      if (frameMs <= 0) return;
      if (!inFrame() || socket.isPaused()) {
        stopFrameTimer();
        return;
      }
      if (frameTimer !== undefined && frameMark === framer.framesBegun) return;
      stopFrameTimer();
      frameMark = framer.framesBegun;
      frameTimer = setTimeout(() => {
        frameTimer = undefined;
        // Reads already waiting (a starved CPU) are handled first: decide after the poll.
        setImmediate(() => {
          if (socket.destroyed || halted || socket.isPaused() || socket.readableLength > 0 || !inFrame() || frameMark !== framer.framesBegun) {
            watchFrame();
            return;
          }
          const partial = framer.takePartial();
          if (partial !== null) pipeline.deadLetterFrame(partial, 'frame_timeout', `frame not ended within frame_timeout (${this.config.frame_timeout}s)`, ctx, true);
          pipeline.commit(ctx);
          telemetry.connectionRejected(this.name, 'frame_timeout', peer);
          socket.destroy();
        });
      }, frameMs);
      frameTimer.unref();
    };
    const apply = () => {
      if (halted && (haltedPaused || flowPaused || pipelinePaused)) {
        haltedPaused = true;
        socket.pause();
        stopFrameTimer();
        return;
      }
      if (flowPaused || pipelinePaused) {
        socket.pause();
        // Not idle: we stopped reading. The idle timeout waits until we read again.
        if (idleMs > 0) socket.setTimeout(0);
        slot.reading = false;
      } else {
        socket.resume();
        if (idleMs > 0) socket.setTimeout(idleMs);
        // Quiet (evict_quiet_after) counts from here: the time we did not read is not the sender's.
        if (!slot.reading) slot.lastDataMs = Date.now();
        slot.reading = true;
      }
      // While we do not read, the sender cannot end its frame: that time does not count.
      stopFrameTimer();
      watchFrame();
    };
    const ctx: SourceContext = {
      listener: this.name,
      stats,
      normalizers: this.normalizers,
      peer,
      ...(tlsFingerprint !== undefined ? { tlsFingerprint } : {}),
      pause: () => {
        pipelinePaused = true;
        apply();
      },
      resume: () => {
        pipelinePaused = false;
        apply();
      },
    };
    const pipeline = this.pipeline;
    const telemetry = this.telemetry;
    const framer = new Framer(
      {
        frame: (b, mode, truncated) => {
          slot.frames++;
          pipeline.frame(b, mode, truncated, ctx);
        },
        discarded: (n) => {
          stats.discardedBytes += n;
        },
        notice: (code) => {
          if (code !== 'frame_empty') telemetry.frameProblem(this.name, code, peer);
        },
      },
      { maxFrameBytes: this.config.max_frame_bytes },
    );
    // A TLS client on a plain TCP listener: its ClientHello (a TLS handshake record, 0x16
    // then version major 3) would be cut at every 0x0A into dozens of binary "frames",
    // each a dead letter, while the client waits for a ServerHello until frame_timeout.
    // No syslog or CEF frame begins with 0x16. Checked on the first chunk only.
    let firstChunk = this.config.type === 'tcp';
    const onData = (chunk: Buffer) => {
      if (firstChunk) {
        firstChunk = false;
        if (chunk.length >= 2 && chunk[0] === 0x16 && chunk[1] === 0x03) {
          telemetry.connectionRejected(this.name, 'tls_on_plain_listener', `${peer}: a TLS client on a plain TCP listener (make the listener type: tls, or the sender send plain TCP)`, { code: 'tls_on_plain_listener' });
          socket.removeListener('data', onData);
          socket.destroy();
          return;
        }
      }
      stats.bytes += chunk.length;
      slot.lastDataMs = Date.now();
      framer.push(chunk);
      pipeline.commit(ctx);
      watchFrame();
    };
    const conn: Conn = {
      socket,
      slot,
      unregister: () => {},
      halt: () => {
        halted = true;
        if (idleMs > 0) socket.setTimeout(0);
        apply();
      },
      paused: () => haltedPaused || flowPaused || pipelinePaused,
      flush: () => {
        // Only what is already in the stream's buffer (read() past it would ask the
        // kernel); read() emits 'data', which hands the chunk to onData.
        while (socket.readableLength > 0) {
          if (socket.read(socket.readableLength) === null) break;
        }
      },
    };
    this.conns.add(conn);
    conn.unregister = this.flow.register({
      pause: () => {
        flowPaused = true;
        apply();
      },
      resume: () => {
        flowPaused = false;
        apply();
      },
    });
    // A connection error (a fatal TLS alert, a reset): the bytes of a frame in progress
    // are not a whole frame, whatever comes after (see 'error' below).
    let broken: string | undefined;
    socket.on('data', onData);
    socket.on('end', () => {
      if (broken !== undefined) return;
      // The sender closed its side: its last frame may lack a terminator (emitted as is);
      // an octet count whose frame never began is kept as a dead letter. Over TLS also
      // without close_notify, as at a TCP FIN (docs/framing.md, "End of stream").
      const left = framer.end();
      if (left !== null) pipeline.deadLetterFrame(left, 'frame_incomplete_at_close', 'connection closed after an octet count, before its frame', ctx, true);
      pipeline.commit(ctx);
      socket.end();
    });
    socket.on('error', (e) => {
      const code = (e as NodeJS.ErrnoException).code ?? 'error';
      broken = code;
      // OpenSSL's text has error numbers, a source path and a newline: its reason only.
      if (code !== 'ECONNRESET') telemetry.connectionError(this.name, peer, code, cleanOpenSslText(e.message));
      // Node closes a socket on a TCP error, but a TLS socket only on an error in its
      // handshake: after it (a bad record MAC, a fatal alert) it stays open and would
      // still read. The session is over (RFC 8446 section 6): the frames Node read before
      // the error (held while paused) go on, as at a stop; then it is closed, and 'close'
      // below dead-letters the frame in progress.
      if (!socket.destroyed) conn.flush();
      socket.destroy();
    });
    socket.on('close', () => {
      stopFrameTimer();
      // A connection that died mid-frame: keep the bytes in the dead-letter output.
      const partial = framer.takePartial();
      if (partial !== null) {
        pipeline.deadLetterFrame(partial, 'frame_incomplete_at_close', broken === undefined ? 'connection closed in the middle of a frame' : `connection broken (${broken}) in the middle of a frame`, ctx);
        pipeline.commit(ctx);
      }
      this.release(slot);
      conn.unregister();
      this.conns.delete(conn);
    });
    if (idleMs > 0) {
      socket.on('timeout', () => {
        // After a stall (a starved CPU) this timer can fire before the reads already waiting
        // are handled: decide after the event loop has polled the sockets (setImmediate runs
        // after the poll phase), from when data last came.
        setImmediate(() => {
          if (socket.destroyed || flowPaused || pipelinePaused) return;
          if (Date.now() - slot.lastDataMs < idleMs || socket.readableLength > 0) {
            socket.setTimeout(idleMs);
            return;
          }
          telemetry.log.debug({ listener: this.name, peer }, 'closing an idle connection');
          socket.end();
          socket.destroySoon();
        });
      });
      if (!flowPaused && !pipelinePaused) socket.setTimeout(idleMs);
    }
  }

  reload(): boolean {
    if (this.config.type !== 'tls' || this.server === null) return true;
    try {
      (this.server as tls.Server).setSecureContext(this.tlsOptions() as tls.SecureContextOptions);
      if (this.pendingExpiry >= 0) this.stats.tlsCertificateExpiry = Math.floor(this.pendingExpiry / 1000);
      this.telemetry.log.info({ listener: this.name }, `listener ${this.name}: certificates reloaded`);
      return true;
    } catch (e) {
      this.telemetry.log.error({ listener: this.name, err: (e as Error).message }, `${(e as Error).message}; keeping the old certificate and key`);
      return false;
    }
  }

  /**
   * Stops accepting at once and stops reading: a socket paused by backpressure is never
   * resumed (what its kernel buffer holds stays unread; the close resets the connection,
   * so the sender knows it was not delivered and sends it again: docs/reliability.md). A
   * socket still reading (no backpressure) may finish what it is reading until it is
   * quiet, pauses, or `graceMs` ends. What Node already read (user space) is handed to the
   * pipeline before the socket is closed; the daemon decodes it or keeps it (spill.ts).
   */
  async stop(graceMs: number): Promise<void> {
    this.stopping = true;
    this.ready = false;
    const server = this.server;
    const closed = server === null ? Promise.resolve() : new Promise<void>((r) => server.close(() => r()));
    const deadline = Date.now() + graceMs;
    const QUIET_MS = 200;
    // Handshakes still in progress will not be served.
    for (const slot of this.slots) if (!slot.served) this.close(slot.socket);
    const haltedAt = Date.now();
    for (const c of this.conns) {
      c.slot.lastDataMs = Math.max(c.slot.lastDataMs, haltedAt);
      c.halt();
    }
    while (this.conns.size > 0 && Date.now() < deadline) {
      // Let the event loop poll the sockets first: after a stall (a starved CPU) this timer
      // can fire before reads that already happened, and a connection would look quiet.
      await new Promise((r) => setImmediate(r));
      const now = Date.now();
      let busy = false;
      for (const c of this.conns) {
        if (c.paused() || (now - c.slot.lastDataMs >= QUIET_MS && c.socket.readableLength === 0)) continue;
        busy = true;
      }
      if (!busy) break;
      await new Promise((r) => setTimeout(r, 25));
    }
    for (const c of this.conns) {
      c.flush();
      c.socket.destroy();
    }
    // Let 'close' handlers run (they dead-letter partial frames).
    await new Promise((r) => setImmediate(r));
    let t: NodeJS.Timeout | undefined;
    await Promise.race([closed, new Promise((r) => (t = setTimeout(r, 1000)))]);
    clearTimeout(t);
    this.server = null;
  }
}
