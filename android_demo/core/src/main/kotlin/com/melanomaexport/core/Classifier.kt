package com.melanomaexport.core

import java.io.Closeable

/** One model call's outputs (`logit` and `probability`, float32 [1, 1] each). */
class Prediction(val logit: Float, val probability: Float)

/**
 * A runtime that executes the exported model: `:app` implements it with LiteRT, tests with plain Kotlin.
 * [predict] takes the `image` tensor in the spec's layout and the `meta` vector, batch of one.
 */
interface Classifier : Closeable {
    /** The spec read from the model file itself. */
    val spec: ModelSpec

    /** Runs the model once; may block, so call it off the UI thread. */
    fun predict(image: FloatArray, meta: FloatArray): Prediction
}

/**
 * The decision for [probability] at the spec's threshold (core/spec.py: OutputContract.decide).
 *
 * @throws ContractException when [probability] is NaN, infinite or outside [0, 1] (never "below the threshold").
 */
fun decide(spec: ModelSpec, probability: Double): Decision = spec.outputs.decide(probability)

/** What the app shows after Assess. */
class Assessment(
    val prediction: Prediction,
    val decision: Decision,
    val threshold: Double,
    /** Wall time of the model call alone (preprocessing excluded), in milliseconds. */
    val latencyMillis: Double,
    val meta: FloatArray
)

/**
 * Decoded pixels + the case (field -> raw value, as the form collected it; an absent field is missing) ->
 * [Assessment] through [classifier], with everything taken from its spec.
 *
 * @throws ContractException when a value is not accepted by the spec's contract (Python's sentence).
 * @throws IllegalStateException when the model returns a probability that is NaN or outside [0, 1] (a broken
 *     runtime or artifact, not something the user can fix); no decision is made from it.
 */
fun assess(classifier: Classifier, image: ArgbImage, case: Map<String, Any?>): Assessment {
    val spec = classifier.spec
    // Metadata first: a typo in the form is reported before any pixel work.
    val meta = spec.encoder().encode(case)
    val tensor = imageTensor(spec, image.argb, image.width, image.height)
    val started = System.nanoTime()
    val prediction = classifier.predict(tensor, meta)
    val latency = (System.nanoTime() - started) / 1e6
    val probability = prediction.probability.toDouble()
    if (probability.isNaN() || probability < 0.0 || probability > 1.0) {
        throw IllegalStateException("the model returned probability $probability, outside [0, 1]")
    }
    return Assessment(prediction, decide(spec, probability), spec.outputs.threshold, latency, meta)
}
