/**
 * contract.js against the Python reference, in Node (no browser):
 *
 *     WEB_DEMO_EXPORT=dist/<model> WEB_DEMO_CASES=/tmp/cases node --test web_demo/test/
 *
 * - without either: the unit tests, on a hand-written spec (`unitSpec`, complete as core/spec.py writes a
 *   schema-2 one, with its model contract): every required field refused when missing, thresholds and
 *   probabilities that are not numbers in [0, 1], contracts this page does not implement, metadata values
 *   of the wrong type, the public names contract.js re-exports.
 * - WEB_DEMO_EXPORT: a folder `python -m export.all` wrote (golden.json, golden/*.png, .tflite / .onnx with
 *   their .spec.json sidecars). Every golden case's image tensor must be bit-identical to Python's, its
 *   meta vector within 1e-6, its decision the same; every artifact's embedded spec must equal its sidecar.
 * - WEB_DEMO_CASES: a folder tests/test_web_demo.py writes: cases.json with images through both resize
 *   rules (expected RGB bytes, square and not, and image tensors), cases of the export's contract and of
 *   foreign contracts with core.contract's vectors or refusal sentences, a foreign .onnx, and artifacts
 *   whose spec entry was removed.
 * tests/test_web_demo.py sets both and runs this file; without them those tests are skipped.
 * Lines starting "web_demo_result " are read back by the pytest file for its summary.
 */

import assert from 'node:assert/strict';
import {readFileSync, readdirSync} from 'node:fs';
import {join} from 'node:path';
import {describe, test} from 'node:test';

import * as contract from '../src/contract.js';
import {
  ContractError,
  checkContract,
  compositeOnWhite,
  decide,
  encodeFeature,
  encodeMeta,
  formatG,
  imageTensor,
  linearTaps,
  metadataLayout,
  outputContract,
  passOrder,
  pyRepr,
  readContract,
  readSpec,
  resizeBilinear,
  resizeRgb,
  toFloat,
} from '../src/contract.js';
import {decodePng} from '../tools/png.mjs';

const EXPORT = process.env.WEB_DEMO_EXPORT;
const CASES = process.env.WEB_DEMO_CASES;
const NEED_EXPORT = EXPORT ? false : 'set WEB_DEMO_EXPORT to a python -m export.all folder (tests/test_web_demo.py does)';
const NEED_CASES = CASES ? false : 'set WEB_DEMO_CASES to the folder tests/test_web_demo.py writes';
const META_BOUND = 1e-6; // |meta - Python's| per entry (both store float32 of the same double arithmetic)

function report(t, record) {
  t.diagnostic(`web_demo_result ${JSON.stringify(record)}`);
}

function readJson(path) {
  return JSON.parse(readFileSync(path, 'utf-8'));
}

/** float32 little-endian bytes (a Buffer) -> Float32Array, whatever the Buffer's alignment. */
function float32(buffer) {
  const copy = new Uint8Array(buffer.length);
  copy.set(buffer);
  return new Float32Array(copy.buffer);
}

function maxAbsDiff(a, b) {
  assert.equal(a.length, b.length, 'lengths differ');
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst;
}

function nchwToNhwc(x, size) {
  const plane = size * size;
  const out = new Float32Array(x.length);
  for (let i = 0; i < plane; i++) for (let c = 0; c < 3; c++) out[3 * i + c] = x[c * plane + i];
  return out;
}

function artifactFiles(folder) {
  return readdirSync(folder).filter((f) => /\.(tflite|onnx)$/.test(f));
}

function exportSpec(layout) {
  const file = artifactFiles(EXPORT).find((f) => (layout === 'NHWC' ? f.endsWith('.tflite') : f.endsWith('.onnx')));
  return readSpec(readFileSync(join(EXPORT, file)));
}

/** A copy of `spec` whose image (and its contract's image) is S x S in `layout`. */
function withImage(spec, size, layout) {
  const copy = structuredClone(spec);
  copy.image.size = size;
  copy.image.layout = layout;
  copy.contract.image.size = size;
  return copy;
}

/** Asserts that `fn` throws a ContractError of one sentence (one line) that matches every pattern. */
function refuses(fn, ...patterns) {
  assert.throws(fn, (e) => {
    assert.ok(e instanceof ContractError, `expected a ContractError, got ${e && e.name}: ${e && e.message}`);
    assert.ok(e.message.trim() !== '' && !e.message.includes('\n'), `not one sentence: ${e.message}`);
    for (const p of patterns) {
      if (typeof p === 'string') assert.equal(e.message, p);
      else assert.match(e.message, p);
    }
    return true;
  });
}

// ------------------------------------------------------------------------------------ needs no fixtures

