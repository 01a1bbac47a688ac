/**
 * The image half of the contract: decoded RGBA pixels -> the model's `image` input, the port of
 * core/images.py (and of the Kotlin port's Preprocess.kt), bit for bit, for both resize rules a contract
 * may name:
 *
 *     imageTensor(spec, rgba, width, height)
 *       = toFloat(resize(compositeOnWhite(rgba), width, height, S, S), S, S, spec.image.layout)
 *     resize = resizeRgb        when spec.image.antialias is true  (contract resize "pillow")
 *            = resizeBilinear   when it is false                   (contract resize "bilinear")
 *
 * checkImageContract <-> core.images.check_contract (plus the dtype, colour, value range, resize library
 * and the agreement with the spec's contract, which core.spec checks when it reads a spec),
 * compositeOnWhite <-> the alpha step of core.images.to_rgb, passOrder <-> core.images.pass_order,
 * resizeRgb <-> core.images.resize_rgb (Pillow 13.0's antialiased bilinear), linearTaps /
 * resizeBilinear <-> core.images._linear_taps / resize_bilinear (OpenCV's cv2.resize INTER_LINEAR),
 * toFloat <-> core.images.to_float, imageTensor <-> core.images.preprocess.
 */

import {ContractError, REEXPORT} from './errors.js';
import {root} from './fields.js';
import {readContract} from './modelcontract.js';

/** What this module implements of the image contract (the same table as core/images.py SUPPORTED). */
export const SUPPORTED = Object.freeze({
  resize: Object.freeze(['stretch']),
  interpolation: Object.freeze(['bilinear']),
  layout: Object.freeze(['NCHW', 'NHWC']),
});

/** The Pillow major version whose resize (pass order included) resizeRgb reproduces. */
export const PILLOW_MAJOR = 13;

/** How core.spec names the "bilinear" rule in image.resize_library (it begins with this). */
export const BILINEAR_LIBRARY = 'OpenCV cv2.resize INTER_LINEAR';

/**
 * Decoded pixels -> the model's `image` input for one case (no batch axis), as the spec says: alpha
 * composited on white, stretched to S x S by the spec's resize rule (Pillow's antialiased bilinear when
 * `image.antialias` is true, cv2's INTER_LINEAR when it is false), v / 255 in float32, laid out in
 * `spec.image.layout` ([3, S, S] for NCHW, [S, S, 3] for NHWC). Mirrors core.images.preprocess.
 *
 * @param {object} spec a ModelSpec from readSpec
 * @param {Uint8Array|Uint8ClampedArray} rgba width * height * 4 bytes, row-major (ImageData.data)
 * @param {number} width
 * @param {number} height
 * @returns {Float32Array} S * S * 3 values
 * @throws {ContractError} when the spec's image contract is incomplete or not implemented here, or the
 *     pixels do not match the size
 */
export function imageTensor(spec, rgba, width, height) {
  checkImageContract(spec);
  checkSize(width, height, 'image');
  if (!rgba || rgba.length !== width * height * 4) {
    throw new ContractError(
      `imageTensor got ${rgba ? rgba.length : 0} bytes for a ${width} x ${height} image: give RGBA pixels (${width * height * 4} bytes).`,
    );
  }
  const size = spec.image.size;
  const rgb = compositeOnWhite(rgba);
  const resize = spec.image.antialias ? resizeRgb : resizeBilinear;
  return toFloat(resize(rgb, width, height, size, size), size, size, spec.image.layout);
}

/**
 * Refuse an image contract this module does not implement, or one with a field missing (nothing is
 * assumed: a spec without `image.layout` is refused, not read as NCHW), or one that contradicts the spec's
 * model contract (its size, its resize rule). Mirrors core.images.check_contract, the image half of
 * core.spec._check_against_contract and the Kotlin port's checkContract.
 *
 * @param {object} spec a ModelSpec from readSpec
 * @throws {ContractError} naming the field and what is implemented
 */
