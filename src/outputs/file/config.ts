/** The `file` output's options: the one place they are written (type inferred below). */
import { dur, enumOf, fields, int, pathSpec, size, type ConfigOf } from '../../config/spec.js';

export const FILE_FIELDS = fields({
  path: pathSpec('File to append NDJSON to (parent folders are created; what the file holds is kept).', { required: true, writes: true }),
  rotate_max_bytes: size('Rotate before a write that would make the file larger than this (a batch is never split, so one larger batch exceeds it; 0: never).', '0', 0),
  rotate_interval: dur('Rotate when the period of this length the file got its data in ends; periods are aligned to the Unix epoch in UTC (1h: on the hour), an idle file rotates on time too, an empty one is not rotated (0: never).', '0s'),
  max_files: int('Rotated files (`<name>-<UTC time>[-<n>]<ext>`) to keep; older ones are deleted after a rotation (0: keep all).', 0),
  fsync: enumOf('When to fsync: `never` (leave it to the OS: a cefd crash loses nothing written, a power loss may lose the last seconds), `batch` (after every batch, before reporting it delivered), `interval`. Also before rotate, reopen and close unless `never`.', ['never', 'batch', 'interval'], 'never'),
  fsync_interval: dur('Period of `fsync: interval`.', '1s', 0.001),
  mode: { kind: 'mode', doc: 'Permissions of a new file, in octal as for chmod: `0640` or `0o640` (quoted too: `"0640"`; `640` without the leading 0 is refused, as YAML would read it as decimal); existing files keep theirs.', default: 0o640 },
});

export type FileConfig = ConfigOf<typeof FILE_FIELDS>;
export type FsyncPolicy = FileConfig['fsync'];
