/**
 * The metadata half of the contract: one case (a map of case field -> raw value) -> the model's `meta`
 * input, as the spec's model contract describes it (modelcontract.js), with the spec's `metadata` layout
 * checked against what that contract derives. The port of core.contract.ContractEncoder and of
 * core.spec.metadata_layout / _check_against_contract.
 *
 *     const meta = encodeMeta(spec, {age_approx: 55, sex: 'female', anatom_site_general_challenge: 'anterior torso'});
 *
 * encodeMeta <-> ContractEncoder.encode, metadataLayout <-> metadata_layout plus the metadata half of
 * _check_against_contract. All arithmetic is double precision, as Python's floats; the result is stored
 * as float32 (Math.fround) at the end, as numpy's float32 array does. The error messages are
 * core.contract's MetadataError messages, word for word (pyformat.js writes values as Python does).
 */

import {ContractError, REEXPORT} from './errors.js';
import {root} from './fields.js';
import {encodeFeature, featureEntries, readContract} from './modelcontract.js';

/** The fields of `spec.metadata` (the `meta` input's layout), every one required. */
const LAYOUT_FIELDS = ['size', 'dtype', 'entries', 'fields', 'missing_tokens', 'case_insensitive'];

/**
 * The `meta` input's layout, read from `spec.metadata` and checked against the spec's contract: the
 * size, the name of each entry and the case fields must be those the contract's features derive
 * (core.spec.metadata_layout); the dtype float32; categories case-insensitive. Nothing is assumed when a
 * field is missing.
 *
 * @param {object} spec a ModelSpec from readSpec
 * @returns {{size: number, entries: string[], fields: string[], missingTokens: string[], features: object[],
 *     groups: string[][]}} features and groups as readContract gives them
 * @throws {ContractError} when the layout or the contract is missing, incomplete, malformed, or the two disagree
 */
export function metadataLayout(spec) {
  const m = root(spec).object('metadata');
  m.only(LAYOUT_FIELDS);
  const dtype = m.string('dtype');
  if (dtype !== 'float32') {
    throw new ContractError(`The spec asks for a ${dtype} meta input; this page encodes float32.`);
  }
  if (m.boolean('case_insensitive') !== true) {
    throw new ContractError(
      'The spec asks for case-sensitive metadata categories; this page matches them case-insensitively, as core.contract does.',
    );
  }
  const size = m.integer('size');
  const entries = m.strings('entries');
  const fields = m.strings('fields');
  const missingTokens = m.strings('missing_tokens');
  const {features, groups} = readContract(spec);
  const derived = features.flatMap(featureEntries);
  const mismatch = (what) =>
    new ContractError(`The spec's metadata layout does not match its contract's features (${what}): ${REEXPORT}`);
  if (size !== derived.length) throw mismatch(`size ${size}, but the features have ${derived.length} entries`);
  const at = derived.findIndex((name, i) => entries[i] !== name);
  if (at >= 0 || entries.length !== derived.length) {
    const i = at >= 0 ? at : derived.length;
    throw mismatch(`entry ${i} is ${JSON.stringify(entries[i] ?? null)}, the features make ${JSON.stringify(derived[i] ?? null)}`);
  }
  const read = [...new Set(features.map((f) => f.field))];
  if (read.length !== fields.length || read.some((f, i) => fields[i] !== f)) {
    throw mismatch(`fields ${JSON.stringify(fields)}, the features read ${JSON.stringify(read)}`);
  }
  return {size, entries, fields, missingTokens, features, groups};
}

/**
 * Encode one case into the model's `meta` input, exactly like core.contract.ContractEncoder.encode with
 * the spec's contract: each feature's entries in order (encodeFeature: numbers transformed, offset and
 * scaled, with their missing flag; one-hot blocks with their missing column or zeros; codes), then each
 * `normalize` group divided by its L2 norm (summed in the features' order over the entries before any
 * group is applied; a zero norm leaves the group as it is).
 *
 * A field absent from the case is missing, as are null, undefined, NaN and the spec's missing tokens
 * (trimmed, lower-cased; '' is one). Fields the contract does not read are ignored. Nothing is coerced: a
 * number feature takes a number or a numeric string (never a boolean), a one-hot or code feature a string.
 *
 * @param {object} spec a ModelSpec from readSpec
 * @param {object|Map<string, *>} [fields={}] case field (e.g. "age_approx", "sex") -> raw value
 * @returns {Float32Array} the `meta` vector (length spec.metadata.size)
 * @throws {ContractError} for a value a feature cannot take (the Python reference's sentence), or a spec
 *     whose metadata layout or contract is incomplete
 */
export function encodeMeta(spec, fields = {}) {
  const layout = metadataLayout(spec);
  const value = (name) => {
    if (fields instanceof Map) return fields.get(name);
    return fields !== null && typeof fields === 'object' && Object.hasOwn(fields, name) ? fields[name] : undefined;
  };
  const parts = new Map(layout.features.map((f) => [f.name, encodeFeature(f, value(f.field), layout.missingTokens)]));
  for (const group of layout.groups) {
    // Python's sum() of floats (CPython 3.11: left to right, no compensation), then math.sqrt.
    let squares = 0;
    for (const name of group) for (const v of parts.get(name)) squares += v * v;
    const norm = Math.sqrt(squares);
    if (norm > 0) for (const name of group) parts.set(name, parts.get(name).map((v) => v / norm));
  }
  return Float32Array.from(layout.features.flatMap((f) => parts.get(f.name))); // each value rounded to float32
}
