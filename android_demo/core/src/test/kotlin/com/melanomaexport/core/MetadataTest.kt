package com.melanomaexport.core

import com.google.gson.JsonElement
import com.google.gson.JsonParser
import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertNull
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test
import java.io.File

/** The `meta` encoder against core/metadata.py: rules first, then Python's own encodings of many inputs. */
class MetadataTest {
    private val encoder = readSpec(specText()).encoder()

    private fun vector(vararg ones: Int, age: Float = 0f): FloatArray {
        val v = FloatArray(12)
        v[0] = age
        for (i in ones) v[i] = 1f
        return v
    }

    @Test
    fun encodesKnownValues() {
        // age (55 - 50) / 20 = 0.25, female = index 3, torso = index 5 + 3.
        assertArrayEquals(vector(3, 8, age = 0.25f), encoder.encode(55.0, "female", "torso"), 0f)
        assertArrayEquals(vector(1, 4, 11), encoder.encode(null, null, null), 0f)
        assertArrayEquals(vector(2, 5, age = -2.5f), encoder.encode("0", "M", "Head and Neck"), 0f)
    }

    @Test
    fun normalisesCaseUnderscoresAndSpaces() {
        assertEquals("torso", encoder.canonicalSite("  Anterior_TORSO "))
        assertEquals("oral/genital", encoder.canonicalSite("oral   genital"))
        assertEquals("upper extremity", encoder.canonicalSite("upper_extremity"))
        assertEquals("female", encoder.canonicalSex(" F "))
    }

    @Test
    fun missingTokensComeFromTheSpec() {
        for (token in listOf("", "  ", "NaN", "n/a", "Unknown", "none", "NULL")) {
            assertNull("\"$token\" is missing", encoder.canonicalSite(token))
            assertNull("\"$token\" is missing", encoder.checkAge(token))
        }
        assertNull(encoder.checkAge(Double.NaN))
        assertNull(encoder.checkAge("-nan")) // Python: float("-nan") is NaN, which counts as missing
        val onlyQuestionMark = JsonParser.parseString("[\"?\"]")
        val custom =
            readSpec(specText { it.getAsJsonObject("metadata").add("missing_tokens", onlyQuestionMark) }).encoder()
        assertNull(custom.canonicalSex("?"))
        expectContract { custom.canonicalSex("unknown") }
    }

    @Test
    fun refusesUnknownCategoriesWithTheAcceptedList() {
        val e = expectContract { encoder.encode(40, "male", "mouth") }
        assertEquals(
            "unknown body site \"mouth\": use one of \"head/neck\", \"upper extremity\", \"lower extremity\", " +
                "\"torso\", \"palms/soles\", \"oral/genital\", \"anterior torso\", \"head and neck\", " +
                "\"oral genital\", or leave it empty for missing",
            e.message
        )
        assertContains(expectContract { encoder.encode(40, "other", null) }.message, "unknown sex \"other\"")
    }

    @Test
    fun refusesImpossibleAges() {
        fun refusal(age: Any) = expectContract { encoder.checkAge(age) }.message
        assertEquals("age -1 is outside 0-120 years: fix or blank it", refusal(-1))
        assertEquals("age 1000 is outside 0-120 years: fix or blank it", refusal("1e3"))
        assertEquals("age inf is outside 0-120 years: fix or blank it", refusal("inf"))
        assertEquals(
            "age \"fifty\" is not a number: give years (e.g. 55) or leave it empty",
            expectContract { encoder.checkAge("fifty") }.message
        )
        expectContract { encoder.checkAge("55f") } // Java would read this as a float; Python does not
        expectContract { encoder.checkAge("0x10") }
        assertEquals(120.0, encoder.checkAge("120")!!, 0.0)
        assertEquals(10.5, encoder.checkAge(" 1_0.5 ")!!, 0.0)
    }

