/**
 * A small PNG decoder for Node (node:zlib only), enough for the files the tests read: 8-bit RGB, RGBA,
 * gray and gray+alpha, non-interlaced, any of the five row filters. Used by the Node tests to read the
 * golden PNGs that export.all writes and the odd-size images the Python test writes.
 */

import {inflateSync} from 'node:zlib';

const SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
const CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}; // colour type -> samples per pixel

/**
 * Decode a PNG file to RGBA.
 *
 * @param {Uint8Array} bytes the whole file
 * @returns {{width: number, height: number, rgba: Uint8Array}} row-major RGBA (opaque when the file has no alpha)
 * @throws {Error} for a file this decoder does not handle, naming what it found
 */
export function decodePng(bytes) {
  if (!SIGNATURE.every((b, i) => bytes[i] === b)) throw new Error('not a PNG file (bad signature)');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 8;
  let header = null;
  const idat = [];
  while (pos + 8 <= bytes.length) {
    const length = view.getUint32(pos);
    const type = String.fromCharCode(...bytes.subarray(pos + 4, pos + 8));
    const body = bytes.subarray(pos + 8, pos + 8 + length);
    if (type === 'IHDR') {
      header = {
        width: view.getUint32(pos + 8),
        height: view.getUint32(pos + 12),
        depth: body[8],
        colour: body[9],
        interlace: body[12],
      };
    } else if (type === 'IDAT') {
      idat.push(body);
    } else if (type === 'IEND') {
      break;
    }
    pos += 12 + length;
  }
  if (!header) throw new Error('PNG has no IHDR chunk');
  const {width, height, depth, colour, interlace} = header;
  const channels = CHANNELS[colour];
  if (depth !== 8 || channels === undefined || interlace !== 0) {
    throw new Error(`PNG with bit depth ${depth}, colour type ${colour}, interlace ${interlace} is not supported`);
  }
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  if (raw.length !== height * (stride + 1)) throw new Error('PNG image data has the wrong length');
  const pixels = new Uint8Array(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const out = y * stride;
    const prev = y > 0 ? out - stride : -1;
    for (let i = 0; i < stride; i++) {
      const a = i >= channels ? pixels[out + i - channels] : 0;
      const b = prev >= 0 ? pixels[prev + i] : 0;
      const c = prev >= 0 && i >= channels ? pixels[prev + i - channels] : 0;
      let predictor;
      if (filter === 0) predictor = 0;
      else if (filter === 1) predictor = a;
      else if (filter === 2) predictor = b;
      else if (filter === 3) predictor = (a + b) >> 1;
      else if (filter === 4) predictor = paeth(a, b, c);
      else throw new Error(`PNG row filter ${filter} is not valid`);
      pixels[out + i] = (line[i] + predictor) & 0xff;
    }
  }
  const rgba = new Uint8Array(width * height * 4);
  for (let p = 0; p < width * height; p++) {
    const s = p * channels;
    const gray = channels <= 2;
    rgba[4 * p] = pixels[s];
    rgba[4 * p + 1] = gray ? pixels[s] : pixels[s + 1];
    rgba[4 * p + 2] = gray ? pixels[s] : pixels[s + 2];
    rgba[4 * p + 3] = channels === 4 ? pixels[s + 3] : channels === 2 ? pixels[s + 1] : 255;
  }
  return {width, height, rgba};
}

function paeth(a, b, c) {
  const p = a + b - c;
  const pa = Math.abs(p - a);
  const pb = Math.abs(p - b);
  const pc = Math.abs(p - c);
  if (pa <= pb && pa <= pc) return a;
  return pb <= pc ? b : c;
}
