package com.melanomaexport.core

import com.google.gson.JsonElement
import com.google.gson.JsonObject
import java.math.BigDecimal
import java.math.BigInteger
import java.math.MathContext
import java.math.RoundingMode

/*
 * A case (field -> raw value) -> the `meta` vector, exactly as core/contract.py's `ContractEncoder.encode` builds
 * it from the model's contract: each feature turns the value of its field into its entries (`Feature.encode`),
 * then each L2 `normalize` group divides its features' entries by their norm. Arithmetic in double, stored as
 * float32 at the end, as numpy does.
 *
 * Values are taken as Python takes them: null, NaN or a string whose trimmed lower-case form is one of the spec's
 * missing tokens means missing (a field absent from the case too). A `number` feature takes a number or a numeric
 * string (never a Boolean); a `one_hot` or `code` feature takes a string. Anything else is refused with Python's
 * own sentence (core/contract.py's MetadataError messages, word for word: values shown as Python's repr shows
 * them, numbers formatted as Python's `:g`).
 */

/** Whether [value] counts as missing (core/contract.py: `_is_missing`), given the spec's missing tokens. */
fun isMissing(value: Any?, missingTokens: List<String>): Boolean {
    if (value == null) return true
    if (value is Double && value.isNaN()) return true
    if (value is Float && value.isNaN()) return true
    return value is String && pyLower(pyStrip(value)) in missingTokens
}

/** A category, code or alias as the contract compares it (core/contract.py: `_key`): trimmed, lower-case,
 * underscores as spaces, runs of whitespace as one space. */
fun contractKey(value: Any?): String = pySplit(pyLower(pyStrip(pyStr(value))).replace('_', ' ')).joinToString(" ")

/** The transforms a `number` feature may apply (core/contract.py: TRANSFORMS). */
val TRANSFORMS = listOf("none", "log", "log1p")

/** The feature kinds of melanoma-contract/1 (core/contract.py: KINDS). */
val FEATURE_KINDS = listOf("number", "one_hot", "code")

/**
 * One metadata feature: how one field of a case becomes one or more entries of `meta` (core/contract.py:
 * `Feature`). Built by [parseContract]; the fields a kind does not use keep their empty values.
 */
