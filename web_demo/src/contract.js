/**
 * The model contract in JavaScript: the port of the Python reference (core/images.py, core/metadata.py,
 * core/spec.py) that the page uses to prepare a model's inputs and read its output.
 *
 * No DOM and no dependencies: the same module runs in the browser and in Node (the tests hold it against
 * the golden vectors and PIL outputs that Python writes).
 *
 *     import {readSpec, checkContract, imageTensor, encodeMeta, decide} from './contract.js';
 *     const spec = readSpec(new Uint8Array(await (await fetch('model.tflite')).arrayBuffer()));
 *     checkContract(spec);
 *     const image = imageTensor(spec, rgba, width, height);   // Float32Array in spec.image.layout
 *     const meta = encodeMeta(spec, {age: 55, sex: 'female', site: 'torso'});
 *     const {label, positive} = decide(spec, probability);
 *
 * Every function here mirrors one in the Python reference, under the same name where the languages allow:
 * readSpec <-> export.common.parse_embedded, checkContract <-> core.images.check_contract,
 * passOrder <-> core.images.pass_order, resizeRgb <-> core.images.resize_rgb (Pillow 13.0's antialiased
 * bilinear), compositeOnWhite <-> the alpha step of core.images.to_rgb, toFloat <-> core.images.to_float,
 * imageTensor <-> core.images.preprocess, encodeMeta <-> core.metadata.MetadataEncoder.encode,
 * decide <-> core.spec.OutputContract.decide.
 */

/** The JSON `schema` value every ModelSpec carries. */
export const SPEC_SCHEMA = 'melanoma-model-spec';
/** The ModelSpec schema version this module reads. */
export const SPEC_SCHEMA_VERSION = 1;
/** The name of the spec entry in a TFLite Metadata table and in ONNX metadata_props. */
export const SPEC_KEY = 'melanoma_spec';
/** The metadata contract version this module encodes. */
export const METADATA_CONTRACT_VERSION = 1;
/** What this module implements of the image contract (the same table as core/images.py SUPPORTED). */
export const SUPPORTED = Object.freeze({
  resize: Object.freeze(['stretch']),
  interpolation: Object.freeze(['bilinear']),
  layout: Object.freeze(['NCHW', 'NHWC']),
});

const REEXPORT = 're-export the model with `python -m export.all`, which embeds its spec.';

/** An input the caller can fix (bad metadata, a file without a spec); its message says what to do. */
export class ContractError extends Error {
  /** @param {string} message one sentence: what is wrong and how to fix it */
  constructor(message) {
    super(message);
    this.name = 'ContractError';
  }
}

// ---------------------------------------------------------------------------------------------------------
// Reading the spec embedded in an artifact
// ---------------------------------------------------------------------------------------------------------

/**
 * Read the ModelSpec embedded in a `.tflite` or `.onnx` file.
 *
 * A TFLite file (file identifier "TFL3" at bytes 4-8) is walked as a flatbuffer: the Model's `metadata`
 * entry named `melanoma_spec` points at a Buffer whose `data` (or, in a large model, its `offset`/`size`
 * into the file) holds the spec's UTF-8 JSON. Anything else is parsed as an ONNX ModelProto: field 14
 * `metadata_props` holds key/value string pairs, one of them `melanoma_spec`. Both are read by hand, with
 * no flatbuffers or protobuf library.
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
    raw = tflite ? tfliteSpecBytes(data) : onnxSpecBytes(data);
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
  if (spec.schema_version !== SPEC_SCHEMA_VERSION) {
    throw new ContractError(
      `The model spec has schema version ${spec.schema_version}; this page reads version ${SPEC_SCHEMA_VERSION}. ` +
        'Use a page and an export from the same release of the toolkit.',
    );
  }
  return spec;
}

/**
 * Whether `bytes` is a TFLite flatbuffer (file identifier "TFL3" at bytes 4-8).
 * @param {Uint8Array} bytes
 * @returns {boolean}
 */
