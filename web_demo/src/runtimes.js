/**
 * The two in-browser runtimes behind one small interface, so the page and the benchmark treat them alike:
 *
 *     const compute = planCompute(readSettings(location.search), browserCapabilities());
 *     const model = await loadModel('litert', bytes, spec, {wasmBase: 'dist/runtime/litert/wasm/', compute});
 *     const {logit, probability} = await model.run(imageTensor, metaVector);
 *     model.compute  // what it runs on: {backend: 'wasm' | 'webgpu', threads, sentence, ...}
 *
 * - 'litert': LiteRT.js (@litertjs/core) runs the .tflite (NHWC image input): its WebAssembly CPU path
 *   (XNNPack), multi-threaded when the page is cross-origin isolated, or its WebGPU accelerator;
 * - 'onnxruntime-web': onnxruntime-web runs the .onnx (NCHW): its WebAssembly execution provider (threads
 *   likewise) or its WebGPU one.
 * WebAssembly threads need SharedArrayBuffer, which browsers give only to a cross-origin-isolated page (a
 * secure context, https or localhost, served with COOP same-origin + COEP require-corp, as build.py does):
 * then N = min(cores, 4) threads unless `?threads=K` asks otherwise; otherwise 1, and the sentence says why.
 * WebGPU is used only when asked (`?backend=webgpu`) and the browser offers an adapter; else WebAssembly,
 * and the sentence says so. The wasm files come from the page's own origin; the runtime modules are imported
 * only when first used (bare specifiers resolved by the page's import map).
 */

import {ContractError} from './contract.js';

/** Labels of the runtimes, by the key the manifest uses. */
export const RUNTIME_LABELS = Object.freeze({
  litert: 'LiteRT.js (.tflite)',
  'onnxruntime-web': 'onnxruntime-web (.onnx)',
});

/** The most threads the page uses unless `?threads=K` asks for more (up to the device's cores). */
export const DEFAULT_MAX_THREADS = 4;

const ready = {};

// -------------------------------------------------------------------------------------- compute settings

/**
 * What this browser allows, read from `g` (globalThis in the page; a plain object in tests).
 *
 * @returns {{crossOriginIsolated: boolean, sharedArrayBuffer: boolean, secureContext: boolean, cores: number,
 *     webgpuApi: boolean}}
 */
export function browserCapabilities(g = globalThis) {
  const cores = Math.floor(Number(g.navigator?.hardwareConcurrency));
  return {
    crossOriginIsolated: g.crossOriginIsolated === true,
    sharedArrayBuffer: typeof g.SharedArrayBuffer === 'function',
    secureContext: g.isSecureContext === true,
    cores: cores >= 1 ? cores : 1,
    webgpuApi: Boolean(g.navigator?.gpu),
  };
}

/**
 * The page's compute settings from its query string: `threads` (a whole number >= 1) and `backend` (`wasm`,
 * the default, or `webgpu`). A value it cannot use is ignored, with a sentence in `problems`.
 *
 * @param {string} search e.g. location.search, "?artifact=x.tflite&threads=1"
 * @returns {{threads: number|null, backend: 'wasm'|'webgpu', problems: string[]}}
 */
export function readSettings(search = '') {
  const query = new URLSearchParams(search);
  const problems = [];
  let threads = null;
  const t = query.get('threads');
  if (t !== null) {
    if (/^\s*[1-9]\d{0,2}\s*$/.test(t)) threads = Number(t);
    else problems.push(`?threads=${t} is not a number of threads (1, 2, ...): ignored.`);
  }
  let backend = 'wasm';
  const b = query.get('backend');
  if (b !== null) {
    const name = b.trim().toLowerCase();
    if (name === 'webgpu' || name === 'wasm') backend = name;
    else problems.push(`?backend=${b} is not a backend (wasm or webgpu): ignored.`);
  }
  return {threads, backend, problems};
}

/** Whether threads are possible here: a cross-origin-isolated page with SharedArrayBuffer. */
export function threadsAllowed(caps) {
  return caps.crossOriginIsolated && caps.sharedArrayBuffer;
}

/** Why a page gets no threads, as the end of the sentence the page shows. */
function noThreadsReason(caps) {
  if (!caps.secureContext) {
    return (
      'this page is not cross-origin isolated (it came over plain HTTP, as on a phone opening the LAN address), ' +
      'so the browser allows no threads'
    );
  }
  if (!caps.crossOriginIsolated) {
    return (
      'this page is not cross-origin isolated (its server sent no COOP/COEP headers, or the browser ignored ' +
      'them), so the browser allows no threads'
    );
  }
  return 'this browser offers no SharedArrayBuffer, so it allows no threads';
}

