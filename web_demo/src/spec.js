/**
 * The ModelSpec as the page reads it: out of the artifact (readSpec), checked against what the page
 * implements (checkContract), and its output contract turned into a decision (decide). The port of the
 * Kotlin port's ModelSpec.kt and of core/spec.py.
 *
 *     const spec = readSpec(bytes);   // the spec embedded in a .tflite or .onnx file
 *     checkContract(spec);            // image, metadata and output contracts complete and implemented
 *     const {label, positive} = decide(spec, probability);
 *
 * readSpec <-> export.common.parse_embedded, checkContract <-> core.images.check_contract plus
 * core.spec._check_against_contract (the spec's `image` and `metadata` against its model contract,
 * `spec.contract`), outputContract / decide <-> core.spec.OutputContract(.decide).
 * No field is ever filled in: a spec without, say, `outputs.threshold` is refused, not decided at 0.5.
 *
 * The page reads ModelSpec schema version 2 only: `contract` holds the model's own "melanoma-contract/1"
 * (modelcontract.js), `metadata` the `meta` layout derived from it (metadata.js). A version-1 spec (the
 * age / sex / site layout, before contracts) is refused; Python upgrades one when it reads it, so
 * re-exporting the model writes version 2.
 */

import {ContractError, REEXPORT, describe} from './errors.js';
import {root} from './fields.js';
import {checkImageContract} from './images.js';
import {metadataLayout} from './metadata.js';
import {onnxMetadata} from './onnx.js';
import {isTflite, tfliteMetadata} from './tflite.js';

/** The JSON `schema` value every ModelSpec carries. */
export const SPEC_SCHEMA = 'melanoma-model-spec';
/** The ModelSpec schema version this module reads. */
export const SPEC_SCHEMA_VERSION = 2;
/** The name of the spec entry in a TFLite Metadata table and in ONNX metadata_props. */
export const SPEC_KEY = 'melanoma_spec';

/**
 * Read the ModelSpec embedded in a `.tflite` or `.onnx` file.
 *
 * A TFLite file (file identifier "TFL3" at bytes 4-8) is walked as a flatbuffer: the Model's `metadata`
 * entry named `melanoma_spec` points at a Buffer whose `data` (or, in a large model, its `offset`/`size`
 * into the file) holds the spec's UTF-8 JSON (tflite.js). Anything else is parsed as an ONNX ModelProto:
 * field 14 `metadata_props` holds key/value string pairs, one of them `melanoma_spec` (onnx.js). Both are
 * read by hand, with no flatbuffers or protobuf library.
 *
 * @param {Uint8Array|ArrayBuffer} bytes the whole artifact file
 * @returns {object} the spec (plain JSON data, as in `<artifact>.spec.json`)
 * @throws {ContractError} when the file carries no spec, or is neither TFLite nor ONNX, or the spec is
 *     not a ModelSpec this module reads
 */
export function readSpec(bytes) {
  const data = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  const tflite = isTflite(data);
  let raw;
  try {
    raw = tflite ? tfliteMetadata(data, SPEC_KEY) : onnxMetadata(data, SPEC_KEY);
  } catch (err) {
    if (err instanceof ContractError) throw err;
    throw new ContractError(
      tflite
        ? `This .tflite file is damaged (${err.message}): export it again with \`python -m export.all\`.`
        : `This file is neither a TFLite model nor an ONNX model (${err.message}): choose a .tflite or .onnx that \`python -m export.all\` wrote.`,
    );
  }
  if (raw === null) {
    const where = tflite ? 'TFLite Metadata entry' : 'ONNX metadata_props entry';
    throw new ContractError(
      `This ${tflite ? '.tflite' : '.onnx'} file carries no model spec (no "${SPEC_KEY}" ${where}), so its input size, ` +
        `layout, metadata encoding and threshold are unknown: ${REEXPORT}`,
    );
  }
  let spec;
  try {
    spec = JSON.parse(new TextDecoder('utf-8', {fatal: true}).decode(raw));
  } catch (err) {
    throw new ContractError(`The embedded model spec is not valid UTF-8 JSON (${err.message}): ${REEXPORT}`);
  }
  if (spec === null || typeof spec !== 'object' || spec.schema !== SPEC_SCHEMA) {
    throw new ContractError(`The embedded "${SPEC_KEY}" entry is not a model spec (no "schema": "${SPEC_SCHEMA}"): ${REEXPORT}`);
  }
  checkVersion(spec);
  return spec;
}