export function isTflite(bytes) {
  return bytes.length >= 8 && bytes[4] === 0x54 && bytes[5] === 0x46 && bytes[6] === 0x4c && bytes[7] === 0x33;
}

/** A bounds-checked little-endian flatbuffer reader over one file. */
class FlatReader {
  constructor(bytes) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  check(pos, size) {
    if (!Number.isInteger(pos) || pos < 0 || pos + size > this.bytes.length) {
      throw new Error(`offset ${pos} is outside the ${this.bytes.length}-byte file`);
    }
  }

  u16(pos) {
    this.check(pos, 2);
    return this.view.getUint16(pos, true);
  }

  u32(pos) {
    this.check(pos, 4);
    return this.view.getUint32(pos, true);
  }

  i32(pos) {
    this.check(pos, 4);
    return this.view.getInt32(pos, true);
  }

  u64(pos) {
    this.check(pos, 8);
    const value = this.view.getBigUint64(pos, true);
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`64-bit value ${value} is too large`);
    return Number(value);
  }

  /** Position of field `index` of the table at `table`, or -1 when the field is absent. */
  field(table, index) {
    const vtable = table - this.i32(table);
    const vtableSize = this.u16(vtable);
    const slot = 4 + 2 * index;
    if (slot + 2 > vtableSize) return -1;
    const offset = this.u16(vtable + slot);
    return offset === 0 ? -1 : table + offset;
  }

  /** Follow the uoffset stored at `pos` (to a table, vector or string). */
  deref(pos) {
    return pos + this.u32(pos);
  }

  /** [start, length] of the vector whose uoffset is stored at field position `pos`. */
  vector(pos) {
    const at = this.deref(pos);
    const length = this.u32(at);
    return [at + 4, length];
  }

  string(pos) {
    const [start, length] = this.vector(pos);
    this.check(start, length);
    return new TextDecoder('utf-8').decode(this.bytes.subarray(start, start + length));
  }
}

// Field indices in the TFLite schema (tensorflow/lite/schema/schema.fbs).
const MODEL_BUFFERS = 4;
const MODEL_METADATA = 6;
const METADATA_NAME = 0;
const METADATA_BUFFER = 1;
const BUFFER_DATA = 0;
const BUFFER_OFFSET = 1;
const BUFFER_SIZE = 2;

function tfliteSpecBytes(bytes) {
  const fb = new FlatReader(bytes);
  const model = fb.deref(0);
  const metadataField = fb.field(model, MODEL_METADATA);
  if (metadataField < 0) return null;
  const [entries, count] = fb.vector(metadataField);
  for (let i = 0; i < count; i++) {
    const entry = fb.deref(entries + 4 * i);
    const nameField = fb.field(entry, METADATA_NAME);
    if (nameField < 0 || fb.string(nameField) !== SPEC_KEY) continue;
    const bufferField = fb.field(entry, METADATA_BUFFER);
    const index = bufferField < 0 ? 0 : fb.u32(bufferField);
    const buffersField = fb.field(model, MODEL_BUFFERS);
    if (buffersField < 0) throw new Error('the model has no buffers table');
    const [buffers, bufferCount] = fb.vector(buffersField);
    if (index >= bufferCount) throw new Error(`metadata buffer ${index} does not exist (${bufferCount} buffers)`);
    const buffer = fb.deref(buffers + 4 * index);
    // A large model keeps buffer contents after the flatbuffer: offset (> 1) and size into the file.
    const offsetField = fb.field(buffer, BUFFER_OFFSET);
    const offset = offsetField < 0 ? 0 : fb.u64(offsetField);
    if (offset > 1) {
      const sizeField = fb.field(buffer, BUFFER_SIZE);
      const size = sizeField < 0 ? 0 : fb.u64(sizeField);
      fb.check(offset, size);
      return bytes.subarray(offset, offset + size);
    }
    const dataField = fb.field(buffer, BUFFER_DATA);
    if (dataField < 0) return new Uint8Array(0);
    const [start, length] = fb.vector(dataField);
    fb.check(start, length);
    return bytes.subarray(start, start + length);
  }
  return null;
}

