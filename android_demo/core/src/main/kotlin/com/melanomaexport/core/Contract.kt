package com.melanomaexport.core

import com.google.gson.JsonElement

/*
 * The model's own contract (`melanoma-contract/1`), which every spec of schema 2 carries as `contract`: its image
 * rules, typed metadata features, output head and decision rule. This is core/contract.py's parser
 * (`Contract.from_dict`) ported rule for rule, with the same error sentences word for word (values shown as
 * Python's repr shows them), so that the phone refuses exactly the contracts Python refuses, for the same reason.
 *
 * Schema (every field required unless marked optional; unknown fields are refused):
 *   contract   "melanoma-contract/1"
 *   name       the model's name
 *   image      size, channels "RGB" | "BGR", mean / std (3 numbers each, or both null), resize "pillow" | "bilinear"
 *   metadata   a list of features {name, kind, field, missing, ...}: number (optional transform "none", offset 0,
 *              scale 1, missing_flag false, range, bands, unit "", description ""), one_hot (categories, missing
 *              "column" | "zeros", optional aliases {}, description ""), code (codes, missing, optional aliases {},
 *              description "")
 *   normalize  optional list of {kind: "l2", features: [names]}
 *   output     {kind: "sigmoid"} | {kind: "softmax", classes, positive}
 *   decision   {threshold} | {rule: "sensitivity", target} | {rule: "youden"}
 *   tta        optional list of "hflip" / "vflip"
 * The defaults of the optional fields are part of the schema (core/contract.py applies the same ones); a field
 * the schema requires is never filled in.
 */

/** The contract schema this port reads (core/contract.py: SCHEMA). */
const val CONTRACT_SCHEMA = "melanoma-contract/1"

/** The test-time augmentations a contract may list (core/contract.py: TTA). */
val TTA_STEPS = listOf("hflip", "vflip")

/** The contract's image rules (what the model itself takes; the exported graph folds channels and mean / std in). */
class ContractImage(
    val size: Int,
    /** "RGB" or "BGR". */
    val channels: String,
    /** In the order of [channels]; null when the model takes v / 255. */
    val mean: List<Double>?,
    val std: List<Double>?,
    /** "pillow" (antialiased bilinear) or "bilinear" (cv2.resize INTER_LINEAR). */
    val resize: String
)

/** A validated melanoma-contract/1 (see the top of this file). */
class Contract(
    val name: String,
    val image: ContractImage,
    val features: List<Feature>,
    /** The L2 `normalize` groups, by feature name (empty when the contract has none). */
    val groups: List<List<String>>,
    /** "sigmoid" or "softmax". */
    val outputKind: String,
    val tta: List<String>
) {
    /** The metadata encoder the contract describes, with the spec's missing tokens. */
    fun encoder(missingTokens: List<String>): ContractEncoder = ContractEncoder(features, groups, missingTokens)
}

/**
 * Validates a contract (core/contract.py: `Contract.from_dict`).
 *
 * @throws ContractException with Python's ContractError sentence, naming the first bad field.
 */
fun parseContract(json: JsonElement): Contract = parseContract(pyValue(json))

internal fun parseContract(data: Any?): Contract {
    val top = required(
        data, listOf("contract", "name", "image", "metadata", "output", "decision"), "the contract",
        listOf("normalize", "tta")
    )
    if (top["contract"] != CONTRACT_SCHEMA) {
        fail("the contract's \"contract\" is ${pyRepr(top["contract"])}: this toolkit reads \"$CONTRACT_SCHEMA\"")
    }
    val name = text(top["name"], "name")
    val image = image(top["image"])
    val metadata = top["metadata"] as? List<*> ?: fail("metadata must be a list of features (it may be empty)")
    val features = metadata.mapIndexed { i, f -> feature(f, "metadata[$i]") }
    val names = features.map { it.name }
    if (names.toSet().size != names.size) fail("metadata names a feature twice: every feature needs its own name")
    val groups = ArrayList<List<String>>()
    for ((i, group) in items(top, "normalize").withIndex()) {
        val g = required(group, listOf("kind", "features"), "normalize[$i]")
        if (g["kind"] != "l2") fail("normalize[$i].kind is ${pyRepr(g["kind"])}: only \"l2\" is defined")
        val listed = g["features"]
        if (listed !is List<*> || listed.isEmpty()) {
            fail("normalize[$i].features must be a non-empty list of metadata feature names")
        }
        val unknown = listed.filter { it !is String || it !in names }
        if (unknown.isNotEmpty()) {
            val known = if (names.isEmpty()) "there are none" else names.joinToString(", ")
            fail("normalize[$i].features names ${pyRepr(unknown[0])}, which is not a metadata feature ($known)")
        }
        groups.add(listed.map { it as String })
    }
    val outputKind = output(top["output"])
    decision(top["decision"])
    val tta = ArrayList<String>()
    for ((i, step) in items(top, "tta").withIndex()) {
        if (step !is String || step !in TTA_STEPS) {
            fail("tta[$i] is ${pyRepr(step)}: use ${TTA_STEPS.joinToString(" or ")}")
        }
        tta.add(step)
    }
    return Contract(name, image, features, groups, outputKind, tta)
}

