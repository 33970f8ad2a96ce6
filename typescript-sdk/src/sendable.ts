/**
 * What a runtime may put on the wire: checks for values the state manager cannot take.
 *
 * A JS string may hold a lone surrogate (`'\ud800'`): it is not valid Unicode, and the state
 * manager refuses it, as it refuses NUL characters (PostgreSQL cannot store them). Finding these
 * before sending turns a request that can never succeed into a clear error for one state.
 *
 * @example
 * ```ts
 * firstProblem({ path: 'ab\udcff' });
 * // { where: 'path', reason: "is not valid Unicode (lone surrogate '\\udcff' at position 2): 'ab\\udcff'" }
 * sendableText('bad \udcff \u0000'); // 'bad \\udcff \\u0000'
 * ```
 * @module
 */

// How much of an offending value an error message shows.
const SHOWN_CHARS = 60;

/** Why `text` cannot be sent, naming the first bad character and its position; else undefined. */
export function textProblem(text: string): string | undefined {
  const nul = text.indexOf('\u0000');
  const surrogate = text.isWellFormed() ? -1 : loneSurrogateAt(text);
  if (surrogate >= 0 && (nul < 0 || surrogate < nul)) {
    return `is not valid Unicode (lone surrogate '${escapeChar(text.charCodeAt(surrogate))}' at position ${surrogate})`;
  }
  if (nul >= 0) return `contains a NUL character (\\u0000) at position ${nul}, which the state manager cannot store`;
  return undefined;
}

/** Where inside a JSON value the first thing that cannot be sent is (`a.b[2]`) and why; undefined when all of it can. */
export function firstProblem(value: unknown, where = ''): { where: string; reason: string } | undefined {
  if (typeof value === 'string') {
    const reason = textProblem(value);
    return reason === undefined ? undefined : { where, reason: `${reason}: ${shown(value)}` };
  }
  if (typeof value === 'bigint') return { where, reason: 'is a bigint, which is not JSON' };
  if (Array.isArray(value)) {
    for (const [index, item] of value.entries()) {
      const found = firstProblem(item, `${where}[${index}]`);
      if (found) return found;
    }
    return undefined;
  }
  if (value !== null && typeof value === 'object') {
    for (const [key, item] of Object.entries(value)) {
      const inside = where ? `${where}.${sendableText(key)}` : sendableText(key);
      const reason = textProblem(key);
      if (reason !== undefined) return { where: inside, reason: `is a key that ${reason}` };
      const found = firstProblem(item, inside);
      if (found) return found;
    }
  }
  return undefined;
}

/**
 * `text` with lone surrogates and NUL characters escaped (`\udcff`, `\u0000`), so it can always be
 * sent. Escaping (rather than `toWellFormed()`, which writes U+FFFD) keeps the offending code
 * visible to whoever reads the error, as the Python SDK does.
 */
export function sendableText(text: string): string {
  const wellFormed = text.isWellFormed() ? text : text.replace(LONE_SURROGATES, (char) => escapeChar(char.charCodeAt(0)));
  return wellFormed.replaceAll('\u0000', '\\u0000');
}

// Without the `u` flag a regular expression sees UTF-16 code units, so a surrogate without its
// partner is matched and a valid pair is not.
const LONE_SURROGATES = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/** A short rendering of a value for an error message, itself always sendable. */
function shown(text: string): string {
  const cut = text.length <= SHOWN_CHARS ? text : `${text.slice(0, SHOWN_CHARS)}...`;
  return `'${sendableText(cut)}'`;
}

function loneSurrogateAt(text: string): number {
  return text.search(LONE_SURROGATES);
}

function escapeChar(code: number): string {
  return `\\u${code.toString(16).padStart(4, '0')}`;
}
