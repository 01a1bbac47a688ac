package com.melanomaexport.core

import java.util.Locale

/*
 * Which hardware runs the model: the app's setting (CPU / GPU / NPU), the order the app tries them in, the
 * sentence it shows when it had to fall back to CPU, the line that says what ran and how long it took, and the
 * bound GoldenReplayTest holds each accelerator's probability to. The app maps [Hardware] onto LiteRT's
 * `com.google.ai.edge.litert.Accelerator` (same names); everything that can be decided without a phone is here,
 * so that the JVM tests hold it.
 */

/** The hardware the app can ask LiteRT to compile the model for (LiteRT's Accelerator.CPU / GPU / NPU). */
enum class Hardware {
    CPU,
    GPU,
    NPU;

    /** The value the app stores for this choice in its settings. */
    val setting: String
        get() = name

    companion object {
        /**
         * The stored setting back as a choice; nothing stored, or a value this version does not know (a setting
         * written by another version of the app), is CPU, the accelerator every phone has.
         */
        fun fromSetting(value: String?): Hardware = values().firstOrNull { it.name == value } ?: CPU
    }
}

/**
 * What was asked for, what ran, and why they differ.
 *
 * [tried] lists every accelerator that was attempted, in order, the last being [ran]; [fallback] is the sentence
 * the screen shows when [ran] is not [requested] (null when the requested one runs).
 */
class AcceleratorChoice(
    val requested: Hardware,
    val ran: Hardware,
    val tried: List<Hardware>,
    val fallback: String?
)

/** The runtime built for the accelerator that [chooseAccelerator] settled on, with the account of the choice. */
class Chosen<T>(val value: T, val choice: AcceleratorChoice)

/** The accelerators to try for [requested], in order: it, then CPU (CPU alone when CPU is asked for). */
fun attemptOrder(requested: Hardware): List<Hardware> =
    if (requested == Hardware.CPU) listOf(Hardware.CPU) else listOf(requested, Hardware.CPU)

/**
 * Builds the runtime for [requested], falling back to CPU when that accelerator is missing or cannot run the
 * model.
 *
 * An accelerator other than CPU is skipped without trying it when [available] (what LiteRT's Environment reports
 * it has, null when that is unknown) does not hold it; [create] is called for each remaining accelerator of
 * [attemptOrder] until one returns. What [create] throws for GPU or NPU becomes the reason in the fallback
 * sentence, except a [ContractException]: that is about the model, not the accelerator, and CPU would refuse it
 * too, so it is thrown as it is. When CPU fails as well, its exception is thrown.
 */
fun <T> chooseAccelerator(requested: Hardware, available: Set<Hardware>?, create: (Hardware) -> T): Chosen<T> {
    val tried = ArrayList<Hardware>()
    var fallback: String? = null
    for (hardware in attemptOrder(requested)) {
        if (hardware != Hardware.CPU && available != null && hardware !in available) {
            fallback = unavailableSentence(hardware)
            continue
        }
        tried.add(hardware)
        if (hardware == Hardware.CPU) {
            // The last resort: what it throws is the error the screen shows.
            return Chosen(create(hardware), AcceleratorChoice(requested, hardware, tried, fallback))
        }
        try {
            return Chosen(create(hardware), AcceleratorChoice(requested, hardware, tried, null))
        } catch (e: ContractException) {
            throw e
        } catch (e: Exception) {
            fallback = failedSentence(hardware, e)
        }
    }
    throw IllegalStateException("attemptOrder always ends with CPU")
}

/** The fallback sentence when LiteRT has no [hardware] accelerator on this phone. */
fun unavailableSentence(hardware: Hardware): String {
    val reason = when (hardware) {
        // NPU runs need the phone maker's NPU runtime library, which LiteRT loads from the app: the app bundles none.
        Hardware.NPU -> "LiteRT found no NPU runtime for it"
        else -> "LiteRT found no $hardware accelerator"
    }
    return "$hardware is not available on this phone ($reason); ran on CPU instead."
}

