package com.melanomaexport.core

import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertNull
import org.junit.Assert.assertSame
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test

/** The accelerator setting, the CPU fallback and its sentence, the run line and the parity bounds. */
class AcceleratorTest {
    /** A stand-in for compiling the model: records each attempt, fails for the accelerators in [failing]. */
    private class Compiler(private val failing: Map<Hardware, Exception> = emptyMap()) {
        val attempts = ArrayList<Hardware>()

        fun create(hardware: Hardware): String {
            attempts.add(hardware)
            failing[hardware]?.let { throw it }
            return "model on $hardware"
        }
    }

    private val all = setOf(Hardware.CPU, Hardware.GPU, Hardware.NPU)

    @Test
    fun theSettingRoundTripsAndAnythingElseIsCpu() {
        for (hardware in Hardware.values()) assertEquals(hardware, Hardware.fromSetting(hardware.setting))
        assertEquals(listOf("CPU", "GPU", "NPU"), Hardware.values().map { it.setting })
        for (stored in listOf(null, "", "gpu", "TPU", " GPU", "DSP")) assertEquals(Hardware.CPU, Hardware.fromSetting(stored))
    }

    @Test
    fun eachAcceleratorIsTriedBeforeCpu() {
        assertEquals(listOf(Hardware.CPU), attemptOrder(Hardware.CPU))
        assertEquals(listOf(Hardware.GPU, Hardware.CPU), attemptOrder(Hardware.GPU))
        assertEquals(listOf(Hardware.NPU, Hardware.CPU), attemptOrder(Hardware.NPU))
    }

    @Test
    fun theRequestedAcceleratorRunsWhenItCompiles() {
        for (hardware in Hardware.values()) {
            val compiler = Compiler()
            val chosen = chooseAccelerator(hardware, all) { compiler.create(it) }
            assertEquals("model on $hardware", chosen.value)
            assertEquals(hardware, chosen.choice.requested)
            assertEquals(hardware, chosen.choice.ran)
            assertEquals(listOf(hardware), chosen.choice.tried)
            assertNull(chosen.choice.fallback)
            assertEquals(listOf(hardware), compiler.attempts)
        }
        // Unknown availability (null): the accelerator is tried.
        val compiler = Compiler()
        assertEquals(Hardware.GPU, chooseAccelerator(Hardware.GPU, null) { compiler.create(it) }.choice.ran)
    }

    @Test
    fun aMissingAcceleratorIsNotTriedAndCpuRunsWithOneSentence() {
        val compiler = Compiler()
        val chosen = chooseAccelerator(Hardware.GPU, setOf(Hardware.CPU)) { compiler.create(it) }
        assertEquals(listOf(Hardware.CPU), compiler.attempts)
        assertEquals("model on CPU", chosen.value)
        assertEquals(Hardware.GPU, chosen.choice.requested)
        assertEquals(Hardware.CPU, chosen.choice.ran)
        assertEquals(listOf(Hardware.CPU), chosen.choice.tried)
        assertEquals(
            "GPU is not available on this phone (LiteRT found no GPU accelerator); ran on CPU instead.",
            chosen.choice.fallback
        )
        val npu = chooseAccelerator(Hardware.NPU, setOf(Hardware.CPU, Hardware.GPU)) { Compiler().create(it) }
        assertEquals(Hardware.CPU, npu.choice.ran)
        assertEquals(
            "NPU is not available on this phone (LiteRT found no NPU runtime for it); ran on CPU instead.",
            npu.choice.fallback
        )
        oneSentence(npu.choice.fallback)
    }

    @Test
    fun anAcceleratorThatFailsToCompileFallsBackToCpuWithLiteRtsReason() {
        // LiteRT 2.1.6 (litert/runtime/compiled_model.cc) when the GPU takes only part of the graph.
        val partial = Exception(
            "Some ops are not accelerated. Add kLiteRtHwAcceleratorCpu to the compilation accelerator set to " +
                "allow using the CPU to run those."
        )
        val compiler = Compiler(mapOf(Hardware.GPU to partial))
        val chosen = chooseAccelerator(Hardware.GPU, all) { compiler.create(it) }
        assertEquals(listOf(Hardware.GPU, Hardware.CPU), compiler.attempts)
        assertEquals(listOf(Hardware.GPU, Hardware.CPU), chosen.choice.tried)
        assertEquals(Hardware.CPU, chosen.choice.ran)
        assertEquals(
            "GPU could not run this model (it cannot run every operation of this model); ran on CPU instead.",
            chosen.choice.fallback
        )
        val other = Compiler(mapOf(Hardware.GPU to IllegalStateException("Failed to modify graph with delegate.")))
        val fallback = chooseAccelerator(Hardware.GPU, null) { other.create(it) }.choice.fallback
        assertEquals("GPU could not run this model (Failed to modify graph with delegate); ran on CPU instead.", fallback)
        oneSentence(fallback)
    }

