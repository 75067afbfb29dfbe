/** A pipeline stand-in for source tests: records what a source hands over, nothing more. */
import { Writable } from 'node:stream';
import { loadFields } from '../../src/config/load.js';
import type { Fields } from '../../src/config/spec.js';
import type { Pipeline, SourceContext } from '../../src/pipeline/pipeline.js';
import { FlowControl } from '../../src/pipeline/flow-control.js';
import { LISTENER_COMMON } from '../../src/sources/plugin.js';
import type { SourceDeps } from '../../src/sources/source.js';
import { Telemetry } from '../../src/telemetry/telemetry.js';

export interface Seen {
  text: string;
  mode: string;
  truncated: boolean;
  peer: string;
}

export interface Recording {
  frames: Seen[];
  deadLetters: { text: string; reason: string; peer: string; truncated?: true }[];
  commits: number;
  deps: SourceDeps;
  telemetry: Telemetry;
  flow: FlowControl;
}

export function recording(): Recording {
  const telemetry = new Telemetry({ level: 'silent', destination: new Writable({ write: (_c, _e, cb) => cb() }), processMetrics: false, repeatIntervalMs: 0 });
  const flow = new FlowControl(telemetry);
  const r: Recording = { frames: [], deadLetters: [], commits: 0, telemetry, flow, deps: undefined as unknown as SourceDeps };
  // The members of Pipeline that sources call (src/sources/tcp/stream.ts, udp/udp.ts).
  const pipeline = {
    onWorkers: false,
    frame: (b: Buffer, mode: string, truncated: boolean, ctx: SourceContext) => void r.frames.push({ text: b.toString('utf8'), mode, truncated, peer: ctx.peer }),
    commit: () => void r.commits++,
    deadLetterFrame: (b: Buffer, reason: string, _err: string, ctx: SourceContext, truncated = false) =>
      void r.deadLetters.push({ text: b.toString('utf8'), reason, peer: ctx.peer, ...(truncated ? { truncated: true as const } : {}) }),
  };
  r.deps = { pipeline: pipeline as unknown as Pipeline, flow, telemetry, normalizers: [] };
  return r;
}

/** A listener's config as a config file would give it (schema defaults and checks). */
export function listenerConfig<F extends Fields>(type: string, fields: F, raw: Record<string, unknown>) {
  return { type, ...loadFields({ ...LISTENER_COMMON, ...fields }, { name: 'in', host: '127.0.0.1', port: 0, ...raw }) } as never;
}