describe('contract.js on its own', () => {
  test('passOrder: vertical first only when the height shrinks by more than twice the width', () => {
    assert.equal(passOrder(300, 1000, 64, 64), 'vertical');
    assert.equal(passOrder(1000, 300, 64, 64), 'horizontal');
    assert.equal(passOrder(100, 100, 50, 50), 'horizontal');
    assert.equal(passOrder(3, 500, 32, 32), 'vertical');
    assert.equal(passOrder(500, 3, 32, 32), 'horizontal');
    assert.equal(passOrder(10, 10, 32, 32), 'horizontal');
  });

  test('compositeOnWhite keeps opaque pixels and turns transparent ones white', () => {
    const rgba = new Uint8Array(256 * 4);
    for (let v = 0; v < 256; v++) rgba.set([v, 255 - v, (v * 7) & 255, 255], 4 * v);
    const rgb = compositeOnWhite(rgba);
    for (let v = 0; v < 256; v++) assert.deepEqual([...rgb.subarray(3 * v, 3 * v + 3)], [v, 255 - v, (v * 7) & 255]);
    assert.deepEqual([...compositeOnWhite(new Uint8Array([12, 34, 56, 0]))], [255, 255, 255]);
  });

  test('toFloat lays out v / 255 as float32 in NCHW and NHWC', () => {
    const rgb = new Uint8Array([0, 1, 2, 253, 254, 255]); // 2 x 1 pixels
    const nchw = toFloat(rgb, 2, 1, 'NCHW');
    const nhwc = toFloat(rgb, 2, 1, 'NHWC');
    assert.deepEqual([...nhwc], [...rgb].map((v) => Math.fround(v / 255)));
    assert.deepEqual([...nchw], [0, 253, 1, 254, 2, 255].map((v) => Math.fround(v / 255)));
    assert.throws(() => toFloat(rgb, 2, 1, 'CHW'), ContractError);
  });

  test('resizeRgb and resizeBilinear: same size is a copy; bad sizes and lengths are refused clearly', () => {
    const rgb = Uint8Array.from({length: 5 * 4 * 3}, (_, i) => (i * 37) & 255);
    for (const resize of [resizeRgb, resizeBilinear]) {
      assert.deepEqual(resize(rgb, 5, 4, 5, 4), rgb);
      assert.throws(() => resize(rgb, 5, 4, 0, 4), /positive whole number/);
      assert.throws(() => resize(rgb.subarray(1), 5, 4, 2, 2), /give RGB/);
    }
  });

  test('linearTaps: half-pixel centres, clamped indices, weights not renormalised at the borders', () => {
    // 2 -> 4: positions -0.25, 0.25, 0.75, 1.25 (cv2.resize's), 11-bit weights.
    const {index, weight} = linearTaps(2, 4);
    assert.deepEqual([...index], [0, 0, 0, 1, 0, 1, 1, 1]);
    assert.deepEqual([...weight], [512, 1536, 1536, 512, 512, 1536, 1536, 512]);
    // 4 -> 2: positions 0.5, 2.5.
    const down = linearTaps(4, 2);
    assert.deepEqual([...down.index], [0, 1, 2, 3]);
    assert.deepEqual([...down.weight], [1024, 1024, 1024, 1024]);
    // A 1-pixel image upscaled stays that pixel.
    assert.deepEqual([...resizeBilinear(new Uint8Array([9, 99, 199]), 1, 1, 3, 2)], [9, 99, 199, 9, 99, 199, 9, 99, 199, 9, 99, 199, 9, 99, 199, 9, 99, 199]);
  });

  test('formatG and pyRepr write values as Python does', () => {
    assert.deepEqual([120, 0.5, 1e6, 1e-5, -2.5, 123456789, Infinity].map(formatG), ['120', '0.5', '1e+06', '1e-05', '-2.5', '1.23457e+08', 'inf']);
    assert.equal(pyRepr(true), 'True');
    assert.equal(pyRepr(null), 'None');
    assert.equal(pyRepr([55, 'x', 1e-5, 0.1, 1e16, 1.5e16, -0]), "[55, 'x', 1e-05, 0.1, 1e+16, 1.5e+16, -0.0]");
    assert.equal(pyRepr({years: 55, ok: false}), "{'years': 55, 'ok': False}");
    assert.equal(pyRepr("it's"), '"it\'s"');
    assert.equal(pyRepr('a\\b\n'), "'a\\\\b\\n'");
  });

  test('readSpec refuses files that are not TFLite or ONNX models', () => {
    assert.throws(() => readSpec(new Uint8Array(0)), (e) => e instanceof ContractError && /neither/.test(e.message));
    const junk = Uint8Array.from({length: 64}, (_, i) => (i * 91 + 7) & 255);
    assert.throws(() => readSpec(junk), ContractError);
  });
});

// ------------------------------------------------------------- no silent defaults, no coercion (unit spec)

const SITES = ['head/neck', 'upper extremity', 'lower extremity', 'torso', 'palms/soles', 'oral/genital'];

/**
 * A complete schema-2 spec as core/spec.py writes one (the age / sex / site contract of `python -m train`,
 * 12 metadata entries, 8 px NHWC), for the unit tests.
 */
