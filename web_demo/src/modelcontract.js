/**
 * The model's own contract (`spec.contract`, schema "melanoma-contract/1") as the page reads it: its
 * metadata features and L2 groups, and the image rules the spec's `image` must agree with. The port of
 * core/contract.py: readContract <-> Contract.from_dict (the parts that shape an input), the feature
 * objects <-> Feature, featureEntries <-> Feature.entries, encodeFeature <-> Feature.encode,
 * canonical <-> Feature._category / Feature._code_key, parseNumber <-> Python's float() of a string.
 *
 *     const {features, groups, image} = readContract(spec);
 *     encodeFeature(features[0], '55', spec.metadata.missing_tokens);   // e.g. [0.25, 0], in double precision
 *
 * A feature is a plain object: {name, kind, field, missing, description, ...} and per kind
 *   number   transform ("none" | "log" | "log1p"), offset, scale, missingFlag, range ([lo, hi] or null),
 *            bands, unit: value = (transform(x) - offset) / scale, then a 0/1 flag when missingFlag;
 *   one_hot  categories, aliases (Map alias -> category), missing "column" (an extra last entry) | "zeros";
 *   code     codes (Map value -> number), aliases (Map alias -> value), missing (the number when empty).
 * Names of categories, codes and aliases are keys: lower case, "_" read as a space, whitespace collapsed.
 *
 * Nothing is filled in except the schema's optional fields, with its documented defaults (transform
 * "none", offset 0, scale 1, missing_flag false, no range, no bands, unit "", description "", aliases {},
 * normalize []); a field the schema does not define is refused, since it could change what a feature means.
 * The error messages of encodeFeature are core.contract's MetadataError messages, word for word, with one
 * caveat: the values a message lists ("use one of ...") come in the order of the spec's JSON object, and
 * JSON.parse puts keys that look like array indices ("1", "10") first in numeric order, where Python keeps
 * the file's order (sorted as text, since the spec is written with sorted keys). Codes and aliases that are
 * all such numbers, or all other text, are listed alike.
 */

import {ContractError, REEXPORT, describe} from './errors.js';
import {Fields, isObject, root} from './fields.js';
import {formatG, pyRepr} from './pyformat.js';

/** The `contract` value of the model contracts this page reads. */
export const CONTRACT_SCHEMA = 'melanoma-contract/1';
/** The metadata feature kinds, as core.contract.KINDS. */
export const FEATURE_KINDS = Object.freeze(['number', 'one_hot', 'code']);
/** The resize rules a contract may name: Pillow's antialiased bilinear, or cv2's INTER_LINEAR. */
export const RESIZE_RULES = Object.freeze(['pillow', 'bilinear']);

/**
 * The transforms of a number feature, with the values each is defined for (Python's math.log and
 * math.log1p raise ValueError outside them; JavaScript's would return NaN or -Infinity).
 */
const TRANSFORMS = Object.freeze({
  none: {apply: (x) => x, defined: () => true},
  log: {apply: Math.log, defined: (x) => x > 0},
  log1p: {apply: Math.log1p, defined: (x) => x > -1},
});

const BASE = ['name', 'kind', 'field', 'missing'];
const SHAPE = Object.freeze({
  number: {
    required: BASE,
    optional: ['transform', 'offset', 'scale', 'missing_flag', 'range', 'bands', 'unit', 'description'],
  },
  one_hot: {required: [...BASE, 'categories'], optional: ['aliases', 'description']},
  code: {required: [...BASE, 'codes'], optional: ['aliases', 'description']},
});

/**
 * The spec's model contract, checked: the schema name, every required top-level field, the image rules
 * (size, resize) and each metadata feature and normalize group in full.
 *
 * @param {object} spec a ModelSpec from readSpec
 * @returns {{name: string, image: {size: number, resize: string}, features: object[], groups: string[][]}}
 * @throws {ContractError} naming the missing or malformed field
 */
