package com.melanomaexport.core

import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertTrue
import org.junit.Test

/** The path from form + pixels to the decision, with a stand-in model that records what it was fed. */
class ClassifierTest {
    private class Recorder(override val spec: ModelSpec, private val probability: Float) : Classifier {
        val images = ArrayList<FloatArray>()
        val metas = ArrayList<FloatArray>()

        override fun predict(image: FloatArray, meta: FloatArray): Prediction {
            images.add(image)
            metas.add(meta)
            return Prediction(0f, probability)
        }

        override fun close() {}
    }

    private val spec = readSpec(specText(size = 4, layout = "NHWC", threshold = 0.375))

    @Test
    fun feedsTheSpecsTensorsAndDecidesAtTheThreshold() {
        val model = Recorder(spec, 0.375f)
        val pixels = ArgbImage(2, 2, intArrayOf(0xffff0000.toInt(), 0xff00ff00.toInt(), 0xff0000ff.toInt(), -1))
        val result = assess(model, pixels, "70", "male", "torso")
        assertEquals(1, model.images.size)
        assertArrayEquals(imageTensor(spec, pixels.argb, 2, 2), model.images[0], 0f)
        assertEquals(4 * 4 * 3, model.images[0].size)
        assertArrayEquals(spec.encoder().encode(70.0, "male", "torso"), model.metas[0], 0f)
        // Exactly at the threshold counts as positive, as in Python (p >= threshold).
        assertTrue(result.decision.positive)
        assertEquals("melanoma", result.decision.label)
        assertEquals(0.375, result.threshold, 0.0)
        assertTrue(result.latencyMillis >= 0.0)
        val below = assess(Recorder(spec, 0.37499997f), pixels, null, null, null)
        assertFalse(below.decision.positive)
        assertEquals("benign", below.decision.label)
    }

    @Test
    fun aBadFormValueStopsBeforeTheModelRuns() {
        val model = Recorder(spec, 0.9f)
        val pixels = ArgbImage(1, 1, intArrayOf(-1))
        assertContains(expectContract { assess(model, pixels, "-3", null, null) }.message, "age -3")
        val site = expectContract { assess(model, pixels, null, null, "elbow") }
        assertContains(site.message, "unknown body site \"elbow\"")
        assertEquals(0, model.images.size)
    }

    @Test(expected = IllegalStateException::class)
    fun aProbabilityOutsideZeroOneIsAnError() {
        assess(Recorder(spec, 1.5f), ArgbImage(1, 1, intArrayOf(-1)), null, null, null)
    }

    @Test(expected = IllegalStateException::class)
    fun aNaNProbabilityIsAnErrorNotBenign() {
        assess(Recorder(spec, Float.NaN), ArgbImage(1, 1, intArrayOf(-1)), null, null, null)
    }

    /** decide answers only for a number from 0 to 1: NaN or infinity is never "below the threshold". */
    @Test
    fun decideRefusesAProbabilityThatIsNotANumberFromZeroToOne() {
        val bad = listOf(Double.NaN, Double.POSITIVE_INFINITY, Double.NEGATIVE_INFINITY, -0.001, 1.001, 37.0)
        for (p in bad) {
            assertContains(expectContract { decide(spec, p) }.message, "probability $p", "not a number from 0 to 1")
            assertContains(expectContract { spec.outputs.decide(p) }.message, "no decision")
        }
        assertEquals("benign", decide(spec, 0.0).label)
        assertFalse(decide(spec, 0.0).positive)
        assertEquals("melanoma", decide(spec, 1.0).label)
        assertTrue(decide(spec, 1.0).positive)
    }
}
