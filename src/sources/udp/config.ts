/** Options of the `udp` listener: the one place they are written (type inferred below). */
import { fields, size, type ConfigOf } from '../../config/spec.js';
import type { ListenerCommonConfig } from '../plugin.js';

/**
 * The largest receive_buffer_bytes: setsockopt(SO_RCVBUF) takes a C int, and Linux doubles
 * the value for its bookkeeping (older kernels overflow past 1GiB); 2GiB or more is EINVAL.
 */
export const MAX_RECEIVE_BUFFER_BYTES = 2 ** 30;

export const UDP_FIELDS = fields({
  receive_buffer_bytes: size('SO_RCVBUF of the socket cefd opens (0: the OS default; capped by net.core.rmem_max; at most 1GiB). A socket from systemd keeps its unit\'s ReceiveBuffer=.', '4MiB', 0, MAX_RECEIVE_BUFFER_BYTES),
});

export type UdpListenerConfig = ListenerCommonConfig & ConfigOf<typeof UDP_FIELDS> & { type: 'udp' };