/** A protobuf wire-format reader (varints as Numbers: exact up to 2^53, far beyond any file size here). */
class ProtoReader {
  constructor(bytes, start = 0, end = bytes.length) {
    this.bytes = bytes;
    this.pos = start;
    this.end = end;
  }

  varint() {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new Error('truncated varint');
      const byte = this.bytes[this.pos++];
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) return value;
      scale *= 128;
    }
    throw new Error('varint longer than 10 bytes');
  }

  /** Yields [fieldNumber, wireType, start, end] for each field; `start`/`end` bound a length-delimited one. */
  *fields() {
    while (this.pos < this.end) {
      const tag = this.varint();
      const number = Math.floor(tag / 8);
      const wire = tag % 8;
      if (number === 0) throw new Error('field number 0');
      let start = this.pos;
      if (wire === 0) {
        this.varint();
      } else if (wire === 1) {
        this.pos += 8;
      } else if (wire === 2) {
        const length = this.varint();
        start = this.pos;
        this.pos += length;
      } else if (wire === 5) {
        this.pos += 4;
      } else {
        throw new Error(`unsupported protobuf wire type ${wire}`);
      }
      if (this.pos > this.end) throw new Error('a field runs past the end of its message');
      yield [number, wire, start, this.pos];
    }
  }
}

const ONNX_MODEL_METADATA_PROPS = 14;
const ONNX_ENTRY_KEY = 1;
const ONNX_ENTRY_VALUE = 2;
const ONNX_MODEL_GRAPH = 7;

function onnxSpecBytes(bytes) {
  if (bytes.length === 0) throw new Error('the file is empty');
  const decoder = new TextDecoder('utf-8');
  let sawGraph = false;
  let spec = null;
  for (const [number, wire, start, end] of new ProtoReader(bytes).fields()) {
    if (number === ONNX_MODEL_GRAPH && wire === 2) sawGraph = true;
    if (number !== ONNX_MODEL_METADATA_PROPS || wire !== 2) continue;
    let key = null;
    let value = null;
    for (const [n, w, s, e] of new ProtoReader(bytes, start, end).fields()) {
      if (w !== 2) continue;
      if (n === ONNX_ENTRY_KEY) key = decoder.decode(bytes.subarray(s, e));
      if (n === ONNX_ENTRY_VALUE) value = bytes.subarray(s, e);
    }
    if (key === SPEC_KEY) spec = value ?? new Uint8Array(0);
  }
  if (!sawGraph) throw new Error('it has no ONNX graph');
  return spec;
}

// ---------------------------------------------------------------------------------------------------------
// The image contract
// ---------------------------------------------------------------------------------------------------------

/**
 * Refuse a spec whose image or metadata contract this module does not implement (mirrors
 * core.images.check_contract, plus the metadata contract checks of MetadataEncoder.from_contract).
 *
 * @param {object} spec a ModelSpec from readSpec
 * @throws {ContractError} naming the field and what is implemented
 */
export function checkContract(spec) {
  const image = spec && spec.image;
  if (!image || typeof image !== 'object') throw new ContractError(`The model spec has no image contract: ${REEXPORT}`);
  for (const [name, allowed] of Object.entries(SUPPORTED)) {
    if (!allowed.includes(image[name])) {
      throw new ContractError(
        `The spec asks for image ${name} ${JSON.stringify(image[name])}; this page implements ${allowed.join(', ')}.`,
      );
    }
  }
  if (image.antialias !== true) {
    throw new ContractError('The spec asks for a resize without antialiasing; this page implements the antialiased one.');
  }
  if (!Number.isInteger(image.size) || image.size < 1) {
    throw new ContractError(`The spec's image size ${JSON.stringify(image.size)} is not a positive integer: ${REEXPORT}`);
  }
  if (image.dtype !== undefined && image.dtype !== 'float32') {
    throw new ContractError(`The spec asks for a ${image.dtype} image input; this page feeds float32.`);
  }
  metadataLayout(spec);
}

