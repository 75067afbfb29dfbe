/** `cefd ksc ...` commands (issue 7). */
import type { Command } from 'commander';

export function registerKscCommands(program: Command): void {
  void program;
}
