package com.melanomaexport.core

/*
 * EXIF orientation, as PIL's ImageOps.exif_transpose applies it before anything else (core/images.py:
 * load_rgb). Android's BitmapFactory ignores EXIF, so the app reads the tag from the file's bytes here and turns
 * the decoded pixels itself: the same code on the phone and in the JVM tests.
 */

/** Decoded pixels: 0xAARRGGBB, non-premultiplied, row-major. */
class ArgbImage(val width: Int, val height: Int, val argb: IntArray) {
    init {
        require(width > 0 && height > 0 && argb.size == width * height) {
            "expected ${width}x$height pixels, got ${argb.size}"
        }
    }
}

/**
 * The EXIF orientation (1..8) recorded in a JPEG (APP1 "Exif") or PNG (eXIf chunk) file, 1 when there is none
 * or it cannot be read (PIL then leaves the image as it is, and so do we).
 */
fun exifOrientation(file: ByteArray): Int {
    val tiff = when {
        isJpeg(file) -> jpegExif(file)
        isPng(file) -> pngExif(file)
        else -> null
    } ?: return 1
    val orientation = tiffOrientation(file, tiff.first, tiff.second) ?: return 1
    return if (orientation in 1..8) orientation else 1
}

private fun u8(b: ByteArray, i: Int): Int = b[i].toInt() and 0xff

private fun u16be(b: ByteArray, i: Int): Int = (u8(b, i) shl 8) or u8(b, i + 1)

private fun u32be(b: ByteArray, i: Int): Long = (u16be(b, i).toLong() shl 16) or u16be(b, i + 2).toLong()

private fun isJpeg(b: ByteArray) = b.size > 3 && u8(b, 0) == 0xFF && u8(b, 1) == 0xD8

private val PNG_SIGNATURE = intArrayOf(0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A)

private fun isPng(b: ByteArray) = b.size >= 8 && (0 until 8).all { u8(b, it) == PNG_SIGNATURE[it] }

/** (offset, length) of the TIFF block in the first APP1 segment that starts with "Exif\0\0". */
private fun jpegExif(b: ByteArray): Pair<Int, Int>? {
    var i = 2
    while (i + 4 <= b.size) {
        if (u8(b, i) != 0xFF) return null
        val marker = u8(b, i + 1)
        if (marker == 0xFF) { // fill byte
            i += 1
            continue
        }
        if (marker == 0xD9 || marker == 0xDA) return null // end of image, start of scan: no more metadata
        if (marker == 0x01 || marker in 0xD0..0xD7) { // markers without a length
            i += 2
            continue
        }
        val length = u16be(b, i + 2)
        if (length < 2 || i + 2 + length > b.size) return null
        val body = i + 4
        if (marker == 0xE1 && length >= 8 && String(b, body, 6, Charsets.ISO_8859_1) == "Exif\u0000\u0000") {
            return Pair(body + 6, length - 8)
        }
        i += 2 + length
    }
    return null
}

/** (offset, length) of the TIFF block in a PNG's eXIf chunk (PIL also accepts one that starts with "Exif\0\0"). */
private fun pngExif(b: ByteArray): Pair<Int, Int>? {
    var i = 8
    while (i + 12 <= b.size) {
        val length = u32be(b, i)
        if (length > b.size - i - 12L) return null
        val type = String(b, i + 4, 4, Charsets.ISO_8859_1)
        val data = i + 8
        if (type == "eXIf") {
            val n = length.toInt()
            if (n >= 6 && String(b, data, 6, Charsets.ISO_8859_1) == "Exif\u0000\u0000") return Pair(data + 6, n - 6)
            return Pair(data, n)
        }
        if (type == "IEND") return null
        i = data + length.toInt() + 4
    }
    return null
}

/** Tag 0x0112 of IFD0 of the TIFF block at [start] ([length] bytes), null when absent or unreadable. */
private fun tiffOrientation(b: ByteArray, start: Int, length: Int): Int? {
    if (length < 8 || start + length > b.size) return null
    val little = when (String(b, start, 2, Charsets.ISO_8859_1)) {
        "II" -> true
        "MM" -> false
        else -> return null
    }
    fun u16(at: Int): Int {
        if (at < 0 || at + 2 > length) throw IndexOutOfBoundsException()
        val p = start + at
        return if (little) u8(b, p) or (u8(b, p + 1) shl 8) else u16be(b, p)
    }
    fun u32(at: Int): Long {
        if (at < 0 || at + 4 > length) throw IndexOutOfBoundsException()
        return if (little) (u16(at).toLong() or (u16(at + 2).toLong() shl 16))
        else (u16(at).toLong() shl 16) or u16(at + 2).toLong()
    }
    return try {
        if (u16(2) != 42) return null
        val ifd = u32(4)
        if (ifd > length) return null
        val entries = u16(ifd.toInt())
        for (e in 0 until entries) {
            val entry = ifd.toInt() + 2 + e * 12
            if (u16(entry) == 0x0112) {
                val type = u16(entry + 2)
                return when (type) {
                    3 -> u16(entry + 8) // SHORT, stored in the first two bytes of the value field
                    4 -> u32(entry + 8).toInt() // LONG (not standard, but readable)
                    else -> null
                }
            }
        }
        null
    } catch (e: IndexOutOfBoundsException) {
        null
    }
}

/**
 * The pixels turned upright as PIL's `exif_transpose` turns them for each [orientation]:
 * 2 mirror left-right, 3 rotate 180, 4 mirror top-bottom, 5 transpose, 6 rotate 90 clockwise,
 * 7 transverse, 8 rotate 90 counter-clockwise; 1 (or anything else) leaves them as they are.
 */
fun orient(image: ArgbImage, orientation: Int): ArgbImage {
    val w = image.width
    val h = image.height
    val src = image.argb
    if (orientation !in 2..8) return image
    val swap = orientation >= 5
    val outW = if (swap) h else w
    val outH = if (swap) w else h
    val out = IntArray(w * h)
    for (y in 0 until outH) {
        for (x in 0 until outW) {
            val index = when (orientation) {
                2 -> y * w + (w - 1 - x)
                3 -> (h - 1 - y) * w + (w - 1 - x)
                4 -> (h - 1 - y) * w + x
                5 -> x * w + y
                6 -> (h - 1 - x) * w + y
                7 -> (h - 1 - x) * w + (w - 1 - y)
                else -> x * w + (w - 1 - y) // 8
            }
            out[y * outW + x] = src[index]
        }
    }
    return ArgbImage(outW, outH, out)
}