/**
 * Which pass Pillow 13.0 runs first when resizing in_width x in_height to out_width x out_height:
 * "vertical" when the height shrinks by more than twice as many pixels as the width, else "horizontal".
 * (A pass whose size does not change is skipped.)
 *
 * @param {number} inWidth
 * @param {number} inHeight
 * @param {number} outWidth
 * @param {number} outHeight
 * @returns {'vertical'|'horizontal'}
 */
export function passOrder(inWidth, inHeight, outWidth, outHeight) {
  const shrinkY = inHeight - outHeight;
  const shrinkX = inWidth - outWidth;
  return outHeight < inHeight && shrinkY > 2 * shrinkX ? 'vertical' : 'horizontal';
}

const PRECISION_BITS = 22; // Pillow's 8-bit resampling: 32 - 8 - 2
const ONE = 2 ** PRECISION_BITS;
const HALF = 2 ** (PRECISION_BITS - 1);

/**
 * Pillow's antialiased bilinear coefficients for one axis, in its 22-bit fixed point.
 * Every step is the same double-precision operation, in the same order, as Pillow's precompute_coeffs
 * and normalize_coeffs_8bpc, so the integers are identical.
 *
 * @param {number} inSize
 * @param {number} outSize
 * @returns {{bounds: Int32Array, weights: Int32Array[]}} per output index: first input index and
 *     fixed-point weights (bounds holds [xmin, count] pairs)
 */
export function resampleCoefficients(inSize, outSize) {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1.0);
  const support = 1.0 * filterScale; // the triangle filter's support is 1
  const invFilterScale = 1.0 / filterScale;
  const bounds = new Int32Array(outSize * 2);
  const weights = new Array(outSize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    const w = new Float64Array(Math.max(xmax, 0));
    let sum = 0.0;
    for (let x = 0; x < xmax; x++) {
      const t = Math.abs((x + xmin - center + 0.5) * invFilterScale);
      w[x] = t < 1.0 ? 1.0 - t : 0.0;
      sum += w[x];
    }
    const k = new Int32Array(w.length);
    for (let x = 0; x < w.length; x++) {
      const v = sum !== 0.0 ? w[x] / sum : w[x];
      k[x] = v < 0 ? Math.trunc(-0.5 + v * ONE) : Math.trunc(0.5 + v * ONE);
    }
    bounds[2 * xx] = xmin;
    bounds[2 * xx + 1] = w.length;
    weights[xx] = k;
  }
  return {bounds, weights};
}

