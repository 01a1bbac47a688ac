package com.melanomaexport.core

import com.google.gson.JsonElement
import com.google.gson.JsonNull
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
        val spec = readSpec(specText(size = 24, layout = "NCHW", threshold = 0.25))
        assertEquals(24, spec.image.size)
        assertEquals("NCHW", spec.image.layout)
        assertEquals(12, spec.metaSize)
        assertEquals(listOf(AGE, SEX, SITE), spec.metadata.fields)
        assertEquals(spec.encoder().entries, spec.metadata.entries)
        assertEquals(listOf("number", "one_hot", "one_hot"), spec.contract.features.map { it.kind })
        assertEquals("pillow", spec.contract.image.resize)
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
        assertEquals(
            "the model spec has spec schema version 1; this app reads version 2 (the spec that carries the model's " +
                "contract): re-export the model with python -m export.all",
            refusal { it.addProperty("schema_version", 1) }
        )
        assertContains(refusal { it.addProperty("schema_version", 3) }, "version 3")
        assertContains(refusal { it.addProperty("colour", "red") }, "colour")
        assertContains(refusal { it.getAsJsonObject("image").remove("size") }, "image.size")
        assertContains(refusal { it.getAsJsonObject("image").addProperty("size", "big") }, "image.size")
        assertContains(refusal { it.getAsJsonObject("outputs").addProperty("positive_label", "x") }, "positive_label")
        val entries = refusal { it.getAsJsonObject("metadata").getAsJsonArray("entries").remove(0) }
        assertContains(entries, "metadata layout")
        assertContains(refusal { it.remove("metadata") }, "metadata")
        assertContains(refusal { it.remove("contract") }, "has no contract")
    }

    /** [specText] with the field at the dotted [path] removed, or set to [value]. */
    private fun edited(path: String, value: JsonElement? = null): String = specText { root ->
        val keys = path.split('.')
        var parent = root
        for (key in keys.dropLast(1)) parent = parent.getAsJsonObject(key)
        if (value == null) parent.remove(keys.last()) else parent.add(keys.last(), value)
    }

    /** Every field that shapes an input or the decision is required: a spec without it is refused, naming it. */
    @Test
    fun refusesASpecWithoutAFieldItNeedsNamingTheField() {
        for (path in REQUIRED_FIELDS) {
            for (absent in listOf<JsonElement?>(null, JsonNull.INSTANCE)) {
                val e = expectContract { readSpec(edited(path, absent), "the model spec") }
                assertContains(e.message, "the model spec has no $path:", "python -m export.all")
            }
        }
    }

    @Test
    fun refusesThresholdsAndTemperaturesThatCannotBeUsed() {
        for (bad in listOf(-0.01, 1.01, 50.0, -1.0)) {
            assertContains(refusal { it.getAsJsonObject("outputs").addProperty("threshold", bad) }, "outputs.threshold")
        }
        assertContains(
            refusal { it.getAsJsonObject("outputs").addProperty("threshold", "0.5") },
            "no valid outputs.threshold (a number expected)"
        )
        // JSON has no NaN or infinity: the strict parser refuses them before any reader sees them.
        for (bad in listOf(Double.NaN, Double.POSITIVE_INFINITY)) {
            assertContains(refusal { it.getAsJsonObject("outputs").addProperty("threshold", bad) }, "not valid JSON")
        }
        assertEquals(0.0, readSpec(specText(threshold = 0.0)).outputs.threshold, 0.0)
        assertEquals(1.0, readSpec(specText(threshold = 1.0)).outputs.threshold, 0.0)
        for (bad in listOf(0.0, -2.0)) {
            assertContains(
                refusal { it.getAsJsonObject("outputs").addProperty("temperature", bad) },
                "outputs.temperature", "positive"
            )
        }
        val names = JsonParser.parseString("[\"logit\"]")
        assertContains(refusal { it.getAsJsonObject("outputs").add("names", names) }, "outputs.names", "probability")
    }

    @Test
    fun refusesMetadataLayoutsItCannotHonour() {
        assertContains(refusal { it.getAsJsonObject("metadata").addProperty("dtype", "float16") }, "float16 meta input")
        assertContains(
            refusal { it.getAsJsonObject("metadata").addProperty("case_insensitive", false) },
            "case-sensitive"
        )
        assertContains(
            refusal { it.getAsJsonObject("metadata").addProperty("size", "12") },
            "no valid metadata.size (a number expected)"
        )
        assertContains(refusal { it.getAsJsonObject("metadata").addProperty("order", "C") }, "metadata.order")
    }

    /** The `meta` layout, image size and resize rule must be what the contract derives (core/spec.py). */
    @Test
    fun refusesALayoutItsContractDoesNotDerive() {
        fun metadata(root: JsonObject) = root.getAsJsonObject("metadata")
        assertEquals(
            "the model spec's metadata layout does not match its contract's features (metadata.size is 13, the " +
                "features make 12 entries): re-export the model",
            refusal { metadata(it).addProperty("size", 13) }
        )
        assertEquals(
            "the model spec's metadata layout does not match its contract's features (metadata.entries[2] is " +
                "\"sex_female\", the features make \"sex_male\"): re-export the model",
            refusal {
                val entries = metadata(it).getAsJsonArray("entries")
                val male = entries[2]
                entries.set(2, entries[3])
                entries.set(3, male)
            }
        )
        val fields = refusal { metadata(it).getAsJsonArray("fields").remove(2) }
        assertContains(fields, "metadata.fields is [age_approx, sex]")
        val size = refusal { it.getAsJsonObject("image").addProperty("size", 9) }
        assertContains(size, "image.size 9 differs from the contract's 16")
        assertContains(
            refusal { it.getAsJsonObject("image").addProperty("antialias", false) },
            "image.antialias false contradicts the contract's resize rule \"pillow\""
        )
    }

    /** The contract is read by core/contract.py's rules: a broken one is refused with Python's sentence. */
    @Test
    fun refusesABrokenContractWithPythonsSentence() {
        fun contract(root: JsonObject) = root.getAsJsonObject("contract")
        assertEquals(
            "the model spec's contract is not valid: the contract has no 'output': add it (see the contract schema " +
                "in the README)",
            refusal { contract(it).remove("output") }
        )
        assertEquals(
            "the model spec's contract is not valid: metadata[1].missing is 'row': use \"column\" or \"zeros\"",
            refusal { contract(it).getAsJsonArray("metadata")[1].asJsonObject.addProperty("missing", "row") }
        )
        assertEquals(
            "the model spec's contract is not valid: the contract's \"contract\" is 'melanoma-contract/2': this " +
                "toolkit reads \"melanoma-contract/1\"",
            refusal { contract(it).addProperty("contract", "melanoma-contract/2") }
        )
        // Every field the contract schema requires is required: none is filled in.
        for (key in listOf("contract", "name", "image", "metadata", "output", "decision")) {
            assertContains(refusal { contract(it).remove(key) }, "the contract has no '$key'")
        }
        for (key in listOf("size", "channels", "mean", "std", "resize")) {
            assertContains(refusal { contract(it).getAsJsonObject("image").remove(key) }, "image has no '$key'")
        }
        val sex = mapOf(
            "name" to "metadata[1].name must be a non-empty string, got None",
            "kind" to "metadata[1].kind is None: use one of number, one_hot, code",
            "field" to "metadata[1] has no 'field'", "missing" to "metadata[1] has no 'missing'",
            "categories" to "metadata[1] has no 'categories'"
        )
        for ((key, words) in sex) {
            assertContains(refusal { contract(it).getAsJsonArray("metadata")[1].asJsonObject.remove(key) }, words)
        }
        // The optional fields take the defaults the schema documents: a number without transform / offset / scale /
        // missing_flag / range is (x - 0) / 1, with no flag entry.
        val plain = readSpec(specText(contract = isicContract().also { c ->
            val age = c.getAsJsonArray("metadata")[0].asJsonObject
            for (key in listOf("offset", "scale", "missing_flag", "range", "bands", "unit", "description")) {
                age.remove(key)
            }
        }))
        assertEquals(listOf("age", "sex_male"), plain.metadata.entries.take(2))
        assertEquals(130.5f, plain.encoder().encode(isicCase("130.5", null, null))[0], 0f)
    }

    /** Fields that are only shown may be absent; they then read as absent (""), never as an invented value. */
    @Test
    fun fieldsThatAreOnlyShownMayBeAbsent() {
        val spec = readSpec(specText {
            it.getAsJsonObject("outputs").remove("threshold_rule")
            it.remove("provenance")
            it.remove("precision")
        })
        assertEquals("", spec.outputs.thresholdRule)
        assertEquals("", spec.intendedUse)
        assertEquals("", spec.precision)
        assertEquals("test", readSpec(specText()).outputs.thresholdRule)
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
        assertContains(refused("resize_library_version", "12.1.0"), "Pillow 12.1.0")
        assertContains(refused("resize_library_version", ""), "records no image.resize_library_version")
        assertContains(refused("color", "BGR"), "color", "BGR")
        assertContains(refused("resize_library", "cv2"), "resize_library", "cv2")
        assertContains(refused("dtype", "uint8"), "dtype", "uint8")
        val range = readSpec(edited("image.value_range", JsonParser.parseString("[0, 255]")))
        assertContains(expectContract { checkContract(range.image) }.message, "value_range")
        checkContract(readSpec(specText()).image)
    }

    /** A contract with `"resize": "bilinear"`: antialias false, resized by cv2's INTER_LINEAR (no Pillow version). */
    @Test
    fun readsABilinearSpec() {
        val spec = readSpec(specText(contract = isicContract(resize = "bilinear")))
        assertEquals(false, spec.image.antialias)
        checkContract(spec.image)
        val pil = readSpec(specText(contract = isicContract(resize = "bilinear")) {
            it.getAsJsonObject("image").addProperty("resize_library", "PIL")
        })
        assertContains(expectContract { checkContract(pil.image) }.message, "resize_library \"PIL\"")
        val foreign = readSpec(specText(size = 16, contract = JsonParser.parseString(FOREIGN_CONTRACT).asJsonObject))
        assertEquals(8, foreign.metaSize)
        assertEquals("BGR", foreign.contract.image.channels)
        assertEquals("softmax", foreign.contract.outputKind)
        checkContract(foreign.image)
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

/** Every field a reader needs to build the inputs or make the decision (the same list as web_demo's tests). */
val REQUIRED_FIELDS = listOf(
    "image", "image.size", "image.layout", "image.dtype", "image.color", "image.value_range", "image.resize",
    "image.interpolation", "image.antialias", "image.resize_library", "image.resize_library_version",
    "metadata", "metadata.size", "metadata.dtype", "metadata.entries", "metadata.fields", "metadata.missing_tokens",
    "metadata.case_insensitive", "contract",
    "outputs", "outputs.names", "outputs.labels", "outputs.positive_label", "outputs.threshold", "outputs.temperature"
)
