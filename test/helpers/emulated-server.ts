/**
 * What the HTTP API emulators (es-emulator.ts, hec-emulator.ts) share: an HTTP or HTTPS
 * server on 127.0.0.1 that can be stopped (every connection dropped: the service goes
 * down) and started again on the same port, keeping what it stored.
 */
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';

export interface EmulatedServerOptions {
  tls?: { key: Buffer | string; cert: Buffer | string };
  port?: number;
}

export abstract class EmulatedServer {
  private server: http.Server | https.Server | null = null;
  private readonly sockets = new Set<Socket>();
  port = 0;

  constructor(private readonly serverOpts: EmulatedServerOptions) {}

  /** Answers one request (the emulated API). */
  protected abstract handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void>;

  get url(): string {
    return `${this.serverOpts.tls ? 'https' : 'http'}://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const handler = (req: http.IncomingMessage, res: http.ServerResponse) => void this.handle(req, res);
    const t = this.serverOpts.tls;
    this.server = t ? https.createServer({ key: t.key, cert: t.cert }, handler) : http.createServer(handler);
    this.server.on('connection', (s: Socket) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    this.server.on('tlsClientError', () => {});
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(this.port || this.serverOpts.port || 0, '127.0.0.1', () => resolve());
    });
    this.port = (this.server.address() as AddressInfo).port;
  }

  /** Stops listening and drops every connection (the service goes down); what it stored is kept. */
  async stop(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (s === null) return;
    for (const sock of this.sockets) sock.destroy();
    await new Promise<void>((r) => s.close(() => r()));
  }
}

/**
 * A stand-in for a proxy that redirects every request (`status`: 301, 308...) from http to
 * https, as one in front of an HTTP API may: outputs must not take that for an answer.
 */
export async function startRedirectingProxy(status: number): Promise<{ url: string; stop: () => Promise<void> }> {
  const server = http.createServer((req, res) => {
    req.resume();
    res.writeHead(status, { location: `https://127.0.0.1${req.url ?? '/'}` }).end();
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    stop: () => new Promise<void>((ok) => server.close(() => ok())),
  };
}
