/**
 * Check a signed export (or a page build) the way the page does, in Node, with provenance.js:
 *
 *     node web_demo/tools/verify.mjs dist/MODEL --trust KEY.pub      # an export folder python -m export.all wrote
 *     node web_demo/tools/verify.mjs web_demo/dist                    # a build: its manifest, model.sig and key
 *
 * An export folder: the files the page would hold from it (every .tflite / .onnx at its top level,
 * golden.json, golden/*.png) under their own names, against the folder's model.sig and the key --trust names.
 * A build (a folder with manifest.json): every file the manifest lists under its `signed_name`, against the
 * build's model.sig and signing_key.pub (--trust overrides the key).
 * Prints "verified: ..." and exits 0, or prints the one refusal sentence of docs/signing.md and exits 1;
 * 2 for a bad command line.
 */

import {existsSync, readFileSync, readdirSync} from 'node:fs';
import {join} from 'node:path';

import {ContractError} from '../src/errors.js';
import {SIGNATURE_FILE, verifyHeld} from '../src/provenance.js';

const USAGE = 'usage: node web_demo/tools/verify.mjs FOLDER [--trust KEY.pub]';

function readOrNull(path) {
  return existsSync(path) ? readFileSync(path) : null;
}

/** What the page holds from an export folder: signed name -> bytes, and the names it requires. */
function fromExport(folder) {
  const held = new Map();
  const required = [];
  for (const name of readdirSync(folder).sort()) {
    if (/\.(tflite|onnx)$/.test(name)) {
      held.set(name, readFileSync(join(folder, name)));
      required.push(name);
    }
  }
  if (existsSync(join(folder, 'golden.json'))) held.set('golden.json', readFileSync(join(folder, 'golden.json')));
  if (existsSync(join(folder, 'golden'))) {
    for (const name of readdirSync(join(folder, 'golden')).sort()) {
      if (name.endsWith('.png')) held.set(`golden/${name}`, readFileSync(join(folder, 'golden', name)));
    }
  }
  return {held, required, signature: join(folder, SIGNATURE_FILE), key: null};
}

/** What a page build holds: every file its manifest lists, under its signed name. */
function fromBuild(folder) {
  const manifest = JSON.parse(readFileSync(join(folder, 'manifest.json'), 'utf-8'));
  const held = new Map();
  for (const f of [...manifest.artifacts, ...(manifest.golden_files || [])]) {
    if (existsSync(join(folder, f.file))) held.set(f.signed_name, readFileSync(join(folder, f.file)));
  }
  const required = manifest.artifacts.map((a) => a.signed_name);
  const signing = manifest.signing || {};
  return {
    held,
    required,
    signature: join(folder, signing.signature || `models/${SIGNATURE_FILE}`),
    key: signing.trusted_key ? join(folder, signing.trusted_key) : null,
  };
}

async function main(argv) {
  const folder = argv[0];
  const at = argv.indexOf('--trust');
  if (!folder || folder.startsWith('--') || (at >= 0 && !argv[at + 1]) || argv.length !== (at >= 0 ? 3 : 1)) {
    console.error(USAGE);
    return 2;
  }
  const what = existsSync(join(folder, 'manifest.json')) ? fromBuild(folder) : fromExport(folder);
  const keyPath = at >= 0 ? argv[at + 1] : what.key;
  if (!keyPath) {
    console.error(`${USAGE} (${folder} holds no trusted key: name one with --trust)`);
    return 2;
  }
  try {
    const statement = await verifyHeld({
      trustedKey: readOrNull(keyPath),
      keyPath,
      signature: readOrNull(what.signature),
      held: what.held,
      required: what.required,
    });
    console.log(`verified: ${what.held.size} files of ${statement.subject} match ${SIGNATURE_FILE}, signed by ${keyPath}`);
    return 0;
  } catch (err) {
    if (!(err instanceof ContractError)) throw err;
    console.log(err.message);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
