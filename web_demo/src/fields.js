/**
 * Typed, path-aware reading of one JSON object of a ModelSpec (the port of Fields in the Kotlin port's
 * Json.kt). A contract reader never fills in a missing field: each getter either returns the value the
 * spec holds or throws a ContractError that names the field, e.g.
 * "The model's spec has no image.layout: re-export the model with `python -m export.all`, ...".
 *
 *     const image = root(spec).object('image');
 *     const size = image.integer('size');              // throws when image.size is absent or not an integer
 */

import {ContractError, REEXPORT, describe} from './errors.js';

/** Whether `value` is a JSON object (not null, not a list). */
export function isObject(value) {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/**
 * The spec itself as Fields.
 * @param {*} spec what readSpec returned (or a spec built in code)
 * @returns {Fields}
 * @throws {ContractError} when it is not an object
 */
export function root(spec) {
  if (!isObject(spec)) throw new ContractError(`This is not a model spec (a JSON object was expected): ${REEXPORT}`);
  return new Fields(spec, '');
}

/** The fields of one object of the spec; `path` names it in messages ("image", "contract.metadata[0]"). */
export class Fields {
  /**
   * @param {object} data the JSON object
   * @param {string} path its place in the spec, '' for the spec itself
   */
  constructor(data, path) {
    this.data = data;
    this.path = path;
  }

  /** The dotted name of field `name` ("image.layout"). */
  where(name) {
    return this.path ? `${this.path}.${name}` : name;
  }

  /** Whether the field is there (null counts as absent, as it does in the Kotlin port). */
  has(name) {
    const value = Object.prototype.hasOwnProperty.call(this.data, name) ? this.data[name] : undefined;
    return value !== undefined && value !== null;
  }

  /** The error for a field that is there but is not what the contract says it holds. */
  invalid(name, expected) {
    return new ContractError(
      `The model's spec gives ${this.where(name)} as ${describe(this.data[name])}, not ${expected}: ${REEXPORT}`,
    );
  }

  /** Whether the key is there at all (even with the value null): for fields whose null has a meaning. */
  present(name) {
    return Object.prototype.hasOwnProperty.call(this.data, name) && this.data[name] !== undefined;
  }

  /**
   * An optional field: `fallback` (the schema's documented default) when the key is absent, else the value
   * `read(name)` returns (a getter of this class, so a null or a value of the wrong type is refused).
   *
   *     const scale = feature.optional('scale', 1.0, (n) => feature.number(n));
   */
  optional(name, fallback, read) {
    if (!this.present(name)) return fallback;
    if (this.data[name] === null) throw this.invalid(name, 'a value (leave the field out instead of null)');
    return read(name);
  }

  /**
   * Refuse a field this object may not have: `required` must all be there (the first missing one is named)
   * and nothing outside `required` and `optional` may be (a field this page does not know could change what
   * the object means).
   */
  only(required, optional = []) {
    for (const name of required) this.required(name);
    const allowed = [...required, ...optional];
    const unknown = Object.keys(this.data).filter((k) => !allowed.includes(k)).sort();
    if (unknown.length) {
      throw new ContractError(
        `The model's spec gives ${this.path || 'the spec'} an unknown field ${JSON.stringify(unknown[0])} ` +
          `(this page reads ${allowed.join(', ')}): ${REEXPORT}`,
      );
    }
    return this;
  }

  /** The raw value of a field that must be there. */
  required(name) {
    if (!this.has(name)) throw new ContractError(`The model's spec has no ${this.where(name)}: ${REEXPORT}`);
    return this.data[name];
  }

  string(name) {
    const value = this.required(name);
    if (typeof value !== 'string') throw this.invalid(name, 'a string');
    return value;
  }

  /** A string that is not empty or blank (a name, a case field). */
  text(name) {
    const value = this.string(name);
    if (value.trim() === '') throw this.invalid(name, 'a non-empty string');
    return value;
  }

  /** A finite number (JSON has no NaN or infinity; a spec built in code might). */
  number(name) {
    const value = this.required(name);
    if (typeof value !== 'number' || !Number.isFinite(value)) throw this.invalid(name, 'a finite number');
    return value;
  }

  integer(name) {
    const value = this.required(name);
    if (!Number.isInteger(value)) throw this.invalid(name, 'a whole number');
    return value;
  }

  boolean(name) {
    const value = this.required(name);
    if (typeof value !== 'boolean') throw this.invalid(name, 'true or false');
    return value;
  }

  /** A nested object, as Fields. */
  object(name) {
    const value = this.required(name);
    if (!isObject(value)) throw this.invalid(name, 'an object');
    return new Fields(value, this.where(name));
  }

  /** A list of strings. */
  strings(name) {
    const value = this.required(name);
    if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) {
      throw this.invalid(name, 'a list of strings');
    }
    return value;
  }

  /** A list of finite numbers. */
  numbers(name) {
    const value = this.required(name);
    if (!Array.isArray(value) || !value.every((v) => typeof v === 'number' && Number.isFinite(v))) {
      throw this.invalid(name, 'a list of numbers');
    }
    return value;
  }

  /** A list (of anything: its items are checked by the caller). */
  list(name) {
    const value = this.required(name);
    if (!Array.isArray(value)) throw this.invalid(name, 'a list');
    return value;
  }

  /** A list of objects, each as Fields ("contract.metadata[3]"). */
  objects(name) {
    const value = this.required(name);
    if (!Array.isArray(value) || !value.every(isObject)) throw this.invalid(name, 'a list of objects');
    return value.map((v, i) => new Fields(v, `${this.where(name)}[${i}]`));
  }

  /** An object of string -> string (aliases), as a plain object. */
  stringMap(name) {
    const value = this.required(name);
    if (!isObject(value) || !Object.values(value).every((v) => typeof v === 'string')) {
      throw this.invalid(name, 'an object of strings');
    }
    return value;
  }

  /** An object of string -> finite number (a code table), as a plain object. */
  numberMap(name) {
    const value = this.required(name);
    if (!isObject(value) || !Object.values(value).every((v) => typeof v === 'number' && Number.isFinite(v))) {
      throw this.invalid(name, 'an object of numbers');
    }
    return value;
  }
}