/**
 * Refuse a spec that this module does not implement or that lacks a field it needs: the image contract
 * and its agreement with the model contract (images.js checkImageContract), the model contract's metadata
 * features and the `meta` layout derived from them (metadata.js metadataLayout) and the output contract
 * (outputContract). Call it once after readSpec; imageTensor, encodeMeta and decide check their own part
 * again.
 *
 * @param {object} spec a ModelSpec from readSpec
 * @throws {ContractError} naming the field and what is wrong with it
 */
export function checkContract(spec) {
  checkVersion(root(spec).data);
  checkImageContract(spec);
  metadataLayout(spec);
  outputContract(spec);
}

/** Refuse a spec of any schema version but SPEC_SCHEMA_VERSION, in one sentence. */
function checkVersion(spec) {
  if (spec.schema_version !== SPEC_SCHEMA_VERSION) {
    throw new ContractError(
      `The model spec has schema version ${describe(spec.schema_version)}, but this page reads version ` +
        `${SPEC_SCHEMA_VERSION}: re-export the model with this release's \`python -m export.all\`, or open it in the page of the release that exported it.`,
    );
  }
}

/**
 * The spec's output contract, checked: output names, labels, the positive label, the decision threshold
 * (a number from 0 to 1) and the fitted temperature are all required. `threshold_rule` is only shown, so
 * it may be absent (null here), never invented.
 *
 * @param {object} spec a ModelSpec from readSpec
 * @returns {{names: string[], labels: string[], positiveLabel: string, negativeLabel: string,
 *     threshold: number, temperature: number, thresholdRule: (string|null)}}
 * @throws {ContractError} naming the missing or malformed field
 */
export function outputContract(spec) {
  const outputs = root(spec).object('outputs');
  const names = outputs.strings('names');
  for (const name of ['logit', 'probability']) {
    if (!names.includes(name)) {
      throw new ContractError(
        `The spec's outputs.names ${JSON.stringify(names)} do not include "${name}": ${REEXPORT}`,
      );
    }
  }
  const labels = outputs.strings('labels');
  const positiveLabel = outputs.string('positive_label');
  const negativeLabel = labels.find((l) => l !== positiveLabel); // the first other label, as Python picks it
  if (!labels.includes(positiveLabel) || negativeLabel === undefined) {
    throw new ContractError(
      `The spec's outputs.labels ${JSON.stringify(labels)} must hold positive_label "${positiveLabel}" and another label: ${REEXPORT}`,
    );
  }
  const threshold = outputs.number('threshold');
  if (threshold < 0 || threshold > 1) throw outputs.invalid('threshold', 'a number from 0 to 1');
  const temperature = outputs.number('temperature');
  if (temperature <= 0) throw outputs.invalid('temperature', 'a positive number');
  const thresholdRule = outputs.has('threshold_rule') ? outputs.string('threshold_rule') : null;
  return {names, labels, positiveLabel, negativeLabel, threshold, temperature, thresholdRule};
}

/**
 * The decision at the spec's threshold (mirrors core.spec.OutputContract.decide): a probability at or
 * above `spec.outputs.threshold` is the positive label, anything below is the other label.
 *
 * @param {object} spec a ModelSpec from readSpec
 * @param {number} probability the model's `probability` output
 * @returns {{label: string, positive: boolean}}
 * @throws {ContractError} when the probability is not a number from 0 to 1 (NaN, undefined, null, a
 *     string, ...: never read as "below the threshold"), or the spec's output contract is incomplete
 */
export function decide(spec, probability) {
  const {threshold, positiveLabel, negativeLabel} = outputContract(spec);
  if (typeof probability !== 'number' || !(probability >= 0 && probability <= 1)) {
    throw new ContractError(
      `The probability ${describe(probability)} is not a number from 0 to 1, so no decision can be made from it.`,
    );
  }
  const positive = probability >= threshold;
  return {label: positive ? positiveLabel : negativeLabel, positive};
}
