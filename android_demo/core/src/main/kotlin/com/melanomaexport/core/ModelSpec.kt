package com.melanomaexport.core

import com.google.gson.JsonElement
import com.google.gson.JsonObject

/** The schema name and version this port reads (core/spec.py: SCHEMA, SCHEMA_VERSION). */
const val SPEC_SCHEMA = "melanoma-model-spec"
const val SPEC_SCHEMA_VERSION = 1

/** The key under which every artifact embeds its spec (export/common.py: SPEC_KEY). */
const val SPEC_KEY = "melanoma_spec"

/** How an image must be prepared for the `image` input (core/spec.py: ImageContract). */
class ImageContract(
    val size: Int,
    val layout: String,
    val dtype: String,
    val color: String,
    val valueRange: List<Double>,
    val resize: String,
    val interpolation: String,
    val antialias: Boolean,
    val resizeLibrary: String,
    val resizeLibraryVersion: String
)

/** The label a probability maps to (core/spec.py: OutputContract.decide). */
class Decision(val label: String, val positive: Boolean)

/** What the model returns and how to turn it into a decision (core/spec.py: OutputContract). */
class OutputContract(
    val names: List<String>,
    val labels: List<String>,
    val positiveLabel: String,
    val temperature: Double,
    val threshold: Double,
    /** How the threshold was chosen, only shown to the user: "" when the spec records none (nothing invented). */
    val thresholdRule: String
) {
    /** The label other than the positive one (the first such label, as Python picks it). */
    val negativeLabel: String
        get() = labels.first { it != positiveLabel }

    /**
     * A probability at or above the threshold is the positive label; below it, the other one.
     *
     * @throws ContractException when [probability] is NaN, infinite or outside [0, 1]: such a value is never
     *     read as "below the threshold".
     */
    fun decide(probability: Double): Decision {
        if (probability.isNaN() || probability < 0.0 || probability > 1.0) {
            throw ContractException(
                "the probability $probability is not a number from 0 to 1, so no decision can be made from it"
            )
        }
        val positive = probability >= threshold
        return Decision(if (positive) positiveLabel else negativeLabel, positive)
    }
}

/** The age part of the metadata contract. */
class AgeContract(val center: Double, val scale: Double, val min: Double, val max: Double)

/** One categorical feature (sex or body site): its categories in `meta` order and the accepted aliases. */
class CategoryContract(val categories: List<String>, val aliases: Map<String, String>)

/** How to build the `meta` vector (core/metadata.py: MetadataEncoder.contract()). */
class MetadataContract(
    val version: Int,
    val size: Int,
    val featureNames: List<String>,
    val age: AgeContract,
    val sex: CategoryContract,
    val site: CategoryContract,
    val missingTokens: List<String>
)

/**
 * The ModelSpec as an app needs it: the image, metadata and output contracts, plus the whole JSON ([json])
 * for the fields an app only displays or compares (provenance, intended use, thresholds).
 */
class ModelSpec(
    val name: String,
    val architecture: String,
    val image: ImageContract,
    val metadata: MetadataContract,
    val outputs: OutputContract,
    /** "" for fp32; else the artifact's precision name ("int8", "int8-dynamic", "fp16"). */
    val precision: String,
    val json: JsonObject
) {
    /** Length K of the `meta` input. */
    val metaSize: Int
        get() = metadata.size

    /** The metadata encoder this spec describes. */
    fun encoder(): MetadataEncoder = MetadataEncoder(metadata)

    /** The intended-use statement recorded at training time (only shown), "" when the spec records none. */
    val intendedUse: String
        get() {
            val provenance = json.get("provenance")
            if (provenance == null || !provenance.isJsonObject) return ""
            val text = provenance.asJsonObject.get("intended_use")
            return if (text != null && text.isJsonPrimitive) text.asString else ""
        }
}

private val TOP_FIELDS = setOf(
    "name", "architecture", "image", "metadata", "outputs", "model_config", "version", "weights_sha256",
    "created_at", "code_version", "provenance", "precision", "schema", "schema_version"
)
private val IMAGE_FIELDS = setOf(
    "size", "layout", "dtype", "color", "value_range", "resize", "interpolation", "antialias", "resize_library",
    "resize_library_version", "scale", "decode", "mean", "std", "normalization"
)
private val OUTPUT_FIELDS = setOf(
    "names", "shape", "labels", "positive_label", "probability", "temperature", "threshold", "threshold_rule",
    "thresholds"
)