function clip8(sum) {
  const v = Math.floor(sum / ONE); // an arithmetic shift: the sums are exact integers below 2^53
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

/** One horizontal pass over an RGB uint8 image (channels resampled independently). */
function resampleHorizontal(src, width, height, outWidth) {
  const {bounds, weights} = resampleCoefficients(width, outWidth);
  const out = new Uint8Array(outWidth * height * 3);
  for (let y = 0; y < height; y++) {
    const row = y * width * 3;
    for (let xx = 0; xx < outWidth; xx++) {
      const xmin = bounds[2 * xx];
      const k = weights[xx];
      let r = HALF;
      let g = HALF;
      let b = HALF;
      for (let x = 0; x < k.length; x++) {
        const p = row + (xmin + x) * 3;
        r += src[p] * k[x];
        g += src[p + 1] * k[x];
        b += src[p + 2] * k[x];
      }
      const o = (y * outWidth + xx) * 3;
      out[o] = clip8(r);
      out[o + 1] = clip8(g);
      out[o + 2] = clip8(b);
    }
  }
  return out;
}

/** One vertical pass over an RGB uint8 image. */
function resampleVertical(src, width, height, outHeight) {
  const {bounds, weights} = resampleCoefficients(height, outHeight);
  const out = new Uint8Array(width * outHeight * 3);
  const stride = width * 3;
  for (let yy = 0; yy < outHeight; yy++) {
    const ymin = bounds[2 * yy];
    const k = weights[yy];
    for (let i = 0; i < stride; i++) {
      let sum = HALF;
      for (let y = 0; y < k.length; y++) sum += src[(ymin + y) * stride + i] * k[y];
      out[yy * stride + i] = clip8(sum);
    }
  }
  return out;
}

/**
 * Stretch an image to outWidth x outHeight exactly like Pillow 13.0's `Image.resize(size, BILINEAR)` on an
 * RGB image: per axis a triangle filter whose support grows with the downscale factor, coefficients in
 * 22-bit fixed point, each pass rounded to 8 bits, the pass order of `passOrder`.
 *
 * RGBA input is read as RGB (its alpha is ignored): composite it first (`compositeOnWhite`), as
 * `imageTensor` does.
 *
 * @param {Uint8Array|Uint8ClampedArray} pixels row-major, 3 (RGB) or 4 (RGBA) bytes per pixel
 * @param {number} width
 * @param {number} height
 * @param {number} outWidth
 * @param {number} [outHeight=outWidth]
 * @returns {Uint8Array} RGB, outWidth * outHeight * 3 bytes, row-major
 */
export function resizeRgb(pixels, width, height, outWidth, outHeight = outWidth) {
  checkSize(width, height, 'input');
  checkSize(outWidth, outHeight, 'output');
  const count = width * height;
  if (!pixels || (pixels.length !== count * 3 && pixels.length !== count * 4)) {
    throw new ContractError(
      `resizeRgb got ${pixels ? pixels.length : 0} bytes for a ${width} x ${height} image: give RGB (${count * 3}) or RGBA (${count * 4}) bytes.`,
    );
  }
  let rgb = pixels.length === count * 3 ? pixels : dropAlpha(pixels, count);
  let w = width;
  let h = height;
  const horizontal = () => {
    if (outWidth !== w) {
      rgb = resampleHorizontal(rgb, w, h, outWidth);
      w = outWidth;
    }
  };
  const vertical = () => {
    if (outHeight !== h) {
      rgb = resampleVertical(rgb, w, h, outHeight);
      h = outHeight;
    }
  };
  if (passOrder(width, height, outWidth, outHeight) === 'vertical') {
    vertical();
    horizontal();
  } else {
    horizontal();
    vertical();
  }
  return rgb === pixels ? Uint8Array.from(rgb) : rgb;
}

function checkSize(width, height, what) {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new ContractError(`The ${what} size ${width} x ${height} is not a positive whole number of pixels.`);
  }
}

function dropAlpha(rgba, count) {
  const rgb = new Uint8Array(count * 3);
  for (let i = 0; i < count; i++) {
    rgb[3 * i] = rgba[4 * i];
    rgb[3 * i + 1] = rgba[4 * i + 1];
    rgb[3 * i + 2] = rgba[4 * i + 2];
  }
  return rgb;
}

/**
 * RGBA -> RGB, each pixel composited over opaque white exactly as PIL's
 * `Image.alpha_composite(white, rgba).convert("RGB")` does (its integer arithmetic, 7 extra bits, divisions
 * by 255 rounded the same way). An opaque pixel keeps its colour.
 *
 * @param {Uint8Array|Uint8ClampedArray} rgba width * height * 4 bytes
 * @returns {Uint8Array} RGB, width * height * 3 bytes
 */
