package com.melanomaexport.core

/*
 * The image half of the contract, ported from core/images.py function for function:
 *   decoded ARGB pixels (what Bitmap.getPixels returns) -> toRgb (alpha composited on white, as PIL does)
 *   -> the spec's resize rule, bit for bit: resizeRgb (stretch to S x S with Pillow 13.0's antialiased bilinear
 *      filter; `image.antialias` true) or resizeBilinear (OpenCV's cv2.resize INTER_LINEAR; antialias false)
 *   -> toFloat (v / 255 in float32, laid out NCHW or NHWC as the spec says).
 * Orientation (EXIF) is applied before this, see Exif.kt.
 */

/** An 8-bit RGB image, row-major, 3 bytes per pixel (R, G, B). */
class RgbImage(val width: Int, val height: Int, val pixels: ByteArray) {
    init {
        require(width > 0 && height > 0) { "an image needs at least one pixel, got ${width}x$height" }
        require(pixels.size == width * height * 3) { "expected ${width * height * 3} RGB bytes, got ${pixels.size}" }
    }

    /** Channel [c] (0 = R) of pixel ([x], [y]) as 0..255. */
    fun get(x: Int, y: Int, c: Int): Int = pixels[(y * width + x) * 3 + c].toInt() and 0xff
}

/** What this port implements (core/images.py: SUPPORTED). */
val SUPPORTED_LAYOUTS = listOf("NCHW", "NHWC")

/** The Pillow major version whose resize (pass order included) this port reproduces. */
const val PILLOW_MAJOR = 13

/** `image.resize_library` of a spec whose resize is cv2's INTER_LINEAR (core/spec.py: BILINEAR_RESIZE). */
const val BILINEAR_RESIZE = "OpenCV cv2.resize INTER_LINEAR (bit-exact port: core.images.resize_bilinear)"

/**
 * Refuses an image contract this port cannot honour, in one sentence naming the field
 * (core/images.py: `check_contract`; also the dtype, colour, value range and resize library, which the Python
 * reference takes for granted). Every field is there: [readSpec] refuses a spec that lacks one.
 */
fun checkContract(contract: ImageContract) {
    fun refuse(what: String, value: Any, allowed: String): Nothing =
        throw ContractException("the spec asks for image $what \"$value\"; this app implements $allowed")
    if (contract.resize != "stretch") refuse("resize", contract.resize, "stretch")
    if (contract.interpolation != "bilinear") refuse("interpolation", contract.interpolation, "bilinear")
    if (contract.layout !in SUPPORTED_LAYOUTS) refuse("layout", contract.layout, SUPPORTED_LAYOUTS.joinToString(", "))
    if (contract.dtype != "float32") refuse("dtype", contract.dtype, "float32")
    if (contract.color != "RGB") refuse("color", contract.color, "RGB")
    if (contract.valueRange != listOf(0.0, 1.0)) refuse("value_range", contract.valueRange, "[0, 1]")
    if (!contract.antialias) {
        // cv2's INTER_LINEAR is one fixed algorithm (no version-dependent pass order): the library names it.
        if (contract.resizeLibrary != BILINEAR_RESIZE) {
            refuse("resize_library", contract.resizeLibrary, "PIL (antialiased) and \"$BILINEAR_RESIZE\"")
        }
        return
    }
    if (contract.resizeLibrary != "PIL") {
        refuse("resize_library", contract.resizeLibrary, "PIL (antialiased) and \"$BILINEAR_RESIZE\"")
    }
    val version = contract.resizeLibraryVersion
    if (version.isEmpty()) {
        // Not assumed to be Pillow 13: the pass order, and so the pixels, depend on the version.
        throw ContractException(
            "the spec records no image.resize_library_version (the Pillow its resize was checked with): " +
                "re-export the model with python -m export.all"
        )
    }
    if (version.substringBefore('.') != PILLOW_MAJOR.toString()) {
        throw ContractException(
            "the spec's resize follows Pillow $version; this app reproduces Pillow $PILLOW_MAJOR.x: " +
                "re-export the model with the project's pinned Pillow"
        )
    }
}

/**
 * Composites decoded ARGB pixels (non-premultiplied, 0xAARRGGBB) on opaque white with PIL's
 * `Image.alpha_composite` integer arithmetic, then drops alpha (core/images.py: `to_rgb`). Opaque pixels come
 * out unchanged, fully transparent ones white.
 */
