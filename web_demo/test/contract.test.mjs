/**
 * contract.js against the Python reference, in Node (no browser):
 *
 *     WEB_DEMO_EXPORT=dist/<model> WEB_DEMO_CASES=/tmp/cases node --test web_demo/test/
 *
 * - without either: the unit tests, on a hand-written spec (`unitSpec`, complete as core/spec.py writes
 *   one): every required field refused when missing, thresholds and probabilities that are not numbers in
 *   [0, 1], metadata values of the wrong type, the public names contract.js re-exports.
 * - WEB_DEMO_EXPORT: a folder `python -m export.all` wrote (golden.json, golden/*.png, .tflite / .onnx with
 *   their .spec.json sidecars). Every golden case's image tensor must be bit-identical to Python's, its
 *   meta vector equal, its decision the same; every artifact's embedded spec must equal its sidecar.
 * - WEB_DEMO_CASES: a folder tests/test_web_demo.py writes: cases.json with PIL resizes of odd sizes
 *   (expected RGB bytes and image tensors), metadata inputs with Python's vectors or error messages, and
 *   artifacts whose spec entry was removed.
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
  checkAge,
  checkContract,
  compositeOnWhite,
  decide,
  encodeMeta,
  imageTensor,
  metadataLayout,
  outputContract,
  passOrder,
  readSpec,
  resizeRgb,
  toFloat,
} from '../src/contract.js';
import {decodePng} from '../tools/png.mjs';

const EXPORT = process.env.WEB_DEMO_EXPORT;
const CASES = process.env.WEB_DEMO_CASES;
const NEED_EXPORT = EXPORT ? false : 'set WEB_DEMO_EXPORT to a python -m export.all folder (tests/test_web_demo.py does)';
const NEED_CASES = CASES ? false : 'set WEB_DEMO_CASES to the folder tests/test_web_demo.py writes';

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

  test('resizeRgb: same size is a copy; bad sizes and lengths are refused clearly', () => {
    const rgb = Uint8Array.from({length: 5 * 4 * 3}, (_, i) => (i * 37) & 255);
    assert.deepEqual(resizeRgb(rgb, 5, 4, 5, 4), rgb);
    assert.throws(() => resizeRgb(rgb, 5, 4, 0, 4), /positive whole number/);
    assert.throws(() => resizeRgb(rgb.subarray(1), 5, 4, 2, 2), /give RGB/);
  });

  test('readSpec refuses files that are not TFLite or ONNX models', () => {
    assert.throws(() => readSpec(new Uint8Array(0)), (e) => e instanceof ContractError && /neither/.test(e.message));
    const junk = Uint8Array.from({length: 64}, (_, i) => (i * 91 + 7) & 255);
    assert.throws(() => readSpec(junk), ContractError);
  });
});

// ------------------------------------------------------------- no silent defaults, no coercion (unit spec)

const SITES = ['head/neck', 'upper extremity', 'lower extremity', 'torso', 'palms/soles', 'oral/genital'];

/** A complete spec as core/spec.py writes one (12 metadata features, 8 px NHWC), for the unit tests. */
function unitSpec() {
  const names = ['age', 'age_missing', 'sex_male', 'sex_female', 'sex_missing', ...SITES.map((s) => `site_${s}`), 'site_missing'];
  return {
    schema: 'melanoma-model-spec',
    schema_version: 1,
    name: 'unit',
    architecture: 'test',
    image: {
      size: 8, layout: 'NHWC', dtype: 'float32', color: 'RGB', value_range: [0.0, 1.0], resize: 'stretch',
      interpolation: 'bilinear', antialias: true, resize_library: 'PIL', resize_library_version: '13.0.0',
      mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225],
    },
    metadata: {
      version: 1, size: names.length, dtype: 'float32',
      features: names.map((name, index) => ({name, index, source: 'x', encoding: 'e'})),
      age: {column: 'age_approx', unit: 'years', center: 50.0, scale: 20.0, valid_range: [0.0, 120.0]},
      sex: {column: 'sex', categories: ['male', 'female'], aliases: {m: 'male', f: 'female'}},
      site: {column: 'site', categories: [...SITES], aliases: {'anterior torso': 'torso', 'head and neck': 'head/neck'}},
      missing_tokens: ['', 'nan', 'na', 'n/a', 'none', 'null', 'unknown'],
      case_insensitive: true,
    },
    outputs: {
      names: ['logit', 'probability'], shape: '[N, 1]', labels: ['benign', 'melanoma'], positive_label: 'melanoma',
      probability: 'sigmoid(logit / temperature)', temperature: 1.0, threshold: 0.3, threshold_rule: 'test', thresholds: {},
    },
    precision: {},
    provenance: {intended_use: 'Research use only.'},
  };
}