private fun fail(message: String): Nothing = throw ContractException(message)

/** core/contract.py: `_require`: an object with [keys], and nothing beyond them and [optional]. */
private fun required(
    data: Any?,
    keys: List<String>,
    where: String,
    optional: List<String> = emptyList()
): Map<String, Any?> {
    if (data !is Map<*, *>) fail("$where must be an object, got ${pyTypeName(data)}")
    @Suppress("UNCHECKED_CAST")
    val map = data as Map<String, Any?>
    val missing = keys.filter { !map.containsKey(it) }
    if (missing.isNotEmpty()) {
        fail("$where has no ${pyRepr(missing[0])}: add it (see the contract schema in the README)")
    }
    val unknown = map.keys.filter { it !in keys && it !in optional }.sorted()
    if (unknown.isNotEmpty()) {
        fail("$where has an unknown field ${pyRepr(unknown[0])}: allowed are ${(keys + optional).joinToString(", ")}")
    }
    return map
}

/** An optional field's value, or its documented default when the field is absent (null stays null). */
private fun optional(data: Map<String, Any?>, key: String, default: Any?): Any? =
    if (data.containsKey(key)) data[key] else default

/** What Python's `for x in data.get(key, [])` walks: a list's items, an object's keys, a string's characters. */
private fun items(data: Map<String, Any?>, key: String): List<Any?> {
    val value = optional(data, key, emptyList<Any?>())
    return value as? List<*> ?: fail("$key must be a list, got ${pyTypeName(value)}")
}

/** A Python int (not a bool, not a float). */
private fun isWhole(value: Any?): Boolean =
    value is Long || value is Int || value is Short || value is Byte || value is java.math.BigInteger

/** A whole number as a Long, or null when it does not fit (a BigInteger past 2^63, always out of any range here). */
private fun whole(value: Any?): Long? = if (value is java.math.BigInteger) null else (value as Number).toLong()

/** core/contract.py: `_number`. */
private fun number(value: Any?, where: String, positive: Boolean = false): Double {
    if (value !is Number || !value.toDouble().isFinite()) fail("$where must be a finite number, got ${pyRepr(value)}")
    val x = value.toDouble()
    if (positive && x <= 0) fail("$where must be greater than 0, got ${pyRepr(value)}")
    return x
}

/** core/contract.py: `_text`. */
private fun text(value: Any?, where: String): String {
    if (value !is String || pyStrip(value).isEmpty()) fail("$where must be a non-empty string, got ${pyRepr(value)}")
    return value
}

/** core/contract.py: `_numbers`: [count] (or one or more) numbers, strictly increasing. */
private fun numbers(value: Any?, where: String, count: Int? = null): List<Double> {
    if (value !is List<*> || (count != null && value.size != count) || value.isEmpty()) {
        fail("$where must be a list of ${count ?: "one or more"} numbers, got ${pyRepr(value)}")
    }
    val numbers = value.mapIndexed { i, v -> number(v, "$where[$i]") }
    if (numbers.zipWithNext().any { it.second <= it.first }) fail("$where must increase, got ${pyRepr(value)}")
    return numbers
}

