package com.melanomaexport.core

import java.math.BigDecimal
import java.math.MathContext
import java.math.RoundingMode

/**
 * Patient metadata -> the `meta` vector, exactly as core/metadata.py's `MetadataEncoder.encode` builds it:
 * `[age scaled, age_missing, sex one-hot..., sex_missing, site one-hot..., site_missing]`, where
 * age scaled = (age - center) / scale (0 when missing). Everything (categories, aliases, missing tokens, age
 * centre, scale and valid range) comes from the spec's metadata contract.
 *
 * Values are taken as Python takes them: null, NaN or a string whose trimmed lower-case form is one of the
 * spec's missing tokens means missing; an age may be a number or a numeric string. Nothing else is coerced: an
 * age that is a Boolean, a list or any other object is refused, and so is a sex or site that is not a String.
 */
class MetadataEncoder(val contract: MetadataContract) {
    /** Names of the `meta` entries, in order. */
    val featureNames: List<String>
        get() = contract.featureNames

    /** Length K of the `meta` vector. */
    val size: Int
        get() = contract.size

    /** Whether [value] counts as missing (core/metadata.py: `_is_missing`). */
    fun isMissing(value: Any?): Boolean {
        if (value == null) return true
        if (value is Double && value.isNaN()) return true
        if (value is Float && value.isNaN()) return true
        return value is String && pyLower(pyStrip(value)) in contract.missingTokens
    }

    /** The canonical sex, null when missing; throws ContractException when the spec does not know it. */
    fun canonicalSex(sex: Any?): String? = canonical(sex, contract.sex, "sex")

    /** The canonical body site, null when missing; throws ContractException when the spec does not know it. */
    fun canonicalSite(site: Any?): String? = canonical(site, contract.site, "body site")

    private fun canonical(value: Any?, category: CategoryContract, what: String): String? {
        if (isMissing(value)) return null
        val accepted = (category.categories + category.aliases.keys).joinToString(", ") { "\"$it\"" }
        if (value !is String) {
            // A number, Boolean, Char or list is refused, not turned into text (a Char 'm' is not "male").
            throw ContractException(
                "$what ${describeValue(value)} (${kindOf(value)}) is not text: use one of $accepted, " +
                    "or leave it empty for missing"
            )
        }
        val key = pySplit(pyLower(pyStrip(value)).replace('_', ' ')).joinToString(" ")
        if (key in category.categories) return key
        val alias = category.aliases[key]
        if (alias != null) return alias
        throw ContractException("unknown $what \"$value\": use one of $accepted, or leave it empty for missing")
    }

    /**
     * The age in years, null when missing (core/metadata.py: `check_age`).
     *
     * @throws ContractException when it is not a number (a Boolean, a list or another object included) or
     *     outside the spec's valid range.
     */
    fun checkAge(age: Any?): Double? {
        if (isMissing(age)) return null
        val value: Double = when (age) {
            is Number -> age.toDouble()
            is String -> parsePythonFloat(age)
                ?: throw ContractException("age \"$age\" is not a number: give years (e.g. 55) or leave it empty")
            else -> throw ContractException(
                "age ${describeValue(age)} (${kindOf(age)}) is not a number: give years (e.g. 55) or leave it empty"
            )
        }
        if (value.isNaN()) return null
        if (!(contract.age.min <= value && value <= contract.age.max)) {
            throw ContractException(
                "age ${formatG(value)} is outside ${formatG(contract.age.min)}-${formatG(contract.age.max)} years: " +
                    "fix or blank it"
            )
        }
        return value
    }

    /** Encodes one patient (any of the three may be null = missing); returns float32 [K]. */
    fun encode(age: Any?, sex: Any?, site: Any?): FloatArray {
        val vec = FloatArray(size)
        val years = checkAge(age)
        if (years == null) {
            vec[1] = 1f
        } else {
            // Computed in double and rounded once to float32, as numpy stores the Python float.
            vec[0] = ((years - contract.age.center) / contract.age.scale).toFloat()
        }
        var offset = 2
        val sexes = contract.sex.categories
        val sexValue = canonicalSex(sex)
        vec[offset + (if (sexValue == null) sexes.size else sexes.indexOf(sexValue))] = 1f
        offset += sexes.size + 1
        val sites = contract.site.categories
        val siteValue = canonicalSite(site)
        vec[offset + (if (siteValue == null) sites.size else sites.indexOf(siteValue))] = 1f
        return vec
    }
}

/** A value as a message shows it: strings quoted, lists and arrays with their items, anything else as it prints. */
internal fun describeValue(value: Any?): String = when (value) {
    null -> "null"
    is String -> "\"$value\""
    is Char -> "'$value'"
    is Array<*> -> value.contentDeepToString()
    is IntArray -> value.contentToString()
    is LongArray -> value.contentToString()
    is FloatArray -> value.contentToString()
    is DoubleArray -> value.contentToString()
    is BooleanArray -> value.contentToString()
    else -> value.toString()
}

/** What kind of value [value] is, in words ("a boolean", "a list", ...), for messages. */
internal fun kindOf(value: Any?): String = when {
    value == null -> "null"
    value is Boolean -> "a boolean"
    value is Number -> "a number"
    value is Char -> "a character"
    value is Collection<*> || value.javaClass.isArray -> "a list"
    value is Map<*, *> -> "a map"
    else -> "a value of type ${value.javaClass.simpleName}"
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

/** Python's `format(value, "g")`: 6 significant digits, trailing zeros dropped, exponent form outside 1e-4..1e6. */
internal fun formatG(value: Double): String {
    if (value.isNaN()) return "nan"
    if (value.isInfinite()) return if (value > 0) "inf" else "-inf"
    val sign = if (value < 0 || (value == 0.0 && 1.0 / value < 0)) "-" else ""
    if (value == 0.0) return sign + "0"
    val rounded = BigDecimal(Math.abs(value)).round(MathContext(6, RoundingMode.HALF_EVEN))
    val exponent = rounded.precision() - rounded.scale() - 1
    if (exponent < -4 || exponent >= 6) {
        val mantissa = stripZeros(rounded.movePointLeft(exponent).setScale(5, RoundingMode.HALF_EVEN).toPlainString())
        val digits = Math.abs(exponent).toString().padStart(2, '0')
        return sign + mantissa + "e" + (if (exponent < 0) "-" else "+") + digits
    }
    return sign + stripZeros(rounded.setScale(Math.max(0, 5 - exponent), RoundingMode.HALF_EVEN).toPlainString())
}

private fun stripZeros(text: String): String = if ('.' in text) text.trimEnd('0').trimEnd('.') else text
