package com.melanomaexport.core

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

/**
 * A valid spec JSON, as core/spec.py writes one, for the unit tests that need no Python output; [edit] changes
 * it before it is serialised.
 */
fun specText(size: Int = 8, layout: String = "NHWC", threshold: Double = 0.3, edit: (JsonObject) -> Unit = {}): String {
    val sites = listOf("head/neck", "upper extremity", "lower extremity", "torso", "palms/soles", "oral/genital")
    val features = StringBuilder()
    val names = listOf("age", "age_missing", "sex_male", "sex_female", "sex_missing") +
        sites.map { "site_$it" } + listOf("site_missing")
    names.forEachIndexed { i, n ->
        if (i > 0) features.append(", ")
        features.append("{\"name\": \"$n\", \"index\": $i, \"source\": \"x\", \"encoding\": \"e\"}")
    }
    val text = """
    {
      "schema": "melanoma-model-spec", "schema_version": 1, "name": "unit", "architecture": "test",
      "image": {"size": $size, "layout": "$layout", "dtype": "float32", "color": "RGB", "value_range": [0.0, 1.0],
                "resize": "stretch", "interpolation": "bilinear", "antialias": true, "resize_library": "PIL",
                "resize_library_version": "13.0.0", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
      "metadata": {
        "version": 1, "size": ${names.size}, "dtype": "float32", "features": [$features],
        "age": {"column": "age_approx", "unit": "years", "center": 50.0, "scale": 20.0, "valid_range": [0.0, 120.0]},
        "sex": {"column": "sex", "categories": ["male", "female"], "aliases": {"m": "male", "f": "female"}},
        "site": {"column": "site", "categories": [${sites.joinToString(", ") { "\"$it\"" }}],
                 "aliases": {"anterior torso": "torso", "head and neck": "head/neck", "oral genital": "oral/genital"}},
        "missing_tokens": ["", "nan", "na", "n/a", "none", "null", "unknown"], "case_insensitive": true
      },
      "outputs": {"names": ["logit", "probability"], "shape": "[N, 1]", "labels": ["benign", "melanoma"],
                  "positive_label": "melanoma", "temperature": 1.0, "threshold": $threshold, "threshold_rule": "test",
                  "thresholds": {}},
      "precision": {}, "provenance": {"intended_use": "Research use only."}
    }
    """
    val root = JsonParser.parseString(text).asJsonObject
    edit(root)
    return root.toString()
}

/** Random-looking but reproducible ARGB pixels (opaque unless [alpha]). */
fun noiseArgb(width: Int, height: Int, seed: Long, alpha: Boolean = false): IntArray {
    val random = java.util.Random(seed)
    return IntArray(width * height) {
        val a = if (alpha) random.nextInt(256) else 255
        (a shl 24) or (random.nextInt(1 shl 24))
    }
}