fun toRgb(argb: IntArray, width: Int, height: Int): RgbImage {
    require(width > 0 && height > 0 && argb.size == width * height) {
        "expected ${width}x$height = ${width.toLong() * height} pixels, got ${argb.size}"
    }
    val out = ByteArray(width * height * 3)
    for (i in argb.indices) {
        val p = argb[i]
        val a = p ushr 24
        var r = (p shr 16) and 0xff
        var g = (p shr 8) and 0xff
        var b = p and 0xff
        if (a == 0) {
            r = 255
            g = 255
            b = 255
        } else {
            r = compositeOnWhite(r, a)
            g = compositeOnWhite(g, a)
            b = compositeOnWhite(b, a)
        }
        out[i * 3] = r.toByte()
        out[i * 3 + 1] = g.toByte()
        out[i * 3 + 2] = b.toByte()
    }
    return RgbImage(width, height, out)
}

/** One channel of PIL's AlphaComposite.c with the destination opaque white (7 extra bits, rounded divisions). */
private fun compositeOnWhite(src: Int, alpha: Int): Int {
    val blend = 255L * (255 - alpha)
    val outa255 = alpha * 255L + blend
    val coef1 = alpha * 255L * 255L * 128L / outa255
    val coef2 = 255L * 128L - coef1
    val tmp = src * coef1 + 255L * coef2 + (0x80L shl 7)
    return ((((tmp shr 8) + tmp) shr 8) shr 7).toInt()
}

/**
 * Which pass Pillow 13 runs first (core/images.py: `pass_order`): "vertical" when the height shrinks by more than
 * twice as many pixels as the width, else "horizontal". A pass whose size does not change is skipped.
 */
fun passOrder(inWidth: Int, inHeight: Int, outWidth: Int, outHeight: Int): String {
    val shrinkY = inHeight - outHeight
    val shrinkX = inWidth - outWidth
    return if (outHeight < inHeight && shrinkY > 2 * shrinkX) "vertical" else "horizontal"
}

/** Stretches [image] to size x size (core/images.py: `resize_rgb`). */
fun resizeRgb(image: RgbImage, size: Int): RgbImage = resizeRgb(image, size, size)

/**
 * Pillow 13.0's `Image.resize((outWidth, outHeight), BILINEAR)` of an RGB image, bit for bit
 * (src/libImaging/Resample.c): per axis a triangle filter whose support grows with the downscale factor,
 * weights normalised in double and turned into 22-bit fixed point, each pass rounded to 8 bits.
 */
fun resizeRgb(image: RgbImage, outWidth: Int, outHeight: Int): RgbImage {
    require(outWidth > 0 && outHeight > 0) { "the output size must be positive, got ${outWidth}x$outHeight" }
    val horizontal = outWidth != image.width
    val vertical = outHeight != image.height
    var current = image
    if (passOrder(image.width, image.height, outWidth, outHeight) == "vertical") {
        if (vertical) current = resampleVertical(current, outHeight)
        if (horizontal) current = resampleHorizontal(current, outWidth)
    } else {
        if (horizontal) current = resampleHorizontal(current, outWidth)
        if (vertical) current = resampleVertical(current, outHeight)
    }
    return if (current === image) RgbImage(image.width, image.height, image.pixels.copyOf()) else current
}

private const val PRECISION_BITS = 22

/** The taps of one axis: for output index i, input indices start[i] until start[i] + count[i], weights k. */
internal class Taps(val start: IntArray, val count: IntArray, val ksize: Int, val weights: IntArray)

/** Resample.c's `precompute_coeffs` + `normalize_coeffs_8bpc` for the bilinear filter (support 1). */
internal fun bilinearTaps(inSize: Int, outSize: Int): Taps {
    val scale = inSize.toDouble() / outSize
    val filterscale = if (scale < 1.0) 1.0 else scale
    val support = 1.0 * filterscale
    val ksize = Math.ceil(support).toInt() * 2 + 1
    val invFilterscale = 1.0 / filterscale
    val start = IntArray(outSize)
    val count = IntArray(outSize)
    val weights = IntArray(outSize * ksize)
    val w = DoubleArray(ksize)
    for (xx in 0 until outSize) {
        val center = (xx + 0.5) * scale
        var xmin = (center - support + 0.5).toInt()
        if (xmin < 0) xmin = 0
        var xmax = (center + support + 0.5).toInt()
        if (xmax > inSize) xmax = inSize
        xmax -= xmin
        var ww = 0.0
        for (x in 0 until xmax) {
            var t = ((x + xmin) - center + 0.5) * invFilterscale
            if (t < 0.0) t = -t
            val value = if (t < 1.0) 1.0 - t else 0.0
            w[x] = value
            ww += value
        }
        for (x in 0 until xmax) {
            val normalised = if (ww != 0.0) w[x] / ww else w[x]
            // Triangle weights are never negative, so Pillow's rounding is (int)(0.5 + w * 2^22).
            weights[xx * ksize + x] = (0.5 + normalised * (1 shl PRECISION_BITS)).toInt()
        }
        start[xx] = xmin
        count[xx] = xmax
    }
    return Taps(start, count, ksize, weights)
}

