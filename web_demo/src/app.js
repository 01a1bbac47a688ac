/**
 * The page: pick a runtime and precision (from dist/manifest.json, written by build.py), load the artifact
 * and read its embedded spec, decode an image, build the patient form from the spec's model contract (a
 * number input per number feature, a select per one-hot or code feature), run the model, and show the
 * probability, the spec's threshold, the decision and the latency.
 *
 * When the build holds a trusted key (build.py --trust KEY.pub), nothing runs before the checks of
 * docs/signing.md pass (provenance.js): model.sig verifies with that key, and the bytes of the artifact about
 * to run, golden.json and the golden images are the ones the signed statement lists; a refusal is shown as
 * its one sentence. Without a key the page says "unsigned model".
 *
 * What it computes on comes from the query string (runtimes.js): `?threads=K` (default min(cores, 4) when the
 * page is cross-origin isolated, else 1) and `?backend=webgpu` (default WebAssembly); the Compute line says
 * what the loaded model runs on and, with 1 thread, why.
 *
 * Everything happens in this page: the artifacts and wasm files come from this origin and nothing is sent
 * anywhere. `window.melanomaDemo` exposes the state, a benchmark and the golden cases' run for tests and for
 * bench.py.
 */

import {
  canonical,
  checkContract,
  checkFiles,
  decide,
  encodeMeta,
  formatG,
  imageTensor,
  metadataLayout,
  readSpec,
  readTrustedKey,
  verifySignature,
} from './contract.js';
import {
  DEFAULT_MAX_THREADS,
  RUNTIME_LABELS,
  browserCapabilities,
  describeCompute,
  loadModel,
  planCompute,
  readSettings,
} from './runtimes.js';

const DIST = 'dist/';
const BENCH_RUNS = 20;
const BENCH_WARMUP = 3;

const $ = (id) => document.getElementById(id);

const state = {
  manifest: null,
  entry: null, // the manifest artifact (or a user-opened file) in use
  spec: null,
  model: null,
  load: null, // {ms, fetchMs, initMs, compileMs, file}
  image: null, // {rgba, width, height, name}
  examples: [],
  form: [], // the patient form: one {field, kind, element} per case field the contract reads
  busy: 0, // operations in flight
  lastResult: null,
  // What the models run on: planCompute()'s plan for this page (from its query string and what the browser
  // allows), and the loaded model's own compute (the plan as carried out; runtimes.js).
  plan: null,
  compute: null,
  // The build's signature: {status: 'unsigned'} without a trusted key; else {status: 'signed' | 'verified' |
  // 'refused', statement, held: Map(signed name -> bytes of golden.json and its images), hint, message}.
  provenance: null,
};

/** Readiness: resolves once the first model load has finished (successfully or not). */
let markReady;
const ready = new Promise((resolve) => {
  markReady = resolve;
});

window.melanomaDemo = {state, ready, bench, golden, waitIdle};

function showError(message) {
  const box = $('error');
  box.textContent = message;
  box.hidden = !message;
}

function messageOf(err) {
  return err && err.message ? err.message : String(err);
}

/** Counts operations in flight (loads, decodes, assessments, benchmarks); 0 = idle. */
function setBusy(busy) {
  state.busy = Math.max(0, state.busy + (busy ? 1 : -1));
  document.body.dataset.busy = state.busy ? 'true' : 'false';
  updateButtons();
}

function updateButtons() {
  $('assess').disabled = state.busy > 0 || !state.model || !state.image;
  $('bench').disabled = state.busy > 0 || !state.model;
}

/** Resolves when no load or assessment is in progress. */
async function waitIdle() {
  while (state.busy > 0) await new Promise((r) => setTimeout(r, 20));
}

// ----------------------------------------------------------------------------------------------- models

function precisionLabel(a) {
  return `${a.precision}, ${Number(a.size_mb).toFixed(1)} MB${a.recommended ? ' (recommended)' : ''}`;
}

function fillPrecisions() {
  const runtime = $('runtime').value;
  const select = $('precision');
  select.replaceChildren();
  for (const a of state.manifest.artifacts.filter((x) => x.runtime === runtime)) {
    select.append(new Option(precisionLabel(a), a.file, false, a.recommended));
  }
  select.disabled = select.options.length === 0;
}

