/**
 * The metrics and health endpoint: `/metrics` (Prometheus text), `/healthz` (alive),
 * `/readyz` (listeners bound and outputs started). Loopback by default; with a bearer token
 * configured every request must carry it, and wrong tokens are limited per client address
 * as the admin API's are (the same SigninLimiter: 5 free, then waits of 1 s doubling up to
 * 15 min, 429 `metrics_rate_limited` with Retry-After). The daemon keeps one limiter for
 * every metrics server it starts, so a reload does not forgive a guesser.
 */
import http from 'node:http';
import { bearerCheck, limitedBearer } from '../bearer.js';
import { SigninLimiter } from '../console/signin-limit.js';
import type { Telemetry } from './telemetry.js';

export interface HealthSource {
  /** Names of what is not ready yet (empty when ready). */
  notReady(): string[];
}

export class MetricsServer {
  private server: http.Server | null = null;
  private readonly tokenOk: ((header: string | string[] | undefined) => boolean) | undefined;

  constructor(
    private readonly telemetry: Telemetry,
    private readonly health: HealthSource,
    bearerToken: string | undefined,
    private readonly limiter: SigninLimiter = new SigninLimiter(),
  ) {
    this.tokenOk = bearerToken === undefined ? undefined : bearerCheck(bearerToken);
  }

  async start(host: string, port: number): Promise<void> {
    const server = http.createServer((req, res) => {
      void this.handle(req, res);
    });
    server.keepAliveTimeout = 5000;
    server.headersTimeout = 10_000;
    server.requestTimeout = 10_000;
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e) => reject(new Error(`metrics endpoint: cannot listen on ${host}:${port}: ${e.message}`)));
      server.listen({ host, port }, () => resolve());
    });
    this.telemetry.log.info({ address: `${host}:${this.port()}` }, `metrics on http://${host.includes(':') ? `[${host}]` : host}:${this.port()}/metrics`);
  }

  port(): number | undefined {
    const a = this.server?.address();
    return a !== null && typeof a === 'object' ? a.port : undefined;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (this.tokenOk !== undefined) {
      const header = req.headers.authorization;
      const client = req.socket.remoteAddress ?? '';
      const v = limitedBearer(this.tokenOk, this.limiter, header, client);
      const secs = v.retryAfterSeconds;
      if (secs !== undefined) {
        this.telemetry.repeated('warn', 'metrics_rate_limited', { code: 'metrics_rate_limited', path, retryAfterSeconds: secs }, 'metrics endpoint: request refused, too many wrong bearer tokens from its address');
        res.writeHead(429, { 'content-type': 'text/plain', 'retry-after': String(secs) }).end(`metrics_rate_limited: too many wrong bearer tokens from this address: try again in ${secs} s\n`);
        return;
      }
      if (!v.ok) {
        res.writeHead(401, { 'content-type': 'text/plain', 'www-authenticate': 'Bearer' }).end('unauthorized\n');
        return;
      }
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('method not allowed\n');
      return;
    }
    try {
      if (path === '/metrics') {
        const body = await this.telemetry.registry.metrics();
        res.writeHead(200, { 'content-type': this.telemetry.registry.contentType }).end(body);
      } else if (path === '/healthz') {
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}\n');
      } else if (path === '/readyz') {
        const waiting = this.health.notReady();
        res
          .writeHead(waiting.length === 0 ? 200 : 503, { 'content-type': 'application/json' })
          .end(JSON.stringify(waiting.length === 0 ? { status: 'ready' } : { status: 'not ready', waiting }) + '\n');
      } else {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      }
    } catch (e) {
      res.writeHead(500, { 'content-type': 'text/plain' }).end(`error: ${(e as Error).message}\n`);
    }
  }

  async stop(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (s === null) return;
    await new Promise<void>((r) => {
      s.close(() => r());
      s.closeAllConnections();
    });
  }
}