private fun clip8(sum: Int): Int {
    val v = sum shr PRECISION_BITS
    return if (v < 0) 0 else if (v > 255) 255 else v
}

private fun resampleHorizontal(image: RgbImage, outWidth: Int): RgbImage {
    val taps = bilinearTaps(image.width, outWidth)
    val src = image.pixels
    val out = ByteArray(outWidth * image.height * 3)
    val half = 1 shl (PRECISION_BITS - 1)
    for (y in 0 until image.height) {
        val row = y * image.width * 3
        for (xx in 0 until outWidth) {
            val xmin = taps.start[xx]
            val k0 = xx * taps.ksize
            var r = half
            var g = half
            var b = half
            for (x in 0 until taps.count[xx]) {
                val k = taps.weights[k0 + x]
                val p = row + (xmin + x) * 3
                r += (src[p].toInt() and 0xff) * k
                g += (src[p + 1].toInt() and 0xff) * k
                b += (src[p + 2].toInt() and 0xff) * k
            }
            val o = (y * outWidth + xx) * 3
            out[o] = clip8(r).toByte()
            out[o + 1] = clip8(g).toByte()
            out[o + 2] = clip8(b).toByte()
        }
    }
    return RgbImage(outWidth, image.height, out)
}

private fun resampleVertical(image: RgbImage, outHeight: Int): RgbImage {
    val taps = bilinearTaps(image.height, outHeight)
    val src = image.pixels
    val stride = image.width * 3
    val out = ByteArray(image.width * outHeight * 3)
    val half = 1 shl (PRECISION_BITS - 1)
    val sums = IntArray(stride)
    for (yy in 0 until outHeight) {
        val ymin = taps.start[yy]
        val k0 = yy * taps.ksize
        java.util.Arrays.fill(sums, half)
        // Row by row: the same sums Resample.c forms pixel by pixel (integer addition is exact in any order).
        for (y in 0 until taps.count[yy]) {
            val k = taps.weights[k0 + y]
            val row = (ymin + y) * stride
            for (i in 0 until stride) sums[i] += (src[row + i].toInt() and 0xff) * k
        }
        val o = yy * stride
        for (i in 0 until stride) out[o + i] = clip8(sums[i]).toByte()
    }
    return RgbImage(image.width, outHeight, out)
}

// OpenCV's INTER_LINEAR for 8-bit images (core/images.py: COEF_BITS): 11-bit coefficients, then its vectorised
// vertical pass, whose shifts (each product of the horizontal sum >> 4 and a coefficient, >> 16, summed, + 2, >> 2)
// differ from an exact rounding by one level now and then. OpenCV runs that vector code on every row.
private const val COEF_BITS = 11

/** For each output index of one axis: the two source indices and their 11-bit weights. */
internal class LinearTaps(val first: IntArray, val second: IntArray, val w0: IntArray, val w1: IntArray)

/**
 * core/images.py: `_linear_taps`, as cv2.resize computes them: the source position in double, rounded to float32;
 * its floor; the fraction (float32) and its weights rounded half to even; indices clamped to the image, the weights
 * not.
 */
internal fun linearTaps(src: Int, dst: Int): LinearTaps {
    val scale = 1.0 / (dst.toDouble() / src)
    val one = (1 shl COEF_BITS).toFloat()
    val first = IntArray(dst)
    val second = IntArray(dst)
    val w0 = IntArray(dst)
    val w1 = IntArray(dst)
    for (d in 0 until dst) {
        val position = ((d + 0.5) * scale - 0.5).toFloat()
        val floor = Math.floor(position.toDouble()).toFloat()
        val fraction = position - floor // float32 arithmetic, as numpy's float32 arrays
        // Math.rint rounds half to even, as np.rint; the float32 product widens to double exactly.
        w0[d] = Math.rint(((1f - fraction) * one).toDouble()).toInt()
        w1[d] = Math.rint((fraction * one).toDouble()).toInt()
        val i = floor.toInt()
        first[d] = Math.min(Math.max(i, 0), src - 1)
        second[d] = Math.min(Math.max(i + 1, 0), src - 1)
    }
    return LinearTaps(first, second, w0, w1)
}