/**
 * Parses and validates a ModelSpec JSON text, as core/spec.py's `ModelSpec.from_json` does: the schema and its
 * version, no unknown fields, the image contract, the outputs and a metadata contract whose feature list matches
 * its categories.
 *
 * No field that shapes an input or the decision is ever filled in: a spec without `image.layout`,
 * `outputs.threshold`, `metadata.age.valid_range`, ... is refused with a sentence naming the field. Only fields
 * that are merely shown may be absent (`outputs.threshold_rule`, `provenance`, `precision`), and then read as ""
 * (absent), never as an invented value.
 *
 * @param source names the text in error messages (a file name, "the embedded spec").
 * @throws ContractException when it is not a valid spec.
 */
fun readSpec(json: String, source: String = "the model spec"): ModelSpec {
    val root = Json.parse(json, source)
    if (!root.isJsonObject) throw ContractException("$source is not a model spec (a JSON object was expected)")
    return specFromJson(root.asJsonObject, source)
}

internal fun specFromJson(root: JsonObject, source: String): ModelSpec {
    val top = Fields(root, "", source)
    val schema = root.get("schema")
    if (schema == null || !schema.isJsonPrimitive || schema.asString != SPEC_SCHEMA) {
        throw ContractException("$source is not a model spec (expected \"schema\": \"$SPEC_SCHEMA\")")
    }
    val version = root.get("schema_version")
    if (version == null || !version.isJsonPrimitive || !version.asJsonPrimitive.isNumber ||
        version.asDouble != SPEC_SCHEMA_VERSION.toDouble()
    ) {
        throw ContractException(
            "$source has spec schema version ${version ?: "none"}; this app reads version $SPEC_SCHEMA_VERSION"
        )
    }
    top.onlyKnown(TOP_FIELDS)
    val image = readImage(top.obj("image"))
    val outputs = readOutputs(top.obj("outputs"), source)
    val metadata = readMetadata(top.obj("metadata"), source)
    // Shown only (and picks the androidTest's bound): an fp32 artifact's spec has "precision": {} (no name).
    val precision = if (top.has("precision")) top.obj("precision").optionalString("name") ?: "" else ""
    return ModelSpec(top.string("name"), top.string("architecture"), image, metadata, outputs, precision, root)
}

private fun readImage(f: Fields): ImageContract {
    f.onlyKnown(IMAGE_FIELDS)
    val size = f.int("size")
    if (size < 1) {
        throw ContractException("the model spec's image.size is $size: it must be a positive number of pixels")
    }
    return ImageContract(
        size = size,
        layout = f.string("layout"),
        dtype = f.string("dtype"),
        color = f.string("color"),
        valueRange = f.doubles("value_range"),
        resize = f.string("resize"),
        interpolation = f.string("interpolation"),
        antialias = f.bool("antialias"),
        resizeLibrary = f.string("resize_library"),
        resizeLibraryVersion = f.string("resize_library_version")
    )
}

private fun readOutputs(f: Fields, source: String): OutputContract {
    f.onlyKnown(OUTPUT_FIELDS)
    val names = f.strings("names")
    for (name in listOf("logit", "probability")) {
        if (name !in names) {
            throw ContractException("$source's outputs.names $names do not include \"$name\": re-export it")
        }
    }
    val labels = f.strings("labels")
    val positive = f.string("positive_label")
    if (positive !in labels || labels.none { it != positive }) {
        throw ContractException(
            "$source's outputs.labels $labels must hold positive_label \"$positive\" and another label: re-export it"
        )
    }
    val threshold = f.double("threshold")
    if (threshold < 0.0 || threshold > 1.0) {
        throw ContractException("$source's outputs.threshold $threshold is not a number from 0 to 1: re-export it")
    }
    val temperature = f.double("temperature")
    if (temperature <= 0.0) {
        throw ContractException("$source's outputs.temperature $temperature is not a positive number: re-export it")
    }
    return OutputContract(
        names = names,
        labels = labels,
        positiveLabel = positive,
        temperature = temperature,
        threshold = threshold,
        thresholdRule = f.optionalString("threshold_rule") ?: "" // shown only; "" = the spec records no rule
    )
}