/**
 * The plan for this page: WebAssembly threads when the browser allows them (N = min(cores, 4), or what
 * `?threads=K` asks, up to the cores), 1 thread otherwise; WebGPU when asked for (whether the browser offers
 * it is known only once a runtime tries: see loadModel's `compute`).
 *
 * @param {{threads: number|null, backend: string}} settings readSettings()
 * @param {object} caps browserCapabilities()
 * @returns {{backend: 'wasm'|'webgpu', threads: number, requestedThreads: number|null, isolated: boolean,
 *     cores: number, limit: string|null, problems: string[]}} `limit`: why there are fewer threads than asked
 */
export function planCompute(settings, caps) {
  const isolated = threadsAllowed(caps);
  const wanted = settings.threads ?? Math.min(caps.cores, DEFAULT_MAX_THREADS);
  let threads = 1;
  let limit = null;
  if (!isolated) {
    limit = noThreadsReason(caps);
  } else if (wanted > caps.cores) {
    threads = caps.cores;
    limit = `?threads=${wanted} asks for more than this device's ${caps.cores} cores`;
  } else {
    threads = wanted;
    if (threads === 1 && settings.threads === null) limit = 'this device reports one core';
  }
  return {
    backend: settings.backend === 'webgpu' ? 'webgpu' : 'wasm',
    threads,
    requestedThreads: settings.threads ?? null,
    isolated,
    cores: caps.cores,
    limit,
    problems: [...(settings.problems || [])],
  };
}

/**
 * The sentence the page shows for what a model runs on, e.g. "WebAssembly, 2 threads." or "WebAssembly, 1
 * thread: this page is not cross-origin isolated (...), so the browser allows no threads."
 *
 * @param {{backend: string, threads: number, limit?: string|null, requestedThreads?: number|null,
 *     webgpu?: string|null, problems?: string[]}} c a plan, or a loaded model's compute
 */
export function describeCompute(c) {
  const parts = [...(c.problems || [])];
  if (c.webgpu) parts.push(c.webgpu);
  if (c.backend === 'webgpu') {
    parts.push('WebGPU.');
  } else {
    const count = `WebAssembly, ${c.threads} ${c.threads === 1 ? 'thread' : 'threads'}`;
    if (c.limit) parts.push(`${count}: ${c.limit}.`);
    else if (c.threads === 1 && c.requestedThreads === 1) parts.push(`${count} (as ?threads=1 asks).`);
    else parts.push(`${count}.`);
  }
  return parts.join(' ');
}

/** WebGPU's adapter, or null when the browser offers none (no navigator.gpu, or requestAdapter gives null). */
const adapters = new WeakMap();
export function webgpuAdapter(g = globalThis) {
  if (!adapters.has(g)) {
    adapters.set(
      g,
      (async () => {
        if (!g.navigator?.gpu) return null;
        try {
          return (await g.navigator.gpu.requestAdapter()) || null;
        } catch {
          return null;
        }
      })(),
    );
  }
  return adapters.get(g);
}

/** The sentence for WebGPU asked for but not used. */
export const WEBGPU_NOT_OFFERED = 'WebGPU: not offered by this browser.';

/** The plan when none is given: WebAssembly, 1 thread. */
const ONE_THREAD = Object.freeze({
  backend: 'wasm',
  threads: 1,
  requestedThreads: null,
  isolated: false,
  cores: 1,
  limit: null,
  problems: [],
});

/** A loaded model's compute: the plan as carried out (threads and backend actually used). */
function carriedOut(plan, changes) {
  const c = {...plan, webgpu: null, ...changes};
  return {...c, sentence: describeCompute(c)};
}

// ------------------------------------------------------------------------------------------------ models

/** The `image` input's expected dimensions under the spec: [1, 3, S, S] (NCHW) or [1, S, S, 3] (NHWC). */
export function imageDims(spec) {
  const s = spec.image.size;
  if (spec.image.layout === 'NHWC') return [1, s, s, 3];
  if (spec.image.layout === 'NCHW') return [1, 3, s, s];
  throw new ContractError(`Unknown image layout ${JSON.stringify(spec.image.layout)}: NCHW or NHWC.`);
}

function checkDims(what, got, want, file) {
  const same = got.length === want.length && want.every((d, i) => Number(got[i]) === d || Number(got[i]) < 0);
  if (!same) {
    throw new ContractError(
      `${file}'s ${what} input has shape [${Array.from(got).join(', ')}] but its spec says [${want.join(', ')}]: ` +
        're-export it with `python -m export.all`.',
    );
  }
}