class Feature(
    val name: String,
    /** "number", "one_hot" or "code". */
    val kind: String,
    /** The case field it reads (e.g. "age_approx"); several features may read one field. */
    val field: String,
    /** number: the value when missing. */
    val missingValue: Double = 0.0,
    /** one_hot: "column" (an extra last entry) or "zeros". */
    val missingRule: String = "",
    val transform: String = "none",
    val offset: Double = 0.0,
    val scale: Double = 1.0,
    val missingFlag: Boolean = false,
    /** one_hot: the categories in `meta` order, as [contractKey] writes them. */
    val categories: List<String> = emptyList(),
    /** one_hot / code: alias -> category or code, both as [contractKey] writes them, in file order. */
    val aliases: Map<String, String> = emptyMap(),
    /** code: value -> number, keys as [contractKey] writes them, in file order. */
    val codes: Map<String, Double> = emptyMap(),
    /** number: the raw values accepted (inclusive), null when any is. */
    val range: List<Double>? = null,
    /** number: cut points of the subgroups parity compares (only shown here). */
    val bands: List<Double> = emptyList(),
    /** number: shown in forms and messages ("years"). */
    val unit: String = "",
    /** What a form asks for. */
    val description: String = ""
) {
    /** Whether its values are categories (one_hot) or codes (code), not numbers. */
    val categorical: Boolean
        get() = kind == "one_hot" || kind == "code"

    /** Names of this feature's entries in `meta`, in order. */
    val entries: List<String>
        get() = when (kind) {
            "number" -> listOf(name) + (if (missingFlag) listOf("${name}_missing") else emptyList())
            "one_hot" -> {
                val column = if (missingRule == "column") listOf("${name}_missing") else emptyList()
                categories.map { "${name}_$it" } + column
            }
            else -> listOf(name)
        }

    /**
     * This feature's entries for one raw value, in double (core/contract.py: `Feature.encode`).
     *
     * @throws ContractException with Python's MetadataError sentence for a value it cannot take.
     */
    fun encode(value: Any?, missingTokens: List<String>): DoubleArray {
        if (kind == "number") return number(value, missingTokens)
        if (kind == "one_hot") {
            val vector = DoubleArray(entries.size)
            val category = category(value, missingTokens)
            if (category != null) {
                vector[categories.indexOf(category)] = 1.0
            } else if (missingRule == "column") {
                vector[vector.size - 1] = 1.0
            }
            return vector
        }
        if (isMissing(value, missingTokens)) return doubleArrayOf(missingValue)
        return doubleArrayOf(codes.getValue(codeKey(value)))
    }

    /** The code a value names (core/contract.py: `_code_key`); an explicit code wins over an alias. */
    internal fun codeKey(value: Any?): String {
        val accepted = (codes.keys.toList() + aliases.keys).joinToString(", ") { "\"$it\"" }
        if (value !is String) {
            throw ContractException("$name ${pyRepr(value)} is not text: use one of $accepted, or leave it empty")
        }
        var key = contractKey(value)
        if (key !in codes) key = aliases[key] ?: key
        if (key !in codes) {
            throw ContractException("unknown $name \"$value\": use one of $accepted, or leave it empty")
        }
        return key
    }

    /** core/contract.py: `Feature._number`. */
    private fun number(value: Any?, missingTokens: List<String>): DoubleArray {
        val missing = if (missingFlag) doubleArrayOf(missingValue, 1.0) else doubleArrayOf(missingValue)
        if (isMissing(value, missingTokens)) return missing
        val x: Double = when (value) {
            is Boolean -> throw notANumber(pyRepr(value))
            is String -> parsePythonFloat(value) ?: throw notANumber("\"$value\"")
            is Number -> value.toDouble()
            else -> throw notANumber(pyRepr(value))
        }
        if (x.isNaN()) return missing
        val range = range
        if (range != null && !(range[0] <= x && x <= range[1])) {
            val unit = if (unit.isEmpty()) "" else " $unit"
            throw ContractException(
                "$name ${formatG(x)} is outside ${formatG(range[0])}-${formatG(range[1])}$unit: fix or blank it"
            )
        }
        // Python's math.log / log1p raise ValueError outside their domain, where the JVM's return -inf or NaN.
        // StrictMath: the same bits on every JVM and on Android (fdlibm), as close to C's libm as one ulp.
        val y = when (transform) {
            "log" -> if (x <= 0.0) throw outsideDomain(x) else StrictMath.log(x)
            "log1p" -> if (x <= -1.0) throw outsideDomain(x) else StrictMath.log1p(x)
            else -> x
        }
        val scaled = (y - offset) / scale
        return if (missingFlag) doubleArrayOf(scaled, 0.0) else doubleArrayOf(scaled)
    }

    private fun notANumber(shown: String) =
        ContractException("$name $shown is not a number: give a number or leave it empty")

    private fun outsideDomain(x: Double) = ContractException("$name ${formatG(x)} is outside the domain of $transform")

    /** The category a value names, null when missing (core/contract.py: `Feature._category`). */
    internal fun category(value: Any?, missingTokens: List<String>): String? {
        if (isMissing(value, missingTokens)) return null
        if (value !is String) {
            throw ContractException("$name ${pyRepr(value)} is not text: use one of ${categories.joinToString(", ")}")
        }
        val key = contractKey(value)
        if (key in categories) return key // an explicit category always wins over an alias
        val alias = aliases[key]
        if (alias != null) return alias
        val accepted = (categories + aliases.keys.toList()).joinToString(", ") { "\"$it\"" }
        throw ContractException("unknown $name \"$value\": use one of $accepted, or leave it empty for missing")
    }
}

/**
 * Encodes one case (field -> raw value) into the `meta` vector a contract describes (core/contract.py:
 * `ContractEncoder`). [groups] are the L2 `normalize` groups, by feature name; [missingTokens] the spec's.
 */
class ContractEncoder(
    val features: List<Feature>,
    val groups: List<List<String>>,
    val missingTokens: List<String>
) {
    /** Names of the `meta` entries, in order. */
    val entries: List<String>
        get() = features.flatMap { it.entries }

    /** Length K of the `meta` vector. */
    val size: Int
        get() = entries.size

    /** The case fields the features read, each once, in order. */
    val fields: List<String>
        get() = features.map { it.field }.distinct()

    /**
     * float32 [K] for one case; a field absent from [case] counts as missing.
     *
     * @throws ContractException with Python's sentence for the first value (in feature order) it cannot take.
     */
    fun encode(case: Map<String, Any?>): FloatArray {
        val parts = LinkedHashMap<String, DoubleArray>()
        for (f in features) parts[f.name] = f.encode(case[f.field], missingTokens)
        for (group in groups) {
            // The norm over the entries as they are before this group divides them, summed left to right in
            // double as Python 3.11's sum() does (3.12's compensated sum may differ in the last bit of a double,
            // far below float32); then each listed feature divided (twice if listed twice, as in Python).
            var sum = 0.0
            for (name in group) for (v in parts.getValue(name)) sum += v * v
            val norm = Math.sqrt(sum)
            if (norm > 0) {
                for (name in group) parts[name] = parts.getValue(name).map { it / norm }.toDoubleArray()
            }
        }
        val out = FloatArray(size)
        var i = 0
        for (f in features) for (v in parts.getValue(f.name)) out[i++] = v.toFloat()
        return out
    }
}