/**
 * Mirrors core/metadata.py's `MetadataEncoder.from_contract`, reading the missing tokens and age range too; every
 * field is required, and the dtype and case rule must be those [MetadataEncoder] implements.
 */
private fun readMetadata(f: Fields, source: String): MetadataContract {
    val version = f.int("version")
    if (version != 1) throw ContractException("$source's metadata contract version $version is not 1: re-export it")
    val dtype = f.string("dtype")
    if (dtype != "float32") {
        throw ContractException("$source asks for a $dtype meta input; this app encodes float32")
    }
    if (!f.bool("case_insensitive")) {
        throw ContractException(
            "$source asks for case-sensitive metadata categories; this app matches them case-insensitively, " +
                "as core/metadata.py does"
        )
    }
    val age = f.obj("age")
    val range = age.doubles("valid_range")
    if (range.size != 2 || range[0] > range[1]) {
        throw ContractException("$source's metadata.age.valid_range must be [min, max]: re-export it")
    }
    val scale = age.double("scale")
    if (scale == 0.0) throw ContractException("$source's metadata.age.scale is 0: re-export it")
    val sex = f.obj("sex")
    val site = f.obj("site")
    val contract = MetadataContract(
        version = version,
        size = f.int("size"),
        featureNames = f.objects("features").map { it.string("name") },
        age = AgeContract(age.double("center"), scale, range[0], range[1]),
        sex = CategoryContract(sex.strings("categories"), sex.stringMap("aliases")),
        site = CategoryContract(site.strings("categories"), site.stringMap("aliases")),
        missingTokens = f.strings("missing_tokens")
    )
    for ((what, category) in listOf("sex" to contract.sex, "site" to contract.site)) {
        for ((alias, target) in category.aliases) {
            if (target !in category.categories) {
                throw ContractException(
                    "$source's metadata.$what.aliases maps \"$alias\" to \"$target\", which is not one of its " +
                        "categories: re-export it"
                )
            }
        }
    }
    val expected = ArrayList<String>()
    expected.add("age")
    expected.add("age_missing")
    contract.sex.categories.forEach { expected.add("sex_$it") }
    expected.add("sex_missing")
    contract.site.categories.forEach { expected.add("site_$it") }
    expected.add("site_missing")
    if (contract.featureNames != expected) {
        throw ContractException("$source's metadata feature list does not match its categories: re-export it")
    }
    if (contract.size != expected.size) {
        throw ContractException("$source's metadata.size ${contract.size} is not its ${expected.size} features")
    }
    return contract
}

/**
 * Checks that the spec embedded in an artifact equals the sidecar `<artifact>.spec.json` written beside it
 * (the same JSON values; key order and number spelling aside).
 *
 * @throws ContractException naming the first field that differs, or when the sidecar is not valid JSON.
 */
fun checkAgainstSidecar(embedded: ModelSpec, sidecarJson: String, sidecarName: String = "the sidecar spec") {
    val sidecar = Json.parse(sidecarJson, sidecarName)
    val where = firstDifference(embedded.json, sidecar, "")
    if (where != null) {
        val field = if (where == "") "the top level" else where
        throw ContractException(
            "the spec embedded in the model differs from $sidecarName at $field: " +
                "use the .spec.json exported with this model"
        )
    }
}

/** The path of the first value that differs between [a] and [b], null when they are equal. */
internal fun firstDifference(a: JsonElement, b: JsonElement, path: String): String? {
    if (a.isJsonObject && b.isJsonObject) {
        val x = a.asJsonObject
        val y = b.asJsonObject
        val keys = (x.keySet() + y.keySet()).sorted()
        for (key in keys) {
            val child = if (path == "") key else "$path.$key"
            val u = x.get(key) ?: return child
            val v = y.get(key) ?: return child
            val diff = firstDifference(u, v, child)
            if (diff != null) return diff
        }
        return null
    }
    if (a.isJsonArray && b.isJsonArray) {
        val x = a.asJsonArray
        val y = b.asJsonArray
        if (x.size() != y.size()) return path
        for (i in 0 until x.size()) {
            val diff = firstDifference(x.get(i), y.get(i), "$path[$i]")
            if (diff != null) return diff
        }
        return null
    }
    return if (a == b) null else path
}
