/**
 * JetStream publishing for a whole batch at once: each message is published with a reply
 * subject under one inbox subscription of this connection, and the server's PubAcks (or
 * its 503 "no responders" status) are matched back to the batch by the reply subject's
 * last token, with one timer for the batch.
 *
 * Why not the client's `jetstream().publish()`: it is a request per message (a promise, a
 * timer, a mux entry) and, in nats 2.29, settling a request also builds a NatsError with
 * a stack trace that nobody reads (RequestOne.cancel after resolve). Profiled on a
 * receiver (bench/nats-hop.mjs --cpu-prof) that was the largest cost per frame
 * (docs/performance.md). The wire protocol is the same: HPUB with a reply subject, the
 * PubAck JSON (`{"stream":..,"seq":..,"duplicate":..}` or `{"error":{..}}`) on it.
 */
import { createInbox, headers as natsHeaders, type Msg, type MsgHdrs, type NatsConnection, type Status, type Subscription } from 'nats';
import { natsErrorText } from '../../nats/connection.js';

/** One message of a batch. */
export interface OutgoingMessage {
  data: Uint8Array;
  /** Nats-Msg-Id: the server drops a second message with this id within the duplicate window. */
  msgId: string;
  headers?: readonly (readonly [string, string])[];
}

/** Per message: acknowledged by the stream (stored, or a duplicate it dropped), or why not. */
export type PublishOutcome =
  | { ok: true }
  | {
      ok: false;
      kind: 'max_payload' | 'permission' | 'no_responders' | 'timeout' | 'refused' | 'rejected' | 'failed';
      error: string;
      /** The JetStream err_code of a PubAck error (10077: the stream's store refused it), and the stream it names. */
      errCode?: number;
      stream?: string;
    };

interface PendingBatch {
  outcomes: (PublishOutcome | undefined)[];
  left: number;
  done: () => void;
}

export class BatchPublisher {
  private readonly inbox: string;
  private readonly sub: Subscription;
  private batchSeq = 0;
  private readonly batches = new Map<number, PendingBatch>();
  private readonly decoder = new TextDecoder();
  private readonly unwatch: () => void;

  constructor(
    private readonly nc: NatsConnection,
    private readonly subject: string,
  ) {
    this.inbox = createInbox();
    this.sub = nc.subscribe(`${this.inbox}.>`, { callback: (err, m) => (err === null ? this.answer(m) : undefined) });
    // A publish the server refuses for want of permission is answered with an -ERR on the
    // connection, not on the reply subject: every message in flight on that subject fails.
    this.unwatch = watchStatus(nc, (s) => {
      const ctx = (s as { permissionContext?: { operation?: string; subject?: string } }).permissionContext;
      if (s.type === 'error' && ctx?.operation === 'publish' && ctx.subject === this.subject) this.failAll('permission', `nats: ${String(s.data)} to ${this.subject}`);
    });
  }

  /** Publishes the messages at once; resolves with one outcome per message, within `timeoutMs`. */
  publish(messages: readonly OutgoingMessage[], timeoutMs: number): Promise<PublishOutcome[]> {
    const id = ++this.batchSeq;
    return new Promise<PublishOutcome[]>((resolve) => {
      const b: PendingBatch = { outcomes: new Array<PublishOutcome | undefined>(messages.length), left: messages.length, done: () => undefined };
      const timer = setTimeout(() => {
        for (let i = 0; i < b.outcomes.length; i++) b.outcomes[i] ??= { ok: false, kind: 'timeout', error: `no PubAck within ${timeoutMs} ms` };
        b.left = 0;
        b.done();
      }, timeoutMs);
      b.done = () => {
        clearTimeout(timer);
        this.batches.delete(id);
        resolve(b.outcomes as PublishOutcome[]);
      };
      this.batches.set(id, b);
      for (let i = 0; i < messages.length; i++) {
        const m = messages[i]!;
        const h: MsgHdrs = natsHeaders();
        if (m.headers !== undefined) for (const [k, v] of m.headers) h.set(k, v);
        h.set('Nats-Msg-Id', m.msgId);
        try {
          this.nc.publish(this.subject, m.data, { reply: `${this.inbox}.${id}.${i}`, headers: h });
        } catch (err) {
          const code = (err as { code?: string }).code;
          this.settle(b, i, { ok: false, kind: code === 'MAX_PAYLOAD_EXCEEDED' ? 'max_payload' : 'failed', error: natsErrorText(err) });
        }
      }
      if (b.left === 0) b.done();
    });
  }

