package com.melanomaexport.core

import com.melanomaexport.core.cli.decodeImageFile
import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test
import java.io.File

/**
 * Both resize rules: the Pillow 13.0 antialiased bilinear port and the cv2 INTER_LINEAR port (core/images.py's
 * `resize_bilinear`): rules that need no Python, then Python's own outputs on odd sizes.
 */
class ResizeTest {
    @Test
    fun passOrderFollowsPillow13() {
        // Vertical first only when the height shrinks by more than twice as many pixels as the width.
        assertEquals("vertical", passOrder(100, 1000, 64, 64))
        assertEquals("horizontal", passOrder(1000, 100, 64, 64))
        assertEquals("horizontal", passOrder(110, 120, 100, 100)) // shrinks 20 in height = 2 * 10: not more
        assertEquals("vertical", passOrder(110, 121, 100, 100))
        assertEquals("horizontal", passOrder(10, 10, 64, 64)) // upscaling never goes vertical first
        assertEquals("vertical", passOrder(3, 500, 64, 64)) // the width grows (negative shrink): any height shrink wins
        assertEquals("vertical", passOrder(64, 500, 64, 64))
    }

    @Test
    fun tapsAreNormalisedNonNegativeAndInRange() {
        for ((inSize, outSize) in listOf(Pair(1, 64), Pair(500, 64), Pair(3, 64), Pair(4000, 7), Pair(65, 64))) {
            val taps = bilinearTaps(inSize, outSize)
            for (i in 0 until outSize) {
                val start = taps.start[i]
                val count = taps.count[i]
                val inside = start >= 0 && start + count <= inSize && count >= 1
                assertTrue("taps of $inSize->$outSize stay inside the input", inside)
                var sum = 0L
                for (x in 0 until count) {
                    val k = taps.weights[i * taps.ksize + x]
                    assertTrue("weights are never negative", k >= 0)
                    sum += k
                }
                // Rounding each weight to 2^-22 moves the sum by at most half a unit per tap.
                assertTrue("weights of $inSize->$outSize sum to 2^22 ($sum)", Math.abs(sum - (1L shl 22)) <= count)
            }
        }
    }

    @Test
    fun sameSizeIsACopyAndOnePixelStaysFlat() {
        val image = toRgb(noiseArgb(5, 4, 1), 5, 4)
        val same = resizeRgb(image, 5, 4)
        assertArrayEquals(image.pixels, same.pixels)
        assertTrue("a resize never returns its input array", same.pixels !== image.pixels)
        val dot = toRgb(intArrayOf(0xff102030.toInt()), 1, 1)
        val big = resizeRgb(dot, 9)
        for (i in 0 until 81) {
            assertEquals(0x10, big.get(i % 9, i / 9, 0))
            assertEquals(0x20, big.get(i % 9, i / 9, 1))
            assertEquals(0x30, big.get(i % 9, i / 9, 2))
        }
    }

    @Test
    fun floatLayoutsHoldTheSameValues() {
        val image = toRgb(noiseArgb(3, 2, 7), 3, 2)
        val nhwc = toFloat(image, "NHWC")
        val nchw = toFloat(image, "NCHW")
        for (y in 0 until 2) for (x in 0 until 3) for (c in 0 until 3) {
            val expected = image.get(x, y, c).toFloat() / 255f
            assertEquals(expected, nhwc[(y * 3 + x) * 3 + c], 0f)
            assertEquals(expected, nchw[c * 6 + y * 3 + x], 0f)
        }
        assertEquals(1f, toFloat(toRgb(intArrayOf(-1), 1, 1), "NHWC")[0], 0f)
        expectContract { toFloat(image, "CHWN") }
    }

    /** Every size pytest resized with PIL 13.0: RGB bytes equal, pass order equal, float tensor bit-identical. */
    @Test
    fun matchesPilOnOddSizes() {
        val dir = Inputs.casesDir()
        val cases = Inputs.manifest().getAsJsonArray("resize")
        assertTrue("pytest wrote resize cases", cases.size() > 0)
        val failures = ArrayList<String>()
        for (element in cases) {
            val case = element.asJsonObject
            val name = case.get("name").asString
            val decoded = decodeImageFile(File(dir, case.get("png").asString))
            val image = toRgb(decoded.argb, decoded.width, decoded.height)
            assertEquals("$name input width", case.get("in_w").asInt, image.width)
            assertEquals("$name input height", case.get("in_h").asInt, image.height)
            val outW = case.get("out_w").asInt
            val outH = case.get("out_h").asInt
            val order = passOrder(image.width, image.height, outW, outH)
            assertEquals("$name pass order", case.get("order").asString, order)
            val resized = resizeRgb(image, outW, outH)
            val expected = File(dir, case.get("rgb").asString).readBytes()
            var differ = 0
            var worst = 0
            for (i in expected.indices) {
                val d = Math.abs((expected[i].toInt() and 0xff) - (resized.pixels[i].toInt() and 0xff))
                if (d != 0) differ += 1
                worst = Math.max(worst, d)
            }
            if (differ > 0) {
                failures.add("$name: $differ of ${expected.size} values differ from PIL (max $worst levels)")
            }
            val floats = case.get("float")
            if (floats != null && !floats.isJsonNull) {
                val layout = case.get("layout").asString
                val tensor = toFloat(resized, layout)
                val reference = floatsLe(File(dir, floats.asString).readBytes())
                val d = maxAbsDiff(tensor, reference)
                if (d != 0.0) failures.add("$name: $layout float tensor differs from numpy by up to $d")
            }
        }
        if (failures.isNotEmpty()) fail(failures.joinToString("; "))
    }

