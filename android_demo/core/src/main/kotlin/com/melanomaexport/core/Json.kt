package com.melanomaexport.core

import com.google.gson.Gson
import com.google.gson.JsonArray
import com.google.gson.JsonElement
import com.google.gson.JsonObject
import com.google.gson.JsonParseException
import com.google.gson.JsonPrimitive
import com.google.gson.stream.JsonReader
import com.google.gson.stream.JsonToken
import java.io.IOException
import java.io.StringReader

/**
 * Strict JSON parsing (gson's own parser is lenient: it would accept single quotes, comments or NaN, which the
 * Python writer never produces), plus typed field access whose errors read as one sentence.
 */
internal object Json {
    private val elementAdapter = Gson().getAdapter(JsonElement::class.java)

    /** Parses [text] as one strict JSON document; [what] names it in the error ("the model spec"). */
    fun parse(text: String, what: String): JsonElement {
        val reader = JsonReader(StringReader(text))
        reader.isLenient = false
        try {
            val element = elementAdapter.read(reader)
            if (reader.peek() != JsonToken.END_DOCUMENT) {
                throw ContractException("$what is not valid JSON: unexpected text after the first value")
            }
            return element
        } catch (e: IOException) {
            throw ContractException("$what is not valid JSON (${firstLine(e.message)})")
        } catch (e: JsonParseException) {
            throw ContractException("$what is not valid JSON (${firstLine(e.message)})")
        } catch (e: IllegalStateException) {
            throw ContractException("$what is not valid JSON (${firstLine(e.message)})")
        }
    }

    /** gson's message without its troubleshooting link and advice to parse leniently. */
    private fun firstLine(message: String?): String =
        (message ?: "unreadable").lineSequence().first().substringBefore(" See https://")
            .replace("Use JsonReader.setLenient(true) to accept malformed JSON at", "malformed JSON at").trim()
}

/**
 * Typed, path-aware access to one JSON object of the spec (e.g. path "image" for the image contract). A getter
 * returns the value the spec holds or throws a ContractException naming the field: there are no defaults, so a
 * reader cannot fill in a field the spec lacks (only [optionalString], for fields that are merely shown).
 */
internal class Fields(val obj: JsonObject, private val path: String, private val owner: String) {
    private fun where(name: String) = if (path == "") name else "$path.$name"

    /**
     * The error for field [name]: absent (or null) -> "has no image.layout"; there but not [expected] -> "has no
     * valid image.layout (a string expected)". Either way one sentence naming the field; nothing is filled in.
     */
    private fun bad(name: String, expected: String): ContractException =
        if (!has(name)) {
            ContractException("$owner has no ${where(name)}: re-export the model with python -m export.all")
        } else {
            ContractException("$owner has no valid ${where(name)} ($expected expected): re-export the model")
        }

    fun has(name: String): Boolean = obj.has(name) && !obj.get(name).isJsonNull

    /** Refuses fields the Python ModelSpec does not know (it refuses them too). */
    fun onlyKnown(known: Set<String>) {
        val unknown = obj.keySet().filter { it !in known }.sorted()
        if (unknown.isNotEmpty()) {
            val names = unknown.joinToString(", ") { where(it) }
            throw ContractException(
                "$owner has fields this app does not know ($names): use a spec of schema version $SPEC_SCHEMA_VERSION"
            )
        }
    }

    private fun primitive(name: String): JsonPrimitive? {
        val value = obj.get(name)
        return if (value != null && value.isJsonPrimitive) value.asJsonPrimitive else null
    }

    fun string(name: String): String {
        val p = primitive(name)
        if (p == null || !p.isString) throw bad(name, "a string")
        return p.asString
    }

    /** A field only shown to the user (never one that shapes an input or the decision): null when absent. */
    fun optionalString(name: String): String? = if (has(name)) string(name) else null

    fun double(name: String): Double {
        val p = primitive(name)
        if (p == null || !p.isNumber) throw bad(name, "a number")
        val value = p.asDouble
        if (value.isNaN() || value.isInfinite()) throw bad(name, "a finite number")
        return value
    }

    fun int(name: String): Int {
        val value = double(name)
        if (value != Math.floor(value) || value < Int.MIN_VALUE || value > Int.MAX_VALUE) {
            throw bad(name, "a whole number")
        }
        return value.toInt()
    }

    fun bool(name: String): Boolean {
        val p = primitive(name)
        if (p == null || !p.isBoolean) throw bad(name, "true or false")
        return p.asBoolean
    }

    fun obj(name: String): Fields {
        val value = obj.get(name)
        if (value == null || !value.isJsonObject) throw bad(name, "an object")
        return Fields(value.asJsonObject, where(name), owner)
    }

    private fun array(name: String): JsonArray {
        val value = obj.get(name)
        if (value == null || !value.isJsonArray) throw bad(name, "a list")
        return value.asJsonArray
    }

    fun strings(name: String): List<String> {
        val out = ArrayList<String>()
        for (item in array(name)) {
            if (!item.isJsonPrimitive || !item.asJsonPrimitive.isString) throw bad(name, "a list of strings")
            out.add(item.asString)
        }
        return out
    }

    fun doubles(name: String): List<Double> {
        val out = ArrayList<Double>()
        for (item in array(name)) {
            if (!item.isJsonPrimitive || !item.asJsonPrimitive.isNumber) throw bad(name, "a list of numbers")
            out.add(item.asDouble)
        }
        return out
    }

    fun objects(name: String): List<Fields> {
        val out = ArrayList<Fields>()
        for ((i, item) in array(name).withIndex()) {
            if (!item.isJsonObject) throw bad(name, "a list of objects")
            out.add(Fields(item.asJsonObject, "${where(name)}[$i]", owner))
        }
        return out
    }

    /** A JSON object of string -> string, in file order. */
    fun stringMap(name: String): Map<String, String> {
        val map = LinkedHashMap<String, String>()
        for ((key, value) in obj(name).obj.entrySet()) {
            if (!value.isJsonPrimitive || !value.asJsonPrimitive.isString) throw bad(name, "an object of strings")
            map[key] = value.asString
        }
        return map
    }
}
