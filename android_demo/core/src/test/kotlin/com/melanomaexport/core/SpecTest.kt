package com.melanomaexport.core

import com.google.gson.JsonObject
import com.google.gson.JsonParser
import com.google.gson.JsonPrimitive
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test
import java.io.File

/** Reading the spec from JSON and from the real export files (the .tflite flatbuffer, the .onnx protobuf). */
class SpecTest {
    @Test
    fun readsAValidSpec() {
        val spec = readSpec(specText(size = 12, layout = "NCHW", threshold = 0.25))
        assertEquals(12, spec.image.size)
        assertEquals("NCHW", spec.image.layout)
        assertEquals(12, spec.metaSize)
        assertEquals(0.25, spec.outputs.threshold, 0.0)
        assertEquals("benign", spec.outputs.negativeLabel)
        assertEquals("", spec.precision)
        assertEquals("Research use only.", spec.intendedUse)
    }

    private fun refusal(edit: (JsonObject) -> Unit): String? =
        expectContract { readSpec(specText(edit = edit)) }.message

    @Test
    fun refusesMalformedSpecsInOneSentence() {
        assertContains(expectContract { readSpec("{\"schema\": ") }.message, "not valid JSON")
        assertContains(expectContract { readSpec("{'schema': 'x'}") }.message, "not valid JSON")
        assertContains(expectContract { readSpec("[1, 2]") }.message, "not a model spec")
        assertContains(refusal { it.addProperty("schema", "other") }, "melanoma-model-spec")
        assertContains(refusal { it.addProperty("schema_version", 2) }, "version")
        assertContains(refusal { it.addProperty("colour", "red") }, "colour")
        assertContains(refusal { it.getAsJsonObject("image").remove("size") }, "image.size")
        assertContains(refusal { it.getAsJsonObject("image").addProperty("size", "big") }, "image.size")
        assertContains(refusal { it.getAsJsonObject("outputs").addProperty("positive_label", "x") }, "positive_label")
        assertContains(refusal { it.getAsJsonObject("metadata").getAsJsonArray("features").remove(0) }, "feature list")
        assertContains(refusal { it.remove("metadata") }, "metadata")
    }

    @Test
    fun refusesImageContractsItCannotHonour() {
        fun refused(field: String, value: Any): String? {
            val spec = readSpec(specText {
                val image = it.getAsJsonObject("image")
                when (value) {
                    is Boolean -> image.addProperty(field, value)
                    else -> image.addProperty(field, value.toString())
                }
            })
            return expectContract { checkContract(spec.image) }.message
        }
        assertContains(refused("layout", "NCWH"), "layout", "NCWH")
        assertContains(refused("interpolation", "bicubic"), "bicubic")
        assertContains(refused("resize", "crop"), "crop")
        assertContains(refused("antialias", false), "antialias")
        assertContains(refused("resize_library_version", "12.1.0"), "Pillow 12.1.0")
        checkContract(readSpec(specText()).image)
    }

    @Test
    fun refusesFilesThatAreNotModels() {
        val text = expectContract { specFromTflite("hello, not a model".toByteArray(), "x.tflite") }
        assertContains(text.message, "not a TFLite model")
        // A TFL3 identifier followed by offsets that point past the end.
        val bogus = byteArrayOf(0x7f, 0, 0, 0, 'T'.toByte(), 'F'.toByte(), 'L'.toByte(), '3'.toByte())
        val flat = expectContract { specFromTflite(bogus, "bogus.tflite") }
        assertContains(flat.message, "bogus.tflite", "not a valid TFLite model")
        val proto = expectContract { specFromOnnx(byteArrayOf(0x0a, 0x7f, 1), "bad.onnx") }
        assertContains(proto.message, "not a valid ONNX model")
    }

    @Test
    fun sidecarMismatchNamesTheField() {
        val spec = readSpec(specText(threshold = 0.3))
        checkAgainstSidecar(spec, specText(threshold = 0.30))
        val e = expectContract { checkAgainstSidecar(spec, specText(threshold = 0.31), "m.spec.json") }
        assertContains(e.message, "m.spec.json", "outputs.threshold")
        assertContains(expectContract { checkAgainstSidecar(spec, "{", "m.spec.json") }.message, "not valid JSON")
    }

    /** Every .tflite and .onnx of the export: the embedded spec equals its sidecar; the signature is named. */
    @Test
    fun realArtifactsCarryTheirSidecarSpec() {
        val dir = Inputs.exportDir()
        val artifacts = dir.listFiles { f -> f.name.endsWith(".tflite") || f.name.endsWith(".onnx") }!!.sorted()
        assertTrue("the export has .tflite and .onnx files", artifacts.any { it.name.endsWith(".tflite") })
        for (file in artifacts) {
            val bytes = file.readBytes()
            val tflite = file.name.endsWith(".tflite")
            val spec = if (tflite) specFromTflite(bytes, file.name) else specFromOnnx(bytes, file.name)
            val sidecar = File(file.path + ".spec.json")
            checkAgainstSidecar(spec, sidecar.readText(), sidecar.name)
            assertEquals(readSpec(sidecar.readText()).json, spec.json)
            if (file.name.endsWith(".tflite")) {
                assertEquals("${file.name} is NHWC", "NHWC", spec.image.layout)
                val signature = modelSignature(bytes, spec, file.name)
                assertEquals(setOf("image", "meta"), signature.inputs.toSet())
                assertTrue(signature.outputs.containsAll(listOf("logit", "probability")))
            } else {
                assertEquals("${file.name} is NCHW", "NCHW", spec.image.layout)
            }
            checkContract(spec.image)
        }
    }

    /** Python-made variants of the real .tflite: spec bytes stored by offset/size, and no spec at all. */
    @Test
    fun readsOffsetBuffersAndRefusesAModelWithoutSpec() {
        val dir = Inputs.casesDir()
        val variants = Inputs.manifest().getAsJsonObject("tflite")
        val offset = File(dir, variants.get("offset").asString)
        val spec = specFromTflite(offset.readBytes(), offset.name)
        checkAgainstSidecar(spec, File(dir, variants.get("sidecar").asString).readText())
        val without = File(dir, variants.get("no_spec").asString)
        val e = expectContract { specFromTflite(without.readBytes(), without.name) }
        assertContains(e.message, without.name, "carries no model spec")
        val truncated = offset.readBytes().copyOfRange(0, 4096)
        expectContract { specFromTflite(truncated, "truncated.tflite") }
        val wrong = readSpec(File(dir, variants.get("sidecar").asString).readText()).json
        wrong.add("name", JsonPrimitive("another_model"))
        assertContains(expectContract { checkAgainstSidecar(spec, wrong.toString(), "x.spec.json") }.message, "at name")
        assertTrue(JsonParser.parseString(wrong.toString()).isJsonObject)
    }
}
