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

/** The fields of one object of the spec; `path` names it in messages ("image", "metadata.age"). */
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

  /** A list of objects, each as Fields ("metadata.features[3]"). */
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
}
