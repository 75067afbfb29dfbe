// Placeholder until the ksc normalizer lands (issue 4): accepts nothing.
import type { Normalizer } from '../../src/pipeline/normalize.js';

const ksc: Normalizer = {
  name: 'ksc',
  accepts: () => false,
  normalize: () => null,
};
export default ksc;
