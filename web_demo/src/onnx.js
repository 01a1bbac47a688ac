/**
 * One `metadata_props` entry out of an `.onnx` file, read by hand (no protobuf library): the port of the
 * Kotlin port's Onnx.kt `onnxMetadata`, used by readSpec (spec.js) for the `melanoma_spec` entry.
 *
 * An ONNX file is a ModelProto in protobuf wire format: field 7 is its graph, field 14 `metadata_props`
 * holds StringStringEntryProto messages {key = 1, value = 2}.
 */

const ONNX_MODEL_GRAPH = 7;
const ONNX_MODEL_METADATA_PROPS = 14;
const ONNX_ENTRY_KEY = 1;
const ONNX_ENTRY_VALUE = 2;

/**
 * The value bytes of the metadata_props entry `key` (the last one, when the key repeats), or null when
 * the model has none.
 *
 * @param {Uint8Array} bytes the whole .onnx file
 * @param {string} key the entry's key ("melanoma_spec")
 * @returns {Uint8Array|null} a view into `bytes` (empty for an entry without a value)
 * @throws {Error} when the bytes are not a protobuf message with an ONNX graph (readSpec turns it into a
 *     ContractError)
 */
export function onnxMetadata(bytes, key) {
  if (bytes.length === 0) throw new Error('the file is empty');
  const decoder = new TextDecoder('utf-8');
  let sawGraph = false;
  let found = null;
  for (const [number, wire, start, end] of new ProtoReader(bytes).fields()) {
    if (number === ONNX_MODEL_GRAPH && wire === 2) sawGraph = true;
    if (number !== ONNX_MODEL_METADATA_PROPS || wire !== 2) continue;
    let entryKey = null;
    let value = null;
    for (const [n, w, s, e] of new ProtoReader(bytes, start, end).fields()) {
      if (w !== 2) continue;
      if (n === ONNX_ENTRY_KEY) entryKey = decoder.decode(bytes.subarray(s, e));
      if (n === ONNX_ENTRY_VALUE) value = bytes.subarray(s, e);
    }
    if (entryKey === key) found = value ?? new Uint8Array(0);
  }
  if (!sawGraph) throw new Error('it has no ONNX graph');
  return found;
}

/** A protobuf wire-format reader (varints as Numbers: exact up to 2^53, far beyond any file size here). */
class ProtoReader {
  constructor(bytes, start = 0, end = bytes.length) {
    this.bytes = bytes;
    this.pos = start;
    this.end = end;
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
}