function requireNames(file, kind, names, wanted) {
  const missing = wanted.filter((n) => !names.includes(n));
  if (missing.length) {
    throw new ContractError(
      `${file} has no ${kind} named ${missing.map((n) => `"${n}"`).join(', ')} (it has ${names.join(', ')}): ` +
        'export it with `python -m export.all`, which names them image, meta, logit and probability.',
    );
  }
}

/** Import a runtime module by its bare specifier (the page's import map), with a clear error if it fails. */
async function importRuntime(specifier) {
  try {
    return await import(specifier);
  } catch (err) {
    throw new ContractError(
      `This browser could not load ${specifier} (${err.message}): rebuild the page with \`make web MODEL=...\`, ` +
        'or use a current Chrome, Edge, Firefox or Safari (import maps and WebAssembly SIMD are needed).',
    );
  }
}

/**
 * Load LiteRT.js's wasm once per page: its threaded build when `threaded` (it needs relaxed SIMD and
 * SharedArrayBuffer; LiteRT.js starts one worker per core), else the single-threaded one. A page loads one
 * build for good, so the first load's choice holds for the page's life.
 *
 * @returns {Promise<{litert: object, threaded: boolean, why: string|null}>} `why`: the threaded build failed
 */
async function initLiteRt(wasmBase, threaded) {
  const litert = await importRuntime('@litertjs/core');
  if (!ready.litert) {
    const base = new URL(wasmBase, document.baseURI).href;
    ready.litert = (async () => {
      let why = null;
      if (threaded) {
        try {
          await litert.loadLiteRt(base, {threads: true});
          return {threaded: true, why};
        } catch (err) {
          why = `LiteRT.js could not start its threaded WebAssembly (${err && err.message ? err.message : err})`;
        }
      }
      await litert.loadLiteRt(base);
      return {threaded: false, why};
    })().catch((err) => {
      ready.litert = null; // let a later attempt start over
      throw err;
    });
  }
  return {litert, ...(await ready.litert)};
}

/**
 * onnxruntime-web with `threads` WebAssembly threads: its WebGPU build (ort.webgpu.min.mjs, the import map's
 * `onnxruntime-web/webgpu`) for `webgpu`, else its WebAssembly-only build. The thread count is read when the
 * first session starts, so it holds for the page's life too.
 */
async function initOrt(wasmBase, threads, webgpu) {
  const ort = await importRuntime(webgpu ? 'onnxruntime-web/webgpu' : 'onnxruntime-web');
  ort.env.wasm.wasmPaths = new URL(wasmBase, document.baseURI).href;
  ort.env.wasm.numThreads = threads;
  ort.env.wasm.proxy = false;
  return ort;
}

async function compileOrExplain(runtime, file, compile) {
  try {
    return await compile();
  } catch (err) {
    const why = err && err.message ? err.message : String(err);
    throw new ContractError(`${runtime} could not load ${file} (${why}): re-export it with \`python -m export.all\`.`);
  }
}

/**
 * Load an artifact's bytes into a runtime and check its inputs and outputs against its spec.
 *
 * @param {'litert'|'onnxruntime-web'} runtime
 * @param {Uint8Array} bytes the artifact file
 * @param {object} spec its ModelSpec (readSpec)
 * @param {{wasmBase: string, file?: string, compute?: object}} options where the runtime's wasm files are
 *     served, and planCompute()'s plan (default: 1 thread, WebAssembly)
 * @returns {Promise<{runtime: string, initMs: number, compileMs: number, compute: object,
 *     run: function(Float32Array, Float32Array): Promise<{logit: number, probability: number}>,
 *     dispose: function(): void}>} `compute`: the backend and threads it runs on, and the sentence saying so
 */
