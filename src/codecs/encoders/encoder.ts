/**
 * Encoders turn an event into the record an output sends (Vector's split: framers and
 * decoders in src/codecs/framing, syslog, cef; encoders here). An output names its encoder
 * in `outputs[].encoding.codec`; registry.ts lists them. The decode workers encode each
 * event once per distinct encoding in use, and the disk buffer stores the encoded bytes.
 */
import type { CefdEvent } from '../../event.js';

/** What an output's `encoding` section says. */
export interface EncodingConfig {
  /** Encoder name from registry.ts (`native` by default). */
  codec: string;
  /** Keep only these fields (dotted paths, e.g. `ksc.task`); applied before encoding. */
  only_fields?: readonly string[];
  /** Drop these fields (dotted paths); applied before encoding. */
  except_fields?: readonly string[];
}

export interface Encoder {
  /** Registry name plus field options: two outputs with equal keys share one encoding. */
  readonly key: string;
  readonly codec: string;
  /**
   * One record, without a separator (NDJSON/array/syslog framing is the output's). May
   * throw only for an event a user normalizer made unencodable (a BigInt, a cycle): the
   * caller dead-letters that frame with reason `event_unserializable`.
   */
  encode(event: CefdEvent): string;
}
