/** Options of the `udp` listener: the one place they are written (type inferred below). */
import { fields, size, type ConfigOf } from '../../config/spec.js';
import type { ListenerCommonConfig } from '../plugin.js';

export const UDP_FIELDS = fields({
  receive_buffer_bytes: size('SO_RCVBUF of the socket cefd opens (0: the OS default; capped by net.core.rmem_max). A socket from systemd keeps its unit\'s ReceiveBuffer=.', '4MiB', 0),
});

export type UdpListenerConfig = ListenerCommonConfig & ConfigOf<typeof UDP_FIELDS> & { type: 'udp' };
