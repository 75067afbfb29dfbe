/**
 * The UDP listener's per-sender contexts (each sender's datagrams stay in order through
 * the decode workers). Bounded: past `max` senders the least recently heard one that has
 * no work in the pipeline is forgotten. A context with reads on workers or waiting for
 * their turn is kept: forgetting it would let the sender's next datagrams, under a new
 * context, overtake the earlier ones. Those are few: the jobs of all UDP senders together
 * are bounded (MAX_IN_FLIGHT_UNPAUSABLE in src/pipeline/source-state.ts).
 */
import type { SourceContext } from '../../pipeline/pipeline.js';

/** How many of the oldest contexts an insert looks at for one to forget. */
const EVICT_SCAN = 256;

export class SenderContexts {
  private readonly map = new Map<string, SourceContext>();
  private last = '';

  constructor(readonly max = 4096) {}

  get size(): number {
    return this.map.size;
  }

  /** The sender's context (it becomes the most recently used), or undefined. */
  get(peer: string): SourceContext | undefined {
    const c = this.map.get(peer);
    if (c !== undefined && peer !== this.last) {
      this.map.delete(peer);
      this.map.set(peer, c);
      this.last = peer;
    }
    return c;
  }

  /** Adds a new sender's context, forgetting an idle one first when full. */
  add(peer: string, c: SourceContext): void {
    if (this.map.size >= this.max) {
      let scanned = 0;
      for (const [p, old] of this.map) {
        if (!busy(old)) {
          this.map.delete(p);
          break;
        }
        if (++scanned >= EVICT_SCAN) break;
      }
    }
    this.map.set(peer, c);
    this.last = peer;
  }
}

/** Reads of this context gathered, on workers, or waiting for their turn. */
function busy(c: SourceContext): boolean {
  const st = c.state;
  return st !== undefined && (st.inFlight > 0 || st.nextCommit < st.nextSeq || st.gathered > 0);
}