export function readContract(spec) {
  const c = root(spec).object('contract');
  const schema = c.required('contract');
  if (schema !== CONTRACT_SCHEMA) {
    throw new ContractError(
      `The spec's contract is ${JSON.stringify(schema)}; this page reads "${CONTRACT_SCHEMA}": ${REEXPORT}`,
    );
  }
  c.only(['contract', 'name', 'image', 'metadata', 'output', 'decision'], ['normalize', 'tta']);
  const name = c.text('name');
  c.object('output');
  c.object('decision');
  const image = c.object('image');
  image.only(['size', 'channels', 'resize'], ['mean', 'std']);
  for (const part of ['mean', 'std']) {
    if (!image.present(part)) image.required(part); // required, but null is a value: the model takes v / 255
  }
  const channels = image.string('channels');
  if (channels !== 'RGB' && channels !== 'BGR') throw image.invalid('channels', '"RGB" or "BGR"');
  const size = image.integer('size');
  const resize = image.string('resize');
  if (!RESIZE_RULES.includes(resize)) {
    throw new ContractError(
      `The spec's contract asks for image resize ${JSON.stringify(resize)}; this page implements ${RESIZE_RULES.join(', ')}.`,
    );
  }
  const features = c
    .list('metadata')
    .map((item, i) => readFeature(fieldsAt(item, `contract.metadata[${i}]`, 'a feature object')));
  const names = features.map((f) => f.name);
  if (new Set(names).size !== names.length) {
    throw new ContractError(`The spec's contract names a metadata feature twice: ${REEXPORT}`);
  }
  const groups = c
    .optional('normalize', [], (n) => c.list(n))
    .map((item, i) => readGroup(fieldsAt(item, `contract.normalize[${i}]`, 'a {kind, features} object'), names));
  return {name, image: {size, resize}, features, groups};
}

/** One item of a list in the contract as Fields, or the error naming it when it is not an object. */
function fieldsAt(item, where, expected) {
  if (!isObject(item)) {
    throw new ContractError(`The model's spec gives ${where} as ${describe(item)}, not ${expected}: ${REEXPORT}`);
  }
  return new Fields(item, where);
}

/** One item of contract.metadata (as Fields) as a feature object (see the module docstring). */
function readFeature(f) {
  const where = f.path;
  const kind = f.string('kind');
  if (!FEATURE_KINDS.includes(kind)) {
    throw new ContractError(
      `The spec's ${where}.kind is ${JSON.stringify(kind)}; this page implements ${FEATURE_KINDS.join(', ')}.`,
    );
  }
  f.only(SHAPE[kind].required, SHAPE[kind].optional);
  const common = {
    name: f.text('name'),
    kind,
    field: f.text('field'),
    description: f.optional('description', '', (n) => f.string(n)),
  };
  if (kind === 'number') {
    const transform = f.optional('transform', 'none', (n) => f.string(n));
    if (!Object.hasOwn(TRANSFORMS, transform)) {
      throw f.invalid('transform', `one of ${Object.keys(TRANSFORMS).join(', ')}`);
    }
    const scale = f.optional('scale', 1.0, (n) => f.number(n));
    if (!(scale > 0)) throw f.invalid('scale', 'a number greater than 0');
    return Object.freeze({
      ...common,
      missing: f.number('missing'),
      transform,
      offset: f.optional('offset', 0.0, (n) => f.number(n)),
      scale,
      missingFlag: f.optional('missing_flag', false, (n) => f.boolean(n)),
      range: f.optional('range', null, (n) => increasing(f, n, 2)),
      bands: f.optional('bands', [], (n) => increasing(f, n, null)),
      unit: f.optional('unit', '', (n) => f.string(n)),
    });
  }
  if (kind === 'one_hot') {
    const categories = f.strings('categories').map((c, i) => {
      if (c.trim() === '') throw f.invalid('categories', `a list of non-empty names (item ${i} is blank)`);
      return key(c);
    });
    if (categories.length === 0) throw f.invalid('categories', 'a non-empty list of category names');
    if (new Set(categories).size !== categories.length) {
      throw f.invalid('categories', 'a list naming each category once (names compare case- and space-insensitively)');
    }
    const missing = f.string('missing');
    if (missing !== 'column' && missing !== 'zeros') throw f.invalid('missing', '"column" or "zeros"');
    return Object.freeze({...common, missing, categories, aliases: aliasMap(f, categories)});
  }
  const table = f.numberMap('codes');
  if (Object.keys(table).length === 0) throw f.invalid('codes', 'a non-empty object of value -> number');
  const codes = new Map(Object.entries(table).map(([k, v]) => [key(k), v]));
  return Object.freeze({...common, missing: f.number('missing'), codes, aliases: aliasMap(f, [...codes.keys()])});
}