/** unitSpec with the field at the dotted `path` set to `value` (`undefined` deletes it). */
function edited(path, value) {
  const spec = unitSpec();
  const keys = path.split('.');
  const parent = keys.slice(0, -1).reduce((o, k) => o[k], spec);
  if (value === undefined) delete parent[keys.at(-1)];
  else parent[keys.at(-1)] = value;
  return spec;
}

/** Asserts that `fn` throws a ContractError of one sentence (one line) that matches every pattern. */
function refuses(fn, ...patterns) {
  assert.throws(fn, (e) => {
    assert.ok(e instanceof ContractError, `expected a ContractError, got ${e && e.name}: ${e && e.message}`);
    assert.ok(e.message.trim() !== '' && !e.message.includes('\n'), `not one sentence: ${e.message}`);
    for (const p of patterns) assert.match(e.message, p);
    return true;
  });
}

// Every field that shapes the inputs or the decision: a reader must refuse a spec without it.
const REQUIRED = [
  'image', 'image.size', 'image.layout', 'image.dtype', 'image.color', 'image.value_range', 'image.resize',
  'image.interpolation', 'image.antialias', 'image.resize_library', 'image.resize_library_version',
  'metadata', 'metadata.version', 'metadata.size', 'metadata.dtype', 'metadata.case_insensitive', 'metadata.features',
  'metadata.age', 'metadata.age.center', 'metadata.age.scale', 'metadata.age.valid_range', 'metadata.sex',
  'metadata.sex.categories', 'metadata.sex.aliases', 'metadata.site', 'metadata.site.categories',
  'metadata.site.aliases', 'metadata.missing_tokens',
  'outputs', 'outputs.names', 'outputs.labels', 'outputs.positive_label', 'outputs.threshold', 'outputs.temperature',
];

