package com.melanomaexport.demo

import android.util.Base64
import android.util.Log
import androidx.test.ext.junit.runners.AndroidJUnit4
import androidx.test.platform.app.InstrumentationRegistry
import com.google.gson.JsonObject
import com.google.gson.JsonParser
import com.melanomaexport.core.Hardware
import com.melanomaexport.core.caseFromJson
import com.melanomaexport.core.decide
import com.melanomaexport.core.imageTensor
import com.melanomaexport.core.probabilityBound
import org.junit.Assert.assertEquals
import org.junit.Assert.assertNotNull
import org.junit.Assert.assertTrue
import org.junit.Assume.assumeTrue
import org.junit.Test
import org.junit.runner.RunWith
import java.nio.ByteBuffer
import java.nio.ByteOrder

/**
 * Replays golden.json (copied into the assets with the model by `make android-assets`) on a device, through the
 * app's own decoder (BitmapFactory + :core's EXIF handling), :core's preprocessing and the real LiteRT
 * CompiledModel:
 * - decoded PNG pixels equal Python's, and the `image` tensor is within the golden bound (target: bit-identical);
 * - `meta`, encoded by the spec's contract from the case golden.json records (field -> raw value), is within 1e-6
 *   of Python's;
 * - on CPU, an fp32 model's probability is within golden.json's bound (1e-4) of PyTorch's `expected`; a quantized
 *   model is held to its own Python LiteRT result (`artifacts`), within :core's QUANTIZED_PROBABILITY_BOUND;
 * - on GPU and on NPU, when the phone has them (else the test is skipped, with the app's fallback sentence as the
 *   reason), the same cases against the same references within :core's FP16_PROBABILITY_BOUND (1e-2: these
 *   accelerators may compute in fp16; see Accelerator.kt for the reasoning).
 *
 * And, when the assets pin a key ([TRUSTED_KEY_ASSET], copy-assets.py --trust KEY.pub), that the bundled model
 * verifies on the device as the app checks it (model.sig with the device's java.security, then every asset).
 *
 * Run: ./gradlew :app:connectedDebugAndroidTest (results per case in logcat, tag GoldenReplay).
 */
@RunWith(AndroidJUnit4::class)
class GoldenReplayTest {
    private val context = InstrumentationRegistry.getInstrumentation().targetContext

    @Test
    fun everyGoldenCaseReproducesPython() {
        LiteRtClassifier.fromAssets(context, Hardware.CPU).use { classifier ->
            assertEquals("CPU always runs", Hardware.CPU, classifier.accelerator.ran)
            replay(classifier)
        }
    }

    @Test
    fun everyGoldenCaseReproducesPythonOnTheGpu() = replayOn(Hardware.GPU)

    @Test
    fun everyGoldenCaseReproducesPythonOnTheNpu() = replayOn(Hardware.NPU)

    /** The golden cases through the model compiled for [hardware]; skipped when the app had to fall back to CPU. */
    private fun replayOn(hardware: Hardware) {
        LiteRtClassifier.fromAssets(context, hardware).use { classifier ->
            val choice = classifier.accelerator
            Log.i(TAG, "$hardware requested: ran on ${choice.ran}" + (choice.fallback?.let { " ($it)" } ?: ""))
            assumeTrue(choice.fallback ?: "$hardware did not run", choice.ran == hardware)
            replay(classifier)
        }
    }