/** A list of finite numbers, each greater than the last (`count` of them, or one or more when null). */
function increasing(f, name, count) {
  const values = f.numbers(name);
  const rising = values.every((v, i) => i === 0 || v > values[i - 1]);
  const ok = values.length > 0 && (count === null || values.length === count) && rising;
  if (!ok) throw f.invalid(name, `a list of ${count ?? 'one or more'} increasing numbers`);
  return values;
}

/** The optional `aliases` as a Map of keys; every alias must name one of `targets` (already keys). */
function aliasMap(f, targets) {
  const raw = f.optional('aliases', {}, (n) => f.stringMap(n));
  const aliases = new Map();
  for (const [alias, target] of Object.entries(raw)) {
    if (!targets.includes(key(target))) {
      throw new ContractError(
        `The spec's ${f.where('aliases')} maps "${alias}" to "${target}", which is not one of ${targets.join(', ')}: ${REEXPORT}`,
      );
    }
    aliases.set(key(alias), key(target));
  }
  return aliases;
}

/** One item of contract.normalize (as Fields): {kind: "l2", features: [feature names]}, as the names. */
function readGroup(g, names) {
  g.only(['kind', 'features']);
  const kind = g.string('kind');
  if (kind !== 'l2') {
    throw new ContractError(`The spec's ${g.where('kind')} is ${JSON.stringify(kind)}; this page implements l2.`);
  }
  const members = g.strings('features');
  if (members.length === 0 || members.some((n) => !names.includes(n))) {
    throw g.invalid('features', 'a non-empty list of metadata feature names');
  }
  return members;
}

/**
 * The names of a feature's entries in `meta`, in order (core.contract.Feature.entries): a number's name
 * (and name_missing with a flag), a one-hot's name_category per category (and name_missing for a missing
 * column), a code's name.
 *
 * @param {object} feature from readContract
 * @returns {string[]}
 */
export function featureEntries(feature) {
  const missing = `${feature.name}_missing`;
  if (feature.kind === 'number') return [feature.name, ...(feature.missingFlag ? [missing] : [])];
  if (feature.kind === 'one_hot') {
    return [...feature.categories.map((c) => `${feature.name}_${c}`), ...(feature.missing === 'column' ? [missing] : [])];
  }
  return [feature.name];
}

/**
 * One feature's entries for one raw value, in double precision (core.contract.Feature.encode).
 *
 * Missing = null, undefined, NaN, or a string that is one of `tokens` after trimming and lower-casing. A
 * number takes a number or a numeric string, never a boolean, a list or an object; a one-hot or a code
 * takes a string, never anything turned into one.
 *
 * @param {object} feature from readContract
 * @param {*} value the case's raw value of the feature's field
 * @param {string[]} tokens the spec's metadata.missing_tokens
 * @returns {number[]} feature entries (length featureEntries(feature).length)
 * @throws {ContractError} with the Python reference's MetadataError message for a value it cannot take
 */
export function encodeFeature(feature, value, tokens) {
  if (feature.kind === 'number') return encodeNumber(feature, value, tokens);
  if (feature.kind === 'one_hot') {
    const vector = new Array(featureEntries(feature).length).fill(0);
    const category = canonical(feature, value, tokens);
    if (category !== null) vector[feature.categories.indexOf(category)] = 1;
    else if (feature.missing === 'column') vector[vector.length - 1] = 1;
    return vector;
  }
  const code = canonical(feature, value, tokens);
  return [code === null ? feature.missing : feature.codes.get(code)];
}

