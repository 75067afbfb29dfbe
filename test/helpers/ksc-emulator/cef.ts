/**
 * `KLPRCI_TaskState` CEF lines as KSC 13.2 exports them (fixtures-draft.txt lines 15-31):
 *
 * CEF:0|KasperskyLab|SecurityCenter|13.2.0.1511|KLPRCI_TaskState|Completed successfully|1|rt=...
 *   cs9=<group> cs9Label=GroupName dhost=<host> dst=<ip> cs2=KES cs2Label=ProductName
 *   cs3=11.0.0.0 cs3Label=ProductVersion cs10=<task name> cs10Label=TaskName cs4=<task id>
 *   cs4Label=TaskId cn2=<new> cn2Label=TaskNewState cn1=<old> cn1Label=TaskOldState
 *
 * and a TCP sender that writes them LF-terminated (KSC's "TCP/IP" SIEM export,
 * docs/reference/ksc-format.md §1).
 */
import net from 'node:net';

export const STATE_NAMES: Record<number, string> = {
  0: 'Created',
  1: 'Running',
  2: 'Paused',
  3: 'Failed',
  4: 'Completed successfully',
  5: 'Failed',
  6: 'Reloading',
  7: 'Inactive',
};

const SEVERITY: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 3, 4: 1, 5: 3, 6: 1, 7: 1 };

/** CEF extension value escaping: backslash, `=`, and line breaks. */
export function cefEscapeValue(s: string): string {
  return s.replace(/\\/g, '\\\\').replace(/=/g, '\\=').replace(/\r/g, '\\r').replace(/\n/g, '\\n');
}
function cefEscapeHeader(s: string): string {
  return s.replace(/\\/g, '\\\\').replace(/\|/g, '\\|');
}

export interface TaskStateLine {
  time: Date;
  groupName: string;
  host: string;
  ip?: string;
  product: string;
  version: string;
  taskName: string;
  taskId: string;
  oldState: number;
  newState: number;
}

export function taskStateCef(e: TaskStateLine): string {
  const ext = [
    `rt=${e.time.getTime()}`,
    `cs9=${cefEscapeValue(e.groupName)} cs9Label=GroupName`,
    `dhost=${cefEscapeValue(e.host)}`,
    ...(e.ip !== undefined ? [`dst=${e.ip}`] : []),
    `cs2=${cefEscapeValue(e.product)} cs2Label=ProductName`,
    `cs3=${cefEscapeValue(e.version)} cs3Label=ProductVersion`,
    `cs10=${cefEscapeValue(e.taskName)} cs10Label=TaskName`,
    `cs4=${cefEscapeValue(e.taskId)} cs4Label=TaskId`,
    `cn2=${e.newState} cn2Label=TaskNewState`,
    `cn1=${e.oldState} cn1Label=TaskOldState`,
  ].join(' ');
  const name = cefEscapeHeader(STATE_NAMES[e.newState] ?? `State ${e.newState}`);
  return `CEF:0|KasperskyLab|SecurityCenter|13.2.0.1511|KLPRCI_TaskState|${name}|${SEVERITY[e.newState] ?? 1}|${ext}`;
}

/** Writes lines to host:port over one TCP connection, reconnecting when it drops. */
export class CefTcpSender {
  private sock: net.Socket | undefined;
  private connecting: Promise<net.Socket> | undefined;
  constructor(readonly host: string, readonly port: number) {}

  private connect(): Promise<net.Socket> {
    if (this.sock !== undefined && !this.sock.destroyed) return Promise.resolve(this.sock);
    if (this.connecting !== undefined) return this.connecting;
    this.connecting = new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect({ host: this.host, port: this.port });
      s.once('connect', () => {
        this.sock = s;
        this.connecting = undefined;
        resolve(s);
      });
      s.once('error', (e) => {
        this.connecting = undefined;
        reject(e);
      });
      s.on('close', () => {
        if (this.sock === s) this.sock = undefined;
      });
    });
    return this.connecting;
  }

  async send(line: string): Promise<void> {
    const s = await this.connect();
    await new Promise<void>((resolve, reject) => s.write(line + '\n', (e) => (e ? reject(e) : resolve())));
  }

  close(): void {
    this.sock?.end();
    this.sock = undefined;
  }
}
