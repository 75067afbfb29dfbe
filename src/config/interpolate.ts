/**
 * `${VAR}` interpolation in the string values of a configuration (src/config/load.ts), with
 * the shell's forms for a default and for a required variable:
 *
 * - `${VAR}`: the variable; unset or empty is a problem.
 * - `${VAR:-default}` / `${VAR-default}`: the default when VAR is unset or empty / unset.
 * - `${VAR:?message}` / `${VAR?message}`: a problem with the message when VAR is unset or
 *   empty / unset.
 * - `$${` is a literal `${`. A `$` not followed by `{` (`$VAR`, `$1`) is kept as it is.
 *
 * The shell's other forms (`${VAR:+x}`, `${VAR:=x}`, `${VAR/a/b}`, `${VAR#x}`,
 * `${VAR:1}`), a nested one (`${A:-${B}}`) and an unclosed `${VAR` are problems, not text
 * kept as written, as is a positional `${1}`. A `${` that does not start a shell form at
 * all (no name after it, or a name followed by anything else: `${jndi:ldap://...}` in a
 * filter, a password) is text.
 */

export interface Interpolated {
  value: string;
  /** Each a message for the key that holds the value; none when it interpolated. */
  problems: string[];
}

const NAME = /[A-Za-z_][A-Za-z0-9_]*/y;
/** What may follow `${NAME` in a shell parameter expansion: `}`, an operator, `:` + offset. */
const SHELL_OP = /^(?:\}|:[-=?+0-9 ]|[-=?+\/#%^,@])/;
const FORMS = '${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?message}, ${VAR?message}';

/**
 * Interpolates `text` from `env`. `secret`: the value is a secret, so a problem quotes no
 * more of it than the variable's name.
 */
export function interpolate(text: string, env: Record<string, string | undefined>, secret = false): Interpolated {
  const problems: string[] = [];
  if (text.indexOf('${') === -1) return { value: text, problems };
  let out = '';
  let i = 0;
  for (;;) {
    const j = text.indexOf('${', i);
    if (j === -1) {
      out += text.slice(i);
      break;
    }
    if (j > i && text[j - 1] === '$') {
      // `$${`: a literal `${` (the `$` before it was copied with the text before).
      out += `${text.slice(i, j - 1)}\${`;
      i = j + 2;
      continue;
    }
    NAME.lastIndex = j + 2;
    const name = NAME.exec(text)?.[0];
    const afterName = j + 2 + (name?.length ?? 0);
    // A shell form: a name followed by `}` or an operator (or the text's end: unclosed), or a positional `${1}`.
    const shellForm = name === undefined ? /[0-9]/.test(text.charAt(j + 2)) : afterName === text.length || SHELL_OP.test(text.slice(afterName, afterName + 2));
    if (!shellForm) {
      // Not the shell's `${`: text.
      out += text.slice(i, j + 2);
      i = j + 2;
      continue;
    }
    out += text.slice(i, j);
    const op = ['}', ':-', ':?', '-', '?'].find((o) => text.startsWith(o, afterName));
    const close = text.indexOf('}', afterName);
    const word = op === undefined || op === '}' ? '' : text.slice(afterName + op.length, close === -1 ? text.length : close);
    if (name === undefined || op === undefined || close === -1 || word.includes('${')) {
      const end = close === -1 ? text.length : close + 1;
      const shown = secret ? `\${${name ?? ''}...` : text.slice(j, Math.min(end, j + 60)) + (end > j + 60 ? '...' : '');
      const why = close === -1 ? 'has no closing }' : word.includes('${') ? 'nests another ${...}, which is not supported' : 'is not a supported form';
      problems.push(`interpolation ${shown} ${why}: write ${FORMS}, or $\${ for a literal \${`);
      i = close === -1 ? text.length : close + 1;
      continue;
    }
    i = close + 1;
    const val = env[name!];
    const unset = val === undefined;
    const empty = val === '';
    if (op === '}') {
      if (unset || empty) problems.push(`environment variable ${name} is ${empty ? 'empty' : 'not set'}`);
      else out += val;
    } else if (op === ':-' || op === '-') {
      out += unset || (op === ':-' && empty) ? word : val;
    } else if (unset || (op === ':?' && empty)) {
      problems.push(`environment variable ${name} is ${empty ? 'empty' : 'not set'}${word === '' ? '' : `: ${word}`}`);
    } else {
      out += val;
    }
  }
  return { value: out, problems };
}