/**
 * The category (one_hot) or code (code) a raw value names, or null when it is missing: its key if that is
 * one of them (an explicit category or code always wins over an alias), else the one its alias names.
 * Mirrors Feature._category and Feature._code_key; the page also uses it to pick a select's option.
 *
 * @param {object} feature a one_hot or code feature from readContract
 * @param {*} value
 * @param {string[]} tokens the spec's metadata.missing_tokens
 * @returns {string|null}
 * @throws {ContractError} for a value that is not text or names nothing the feature knows
 */
export function canonical(feature, value, tokens) {
  if (isMissing(value, tokens)) return null;
  const known = feature.kind === 'one_hot' ? feature.categories : [...feature.codes.keys()];
  const accepted = [...known, ...feature.aliases.keys()].map((c) => `"${c}"`).join(', ');
  if (typeof value !== 'string') {
    const use = feature.kind === 'one_hot' ? feature.categories.join(', ') : `${accepted}, or leave it empty`;
    throw new ContractError(`${feature.name} ${pyRepr(value)} is not text: use one of ${use}`);
  }
  const k = key(value);
  if (known.includes(k)) return k;
  if (feature.aliases.has(k)) return feature.aliases.get(k);
  const empty = feature.kind === 'one_hot' ? 'leave it empty for missing' : 'leave it empty';
  throw new ContractError(`unknown ${feature.name} "${value}": use one of ${accepted}, or ${empty}`);
}

/** Feature._number: (transform(x) - offset) / scale, and the missing flag when the feature has one. */
function encodeNumber(feature, value, tokens) {
  const flag = (missing) => (feature.missingFlag ? [missing ? 1 : 0] : []);
  if (isMissing(value, tokens)) return [feature.missing, ...flag(true)];
  const x = parseNumber(value);
  if (x === undefined) {
    const shown = typeof value === 'string' ? `"${value}"` : pyRepr(value);
    throw new ContractError(`${feature.name} ${shown} is not a number: give a number or leave it empty`);
  }
  if (Number.isNaN(x)) return [feature.missing, ...flag(true)];
  if (feature.range !== null && !(feature.range[0] <= x && x <= feature.range[1])) {
    const unit = feature.unit ? ` ${feature.unit}` : '';
    throw new ContractError(
      `${feature.name} ${formatG(x)} is outside ${formatG(feature.range[0])}-${formatG(feature.range[1])}${unit}: fix or blank it`,
    );
  }
  const transform = TRANSFORMS[feature.transform];
  if (!transform.defined(x)) {
    throw new ContractError(`${feature.name} ${formatG(x)} is outside the domain of ${feature.transform}`);
  }
  return [(transform.apply(x) - feature.offset) / feature.scale, ...flag(false)];
}

// What Python's float() accepts from a string: a decimal number (underscores between digits allowed),
// or nan / inf / infinity with an optional sign.
const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;
const SPECIAL = /^[+-]?(nan|inf|infinity)$/i;

/**
 * A number or a numeric string as a Number (Python's float() of it, NaN and infinities included);
 * undefined for anything else: a boolean, a list, an object, text that is not a number.
 *
 * @param {*} value
 * @returns {number|undefined}
 */
export function parseNumber(value) {
  if (typeof value === 'number') return value;
  if (typeof value === 'bigint') return Number(value);
  if (typeof value !== 'string') return undefined;
  const text = value.trim().replace(/(?<=\d)_(?=\d)/g, '');
  if (DECIMAL.test(text)) return Number(text);
  if (SPECIAL.test(text)) {
    const lower = text.toLowerCase();
    if (lower.endsWith('nan')) return NaN;
    return lower.startsWith('-') ? -Infinity : Infinity;
  }
  return undefined;
}

/** core.contract._key: lower case, "_" read as a space, whitespace collapsed (names compare this way). */
export function key(text) {
  return String(text).trim().toLowerCase().replaceAll('_', ' ').split(/\s+/).filter(Boolean).join(' ');
}

/** core.contract._is_missing: null, undefined, NaN, or a string that is a missing token. */
export function isMissing(value, tokens) {
  if (value === null || value === undefined) return true;
  if (typeof value === 'number' && Number.isNaN(value)) return true;
  return typeof value === 'string' && tokens.includes(value.trim().toLowerCase());
}