    @Test
    fun linearTapsFollowCv2() {
        // 2 -> 4 (upscale by 2): positions -0.25, 0.25, 0.75, 1.25; the borders clamp the index, not the weights.
        val up = linearTaps(2, 4)
        assertArrayEquals(intArrayOf(0, 0, 0, 1), up.first)
        assertArrayEquals(intArrayOf(0, 1, 1, 1), up.second)
        assertArrayEquals(intArrayOf(512, 1536, 512, 1536), up.w0)
        assertArrayEquals(intArrayOf(1536, 512, 1536, 512), up.w1)
        for ((src, dst) in listOf(Pair(1, 64), Pair(500, 64), Pair(3, 64), Pair(4000, 7), Pair(65, 64), Pair(7, 7))) {
            val taps = linearTaps(src, dst)
            for (d in 0 until dst) {
                assertEquals("weights of $src->$dst sum to 2^11", 2048, taps.w0[d] + taps.w1[d])
                val inside = taps.first[d] in 0 until src && taps.second[d] in 0 until src
                assertTrue("indices of $src->$dst inside the image", inside)
            }
        }
    }

    @Test
    fun bilinearKeepsASameSizeImageAndAFlatOne() {
        val image = toRgb(noiseArgb(5, 4, 3), 5, 4)
        assertArrayEquals(image.pixels, resizeBilinear(image, 5, 4).pixels)
        val dot = toRgb(intArrayOf(0xff102030.toInt()), 1, 1)
        val big = resizeBilinear(dot, 9, 4)
        for (i in 0 until 36) {
            assertEquals(0x10, big.get(i % 9, i / 9, 0))
            assertEquals(0x30, big.get(i % 9, i / 9, 2))
        }
    }

    /** Every size pytest resized with core.images.resize_bilinear (held bit-exact to cv2): RGB bytes equal, and
     * the float tensor of core.images.preprocess with antialias false bit-identical. */
    @Test
    fun matchesCv2LinearOnOddSizes() {
        val dir = Inputs.casesDir()
        val cases = Inputs.manifest().getAsJsonArray("bilinear")
        assertTrue("pytest wrote bilinear resize cases", cases.size() > 0)
        val failures = ArrayList<String>()
        for (element in cases) {
            val case = element.asJsonObject
            val name = case.get("name").asString
            val decoded = decodeImageFile(File(dir, case.get("png").asString))
            val image = toRgb(decoded.argb, decoded.width, decoded.height)
            val outW = case.get("out_w").asInt
            val outH = case.get("out_h").asInt
            val resized = resizeBilinear(image, outW, outH)
            val expected = File(dir, case.get("rgb").asString).readBytes()
            var differ = 0
            var worst = 0
            for (i in expected.indices) {
                val d = Math.abs((expected[i].toInt() and 0xff) - (resized.pixels[i].toInt() and 0xff))
                if (d != 0) differ += 1
                worst = Math.max(worst, d)
            }
            if (differ > 0) {
                failures.add("$name: $differ of ${expected.size} values differ from Python (max $worst levels)")
            }
            val floats = case.get("float")
            if (floats != null && !floats.isJsonNull) {
                val layout = case.get("layout").asString
                val contract = ImageContract(
                    outW, layout, "float32", "RGB", listOf(0.0, 1.0), "stretch", "bilinear", false, BILINEAR_RESIZE, ""
                )
                val tensor = preprocess(image, contract)
                val d = maxAbsDiff(tensor, floatsLe(File(dir, floats.asString).readBytes()))
                if (d != 0.0) failures.add("$name: $layout preprocess tensor differs from Python by up to $d")
            }
        }
        if (failures.isNotEmpty()) fail(failures.joinToString("; "))
    }
}
