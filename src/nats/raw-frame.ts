/**
 * A raw frame as a receiver queues it (`mode: receiver`): one JSON record per frame in the
 * output's queue (memory or disk buffer, like any event record), which the nats output with
 * `payload: frame` publishes as the frame's own bytes with its facts in headers
 * (./headers.ts). JSON keeps the queue's NDJSON format; a frame that is not valid UTF-8
 * travels in base64 so its bytes arrive exactly.
 */
import { isUtf8 } from 'node:buffer';
import { H_FRAMING, H_ID, H_LISTENER, H_PEER, H_RECEIVED, H_TLS_FINGERPRINT, H_TRUNCATED } from './headers.js';

export interface RawFrame {
  id: string;
  listener: string;
  peer: string;
  /** ms since the epoch */
  received: number;
  framing: string;
  truncated: boolean;
  tls?: string;
  /** The frame's text (valid UTF-8), or */
  frame?: string;
  /** its bytes in base64. */
  frame_b64?: string;
}

export function rawFrameRecord(buf: Buffer, truncated: boolean, receivedMs: number, framing: string, id: string, listener: string, peer: string, tls?: string): string {
  const r: RawFrame = { id, listener, peer, received: receivedMs, framing, truncated };
  if (tls !== undefined) r.tls = tls;
  if (isUtf8(buf)) r.frame = buf.toString('utf8');
  else r.frame_b64 = buf.toString('base64');
  return JSON.stringify(r);
}

/** The frame's bytes and the headers to publish it with; null when the record is not a raw frame. */
export function rawFramePayload(record: string): { id: string; data: Uint8Array; headers: [string, string][] } | null {
  let r: RawFrame;
  try {
    r = JSON.parse(record) as RawFrame;
  } catch {
    return null;
  }
  if (typeof r !== 'object' || r === null || typeof r.id !== 'string' || (typeof r.frame !== 'string' && typeof r.frame_b64 !== 'string')) return null;
  const data = typeof r.frame === 'string' ? Buffer.from(r.frame, 'utf8') : Buffer.from(r.frame_b64!, 'base64');
  const headers: [string, string][] = [
    [H_ID, r.id],
    [H_LISTENER, String(r.listener)],
    [H_PEER, String(r.peer)],
    [H_RECEIVED, String(r.received)],
    [H_FRAMING, String(r.framing)],
  ];
  if (r.truncated) headers.push([H_TRUNCATED, '1']);
  if (typeof r.tls === 'string') headers.push([H_TLS_FINGERPRINT, r.tls]);
  return { id: r.id, data, headers };
}