/** core/contract.py: `_feature`. */
private fun feature(data: Any?, where: String): Feature {
    val base = listOf("name", "kind", "field", "missing")
    val kind = if (data is Map<*, *>) data["kind"] else data
    if (data !is Map<*, *> || kind !is String || kind !in FEATURE_KINDS) {
        fail("$where.kind is ${pyRepr(kind)}: use one of ${FEATURE_KINDS.joinToString(", ")}")
    }
    @Suppress("UNCHECKED_CAST")
    val map = data as Map<String, Any?>
    val name = text(map["name"], "$where.name")
    val description = optional(map, "description", "")
    if (description !is String) fail("$where.description must be text, got ${pyRepr(description)}")
    if (kind == "number") {
        val allowed = listOf("transform", "offset", "scale", "missing_flag", "range", "bands", "unit", "description")
        required(map, base, where, allowed)
        val unit = optional(map, "unit", "")
        if (unit !is String) fail("$where.unit must be text, got ${pyRepr(unit)}")
        val transform = optional(map, "transform", "none")
        if (transform !is String || transform !in TRANSFORMS) {
            fail("$where.transform is ${pyRepr(transform)}: use one of ${TRANSFORMS.joinToString(", ")}")
        }
        val flag = optional(map, "missing_flag", false)
        if (flag !is Boolean) fail("$where.missing_flag must be true or false, got ${pyRepr(flag)}")
        // In Python's order: field, missing, offset, scale, range, bands (the first bad one is the one named).
        val field = text(map["field"], "$where.field")
        val missing = number(map["missing"], "$where.missing")
        val offset = number(optional(map, "offset", 0.0), "$where.offset")
        val scale = number(optional(map, "scale", 1.0), "$where.scale", positive = true)
        val range = if (map.containsKey("range")) numbers(map["range"], "$where.range", 2) else null
        val bands = if (map.containsKey("bands")) numbers(map["bands"], "$where.bands") else emptyList()
        return Feature(
            name, kind, field, missingValue = missing, transform = transform, offset = offset, scale = scale,
            missingFlag = flag, range = range, bands = bands, unit = unit, description = description
        )
    }
    if (kind == "one_hot") {
        required(map, base + "categories", where, listOf("aliases", "description"))
        val categories = categories(map["categories"], "$where.categories")
        val missing = map["missing"]
        if (missing != "column" && missing != "zeros") {
            fail("$where.missing is ${pyRepr(missing)}: use \"column\" or \"zeros\"")
        }
        val aliases = aliases(optional(map, "aliases", emptyMap<String, Any?>()), categories, "$where.aliases")
        val field = text(map["field"], "$where.field")
        return Feature(
            name, kind, field, missingRule = missing as String, categories = categories, aliases = aliases,
            description = description
        )
    }
    required(map, base + "codes", where, listOf("aliases", "description"))
    val codes = map["codes"]
    if (codes !is Map<*, *> || codes.isEmpty()) fail("$where.codes must be a non-empty object of value -> number")
    val table = LinkedHashMap<String, Double>() // a key written twice keeps its first place and its last number
    for ((key, value) in codes) table[contractKey(key)] = number(value, "$where.codes[${pyRepr(key)}]")
    val aliases = aliases(optional(map, "aliases", emptyMap<String, Any?>()), table.keys.toList(), "$where.aliases")
    val field = text(map["field"], "$where.field")
    val missing = number(map["missing"], "$where.missing")
    return Feature(
        name, kind, field, missingValue = missing, codes = table, aliases = aliases, description = description
    )
}

/** core/contract.py: `_categories`: a non-empty list of distinct names, as [contractKey] writes them. */
private fun categories(value: Any?, where: String): List<String> {
    if (value !is List<*> || value.isEmpty()) fail("$where must be a non-empty list of category names")
    val keys = value.mapIndexed { i, c -> contractKey(text(c, "$where[$i]")) }
    if (keys.toSet().size != keys.size) {
        fail("$where lists a category twice (names compare case- and space-insensitively)")
    }
    return keys
}

/** core/contract.py: `_aliases`: alias -> one of [targets], both as [contractKey] writes them. */
private fun aliases(value: Any?, targets: List<String>, where: String): Map<String, String> {
    if (value !is Map<*, *>) fail("$where must be an object of alias -> category")
    val out = LinkedHashMap<String, String>()
    for ((alias, target) in value) {
        if (contractKey(target) !in targets) {
            val names = targets.joinToString(", ")
            fail("$where[${pyRepr(alias)}] points at ${pyRepr(target)}, which is not one of $names")
        }
        out[contractKey(alias)] = contractKey(target)
    }
    return out
}

