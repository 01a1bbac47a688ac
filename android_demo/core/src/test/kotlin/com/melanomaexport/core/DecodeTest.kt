package com.melanomaexport.core

import com.melanomaexport.core.cli.decodeImageBytes
import com.melanomaexport.core.cli.decodeImageFile
import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test
import java.io.File

/** Decoding to PIL's RGB: alpha compositing, EXIF orientation, image modes. */
class DecodeTest {
    @Test
    fun opaquePixelsPassThroughAndTransparentOnesTurnWhite() {
        val values = IntArray(256 * 256)
        for (r in 0 until 256) for (g in 0 until 256) {
            values[r * 256 + g] = (0xff shl 24) or (r shl 16) or (g shl 8) or (255 - r)
        }
        val rgb = toRgb(values, 256, 256)
        for (i in values.indices) {
            assertEquals((values[i] shr 16) and 0xff, rgb.pixels[i * 3].toInt() and 0xff)
            assertEquals((values[i] shr 8) and 0xff, rgb.pixels[i * 3 + 1].toInt() and 0xff)
            assertEquals(values[i] and 0xff, rgb.pixels[i * 3 + 2].toInt() and 0xff)
        }
        val clear = toRgb(intArrayOf(0x00123456), 1, 1)
        assertArrayEquals(byteArrayOf(-1, -1, -1), clear.pixels)
    }

    @Test
    fun halfTransparentBlackIsMidGray() {
        // PIL: Image.alpha_composite(white, (0, 0, 0, 128)) -> (127, 127, 127).
        val rgb = toRgb(intArrayOf(0x80000000.toInt()), 1, 1)
        assertEquals(127, rgb.get(0, 0, 0))
    }

    @Test
    fun orientationsComposeLikeRotations() {
        val image = ArgbImage(3, 2, intArrayOf(1, 2, 3, 4, 5, 6))
        assertArrayEquals(image.argb, orient(orient(image, 3), 3).argb) // 180 twice
        assertArrayEquals(image.argb, orient(orient(image, 6), 8).argb) // clockwise then counter-clockwise
        assertArrayEquals(image.argb, orient(orient(image, 2), 2).argb)
        val clockwise = orient(image, 6)
        assertEquals(2, clockwise.width)
        assertEquals(3, clockwise.height)
        // 1 2 3      4 1
        // 4 5 6  ->  5 2
        //            6 3
        assertArrayEquals(intArrayOf(4, 1, 5, 2, 6, 3), clockwise.argb)
        assertArrayEquals(intArrayOf(1, 4, 2, 5, 3, 6), orient(image, 5).argb) // transpose
        assertTrue(orient(image, 1) === image)
    }

    @Test
    fun noExifMeansUpright() {
        assertEquals(1, exifOrientation(ByteArray(0)))
        assertEquals(1, exifOrientation("not an image at all".toByteArray()))
        // A JPEG whose APP1 segment claims more bytes than the file has.
        assertEquals(1, exifOrientation(byteArrayOf(-1, -40, -1, -31, 0x7f, 0x7f, 'E'.toByte())))
    }

    @Test
    fun unreadableImagesAreOneSentence() {
        val missing = expectContract { decodeImageFile(File("/nonexistent/lesion.png")) }
        assertContains(missing.message, "does not exist")
        val text = expectContract { decodeImageBytes("plain text, not pixels".toByteArray(), "notes.txt") }
        assertContains(text.message, "notes.txt", "not an image")
    }

    /** PNGs of every mode PIL reads, EXIF orientations 1-8, and JPEGs: against PIL's load_rgb. */
    @Test
    fun matchesPilDecoding() {
        val dir = Inputs.casesDir()
        val cases = Inputs.manifest().getAsJsonArray("decode")
        assertTrue("pytest wrote decode cases", cases.size() > 0)
        val failures = ArrayList<String>()
        for (element in cases) {
            val case = element.asJsonObject
            val name = case.get("name").asString
            val decoded = decodeImageFile(File(dir, case.get("file").asString))
            val width = case.get("width").asInt
            val height = case.get("height").asInt
            if (decoded.width != width || decoded.height != height) {
                failures.add("$name: decoded ${decoded.width}x${decoded.height}, PIL ${width}x$height")
                continue
            }
            val rgb = toRgb(decoded.argb, decoded.width, decoded.height).pixels
            val expected = File(dir, case.get("rgb").asString).readBytes()
            var sum = 0L
            var worst = 0
            for (i in expected.indices) {
                val d = Math.abs((expected[i].toInt() and 0xff) - (rgb[i].toInt() and 0xff))
                sum += d
                worst = Math.max(worst, d)
            }
            val mean = sum.toDouble() / expected.size
            val bound = case.get("max_mean_abs").asDouble
            if (mean > bound) failures.add("$name: mean |d| $mean levels (max $worst) against PIL, bound $bound")
        }
        if (failures.isNotEmpty()) fail(failures.joinToString("; "))
    }
}
