/**
 * UDP listener (RFC 5426): one message per datagram, or several LF-separated ones (no
 * octet counting in datagrams). UDP cannot be paused: while outputs are blocked, datagrams
 * are still read and queued up to the queues' hard limit, beyond which they are dropped
 * and counted (rather than left to overflow the kernel buffer). When cefd reads too slowly
 * (decoding is the bottleneck) the kernel drops them: counted too, from /proc/net/udp
 * (kernel-drops.ts, cefd_udp_receive_dropped_total).
 */
import dgram from 'node:dgram';
import { isIP } from 'node:net';
import { Framer } from '../../codecs/framing/framer.js';
import type { UdpListenerConfig } from './config.js';
import type { Normalizer } from '../../pipeline/normalize.js';
import type { Pipeline, SourceContext } from '../../pipeline/pipeline.js';
import type { ListenerStats, Telemetry } from '../../telemetry/telemetry.js';
import { AddressAllowlist } from '../shared/cidr.js';
import { inheritedSocket } from '../shared/systemd.js';
import { peerOf, type Source } from '../source.js';
import { SenderContexts } from './senders.js';
import { kernelDropReader } from './kernel-drops.js';

export class UdpSource implements Source {
  readonly name: string;
  private socket: dgram.Socket | null = null;
  private readonly stats: ListenerStats;
  private readonly allow: AddressAllowlist;
  ready = false;

  constructor(
    readonly config: UdpListenerConfig,
    private readonly pipeline: Pipeline,
    private readonly telemetry: Telemetry,
    private readonly normalizers: readonly Normalizer[],
  ) {
    this.name = config.name;
    this.stats = telemetry.listener(config.name);
    this.allow = new AddressAllowlist(config.allowed_cidrs);
  }

  async start(): Promise<void> {
    // A socket systemd holds (deploy/cefd.socket) keeps receiving while cefd restarts.
    const inherited = inheritedSocket(this.name, 'udp', this.config.port);
    const family = inherited?.family ?? isIP(this.config.host);
    const type = family === 6 ? 'udp6' : 'udp4';
    // SO_RCVBUF is set after the bind (setReceiveBuffer), not with createSocket's
    // recvBufferSize: dgram applies that one inside its bind callback, where a refusal is
    // an uncaught exception that ends the process.
    const socket = dgram.createSocket({ type });
    this.socket = socket;
    // One context per sender (bounded; senders.ts), so each sender's datagrams stay in
    // order even when senders interleave; their frames are committed once per event-loop turn.
    const contexts = new SenderContexts();
    const dirty = new Set<SourceContext>();
    let scheduled = false;
    let ctx: SourceContext = { listener: this.name, stats: this.stats, normalizers: this.normalizers, peer: '' };
    const flush = () => {
      scheduled = false;
      for (const c of dirty) this.pipeline.commit(c, false);
      dirty.clear();
    };
    const framer = new Framer(
      {
        frame: (b, _mode, truncated) => this.pipeline.frame(b, 'datagram', truncated, ctx),
        discarded: (n) => {
          this.stats.discardedBytes += n;
        },
        notice: () => {},
      },
      { maxFrameBytes: this.config.max_frame_bytes, octetCounting: false },
    );
    socket.on('message', (msg, rinfo) => {
      const peer = peerOf(rinfo.address, rinfo.port);
      let c = contexts.get(peer);
      if (c === undefined) {
        // A sender with a context passed the allowlist already.
        if (!this.allow.allows(rinfo.address)) {
          this.telemetry.connectionRejected(this.name, 'cidr', peer);
          return;
        }
        c = { listener: this.name, stats: this.stats, normalizers: this.normalizers, peer };
        contexts.add(peer, c);
      }
      this.stats.bytes += msg.length;
      ctx = c;
      framer.push(msg);
      framer.end();
      if (!this.pipeline.onWorkers) {
        // Decoded here and now: commit now (the records and counts are this datagram's).
        this.pipeline.commit(c, false);
        return;
      }
      dirty.add(c);
      if (!scheduled) {
        scheduled = true;
        setImmediate(flush);
      }
    });
    socket.on('error', (e) => this.telemetry.repeated('error', `udp_error:${this.name}`, { listener: this.name, err: e.message }, `udp listener ${this.name}: ${e.message}`));
    await new Promise<void>((resolve, reject) => {
      const onError = (e: Error) => reject(new Error(`listener ${this.name}: cannot bind udp ${this.config.host}:${this.config.port}: ${e.message}`));
      socket.once('error', onError);
      socket.bind(inherited !== undefined ? { fd: inherited.fd } : { port: this.config.port, address: this.config.host, exclusive: true }, () => {
        socket.off('error', onError);
        resolve();
      });
    });
    // A socket from systemd keeps the buffer its unit gave it (ReceiveBuffer=, set with
    // SO_RCVBUFFORCE past net.core.rmem_max, and kept across restarts): setting it here
    // would cap it at rmem_max, shrinking it (deploy/cefd.socket).
    if (this.config.receive_buffer_bytes > 0 && inherited === undefined) this.setReceiveBuffer(socket, this.config.receive_buffer_bytes);
    const drops = kernelDropReader(this.port() ?? 0, type === 'udp6' ? 6 : 4);
    if ('read' in drops) this.stats.udpDropsOpen = drops.read;
    else this.telemetry.log.warn({ listener: this.name, err: drops.why }, `udp listener ${this.name}: datagrams the kernel drops cannot be counted (cefd_udp_receive_dropped_total): ${drops.why}`);
    if (inherited !== undefined && this.config.receive_buffer_bytes > 0) {
      // Linux reports twice the size asked for (the kernel's bookkeeping is counted in).
      const has = Math.floor(socket.getRecvBufferSize() / 2);
      if (has < this.config.receive_buffer_bytes) {
        this.telemetry.log.warn(
          { listener: this.name, receiveBufferBytes: has, configured: this.config.receive_buffer_bytes },
          `udp listener ${this.name}: the socket from systemd has a receive buffer of ${has} bytes, less than receive_buffer_bytes (${this.config.receive_buffer_bytes}); cefd keeps the unit's size: set ReceiveBuffer= in the socket unit (deploy/cefd.socket)`,
        );
      }
    }
    this.ready = true;
    const where = `${inherited !== undefined ? socket.address().address : this.config.host}:${this.port()}`;
    this.telemetry.log.info({ listener: this.name, type: 'udp', address: where, inherited: inherited !== undefined }, `listening for udp on ${where}${inherited !== undefined ? ' (socket from systemd)' : ''}`);
  }