export function checkImageContract(spec) {
  const image = root(spec).object('image');
  for (const [name, allowed] of Object.entries(SUPPORTED)) {
    const value = image.string(name);
    if (!allowed.includes(value)) {
      throw new ContractError(
        `The spec asks for image ${name} ${JSON.stringify(value)}; this page implements ${allowed.join(', ')}.`,
      );
    }
  }
  const antialias = image.boolean('antialias');
  const size = image.required('size');
  if (!Number.isInteger(size) || size < 1) {
    throw new ContractError(`The spec's image size ${JSON.stringify(size)} is not a positive integer: ${REEXPORT}`);
  }
  const dtype = image.string('dtype');
  if (dtype !== 'float32') {
    throw new ContractError(`The spec asks for a ${dtype} image input; this page feeds float32.`);
  }
  const color = image.string('color');
  if (color !== 'RGB') {
    throw new ContractError(`The spec asks for image color ${JSON.stringify(color)}; this page implements RGB.`);
  }
  const range = image.numbers('value_range');
  if (range.length !== 2 || range[0] !== 0 || range[1] !== 1) {
    throw new ContractError(`The spec asks for image value_range ${JSON.stringify(range)}; this page feeds values in [0, 1].`);
  }
  const library = image.string('resize_library');
  const version = image.string('resize_library_version');
  if (antialias) {
    if (library !== 'PIL') {
      throw new ContractError(`The spec asks for image resize_library ${JSON.stringify(library)}; this page implements PIL.`);
    }
    if (version === '') {
      throw new ContractError(
        `The model's spec records no image.resize_library_version (the Pillow its resize was checked with): ${REEXPORT}`,
      );
    }
    if (version.split('.')[0] !== String(PILLOW_MAJOR)) {
      throw new ContractError(
        `The spec's resize follows Pillow ${version}; this page reproduces Pillow ${PILLOW_MAJOR}.x: ` +
          "re-export the model with the project's pinned Pillow.",
      );
    }
  } else if (!library.startsWith(BILINEAR_LIBRARY)) {
    throw new ContractError(
      `The spec asks for a resize without antialiasing by ${JSON.stringify(library)}; this page implements ${BILINEAR_LIBRARY}.`,
    );
  }
  const contract = readContract(spec).image;
  if (size !== contract.size) {
    throw new ContractError(`The spec's image size ${size} differs from its contract's ${contract.size}: ${REEXPORT}`);
  }
  if (antialias !== (contract.resize === 'pillow')) {
    throw new ContractError(
      `The spec's image.antialias ${antialias} contradicts its contract's resize rule "${contract.resize}": ${REEXPORT}`,
    );
  }
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

// OpenCV's INTER_LINEAR for 8-bit images: 11-bit coefficients, then its vectorised vertical pass, whose
// shifts (each product of the horizontal sum >> 4 and a coefficient, >> 16, summed, + 2, >> 2) differ from
// an exact rounding by one level now and then. OpenCV runs that vector code on every row, clamped ones included.
const COEF_BITS = 11;
const COEF_ONE = Math.fround(2 ** COEF_BITS);

/** numpy's rint: to the nearest integer, ties to even. */
function roundHalfEven(x) {
  const r = Math.round(x); // ties towards +infinity
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * For each output index of one axis: the two source indices and their 11-bit weights, as cv2.resize
 * computes them (core.images._linear_taps): the source position (d + 0.5) * (1 / (dst / src)) - 0.5 in
 * double, stored as float32; its floor; the fraction in float32; weights rint((1 - fraction) * 2048) and
 * rint(fraction * 2048) in float32, ties to even; indices clamped to [0, src - 1], the weights not.
 *
 * @param {number} src source pixels along the axis
 * @param {number} dst output pixels along the axis
 * @returns {{index: Int32Array, weight: Int32Array}} [i0, i1] and [w0, w1] per output index (2 * dst values)
 */
export function linearTaps(src, dst) {
  const scale = 1.0 / (dst / src);
  const index = new Int32Array(dst * 2);
  const weight = new Int32Array(dst * 2);
  for (let d = 0; d < dst; d++) {
    const position = Math.fround((d + 0.5) * scale - 0.5);
    const first = Math.floor(position);
    const fraction = Math.fround(position - first);
    weight[2 * d] = roundHalfEven(Math.fround(Math.fround(1 - fraction) * COEF_ONE));
    weight[2 * d + 1] = roundHalfEven(Math.fround(fraction * COEF_ONE));
    index[2 * d] = Math.min(Math.max(first, 0), src - 1);
    index[2 * d + 1] = Math.min(Math.max(first + 1, 0), src - 1);
  }
  return {index, weight};
}

/**
 * Stretch an image to outWidth x outHeight exactly like OpenCV's `cv2.resize(pixels, (outWidth,
 * outHeight), interpolation=cv2.INTER_LINEAR)` on 8-bit pixels (core.images.resize_bilinear, bit-exact with
 * opencv-python 5.0): no antialiasing, half-pixel centres, the taps of `linearTaps`; per row and channel
 * the horizontal sum S = p[i0] * w0 + p[i1] * w1, then per output row
 * ((((S_top >> 4) * v0) >> 16) + (((S_bottom >> 4) * v1) >> 16) + 2) >> 2.
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
export function resizeBilinear(pixels, width, height, outWidth, outHeight = outWidth) {
  checkSize(width, height, 'input');
  checkSize(outWidth, outHeight, 'output');
  const count = width * height;
  if (!pixels || (pixels.length !== count * 3 && pixels.length !== count * 4)) {
    throw new ContractError(
      `resizeBilinear got ${pixels ? pixels.length : 0} bytes for a ${width} x ${height} image: give RGB (${count * 3}) or RGBA (${count * 4}) bytes.`,
    );
  }
  const rgb = pixels.length === count * 3 ? pixels : dropAlpha(pixels, count);
  const x = linearTaps(width, outWidth);
  const y = linearTaps(height, outHeight);
  // The horizontal pass, every source row, shifted right by 4 (what the vertical pass reads): at most
  // (255 * 2048) >> 4 = 32640, so every product below stays within 32-bit integers.
  const stride = outWidth * 3;
  const rows = new Int32Array(height * stride);
  for (let row = 0; row < height; row++) {
    const src = row * width * 3;
    const out = row * stride;
    for (let d = 0; d < outWidth; d++) {
      const p0 = src + 3 * x.index[2 * d];
      const p1 = src + 3 * x.index[2 * d + 1];
      const w0 = x.weight[2 * d];
      const w1 = x.weight[2 * d + 1];
      for (let c = 0; c < 3; c++) rows[out + 3 * d + c] = (rgb[p0 + c] * w0 + rgb[p1 + c] * w1) >> 4;
    }
  }
  const out = new Uint8Array(outHeight * stride);
  for (let d = 0; d < outHeight; d++) {
    const top = y.index[2 * d] * stride;
    const bottom = y.index[2 * d + 1] * stride;
    const v0 = y.weight[2 * d];
    const v1 = y.weight[2 * d + 1];
    const o = d * stride;
    for (let i = 0; i < stride; i++) {
      out[o + i] = (((rows[top + i] * v0) >> 16) + ((rows[bottom + i] * v1) >> 16) + 2) >> 2;
    }
  }
  return out;
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