    /** Every golden case through [classifier], held to the bound of the accelerator it ran on. */
    private fun replay(classifier: LiteRtClassifier) {
        val golden = JsonParser.parseString(readTextAsset(context, GOLDEN_ASSET)).asJsonObject
        val manifest = JsonParser.parseString(readTextAsset(context, MANIFEST_ASSET)).asJsonObject
        val artifact = manifest.get("artifact").asString
        val tolerance = golden.getAsJsonObject("tolerance")
        val imageBound = tolerance.get("image_max_abs").asDouble + 1e-6 // one 8-bit level, float32-rounded
        val cases = golden.getAsJsonArray("cases")
        assertTrue("golden.json has cases", cases.size() > 0)
        val failures = ArrayList<String>()
        val ran = classifier.accelerator.ran
        val spec = classifier.spec
        val fp32 = spec.precision.isEmpty()
        val bound = probabilityBound(ran, !fp32, tolerance.get("probability_max_abs_fp32").asDouble)
        val s = spec.image.size
        for (element in cases) {
            val case = element.asJsonObject
            val name = case.get("image_name").asString
            val png = readAsset(context, case.get("png").asString)
            val image = Photos.decodeBytes(png, name)
            val pixels = base64(case.getAsJsonObject("decoded_rgb"))
            var pixelsDiffer = 0
            for (i in 0 until image.width * image.height) {
                val p = image.argb[i]
                val rgb = intArrayOf((p shr 16) and 0xff, (p shr 8) and 0xff, p and 0xff)
                for (c in 0 until 3) if (rgb[c] != (pixels[i * 3 + c].toInt() and 0xff)) pixelsDiffer += 1
            }
            if (pixelsDiffer > 0) failures.add("$name: $pixelsDiffer decoded values differ from Python's")
            val tensor = imageTensor(spec, image.argb, image.width, image.height)
            val chw = floats(base64(case.getAsJsonObject("image")))
            var maxD = 0.0
            for (y in 0 until s) for (x in 0 until s) for (c in 0 until 3) {
                val nhwc = spec.image.layout == "NHWC"
                val ours = if (nhwc) tensor[(y * s + x) * 3 + c] else tensor[c * s * s + y * s + x]
                maxD = maxOf(maxD, Math.abs(ours.toDouble() - chw[c * s * s + y * s + x].toDouble()))
            }
            if (maxD > imageBound) failures.add("$name: image tensor off by $maxD")
            val meta = spec.encoder().encode(caseFromJson(case.getAsJsonObject("metadata")))
            val expectedMeta = case.getAsJsonArray("meta").map { it.asFloat }.toFloatArray()
            val metaClose = meta.size == expectedMeta.size &&
                meta.indices.all { Math.abs(meta[it].toDouble() - expectedMeta[it].toDouble()) <= 1e-6 }
            if (!metaClose) failures.add("$name: meta differs from Python's")
            val got = classifier.predict(tensor, meta).probability.toDouble()
            val own = case.getAsJsonObject("artifacts").getAsJsonObject(artifact)
            if (!fp32 && own == null) {
                failures.add("$name: golden.json has no result of $artifact in Python (re-run export.all)")
                continue
            }
            val reference = if (fp32) {
                case.getAsJsonObject("expected").get("probability").asDouble
            } else {
                own.get("probability").asDouble
            }
            val dp = Math.abs(got - reference)
            Log.i(TAG, "$ran $name: image max |d| $maxD, p $got vs $reference (|dp| $dp, bound $bound)")
            if (dp > bound) failures.add("$ran $name: probability $got vs $reference, |dp| $dp > $bound")
            val expected = case.getAsJsonObject("expected")
            if (fp32 && Math.abs(reference - spec.outputs.threshold) > bound) {
                assertEquals("$ran $name decision", expected.get("label").asString, decide(spec, got).label)
            }
        }
        assertTrue(failures.joinToString("; "), failures.isEmpty())
    }

    @Test
    fun theBundledModelVerifiesWhenAKeyIsPinned() {
        val pinned = context.assets.list("")?.contains(TRUSTED_KEY_ASSET) == true
        assumeTrue("the assets pin no key (copy-assets.py --trust KEY.pub adds $TRUSTED_KEY_ASSET)", pinned)
        val statement = verifyModelAssets(context)
        assertNotNull("a pinned key must make verifyModelAssets verify", statement)
        val manifest = JsonParser.parseString(readTextAsset(context, MANIFEST_ASSET)).asJsonObject
        val artifact = manifest.get("artifact").asString
        assertTrue("the signature lists $artifact", statement!!.resources.containsKey(artifact))
        Log.i(TAG, "$SIGNATURE_ASSET verified: ${statement.resources.size} files signed, key ${statement.keyHint}")
    }

    // android.util.Base64: java.util.Base64 needs API 26 and the app supports 24.
    private fun base64(field: JsonObject): ByteArray = Base64.decode(field.get("base64").asString, Base64.DEFAULT)

    private fun floats(bytes: ByteArray): FloatArray {
        val buffer = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer()
        return FloatArray(buffer.remaining()).also { buffer.get(it) }
    }

    companion object {
        private const val TAG = "GoldenReplay"
    }
}
