/**
 * contract.js against the Python reference, in Node (no browser):
 *
 *     WEB_DEMO_EXPORT=dist/<model> WEB_DEMO_CASES=/tmp/cases node --test web_demo/test/
 *
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

import {
  ContractError,
  checkContract,
  compositeOnWhite,
  decide,
  encodeMeta,
  imageTensor,
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
