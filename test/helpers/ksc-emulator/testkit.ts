/** Small helpers shared by the KSC tests: raw HTTPS calls, temp dirs, a log sink, a CEF TCP collector. */
import https from 'node:https';
import net from 'node:net';
import zlib from 'node:zlib';
import { rmSync } from 'node:fs';
import { tempDir as makeTemp } from '../temp.js';
import type { KscLogger } from '../../../src/ksc/secrets.js';

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: Record<string, unknown> | undefined;
}

/** One POST to the emulator without any client logic (certificate not checked: test only). */
export function rawPost(port: number, path: string, body: unknown, headers: Record<string, string> = {}, agent?: https.Agent): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? '' : typeof body === 'string' ? body : JSON.stringify(body);
    const req = https.request(
      { host: '127.0.0.1', port, method: 'POST', path, rejectUnauthorized: false, ...(agent !== undefined ? { agent } : {}), headers: { 'Content-Type': 'application/json', ...headers } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          let buf = Buffer.concat(chunks);
          if (res.headers['content-encoding'] === 'gzip') buf = zlib.gunzipSync(buf);
          const text = buf.toString('utf8');
          let json: Record<string, unknown> | undefined;
          try {
            json = JSON.parse(text) as Record<string, unknown>;
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
        });
      },
    );
    req.on('error', reject);
    req.end(data);
  });
}

export function kscBasic(user: string, pass: string): string {
  const b = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
  return `KSCBasic user="${b(user)}", pass="${b(pass)}", internal="1"`;
}

export function tempDir(prefix = 'cefd-ksc-'): { dir: string; cleanup: () => void } {
  const dir = makeTemp(prefix);
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A logger that keeps every line as JSON text. */
export function memoryLogger(lines: string[] = []): KscLogger & { lines: string[] } {
  const f = (level: string) => (obj: Record<string, unknown>, msg?: string) => {
    lines.push(JSON.stringify({ level, ...obj, msg }));
  };
  return { debug: f('debug'), info: f('info'), warn: f('warn'), error: f('error'), lines };
}

/** A TCP listener that collects LF-terminated lines (what KSC's SIEM export sends). */
export class LineCollector {
  readonly lines: string[] = [];
  private server: net.Server;
  private listeners: ((line: string) => void)[] = [];
  private sockets = new Set<net.Socket>();
  port = 0;
  constructor() {
    this.server = net.createServer((s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
      let buf = '';
      s.setEncoding('utf8');
      s.on('data', (d: string) => {
        buf += d;
        let i: number;
        while ((i = buf.indexOf('\n')) !== -1) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          this.lines.push(line);
          for (const l of this.listeners) l(line);
        }
      });
    });
  }
  onLine(f: (line: string) => void): void {
    this.listeners.push(f);
  }
  listen(): Promise<this> {
    return new Promise((r) => this.server.listen(0, '127.0.0.1', () => {
      this.port = (this.server.address() as net.AddressInfo).port;
      r(this);
    }));
  }
  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((r) => this.server.close(() => r()));
  }
}

/** Polls `f` until it returns true (or throws after `ms`). */
export async function waitFor(f: () => boolean, ms = 30_000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!f()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