async function loadManifest() {
  let response;
  try {
    response = await fetch(`${DIST}manifest.json`, {cache: 'no-cache'});
  } catch (err) {
    throw new Error(`The page could not read ${DIST}manifest.json (${messageOf(err)}): serve it with \`make web MODEL=...\`.`);
  }
  if (!response.ok) {
    throw new Error(`No models are built into this page (${DIST}manifest.json: HTTP ${response.status}): run \`make web MODEL=<name>\`.`);
  }
  const manifest = await response.json();
  if (!Array.isArray(manifest.artifacts) || manifest.artifacts.length === 0) {
    throw new Error('The build lists no artifacts: export .tflite / .onnx with `python -m export.all`, then `make web`.');
  }
  return manifest;
}

async function fetchBytes(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`Could not load ${url} (HTTP ${response.status}): rebuild with \`make web MODEL=...\`.`);
  return new Uint8Array(await response.arrayBuffer());
}

/** The bytes at `url`, or null when the server has no such file (HTTP 404). */
async function fetchOptional(url) {
  const response = await fetch(url, {cache: 'no-cache'});
  if (response.status === 404) return null;
  if (!response.ok) throw new Error(`Could not load ${url} (HTTP ${response.status}): rebuild with \`make web MODEL=...\`.`);
  return new Uint8Array(await response.arrayBuffer());
}

// -------------------------------------------------------------------------------------------- signature

// Where web_demo/build.py --trust puts the pinned key and the export's signature in a build.
const TRUSTED_KEY_FILE = 'signing_key.pub';
const SIGNATURE_PATH = 'models/model.sig';

/**
 * Checks 1-5 of docs/signing.md for a build with a trusted key: the key, then model.sig. Reads golden.json
 * and its images (the bytes the page will offer), which each model load checks with its artifact.
 *
 * @returns {Promise<void>} sets state.provenance; a ContractError is the refusal sentence
 */
async function verifyBuild() {
  // The pin decides, not the manifest: a build holding signing_key.pub runs signed models only, whatever
  // manifest.json (which the signature does not cover) says.
  const pinned = await fetchOptional(DIST + TRUSTED_KEY_FILE);
  if (pinned === null) {
    state.provenance = {status: 'unsigned'};
    $('provenance').textContent = 'unsigned model (this build checks no signature; build it with --trust KEY.pub)';
    return;
  }
  state.provenance = {status: 'refused'};
  const trusted = await readTrustedKey(pinned, TRUSTED_KEY_FILE);
  const statement = await verifySignature(await fetchOptional(DIST + SIGNATURE_PATH), trusted);
  const held = new Map();
  for (const f of state.manifest.golden_files || []) {
    const bytes = await fetchOptional(DIST + f.file);
    if (bytes !== null) held.set(f.signed_name, bytes); // absent: checkFiles says "removed"
  }
  state.provenance = {status: 'signed', statement, held, hint: trusted.hint};
}

/**
 * Check 6 before a model is loaded: the artifact's bytes (under its signed name), golden.json and the golden
 * images against the signed statement. No-op for an unsigned build.
 */
async function checkArtifact(signedName, bytes) {
  const p = state.provenance;
  if (!p || p.status === 'unsigned') return;
  if (!p.statement) throw new Error('This build is signed, but its signature was not verified: reload the page.');
  try {
    await checkFiles(p.statement, new Map([...p.held, [signedName, bytes]]), [signedName]);
  } catch (err) {
    p.status = 'refused';
    $('provenance').textContent = `signature check failed: ${signedName} does not run`;
    throw err;
  }
  p.status = 'verified';
  $('provenance').textContent =
    `signed model: ${signedName} and ${p.held.size} example files match model.sig, ` +
    `verified with the trusted key ${p.hint.slice(0, 16)}`;
}

function refuseAll(err) {
  state.provenance = {...state.provenance, status: 'refused', message: messageOf(err)};
  $('model-status').textContent = 'Nothing runs: the signed model did not verify.';
  $('provenance').textContent = 'signature refused';
  for (const id of ['runtime', 'precision', 'model-file']) $(id).disabled = true;
  showError(messageOf(err));
}

