package com.melanomaexport.demo

import android.content.ContentResolver
import android.graphics.Bitmap
import android.graphics.BitmapFactory
import android.net.Uri
import com.melanomaexport.core.ArgbImage
import com.melanomaexport.core.ContractException
import com.melanomaexport.core.exifOrientation
import com.melanomaexport.core.orient
import java.io.IOException
import java.nio.ByteBuffer

/**
 * Photo files -> the pixels PIL would decode (core/images.py: load_rgb), so that :core's preprocessing sees the
 * same values on the phone as in Python:
 * - ARGB_8888, not premultiplied (premultiplying and undoing it would change semi-transparent pixels);
 * - no colour-space conversion: the raw decoded bytes are read with copyPixelsToBuffer, where getPixels would
 *   convert a wide-gamut (e.g. Display P3) photo to sRGB, which PIL never does;
 * - EXIF orientation read from the file's bytes by :core and applied by :core (BitmapFactory ignores it).
 */
object Photos {
    fun decode(resolver: ContentResolver, uri: Uri): ArgbImage {
        val bytes = try {
            resolver.openInputStream(uri)?.use { it.readBytes() }
        } catch (e: IOException) {
            null
        } ?: throw ContractException("the photo could not be opened: pick or take it again")
        return decodeBytes(bytes, "the photo")
    }

    fun decodeBytes(bytes: ByteArray, name: String): ArgbImage {
        val options = BitmapFactory.Options().apply {
            inPreferredConfig = Bitmap.Config.ARGB_8888
            inPremultiplied = false
            inScaled = false
        }
        val bitmap = BitmapFactory.decodeByteArray(bytes, 0, bytes.size, options)
            ?: throw ContractException("$name is not an image this phone can decode: use a JPEG or PNG photo")
        try {
            val argb8888 = bitmap.config == Bitmap.Config.ARGB_8888
            val rgba = if (argb8888) bitmap else bitmap.copy(Bitmap.Config.ARGB_8888, false)
            val raw = ByteBuffer.allocate(rgba.byteCount)
            rgba.copyPixelsToBuffer(raw)
            val w = rgba.width
            val h = rgba.height
            val stride = rgba.rowBytes
            val argb = IntArray(w * h)
            val b = raw.array()
            for (y in 0 until h) {
                for (x in 0 until w) {
                    val p = y * stride + x * 4 // ARGB_8888 is R, G, B, A in memory
                    argb[y * w + x] = ((b[p + 3].toInt() and 0xff) shl 24) or ((b[p].toInt() and 0xff) shl 16) or
                        ((b[p + 1].toInt() and 0xff) shl 8) or (b[p + 2].toInt() and 0xff)
                }
            }
            if (rgba !== bitmap) rgba.recycle()
            return orient(ArgbImage(w, h, argb), exifOrientation(bytes))
        } finally {
            bitmap.recycle()
        }
    }

    /** A small opaque preview to show on screen (display only; the model gets the full-resolution pixels). */
    fun preview(image: ArgbImage, maxSide: Int = 720): Bitmap {
        val full = Bitmap.createBitmap(image.argb, image.width, image.height, Bitmap.Config.ARGB_8888)
        val scale = maxSide.toFloat() / maxOf(image.width, image.height)
        if (scale >= 1f) return full
        val small = Bitmap.createScaledBitmap(
            full,
            maxOf(1, (image.width * scale).toInt()),
            maxOf(1, (image.height * scale).toInt()),
            true,
        )
        full.recycle()
        return small
    }
}
