package com.melanomaexport.core

import com.google.gson.JsonObject
import com.google.gson.JsonParser
import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertNull
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test
import java.io.File

/**
 * The contract's metadata encoder and parser against core/contract.py: rules first (today's age / sex / site
 * contract and a foreign one with every feature kind), then Python's own encodings and refusals of many cases
 * under several contracts, and Python's refusals of broken contracts, sentence for sentence.
 */
class MetadataTest {
    private val encoder = readSpec(specText()).encoder()
    private val site = encoder.features[2]

    private fun vector(vararg ones: Int, age: Float = 0f): FloatArray {
        val v = FloatArray(12)
        v[0] = age
        for (i in ones) v[i] = 1f
        return v
    }

    @Test
    fun encodesKnownValues() {
        // age (55 - 50) / 20 = 0.25, female = index 3, torso = index 5 + 3.
        assertArrayEquals(vector(3, 8, age = 0.25f), encoder.encode(isicCase(55.0, "female", "torso")), 0f)
        assertArrayEquals(vector(1, 4, 11), encoder.encode(isicCase(null, null, null)), 0f)
        assertArrayEquals(vector(1, 4, 11), encoder.encode(emptyMap()), 0f) // an absent field is missing
        assertArrayEquals(vector(2, 5, age = -2.5f), encoder.encode(isicCase("0", "M", "Head and Neck")), 0f)
        assertEquals(
            listOf("age", "age_missing", "sex_male", "sex_female", "sex_missing", "site_head/neck",
                "site_upper extremity", "site_lower extremity", "site_torso", "site_palms/soles", "site_oral/genital",
                "site_missing"),
            encoder.entries
        )
        assertEquals(listOf(AGE, SEX, SITE), encoder.fields)
    }

    @Test
    fun normalisesCaseUnderscoresAndSpaces() {
        val tokens = encoder.missingTokens
        assertEquals("torso", site.category("  Anterior_TORSO ", tokens))
        assertEquals("oral/genital", site.category("oral   genital", tokens))
        assertEquals("upper extremity", site.category("upper_extremity", tokens))
        assertEquals("female", encoder.features[1].category(" F ", tokens))
        assertEquals("head neck", contractKey("  Head_\tNECK "))
    }

    @Test
    fun missingTokensComeFromTheSpec() {
        for (token in listOf("", "  ", "NaN", "n/a", "Unknown", "none", "NULL")) {
            assertNull("\"$token\" is missing", site.category(token, encoder.missingTokens))
            assertArrayEquals(vector(1, 4, 11), encoder.encode(isicCase(token, token, token)), 0f)
        }
        assertArrayEquals(vector(1, 4, 11), encoder.encode(isicCase(Double.NaN, Double.NaN, Float.NaN)), 0f)
        // Python: float("-nan") is NaN, which counts as missing.
        assertArrayEquals(vector(1, 4, 11), encoder.encode(isicCase("-nan", null, null)), 0f)
        val onlyQuestionMark = JsonParser.parseString("[\"?\"]")
        val custom =
            readSpec(specText { it.getAsJsonObject("metadata").add("missing_tokens", onlyQuestionMark) }).encoder()
        assertArrayEquals(vector(1, 4, 11), custom.encode(isicCase("?", "?", "?")), 0f)
        assertContains(expectContract { custom.encode(isicCase(null, "unknown", null)) }.message, "unknown sex")
    }

    @Test
    fun refusesUnknownCategoriesWithTheAcceptedList() {
        val e = expectContract { encoder.encode(isicCase(40, "male", "mouth")) }
        assertEquals(
            "unknown site \"mouth\": use one of \"head/neck\", \"upper extremity\", \"lower extremity\", \"torso\", " +
                "\"palms/soles\", \"oral/genital\", \"anterior torso\", \"posterior torso\", \"lateral torso\", " +
                "\"head neck\", \"head and neck\", \"palms soles\", \"oral genital\", or leave it empty for missing",
            e.message
        )
        assertEquals(
            "unknown sex \"other\": use one of \"male\", \"female\", \"m\", \"f\", or leave it empty for missing",
            expectContract { encoder.encode(isicCase(40, "other", null)) }.message
        )
    }

