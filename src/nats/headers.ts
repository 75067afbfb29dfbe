/**
 * Headers a cefd receiver puts on each raw frame it publishes to JetStream, which a
 * processor's `nats` source reads back, so the event a processor makes is the one the
 * receiver would have made: the same id, listener, peer and received time.
 */
export const H_ID = 'Cefd-Id';
export const H_LISTENER = 'Cefd-Listener';
export const H_PEER = 'Cefd-Peer';
/** When the receiver read the frame, ms since the epoch (decimal). */
export const H_RECEIVED = 'Cefd-Received';
/** `lf`, `octet` or `datagram`: how the receiver cut the frame. */
export const H_FRAMING = 'Cefd-Framing';
/** `1` when the receiver truncated the frame at max_frame_bytes. */
export const H_TRUNCATED = 'Cefd-Truncated';
/** SHA-256 fingerprint of the sender's TLS client certificate (TLS listeners). */
export const H_TLS_FINGERPRINT = 'Cefd-Tls-Fingerprint';
