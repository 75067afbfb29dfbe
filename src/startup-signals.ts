/**
 * Signals that come while `cefd run` starts: from the `run` command (src/cli.ts, before it
 * loads the daemon's modules) until the daemon has started (runDaemon in src/daemon.ts).
 * Without a handler Node's default action ends the process, and systemd counts a death by
 * SIGHUP as a clean exit, which `Restart=on-failure` does not restart: a `systemctl reload
 * cefd` (or a logrotate postrotate) during the start would leave the service stopped. Here
 * SIGHUP is remembered (one reload runs once the start is done) and SIGTERM/SIGINT too (the
 * stop follows the start); a second SIGTERM/SIGINT ends the process at once (exit 1), as
 * once it runs.
 */
import { EXIT } from './errors.js';

export class StartupSignals {
  /** A SIGHUP came. */
  hup = false;
  /** The first SIGTERM/SIGINT that came, if any. */
  stop: NodeJS.Signals | null = null;
  /** Told of each signal once the daemon can log (runDaemon sets it). */
  onSignal: ((sig: NodeJS.Signals) => void) | undefined;
  private readonly handlers: [NodeJS.Signals, () => void][] = [];

  constructor() {
    for (const sig of ['SIGHUP', 'SIGTERM', 'SIGINT'] as const) {
      const h = () => this.receive(sig);
      this.handlers.push([sig, h]);
      process.on(sig, h);
    }
  }

  private receive(sig: NodeJS.Signals): void {
    if (sig === 'SIGHUP') this.hup = true;
    else if (this.stop === null) this.stop = sig;
    else {
      process.stderr.write(`cefd: second signal (${sig}) during start-up: exiting now\n`);
      process.exit(EXIT.failure);
    }
    this.onSignal?.(sig);
  }

  /** Removes the handlers: call after the daemon's own are installed, so no signal finds none. */
  release(): void {
    for (const [sig, h] of this.handlers.splice(0)) process.off(sig, h);
    this.onSignal = undefined;
  }
}
