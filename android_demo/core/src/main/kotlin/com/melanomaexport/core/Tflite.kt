package com.melanomaexport.core

/*
 * Reads what an app needs from a .tflite file without a flatbuffers library: the spec export writes as a Model
 * `metadata` entry named "melanoma_spec" (export/tflite_format.py: embed_spec), and the signatures' input and
 * output names. Field numbers follow LiteRT's schema.fbs (Model, Buffer, Metadata, SignatureDef, TensorMap).
 */

/** One signature of a .tflite model: its key and the names of its inputs and outputs. */
class TfliteSignature(val key: String, val inputs: List<String>, val outputs: List<String>)

/** The flatbuffer walk: little-endian scalars, offsets checked against the file before every read. */
private class FlatBuffer(val bytes: ByteArray, val source: String) {
    fun fail(why: String): Nothing =
        throw ContractException("$source is not a valid TFLite model ($why): export it again with python -m export.all")

    private fun need(at: Long, size: Int) {
        if (at < 0 || at + size > bytes.size) fail("an offset points outside the file")
    }

    fun u8(at: Long): Int {
        need(at, 1)
        return bytes[at.toInt()].toInt() and 0xff
    }

    fun u16(at: Long): Int = u8(at) or (u8(at + 1) shl 8)

    fun u32(at: Long): Long = u16(at).toLong() or (u16(at + 2).toLong() shl 16)

    fun i32(at: Long): Long = u32(at).toInt().toLong()

    fun u64(at: Long): Long {
        val value = u32(at) or (u32(at + 4) shl 32)
        if (value < 0) fail("a 64-bit offset is too large")
        return value
    }

    /** The position of field [id] of the table at [table], -1 when the field is absent. */
    fun field(table: Long, id: Int): Long {
        val vtable = table - i32(table)
        val vtableSize = u16(vtable)
        val slot = 4 + 2 * id
        if (slot + 2 > vtableSize) return -1
        val offset = u16(vtable + slot)
        return if (offset == 0) -1 else table + offset
    }

    /** The table an offset field points to. */
    fun indirect(at: Long): Long = at + u32(at)

    fun table(table: Long, id: Int): Long? {
        val at = field(table, id)
        return if (at < 0) null else indirect(at)
    }

    fun uint(table: Long, id: Int, default: Long): Long {
        val at = field(table, id)
        return if (at < 0) default else u32(at)
    }

    fun ulong(table: Long, id: Int): Long {
        val at = field(table, id)
        return if (at < 0) 0 else u64(at)
    }

    /** (start of elements, count) of the vector field [id], null when absent. */
    fun vector(table: Long, id: Int): Pair<Long, Long>? {
        val at = field(table, id)
        if (at < 0) return null
        val vec = indirect(at)
        return Pair(vec + 4, u32(vec))
    }

    fun tables(table: Long, id: Int): List<Long> {
        val (start, count) = vector(table, id) ?: return emptyList()
        if (count > bytes.size / 4) fail("a vector is longer than the file")
        return (0 until count).map { indirect(start + 4 * it) }
    }

    fun string(table: Long, id: Int): String? {
        val (start, length) = vector(table, id) ?: return null
        need(start, length.toInt())
        return String(bytes, start.toInt(), length.toInt(), Charsets.UTF_8)
    }
}

private fun root(bytes: ByteArray, source: String): Pair<FlatBuffer, Long> {
    val fb = FlatBuffer(bytes, source)
    if (bytes.size < 8 || String(bytes, 4, 4, Charsets.ISO_8859_1) != "TFL3") {
        throw ContractException("$source is not a TFLite model (no \"TFL3\" identifier): give the .tflite export")
    }
    return Pair(fb, fb.indirect(0))
}

// Field ids (declaration order in schema.fbs).
private const val MODEL_BUFFERS = 4
private const val MODEL_METADATA = 6
private const val MODEL_SIGNATURE_DEFS = 7
private const val BUFFER_DATA = 0
private const val BUFFER_OFFSET = 1
private const val BUFFER_SIZE = 2
private const val METADATA_NAME = 0
private const val METADATA_BUFFER = 1
private const val SIGNATURE_INPUTS = 0
private const val SIGNATURE_OUTPUTS = 1
private const val SIGNATURE_KEY = 2
private const val TENSOR_MAP_NAME = 0

