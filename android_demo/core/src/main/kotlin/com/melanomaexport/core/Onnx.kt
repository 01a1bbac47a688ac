package com.melanomaexport.core

/*
 * Reads the spec that export writes into an .onnx file (ModelProto field 14 `metadata_props`, entries
 * StringStringEntryProto {key = 1, value = 2}) with a minimal protobuf walk, so that `preprocess --spec` can
 * also reproduce what the ONNX runtimes are fed (NCHW).
 */

private class Protobuf(val bytes: ByteArray, val source: String) {
    fun fail(): Nothing =
        throw ContractException("$source is not a valid ONNX model (truncated or damaged): export it again")

    fun varint(at: IntArray): Long {
        var result = 0L
        var shift = 0
        while (true) {
            if (at[0] >= bytes.size || shift > 63) fail()
            val b = bytes[at[0]++].toInt() and 0xff
            result = result or ((b and 0x7f).toLong() shl shift)
            if (b and 0x80 == 0) return result
            shift += 7
        }
    }

    /** Calls [visit](field, wire type, start, end) for each field in [start, end); end is -1 for non-length fields. */
    fun fields(start: Int, end: Int, visit: (Int, Int, Int, Int) -> Unit) {
        val at = intArrayOf(start)
        while (at[0] < end) {
            val tag = varint(at)
            val field = (tag ushr 3).toInt()
            when ((tag and 7).toInt()) {
                0 -> varint(at)
                1 -> at[0] += 8
                2 -> {
                    val length = varint(at)
                    if (length < 0 || at[0] + length > end) fail()
                    visit(field, 2, at[0], at[0] + length.toInt())
                    at[0] += length.toInt()
                }
                5 -> at[0] += 4
                else -> fail()
            }
            if (at[0] > end) fail()
        }
    }
}

/** The value of metadata_props entry [key] of an .onnx model, null when absent. */
fun onnxMetadata(model: ByteArray, key: String, source: String = "the model file"): String? {
    val pb = Protobuf(model, source)
    var found: String? = null
    pb.fields(0, model.size) { field, _, start, end ->
        if (field == 14 && found == null) {
            var k: String? = null
            var v: String? = null
            pb.fields(start, end) { f, _, s, e ->
                if (f == 1) k = String(model, s, e - s, Charsets.UTF_8)
                if (f == 2) v = String(model, s, e - s, Charsets.UTF_8)
            }
            if (k == key) found = v ?: ""
        }
    }
    return found
}

/**
 * The ModelSpec embedded in an .onnx model.
 *
 * @throws ContractException when the file is not ONNX, carries no spec, or its spec is invalid.
 */
fun specFromOnnx(model: ByteArray, source: String = "the model file"): ModelSpec {
    val text = onnxMetadata(model, SPEC_KEY, source)
    if (text == null || text == "") {
        throw ContractException("$source carries no model spec (no \"$SPEC_KEY\" metadata_props entry): re-export it")
    }
    return readSpec(text, "the spec embedded in $source")
}