export function compositeOnWhite(rgba) {
  if (!rgba || rgba.length % 4 !== 0) throw new ContractError('compositeOnWhite takes RGBA bytes (4 per pixel).');
  const count = rgba.length / 4;
  const rgb = new Uint8Array(count * 3);
  const dstA = 255;
  const dst = 255; // white
  for (let i = 0; i < count; i++) {
    const a = rgba[4 * i + 3];
    if (a === 255) {
      rgb[3 * i] = rgba[4 * i];
      rgb[3 * i + 1] = rgba[4 * i + 1];
      rgb[3 * i + 2] = rgba[4 * i + 2];
      continue;
    }
    if (a === 0) {
      rgb[3 * i] = dst;
      rgb[3 * i + 1] = dst;
      rgb[3 * i + 2] = dst;
      continue;
    }
    const blend = dstA * (255 - a);
    const outA255 = a * 255 + blend;
    const coef1 = Math.floor((a * 255 * 255 * 128) / outA255);
    const coef2 = 255 * 128 - coef1;
    for (let c = 0; c < 3; c++) {
      const tmp = rgba[4 * i + c] * coef1 + dst * coef2 + (0x80 << 7);
      rgb[3 * i + c] = Math.floor((Math.floor(tmp / 256) + tmp) / 256) >> 7;
    }
  }
  return rgb;
}

const TO_FLOAT = new Float32Array(256).map((_, v) => Math.fround(v / 255));

/**
 * uint8 RGB -> float32 v / 255 (the same bits as numpy's float32 division), as [3, H, W] for "NCHW" or
 * [H, W, 3] for "NHWC".
 *
 * @param {Uint8Array} rgb height * width * 3 bytes, row-major
 * @param {number} width
 * @param {number} height
 * @param {'NCHW'|'NHWC'} layout
 * @returns {Float32Array}
 */
export function toFloat(rgb, width, height, layout) {
  const count = width * height;
  const out = new Float32Array(count * 3);
  if (layout === 'NHWC') {
    for (let i = 0; i < count * 3; i++) out[i] = TO_FLOAT[rgb[i]];
  } else if (layout === 'NCHW') {
    for (let i = 0; i < count; i++) {
      out[i] = TO_FLOAT[rgb[3 * i]];
      out[count + i] = TO_FLOAT[rgb[3 * i + 1]];
      out[2 * count + i] = TO_FLOAT[rgb[3 * i + 2]];
    }
  } else {
    throw new ContractError(`Unknown image layout ${JSON.stringify(layout)}: NCHW or NHWC.`);
  }
  return out;
}

/**
 * Decoded pixels -> the model's `image` input for one case (no batch axis), as the spec says: alpha
 * composited on white, stretched to S x S with Pillow's antialiased bilinear, v / 255 in float32, laid out
 * in `spec.image.layout` ([3, S, S] for NCHW, [S, S, 3] for NHWC). Mirrors core.images.preprocess.
 *
 * @param {object} spec a ModelSpec from readSpec
 * @param {Uint8Array|Uint8ClampedArray} rgba width * height * 4 bytes, row-major (ImageData.data)
 * @param {number} width
 * @param {number} height
 * @returns {Float32Array} S * S * 3 values
 */
export function imageTensor(spec, rgba, width, height) {
  checkContract(spec);
  checkSize(width, height, 'image');
  if (!rgba || rgba.length !== width * height * 4) {
    throw new ContractError(
      `imageTensor got ${rgba ? rgba.length : 0} bytes for a ${width} x ${height} image: give RGBA pixels (${width * height * 4} bytes).`,
    );
  }
  const size = spec.image.size;
  const rgb = compositeOnWhite(rgba);
  return toFloat(resizeRgb(rgb, width, height, size, size), size, size, spec.image.layout);
}

// ---------------------------------------------------------------------------------------------------------
// The metadata contract
// ---------------------------------------------------------------------------------------------------------

/**
 * The layout of the `meta` vector the spec's metadata contract describes, checked like
 * MetadataEncoder.from_contract: [age, age_missing, sex_<each>..., sex_missing, site_<each>..., site_missing].
 *
 * @param {object} spec
 * @returns {{size: number, center: number, scale: number, range: number[], sexes: string[],
 *     sites: string[], sexAliases: object, siteAliases: object, missing: string[]}}
 * @throws {ContractError} when the contract is missing or malformed
 */
