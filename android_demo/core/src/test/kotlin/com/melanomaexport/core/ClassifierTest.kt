package com.melanomaexport.core

import com.google.gson.JsonParser
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

    private val spec = readSpec(specText(size = 16, layout = "NHWC", threshold = 0.375))

    @Test
    fun feedsTheSpecsTensorsAndDecidesAtTheThreshold() {
        val model = Recorder(spec, 0.375f)
        val pixels = ArgbImage(2, 2, intArrayOf(0xffff0000.toInt(), 0xff00ff00.toInt(), 0xff0000ff.toInt(), -1))
        val result = assess(model, pixels, isicCase("70", "male", "torso"))
        assertEquals(1, model.images.size)
        assertArrayEquals(imageTensor(spec, pixels.argb, 2, 2), model.images[0], 0f)
        assertEquals(16 * 16 * 3, model.images[0].size)
        assertArrayEquals(spec.encoder().encode(isicCase(70.0, "male", "torso")), model.metas[0], 0f)
        // Exactly at the threshold counts as positive, as in Python (p >= threshold).
        assertTrue(result.decision.positive)
        assertEquals("melanoma", result.decision.label)
        assertEquals(0.375, result.threshold, 0.0)
        assertTrue(result.latencyMillis >= 0.0)
        val below = assess(Recorder(spec, 0.37499997f), pixels, emptyMap())
        assertFalse(below.decision.positive)
        assertEquals("benign", below.decision.label)
    }

    @Test
    fun aBadFormValueStopsBeforeTheModelRuns() {
        val model = Recorder(spec, 0.9f)
        val pixels = ArgbImage(1, 1, intArrayOf(-1))
        assertContains(expectContract { assess(model, pixels, isicCase("-3", null, null)) }.message, "age -3")
        val site = expectContract { assess(model, pixels, isicCase(null, null, "elbow")) }
        assertContains(site.message, "unknown site \"elbow\"")
        assertEquals(0, model.images.size)
    }

    @Test(expected = IllegalStateException::class)
    fun aProbabilityOutsideZeroOneIsAnError() {
        assess(Recorder(spec, 1.5f), ArgbImage(1, 1, intArrayOf(-1)), emptyMap())
    }

    @Test(expected = IllegalStateException::class)
    fun aNaNProbabilityIsAnErrorNotBenign() {
        assess(Recorder(spec, Float.NaN), ArgbImage(1, 1, intArrayOf(-1)), emptyMap())
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

    /** The app's form comes from the contract: a number field per number feature, a select per one-hot / code. */
    @Test
    fun theFormIsGeneratedFromTheContract() {
        val inputs = formInputs(spec)
        assertEquals(listOf(AGE, SEX, SITE), inputs.map { it.field })
        val age = inputs[0] as NumberInput
        assertEquals("age in years", age.label)
        assertEquals("years", age.unit)
        assertEquals("0-120 years; empty = missing", age.hint)
        val sex = inputs[1] as ChoiceInput
        assertEquals(listOf("male", "female", null), sex.options)
        assertEquals("missing", sex.display(null))
        assertEquals(6, (inputs[2] as ChoiceInput).choices.size)
        val model = readSpec(specText(size = 16, contract = JsonParser.parseString(FOREIGN_CONTRACT).asJsonObject))
        val foreign = formInputs(model)
        assertEquals(listOf("n_lesions", "uv_dose", "fitzpatrick", "family_history"), foreign.map { it.field })
        assertEquals("number of naevi", foreign[0].label)
        assertEquals("empty = missing", (foreign[1] as NumberInput).hint)
        assertEquals("dose", foreign[1].label) // no description: the feature's name
        assertEquals(listOf("i", "ii", "iii", "pale", null), (foreign[2] as ChoiceInput).options)
        assertEquals(listOf("no", "yes", "y", null), (foreign[3] as ChoiceInput).options)
        // Every option of every select, and an empty number field, encodes.
        for (input in foreign) {
            if (input !is ChoiceInput) continue
            for (option in input.options) model.encoder().encode(mapOf(input.field to option, "uv_dose" to "1"))
        }
    }

    /** A field two features read gets one input, shaped by the first of them. */
    @Test
    fun aFieldReadTwiceGetsOneInput() {
        val contract = isicContract()
        val band = JsonParser.parseString(
            "{\"name\": \"band\", \"kind\": \"code\", \"field\": \"age_approx\", " +
                "\"codes\": {\"40\": 0, \"60\": 1}, \"missing\": -1}"
        )
        contract.getAsJsonArray("metadata").add(band)
        val twice = readSpec(specText(contract = contract))
        assertEquals(listOf(AGE, SEX, SITE), twice.metadata.fields)
        assertEquals(listOf(AGE, SEX, SITE), formInputs(twice).map { it.field })
        assertTrue(formInputs(twice)[0] is NumberInput)
        val meta = twice.encoder().encode(isicCase("60", null, null))
        assertEquals(13, meta.size)
        assertEquals(1f, meta[12], 0f)
    }
}
