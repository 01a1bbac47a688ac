package com.melanomaexport.core

import com.google.gson.GsonBuilder
import com.google.gson.JsonArray
import com.google.gson.JsonObject
import com.melanomaexport.core.cli.decodeImageFile
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test
import java.io.File
import java.util.Base64

/**
 * Replays every golden case of a real export (golden.json + the golden/ PNGs, written by `python -m export.all` in
 * the same test session) through the :core pipeline with the spec read from the real .tflite: decoded pixels,
 * `image` tensor (bit-identical), `meta` vector (within 1e-6; the case is golden.json's field -> raw value map) and
 * decision against Python's. What only a phone can add is the LiteRT call
 * (app/src/androidTest: GoldenReplayTest).
 */
class GoldenTest {
    @Test
    fun everyGoldenCaseMatchesPython() {
        val dir = Inputs.exportDir()
        val golden = readJson(File(dir, "golden.json")).asJsonObject
        // The fp32 .tflite (every artifact's spec has the same image and metadata contracts).
        val models = dir.listFiles { f -> f.name.endsWith(".tflite") }!!.sortedBy { it.name }
        assertTrue("the export has a .tflite", models.isNotEmpty())
        val specs = models.map { it to specFromTflite(it.readBytes(), it.name) }
        val (tflite, spec) = specs.firstOrNull { it.second.precision == "" } ?: specs.first()
        val bound = golden.getAsJsonObject("tolerance").get("image_max_abs").asDouble
        val preprocessing = golden.getAsJsonObject("preprocessing")
        val rule = preprocessing.get("rule").asString
        assertEquals("the golden resize rule is the spec's", rule, spec.contract.image.resize)
        if (spec.image.antialias) {
            val pillow = preprocessing.get("pillow_version").asString
            assertEquals("the spec's Pillow is the golden one", pillow, spec.image.resizeLibraryVersion)
        }
        val cases = golden.getAsJsonArray("cases")
        assertTrue("golden.json has cases", cases.size() > 0)
        val s = spec.image.size
        val report = JsonArray()
        val failures = ArrayList<String>()
        var worst = 0.0
        for (element in cases) {
            val case = element.asJsonObject
            val name = case.get("image_name").asString
            val decoded = decodeImageFile(File(dir, case.get("png").asString))
            val rgb = toRgb(decoded.argb, decoded.width, decoded.height)
            val expectedPixels = Base64.getDecoder().decode(case.getAsJsonObject("decoded_rgb").get("base64").asString)
            if (!expectedPixels.contentEquals(rgb.pixels)) {
                failures.add("$name: the PNG decodes to other pixels than Python's")
            }
            val tensor = imageTensor(spec, decoded.argb, decoded.width, decoded.height)
            val chw = floatsLe(Base64.getDecoder().decode(case.getAsJsonObject("image").get("base64").asString))
            assertEquals("$name image size", 3 * s * s, chw.size)
            // golden.json stores CHW; the .tflite's spec is NHWC: compare element by element through the transpose.
            var maxD = 0.0
            var differ = 0
            for (y in 0 until s) for (x in 0 until s) for (c in 0 until 3) {
                val ours = tensor[(y * s + x) * 3 + c].toDouble()
                val theirs = chw[c * s * s + y * s + x].toDouble()
                val d = Math.abs(ours - theirs)
                if (d != 0.0) differ += 1
                maxD = Math.max(maxD, d)
            }
            worst = Math.max(worst, maxD)
            // One 8-bit level is v/255 vs (v+1)/255 in float32, which can exceed 1/255 by a float32 rounding.
            if (maxD > bound + 1e-6) failures.add("$name: image tensor off by $maxD > $bound")
            // The case as the contract's features read it (field -> raw value), encoded by the spec's contract.
            val meta = spec.encoder().encode(caseFromJson(case.getAsJsonObject("metadata")))
            val expectedMeta = case.getAsJsonArray("meta").map { it.asFloat }.toFloatArray()
            val sameSize = meta.size == expectedMeta.size
            val metaDiff = if (sameSize) maxAbsDiff(meta, expectedMeta) else Double.POSITIVE_INFINITY
            if (metaDiff > 1e-6) failures.add("$name: meta ${meta.toList()} != ${expectedMeta.toList()}")
            val expected = case.getAsJsonObject("expected")
            val decision = decide(spec, expected.get("probability").asDouble)
            val label = expected.get("label").asString
            if (decision.label != label || decision.positive != expected.get("positive").asBoolean) {
                failures.add("$name: decision ${decision.label} != $label")
            }
            val entry = JsonObject()
            entry.addProperty("case", name)
            entry.addProperty("size", "${decoded.width}x${decoded.height}")
            entry.addProperty("max_abs_diff", maxD)
            entry.addProperty("values_differing", differ)
            entry.addProperty("meta_equal", expectedMeta.contentEquals(meta))
            entry.addProperty("meta_max_abs_diff", metaDiff)
            report.add(entry)
        }
        val summary = JsonObject()
        summary.addProperty("model", tflite.name)
        summary.addProperty("cases", cases.size())
        summary.addProperty("max_abs_diff", worst)
        summary.addProperty("bound", bound)
        summary.add("per_case", report)
        val text = GsonBuilder().setPrettyPrinting().create().toJson(summary)
        Inputs.report?.let { File(it, "golden.json").writeText(text) }
        if (failures.isNotEmpty()) fail(failures.joinToString("; "))
    }
}