/**
 * A case as golden.json (and the test manifests) write it: field -> raw value, JSON null = missing; numbers keep
 * Python's int / float distinction (see [pyValue]), which only shows in messages.
 */
fun caseFromJson(json: JsonObject): Map<String, Any?> {
    val case = LinkedHashMap<String, Any?>()
    for ((key, value) in json.entrySet()) case[key] = pyValue(value)
    return case
}

// ------------------------------------------------------------------------------------- Python's view of values

/**
 * A JSON value as Python's json.loads makes it: null, Boolean, String, a Long (or BigInteger) for an integer
 * literal ("55"), a Double for any other number ("55.0", "1e2"), a List or a LinkedHashMap (in file order).
 */
fun pyValue(element: JsonElement?): Any? {
    if (element == null || element.isJsonNull) return null
    if (element.isJsonArray) return element.asJsonArray.map { pyValue(it) }
    if (element.isJsonObject) {
        val map = LinkedHashMap<String, Any?>()
        for ((key, value) in element.asJsonObject.entrySet()) map[key] = pyValue(value)
        return map
    }
    val p = element.asJsonPrimitive
    if (p.isBoolean) return p.asBoolean
    if (p.isString) return p.asString
    val text = p.asNumber.toString()
    if (text.any { it == '.' || it == 'e' || it == 'E' }) return text.toDouble()
    val whole = try {
        BigInteger(text)
    } catch (e: NumberFormatException) {
        return text.toDouble() // NaN or Infinity, which only a lenient parser lets through
    }
    return if (whole.bitLength() < 64) whole.toLong() else whole
}

/** Python's `type(value).__name__` for the values [pyValue] makes. */
internal fun pyTypeName(value: Any?): String = when (value) {
    null -> "NoneType"
    is Boolean -> "bool"
    is String -> "str"
    is Double, is Float -> "float"
    is Number -> "int"
    is Map<*, *> -> "dict"
    is List<*> -> "list"
    else -> value.javaClass.simpleName
}

/** Python's `repr(value)`: None, True, 'text', 55, 55.0, [1, 'a'], {'k': 1}; arrays as lists. */
fun pyRepr(value: Any?): String = when (value) {
    null -> "None"
    is Boolean -> if (value) "True" else "False"
    is String -> pyStringRepr(value)
    is Char -> pyStringRepr(value.toString())
    is Double -> pyFloatRepr(value)
    is Float -> pyFloatRepr(value.toDouble())
    is BigDecimal -> pyFloatRepr(value.toDouble())
    is Number -> value.toString()
    is Map<*, *> -> value.entries.joinToString(", ", "{", "}") { "${pyRepr(it.key)}: ${pyRepr(it.value)}" }
    is Iterable<*> -> value.joinToString(", ", "[", "]") { pyRepr(it) }
    is Array<*> -> value.joinToString(", ", "[", "]") { pyRepr(it) }
    is IntArray -> value.joinToString(", ", "[", "]")
    is LongArray -> value.joinToString(", ", "[", "]")
    is DoubleArray -> value.joinToString(", ", "[", "]") { pyFloatRepr(it) }
    is FloatArray -> value.joinToString(", ", "[", "]") { pyFloatRepr(it.toDouble()) }
    is BooleanArray -> value.joinToString(", ", "[", "]") { pyRepr(it) }
    else -> value.toString()
}

/** Python's `str(value)`: the text itself for a string, else its repr. */
internal fun pyStr(value: Any?): String = if (value is String) value else pyRepr(value)

/** Python's repr of a str: single quotes unless the text holds one and no double quote; escapes as Python's. */
private fun pyStringRepr(text: String): String {
    val quote = if ('\'' in text && '"' !in text) '"' else '\''
    val out = StringBuilder().append(quote)
    for (c in text) {
        when {
            c == quote || c == '\\' -> out.append('\\').append(c)
            c == '\n' -> out.append("\\n")
            c == '\r' -> out.append("\\r")
            c == '\t' -> out.append("\\t")
            c.toInt() < 0x20 || c.toInt() == 0x7f -> out.append("\\x").append(String.format("%02x", c.toInt()))
            else -> out.append(c)
        }
    }
    return out.append(quote).toString()
}

/**
 * Python's `repr(float)`: the shortest decimal that reads back as the same double, positional from 1e-4 up to
 * 1e16 ("55.0", "0.0001"), else in exponent form ("1e+16", "1.5e-05").
 */