export async function loadModel(runtime, bytes, spec, {wasmBase, file = 'the model', compute = null}) {
  const plan = compute || ONE_THREAD;
  const dims = imageDims(spec);
  const metaDims = [1, spec.metadata.size];
  if (runtime === 'litert') {
    const t0 = performance.now();
    const {litert, threaded, why} = await initLiteRt(wasmBase, plan.threads > 1);
    const t1 = performance.now();
    const threads = threaded ? plan.threads : 1;
    let used = carriedOut(plan, threaded || plan.threads === 1 ? {} : {threads: 1, limit: why});
    const cpuOptions = {numThreads: threads};
    const compileWasm = () => litert.loadAndCompile(bytes, {accelerator: 'wasm', cpuOptions});
    let model = null;
    if (plan.backend === 'webgpu') {
      let device = null;
      try {
        device = litert.getDefaultEnvironment().webGpuDevice;
      } catch {
        device = null;
      }
      if (!device) {
        used = carriedOut(plan, {backend: 'wasm', threads, limit: used.limit, webgpu: WEBGPU_NOT_OFFERED});
      } else {
        let failed = null;
        try {
          const gpuOptions = {precision: 'fp32'}; // fp16 would drift from the golden cases' bound
          model = await litert.loadAndCompile(bytes, {accelerator: 'webgpu', gpuOptions, cpuOptions});
        } catch (err) {
          failed = `WebGPU: LiteRT.js could not use it (${err && err.message ? err.message : err}).`;
        }
        if (model && (model.options?.accelerator !== 'webgpu' || !model.isFullyAccelerated)) {
          // LiteRT.js runs a model WebGPU cannot take whole on WebAssembly (this page loads no JSPI build,
          // which a split between the two needs): say so rather than call it WebGPU.
          model.delete();
          model = null;
          failed = 'WebGPU: LiteRT.js could not run the whole model on it.';
        }
        used = model
          ? carriedOut(plan, {backend: 'webgpu', threads})
          : carriedOut(plan, {backend: 'wasm', threads, limit: used.limit, webgpu: failed});
      }
    }
    if (!model) model = await compileOrExplain('LiteRT.js', file, compileWasm);
    const t2 = performance.now();
    try {
      const inputs = model.getInputDetails();
      requireNames(file, 'input', inputs.map((d) => d.name), ['image', 'meta']);
      requireNames(file, 'output', model.getOutputDetails().map((d) => d.name), ['probability', 'logit']);
      checkDims('image', inputs.find((d) => d.name === 'image').shape, dims, file);
      checkDims('meta', inputs.find((d) => d.name === 'meta').shape, metaDims, file);
    } catch (err) {
      model.delete();
      throw err;
    }
    return {
      runtime,
      initMs: t1 - t0,
      compileMs: t2 - t1,
      compute: used,
      async run(image, meta) {
        const feeds = {image: new litert.Tensor(image, dims), meta: new litert.Tensor(meta, metaDims)};
        let outputs = {};
        try {
          outputs = await model.run(feeds);
          const logit = (await outputs.logit.data())[0];
          const probability = (await outputs.probability.data())[0];
          return {logit, probability};
        } finally {
          for (const t of [...Object.values(feeds), ...Object.values(outputs)]) t.delete();
        }
      },
      dispose() {
        model.delete();
      },
    };
  }
  if (runtime === 'onnxruntime-web') {
    const t0 = performance.now();
    const webgpu = plan.backend === 'webgpu' && (await webgpuAdapter()) !== null;
    const ort = await initOrt(wasmBase, plan.threads, webgpu);
    const t1 = performance.now();
    let used = carriedOut(plan, {backend: 'wasm', webgpu: plan.backend === 'webgpu' ? WEBGPU_NOT_OFFERED : null});
    const create = (provider) =>
      ort.InferenceSession.create(bytes, {executionProviders: [provider], graphOptimizationLevel: 'all'});
    let session = null;
    if (webgpu) {
      try {
        session = await create('webgpu');
        used = carriedOut(plan, {backend: 'webgpu'});
      } catch (err) {
        const why = err && err.message ? err.message : String(err);
        used = carriedOut(plan, {backend: 'wasm', webgpu: `WebGPU: onnxruntime-web could not use it (${why}).`});
      }
    }
    if (!session) session = await compileOrExplain('onnxruntime-web', file, () => create('wasm'));
    const t2 = performance.now();
    try {
      requireNames(file, 'input', session.inputNames, ['image', 'meta']);
      requireNames(file, 'output', session.outputNames, ['probability', 'logit']);
      const named = {image: dims, meta: metaDims};
      for (const m of session.inputMetadata || []) {
        // A symbolic dimension (the batch axis) is a string: any size fits it.
        if (m.isTensor && named[m.name]) checkDims(m.name, m.shape.map((d) => (typeof d === 'number' ? d : -1)), named[m.name], file);
      }
    } catch (err) {
      session.release();
      throw err;
    }
    return {
      runtime,
      initMs: t1 - t0,
      compileMs: t2 - t1,
      compute: used,
      async run(image, meta) {
        const out = await session.run({
          image: new ort.Tensor('float32', image, dims),
          meta: new ort.Tensor('float32', meta, metaDims),
        });
        return {logit: out.logit.data[0], probability: out.probability.data[0]};
      },
      dispose() {
        session.release();
      },
    };
  }
  throw new ContractError(`Unknown runtime "${runtime}": litert or onnxruntime-web.`);
}
