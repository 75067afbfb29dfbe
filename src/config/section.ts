/** What a top-level config section is (registered in sections.ts). */
import type { Fields, FieldProblem } from './spec.js';
import type { Config } from './types.js';

export interface ConfigSection {
  /** Top-level options this section adds to the schema. */
  readonly fields: Fields;
  /** Checks the schema kinds cannot express; keys from the config root (`ksc.admin.bearer_token`). */
  check?(c: Config): FieldProblem[];
}
