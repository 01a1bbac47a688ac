/**
 * One Metadata entry out of a `.tflite` file, read by hand (no flatbuffers library): the port of the
 * Kotlin port's Tflite.kt `tfliteMetadata`, used by readSpec (spec.js) for the `melanoma_spec` entry.
 *
 * A TFLite file is a flatbuffer with the file identifier "TFL3" at bytes 4-8. Its Model table has a
 * `metadata` vector of (name, buffer index) entries and a `buffers` vector; an entry's Buffer holds its
 * bytes inline (`data`) or, in a large model, as `offset` / `size` into the file after the flatbuffer.
 * Field numbers follow LiteRT's schema.fbs.
 */

/**
 * Whether `bytes` is a TFLite flatbuffer (file identifier "TFL3" at bytes 4-8).
 * @param {Uint8Array} bytes
 * @returns {boolean}
 */
export function isTflite(bytes) {
  return bytes.length >= 8 && bytes[4] === 0x54 && bytes[5] === 0x46 && bytes[6] === 0x4c && bytes[7] === 0x33;
}

// Field indices in the TFLite schema (tensorflow/lite/schema/schema.fbs).
const MODEL_BUFFERS = 4;
const MODEL_METADATA = 6;
const METADATA_NAME = 0;
const METADATA_BUFFER = 1;
const BUFFER_DATA = 0;
const BUFFER_OFFSET = 1;
const BUFFER_SIZE = 2;

/**
 * The bytes of the Metadata entry called `name`, or null when the model has no such entry.
 *
 * @param {Uint8Array} bytes the whole .tflite file
 * @param {string} name the entry's name ("melanoma_spec")
 * @returns {Uint8Array|null} a view into `bytes`
 * @throws {Error} when an offset points outside the file (readSpec turns it into a ContractError)
 */
export function tfliteMetadata(bytes, name) {
  const fb = new FlatReader(bytes);
  const model = fb.deref(0);
  const metadataField = fb.field(model, MODEL_METADATA);
  if (metadataField < 0) return null;
  const [entries, count] = fb.vector(metadataField);
  for (let i = 0; i < count; i++) {
    const entry = fb.deref(entries + 4 * i);
    const nameField = fb.field(entry, METADATA_NAME);
    if (nameField < 0 || fb.string(nameField) !== name) continue;
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
