// The console's pages load these files as they are (no bundling): src/console/static -> dist/src/console/static.
import { cpSync } from 'node:fs';
cpSync(new URL('../src/console/static', import.meta.url), new URL('../dist/src/console/static', import.meta.url), { recursive: true });
