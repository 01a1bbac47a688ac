/**
 * The one error the contract modules throw for input a caller can fix, and the pieces of its sentences.
 *
 * Every ContractError message is one sentence that says what is wrong and how to fix it, fit to show on
 * the page as it is (the Kotlin port's ContractException follows the same rule).
 */

/** The fix for any spec that is absent, damaged or incomplete. */
export const REEXPORT = 're-export the model with `python -m export.all`, which embeds its spec.';

/** An input the caller can fix (bad metadata, a file without a spec); its message says what to do. */
export class ContractError extends Error {
  /** @param {string} message one sentence: what is wrong and how to fix it */
  constructor(message) {
    super(message);
    this.name = 'ContractError';
  }
}

/**
 * A value as a message shows it: strings quoted, numbers as JavaScript writes them (NaN, Infinity),
 * anything else as JSON where it has a JSON form.
 *
 * @param {*} value
 * @returns {string}
 */
export function describe(value) {
  if (value === undefined) return 'undefined';
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') return String(value);
  if (typeof value === 'string') return JSON.stringify(value);
  try {
    const json = JSON.stringify(value);
    return json === undefined ? String(value) : json;
  } catch {
    return String(value);
  }
}

/** What kind of value `value` is, in words ("a boolean", "a list", "an object", ...), for messages. */
export function kindOf(value) {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  const type = typeof value;
  if (type === 'object') return 'an object';
  if (type === 'undefined') return 'undefined';
  return type === 'number' || type === 'bigint' ? 'a number' : `a ${type}`;
}
