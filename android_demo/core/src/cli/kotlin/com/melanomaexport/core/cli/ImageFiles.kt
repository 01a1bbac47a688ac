package com.melanomaexport.core.cli

import com.melanomaexport.core.ArgbImage
import com.melanomaexport.core.ContractException
import com.melanomaexport.core.exifOrientation
import com.melanomaexport.core.orient
import java.awt.image.BufferedImage
import java.awt.image.IndexColorModel
import java.io.ByteArrayInputStream
import java.io.File
import java.io.IOException
import javax.imageio.ImageIO

/*
 * Decoding image files on the JVM (javax.imageio, so not part of the Android-safe main source set) into the
 * ARGB pixels PIL's decoder produces (core/images.py: load_rgb up to to_rgb; toRgb does the compositing):
 * EXIF orientation applied, 16-bit samples reduced the way PIL reduces them, no colour-space conversion.
 * PNG is bit-exact; JPEG decoders differ slightly between libraries, which is why golden cases ship as PNG.
 */

/**
 * Decodes [file] into upright ARGB pixels.
 *
 * @throws ContractException when the file is missing, unreadable or not an image ImageIO can decode.
 */
fun decodeImageFile(file: File): ArgbImage {
    if (!file.isFile) throw ContractException("image $file does not exist: give the path of a PNG or JPEG file")
    val bytes = try {
        file.readBytes()
    } catch (e: IOException) {
        throw ContractException("image $file cannot be read (${e.message}): check its permissions")
    }
    return decodeImageBytes(bytes, file.toString())
}

/** [decodeImageFile] for bytes already in memory; [name] appears in error messages. */
fun decodeImageBytes(bytes: ByteArray, name: String): ArgbImage {
    fun damaged(e: Exception) =
        ContractException("image $name could not be decoded (${e.message ?: "damaged file"}): give a valid PNG or JPEG")
    val image = try {
        ImageIO.read(ByteArrayInputStream(bytes))
    } catch (e: IOException) {
        throw damaged(e)
    } catch (e: RuntimeException) {
        throw damaged(e)
    } ?: throw ContractException("$name is not an image this tool can read: give a PNG (exact) or JPEG file")
    val argb = if (isPng(bytes)) pngPixels(image, bytes, name) else otherPixels(image)
    return orient(ArgbImage(image.width, image.height, argb), exifOrientation(bytes))
}

private fun isPng(b: ByteArray) =
    b.size > 26 && b[1] == 'P'.toByte() && b[2] == 'N'.toByte() && b[3] == 'G'.toByte()

/**
 * PNG pixels as PIL reads them, by IHDR colour type: gray (0) and RGB (2) ignore any tRNS chunk (PIL keeps them
 * opaque), palette (3) uses it; 16-bit gray becomes v / 65535 * 255 truncated (core/images.py: to_rgb), other
 * 16-bit samples keep their high byte (PIL's "RGB;16B" unpacking).
 */
private fun pngPixels(image: BufferedImage, bytes: ByteArray, name: String): IntArray {
    val bitDepth = bytes[24].toInt() and 0xff
    val colorType = bytes[25].toInt() and 0xff
    val w = image.width
    val h = image.height
    val out = IntArray(w * h)
    val cm = image.colorModel
    if (colorType == 3 || cm is IndexColorModel) {
        val palette = cm as? IndexColorModel
            ?: throw ContractException("image $name has a palette this tool cannot read: save it as RGB PNG")
        val raster = image.raster
        val row = IntArray(w)
        for (y in 0 until h) {
            raster.getSamples(0, y, w, 1, 0, row)
            for (x in 0 until w) {
                val rgb = palette.getRGB(row[x])
                out[y * w + x] = if (colorType == 3) rgb else (rgb or (0xff shl 24))
            }
        }
        return out
    }
    val raster = image.raster
    val bands = raster.numBands
    val maxValue = (1 shl bitDepth) - 1
    val row = IntArray(w * bands)
    fun level(v: Int): Int = when {
        bitDepth == 16 -> v ushr 8
        bitDepth == 8 -> v
        else -> v * 255 / maxValue // 1, 2, 4-bit gray: PIL scales to 0..255
    }
    for (y in 0 until h) {
        raster.getPixels(0, y, w, 1, row)
        for (x in 0 until w) {
            val p = x * bands
            val argb = when (colorType) {
                0 -> {
                    val g = if (bitDepth == 16) (row[p] / 65535.0 * 255.0).toInt() else level(row[p])
                    gray(g, 255)
                }
                4 -> gray(level(row[p]), level(row[p + 1]))
                2 -> pack(255, level(row[p]), level(row[p + 1]), level(row[p + 2]))
                6 -> pack(level(row[p + 3]), level(row[p]), level(row[p + 1]), level(row[p + 2]))
                else -> throw ContractException("image $name has PNG colour type $colorType, which is not valid PNG")
            }
            out[y * w + x] = argb
        }
    }
    return out
}

/**
 * Other formats (JPEG, BMP, GIF): gray images sample by sample (BufferedImage.getRGB would apply a gamma
 * curve to them), colour ones through getRGB, which is exact for 8-bit sRGB.
 */
private fun otherPixels(image: BufferedImage): IntArray {
    val w = image.width
    val h = image.height
    val out = IntArray(w * h)
    val raster = image.raster
    if (image.colorModel !is IndexColorModel && raster.numBands == 1 && raster.sampleModel.getSampleSize(0) == 8) {
        val row = IntArray(w)
        for (y in 0 until h) {
            raster.getSamples(0, y, w, 1, 0, row)
            for (x in 0 until w) out[y * w + x] = gray(row[x], 255)
        }
        return out
    }
    image.getRGB(0, 0, w, h, out, 0, w)
    return out
}

private fun gray(v: Int, alpha: Int): Int = pack(alpha, v, v, v)

private fun pack(a: Int, r: Int, g: Int, b: Int): Int = (a shl 24) or (r shl 16) or (g shl 8) or b