export function metadataLayout(spec) {
  const m = spec && spec.metadata;
  const bad = (why) => new ContractError(`The spec's metadata contract ${why}: ${REEXPORT}`);
  if (!m || typeof m !== 'object') throw bad('is missing');
  if (m.version !== METADATA_CONTRACT_VERSION) throw bad(`has version ${m.version}, not ${METADATA_CONTRACT_VERSION}`);
  const age = m.age || {};
  const layout = {
    size: m.size,
    center: Number(age.center),
    scale: Number(age.scale),
    range: Array.isArray(age.valid_range) ? age.valid_range.map(Number) : [0, 120],
    sexes: (m.sex && m.sex.categories) || null,
    sites: (m.site && m.site.categories) || null,
    sexAliases: (m.sex && m.sex.aliases) || {},
    siteAliases: (m.site && m.site.aliases) || {},
    missing: Array.isArray(m.missing_tokens) ? m.missing_tokens : [''],
  };
  if (!Number.isFinite(layout.center) || !Number.isFinite(layout.scale) || layout.scale === 0) {
    throw bad('has no usable age center / scale');
  }
  if (!Array.isArray(layout.sexes) || !Array.isArray(layout.sites)) throw bad('has no sex or site categories');
  const names = [
    'age',
    'age_missing',
    ...layout.sexes.map((s) => `sex_${s}`),
    'sex_missing',
    ...layout.sites.map((s) => `site_${s}`),
    'site_missing',
  ];
  const features = Array.isArray(m.features) ? m.features.map((f) => f.name) : [];
  if (features.length !== names.length || features.some((n, i) => n !== names[i])) {
    throw bad("feature list does not match its categories");
  }
  if (layout.size !== names.length) throw bad(`size ${layout.size} does not match its ${names.length} features`);
  return layout;
}

/** Mirrors core.metadata._is_missing: null, undefined, NaN, or a string that is a missing token. */
function isMissing(value, tokens) {
  if (value === null || value === undefined) return true;
  if (typeof value === 'number' && Number.isNaN(value)) return true;
  return typeof value === 'string' && tokens.includes(value.trim().toLowerCase());
}

/** Mirrors core.metadata._canonical: lower case, "_" -> " ", whitespace collapsed; category, then alias. */
function canonical(value, categories, aliases, what, tokens) {
  if (isMissing(value, tokens)) return null;
  const key = String(value).trim().toLowerCase().replaceAll('_', ' ').split(/\s+/).filter(Boolean).join(' ');
  if (categories.includes(key)) return key;
  if (Object.prototype.hasOwnProperty.call(aliases, key)) return aliases[key];
  const accepted = [...categories, ...Object.keys(aliases)].map((c) => `"${c}"`).join(', ');
  throw new ContractError(`unknown ${what} "${value}": use one of ${accepted}, or leave it empty for missing`);
}

// What Python's float() accepts from a string: a decimal number (underscores between digits allowed),
// or nan / inf / infinity with an optional sign.
const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;
const SPECIAL = /^[+-]?(nan|inf|infinity)$/i;

function parseAge(age) {
  if (typeof age === 'number') return age;
  if (typeof age === 'boolean') return age ? 1 : 0;
  if (typeof age === 'bigint') return Number(age);
  if (typeof age === 'string') {
    const text = age.trim().replace(/(?<=\d)_(?=\d)/g, '');
    if (DECIMAL.test(text)) return Number(text);
    if (SPECIAL.test(text)) {
      const lower = text.toLowerCase();
      if (lower.endsWith('nan')) return NaN;
      return lower.startsWith('-') ? -Infinity : Infinity;
    }
  }
  return undefined;
}

