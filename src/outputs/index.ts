/** Builds outputs from their configuration. */
import type { DeadLetterConfig, FileSettings, OutputConfig } from '../config/types.js';
import { FileOutput, type FileOutputOptions } from './file/file.js';
import { HttpOutput } from './http/http.js';
import { StdoutOutput } from './stdout/stdout.js';
import type { Output } from './types.js';

export function fileOptions(c: FileSettings): FileOutputOptions {
  return {
    path: c.path,
    rotateMaxBytes: c.rotate_max_bytes,
    rotateIntervalSeconds: c.rotate_interval,
    maxFiles: c.max_files,
    fsync: c.fsync,
    fsyncIntervalMs: Math.round(c.fsync_interval * 1000),
    mode: c.mode,
  };
}

export function createOutput(c: OutputConfig): Output {
  switch (c.type) {
    case 'file':
      return new FileOutput(c.name, fileOptions(c));
    case 'stdout':
      return new StdoutOutput(c.name);
    case 'http': {
      const tls: { caFile?: string; insecureSkipVerify?: boolean } = { insecureSkipVerify: c.insecure_skip_verify };
      if (c.ca_file !== undefined) tls.caFile = c.ca_file;
      return new HttpOutput(c.name, {
        url: c.url,
        format: c.format,
        headers: { ...c.headers },
        ...(c.bearer_token !== undefined ? { bearerToken: c.bearer_token } : {}),
        timeoutMs: Math.round(c.timeout * 1000),
        compress: c.compress ? 'gzip' : 'none',
        tls,
      });
    }
  }
}

export function createDeadLetterOutput(c: DeadLetterConfig): Output {
  return new FileOutput('dead_letter', fileOptions(c));
}
