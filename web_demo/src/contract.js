/**
 * The model contract in JavaScript: the port of the Python reference (core/images.py, core/metadata.py,
 * core/spec.py) that the page uses to prepare a model's inputs and read its output. This file is the
 * public entry; the work is done by modules with one job each (the same split as the Kotlin port in
 * android_demo/core):
 *
 *     spec.js      readSpec, checkContract, outputContract, decide          (ModelSpec.kt)
 *     tflite.js    the .tflite flatbuffer walk to the embedded spec         (Tflite.kt)
 *     onnx.js      the .onnx protobuf walk to the embedded spec             (Onnx.kt)
 *     images.js    checkImageContract, compositeOnWhite, resizeRgb, toFloat, imageTensor  (Preprocess.kt)
 *     metadata.js  metadataLayout, checkAge, encodeMeta, formatG            (Metadata.kt)
 *     fields.js    typed reading of spec fields that never fills one in     (Json.kt)
 *     errors.js    ContractError                                            (ContractException.kt)
 *
 * No DOM and no dependencies: the same modules run in the browser and in Node (the tests hold them against
 * the golden vectors and PIL outputs that Python writes).
 *
 *     import {readSpec, checkContract, imageTensor, encodeMeta, decide} from './contract.js';
 *     const spec = readSpec(new Uint8Array(await (await fetch('model.tflite')).arrayBuffer()));
 *     checkContract(spec);
 *     const image = imageTensor(spec, rgba, width, height);   // Float32Array in spec.image.layout
 *     const meta = encodeMeta(spec, {age: 55, sex: 'female', site: 'torso'});
 *     const {label, positive} = decide(spec, probability);
 *
 * Every function mirrors one in the Python reference, under the same name where the languages allow:
 * readSpec <-> export.common.parse_embedded, checkContract <-> core.images.check_contract,
 * passOrder <-> core.images.pass_order, resizeRgb <-> core.images.resize_rgb (Pillow 13.0's antialiased
 * bilinear), compositeOnWhite <-> the alpha step of core.images.to_rgb, toFloat <-> core.images.to_float,
 * imageTensor <-> core.images.preprocess, encodeMeta <-> core.metadata.MetadataEncoder.encode,
 * decide <-> core.spec.OutputContract.decide.
 *
 * A contract reader never fills in a missing field: a spec without `image.layout`, `outputs.threshold` or
 * any other field that shapes the inputs or the decision is refused with a ContractError naming it.
 */

export {ContractError} from './errors.js';
export {SPEC_KEY, SPEC_SCHEMA, SPEC_SCHEMA_VERSION, checkContract, decide, outputContract, readSpec} from './spec.js';
export {isTflite, tfliteMetadata} from './tflite.js';
export {onnxMetadata} from './onnx.js';
export {
  PILLOW_MAJOR,
  SUPPORTED,
  checkImageContract,
  compositeOnWhite,
  imageTensor,
  passOrder,
  resampleCoefficients,
  resizeRgb,
  toFloat,
} from './images.js';
export {METADATA_CONTRACT_VERSION, checkAge, encodeMeta, formatG, metadataLayout} from './metadata.js';
