/**
 * The image half of the contract: decoded RGBA pixels -> the model's `image` input, the port of
 * core/images.py (and of the Kotlin port's Preprocess.kt), bit for bit.
 *
 *     imageTensor(spec, rgba, width, height)
 *       = toFloat(resizeRgb(compositeOnWhite(rgba), width, height, S, S), S, S, spec.image.layout)
 *
 * checkImageContract <-> core.images.check_contract (plus the dtype, colour, value range and Pillow
 * version, which the Python reference takes for granted), compositeOnWhite <-> the alpha step of
 * core.images.to_rgb, passOrder <-> core.images.pass_order, resizeRgb <-> core.images.resize_rgb (Pillow
 * 13.0's antialiased bilinear), toFloat <-> core.images.to_float, imageTensor <-> core.images.preprocess.
 */

import {ContractError, REEXPORT} from './errors.js';
import {root} from './fields.js';

/** What this module implements of the image contract (the same table as core/images.py SUPPORTED). */
export const SUPPORTED = Object.freeze({
  resize: Object.freeze(['stretch']),
  interpolation: Object.freeze(['bilinear']),
  layout: Object.freeze(['NCHW', 'NHWC']),
});

/** The Pillow major version whose resize (pass order included) resizeRgb reproduces. */
export const PILLOW_MAJOR = 13;

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
  return toFloat(resizeRgb(rgb, width, height, size, size), size, size, spec.image.layout);
}

/**
 * Refuse an image contract this module does not implement, or one with a field missing (nothing is
 * assumed: a spec without `image.layout` is refused, not read as NCHW). Mirrors core.images.check_contract
 * and the Kotlin port's checkContract.
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
  if (image.boolean('antialias') !== true) {
    throw new ContractError('The spec asks for a resize without antialiasing; this page implements the antialiased one.');
  }
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
  if (library !== 'PIL') {
    throw new ContractError(`The spec asks for image resize_library ${JSON.stringify(library)}; this page implements PIL.`);
  }
  const version = image.string('resize_library_version');
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
