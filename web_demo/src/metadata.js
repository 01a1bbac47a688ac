/**
 * The metadata half of the contract: one patient's (age, sex, body site) -> the model's `meta` input, the
 * port of core/metadata.py (and of the Kotlin port's Metadata.kt), with everything (categories, aliases,
 * missing tokens, age centre, scale and valid range) taken from the spec's metadata contract.
 *
 *     const meta = encodeMeta(spec, {age: 55, sex: 'female', site: 'anterior torso'});   // Float32Array [K]
 *
 * encodeMeta <-> core.metadata.MetadataEncoder.encode, metadataLayout <-> MetadataEncoder.from_contract,
 * checkAge <-> MetadataEncoder.check_age; formatG writes numbers as Python's format(value, "g") does, so
 * that the messages are the Python reference's, word for word.
 */

import {ContractError, REEXPORT, describe, kindOf} from './errors.js';
import {root} from './fields.js';

/** The metadata contract version this module encodes. */
export const METADATA_CONTRACT_VERSION = 1;

/**
 * Encode one patient's metadata into the model's `meta` input, exactly like
 * core.metadata.MetadataEncoder.encode with the encoder the spec's metadata contract describes:
 * [(age - center) / scale (0 when missing), age_missing, one-hot sex..., sex_missing, one-hot site...,
 * site_missing]. Missing = null, undefined, NaN, or a string that is one of the spec's `missing_tokens`
 * after trimming and lower-casing ('' is one). Categories match case-insensitively with "_" read as a
 * space, then through the spec's aliases (e.g. "anterior torso" -> "torso").
 *
 * Nothing is coerced: an age is a number or a numeric string (never a boolean, a list or an object), a
 * sex or site is a string.
 *
 * @param {object} spec a ModelSpec from readSpec
 * @param {{age?: *, sex?: *, site?: *}} patient
 * @returns {Float32Array} the `meta` vector (length spec.metadata.size)
 * @throws {ContractError} for an unknown sex or site, a sex or site that is not a string, a non-numeric
 *     age or one outside the valid range, or a spec whose metadata contract is incomplete
 */
export function encodeMeta(spec, {age = null, sex = null, site = null} = {}) {
  const layout = metadataLayout(spec);
  const vec = new Float32Array(layout.size);
  const ageValue = checkAge(spec, age);
  if (ageValue === null) vec[1] = 1;
  else vec[0] = Math.fround((ageValue - layout.center) / layout.scale); // float64 math, stored as float32
  let offset = 2;
  const sexValue = canonical(sex, layout.sexes, layout.sexAliases, 'sex', layout.missing);
  vec[offset + (sexValue === null ? layout.sexes.length : layout.sexes.indexOf(sexValue))] = 1;
  offset += layout.sexes.length + 1;
  const siteValue = canonical(site, layout.sites, layout.siteAliases, 'body site', layout.missing);
  vec[offset + (siteValue === null ? layout.sites.length : layout.sites.indexOf(siteValue))] = 1;
  return vec;
}

/**
 * The layout of the `meta` vector the spec's metadata contract describes, checked like
 * MetadataEncoder.from_contract: [age, age_missing, sex_<each>..., sex_missing, site_<each>..., site_missing].
 * Every field is required (nothing is assumed when one is missing: no default age range, missing tokens
 * or aliases).
 *
 * @param {object} spec
 * @returns {{size: number, center: number, scale: number, range: number[], sexes: string[],
 *     sites: string[], sexAliases: object, siteAliases: object, missing: string[]}}
 * @throws {ContractError} when the contract is missing, incomplete or malformed
 */
export function metadataLayout(spec) {
  const m = root(spec).object('metadata');
  const bad = (why) => new ContractError(`The spec's metadata contract ${why}: ${REEXPORT}`);
  const version = m.required('version');
  if (version !== METADATA_CONTRACT_VERSION) {
    throw bad(`has version ${describe(version)}, not ${METADATA_CONTRACT_VERSION}`);
  }
  const dtype = m.string('dtype');
  if (dtype !== 'float32') {
    throw new ContractError(`The spec asks for a ${dtype} meta input; this page encodes float32.`);
  }
  if (m.boolean('case_insensitive') !== true) {
    throw new ContractError(
      'The spec asks for case-sensitive metadata categories; this page matches them case-insensitively, as core.metadata does.',
    );
  }
  const age = m.object('age');
  const center = age.number('center');
  const scale = age.number('scale');
  if (scale === 0) throw bad('has an age scale of 0');
  const range = age.numbers('valid_range');
  if (range.length !== 2 || range[0] > range[1]) {
    throw bad(`has age valid_range ${JSON.stringify(range)}, not [min, max]`);
  }
  const sex = categories(m.object('sex'), 'sex', bad);
  const site = categories(m.object('site'), 'site', bad);
  const layout = {
    size: m.integer('size'),
    center,
    scale,
    range,
    sexes: sex.categories,
    sites: site.categories,
    sexAliases: sex.aliases,
    siteAliases: site.aliases,
    missing: m.strings('missing_tokens'),
  };
  const names = [
    'age',
    'age_missing',
    ...layout.sexes.map((s) => `sex_${s}`),
    'sex_missing',
    ...layout.sites.map((s) => `site_${s}`),
    'site_missing',
  ];
  const features = m.objects('features').map((f) => f.string('name'));
  if (features.length !== names.length || features.some((n, i) => n !== names[i])) {
    throw bad('feature list does not match its categories');
  }
  if (layout.size !== names.length) throw bad(`size ${layout.size} does not match its ${names.length} features`);
  return layout;
}