    @Test
    fun refusesImpossibleAges() {
        fun refusal(age: Any) = expectContract { encoder.encode(isicCase(age, null, null)) }.message
        assertEquals("age -1 is outside 0-120 years: fix or blank it", refusal(-1))
        assertEquals("age 1000 is outside 0-120 years: fix or blank it", refusal("1e3"))
        assertEquals("age inf is outside 0-120 years: fix or blank it", refusal("inf"))
        assertEquals("age \"fifty\" is not a number: give a number or leave it empty", refusal("fifty"))
        refusal("55f") // Java would read this as a float; Python does not
        refusal("0x10")
        assertEquals(3.5f, encoder.encode(isicCase("120", null, null))[0], 0f)
        assertEquals(-1.975f, encoder.encode(isicCase(" 1_0.5 ", null, null))[0], 0f)
    }

    /** A number is a number or numeric text, never a Boolean; a category is text. Python's repr shows the value. */
    @Test
    fun refusesValuesOfTheWrongTypeAsPythonDoes() {
        fun refusal(case: Map<String, Any?>) = expectContract { encoder.encode(case) }.message
        assertEquals("age True is not a number: give a number or leave it empty", refusal(isicCase(true, null, null)))
        assertEquals("age False is not a number: give a number or leave it empty", refusal(isicCase(false, null, null)))
        assertContains(refusal(isicCase(listOf(55), null, null)), "age [55] is not a number")
        assertContains(refusal(isicCase(intArrayOf(55), null, null)), "age [55] is not a number")
        assertContains(refusal(isicCase(mapOf("years" to 55), null, null)), "age {'years': 55} is not a number")
        assertEquals(
            "site 5 is not text: use one of head/neck, upper extremity, lower extremity, torso, palms/soles, " +
                "oral/genital",
            refusal(isicCase(null, null, 5))
        )
        assertContains(refusal(isicCase(null, null, listOf("torso"))), "site ['torso'] is not text")
        assertContains(refusal(isicCase(null, true, null)), "sex True is not text: use one of male, female")
        assertContains(refusal(isicCase(null, 3.0, null)), "sex 3.0 is not text")
        // Numbers of any type, and numeric text, are numbers.
        for (age in listOf<Any>(55, 55L, 55.0f, java.math.BigDecimal("55"), "55", " 55 ")) {
            assertEquals("$age", 0.25f, encoder.encode(isicCase(age, null, null))[0], 0f)
        }
        // The first feature (in contract order) that refuses its value is the one named.
        assertContains(refusal(isicCase("x", "y", "z")), "age \"x\"")
    }

    /** A contract with every kind: log1p + missing flag + range, log, one-hot with aliases and missing zeros, code
     * with aliases, and an L2 group over a number and a code. */
    private val foreign = parseContract(JsonParser.parseString(FOREIGN_CONTRACT)).encoder(encoder.missingTokens)

    @Test
    fun encodesEveryFeatureKind() {
        assertEquals(
            listOf("lesions", "lesions_missing", "dose", "skin_i", "skin_ii", "skin_iii", "skin_pale", "history"),
            foreign.entries
        )
        assertEquals(listOf("n_lesions", "uv_dose", "fitzpatrick", "family_history"), foreign.fields)
        val case = mapOf("n_lesions" to 3, "uv_dose" to "2.5", "fitzpatrick" to "2", "family_history" to "Y")
        val lesions = (Math.log1p(3.0) - 1.0) / 2.0
        val history = 0.25 // "y" is a code of its own: an explicit code wins over the alias "y" -> "yes"
        val norm = Math.sqrt(lesions * lesions + 0.0 + history * history)
        val expected = floatArrayOf(
            (lesions / norm).toFloat(), 0f, Math.log(2.5).toFloat(), 0f, 1f, 0f, 0f, (history / norm).toFloat()
        )
        assertArrayEquals(expected, foreign.encode(case), 1e-7f)
        // Missing: the number's missing value and flag, no one-hot entry (zeros), the code's missing number.
        val missing = foreign.encode(mapOf("uv_dose" to 1))
        val n = Math.sqrt(1.0 + 1.0 + 1.0)
        val third = (1 / n).toFloat()
        assertArrayEquals(floatArrayOf(-third, third, 0f, 0f, 0f, 0f, 0f, -third), missing, 1e-7f)
        // An explicit category wins over an alias of the same name ("pale" is both).
        assertEquals(1f, foreign.encode(mapOf("fitzpatrick" to " PALE", "uv_dose" to 1))[6], 0f)
        assertEquals(1f, foreign.encode(mapOf("fitzpatrick" to "light", "uv_dose" to 1))[3], 0f)
    }

