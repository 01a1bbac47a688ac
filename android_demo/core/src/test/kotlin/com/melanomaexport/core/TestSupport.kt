package com.melanomaexport.core

import com.google.gson.JsonArray
import com.google.gson.JsonElement
import com.google.gson.JsonObject
import com.google.gson.JsonParser
import org.junit.Assert.assertEquals
import org.junit.Assert.fail
import org.junit.Assume.assumeTrue
import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder

/*
 * Inputs the Python side writes for the cross-checks (tests/test_android_core.py passes their folders as system
 * properties). Without them (e.g. `./gradlew :core:test` alone) the cross-checks are skipped, the unit tests
 * still run; pytest treats a skipped test as a failure because it always passes the folders.
 */
object Inputs {
    /** Folder with manifest.json: PIL resize / decode outputs and Python metadata encodings. */
    val cases: File? = System.getProperty("melanoma.cases")?.let { File(it) }

    /** An export folder made by `python -m export.all` (golden.json, the golden/ PNGs, .tflite / .onnx + sidecars). */
    val export: File? = System.getProperty("melanoma.export")?.let { File(it) }

    /** Where tests write what pytest reports (golden max |d| per case). */
    val report: File? = System.getProperty("melanoma.report")?.let { File(it) }

    fun casesDir(): File {
        assumeTrue("set -Dmelanoma.cases (tests/test_android_core.py does)", cases != null)
        return cases!!
    }

    fun exportDir(): File {
        assumeTrue("set -Dmelanoma.export (tests/test_android_core.py does)", export != null)
        return export!!
    }

    fun manifest(): JsonObject = readJson(File(casesDir(), "manifest.json")).asJsonObject
}

fun readJson(file: File): JsonElement = JsonParser.parseString(file.readText(Charsets.UTF_8))

/** Little-endian float32 values (numpy's `<f4` tobytes). */
fun floatsLe(bytes: ByteArray): FloatArray {
    val buffer = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer()
    val out = FloatArray(buffer.remaining())
    buffer.get(out)
    return out
}

/** Runs [block] and returns the ContractException it must throw, failing the test otherwise. */
fun expectContract(block: () -> Unit): ContractException {
    try {
        block()
    } catch (e: ContractException) {
        val message = e.message ?: ""
        if (message.trim() == "" || '\n' in message) fail("a ContractException must carry one line, got \"$message\"")
        return e
    }
    fail("expected a ContractException")
    throw AssertionError()
}

fun assertContains(message: String?, vararg parts: String) {
    for (part in parts) {
        if (message == null || !message.contains(part)) fail("expected \"$part\" in the message \"$message\"")
    }
}

/** The largest |a[i] - b[i]| (a and b of equal length). */
fun maxAbsDiff(a: FloatArray, b: FloatArray): Double {
    assertEquals("tensor lengths", a.size, b.size)
    var worst = 0.0
    for (i in a.indices) worst = Math.max(worst, Math.abs(a[i].toDouble() - b[i].toDouble()))
    return worst
}

/** The age / sex / site contract `python -m train` models carry (core/contract.py: from_metadata_encoder). */
fun isicContract(size: Int = 16, resize: String = "pillow"): JsonObject = JsonParser.parseString(
    """
    {
      "contract": "melanoma-contract/1", "name": "unit",
      "image": {"size": $size, "channels": "RGB", "mean": null, "std": null, "resize": "$resize"},
      "metadata": [
        {"name": "age", "kind": "number", "field": "age_approx", "offset": 50.0, "scale": 20.0, "missing": 0,
         "missing_flag": true, "range": [0.0, 120.0], "bands": [40, 60], "unit": "years",
         "description": "age in years"},
        {"name": "sex", "kind": "one_hot", "field": "sex", "categories": ["male", "female"],
         "aliases": {"m": "male", "f": "female"}, "missing": "column", "description": "sex"},
        {"name": "site", "kind": "one_hot", "field": "anatom_site_general_challenge",
         "categories": ["head/neck", "upper extremity", "lower extremity", "torso", "palms/soles", "oral/genital"],
         "aliases": {"anterior torso": "torso", "posterior torso": "torso", "lateral torso": "torso",
                     "head neck": "head/neck", "head and neck": "head/neck", "palms soles": "palms/soles",
                     "oral genital": "oral/genital"},
         "missing": "column", "description": "body site of the lesion"}
      ],
      "output": {"kind": "sigmoid"}, "decision": {"rule": "sensitivity", "target": 0.95}
    }
    """
).asJsonObject

/** The case fields of [isicContract]. */
const val AGE = "age_approx"
const val SEX = "sex"
const val SITE = "anatom_site_general_challenge"

/** A case of [isicContract]'s three fields (null = missing). */
fun isicCase(age: Any?, sex: Any?, site: Any?): Map<String, Any?> = mapOf(AGE to age, SEX to sex, SITE to site)

/**
 * A valid spec JSON of schema 2, as core/spec.py writes one, for the unit tests that need no Python output: the
 * model's [contract] (by default [isicContract]) with the `metadata` layout it derives (derived here by :core
 * itself; the cross-checks hold that derivation to Python's); [edit] changes it before it is serialised.
 */
fun specText(
    size: Int = 16,
    layout: String = "NHWC",
    threshold: Double = 0.3,
    contract: JsonObject = isicContract(size),
    edit: (JsonObject) -> Unit = {}
): String {
    val parsed = parseContract(contract)
    val tokens = listOf("", "nan", "na", "n/a", "none", "null", "unknown")
    val encoder = parsed.encoder(tokens)
    val metadata = JsonObject()
    metadata.addProperty("size", encoder.size)
    metadata.addProperty("dtype", "float32")
    metadata.add("entries", strings(encoder.entries))
    metadata.add("fields", strings(encoder.fields))
    metadata.add("missing_tokens", strings(tokens))
    metadata.addProperty("case_insensitive", true)
    val pillow = parsed.image.resize == "pillow"
    val library = if (pillow) "PIL" else BILINEAR_RESIZE
    val version = if (pillow) "13.0.0" else ""
    val text = """
    {
      "schema": "melanoma-model-spec", "schema_version": 2, "name": "unit", "architecture": "test",
      "image": {"size": $size, "layout": "$layout", "dtype": "float32", "color": "RGB", "value_range": [0.0, 1.0],
                "resize": "stretch", "interpolation": "bilinear", "antialias": $pillow, "resize_library": "$library",
                "resize_library_version": "$version", "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]},
      "outputs": {"names": ["logit", "probability"], "shape": "[N, 1]", "labels": ["benign", "melanoma"],
                  "positive_label": "melanoma", "temperature": 1.0, "threshold": $threshold, "threshold_rule": "test",
                  "thresholds": {}},
      "precision": {}, "provenance": {"intended_use": "Research use only."}
    }
    """
    val root = JsonParser.parseString(text).asJsonObject
    root.add("metadata", metadata)
    root.add("contract", contract)
    edit(root)
    return root.toString()
}

private fun strings(values: List<String>): JsonArray {
    val array = JsonArray()
    for (v in values) array.add(v)
    return array
}

/** Random-looking but reproducible ARGB pixels (opaque unless [alpha]). */
fun noiseArgb(width: Int, height: Int, seed: Long, alpha: Boolean = false): IntArray {
    val random = java.util.Random(seed)
    return IntArray(width * height) {
        val a = if (alpha) random.nextInt(256) else 255
        (a shl 24) or (random.nextInt(1 shl 24))
    }
}
