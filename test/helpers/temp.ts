/**
 * Temporary folders for tests. Every folder made here is removed after the test file ends
 * (test/helpers/setup.ts registers the afterAll for every file), so no run leaves
 * `cefd-*` folders in the system's temporary directory; a test may remove its own sooner.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const made = new Set<string>();

/** A fresh folder under the system temp dir, removed when the test file ends. */
export function tempDir(prefix = 'cefd-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  made.add(dir);
  return dir;
}

/** Removes every folder tempDir made (called by setup.ts after each test file). */
export function removeTempDirs(): void {
  for (const dir of made) rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
  made.clear();
}
