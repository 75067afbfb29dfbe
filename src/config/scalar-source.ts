/**
 * Where a character of a YAML string value is in the file: the loader (src/config/load.ts)
 * points a filter's syntax error at the file's line and column, also when the filter is a
 * `>-` or `|` block or a plain scalar over several lines, whose value is not the file's text
 * (indentation removed, lines folded into one).
 */
import type { Scalar } from 'yaml';

/**
 * The offset in `text` (the whole file) of the character at `offset` of the scalar's
 * `value`, or of the end of the last line when `offset` is past the value's text (an
 * "end of input" error); undefined when it cannot be told (an escape in a quoted scalar,
 * a value changed by interpolation: the caller reports the position in the value then).
 */
export function sourceOffset(node: Scalar, text: string, value: string, offset: number): number | undefined {
  const range = node.range;
  if (range === undefined || range === null) return undefined;
  let [start, end] = range;
  const block = node.type === 'BLOCK_FOLDED' || node.type === 'BLOCK_LITERAL';
  let indent: number | undefined;
  if (block) {
    // The header (`>-`, `|2`, a comment) is the first line; the value starts on the next.
    const nl = text.indexOf('\n', start);
    if (nl === -1 || nl >= end) return undefined;
    const explicit = /^[|>][-+]?([1-9])?/.exec(text.slice(start, nl))?.[1];
    start = nl + 1;
    if (explicit !== undefined) {
      // Relative to the indentation of the key's line.
      const lineStart = text.lastIndexOf('\n', range[0] - 1) + 1;
      indent = (/^ */.exec(text.slice(lineStart))?.[0].length ?? 0) + Number(explicit);
    }
  } else if (node.type === 'QUOTE_DOUBLE' || node.type === 'QUOTE_SINGLE') {
    const inner = text.slice(start + 1, end - 1);
    // Escapes (`\"`, `''`) make the value differ from the file's text: not mapped.
    if (node.type === 'QUOTE_DOUBLE' ? inner.includes('\\') : inner.includes("''")) return undefined;
    start += 1;
    end -= 1;
  } else if (node.type !== 'PLAIN') {
    return undefined;
  }
  // Each line's text as it is in the value, with its offset in the file.
  const lines: { at: number; text: string }[] = [];
  let at = start;
  for (const raw of text.slice(start, end).split('\n')) {
    const line = raw.replace(/\r$/, '');
    if (block) {
      if (line.trim() !== '') {
        indent ??= /^ */.exec(line)![0].length;
        lines.push({ at: at + indent, text: line.slice(indent) });
      }
    } else {
      const lead = /^[ \t]*/.exec(line)![0].length;
      const body = line.slice(lead).replace(/[ \t]+$/, '');
      if (body !== '') lines.push({ at: at + lead, text: body });
    }
    at += raw.length + 1;
  }
  // The lines come in order, separated in the value by spaces or newlines only (folding).
  let pos = 0;
  let last: { at: number; end: number } | undefined;
  for (const l of lines) {
    const found = value.indexOf(l.text, pos);
    if (found === -1 || value.slice(pos, found).trim() !== '') return undefined;
    // In the space between two lines: the start of the next one.
    if (offset < found + l.text.length) return l.at + Math.max(0, offset - found);
    pos = found + l.text.length;
    last = { at: l.at, end: l.at + l.text.length };
  }
  if (last === undefined || value.slice(pos).trim() !== '') return undefined;
  return last.end;
}