function unitSpec() {
  const entries = ['age', 'age_missing', 'sex_male', 'sex_female', 'sex_missing', ...SITES.map((s) => `site_${s}`), 'site_missing'];
  return {
    schema: 'melanoma-model-spec',
    schema_version: 2,
    name: 'unit',
    architecture: 'test',
    image: {
      size: 8, layout: 'NHWC', dtype: 'float32', color: 'RGB', value_range: [0.0, 1.0], resize: 'stretch',
      interpolation: 'bilinear', antialias: true, resize_library: 'PIL', resize_library_version: '13.0.0',
      mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225],
    },
    metadata: {
      size: entries.length, dtype: 'float32', entries, fields: ['age_approx', 'sex', 'site'],
      missing_tokens: ['', 'nan', 'na', 'n/a', 'none', 'null', 'unknown'], case_insensitive: true,
    },
    contract: {
      contract: 'melanoma-contract/1',
      name: 'unit',
      image: {size: 8, channels: 'RGB', mean: null, std: null, resize: 'pillow'},
      metadata: [
        {
          name: 'age', kind: 'number', field: 'age_approx', offset: 50.0, scale: 20.0, missing: 0, missing_flag: true,
          range: [0.0, 120.0], bands: [40, 60], unit: 'years', description: 'age in years',
        },
        {name: 'sex', kind: 'one_hot', field: 'sex', categories: ['male', 'female'], aliases: {m: 'male', f: 'female'}, missing: 'column'},
        {
          name: 'site', kind: 'one_hot', field: 'site', categories: [...SITES],
          aliases: {'anterior torso': 'torso', 'head and neck': 'head/neck'}, missing: 'column',
        },
      ],
      output: {kind: 'sigmoid'},
      decision: {rule: 'sensitivity', target: 0.95},
    },
    outputs: {
      names: ['logit', 'probability'], shape: '[N, 1]', labels: ['benign', 'melanoma'], positive_label: 'melanoma',
      probability: 'sigmoid(logit / temperature)', temperature: 1.0, threshold: 0.3, threshold_rule: 'test', thresholds: {},
    },
    precision: {},
    provenance: {intended_use: 'Research use only.'},
  };
}

/** `spec` (unitSpec by default) with the field at the dotted `path` set to `value` (`undefined` deletes it). */
function edited(path, value, spec = unitSpec()) {
  const keys = path.split('.');
  const parent = keys.slice(0, -1).reduce((o, k) => o[k], spec);
  if (value === undefined) delete parent[keys.at(-1)];
  else parent[keys.at(-1)] = value;
  return spec;
}

/** A dotted test path as messages name it: "contract.metadata.0.name" -> "contract.metadata[0].name". */
function named(path) {
  return path.replace(/\.(\d+)(?=\.|$)/g, '[$1]');
}

