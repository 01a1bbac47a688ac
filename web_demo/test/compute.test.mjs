/**
 * runtimes.js's compute settings in Node, without a browser: the query string (?threads, ?backend), what a
 * browser allows (cross-origin isolation, SharedArrayBuffer, a secure context, its cores) and the sentence
 * the page shows. tests/test_web_demo.py runs the same page in Chromium, isolated and not.
 *
 *     node --test web_demo/test/compute.test.mjs
 */

import assert from 'node:assert/strict';
import {describe, test} from 'node:test';

import {
  DEFAULT_MAX_THREADS,
  WEBGPU_NOT_OFFERED,
  browserCapabilities,
  describeCompute,
  planCompute,
  readSettings,
  webgpuAdapter,
} from '../src/runtimes.js';

const ISOLATED = {crossOriginIsolated: true, sharedArrayBuffer: true, secureContext: true, cores: 8, webgpuApi: false};
const NO_HEADERS = {...ISOLATED, crossOriginIsolated: false, sharedArrayBuffer: false};
const PLAIN_HTTP = {...NO_HEADERS, secureContext: false};

const plan = (search, caps) => planCompute(readSettings(search), caps);

describe('readSettings', () => {
  test('defaults: threads chosen by the page, WebAssembly', () => {
    assert.deepEqual(readSettings(''), {threads: null, backend: 'wasm', problems: []});
    assert.deepEqual(readSettings('?artifact=m.tflite'), {threads: null, backend: 'wasm', problems: []});
  });
  test('?threads=K and ?backend=webgpu', () => {
    assert.deepEqual(readSettings('?threads=1'), {threads: 1, backend: 'wasm', problems: []});
    assert.deepEqual(readSettings('?artifact=x.onnx&threads=3&backend=WebGPU'), {
      threads: 3,
      backend: 'webgpu',
      problems: [],
    });
  });
  test('values it cannot use are ignored, with a sentence', () => {
    for (const bad of ['0', '-2', 'two', '1.5', '', '10000']) {
      const s = readSettings(`?threads=${encodeURIComponent(bad)}`);
      assert.equal(s.threads, null, bad);
      assert.deepEqual(s.problems, [`?threads=${bad} is not a number of threads (1, 2, ...): ignored.`]);
    }
    const s = readSettings('?backend=webgl');
    assert.equal(s.backend, 'wasm');
    assert.deepEqual(s.problems, ['?backend=webgl is not a backend (wasm or webgpu): ignored.']);
  });
});

describe('planCompute and describeCompute', () => {
  test('isolated: min(cores, 4) threads', () => {
    assert.equal(DEFAULT_MAX_THREADS, 4);
    for (const [cores, threads] of [[1, 1], [2, 2], [4, 4], [16, 4]]) {
      const p = plan('', {...ISOLATED, cores});
      assert.equal(p.threads, threads, `${cores} cores`);
      assert.equal(p.isolated, true);
    }
    assert.equal(describeCompute(plan('', {...ISOLATED, cores: 2})), 'WebAssembly, 2 threads.');
    assert.equal(
      describeCompute(plan('', {...ISOLATED, cores: 1})),
      'WebAssembly, 1 thread: this device reports one core.',
    );
  });
  test('isolated: ?threads=K, up to the cores', () => {
    assert.equal(describeCompute(plan('?threads=1', ISOLATED)), 'WebAssembly, 1 thread (as ?threads=1 asks).');
    assert.equal(plan('?threads=6', ISOLATED).threads, 6);
    const p = plan('?threads=12', ISOLATED);
    assert.equal(p.threads, 8);
    assert.equal(describeCompute(p), "WebAssembly, 8 threads: ?threads=12 asks for more than this device's 8 cores.");
  });
  test('not isolated: 1 thread, whatever is asked, and one sentence why', () => {
    for (const search of ['', '?threads=4', '?threads=1']) {
      assert.equal(plan(search, NO_HEADERS).threads, 1);
      assert.equal(plan(search, PLAIN_HTTP).threads, 1);
    }
    assert.equal(
      describeCompute(plan('', PLAIN_HTTP)),
      'WebAssembly, 1 thread: this page is not cross-origin isolated (it came over plain HTTP, as on a phone ' +
        'opening the LAN address), so the browser allows no threads.',
    );
    assert.equal(
      describeCompute(plan('', NO_HEADERS)),
      'WebAssembly, 1 thread: this page is not cross-origin isolated (its server sent no COOP/COEP headers, or ' +
        'the browser ignored them), so the browser allows no threads.',
    );
    // isolated but without SharedArrayBuffer (no browser does this today): still no threads
    const odd = plan('', {...ISOLATED, sharedArrayBuffer: false});
    assert.equal(odd.threads, 1);
    assert.match(describeCompute(odd), /no SharedArrayBuffer/);
  });
  test('WebGPU is planned only when asked for; a fallback says so first', () => {
    assert.equal(plan('', {...ISOLATED, webgpuApi: true}).backend, 'wasm');
    const p = plan('?backend=webgpu', ISOLATED);
    assert.equal(p.backend, 'webgpu');
    assert.equal(describeCompute(p), 'WebGPU.');
    assert.equal(
      describeCompute({...p, backend: 'wasm', threads: 4, webgpu: WEBGPU_NOT_OFFERED}),
      'WebGPU: not offered by this browser. WebAssembly, 4 threads.',
    );
    assert.equal(
      describeCompute(plan('?threads=x', NO_HEADERS)).split(' WebAssembly')[0],
      '?threads=x is not a number of threads (1, 2, ...): ignored.',
    );
  });
});

describe('browserCapabilities and webgpuAdapter', () => {
  test('read from a global object', () => {
    const navigator = {hardwareConcurrency: 2};
    const g = {crossOriginIsolated: true, SharedArrayBuffer, isSecureContext: true, navigator};
    assert.deepEqual(browserCapabilities(g), {
      crossOriginIsolated: true,
      sharedArrayBuffer: true,
      secureContext: true,
      cores: 2,
      webgpuApi: false,
    });
    assert.deepEqual(browserCapabilities({}), {
      crossOriginIsolated: false,
      sharedArrayBuffer: false,
      secureContext: false,
      cores: 1,
      webgpuApi: false,
    });
  });
  test('no navigator.gpu: no adapter', async () => {
    assert.equal(await webgpuAdapter({navigator: {}}), null);
  });
});