/** core/contract.py: `_image`. */
private fun image(data: Any?): ContractImage {
    val image = required(data, listOf("size", "channels", "mean", "std", "resize"), "image")
    val size = image["size"]
    val pixels = if (isWhole(size)) whole(size) else null
    if (pixels == null || pixels < 16 || pixels > 2048) {
        fail("image.size must be a whole number of pixels from 16 to 2048, got ${pyRepr(size)}")
    }
    val channels = image["channels"]
    if (channels != "RGB" && channels != "BGR") fail("image.channels is ${pyRepr(channels)}: use \"RGB\" or \"BGR\"")
    if ((image["mean"] == null) != (image["std"] == null)) {
        fail("image.mean and image.std must both be given, or both be null (the model takes v / 255)")
    }
    val stats = HashMap<String, List<Double>>()
    for (key in listOf("mean", "std")) {
        val values = image[key] ?: continue
        if (values !is List<*> || values.size != 3) {
            fail("image.$key must be 3 numbers (one per channel, in the order of image.channels) or null")
        }
        stats[key] = values.mapIndexed { i, v -> number(v, "image.$key[$i]", positive = key == "std") }
    }
    val resize = image["resize"]
    if (resize != "pillow" && resize != "bilinear") {
        fail("image.resize is ${pyRepr(resize)}: use \"pillow\" (antialiased) or \"bilinear\"")
    }
    return ContractImage(pixels.toInt(), channels as String, stats["mean"], stats["std"], resize as String)
}

/** core/contract.py: `_output`; returns the kind. */
private fun output(data: Any?): String {
    val kind = if (data is Map<*, *>) data["kind"] else data
    if (data !is Map<*, *> || (kind != "sigmoid" && kind != "softmax")) {
        fail("output.kind is ${pyRepr(kind)}: use \"sigmoid\" (one logit) or \"softmax\"")
    }
    if (kind == "sigmoid") {
        required(data, listOf("kind"), "output")
        return "sigmoid"
    }
    val output = required(data, listOf("kind", "classes", "positive"), "output")
    val classes = output["classes"]
    val count = if (isWhole(classes)) whole(classes) else null
    if (count == null || count < 2) fail("output.classes must be a whole number of at least 2, got ${pyRepr(classes)}")
    val positive = output["positive"]
    if (positive !is List<*> || positive.isEmpty()) {
        fail("output.positive must list the positive class index or indices, e.g. [6]")
    }
    for (i in positive) {
        val index = if (isWhole(i)) whole(i) else null
        if (index == null || index < 0 || index >= count) {
            fail("output.positive index ${pyRepr(i)} is out of range for $count classes (0-${count - 1})")
        }
    }
    if (positive.map { whole(it) }.toSet().size.toLong() == count) {
        fail("output.positive lists every class: at least one class must be negative")
    }
    return "softmax"
}

/** core/contract.py: `_decision`. */
private fun decision(data: Any?) {
    if (data is Map<*, *> && data.containsKey("threshold")) {
        val decision = required(data, listOf("threshold"), "decision")
        val threshold = number(decision["threshold"], "decision.threshold")
        if (!(0.0 <= threshold && threshold <= 1.0)) {
            fail("decision.threshold must be a probability (0-1), got ${pyRepr(decision["threshold"])}")
        }
        return
    }
    if (data !is Map<*, *> || (data["rule"] != "sensitivity" && data["rule"] != "youden")) {
        fail("decision needs a \"threshold\", or a \"rule\" (\"sensitivity\" with a \"target\", or \"youden\")")
    }
    if (data["rule"] == "youden") {
        required(data, listOf("rule"), "decision")
        return
    }
    val decision = required(data, listOf("rule", "target"), "decision")
    val target = number(decision["target"], "decision.target")
    if (!(0.0 < target && target < 1.0)) {
        fail("decision.target must lie strictly between 0 and 1, got ${pyRepr(decision["target"])}")
    }
}
