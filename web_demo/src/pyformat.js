/**
 * Values written as Python writes them, so that the messages of the JavaScript port are the Python
 * reference's word for word: formatG <-> format(value, "g") (the `{x:g}` of core.contract's messages),
 * pyRepr <-> repr(value) (their `{value!r}`), for the values JSON and a form can hold.
 *
 *     formatG(120)        // "120"        formatG(1e-5)   // "1e-05"
 *     pyRepr(true)        // "True"       pyRepr(['torso'])  // "['torso']"
 *
 * JavaScript has one number type: a whole number is written as a Python int ("55"), any other as a Python
 * float ("55.5", "1e-05"). A float that happens to be whole (Python's 55.0, "55.0") reads as 55 after
 * JSON.parse, so it is written "55" here; that is the one place the two can differ.
 */

/**
 * A number as Python's `format(value, "g")` writes it: 6 significant digits, trailing zeros dropped,
 * scientific notation (two exponent digits at least) below 1e-4 or from 1e6.
 *
 * @param {number} value
 * @returns {string}
 */
export function formatG(value) {
  if (value === Infinity) return 'inf';
  if (value === -Infinity) return '-inf';
  if (Number.isNaN(value)) return 'nan';
  if (value === 0) return Object.is(value, -0) ? '-0' : '0';
  const [mantissa, exponent] = value.toExponential(5).split('e');
  const exp = Number(exponent);
  const trim = (text) => (text.includes('.') ? text.replace(/0+$/, '').replace(/\.$/, '') : text);
  if (exp < -4 || exp >= 6) return `${trim(mantissa)}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`;
  return trim(value.toFixed(Math.max(0, 5 - exp)));
}

/**
 * A value as Python's `repr` writes the same value: None, True / False, ints, floats (shortest round-trip
 * digits, scientific below 1e-4 and from 1e16), strings in single quotes (double when the text holds a single
 * quote and no double one), lists and dicts with ", " and ": " between their parts.
 *
 * @param {*} value a JSON-like value (null, undefined, boolean, number, bigint, string, list, object)
 * @returns {string}
 */
export function pyRepr(value) {
  if (value === null || value === undefined) return 'None';
  if (typeof value === 'boolean') return value ? 'True' : 'False';
  if (typeof value === 'bigint') return String(value);
  if (typeof value === 'number') return numberRepr(value);
  if (typeof value === 'string') return stringRepr(value);
  if (Array.isArray(value)) return `[${value.map(pyRepr).join(', ')}]`;
  if (value instanceof Map) return `{${[...value].map(([k, v]) => `${pyRepr(k)}: ${pyRepr(v)}`).join(', ')}}`;
  if (typeof value === 'object') {
    return `{${Object.entries(value).map(([k, v]) => `${stringRepr(k)}: ${pyRepr(v)}`).join(', ')}}`;
  }
  return String(value); // a function or a symbol: no Python counterpart
}

/** A number as repr writes an int (a whole number within 2^53) or a float (anything else). */
function numberRepr(x) {
  if (Number.isNaN(x)) return 'nan';
  if (x === Infinity) return 'inf';
  if (x === -Infinity) return '-inf';
  if (Object.is(x, -0)) return '-0.0';
  if (Number.isSafeInteger(x)) return String(x);
  // toExponential() with no argument gives the shortest digits that read back as x, as Python's repr does.
  const [mantissa, exponent] = x.toExponential().split('e');
  const exp = Number(exponent);
  const sign = x < 0 ? '-' : '';
  const digits = mantissa.replace('-', '').replace('.', '');
  if (exp < -4 || exp >= 16) {
    const lead = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    return `${sign}${lead}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`;
  }
  if (exp < 0) return `${sign}0.${'0'.repeat(-exp - 1)}${digits}`;
  const whole = digits.slice(0, exp + 1).padEnd(exp + 1, '0');
  return `${sign}${whole}.${digits.slice(exp + 1) || '0'}`;
}

/** A string as repr writes it (printable ASCII and other text kept; quotes, backslashes, controls escaped). */
function stringRepr(text) {
  const quote = text.includes("'") && !text.includes('"') ? '"' : "'";
  let out = quote;
  for (const ch of text) {
    const code = ch.codePointAt(0);
    if (ch === quote || ch === '\\') out += `\\${ch}`;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (code < 0x20 || code === 0x7f) out += `\\x${code.toString(16).padStart(2, '0')}`;
    else out += ch;
  }
  return out + quote;
}