/** A number as Python's `format(value, "g")` writes it (6 significant digits), for identical messages. */
export function formatG(value) {
  if (value === Infinity) return 'inf';
  if (value === -Infinity) return '-inf';
  if (Number.isNaN(value)) return 'nan';
  if (value === 0) return Object.is(value, -0) ? '-0' : '0';
  const [mantissa, exponent] = value.toExponential(5).split('e');
  const exp = Number(exponent);
  const trim = (text) => (text.includes('.') ? text.replace(/0+$/, '').replace(/\.$/, '') : text);
  if (exp < -4 || exp >= 6) return `${trim(mantissa)}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`;
  return trim(value.toFixed(Math.max(0, 5 - exp)));
}

/**
 * The age in years, or null when missing (mirrors MetadataEncoder.check_age, with the spec's valid_range).
 *
 * @param {object} spec
 * @param {*} age a number, a numeric string, or null / undefined / NaN / a missing token
 * @returns {number|null}
 * @throws {ContractError} when it is not a number or outside the valid range
 */
export function checkAge(spec, age) {
  const layout = metadataLayout(spec);
  if (isMissing(age, layout.missing)) return null;
  const value = parseAge(age);
  if (value === undefined) {
    throw new ContractError(`age "${age}" is not a number: give years (e.g. 55) or leave it empty`);
  }
  if (Number.isNaN(value)) return null;
  const [low, high] = layout.range;
  if (!(low <= value && value <= high)) {
    throw new ContractError(`age ${formatG(value)} is outside ${formatG(low)}-${formatG(high)} years: fix or blank it`);
  }
  return value;
}

/**
 * Encode one patient's metadata into the model's `meta` input, exactly like
 * core.metadata.MetadataEncoder.encode with the encoder the spec's metadata contract describes:
 * [(age - center) / scale (0 when missing), age_missing, one-hot sex..., sex_missing, one-hot site...,
 * site_missing]. Missing = null, undefined, NaN, or a string that is one of the spec's `missing_tokens`
 * after trimming and lower-casing ('' is one). Categories match case-insensitively with "_" read as a
 * space, then through the spec's aliases (e.g. "anterior torso" -> "torso").
 *
 * @param {object} spec a ModelSpec from readSpec
 * @param {{age?: *, sex?: *, site?: *}} patient
 * @returns {Float32Array} the `meta` vector (length spec.metadata.size)
 * @throws {ContractError} for an unknown sex or site, a non-numeric age or one outside the valid range
 */
export function encodeMeta(spec, {age = null, sex = null, site = null} = {}) {
  const layout = metadataLayout(spec);
  const vec = new Float32Array(layout.size);
  const ageValue = checkAge(spec, age);
  if (ageValue === null) vec[1] = 1;
  else vec[0] = Math.fround((ageValue - layout.center) / layout.scale); // float64 math, stored as float32
  let offset = 2;
  const sexValue = canonical(sex, layout.sexes, layout.sexAliases, 'sex', layout.missing);
  vec[offset + (sexValue === null ? layout.sexes.length : layout.sexes.indexOf(sexValue))] = 1;
  offset += layout.sexes.length + 1;
  const siteValue = canonical(site, layout.sites, layout.siteAliases, 'body site', layout.missing);
  vec[offset + (siteValue === null ? layout.sites.length : layout.sites.indexOf(siteValue))] = 1;
  return vec;
}

// ---------------------------------------------------------------------------------------------------------
// The output contract
// ---------------------------------------------------------------------------------------------------------

/**
 * The decision at the spec's threshold (mirrors core.spec.OutputContract.decide): a probability at or
 * above `spec.outputs.threshold` is the positive label, anything below is the other label.
 *
 * @param {object} spec a ModelSpec from readSpec
 * @param {number} probability the model's `probability` output
 * @returns {{label: string, positive: boolean}}
 */
export function decide(spec, probability) {
  const outputs = spec.outputs || {};
  const threshold = outputs.threshold ?? 0.5;
  const labels = outputs.labels || ['benign', 'melanoma'];
  const positiveLabel = outputs.positive_label || 'melanoma';
  const positive = Number(probability) >= threshold;
  const negativeLabel = labels.find((l) => l !== positiveLabel);
  return {label: positive ? positiveLabel : negativeLabel, positive};
}