internal fun pyFloatRepr(value: Double): String {
    if (value.isNaN()) return "nan"
    if (value.isInfinite()) return if (value > 0) "inf" else "-inf"
    val sign = if (value < 0 || (value == 0.0 && 1.0 / value < 0)) "-" else ""
    if (value == 0.0) return sign + "0.0"
    val exact = BigDecimal(Math.abs(value))
    var shortest = exact
    for (digits in 1..17) {
        shortest = exact.round(MathContext(digits, RoundingMode.HALF_EVEN))
        if (shortest.toDouble() == Math.abs(value)) break
    }
    val unscaled = shortest.unscaledValue().toString().trimEnd('0').ifEmpty { "0" }
    val exponent = shortest.precision() - shortest.scale() - 1 // of the first digit
    if (exponent < -4 || exponent >= 16) {
        val mantissa = if (unscaled.length == 1) unscaled else unscaled[0] + "." + unscaled.substring(1)
        val digits = Math.abs(exponent).toString().padStart(2, '0')
        return sign + mantissa + "e" + (if (exponent < 0) "-" else "+") + digits
    }
    val plain = shortest.setScale(Math.max(1, shortest.scale()), RoundingMode.UNNECESSARY).toPlainString()
    val trimmed = plain.trimEnd('0')
    return sign + (if (trimmed.endsWith(".")) trimmed + "0" else trimmed)
}

/** Python's `str.lower()`, one code point at a time (no locale rules, unlike `String.toLowerCase`). */
internal fun pyLower(text: String): String {
    val out = StringBuilder(text.length)
    var i = 0
    while (i < text.length) {
        val cp = text.codePointAt(i)
        out.appendCodePoint(Character.toLowerCase(cp))
        i += Character.charCount(cp)
    }
    return out.toString()
}

private fun isPySpace(c: Char): Boolean = Character.isWhitespace(c) || Character.isSpaceChar(c)

/** Python's `str.strip()` (whitespace at both ends). */
internal fun pyStrip(text: String): String = text.trim { isPySpace(it) }

/** Python's `str.split()` with no argument: runs of whitespace separate, empty parts are dropped. */
internal fun pySplit(text: String): List<String> {
    val parts = ArrayList<String>()
    val current = StringBuilder()
    for (c in text) {
        if (isPySpace(c)) {
            if (current.isNotEmpty()) parts.add(current.toString())
            current.setLength(0)
        } else {
            current.append(c)
        }
    }
    if (current.isNotEmpty()) parts.add(current.toString())
    return parts
}

// Python's float() syntax for decimal strings: digits may be grouped with single underscores (PEP 515).
private const val DIGITS = "[0-9](_?[0-9])*"
private val PY_FLOAT = Regex("[+-]?(($DIGITS)(\\.($DIGITS)?)?|\\.$DIGITS)([eE][+-]?$DIGITS)?")
private val PY_SPECIAL = Regex("[+-]?(inf|infinity|nan)", RegexOption.IGNORE_CASE)

/** What Python's `float(text)` returns for a string, null where Python raises ValueError. */
internal fun parsePythonFloat(text: String): Double? {
    val s = pyStrip(text)
    if (PY_FLOAT.matches(s)) return s.replace("_", "").toDouble()
    if (PY_SPECIAL.matches(s)) {
        val negative = s.startsWith("-")
        val body = pyLower(s.trimStart('+', '-'))
        if (body == "nan") return Double.NaN
        return if (negative) Double.NEGATIVE_INFINITY else Double.POSITIVE_INFINITY
    }
    return null
}

/**
 * Python's `format(value, "g")` (or `".{precision}g"`): [precision] significant digits, trailing zeros dropped,
 * exponent form when the exponent is below -4 or at least [precision].
 */
internal fun formatG(value: Double, precision: Int = 6): String {
    if (value.isNaN()) return "nan"
    if (value.isInfinite()) return if (value > 0) "inf" else "-inf"
    val sign = if (value < 0 || (value == 0.0 && 1.0 / value < 0)) "-" else ""
    if (value == 0.0) return sign + "0"
    val rounded = BigDecimal(Math.abs(value)).round(MathContext(precision, RoundingMode.HALF_EVEN))
    val exponent = rounded.precision() - rounded.scale() - 1
    if (exponent < -4 || exponent >= precision) {
        val mantissa = rounded.movePointLeft(exponent).setScale(precision - 1, RoundingMode.HALF_EVEN).toPlainString()
        val digits = Math.abs(exponent).toString().padStart(2, '0')
        return sign + stripZeros(mantissa) + "e" + (if (exponent < 0) "-" else "+") + digits
    }
    val fixed = rounded.setScale(Math.max(0, precision - 1 - exponent), RoundingMode.HALF_EVEN).toPlainString()
    return sign + stripZeros(fixed)
}

private fun stripZeros(text: String): String = if ('.' in text) text.trimEnd('0').trimEnd('.') else text
