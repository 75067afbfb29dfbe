/**
 * Readers shared by both formats: task states, threat categories.
 */
import { taskState } from './tables.js';
import { toInt } from '../../src/codecs/cef/parse.js';
import type { KscCategory, KscTask, KscWarning } from './types.js';

/** Categories whose events are about an object (file, URL, application): they get `threat`. */
export function isThreatCategory(c: KscCategory): boolean {
  return c === 'detection' || c === 'object_action' || c === 'web' || c === 'application_control';
}

/**
 * Reads a task-state value (a number from a cnN slot, or text from elsewhere) into
 * `task[stateKey]` and `task[codeKey]`. Codes outside 0..7 give `unknown` and keep the
 * code; text that is not an integer, or an integer beyond 2^53 (kept as decimal text,
 * POLICY row 15), gives `unknown` without a code. All warn `ksc_unknown_state`.
 */
export function readState(
  value: string | number | undefined,
  label: string,
  task: KscTask,
  which: 'old' | 'new',
  warnings: KscWarning[],
): void {
  if (value === undefined) return;
  const code = typeof value === 'number' ? value : toInt(value);
  if (typeof code !== 'number' || !Number.isSafeInteger(code)) {
    if (which === 'old') task.oldState = 'unknown';
    else task.newState = 'unknown';
    const why = code === null || (typeof code === 'number' && !Number.isInteger(code)) ? 'is not an integer' : 'is out of range (beyond 2^53)';
    warnings.push({ code: 'ksc_unknown_state', key: label, message: `${label} ${JSON.stringify(String(value))} ${why}: state unknown` });
    return;
  }
  const state = taskState(code);
  if (which === 'old') {
    task.oldState = state;
    task.oldStateCode = code;
  } else {
    task.newState = state;
    task.newStateCode = code;
  }
  if (state === 'unknown') {
    warnings.push({ code: 'ksc_unknown_state', key: label, message: `${label} ${code} is not a KLPRCI task state (0-7): state unknown, code kept` });
  }
}
