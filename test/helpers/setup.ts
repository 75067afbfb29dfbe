/**
 * Runs before every test file (vitest setupFiles). Its afterAll is registered first, so it
 * runs after the file's own afterAll hooks (which stop daemons and servers using the folders).
 */
import { afterAll } from 'vitest';
import { removeTempDirs } from './temp.js';

afterAll(() => removeTempDirs());
