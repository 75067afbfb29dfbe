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
  const failed: string[] = [];
  // Every folder is tried, even when one cannot be removed; the first failure is reported after.
  for (const dir of made) {
    try {
      rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
    } catch (e) {
      failed.push(`${dir}: ${(e as Error).message}`);
    }
  }
  made.clear();
  if (failed.length > 0) throw new Error(`temporary folders not removed: ${failed.join('; ')}`);
}