    @Test
    fun refusesWhatEachKindCannotTake() {
        fun refusal(case: Map<String, Any?>) = expectContract { foreign.encode(case) }.message
        assertEquals("lesions -1 is outside 0-1000 lesions: fix or blank it", refusal(mapOf("n_lesions" to -1)))
        assertEquals("dose 0 is outside the domain of log", refusal(mapOf("uv_dose" to 0)))
        assertEquals("dose -2.5 is outside the domain of log", refusal(mapOf("uv_dose" to "-2.5")))
        assertEquals(
            "unknown skin \"VII\": use one of \"i\", \"ii\", \"iii\", \"pale\", \"1\", \"2\", \"light\", \"pale\", " +
                "or leave it empty for missing",
            refusal(mapOf("uv_dose" to 1, "fitzpatrick" to "VII"))
        )
        assertEquals(
            "unknown history \"maybe\": use one of \"no\", \"yes\", \"y\", \"n\", \"y\", or leave it empty",
            refusal(mapOf("uv_dose" to 1, "family_history" to "maybe"))
        )
        assertEquals(
            "history 1 is not text: use one of \"no\", \"yes\", \"y\", \"n\", \"y\", or leave it empty",
            refusal(mapOf("uv_dose" to 1, "family_history" to 1))
        )
    }

    @Test
    fun refusesBrokenContractsWithPythonsSentences() {
        fun refusal(edit: (JsonObject) -> Unit): String? {
            val contract = JsonParser.parseString(FOREIGN_CONTRACT).asJsonObject
            edit(contract)
            return expectContract { parseContract(contract) }.message
        }
        fun feature(i: Int, contract: JsonObject) = contract.getAsJsonArray("metadata")[i].asJsonObject
        assertEquals(
            "metadata[0].kind is 'numbr': use one of number, one_hot, code",
            refusal { feature(0, it).addProperty("kind", "numbr") }
        )
        assertEquals(
            "metadata[0] has no 'missing': add it (see the contract schema in the README)",
            refusal { feature(0, it).remove("missing") }
        )
        assertEquals(
            "metadata[1] has an unknown field 'categories': allowed are name, kind, field, missing, transform, " +
                "offset, scale, missing_flag, range, bands, unit, description",
            refusal { feature(1, it).add("categories", JsonParser.parseString("[\"a\"]")) }
        )
        assertEquals(
            "metadata[0].scale must be greater than 0, got 0",
            refusal { feature(0, it).addProperty("scale", 0) }
        )
        assertEquals(
            "metadata[0].range must increase, got [5, 1.5]",
            refusal { feature(0, it).add("range", JsonParser.parseString("[5, 1.5]")) }
        )
        assertEquals(
            "metadata[2].aliases['x'] points at 'vii', which is not one of i, ii, iii, pale",
            refusal { feature(2, it).getAsJsonObject("aliases").addProperty("x", "vii") }
        )
        assertEquals(
            "normalize[0].features names 'age', which is not a metadata feature (lesions, dose, skin, history)",
            refusal {
                val group = it.getAsJsonArray("normalize")[0].asJsonObject
                group.add("features", JsonParser.parseString("[\"lesions\", \"age\"]"))
            }
        )
        assertEquals(
            "image.size must be a whole number of pixels from 16 to 2048, got 16.0",
            refusal { it.getAsJsonObject("image").add("size", JsonParser.parseString("16.0")) }
        )
        assertEquals(
            "the contract has no 'decision': add it (see the contract schema in the README)",
            refusal { it.remove("decision") }
        )
    }

    @Test
    fun showsValuesAsPythonsReprAndFormat() {
        val reprs = mapOf<Any?, String>(
            null to "None", true to "True", "it's" to "\"it's\"", "a\\b" to "'a\\\\b'", 55L to "55", 55.0 to "55.0",
            0.1 to "0.1", 1e16 to "1e+16", 1.5e-5 to "1.5e-05", 123456789.125 to "123456789.125", -0.0 to "-0.0",
            1e15 to "1000000000000000.0", 0.0001 to "0.0001", listOf(1L, "a") to "[1, 'a']"
        )
        for ((value, text) in reprs) assertEquals("repr($value)", text, pyRepr(value))
        val cases = mapOf(
            -5.0 to "-5", 130.5 to "130.5", 1e9 to "1e+09", 123456789.0 to "1.23457e+08", 0.0001 to "0.0001",
            0.00001234 to "1.234e-05", 150.123456 to "150.123", 999999.5 to "1e+06", -0.0 to "-0", 120.0 to "120"
        )
        for ((value, text) in cases) assertEquals("format($value, 'g')", text, formatG(value))
        assertEquals("1.234e+04", formatG(12345.0, 4)) // the exact half rounds to even, as Python does
        assertEquals("0.01235", formatG(0.0123456, 4))
    }