  private settle(b: PendingBatch, i: number, o: PublishOutcome): void {
    if (b.outcomes[i] !== undefined) return;
    b.outcomes[i] = o;
    if (--b.left === 0) b.done();
  }

  /** A PubAck, a JetStream error, or the server's 503 when nothing listens on the subject. */
  private answer(m: Msg): void {
    const s = m.subject;
    const dot = s.lastIndexOf('.');
    const dot2 = s.lastIndexOf('.', dot - 1);
    const b = this.batches.get(Number(s.slice(dot2 + 1, dot)));
    if (b === undefined) return;
    const i = Number(s.slice(dot + 1));
    const h = m.headers;
    if (h !== undefined && h.hasError) {
      this.settle(b, i, h.code === 503 ? { ok: false, kind: 'no_responders', error: 'no responders' } : { ok: false, kind: 'failed', error: `${h.code} ${h.description}` });
      return;
    }
    let r: { stream?: string; error?: { code?: number; err_code?: number; description?: string } };
    try {
      r = JSON.parse(this.decoder.decode(m.data)) as typeof r;
    } catch {
      this.settle(b, i, { ok: false, kind: 'failed', error: 'the answer to a publish was not a PubAck' });
      return;
    }
    if (r.error !== undefined) {
      const code = r.error.code ?? 0;
      // A 4xx is about this message (10054: larger than the stream's max_msg_size; a sealed
      // stream; a failed expectation): the same message is refused again however often it
      // is sent. A 503 (10077: a full stream with discard: new; no quorum) passes.
      // Whether a 503 10077 is about this message (larger than the stream's whole max_bytes)
      // is the output's to decide, with the stream's limits (./nats.ts).
      const kind = code >= 400 && code < 500 && code !== 408 && code !== 429 ? 'rejected' : 'refused';
      const o: Extract<PublishOutcome, { ok: false }> = { ok: false, kind, error: `JetStream refused the message: ${r.error.description ?? 'error'} (code ${r.error.code ?? '?'}, err_code ${r.error.err_code ?? '?'})` };
      if (r.error.err_code !== undefined) o.errCode = r.error.err_code;
      if (typeof r.stream === 'string' && r.stream !== '') o.stream = r.stream;
      this.settle(b, i, o);
    }
    else if (typeof r.stream === 'string' && r.stream !== '') this.settle(b, i, { ok: true });
    else this.settle(b, i, { ok: false, kind: 'failed', error: 'the answer to a publish was not a PubAck' });
  }

  private failAll(kind: 'permission', error: string): void {
    for (const b of [...this.batches.values()]) for (let i = 0; i < b.outcomes.length; i++) this.settle(b, i, { ok: false, kind, error });
  }

  /** Stops listening (pending batches time out). */
  close(): void {
    this.sub.unsubscribe();
    this.unwatch();
  }
}

type StatusListener = (s: Status) => void;
const statusListeners = new WeakMap<NatsConnection, Set<StatusListener>>();

/**
 * Calls `fn` with each status of the connection until the returned function is called. One
 * status iterator per connection, shared: the client keeps every iterator nc.status() made
 * in a list until the connection closes (stopping one does not remove it), so one per
 * publisher would grow with every publisher made on a long-lived connection.
 */
function watchStatus(nc: NatsConnection, fn: StatusListener): () => void {
  let set = statusListeners.get(nc);
  if (set === undefined) {
    const listeners = new Set<StatusListener>();
    set = listeners;
    statusListeners.set(nc, listeners);
    void (async () => {
      for await (const s of nc.status()) for (const l of listeners) l(s);
    })().catch(() => undefined);
  }
  const listeners = set;
  listeners.add(fn);
  return () => listeners.delete(fn);
}