function runtimeFor(fileName) {
  if (/\.tflite$/i.test(fileName)) return 'litert';
  if (/\.onnx$/i.test(fileName)) return 'onnxruntime-web';
  throw new Error(`"${fileName}" is neither a .tflite nor an .onnx file: choose an artifact that python -m export.all wrote.`);
}

let loadToken = 0;

/**
 * Load one artifact: bytes -> embedded spec -> runtime session. `source` is a manifest entry or a File.
 * Any failure (no spec, an unsupported contract, a runtime error) is shown on the page.
 */
async function loadArtifact(source) {
  const token = ++loadToken; // a newer choice supersedes a load still in flight
  const stale = () => token !== loadToken;
  setBusy(true);
  showError('');
  $('result').hidden = true;
  const name = source instanceof File ? source.name : source.file.split('/').pop();
  $('model-status').textContent = `Loading ${name}...`;
  if (state.model) {
    state.model.dispose();
    state.model = null;
  }
  state.spec = null;
  state.entry = null;
  updateButtons();
  let model = null;
  try {
    const runtime = source instanceof File ? runtimeFor(source.name) : source.runtime;
    const t0 = performance.now();
    const bytes = source instanceof File ? new Uint8Array(await source.arrayBuffer()) : await fetchBytes(DIST + source.file);
    const t1 = performance.now();
    if (stale()) return;
    await checkArtifact(source instanceof File ? source.name : source.signed_name, bytes);
    if (stale()) return;
    const spec = readSpec(bytes);
    checkContract(spec);
    const wasmBase = DIST + state.manifest.runtimes[runtime].wasm;
    model = await loadModel(runtime, bytes, spec, {wasmBase, file: name, compute: state.plan});
    const t2 = performance.now();
    if (stale()) {
      model.dispose();
      return;
    }
    state.model = model;
    state.spec = spec;
    state.entry =
      source instanceof File
        ? {file: name, runtime, precision: spec.precision?.name || 'fp32', size_mb: +(bytes.length / 1e6).toFixed(3)}
        : source;
    state.load = {ms: t2 - t0, fetchMs: t1 - t0, initMs: model.initMs, compileMs: model.compileMs, file: name};
    showCompute(model.compute);
    fillPatientForm(spec);
    $('model-status').textContent =
      `${name} (${spec.name}, ${spec.image.size} px ${spec.image.layout}, threshold ${fmt(spec.outputs.threshold, 4)}) ` +
      `ready in ${state.load.ms.toFixed(0)} ms on ${RUNTIME_LABELS[runtime]}, ${computeLabel(model.compute)}.`;
    $('intended-use').textContent = spec.provenance?.intended_use || '';
    if (state.provenance?.status === 'verified') loadExamples(); // the verified bytes, once
  } catch (err) {
    if (stale()) return;
    $('model-status').textContent = `${name} could not be used.`;
    showError(messageOf(err));
  } finally {
    setBusy(false);
    if (!stale()) markReady();
  }
}

function selectedEntry() {
  const file = $('precision').value;
  return state.manifest.artifacts.find((a) => a.file === file);
}

// ------------------------------------------------------------------------------------------- patient form