    /** Each case Python encoded (or refused) under each contract: meta within 1e-6, or the same error sentence. */
    @Test
    fun matchesPythonEncodings() {
        val dir = Inputs.casesDir()
        val sets = Inputs.manifest().getAsJsonArray("metadata")
        assertTrue("pytest wrote metadata cases", sets.size() > 0)
        val failures = ArrayList<String>()
        var total = 0
        for (set in sets) {
            val spec = readSpec(File(dir, set.asJsonObject.get("spec").asString).readText(), "the test spec")
            val python = spec.encoder()
            for (element in set.asJsonObject.getAsJsonArray("cases")) {
                total += 1
                val item = element.asJsonObject
                val case = caseFromJson(item.getAsJsonObject("case"))
                val label = "${spec.name}: encode(${pyRepr(case)})"
                val error = item.get("error")
                try {
                    val got = python.encode(case)
                    if (error != null && !error.isJsonNull) {
                        failures.add("$label: Python refused it (${error.asString}), Kotlin encoded it")
                        continue
                    }
                    val expected = item.getAsJsonArray("meta").map { it.asFloat }.toFloatArray()
                    if (maxAbsDiff(got, expected) > 1e-6) {
                        failures.add("$label: ${got.toList()} != Python ${expected.toList()}")
                    }
                } catch (e: ContractException) {
                    if (error == null || error.isJsonNull) {
                        failures.add("$label: Kotlin refused it (${e.message}), Python encoded it")
                    } else if (error.asString != e.message) {
                        failures.add("$label: message \"${e.message}\" != Python \"${error.asString}\"")
                    }
                }
            }
        }
        if (failures.isNotEmpty()) fail("${failures.size} of $total differ: " + failures.take(10).joinToString("; "))
    }

    /** Each broken contract Python refused: Kotlin refuses it too, with the same sentence. */
    @Test
    fun matchesPythonContractRefusals() {
        val cases = Inputs.manifest().getAsJsonArray("contracts")
        assertTrue("pytest wrote broken contracts", cases.size() > 0)
        val failures = ArrayList<String>()
        for (element in cases) {
            val item = element.asJsonObject
            val expected = item.get("error").asString
            try {
                parseContract(item.get("contract"))
                failures.add("Kotlin accepted what Python refused ($expected)")
            } catch (e: ContractException) {
                if (e.message != expected) failures.add("\"${e.message}\" != Python \"$expected\"")
            }
        }
        if (failures.isNotEmpty()) {
            fail("${failures.size} of ${cases.size()} differ: " + failures.take(10).joinToString("; "))
        }
    }

    private fun maxAbsDiff(a: FloatArray, b: FloatArray): Double {
        if (a.size != b.size) return Double.POSITIVE_INFINITY
        var worst = 0.0
        for (i in a.indices) {
            if (a[i] == b[i]) continue // infinities included
            worst = Math.max(worst, Math.abs(a[i].toDouble() - b[i].toDouble()))
            if (a[i].isNaN() || b[i].isNaN()) return Double.POSITIVE_INFINITY
        }
        return worst
    }
}

/** A contract with every feature kind (the unit tests above; pytest writes its own for the cross-checks). */
const val FOREIGN_CONTRACT = """
{
  "contract": "melanoma-contract/1", "name": "foreign",
  "image": {"size": 16, "channels": "BGR", "mean": [0.4, 0.45, 0.5], "std": [0.2, 0.2, 0.2], "resize": "bilinear"},
  "metadata": [
    {"name": "lesions", "kind": "number", "field": "n_lesions", "transform": "log1p", "offset": 1.0, "scale": 2.0,
     "missing": -1, "missing_flag": true, "range": [0, 1000], "unit": "lesions", "description": "number of naevi"},
    {"name": "dose", "kind": "number", "field": "uv_dose", "transform": "log", "missing": 0},
    {"name": "skin", "kind": "one_hot", "field": "fitzpatrick", "categories": ["I", "II", "III", "Pale"],
     "aliases": {"1": "i", "2": "II", "light": "i", "pale": "iii"}, "missing": "zeros"},
    {"name": "history", "kind": "code", "field": "family_history", "codes": {"no": 0, "yes": 1, "Y": 0.25},
     "aliases": {"n": "no", "y": "yes"}, "missing": -1}
  ],
  "normalize": [{"kind": "l2", "features": ["lesions", "history"]}],
  "output": {"kind": "softmax", "classes": 3, "positive": [2]},
  "decision": {"threshold": 0.4},
  "tta": ["hflip"]
}
"""