/** One categorical feature's categories and aliases; every alias must name one of the categories. */
function categories(fields, what, bad) {
  const names = fields.strings('categories');
  const aliases = fields.stringMap('aliases');
  for (const [alias, target] of Object.entries(aliases)) {
    if (!names.includes(target)) {
      throw bad(`maps the ${what} alias "${alias}" to "${target}", which is not one of its categories`);
    }
  }
  return {categories: names, aliases};
}

/**
 * The age in years, or null when missing (mirrors MetadataEncoder.check_age, with the spec's valid_range).
 *
 * @param {object} spec
 * @param {*} age a number, a numeric string, or null / undefined / NaN / a missing token
 * @returns {number|null}
 * @throws {ContractError} when it is not a number (a boolean, list or object included) or outside the
 *     valid range
 */
export function checkAge(spec, age) {
  const layout = metadataLayout(spec);
  if (isMissing(age, layout.missing)) return null;
  const value = parseAge(age);
  if (value === undefined) {
    const shown = typeof age === 'string' ? `"${age}"` : `${describe(age)} (${kindOf(age)})`;
    throw new ContractError(`age ${shown} is not a number: give years (e.g. 55) or leave it empty`);
  }
  if (Number.isNaN(value)) return null;
  const [low, high] = layout.range;
  if (!(low <= value && value <= high)) {
    throw new ContractError(`age ${formatG(value)} is outside ${formatG(low)}-${formatG(high)} years: fix or blank it`);
  }
  return value;
}

// What Python's float() accepts from a string: a decimal number (underscores between digits allowed),
// or nan / inf / infinity with an optional sign.
const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;
const SPECIAL = /^[+-]?(nan|inf|infinity)$/i;

/** A number or numeric string as a Number; undefined for anything else (booleans are not numbers here). */
function parseAge(age) {
  if (typeof age === 'number') return age;
  if (typeof age === 'bigint') return Number(age);
  if (typeof age === 'string') {
    const text = age.trim().replace(/(?<=\d)_(?=\d)/g, '');
    if (DECIMAL.test(text)) return Number(text);
    if (SPECIAL.test(text)) {
      const lower = text.toLowerCase();
      if (lower.endsWith('nan')) return NaN;
      return lower.startsWith('-') ? -Infinity : Infinity;
    }
  }
  return undefined;
}

/** A number as Python's `format(value, "g")` writes it (6 significant digits), for identical messages. */
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
 * Mirrors core.metadata._canonical: lower case, "_" -> " ", whitespace collapsed; category, then alias.
 * Only a string is a name: a number, boolean, list or object is refused, not turned into text.
 */
function canonical(value, categories, aliases, what, tokens) {
  if (isMissing(value, tokens)) return null;
  const accepted = () => [...categories, ...Object.keys(aliases)].map((c) => `"${c}"`).join(', ');
  if (typeof value !== 'string') {
    throw new ContractError(
      `${what} ${describe(value)} (${kindOf(value)}) is not text: use one of ${accepted()}, or leave it empty for missing`,
    );
  }
  const key = value.trim().toLowerCase().replaceAll('_', ' ').split(/\s+/).filter(Boolean).join(' ');
  if (categories.includes(key)) return key;
  if (Object.prototype.hasOwnProperty.call(aliases, key)) return aliases[key];
  throw new ContractError(`unknown ${what} "${value}": use one of ${accepted()}, or leave it empty for missing`);
}

/** Mirrors core.metadata._is_missing: null, undefined, NaN, or a string that is a missing token. */
function isMissing(value, tokens) {
  if (value === null || value === undefined) return true;
  if (typeof value === 'number' && Number.isNaN(value)) return true;
  return typeof value === 'string' && tokens.includes(value.trim().toLowerCase());
}