describe('no silent defaults: a missing field is refused, never filled in', () => {
  test('the unit spec is complete', () => {
    checkContract(unitSpec());
    assert.deepEqual(decide(unitSpec(), 0.3), {label: 'melanoma', positive: true});
    assert.equal(encodeMeta(unitSpec(), {age: 55, sex: 'f', site: 'anterior torso'}).length, 12);
  });

  for (const path of REQUIRED) {
    test(`checkContract refuses a spec without ${path}, naming it`, () => {
      const named = new RegExp(`has no ${path.replaceAll('.', '\\.')}:.*python -m export\\.all`);
      refuses(() => checkContract(edited(path, undefined)), named);
      refuses(() => checkContract(edited(path, null)), named); // null is as absent as a missing key
    });
  }

  test('each reader refuses on its own, without checkContract first', () => {
    refuses(() => imageTensor(edited('image.layout', undefined), new Uint8Array(4), 1, 1), /has no image\.layout/);
    refuses(() => imageTensor(edited('image.antialias', undefined), new Uint8Array(4), 1, 1), /has no image\.antialias/);
    refuses(() => decide(edited('outputs.threshold', undefined), 0.9), /has no outputs\.threshold/);
    refuses(() => decide(edited('outputs.labels', undefined), 0.9), /has no outputs\.labels/);
    refuses(() => decide(edited('outputs.positive_label', undefined), 0.9), /has no outputs\.positive_label/);
    refuses(() => decide(edited('outputs', undefined), 0.9), /has no outputs:/);
    refuses(() => encodeMeta(edited('metadata.age.valid_range', undefined), {age: 130}), /has no metadata\.age\.valid_range/);
    refuses(() => encodeMeta(edited('metadata.missing_tokens', undefined), {}), /has no metadata\.missing_tokens/);
    refuses(() => encodeMeta(edited('metadata.site.aliases', undefined), {}), /has no metadata\.site\.aliases/);
    refuses(() => checkAge(edited('metadata.age.center', undefined), 40), /has no metadata\.age\.center/);
    refuses(() => checkContract(null), /not a model spec/);
  });

  test('fields of the wrong type are refused, not converted', () => {
    refuses(() => checkContract(edited('image.size', '8')), /image size "8" is not a positive integer/);
    refuses(() => checkContract(edited('image.layout', 5)), /gives image\.layout as 5, not a string/);
    refuses(() => checkContract(edited('image.antialias', 'true')), /image\.antialias as "true", not true or false/);
    refuses(() => checkContract(edited('metadata.age.center', '50')), /metadata\.age\.center as "50", not a finite number/);
    refuses(() => checkContract(edited('metadata.age.scale', null)), /has no metadata\.age\.scale/);
    refuses(() => checkContract(edited('metadata.age.valid_range', [0, '120'])), /valid_range/);
    refuses(() => checkContract(edited('metadata.sex.categories', ['male', 2])), /metadata\.sex\.categories/);
    refuses(() => checkContract(edited('metadata.site.aliases', ['torso'])), /metadata\.site\.aliases/);
    refuses(() => checkContract(edited('metadata.size', 12.5)), /metadata\.size as 12\.5, not a whole number/);
    refuses(() => checkContract(edited('outputs.labels', 'benign,melanoma')), /outputs\.labels/);
    refuses(() => checkContract(edited('outputs.threshold_rule', 7)), /outputs\.threshold_rule as 7, not a string/);
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
    refuses(() => checkContract(edited('metadata.age.scale', 0)), /age scale of 0/);
    refuses(() => checkContract(edited('metadata.age.valid_range', [120, 0])), /valid_range \[120,0\], not \[min, max\]/);
    refuses(() => checkContract(edited('metadata.sex.aliases', {w: 'woman'})), /alias "w" to "woman"/);
    refuses(() => checkContract(edited('outputs.names', ['logit'])), /do not include "probability"/);
    refuses(() => checkContract(edited('outputs.positive_label', 'nevus')), /positive_label "nevus"/);
    refuses(() => checkContract(edited('outputs.labels', ['melanoma'])), /another label/);
    refuses(() => checkContract(edited('outputs.temperature', 0)), /outputs\.temperature as 0, not a positive number/);
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

describe('encodeMeta takes ages as numbers and categories as text, nothing coerced', () => {
  const spec = unitSpec();

  test('an age that is a boolean, a list, an object or non-numeric text is refused, naming the age', () => {
    refuses(() => encodeMeta(spec, {age: true}), /^age true \(a boolean\) is not a number: give years/);
    refuses(() => encodeMeta(spec, {age: false}), /^age false \(a boolean\) is not a number/);
    refuses(() => encodeMeta(spec, {age: [55]}), /^age \[55\] \(a list\) is not a number/);
    refuses(() => encodeMeta(spec, {age: []}), /^age \[\] \(a list\) is not a number/);
    refuses(() => encodeMeta(spec, {age: {years: 55}}), /^age \{"years":55\} \(an object\) is not a number/);
    refuses(() => encodeMeta(spec, {age: 'fifty'}), /^age "fifty" is not a number: give years \(e\.g\. 55\) or leave it empty$/);
    refuses(() => checkAge(spec, true), /age true/);
    // Numbers and numeric text still work, and the missing values are still missing.
    assert.equal(checkAge(spec, 55), 55);
    assert.equal(checkAge(spec, ' 55 '), 55);
    assert.equal(checkAge(spec, 55n), 55);
    assert.equal(checkAge(spec, 'unknown'), null);
    assert.equal(checkAge(spec, NaN), null);
  });

  test('a sex or body site that is not text is refused, not turned into text', () => {
    refuses(() => encodeMeta(spec, {site: 5}), /^body site 5 \(a number\) is not text: use one of "head\/neck"/);
    refuses(() => encodeMeta(spec, {site: ['torso']}), /^body site \["torso"\] \(a list\) is not text/);
    refuses(() => encodeMeta(spec, {site: {toString: () => 'torso'}}), /^body site .* \(an object\) is not text/);
    refuses(() => encodeMeta(spec, {sex: true}), /^sex true \(a boolean\) is not text: use one of "male", "female", "m", "f"/);
    refuses(() => encodeMeta(spec, {sex: 1}), /^sex 1 \(a number\) is not text/);
    refuses(() => encodeMeta(spec, {sex: ['f']}), /^sex \["f"\] \(a list\) is not text/);
    const expected = new Float32Array(12);
    expected[0] = Math.fround(0.25);
    expected[3] = 1; // female
    expected[5 + 3] = 1; // torso
    assert.deepEqual(encodeMeta(spec, {age: 55, sex: 'F', site: 'anterior_torso'}), expected);
    const missing = encodeMeta(spec, {sex: NaN, site: undefined});
    assert.equal(missing[4], 1);
    assert.equal(missing[11], 1);
  });

  test('metadataLayout reads the contract as written, with no defaults', () => {
    const layout = metadataLayout(spec);
    assert.deepEqual(layout.range, [0, 120]);
    assert.deepEqual(layout.missing, spec.metadata.missing_tokens);
    const custom = edited('metadata.missing_tokens', ['?']);
    assert.equal(encodeMeta(custom, {sex: '?'})[4], 1);
    refuses(() => encodeMeta(custom, {sex: 'unknown'}), /unknown sex "unknown"/);
  });
});

describe('contract.js is the public entry', () => {
  test('it re-exports every name the single-file contract.js exported, and the new ones', () => {
    const names = [
      'SPEC_SCHEMA', 'SPEC_SCHEMA_VERSION', 'SPEC_KEY', 'METADATA_CONTRACT_VERSION', 'SUPPORTED', 'ContractError',
      'readSpec', 'isTflite', 'checkContract', 'passOrder', 'resampleCoefficients', 'resizeRgb', 'compositeOnWhite',
      'toFloat', 'imageTensor', 'metadataLayout', 'formatG', 'checkAge', 'encodeMeta', 'decide',
      'outputContract', 'checkImageContract', 'tfliteMetadata', 'onnxMetadata', 'PILLOW_MAJOR',
    ];
    for (const name of names) assert.notEqual(contract[name], undefined, `contract.js does not export ${name}`);
    assert.deepEqual(Object.keys(contract).sort(), [...names].sort());
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
      report(t, {kind: 'golden', name: c.image_name, width: png.width, height: png.height, size, max_abs_diff: Math.max(dN, dH)});
      assert.equal(dN, 0, `NCHW image tensor max |d| ${dN}`);
      assert.equal(dH, 0, `NHWC image tensor max |d| ${dH}`);
      const meta = encodeMeta(nchw, c.metadata);
      assert.deepEqual([...meta], c.meta.map(Math.fround), `meta for ${JSON.stringify(c.metadata)}`);
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
    const k = spec.metadata.size;
    const allMissing = encodeMeta(spec, {});
    assert.equal(allMissing.length, k);
    assert.deepEqual(encodeMeta(spec, {age: NaN, sex: undefined, site: null}), allMissing);
    assert.deepEqual(encodeMeta(spec, {age: ' ', sex: 'Unknown', site: 'N/A'}), allMissing);
    assert.throws(() => encodeMeta(spec, {site: 'elbow'}), (e) => e instanceof ContractError && /unknown body site "elbow"/.test(e.message));
    assert.throws(() => encodeMeta(spec, {age: 1000}), (e) => e instanceof ContractError && /outside/.test(e.message));
    assert.throws(() => encodeMeta(spec, {age: {}}), (e) => e instanceof ContractError && /not a number/.test(e.message));
  });

  test('checkContract refuses what contract.js does not implement', () => {
    const spec = exportSpec('NCHW');
    const variant = (image) => ({...spec, image: {...spec.image, ...image}});
    assert.throws(() => checkContract(variant({interpolation: 'bicubic'})), /interpolation "bicubic"/);
    assert.throws(() => checkContract(variant({resize: 'center_crop'})), /resize "center_crop"/);
    assert.throws(() => checkContract(variant({layout: 'CHW'})), /layout "CHW"/);
    assert.throws(() => checkContract(variant({antialias: false})), /without antialiasing/);
    const features = spec.metadata.features.slice(0, -1);
    assert.throws(() => checkContract({...spec, metadata: {...spec.metadata, features}}), /feature list/);
  });
});

// ------------------------------------------------------------------ cases written by tests/test_web_demo.py

describe('against PIL and core.metadata on cases written by the Python test', {skip: NEED_CASES}, () => {
  const cases = CASES ? readJson(join(CASES, 'cases.json')) : {resize: [], meta: [], stripped: []};

  for (const c of cases.resize) {
    test(`resize ${c.name}: ${c.width}x${c.height}${c.alpha ? ' RGBA' : ''} -> ${c.size} ${c.layout}`, (t) => {
      const png = decodePng(readFileSync(join(CASES, c.png)));
      assert.deepEqual([png.width, png.height], [c.width, c.height]);
      assert.equal(passOrder(c.width, c.height, c.size, c.size), c.order);
      const rgb = resizeRgb(compositeOnWhite(png.rgba), c.width, c.height, c.size);
      const pil = readFileSync(join(CASES, c.rgb));
      let levels = 0;
      let differing = 0;
      for (let i = 0; i < rgb.length; i++) {
        const d = Math.abs(rgb[i] - pil[i]);
        levels = Math.max(levels, d);
        if (d) differing++;
      }
      const spec = {...cases.spec, image: {...cases.spec.image, size: c.size, layout: c.layout}};
      const tensor = imageTensor(spec, png.rgba, png.width, png.height);
      const d = maxAbsDiff(tensor, float32(readFileSync(join(CASES, c.tensor))));
      report(t, {kind: 'resize', name: c.name, size: c.size, order: c.order, max_abs_diff: d, differing_bytes: differing});
      assert.equal(rgb.length, pil.length);
      assert.equal(differing, 0, `${differing} bytes differ from PIL (up to ${levels} levels)`);
      assert.equal(d, 0, `image tensor max |d| ${d}`);
    });
  }

  test('encodeMeta equals core.metadata on every input, errors included', (t) => {
    assert.ok(cases.meta.length > 0);
    for (const m of cases.meta) {
      if (m.error === null) {
        const got = encodeMeta(cases.spec, m.input);
        assert.deepEqual([...got], m.expected.map(Math.fround), JSON.stringify(m.input));
      } else {
        assert.throws(
          () => encodeMeta(cases.spec, m.input),
          (e) => e instanceof ContractError && e.message === m.error,
          `${JSON.stringify(m.input)} should fail with: ${m.error}`,
        );
      }
    }
    report(t, {kind: 'meta', count: cases.meta.length});
  });

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