/** A feature's name on the form: its description (or its name), with a capital first letter. */
function featureLabel(feature) {
  const text = feature.description || feature.name.replaceAll('_', ' ');
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** What a select offers for a categorical feature: its categories (one_hot) or its codes (code). */
function featureOptions(feature) {
  return feature.kind === 'one_hot' ? feature.categories : [...feature.codes.keys()];
}

/**
 * Build the patient form from the spec's model contract: one control per case field the features read
 * (one per feature when, as usual, each feature reads its own field), in the contract's order.
 * - a field only number features read: a text input for a number (inputmode decimal, so phones show a
 *   number pad, but any text reaches encodeMeta, which says what is wrong with it), its unit in the label
 *   (unless its description names it) and its range in the placeholder;
 * - a field only one-hot or code features read: a select of "unknown" (missing) and the categories or
 *   codes (their aliases are other spellings of the same values, so they are not offered);
 * - a field read both ways: a text input with the categories as suggestions.
 * What the user had entered in a field of the same name stays, when the new control can hold it.
 *
 * @param {object} spec a ModelSpec that checkContract accepted
 */
function fillPatientForm(spec) {
  const layout = metadataLayout(spec);
  const previous = patient();
  const byField = new Map();
  for (const f of layout.features) byField.set(f.field, [...(byField.get(f.field) || []), f]);
  const box = $('patient-fields');
  box.replaceChildren();
  state.form = [];
  for (const [index, [field, features]] of [...byField].entries()) {
    const id = `field-${index}`;
    const numbers = features.filter((f) => f.kind === 'number');
    const categorical = features.filter((f) => f.kind !== 'number');
    const options = [...new Set(categorical.flatMap(featureOptions))];
    const label = document.createElement('label');
    label.htmlFor = id;
    label.textContent = [...new Set(features.map(featureLabel))].join(' / ');
    const units = [...new Set(numbers.map((f) => f.unit).filter(Boolean))];
    if (units.length && !units.every((u) => label.textContent.includes(u))) label.textContent += ` (${units.join(', ')})`;
    let element;
    if (numbers.length && !categorical.length) {
      element = document.createElement('input');
      element.type = 'text';
      element.inputMode = 'decimal';
      element.autocomplete = 'off';
      const range = numbers.find((f) => f.range)?.range;
      element.placeholder = range ? `unknown (${formatG(range[0])}-${formatG(range[1])})` : 'unknown';
    } else if (!numbers.length) {
      element = document.createElement('select');
      element.append(new Option('unknown', ''));
      for (const o of options) element.append(new Option(o, o));
    } else {
      element = document.createElement('input');
      element.type = 'text';
      element.autocomplete = 'off';
      element.placeholder = 'unknown';
      const list = document.createElement('datalist');
      list.id = `${id}-options`;
      for (const o of options) list.append(new Option(o, o));
      element.setAttribute('list', list.id);
      box.append(list);
    }
    element.id = id;
    element.dataset.field = field;
    element.dataset.kind = features.map((f) => f.kind).join(' ');
    element.dataset.features = features.map((f) => f.name).join(' ');
    const kept = previous[field];
    if (kept !== null && kept !== undefined) {
      if (element instanceof HTMLSelectElement) element.value = options.includes(kept) ? kept : '';
      else element.value = kept;
    }
    const row = document.createElement('div');
    row.className = 'row';
    row.append(label, element);
    box.append(row);
    state.form.push({field, features, element});
  }
  if (state.form.length === 0) {
    const none = document.createElement('p');
    none.className = 'muted';
    none.textContent = 'This model takes no patient data.';
    box.append(none);
  }
}

/** The case the form holds: field -> the text entered or the option chosen, null when empty. */
function patient() {
  const fields = {};
  for (const {field, element} of state.form) {
    const v = element.value.trim();
    fields[field] = v === '' ? null : v;
  }
  return fields;
}

/**
 * Put one case (field -> raw value, as golden.json holds it) into the form: a number or text as it is, a
 * category or code as the option it names (through the contract's aliases); an unknown one as "unknown".
 */
function fillForm(fields) {
  const tokens = state.spec ? metadataLayout(state.spec).missingTokens : [];
  for (const {field, features, element} of state.form) {
    const raw = Object.hasOwn(fields, field) ? fields[field] : null;
    if (!(element instanceof HTMLSelectElement)) {
      element.value = raw === null || raw === undefined ? '' : String(raw);
      continue;
    }
    let option = '';
    for (const f of features) {
      try {
        option = canonical(f, raw, tokens) ?? '';
        break;
      } catch {
        // not a value of this feature: try the next one reading the field, else leave it unknown
      }
    }
    element.value = [...element.options].some((o) => o.value === option) ? option : '';
  }
}

// ----------------------------------------------------------------------------------------------- images

/**
 * Decode an image file the way the Python reference does: EXIF orientation applied, no colour-space
 * conversion, alpha not premultiplied; pixels read back through an sRGB canvas.
 */
async function decodeImage(blob, {preview = true} = {}) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(blob, {
      imageOrientation: 'from-image',
      colorSpaceConversion: 'none',
      premultiplyAlpha: 'none',
    });
  } catch (err) {
    throw new Error(`This file could not be decoded as an image (${messageOf(err)}): use a PNG, JPEG or WebP photo.`);
  }
  try {
    const {width, height} = bitmap;
    const canvas = document.createElement('canvas');
    canvas.width = width;
    canvas.height = height;
    const ctx = canvas.getContext('2d', {colorSpace: 'srgb', willReadFrequently: true});
    ctx.drawImage(bitmap, 0, 0);
    const rgba = ctx.getImageData(0, 0, width, height, {colorSpace: 'srgb'}).data;
    if (preview) drawPreview(bitmap);
    return {rgba, width, height};
  } finally {
    bitmap.close();
  }
}