  /**
   * SO_RCVBUF: a size the kernel or Node refuses (the config caps it: MAX_RECEIVE_BUFFER_BYTES
   * in config.ts) leaves the OS default, with a warning; the listener works on. Linux caps
   * the size at net.core.rmem_max without a word (212992 bytes on a stock kernel, whatever
   * receive_buffer_bytes says): read back, a smaller buffer is a warning too.
   */
  private setReceiveBuffer(socket: dgram.Socket, bytes: number): void {
    try {
      socket.setRecvBufferSize(bytes);
    } catch (e) {
      const err = (e as Error).message;
      this.telemetry.log.warn(
        { listener: this.name, receiveBufferBytes: bytes, err },
        `udp listener ${this.name}: receive_buffer_bytes ${bytes} cannot be set (${err}); the socket keeps the OS default receive buffer`,
      );
      return;
    }
    // Linux reports twice the size asked for (the kernel's bookkeeping share), capped at twice rmem_max.
    let has: number;
    try {
      has = Math.floor(socket.getRecvBufferSize() / 2);
    } catch {
      return;
    }
    if (has < bytes) {
      this.telemetry.log.warn(
        { listener: this.name, receiveBufferBytes: has, configured: bytes },
        `udp listener ${this.name}: the kernel gave a receive buffer of ${has} bytes, less than receive_buffer_bytes (${bytes}): raise net.core.rmem_max (docs/operations.md, "UDP receive drops")`,
      );
    }
  }

  port(): number | undefined {
    try {
      return this.socket?.address().port;
    } catch {
      return undefined;
    }
  }

  reload(): boolean {
    return true;
  }

  async stop(): Promise<void> {
    this.ready = false;
    const s = this.socket;
    this.socket = null;
    // What the kernel dropped for this socket stays counted after it is closed.
    const drops = this.stats.udpDropsOpen;
    if (drops !== undefined) {
      this.stats.udpDropsClosed += drops();
      this.stats.udpDropsOpen = undefined;
    }
    if (s !== null) await new Promise<void>((r) => s.close(() => r()));
  }
}