/**
 * OpenCV's `cv2.resize(pixels, (outWidth, outHeight), interpolation=cv2.INTER_LINEAR)` of an RGB image, bit for bit
 * (core/images.py: `resize_bilinear`): no antialiasing, half-pixel centres; a horizontal pass into integer sums
 * (weights 2^11), then the vertical pass with cv2's shifts.
 */
fun resizeBilinear(image: RgbImage, outWidth: Int, outHeight: Int): RgbImage {
    require(outWidth > 0 && outHeight > 0) { "the output size must be positive, got ${outWidth}x$outHeight" }
    val xs = linearTaps(image.width, outWidth)
    val ys = linearTaps(image.height, outHeight)
    val src = image.pixels
    val stride = outWidth * 3
    // The horizontal sums of a source row (S = p[i0] * w0 + p[i1] * w1), computed once for each row a pass needs.
    val rows = arrayOfNulls<IntArray>(image.height)
    fun row(y: Int): IntArray = rows[y] ?: IntArray(stride).also { sums ->
        val base = y * image.width * 3
        for (x in 0 until outWidth) {
            val a = base + xs.first[x] * 3
            val b = base + xs.second[x] * 3
            for (c in 0 until 3) {
                sums[x * 3 + c] = (src[a + c].toInt() and 0xff) * xs.w0[x] + (src[b + c].toInt() and 0xff) * xs.w1[x]
            }
        }
        rows[y] = sums
    }
    val out = ByteArray(outHeight * stride)
    for (y in 0 until outHeight) {
        val top = row(ys.first[y])
        val bottom = row(ys.second[y])
        val v0 = ys.w0[y]
        val v1 = ys.w1[y]
        val o = y * stride
        for (i in 0 until stride) {
            val sum = (((top[i] shr 4) * v0) shr 16) + (((bottom[i] shr 4) * v1) shr 16)
            out[o + i] = ((sum + 2) shr 2).toByte()
        }
    }
    return RgbImage(outWidth, outHeight, out)
}

/**
 * uint8 RGB -> float32 v / 255 (a correctly rounded float division, as numpy does), laid out as [3, H, W] for
 * "NCHW" or [H, W, 3] for "NHWC" (core/images.py: `to_float`).
 */
fun toFloat(image: RgbImage, layout: String): FloatArray {
    val plane = image.width * image.height
    val out = FloatArray(plane * 3)
    val src = image.pixels
    when (layout) {
        "NHWC" -> for (i in 0 until plane * 3) out[i] = (src[i].toInt() and 0xff).toFloat() / 255f
        "NCHW" -> for (i in 0 until plane) {
            for (c in 0 until 3) out[c * plane + i] = (src[i * 3 + c].toInt() and 0xff).toFloat() / 255f
        }
        else -> throw ContractException("unknown image layout \"$layout\": NCHW or NHWC")
    }
    return out
}

/**
 * A decoded RGB image -> the `image` tensor of one case (no batch axis) as [contract] says
 * (core/images.py: `preprocess`): resized by Pillow's antialiased rule or by cv2's INTER_LINEAR as
 * `antialias` says; [layout] overrides the contract's layout.
 */
fun preprocess(image: RgbImage, contract: ImageContract, layout: String? = null): FloatArray {
    checkContract(contract)
    val s = contract.size
    val pixels = if (contract.antialias) resizeRgb(image, s) else resizeBilinear(image, s, s)
    return toFloat(pixels, layout ?: contract.layout)
}

/**
 * Decoded ARGB pixels (EXIF orientation already applied, e.g. by [orient]) -> the `image` tensor the spec's
 * model takes: float32 in the spec's layout, S * S * 3 values (the batch of one adds no data).
 */
fun imageTensor(spec: ModelSpec, argb: IntArray, width: Int, height: Int): FloatArray =
    preprocess(toRgb(argb, width, height), spec.image)

/** The `image` input's shape with its batch axis, e.g. [1, S, S, 3] for an NHWC spec. */
fun imageShape(contract: ImageContract): IntArray {
    val s = contract.size
    return if (contract.layout == "NHWC") intArrayOf(1, s, s, 3) else intArrayOf(1, 3, s, s)
}