    @Test
    fun theReasonIsOneShortLine() {
        assertEquals("first line", failureReason(Exception("  first line.\n  second line\n")))
        assertEquals("a b c", failureReason(Exception("a \t b   c.")))
        assertEquals("IllegalStateException", failureReason(IllegalStateException()))
        assertEquals("RuntimeException", failureReason(RuntimeException(" \n ")))
        val long = failureReason(Exception("x".repeat(1000)))
        assertEquals(REASON_CHARS, long.length)
        assertTrue(long.endsWith("…"))
        oneSentence(failedSentence(Hardware.GPU, Exception("line one.\nline two.")))
    }

    @Test
    fun aContractErrorIsNotAnAcceleratorProblem() {
        val refusal = ContractException("model.tflite takes image of shape [1, 3, 8, 8] but its spec describes ...")
        val compiler = Compiler(mapOf(Hardware.GPU to refusal))
        try {
            chooseAccelerator(Hardware.GPU, all) { compiler.create(it) }
            fail("the ContractException must reach the caller")
        } catch (e: ContractException) {
            assertSame(refusal, e)
        }
        assertEquals("CPU is not tried for a model the contract refuses", listOf(Hardware.GPU), compiler.attempts)
    }

    @Test
    fun whenCpuFailsTooItsErrorIsThrown() {
        val cpuError = IllegalStateException("Failed to open asset.")
        val compiler = Compiler(mapOf(Hardware.GPU to RuntimeException("no GPU"), Hardware.CPU to cpuError))
        try {
            chooseAccelerator(Hardware.GPU, all) { compiler.create(it) }
            fail("CPU's error must reach the caller")
        } catch (e: IllegalStateException) {
            assertSame(cpuError, e)
        }
        assertEquals(listOf(Hardware.GPU, Hardware.CPU), compiler.attempts)
        val alone = Compiler(mapOf(Hardware.CPU to cpuError))
        try {
            chooseAccelerator(Hardware.CPU, all) { alone.create(it) }
            fail("CPU's error must reach the caller")
        } catch (e: IllegalStateException) {
            assertSame(cpuError, e)
        }
        assertEquals(listOf(Hardware.CPU), alone.attempts)
    }

    @Test
    fun theRunLineNamesTheAcceleratorAndTheLatency() {
        assertEquals("ran on GPU in 12.3 ms", runLine(Hardware.GPU, 12.34))
        assertEquals("ran on CPU in 0.0 ms", runLine(Hardware.CPU, 0.04))
        assertEquals("ran on CPU in 1234.6 ms", runLine(Hardware.CPU, 1234.56))
        assertEquals("ran on NPU (with CPU for any operation the NPU does not take) in 3.0 ms", runLine(Hardware.NPU, 3.0))
        // A decimal dot in every locale (the screen's other numbers use Locale.ROOT too).
        val before = java.util.Locale.getDefault()
        try {
            java.util.Locale.setDefault(java.util.Locale.GERMANY)
            assertEquals("ran on GPU in 12.3 ms", runLine(Hardware.GPU, 12.34))
        } finally {
            java.util.Locale.setDefault(before)
        }
    }

    @Test
    fun eachAcceleratorHasItsParityBound() {
        val fp32 = 1e-4 // golden.json's probability_max_abs_fp32
        assertEquals(fp32, probabilityBound(Hardware.CPU, false, fp32), 0.0)
        assertEquals(QUANTIZED_PROBABILITY_BOUND, probabilityBound(Hardware.CPU, true, fp32), 0.0)
        for (hardware in listOf(Hardware.GPU, Hardware.NPU)) {
            assertEquals(FP16_PROBABILITY_BOUND, probabilityBound(hardware, false, fp32), 0.0)
            assertEquals(FP16_PROBABILITY_BOUND, probabilityBound(hardware, true, fp32), 0.0)
        }
        // Looser than CPU's, and above what fp16 rounding of the probability alone costs (half of 2^-11).
        assertTrue(FP16_PROBABILITY_BOUND > QUANTIZED_PROBABILITY_BOUND)
        assertTrue(FP16_PROBABILITY_BOUND > Math.pow(2.0, -12.0) * 10)
        // Never tighter than the CPU bound it loosens.
        assertEquals(0.5, probabilityBound(Hardware.GPU, false, 0.5), 0.0)
        assertFalse(probabilityBound(Hardware.GPU, false, fp32) < probabilityBound(Hardware.CPU, false, fp32))
    }

    private fun oneSentence(text: String?) {
        if (text == null) fail("expected a sentence")
        val sentence = text!!
        assertFalse("one line: \"$sentence\"", sentence.contains('\n'))
        assertTrue("ends with a full stop: \"$sentence\"", sentence.endsWith("."))
        assertEquals("one full stop: \"$sentence\"", 1, sentence.count { it == '.' })
        assertTrue("starts with the accelerator: \"$sentence\"", Hardware.values().any { sentence.startsWith(it.name) })
    }
}
