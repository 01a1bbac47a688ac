/**
 * The model contract in JavaScript: the port of the Python reference (core/images.py, core/contract.py,
 * core/spec.py) that the page uses to prepare a model's inputs and read its output. This file is the
 * public entry; the work is done by modules with one job each (the same split as the Kotlin port in
 * android_demo/core):
 *
 *     spec.js           readSpec, checkContract, outputContract, decide       (ModelSpec.kt)
 *     tflite.js         the .tflite flatbuffer walk to the embedded spec      (Tflite.kt)
 *     onnx.js           the .onnx protobuf walk to the embedded spec          (Onnx.kt)
 *     images.js         checkImageContract, compositeOnWhite, resizeRgb, resizeBilinear, toFloat,
 *                       imageTensor                                           (Preprocess.kt)
 *     modelcontract.js  readContract, featureEntries, encodeFeature, canonical (the model contract)
 *     metadata.js       metadataLayout, encodeMeta                            (Metadata.kt)
 *     pyformat.js       formatG, pyRepr: values written as Python writes them
 *     provenance.js     readTrustedKey, verifySignature, checkFiles: a signed export's model.sig
 *                       (docs/signing.md), with WebCrypto only                (Provenance.kt)
 *     fields.js         typed reading of spec fields that never fills one in  (Json.kt)
 *     errors.js         ContractError                                         (ContractException.kt)
 *
 * No DOM and no dependencies: the same modules run in the browser and in Node (the tests hold them against
 * the golden vectors, PIL and cv2-rule outputs and core.contract encodings that Python writes).
 *
 *     import {readSpec, checkContract, imageTensor, encodeMeta, decide} from './contract.js';
 *     const spec = readSpec(new Uint8Array(await (await fetch('model.tflite')).arrayBuffer()));
 *     checkContract(spec);
 *     const image = imageTensor(spec, rgba, width, height);   // Float32Array in spec.image.layout
 *     const meta = encodeMeta(spec, {age_approx: 55, sex: 'female', anatom_site_general_challenge: 'torso'});
 *     const {label, positive} = decide(spec, probability);
 *
 * Every function mirrors one in the Python reference, under the same name where the languages allow:
 * readSpec <-> export.common.parse_embedded, checkContract <-> core.images.check_contract plus
 * core.spec._check_against_contract, passOrder <-> core.images.pass_order, resizeRgb <->
 * core.images.resize_rgb (Pillow 13.0's antialiased bilinear), linearTaps / resizeBilinear <->
 * core.images._linear_taps / resize_bilinear (cv2.resize INTER_LINEAR), compositeOnWhite <-> the alpha step
 * of core.images.to_rgb, toFloat <-> core.images.to_float, imageTensor <-> core.images.preprocess,
 * readContract <-> core.contract.Contract.from_dict, encodeFeature <-> Feature.encode, encodeMeta <->
 * core.contract.ContractEncoder.encode, metadataLayout <-> core.spec.metadata_layout, decide <->
 * core.spec.OutputContract.decide, readTrustedKey / verifySignature / checkFiles <-> export.sign (the checks of
 * verify_folder, on the files a page holds).
 *
 * A contract reader never fills in a missing field: a spec without `image.layout`, `outputs.threshold` or
 * any other field that shapes the inputs or the decision is refused with a ContractError naming it.
 */

export {ContractError} from './errors.js';
export {SPEC_KEY, SPEC_SCHEMA, SPEC_SCHEMA_VERSION, checkContract, decide, outputContract, readSpec} from './spec.js';
export {isTflite, tfliteMetadata} from './tflite.js';
export {onnxMetadata} from './onnx.js';
export {
  BILINEAR_LIBRARY,
  PILLOW_MAJOR,
  SUPPORTED,
  checkImageContract,
  compositeOnWhite,
  imageTensor,
  linearTaps,
  passOrder,
  resampleCoefficients,
  resizeBilinear,
  resizeRgb,
  toFloat,
} from './images.js';
export {
  CONTRACT_SCHEMA,
  FEATURE_KINDS,
  canonical,
  encodeFeature,
  featureEntries,
  readContract,
} from './modelcontract.js';
export {encodeMeta, metadataLayout} from './metadata.js';
export {formatG, pyRepr} from './pyformat.js';
export {
  NO_WEBCRYPTO,
  SENTENCES,
  SIGNATURE_FILE,
  canonicalPem,
  checkFiles,
  derToRaw,
  isIgnored,
  pae,
  readTrustedKey,
  sha256Hex,
  verifyHeld,
  verifySignature,
} from './provenance.js';
