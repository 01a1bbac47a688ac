package com.melanomaexport.core

import com.google.gson.JsonElement
import com.google.gson.JsonObject

/** The schema name and version this port reads (core/spec.py: SCHEMA, SCHEMA_VERSION). */
const val SPEC_SCHEMA = "melanoma-model-spec"
const val SPEC_SCHEMA_VERSION = 2

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

/**
 * The `meta` input's layout (core/spec.py: `metadata_layout`), derived from the contract and checked against it:
 * its size, the name of each entry, the case fields it is built from, and the text that counts as missing
 * (matched after trimming and lower-casing).
 */
class MetadataLayout(
    val size: Int,
    val dtype: String,
    val entries: List<String>,
    val fields: List<String>,
    val missingTokens: List<String>,
    val caseInsensitive: Boolean
)

/**
 * The ModelSpec as an app needs it: the image contract, the `meta` layout, the model's own contract (whose
 * features build `meta`), the outputs, plus the whole JSON ([json]) for the fields an app only displays or
 * compares (provenance, intended use, thresholds).
 */
class ModelSpec(
    val name: String,
    val architecture: String,
    val image: ImageContract,
    val metadata: MetadataLayout,
    val contract: Contract,
    val outputs: OutputContract,
    /** "" for fp32; else the artifact's precision name ("int8", "int8-dynamic", "fp16"). */
    val precision: String,
    val json: JsonObject
) {
    /** Length K of the `meta` input. */
    val metaSize: Int
        get() = metadata.size

    /** The metadata encoder the contract describes: a case (field -> raw value) -> `meta` (core/spec.py: encoder). */
    fun encoder(): ContractEncoder = contract.encoder(metadata.missingTokens)

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
    "name", "architecture", "image", "metadata", "contract", "outputs", "model_config", "version", "weights_sha256",
    "created_at", "code_version", "provenance", "precision", "schema", "schema_version"
)
private val IMAGE_FIELDS = setOf(
    "size", "layout", "dtype", "color", "value_range", "resize", "interpolation", "antialias", "resize_library",
    "resize_library_version", "scale", "decode", "mean", "std", "normalization"
)
private val METADATA_FIELDS = setOf("size", "dtype", "entries", "fields", "missing_tokens", "case_insensitive")
private val OUTPUT_FIELDS = setOf(
    "names", "shape", "labels", "positive_label", "probability", "temperature", "threshold", "threshold_rule",
    "thresholds"
)

/**
 * Parses and validates a ModelSpec JSON text, as core/spec.py's `ModelSpec.from_json` does: the schema and its
 * version (2), no unknown fields, the image contract, the outputs, the model's contract (core/contract.py's
 * rules and sentences) and a `meta` layout that is the one the contract derives (`_check_against_contract`).
 *
 * No field that shapes an input or the decision is ever filled in: a spec without `image.layout`,
 * `outputs.threshold`, `metadata.entries`, `contract.metadata`, ... is refused with a sentence naming the field.
 * Only the contract's optional fields take the defaults its schema documents (Contract.kt), and fields that are
 * merely shown may be absent (`outputs.threshold_rule`, `provenance`, `precision`): they then read as "" (absent),
 * never as an invented value.
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
            "$source has spec schema version ${version ?: "none"}; this app reads version $SPEC_SCHEMA_VERSION " +
                "(the spec that carries the model's contract): re-export the model with python -m export.all"
        )
    }
    top.onlyKnown(TOP_FIELDS)
    val image = readImage(top.obj("image"))
    val outputs = readOutputs(top.obj("outputs"), source)
    val metadata = readMetadata(top.obj("metadata"), source)
    val contract = try {
        parseContract(top.obj("contract").obj)
    } catch (e: ContractException) {
        throw ContractException("$source's contract is not valid: ${e.message}")
    }
    checkAgainstContract(image, metadata, contract, source)
    // Shown only (and picks the androidTest's bound): an fp32 artifact's spec has "precision": {} (no name).
    val precision = if (top.has("precision")) top.obj("precision").optionalString("name") ?: "" else ""
    val name = top.string("name")
    return ModelSpec(name, top.string("architecture"), image, metadata, contract, outputs, precision, root)
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

/** The `meta` layout (every field required); its dtype and case rule must be those [ContractEncoder] implements. */
private fun readMetadata(f: Fields, source: String): MetadataLayout {
    f.onlyKnown(METADATA_FIELDS)
    val layout = MetadataLayout(
        size = f.int("size"),
        dtype = f.string("dtype"),
        entries = f.strings("entries"),
        fields = f.strings("fields"),
        missingTokens = f.strings("missing_tokens"),
        caseInsensitive = f.bool("case_insensitive")
    )
    if (layout.dtype != "float32") {
        throw ContractException("$source asks for a ${layout.dtype} meta input; this app encodes float32")
    }
    if (!layout.caseInsensitive) {
        throw ContractException(
            "$source asks for case-sensitive metadata categories; this app matches them case-insensitively, " +
                "as core/contract.py does"
        )
    }
    return layout
}

/**
 * The derived parts of the spec (the `meta` layout, the image size and resize rule) must be what the contract
 * derives (core/spec.py: `_check_against_contract`).
 */
private fun checkAgainstContract(image: ImageContract, layout: MetadataLayout, contract: Contract, source: String) {
    val encoder = contract.encoder(layout.missingTokens)
    fun mismatch(detail: String): Nothing = throw ContractException(
        "$source's metadata layout does not match its contract's features ($detail): re-export the model"
    )
    if (layout.size != encoder.size) {
        mismatch("metadata.size is ${layout.size}, the features make ${encoder.size} entries")
    }
    val entries = encoder.entries
    for (i in entries.indices) {
        if (i >= layout.entries.size || layout.entries[i] != entries[i]) {
            val listed = if (i < layout.entries.size) "\"${layout.entries[i]}\"" else "absent"
            mismatch("metadata.entries[$i] is $listed, the features make \"${entries[i]}\"")
        }
    }
    if (layout.entries.size != entries.size) mismatch("metadata.entries lists ${layout.entries.size} entries")
    if (layout.fields != encoder.fields) {
        mismatch("metadata.fields is ${layout.fields}, the features read ${encoder.fields}")
    }
    if (image.size != contract.image.size) {
        throw ContractException(
            "$source's image.size ${image.size} differs from the contract's ${contract.image.size}: re-export the model"
        )
    }
    if (image.antialias != (contract.image.resize == "pillow")) {
        throw ContractException(
            "$source's image.antialias ${image.antialias} contradicts the contract's resize rule " +
                "\"${contract.image.resize}\": re-export the model"
        )
    }
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
