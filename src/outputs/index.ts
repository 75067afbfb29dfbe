/** Builds outputs from their configuration, through the registry (registry.ts). */
import type { DeadLetterConfig } from '../config/types.js';
import { FileOutput } from './file/file.js';
import { outputPlugin, type OutputConfig } from './registry.js';
import type { Output } from './types.js';

export function createOutput(c: OutputConfig): Output {
  const p = outputPlugin(c.type);
  if (p === undefined) throw new Error(`output ${c.name}: unknown type ${JSON.stringify(c.type)}`);
  return p.create(c);
}

export function createDeadLetterOutput(c: DeadLetterConfig): Output {
  return new FileOutput('dead_letter', c);
}