/**
 * The bytes of the Metadata entry [name] of a .tflite model (export/tflite_format.py: read_embedded), null when
 * there is no such entry. The Buffer holds them inline (`data`) or, in a model over 2 GB, as `offset` / `size`
 * from the start of the file.
 *
 * @throws ContractException when the bytes are not a TFLite flatbuffer.
 */
fun tfliteMetadata(model: ByteArray, name: String, source: String = "the model file"): ByteArray? {
    val (fb, root) = root(model, source)
    for (entry in fb.tables(root, MODEL_METADATA)) {
        if (fb.string(entry, METADATA_NAME) != name) continue
        val index = fb.uint(entry, METADATA_BUFFER, 0)
        val buffers = fb.tables(root, MODEL_BUFFERS)
        if (index >= buffers.size) fb.fail("metadata \"$name\" points to buffer $index of ${buffers.size}")
        val buffer = buffers[index.toInt()]
        val offset = fb.ulong(buffer, BUFFER_OFFSET)
        val size = fb.ulong(buffer, BUFFER_SIZE)
        if (offset > 1) { // schema.fbs: offset/size are only valid when offset > 1
            if (offset + size > model.size) fb.fail("metadata \"$name\" lies past the end of the file")
            return model.copyOfRange(offset.toInt(), (offset + size).toInt())
        }
        val (start, length) = fb.vector(buffer, BUFFER_DATA) ?: return ByteArray(0)
        if (start + length > model.size) fb.fail("metadata \"$name\" lies past the end of the file")
        return model.copyOfRange(start.toInt(), (start + length).toInt())
    }
    return null
}

/**
 * The ModelSpec embedded in a .tflite model.
 *
 * @throws ContractException when the file is not a TFLite model, carries no spec, or its spec is invalid.
 */
fun specFromTflite(model: ByteArray, source: String = "the model file"): ModelSpec {
    val bytes = tfliteMetadata(model, SPEC_KEY, source)
    if (bytes == null || bytes.isEmpty()) {
        throw ContractException(
            "$source carries no model spec (no \"$SPEC_KEY\" metadata): re-export it with python -m export.all"
        )
    }
    return readSpec(String(bytes, Charsets.UTF_8), "the spec embedded in $source")
}

/** The signatures of a .tflite model (key, input names, output names), in file order. */
fun tfliteSignatures(model: ByteArray, source: String = "the model file"): List<TfliteSignature> {
    val (fb, root) = root(model, source)
    return fb.tables(root, MODEL_SIGNATURE_DEFS).map { sig ->
        TfliteSignature(
            key = fb.string(sig, SIGNATURE_KEY) ?: "",
            inputs = fb.tables(sig, SIGNATURE_INPUTS).map { fb.string(it, TENSOR_MAP_NAME) ?: "" },
            outputs = fb.tables(sig, SIGNATURE_OUTPUTS).map { fb.string(it, TENSOR_MAP_NAME) ?: "" }
        )
    }
}

/**
 * The signature an app feeds: the one whose inputs are exactly `image` and `meta` and whose outputs include
 * the spec's output names.
 *
 * @throws ContractException when the model has no such signature.
 */
fun modelSignature(model: ByteArray, spec: ModelSpec, source: String = "the model file"): TfliteSignature {
    val signatures = tfliteSignatures(model, source)
    val match = signatures.firstOrNull { sig ->
        sig.inputs.toSet() == setOf("image", "meta") && sig.outputs.containsAll(spec.outputs.names)
    }
    if (match != null) return match
    val found = signatures.joinToString("; ") { "${it.key}: ${it.inputs} -> ${it.outputs}" }.ifEmpty { "none" }
    throw ContractException(
        "$source has no signature with inputs image, meta and outputs ${spec.outputs.names.joinToString(", ")} " +
            "(found $found): export it with python -m export.all"
    )
}