/** A regular expression matching `text` literally. */
function literally(text) {
  return new RegExp(text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
}

// Every field that shapes the inputs or the decision: a reader must refuse a spec without it.
const REQUIRED = [
  'image', 'image.size', 'image.layout', 'image.dtype', 'image.color', 'image.value_range', 'image.resize',
  'image.interpolation', 'image.antialias', 'image.resize_library', 'image.resize_library_version',
  'metadata', 'metadata.size', 'metadata.dtype', 'metadata.entries', 'metadata.fields', 'metadata.missing_tokens',
  'metadata.case_insensitive',
  'contract', 'contract.contract', 'contract.name', 'contract.image', 'contract.image.size', 'contract.image.channels',
  'contract.image.resize', 'contract.metadata', 'contract.output', 'contract.decision',
  'contract.metadata.0.name', 'contract.metadata.0.kind', 'contract.metadata.0.field', 'contract.metadata.0.missing',
  'contract.metadata.1.categories', 'contract.metadata.1.missing',
  'outputs', 'outputs.names', 'outputs.labels', 'outputs.positive_label', 'outputs.threshold', 'outputs.temperature',
];

/** A spec whose contract has one code feature (for the code paths of the unit tests). */
function codeSpec() {
  const spec = unitSpec();
  spec.contract.metadata.push({name: 'skin', kind: 'code', field: 'skin', codes: {I: 1, II: 2}, aliases: {one: 'I'}, missing: 0});
  spec.metadata.entries.push('skin');
  spec.metadata.fields.push('skin');
  spec.metadata.size += 1;
  return spec;
}

describe('no silent defaults: a missing field is refused, never filled in', () => {
  test('the unit spec is complete', () => {
    checkContract(unitSpec());
    checkContract(codeSpec());
    assert.deepEqual(decide(unitSpec(), 0.3), {label: 'melanoma', positive: true});
    assert.equal(encodeMeta(unitSpec(), {age_approx: 55, sex: 'f', site: 'anterior torso'}).length, 12);
  });

  for (const path of REQUIRED) {
    test(`checkContract refuses a spec without ${path}, naming it`, () => {
      const pattern = new RegExp(`has no ${named(path).replace(/[.[\]]/g, '\\$&')}:.*python -m export\\.all`);
      refuses(() => checkContract(edited(path, undefined)), pattern);
      if (!path.startsWith('contract.')) refuses(() => checkContract(edited(path, null)), pattern); // null is as absent
    });
  }

  test('the contract may hold null only where the schema gives null a meaning', () => {
    checkContract(edited('contract.image.mean', null)); // the unit contract's mean and std are null already
    refuses(() => checkContract(edited('contract.image.mean', undefined)), /has no contract\.image\.mean:/);
    refuses(() => checkContract(edited('contract.metadata.0.name', null)), /has no contract\.metadata\[0\]\.name:/);
    refuses(() => checkContract(edited('contract.metadata.0.scale', null)), /gives contract\.metadata\[0\]\.scale as null/);
  });

  test("the schema's optional fields take their documented defaults, and only those", () => {
    const spec = unitSpec();
    for (const key of ['offset', 'scale', 'missing_flag', 'range', 'bands', 'unit', 'description']) {
      delete spec.contract.metadata[0][key];
    }
    delete spec.contract.metadata[1].aliases;
    spec.metadata.entries.splice(1, 1); // no missing flag: no age_missing entry
    spec.metadata.size -= 1;
    checkContract(spec);
    const age = readContract(spec).features[0];
    assert.deepEqual(
      [age.transform, age.offset, age.scale, age.missingFlag, age.range, age.bands, age.unit, age.description],
      ['none', 0, 1, false, null, [], '', ''],
    );
    assert.equal(encodeMeta(spec, {age_approx: 1234})[0], 1234); // no range: any number
    refuses(() => encodeMeta(spec, {sex: 'f'}), 'unknown sex "f": use one of "male", "female", or leave it empty for missing');
  });

  test('each reader refuses on its own, without checkContract first', () => {
    refuses(() => imageTensor(edited('image.layout', undefined), new Uint8Array(4), 1, 1), /has no image\.layout/);
    refuses(() => imageTensor(edited('image.antialias', undefined), new Uint8Array(4), 1, 1), /has no image\.antialias/);
    refuses(() => imageTensor(edited('contract.image.resize', undefined), new Uint8Array(4), 1, 1), /has no contract\.image\.resize/);
    refuses(() => decide(edited('outputs.threshold', undefined), 0.9), /has no outputs\.threshold/);
    refuses(() => decide(edited('outputs.labels', undefined), 0.9), /has no outputs\.labels/);
    refuses(() => decide(edited('outputs.positive_label', undefined), 0.9), /has no outputs\.positive_label/);
    refuses(() => decide(edited('outputs', undefined), 0.9), /has no outputs:/);
    refuses(() => encodeMeta(edited('metadata.missing_tokens', undefined), {}), /has no metadata\.missing_tokens/);
    refuses(() => encodeMeta(edited('contract.metadata.0.missing', undefined), {}), /has no contract\.metadata\[0\]\.missing/);
    refuses(() => encodeMeta(edited('contract', undefined), {}), /has no contract:/);
    refuses(() => checkContract(null), /not a model spec/);
  });

  test('fields of the wrong type are refused, not converted', () => {
    refuses(() => checkContract(edited('image.size', '8')), /image size "8" is not a positive integer/);
    refuses(() => checkContract(edited('image.layout', 5)), /gives image\.layout as 5, not a string/);
    refuses(() => checkContract(edited('image.antialias', 'true')), /image\.antialias as "true", not true or false/);
    refuses(() => checkContract(edited('metadata.size', 12.5)), /gives metadata\.size as 12\.5, not a whole number/);
    refuses(() => checkContract(edited('metadata.entries', 'age')), /metadata\.entries as "age", not a list of strings/);
    refuses(() => checkContract(edited('contract.metadata.0.offset', '50')), /contract\.metadata\[0\]\.offset as "50", not a finite number/);
    refuses(() => checkContract(edited('contract.metadata.0.missing_flag', 1)), /missing_flag as 1, not true or false/);
    refuses(() => checkContract(edited('contract.metadata.0.range', [0, '120'])), /contract\.metadata\[0\]\.range/);
    refuses(() => checkContract(edited('contract.metadata.1.categories', ['male', 2])), /contract\.metadata\[1\]\.categories/);
    refuses(() => checkContract(edited('contract.metadata.2.aliases', ['torso'])), /contract\.metadata\[2\]\.aliases as \["torso"\], not an object of strings/);
    refuses(() => checkContract(edited('contract.metadata.3.codes', {I: '1'}, codeSpec())), /codes as \{"I":"1"\}, not an object of numbers/);
    refuses(() => checkContract(edited('contract.metadata', {age: {}})), /contract\.metadata as .*, not a list/);
    refuses(() => checkContract(edited('contract.metadata.0', 'age')), /contract\.metadata\[0\] as "age", not a feature object/);
    refuses(() => checkContract(edited('outputs.labels', 'benign,melanoma')), /outputs\.labels/);
    refuses(() => checkContract(edited('outputs.threshold_rule', 7)), /outputs\.threshold_rule as 7, not a string/);
  });

  test('a spec of another schema version is refused in one sentence', () => {
    for (const version of [1, 3, '2', undefined]) {
      refuses(() => checkContract(edited('schema_version', version)), /^The model spec has schema version .*, but this page reads version 2: re-export/);
    }
  });

  test('values this page does not implement are refused', () => {
    refuses(() => checkContract(edited('image.color', 'BGR')), /image color "BGR"; this page implements RGB/);
    refuses(() => checkContract(edited('image.value_range', [0, 255])), /value_range \[0,255\]/);
    refuses(() => checkContract(edited('image.dtype', 'uint8')), /uint8 image input/);
    refuses(() => checkContract(edited('image.resize_library', 'cv2')), /resize_library "cv2"/);
    refuses(() => checkContract(edited('image.resize_library_version', '12.1.0')), /Pillow 12\.1\.0.*Pillow 13\.x/);
    refuses(() => checkContract(edited('image.resize_library_version', '')), /records no image\.resize_library_version/);
    refuses(() => checkContract(edited('metadata.dtype', 'float16')), /float16 meta input/);
    refuses(() => checkContract(edited('metadata.case_insensitive', false)), /case-sensitive/);
    refuses(() => checkContract(edited('contract.contract', 'melanoma-contract/2')), /contract is "melanoma-contract\/2"; this page reads "melanoma-contract\/1"/);
    refuses(() => checkContract(edited('contract.image.resize', 'lanczos')), /image resize "lanczos"; this page implements pillow, bilinear/);
    refuses(() => checkContract(edited('contract.metadata.0.kind', 'text')), /contract\.metadata\[0\]\.kind is "text"; this page implements number, one_hot, code/);
    refuses(() => checkContract(edited('contract.metadata.0.transform', 'sqrt')), /transform as "sqrt", not one of none, log, log1p/);
    refuses(() => checkContract(edited('contract.metadata.0.scale', 0)), /scale as 0, not a number greater than 0/);
    refuses(() => checkContract(edited('contract.metadata.0.range', [120, 0])), /range as \[120,0\], not a list of 2 increasing numbers/);
    refuses(() => checkContract(edited('contract.metadata.0.clip', true)), /contract\.metadata\[0\] an unknown field "clip"/);
    refuses(() => checkContract(edited('contract.metadata.1.missing', 'drop')), /missing as "drop", not "column" or "zeros"/);
    refuses(() => checkContract(edited('contract.metadata.1.categories', ['male', 'MALE'])), /naming each category once/);
    refuses(() => checkContract(edited('contract.metadata.1.aliases', {w: 'woman'})), /maps "w" to "woman", which is not one of male, female/);
    refuses(() => checkContract(edited('contract.metadata.2.name', 'sex')), /names a metadata feature twice/);
    refuses(() => checkContract(edited('contract.normalize', [{kind: 'l1', features: ['age']}])), /normalize\[0\]\.kind is "l1"; this page implements l2/);
    refuses(() => checkContract(edited('contract.normalize', [{kind: 'l2', features: ['weight']}])), /normalize\[0\]\.features as \["weight"\]/);
    refuses(() => checkContract(edited('contract.extra', 1)), /gives contract an unknown field "extra"/);
    refuses(() => checkContract(edited('outputs.names', ['logit'])), /do not include "probability"/);
    refuses(() => checkContract(edited('outputs.positive_label', 'nevus')), /positive_label "nevus"/);
    refuses(() => checkContract(edited('outputs.labels', ['melanoma'])), /another label/);
    refuses(() => checkContract(edited('outputs.temperature', 0)), /outputs\.temperature as 0, not a positive number/);
  });

  test("the spec's image and meta layout must be those its contract derives", () => {
    const mismatch = /metadata layout does not match its contract's features/;
    refuses(() => checkContract(edited('metadata.size', 13)), mismatch, /size 13, but the features have 12 entries/);
    refuses(() => checkContract(edited('metadata.entries.2', 'sex_m')), mismatch, /entry 2 is "sex_m", the features make "sex_male"/);
    refuses(() => checkContract(edited('metadata.fields', ['age_approx', 'sex'])), mismatch, /fields/);
    refuses(() => checkContract(edited('metadata.extra', 1)), /gives metadata an unknown field "extra"/);
    refuses(() => checkContract(edited('contract.image.size', 16)), /image size 8 differs from its contract's 16/);
    refuses(() => checkContract(edited('image.antialias', false)), /without antialiasing by "PIL"/);
    const bilinear = edited('image.antialias', false);
    bilinear.image.resize_library = 'OpenCV cv2.resize INTER_LINEAR (bit-exact port: core.images.resize_bilinear)';
    bilinear.image.resize_library_version = '';
    refuses(() => checkContract(bilinear), /image\.antialias false contradicts its contract's resize rule "pillow"/);
    bilinear.contract.image.resize = 'bilinear';
    checkContract(bilinear);
  });

  test('fields that are only shown may be absent, and then read as absent', () => {
    const spec = edited('outputs.threshold_rule', undefined);
    delete spec.provenance;
    delete spec.precision;
    checkContract(spec);
    assert.equal(outputContract(spec).thresholdRule, null);
    assert.equal(outputContract(unitSpec()).thresholdRule, 'test');
  });
});

describe('the threshold and the probability are numbers from 0 to 1', () => {
  test('a threshold that is not a finite number in [0, 1] is refused', () => {
    for (const bad of [NaN, Infinity, -Infinity, -0.01, 1.01, 50]) {
      refuses(() => checkContract(edited('outputs.threshold', bad)), /outputs\.threshold/);
      refuses(() => decide(edited('outputs.threshold', bad), 0.5), /outputs\.threshold/);
    }
    refuses(() => decide(edited('outputs.threshold', '0.5'), 0.9), /outputs\.threshold as "0\.5", not a finite number/);
    refuses(() => decide(edited('outputs.threshold', true), 0.9), /outputs\.threshold as true/);
    assert.equal(decide(edited('outputs.threshold', 0), 0).positive, true);
    assert.equal(decide(edited('outputs.threshold', 1), 0.999999).positive, false);
    assert.equal(decide(edited('outputs.threshold', 1), 1).positive, true);
  });

  test('decide never answers for a probability that is not a number from 0 to 1', () => {
    const spec = unitSpec();
    const bad = [NaN, undefined, null, '0.7', '', 1n, true, [0.5], {}, -0.001, 1.001, Infinity, -Infinity];
    for (const p of bad) refuses(() => decide(spec, p), /^The probability .* is not a number from 0 to 1/);
    refuses(() => decide(spec, NaN), /probability NaN/);
    refuses(() => decide(spec, undefined), /probability undefined/);
    refuses(() => decide(spec, '0.7'), /probability "0\.7"/);
    assert.deepEqual(decide(spec, 0), {label: 'benign', positive: false});
    assert.deepEqual(decide(spec, 1), {label: 'melanoma', positive: true});
    assert.deepEqual(decide(spec, 0.2999), {label: 'benign', positive: false});
  });
});

describe('encodeMeta takes numbers as numbers and categories as text, nothing coerced', () => {
  const spec = unitSpec();

  test("a number that is a boolean, a list, an object or non-numeric text is refused in core.contract's words", () => {
    refuses(() => encodeMeta(spec, {age_approx: true}), 'age True is not a number: give a number or leave it empty');
    refuses(() => encodeMeta(spec, {age_approx: false}), 'age False is not a number: give a number or leave it empty');
    refuses(() => encodeMeta(spec, {age_approx: [55]}), 'age [55] is not a number: give a number or leave it empty');
    refuses(() => encodeMeta(spec, {age_approx: []}), 'age [] is not a number: give a number or leave it empty');
    refuses(() => encodeMeta(spec, {age_approx: {years: 55}}), "age {'years': 55} is not a number: give a number or leave it empty");
    refuses(() => encodeMeta(spec, {age_approx: 'fifty'}), 'age "fifty" is not a number: give a number or leave it empty');
    refuses(() => encodeMeta(spec, {age_approx: 120.5}), 'age 120.5 is outside 0-120 years: fix or blank it');
    // Numbers and numeric text still work, and the missing values are still missing.
    const age = readContract(spec).features[0];
    const tokens = spec.metadata.missing_tokens;
    assert.deepEqual(encodeFeature(age, 55, tokens), [0.25, 0]);
    assert.deepEqual(encodeFeature(age, ' 55 ', tokens), [0.25, 0]);
    assert.deepEqual(encodeFeature(age, 55n, tokens), [0.25, 0]);
    assert.deepEqual(encodeFeature(age, '5_5', tokens), [0.25, 0]);
    assert.deepEqual(encodeFeature(age, 'unknown', tokens), [0, 1]);
    assert.deepEqual(encodeFeature(age, NaN, tokens), [0, 1]);
    assert.deepEqual(encodeFeature(age, '-NaN', tokens), [0, 1]);
  });

  test('a category or code that is not text is refused, not turned into text', () => {
    const sites = SITES.join(', ');
    refuses(() => encodeMeta(spec, {site: 5}), `site 5 is not text: use one of ${sites}`);
    refuses(() => encodeMeta(spec, {site: ['torso']}), `site ['torso'] is not text: use one of ${sites}`);
    refuses(() => encodeMeta(spec, {site: {toString: () => 'torso'}}), /^site \{.*\} is not text/);
    refuses(() => encodeMeta(spec, {sex: true}), 'sex True is not text: use one of male, female');
    refuses(() => encodeMeta(spec, {sex: 1.5}), 'sex 1.5 is not text: use one of male, female');
    refuses(() => encodeMeta(codeSpec(), {skin: 2}), 'skin 2 is not text: use one of "i", "ii", "one", or leave it empty');
    refuses(() => encodeMeta(codeSpec(), {skin: 'III'}), 'unknown skin "III": use one of "i", "ii", "one", or leave it empty');
    const expected = new Float32Array(12);
    expected[0] = Math.fround(0.25);
    expected[3] = 1; // female
    expected[5 + 3] = 1; // torso
    assert.deepEqual(encodeMeta(spec, {age_approx: 55, sex: 'F', site: 'anterior_torso'}), expected);
    assert.deepEqual(encodeMeta(spec, new Map([['age_approx', 55], ['sex', 'F'], ['site', 'anterior_torso']])), expected);
    const missing = encodeMeta(spec, {sex: NaN, site: undefined});
    assert.equal(missing[1], 1);
    assert.equal(missing[4], 1);
    assert.equal(missing[11], 1);
    assert.deepEqual([...encodeMeta(codeSpec(), {skin: ' One '})].at(-1), 1);
  });

  test('a field the case lacks is missing, whatever its name; fields the contract does not read are ignored', () => {
    const spec = unitSpec();
    spec.contract.metadata[1].field = 'constructor'; // a name every JavaScript object inherits
    spec.metadata.fields[1] = 'constructor';
    assert.equal(encodeMeta(spec, {})[4], 1);
    assert.equal(encodeMeta(spec, {constructor: 'male', toString: 'x'})[2], 1);
  });

  test('the missing tokens are the spec\'s, nothing else', () => {
    const custom = edited('metadata.missing_tokens', ['?']);
    assert.equal(encodeMeta(custom, {sex: '?'})[4], 1);
    refuses(() => encodeMeta(custom, {sex: 'unknown'}), 'unknown sex "unknown": use one of "male", "female", "m", "f", or leave it empty for missing');
    assert.deepEqual(metadataLayout(unitSpec()).missingTokens, unitSpec().metadata.missing_tokens);
  });
});

describe('contract.js is the public entry', () => {
  test('it re-exports every name of the port', () => {
    const names = [
      'SPEC_SCHEMA', 'SPEC_SCHEMA_VERSION', 'SPEC_KEY', 'SUPPORTED', 'PILLOW_MAJOR', 'BILINEAR_LIBRARY', 'ContractError',
      'CONTRACT_SCHEMA', 'FEATURE_KINDS', 'readSpec', 'isTflite', 'tfliteMetadata', 'onnxMetadata', 'checkContract',
      'checkImageContract', 'outputContract', 'decide', 'passOrder', 'resampleCoefficients', 'resizeRgb', 'linearTaps',
      'resizeBilinear', 'compositeOnWhite', 'toFloat', 'imageTensor', 'readContract', 'featureEntries', 'encodeFeature',
      'canonical', 'metadataLayout', 'encodeMeta', 'formatG', 'pyRepr', 'NO_WEBCRYPTO', 'SENTENCES', 'SIGNATURE_FILE',
      'canonicalPem', 'checkFiles', 'derToRaw', 'isIgnored', 'pae', 'readTrustedKey', 'sha256Hex', 'verifyHeld',
      'verifySignature',
    ];
    for (const name of names) assert.notEqual(contract[name], undefined, `contract.js does not export ${name}`);
    assert.deepEqual(Object.keys(contract).sort(), [...names].sort());
    assert.equal(contract.SPEC_SCHEMA_VERSION, 2);
  });
});

// ------------------------------------------------------------------------ the export written by export.all

describe('against export.all artifacts and golden vectors', {skip: NEED_EXPORT}, () => {
  const golden = EXPORT ? readJson(join(EXPORT, 'golden.json')) : {cases: []};

  test('readSpec of every .tflite and .onnx equals its .spec.json sidecar', (t) => {
    const files = artifactFiles(EXPORT);
    assert.ok(files.some((f) => f.endsWith('.tflite')) && files.some((f) => f.endsWith('.onnx')), `artifacts: ${files}`);
    for (const file of files) {
      const spec = readSpec(readFileSync(join(EXPORT, file)));
      assert.deepEqual(spec, readJson(join(EXPORT, `${file}.spec.json`)), file);
      checkContract(spec);
      assert.equal(spec.schema_version, 2, file);
      assert.equal(spec.image.layout, file.endsWith('.tflite') ? 'NHWC' : 'NCHW', file);
    }
    report(t, {kind: 'specs', count: files.length});
  });

  test('readSpec says a damaged .tflite is damaged', () => {
    const file = artifactFiles(EXPORT).find((f) => f.endsWith('.tflite'));
    const bytes = readFileSync(join(EXPORT, file));
    assert.throws(
      () => readSpec(bytes.subarray(0, 4096)),
      (e) => e instanceof ContractError && /damaged/.test(e.message) && /python -m export.all/.test(e.message),
    );
  });

  test('golden.json has cases', () => {
    assert.ok(golden.cases.length >= 1, 'no golden cases');
  });

  for (const c of golden.cases) {
    test(`golden case ${c.image_name}: image tensor, meta and decision as Python`, (t) => {
      const png = decodePng(readFileSync(join(EXPORT, c.png)));
      assert.deepEqual([png.height, png.width, 3], c.decoded_rgb.shape);
      const decoded = Buffer.from(c.decoded_rgb.base64, 'base64');
      assert.deepEqual(compositeOnWhite(png.rgba), new Uint8Array(decoded), 'PNG pixels differ from decoded_rgb');
      const expected = float32(Buffer.from(c.image.base64, 'base64'));
      const size = c.image.shape[1];
      const nchw = exportSpec('NCHW');
      const nhwc = exportSpec('NHWC');
      const dN = maxAbsDiff(imageTensor(nchw, png.rgba, png.width, png.height), expected);
      const dH = maxAbsDiff(imageTensor(nhwc, png.rgba, png.width, png.height), nchwToNhwc(expected, size));
      const meta = encodeMeta(nchw, c.metadata);
      const dMeta = maxAbsDiff(meta, c.meta);
      report(t, {kind: 'golden', name: c.image_name, width: png.width, height: png.height, size, max_abs_diff: Math.max(dN, dH), meta_max_abs_diff: dMeta});
      assert.equal(dN, 0, `NCHW image tensor max |d| ${dN}`);
      assert.equal(dH, 0, `NHWC image tensor max |d| ${dH}`);
      assert.ok(dMeta <= META_BOUND, `meta for ${JSON.stringify(c.metadata)}: max |d| ${dMeta}`);
      assert.deepEqual(encodeMeta(nhwc, c.metadata), meta);
      const decision = decide(nchw, c.expected.probability);
      assert.deepEqual(decision, {label: c.expected.label, positive: c.expected.positive});
    });
  }

  test('decide: at the threshold is positive, just below is not', () => {
    const spec = exportSpec('NCHW');
    const th = spec.outputs.threshold;
    assert.equal(decide(spec, th).positive, true);
    assert.equal(decide(spec, th).label, spec.outputs.positive_label);
    const below = decide(spec, th - 1e-9);
    assert.equal(below.positive, false);
    assert.ok(spec.outputs.labels.includes(below.label) && below.label !== spec.outputs.positive_label);
  });

  test('encodeMeta: null, undefined, NaN and missing tokens are missing; bad input throws a clear error', () => {
    const spec = exportSpec('NCHW');
    const [age, sex, site] = spec.metadata.fields;
    const allMissing = encodeMeta(spec, {});
    assert.equal(allMissing.length, spec.metadata.size);
    assert.deepEqual(encodeMeta(spec, {[age]: NaN, [sex]: undefined, [site]: null}), allMissing);
    assert.deepEqual(encodeMeta(spec, {[age]: ' ', [sex]: 'Unknown', [site]: 'N/A'}), allMissing);
    assert.throws(() => encodeMeta(spec, {[site]: 'elbow'}), (e) => e instanceof ContractError && /^unknown site "elbow"/.test(e.message));
    assert.throws(() => encodeMeta(spec, {[age]: 1000}), (e) => e instanceof ContractError && /outside/.test(e.message));
    assert.throws(() => encodeMeta(spec, {[age]: {}}), (e) => e instanceof ContractError && /not a number/.test(e.message));
  });

  test('checkContract refuses what contract.js does not implement', () => {
    const spec = exportSpec('NCHW');
    const variant = (image) => ({...spec, image: {...spec.image, ...image}});
    assert.throws(() => checkContract(variant({interpolation: 'bicubic'})), /interpolation "bicubic"/);
    assert.throws(() => checkContract(variant({resize: 'center_crop'})), /resize "center_crop"/);
    assert.throws(() => checkContract(variant({layout: 'CHW'})), /layout "CHW"/);
    assert.throws(() => checkContract(variant({antialias: false})), /without antialiasing/);
    const entries = spec.metadata.entries.slice(0, -1);
    assert.throws(() => checkContract({...spec, metadata: {...spec.metadata, entries}}), /does not match its contract/);
  });
});

// ------------------------------------------------------------------ cases written by tests/test_web_demo.py

describe('against PIL, core.images and core.contract on cases written by the Python test', {skip: NEED_CASES}, () => {
  const cases = CASES ? readJson(join(CASES, 'cases.json')) : {resize: [], meta: [], stripped: [], specs: {}};
  const base = {pillow: cases.specs.export, bilinear: cases.specs.foreign};
  let last = {file: null, png: null}; // the two rules of one image are neighbours: decode it once

  function png(file) {
    if (last.file !== file) last = {file, png: decodePng(readFileSync(join(CASES, file)))};
    return last.png;
  }

  function differing(got, file) {
    const want = readFileSync(join(CASES, file));
    assert.equal(got.length, want.length, `${file}: ${got.length} bytes, Python wrote ${want.length}`);
    let levels = 0;
    let count = 0;
    for (let i = 0; i < got.length; i++) {
      const d = Math.abs(got[i] - want[i]);
      levels = Math.max(levels, d);
      if (d) count++;
    }
    return {levels, count};
  }

  test('the foreign specs are read and accepted', () => {
    for (const spec of Object.values(cases.specs)) checkContract(spec);
    assert.equal(cases.specs.foreign.image.antialias, false);
    assert.equal(cases.specs.foreign.contract.image.resize, 'bilinear');
  });

  test('readSpec of the foreign .onnx gives its spec, which checkContract accepts', () => {
    const spec = readSpec(readFileSync(join(CASES, cases.foreign.file)));
    assert.deepEqual(spec, cases.foreign.spec);
    checkContract(spec);
  });

  for (const c of cases.resize) {
    const title = `${c.rule} resize ${c.name}: ${c.width}x${c.height}${c.alpha ? ' RGBA' : ''} -> ${c.size} ${c.layout} and ${c.rect.width}x${c.rect.height}`;
    test(title, (t) => {
      const image = png(c.png);
      assert.deepEqual([image.width, image.height], [c.width, c.height]);
      assert.equal(passOrder(c.width, c.height, c.size, c.size), c.order);
      const resize = c.rule === 'pillow' ? resizeRgb : resizeBilinear;
      const rgb = compositeOnWhite(image.rgba);
      const square = differing(resize(rgb, c.width, c.height, c.size), c.rgb);
      const rect = differing(resize(rgb, c.width, c.height, c.rect.width, c.rect.height), c.rect.rgb);
      const spec = withImage(base[c.rule], c.size, c.layout);
      const tensor = imageTensor(spec, image.rgba, image.width, image.height);
      const d = maxAbsDiff(tensor, float32(readFileSync(join(CASES, c.tensor))));
      const bytes = square.count + rect.count;
      report(t, {kind: 'resize', rule: c.rule, name: c.name, size: c.size, order: c.order, max_abs_diff: d, differing_bytes: bytes});
      assert.equal(square.count, 0, `${square.count} bytes differ from Python (up to ${square.levels} levels)`);
      assert.equal(rect.count, 0, `${c.rect.width}x${c.rect.height}: ${rect.count} bytes differ (up to ${rect.levels} levels)`);
      assert.equal(d, 0, `image tensor max |d| ${d}`);
    });
  }

  for (const name of ['export', 'foreign', 'shared']) {
    test(`encodeMeta equals core.contract on every ${name} case, refusals word for word`, (t) => {
      const spec = cases.specs[name];
      const mine = cases.meta.filter((m) => m.spec === name);
      assert.ok(mine.length > 0 && mine.some((m) => m.error === null) && mine.some((m) => m.error !== null));
      let worst = 0;
      for (const m of mine) {
        if (m.error === null) {
          const got = encodeMeta(spec, m.input);
          const d = maxAbsDiff(got, m.expected);
          worst = Math.max(worst, d);
          assert.ok(d <= META_BOUND, `${JSON.stringify(m.input)}: max |d| ${d}, got ${[...got]}, want ${m.expected}`);
        } else {
          assert.throws(
            () => encodeMeta(spec, m.input),
            (e) => e instanceof ContractError && e.message === m.error,
            `${JSON.stringify(m.input)} should fail with: ${m.error}`,
          );
        }
      }
      report(t, {kind: 'meta', spec: name, count: mine.length, max_abs_diff: worst});
    });
  }

  for (const s of cases.stripped) {
    test(`readSpec of ${s.file} (spec entry removed) throws the clear error`, () => {
      assert.throws(
        () => readSpec(readFileSync(join(CASES, s.file))),
        (e) =>
          e instanceof ContractError &&
          e.message.includes('carries no model spec') &&
          e.message.includes('python -m export.all'),
      );
    });
  }
});
