/**
 * cefd's version, read from the package.json that ships with the code (the repository's,
 * or /usr/lib/cefd/package.json in the Debian package), so `cefd --version`, the
 * `cefd_build_info` metric and the package name one version.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function readVersion(): string {
  // src/version.ts (tests) and dist/src/version.js (built) sit at different depths: walk up.
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'cefd' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      // no package.json here: one folder up
    }
    dir = dirname(dir);
  }
  return 'unknown';
}

export const VERSION = readVersion();
