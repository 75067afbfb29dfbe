/**
 * Reading the files a configuration names: the config file itself, `*_file` secrets
 * (tokens, passwords: src/config/load.ts's resolveSecretFiles) and the NATS connection's
 * credential and PEM files (src/nats/config.ts checks them, src/nats/connection.ts reads
 * them). No other import than node:fs, so that the NATS options can use it without
 * importing the loader.
 */
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';

/** Largest `*_file` secret read (a token, a passphrase); a bigger one is a problem at its key. */
export const MAX_SECRET_FILE_BYTES = 64 * 1024;
/** Largest PEM file read for a NATS connection (a CA bundle of the system's size fits). */
export const MAX_PEM_FILE_BYTES = 4 * 1024 * 1024;

/** `4 MiB`, `64 KiB`, `100 bytes`. */
function sizeText(n: number): string {
  if (n % 1024 ** 2 === 0) return `${n / 1024 ** 2} MiB`;
  return n % 1024 === 0 ? `${n / 1024} KiB` : `${n} bytes`;
}

/**
 * Reads a regular file of at most `limit` bytes as UTF-8. Anything else throws an Error
 * whose message says why (`ENOENT`, `not a regular file`, `larger than 64 KiB`): a device
 * (`/dev/zero`) or a file that grows without end is not read past the limit, and a FIFO
 * is refused without blocking (opened O_NONBLOCK, its type checked on the open fd).
 */
export function readBoundedFile(path: string, limit: number): string {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    throw new Error((e as NodeJS.ErrnoException).code ?? (e as Error).message);
  }
  try {
    if (!fstatSync(fd).isFile()) throw new Error('not a regular file');
    // At most limit + 1 bytes: one more than the limit tells a file that is too large.
    const buf = Buffer.allocUnsafe(limit + 1);
    let n = 0;
    for (;;) {
      let got: number;
      try {
        got = readSync(fd, buf, n, buf.length - n, null);
      } catch (e) {
        throw new Error((e as NodeJS.ErrnoException).code ?? (e as Error).message);
      }
      if (got === 0) break;
      n += got;
      if (n > limit) throw new Error(`larger than ${sizeText(limit)}`);
    }
    return buf.toString('utf8', 0, n);
  } finally {
    closeSync(fd);
  }
}

/** A secret file with nothing but whitespace: see fileProblem. */
class EmptySecretFileError extends Error {
  constructor() {
    super('empty');
  }
}

/**
 * A secret read from a file (a `*_file` option: a bearer token, a password, an NKey seed):
 * at most MAX_SECRET_FILE_BYTES, whitespace at both ends removed (the newline editors and
 * `echo` add, a blank line after it, a trailing space), as Prometheus does for its
 * `*_file` secrets. A file with nothing else throws (`empty`). Throws as readBoundedFile.
 */
export function readSecretFile(path: string): string {
  const s = readBoundedFile(path, MAX_SECRET_FILE_BYTES).trim();
  if (s === '') throw new EmptySecretFileError();
  return s;
}

/** The problem text of a file `shown` (as the config writes it) that readBoundedFile or readSecretFile refused with `e`. */
export function fileProblem(shown: string, e: unknown): string {
  return e instanceof EmptySecretFileError ? `${shown} is empty (or holds only whitespace)` : `cannot read ${shown}: ${(e as Error).message}`;
}