    /** An age is a number or numeric text: a Boolean, a list or another object is refused, naming the age. */
    @Test
    fun refusesAgesThatAreNotNumbers() {
        fun refusal(age: Any) = expectContract { encoder.encode(age, null, null) }.message
        assertEquals("age true (a boolean) is not a number: give years (e.g. 55) or leave it empty", refusal(true))
        assertEquals("age false (a boolean) is not a number: give years (e.g. 55) or leave it empty", refusal(false))
        assertContains(refusal(listOf(55)), "age [55] (a list) is not a number")
        assertContains(refusal(arrayOf(55)), "age [55] (a list) is not a number")
        assertContains(refusal(intArrayOf(55)), "age [55] (a list) is not a number")
        assertContains(refusal(mapOf("years" to 55)), "age {years=55} (a map) is not a number")
        assertContains(refusal('5'), "age '5' (a character) is not a number")
        assertContains(refusal(Any()), "(a value of type Object) is not a number")
        // Numbers of any type, and numeric text, are ages.
        assertEquals(55.0, encoder.checkAge(55)!!, 0.0)
        assertEquals(55.0, encoder.checkAge(55L)!!, 0.0)
        assertEquals(55.5, encoder.checkAge(55.5f)!!, 0.0)
        assertEquals(55.0, encoder.checkAge(java.math.BigDecimal("55"))!!, 0.0)
    }

    /** A sex or body site is text: a number, Boolean, Char or list is refused, not turned into text. */
    @Test
    fun refusesSexAndSiteThatAreNotText() {
        val site = expectContract { encoder.encode(null, null, 5) }.message
        assertContains(site, "body site 5 (a number) is not text: use one of \"head/neck\"", "or leave it empty")
        val list = expectContract { encoder.encode(null, null, listOf("torso")) }.message
        assertContains(list, "body site [torso] (a list) is not text")
        assertContains(expectContract { encoder.encode(null, 'm', null) }.message, "sex 'm' (a character) is not text")
        assertContains(expectContract { encoder.encode(null, true, null) }.message, "sex true (a boolean) is not text")
        assertContains(expectContract { encoder.canonicalSite(3.0) }.message, "body site 3.0 (a number)")
        // NaN is missing, as in Python; text still goes through the aliases.
        assertArrayEquals(vector(1, 4, 11), encoder.encode(Double.NaN, Double.NaN, Float.NaN), 0f)
        assertEquals("male", encoder.canonicalSex("m"))
    }

    @Test
    fun formatsNumbersLikePythonG() {
        val cases = mapOf(
            -5.0 to "-5", 130.5 to "130.5", 1e9 to "1e+09", 123456789.0 to "1.23457e+08", 0.0001 to "0.0001",
            0.00001234 to "1.234e-05", 150.123456 to "150.123", 999999.5 to "1e+06", -0.0 to "-0", 120.0 to "120"
        )
        for ((value, text) in cases) assertEquals("format($value, 'g')", text, formatG(value))
    }

    /** Each (age, sex, site) Python encoded (or refused): the same vector bits, or the same error sentence. */
    @Test
    fun matchesPythonEncodings() {
        val dir = Inputs.casesDir()
        val metadata = Inputs.manifest().getAsJsonObject("metadata")
        val spec = readSpec(File(dir, metadata.get("spec").asString).readText(), "the test spec")
        val python = spec.encoder()
        val cases = metadata.getAsJsonArray("cases")
        assertTrue("pytest wrote metadata cases", cases.size() > 0)
        val failures = ArrayList<String>()
        for (element in cases) {
            val case = element.asJsonObject
            val raw = listOf(value(case.get("age")), value(case.get("sex")), value(case.get("site")))
            val label = "encode(${raw.joinToString(", ") { if (it is String) "\"$it\"" else "$it" }})"
            val error = case.get("error")
            try {
                val got = python.encode(raw[0], raw[1], raw[2])
                if (error != null && !error.isJsonNull) {
                    failures.add("$label: Python refused it (${error.asString}), Kotlin encoded it")
                    continue
                }
                val expected = case.getAsJsonArray("meta").map { it.asFloat }.toFloatArray()
                if (!expected.contentEquals(got)) failures.add("$label: ${got.toList()} != Python ${expected.toList()}")
            } catch (e: ContractException) {
                if (error == null || error.isJsonNull) {
                    failures.add("$label: Kotlin refused it (${e.message}), Python encoded it")
                } else if (error.asString != e.message) {
                    failures.add("$label: message \"${e.message}\" != Python \"${error.asString}\"")
                }
            }
        }
        if (failures.isNotEmpty()) {
            fail("${failures.size} of ${cases.size()} differ: " + failures.take(10).joinToString("; "))
        }
    }

    private fun value(element: JsonElement?): Any? = when {
        element == null || element.isJsonNull -> null
        element.asJsonPrimitive.isNumber -> element.asDouble
        else -> element.asString
    }
}