/** The fallback sentence when compiling the model for [hardware] threw [error]. */
fun failedSentence(hardware: Hardware, error: Throwable): String =
    "$hardware could not run this model (${failureReason(error)}); ran on CPU instead."

/** The longest reason [failedSentence] quotes from an exception's message. */
const val REASON_CHARS = 160

/**
 * The reason inside the fallback sentence: LiteRT's message, on one line, without its final full stop, at most
 * [REASON_CHARS] characters; the exception's class when it has no message. The message LiteRT 2.x gives when an
 * accelerator takes only part of the graph (and CPU was not in the accelerator set) is put in plain words.
 */
fun failureReason(error: Throwable): String {
    val message = (error.message ?: "").trim()
    if (message.contains("Some ops are not accelerated")) return "it cannot run every operation of this model"
    val line = message.lineSequence().map { it.trim() }.firstOrNull { it.isNotEmpty() } ?: ""
    val reason = line.replace(Regex("\\s+"), " ").removeSuffix(".").trim()
    if (reason.isEmpty()) return error.javaClass.simpleName.ifEmpty { "an error without a message" }
    return if (reason.length <= REASON_CHARS) reason else reason.substring(0, REASON_CHARS - 1).trimEnd() + "…"
}

/**
 * What the result card says about the model call: "ran on GPU in 12.3 ms" (one decimal, a dot whatever the
 * phone's locale). For NPU, LiteRT compiles with CPU as well (CompiledModel.create adds CPU when NPU is the only
 * accelerator asked for, so that a partly compiled model still runs): the line says so.
 */
fun runLine(ran: Hardware, latencyMillis: Double): String {
    val where = if (ran == Hardware.NPU) "NPU (with CPU for any operation the NPU does not take)" else ran.name
    return "ran on $where in ${String.format(Locale.ROOT, "%.1f", latencyMillis)} ms"
}

/**
 * A quantized model on the phone's CPU against the same file in Python's LiteRT: the same graph, but the phone's
 * kernels (ARM) may accumulate in another order. Chosen, not measured (no phone here): ten times the fp32 bound;
 * a device run that needs more is worth a look before loosening it.
 */
const val QUANTIZED_PROBABILITY_BOUND = 1e-3

/**
 * A model run on GPU or NPU. LiteRT's GPU accelerator may compute in fp16 (the app leaves GpuOptions.precision at
 * its default, which allows it), and NPUs commonly do: fp16 keeps 11 significant bits, a unit roundoff of
 * u = 2^-11 ~ 4.9e-4, so a probability near 1 rounded to fp16 alone is off by up to 2.4e-4, more than the fp32
 * bound. Every layer rounds its activations again; over a network of ~60 layers the relative error of the logit
 * grows to about sqrt(60) u ~ 4e-3, ~0.02 on a logit of 5, and dp <= p (1 - p) d(logit) <= 0.25 x 0.02 = 5e-3.
 * The bound is twice that: 1e-2 (about 20 u). Chosen, not measured (no phone here); it holds for fp32 and
 * quantized models alike, each against its own reference.
 */
const val FP16_PROBABILITY_BOUND = 1e-2

/**
 * The largest |p - reference| GoldenReplayTest accepts for a model that ran on [ran]: on CPU, [fp32Bound]
 * (golden.json's `probability_max_abs_fp32`, 1e-4, against PyTorch) for an fp32 model and
 * [QUANTIZED_PROBABILITY_BOUND] (against the same file in Python's LiteRT) for a quantized one; on GPU or NPU,
 * [FP16_PROBABILITY_BOUND], or the CPU bound should that ever be the larger.
 */
fun probabilityBound(ran: Hardware, quantized: Boolean, fp32Bound: Double): Double {
    val cpu = if (quantized) QUANTIZED_PROBABILITY_BOUND else fp32Bound
    return if (ran == Hardware.CPU) cpu else Math.max(cpu, FP16_PROBABILITY_BOUND)
}