function drawPreview(bitmap) {
  const canvas = $('preview');
  const scale = Math.min(1, 320 / Math.max(bitmap.width, bitmap.height));
  canvas.width = Math.max(1, Math.round(bitmap.width * scale));
  canvas.height = Math.max(1, Math.round(bitmap.height * scale));
  canvas.getContext('2d').drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  canvas.hidden = false;
}

async function useImage(blob, name) {
  setBusy(true);
  showError('');
  $('result').hidden = true;
  try {
    const decoded = await decodeImage(blob);
    state.image = {...decoded, name};
    $('image-status').textContent = `${name}: ${decoded.width} x ${decoded.height} px`;
  } catch (err) {
    state.image = null;
    $('preview').hidden = true;
    $('image-status').textContent = 'No image yet.';
    showError(messageOf(err));
  } finally {
    setBusy(false);
  }
}

/**
 * Offer golden.json's cases as examples. A signed build offers the bytes it verified (and only cases whose
 * image is among them); an unsigned one fetches them.
 */
let examplesLoading = null;

/** Offer the examples once (the promise of the first call). */
function loadExamples() {
  if (!examplesLoading && state.manifest.golden) examplesLoading = offerExamples();
  return examplesLoading || Promise.resolve();
}

async function offerExamples() {
  try {
    const verified = state.provenance?.status === 'verified' ? state.provenance.held : null;
    const golden = verified
      ? JSON.parse(new TextDecoder().decode(verified.get('golden.json')))
      : await (await fetch(DIST + state.manifest.golden)).json();
    const base = DIST + state.manifest.golden.split('/').slice(0, -1).join('/');
    state.examples = golden.cases
      .filter((c) => !verified || verified.has(c.png))
      .map((c) => ({
        name: c.image_name,
        png: c.png,
        url: `${base}/${c.png}`,
        bytes: verified?.get(c.png),
        metadata: c.metadata,
      }));
    const select = $('example');
    for (const [i, c] of state.examples.entries()) {
      const text = Object.values(c.metadata || {})
        .map((v) => v ?? '?')
        .join(', ');
      select.append(new Option(text ? `${c.name} (${text})` : c.name, String(i)));
    }
    select.disabled = false;
  } catch {
    // Examples are a convenience; without golden.json the page works the same.
  }
}

async function useExample(index) {
  const example = state.examples[index];
  if (!example) return;
  fillForm(example.metadata || {});
  const blob = example.bytes ? new Blob([example.bytes], {type: 'image/png'}) : await (await fetch(example.url)).blob();
  await useImage(blob, `${example.name}.png`);
}

// ------------------------------------------------------------------------------------------------ assess

function fmt(value, digits) {
  return Number(value).toFixed(digits);
}

async function assess() {
  if (!state.model || !state.image) return;
  setBusy(true);
  showError('');
  try {
    const t0 = performance.now();
    const image = imageTensor(state.spec, state.image.rgba, state.image.width, state.image.height);
    const meta = encodeMeta(state.spec, patient());
    const t1 = performance.now();
    const {probability, logit} = await state.model.run(image, meta);
    const t2 = performance.now();
    const {label, positive} = decide(state.spec, probability);
    state.lastResult = {probability, logit, label, positive, preprocessMs: t1 - t0, inferenceMs: t2 - t1};
    $('probability').textContent = fmt(probability, 6);
    $('probability').dataset.value = String(probability);
    $('threshold').textContent = fmt(state.spec.outputs.threshold, 4);
    $('threshold-rule').textContent = state.spec.outputs.threshold_rule ? `(${state.spec.outputs.threshold_rule})` : '';
    $('decision').textContent = positive ? `${label}: at or above the threshold` : `${label}: below the threshold`;
    $('decision').className = positive ? 'positive' : 'negative';
    $('latency').textContent = `${fmt(t2 - t1, 1)} ms inference + ${fmt(t1 - t0, 1)} ms preprocessing`;
    $('result-model').textContent =
      `${state.load.file} on ${RUNTIME_LABELS[state.entry.runtime]}, ${computeLabel(state.compute)}`;
    $('result').hidden = false;
  } catch (err) {
    $('result').hidden = true;
    showError(messageOf(err));
  } finally {
    setBusy(false);
  }
}

