/**
 * The two in-browser runtimes behind one small interface, so the page and the benchmark treat them alike:
 *
 *     const model = await loadModel('litert', bytes, spec, {wasmBase: 'dist/runtime/litert/wasm/'});
 *     const {logit, probability} = await model.run(imageTensor, metaVector);
 *
 * - 'litert': LiteRT.js (@litertjs/core) runs the .tflite (NHWC image input) on its WebAssembly CPU path;
 * - 'onnxruntime-web': onnxruntime-web runs the .onnx (NCHW) on its WebAssembly execution provider.
 * Both single-threaded, with the wasm files served from the page's own origin. The runtime modules are
 * imported only when first used (bare specifiers resolved by the page's import map).
 */

import {ContractError} from './contract.js';

/** Labels of the runtimes, by the key the manifest uses. */
export const RUNTIME_LABELS = Object.freeze({
  litert: 'LiteRT.js (.tflite)',
  'onnxruntime-web': 'onnxruntime-web (.onnx)',
});

const ready = {};

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

async function initLiteRt(wasmBase) {
  const litert = await importRuntime('@litertjs/core');
  if (!ready.litert) {
    ready.litert = litert.loadLiteRt(new URL(wasmBase, document.baseURI).href).catch((err) => {
      ready.litert = null; // let a later attempt start over
      throw err;
    });
  }
  await ready.litert;
  return litert;
}

async function initOrt(wasmBase) {
  const ort = await importRuntime('onnxruntime-web');
  ort.env.wasm.wasmPaths = new URL(wasmBase, document.baseURI).href;
  ort.env.wasm.numThreads = 1;
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
 * @param {{wasmBase: string, file?: string}} options where the runtime's wasm files are served
 * @returns {Promise<{runtime: string, initMs: number, compileMs: number,
 *     run: function(Float32Array, Float32Array): Promise<{logit: number, probability: number}>,
 *     dispose: function(): void}>}
 */
export async function loadModel(runtime, bytes, spec, {wasmBase, file = 'the model'}) {
  const dims = imageDims(spec);
  const metaDims = [1, spec.metadata.size];
  if (runtime === 'litert') {
    const t0 = performance.now();
    const litert = await initLiteRt(wasmBase);
    const t1 = performance.now();
    const model = await compileOrExplain('LiteRT.js', file, () => litert.loadAndCompile(bytes, {accelerator: 'wasm'}));
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
    const ort = await initOrt(wasmBase);
    const t1 = performance.now();
    const session = await compileOrExplain('onnxruntime-web', file, () =>
      ort.InferenceSession.create(bytes, {executionProviders: ['wasm'], graphOptimizationLevel: 'all'}),
    );
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