// ------------------------------------------------------------------------------------------------- bench

function median(values) {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/**
 * Time the loaded model: `warmup` untimed runs, then `runs` timed ones (inference only: input tensors,
 * run, output read back), on the current image and patient or a mid-grey image with missing metadata.
 *
 * @returns {Promise<object>} one row: format, precision, load_ms, p50_ms, runs, threads, browser, ...
 */
async function bench({runs = BENCH_RUNS, warmup = BENCH_WARMUP} = {}) {
  await waitIdle();
  if (!state.model) throw new Error('No model is loaded: pick one first.');
  setBusy(true);
  try {
    const spec = state.spec;
    const s = spec.image.size;
    const image = state.image
      ? imageTensor(spec, state.image.rgba, state.image.width, state.image.height)
      : new Float32Array(s * s * 3).fill(0.5);
    const meta = state.image ? encodeMeta(spec, patient()) : encodeMeta(spec, {});
    for (let i = 0; i < warmup; i++) await state.model.run(image, meta);
    const times = [];
    for (let i = 0; i < runs; i++) {
      const t0 = performance.now();
      await state.model.run(image, meta);
      times.push(performance.now() - t0);
    }
    const row = {
      format: state.entry.runtime === 'litert' ? 'litert-web' : 'onnxruntime-web',
      precision: state.entry.precision,
      model: spec.name,
      image_size: s,
      artifact: state.load.file,
      size_mb: state.entry.size_mb,
      load_ms: state.load.ms,
      fetch_ms: state.load.fetchMs,
      runtime_init_ms: state.load.initMs,
      compile_ms: state.load.compileMs,
      p50_ms: median(times),
      min_ms: Math.min(...times),
      max_ms: Math.max(...times),
      runs,
      warmup,
      threads: state.compute.threads,
      backend: state.compute.backend,
      compute: state.compute.sentence,
      setting: location.search.replace(/^\?/, ''),
      cross_origin_isolated: Boolean(window.crossOriginIsolated),
      user_agent: navigator.userAgent,
    };
    $('bench-result').textContent =
      `${row.format} ${row.precision}: load ${fmt(row.load_ms, 0)} ms, median ${fmt(row.p50_ms, 2)} ms over ${runs} runs ` +
      `(min ${fmt(row.min_ms, 2)}, max ${fmt(row.max_ms, 2)}), ${computeLabel(state.compute)}.`;
    return row;
  } finally {
    setBusy(false);
  }
}

/**
 * Every golden case (golden.json, offered as the examples) through the loaded model the way Assess runs an
 * image: the page's decode, imageTensor, and encodeMeta of the case's own metadata; nothing on the page
 * changes. bench.py and the tests compare the outputs with golden.json (the parity check of every row).
 *
 * @returns {Promise<Array<{name: string, png: string, probability: number, logit: number}>>}
 */
async function golden() {
  await waitIdle();
  if (!state.model) throw new Error('No model is loaded: pick one first.');
  await loadExamples();
  if (!state.examples.length) throw new Error('This build has no golden cases: export with --golden N, then rebuild.');
  setBusy(true);
  try {
    const out = [];
    for (const example of state.examples) {
      const blob = example.bytes
        ? new Blob([example.bytes], {type: 'image/png'})
        : await (await fetch(example.url)).blob();
      const {rgba, width, height} = await decodeImage(blob, {preview: false});
      const image = imageTensor(state.spec, rgba, width, height);
      const meta = encodeMeta(state.spec, example.metadata || {});
      const {probability, logit} = await state.model.run(image, meta);
      out.push({name: example.name, png: example.png, probability, logit});
    }
    return out;
  } finally {
    setBusy(false);
  }
}

// ----------------------------------------------------------------------------------------------- compute

/** "WebGPU" or "WebAssembly, 2 threads". */
function computeLabel(c) {
  if (!c) return 'WebAssembly';
  return c.backend === 'webgpu' ? 'WebGPU' : `WebAssembly, ${c.threads} ${c.threads === 1 ? 'thread' : 'threads'}`;
}

/** Show what the models run on (a plan, or the loaded model's compute) on the Compute line. */
function showCompute(c) {
  state.compute = c;
  $('compute').textContent = c.sentence || describeCompute(c);
}

/**
 * The Compute picker: the same settings as the query string (a phone has no address bar to edit with ease);
 * choosing reloads the page with them, since a page starts each runtime once.
 */
function setupComputeChoice(settings) {
  const select = $('compute-choice');
  const n = Math.min(state.plan.cores, DEFAULT_MAX_THREADS);
  select.options[0].textContent = `Auto: up to ${n} ${n === 1 ? 'thread' : 'threads'}`;
  let value = '';
  if (settings.backend === 'webgpu') value = 'backend=webgpu';
  else if (settings.threads === 1) value = 'threads=1';
  else if (settings.threads !== null) {
    value = `threads=${settings.threads}`;
    select.append(new Option(`${settings.threads} threads`, value));
  }
  select.value = value;
  select.addEventListener('change', () => {
    const params = new URLSearchParams(location.search);
    params.delete('threads');
    params.delete('backend');
    const artifact = selectedEntry()?.file.split('/').pop();
    if (artifact) params.set('artifact', artifact);
    for (const [k, v] of new URLSearchParams(select.value)) params.set(k, v);
    location.search = params.toString();
  });
}

// ------------------------------------------------------------------------------------------------- start

function firstFile(input) {
  const file = input.files && input.files[0];
  input.value = '';
  return file;
}

async function start() {
  for (const id of ['image', 'camera']) {
    $(id).addEventListener('change', () => {
      const file = firstFile($(id));
      if (file) {
        $('example').value = '';
        useImage(file, file.name);
      }
    });
  }
  $('example').addEventListener('change', () => useExample(Number($('example').value)));
  const settings = readSettings(location.search);
  state.plan = planCompute(settings, browserCapabilities());
  showCompute(state.plan);
  setupComputeChoice(settings);
  $('assess').addEventListener('click', assess);
  $('bench').addEventListener('click', () => bench().catch((err) => showError(messageOf(err))));
  $('model-file').addEventListener('change', () => {
    const file = firstFile($('model-file'));
    if (file) loadArtifact(file);
  });
  try {
    state.manifest = await loadManifest();
  } catch (err) {
    $('model-status').textContent = 'No model.';
    showError(messageOf(err));
    markReady();
    return;
  }
  const runtimes = [...new Set(state.manifest.artifacts.map((a) => a.runtime))];
  for (const r of runtimes) $('runtime').append(new Option(RUNTIME_LABELS[r] || r, r));
  $('runtime').disabled = false;
  fillPrecisions();
  // ?artifact=<file name> picks the first model (bench.py opens one fresh page per artifact this way).
  const wanted = new URLSearchParams(location.search).get('artifact');
  const chosen = wanted && state.manifest.artifacts.find((a) => a.file.split('/').pop() === wanted);
  if (chosen) {
    $('runtime').value = chosen.runtime;
    fillPrecisions();
    $('precision').value = chosen.file;
  }
  $('runtime').addEventListener('change', () => {
    fillPrecisions();
    loadArtifact(selectedEntry());
  });
  $('precision').addEventListener('change', () => loadArtifact(selectedEntry()));
  if (state.manifest.notes?.length) $('model-status').title = state.manifest.notes.join('\n');
  setBusy(true);
  try {
    await verifyBuild(); // before any model is loaded; a refusal runs nothing
  } catch (err) {
    refuseAll(err);
    markReady();
    return;
  } finally {
    setBusy(false);
  }
  if (state.provenance.status === 'unsigned') loadExamples(); // a signed build offers them once verified
  await loadArtifact(selectedEntry());
}

start();
