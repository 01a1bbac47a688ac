package com.melanomaexport.core

/*
 * The metadata form an app shows, generated from the model's contract rather than written by hand: a number field
 * for each `number` feature (with its unit, range and description), a select for each `one_hot` / `code` feature
 * (its categories or codes, plus "missing"). What the form collects is the case, field -> raw value, that
 * [ContractEncoder.encode] takes; the text of a number field goes in as typed (parsed as Python's float() would).
 *
 * A case field several features read (the schema allows it) gets one input, shaped by the first of those features:
 * the value is the same raw value for all of them.
 */

/** The label a select shows for "no value" (the case field is then missing). */
const val MISSING_CHOICE = "missing"

/** One input of the form: which case field it fills, and from which feature it was generated. */
sealed class FormInput(
    /** The case field this input fills (e.g. "age_approx"). */
    val field: String,
    /** The first feature of the contract that reads [field]. */
    val feature: Feature
) {
    /** What the input asks for: the feature's description, else its name. */
    val label: String
        get() = if (feature.description.isEmpty()) feature.name else feature.description
}

/** A text field for a `number` feature. */
class NumberInput(field: String, feature: Feature) : FormInput(field, feature) {
    /** The unit, "" when the contract gives none ("years"). */
    val unit: String
        get() = feature.unit

    /** The accepted values and what empty means, e.g. "0-120 years; empty = missing". */
    val hint: String
        get() {
            val range = feature.range ?: return "empty = $MISSING_CHOICE"
            val unit = if (feature.unit.isEmpty()) "" else " ${feature.unit}"
            return "${formatG(range[0])}-${formatG(range[1])}$unit; empty = $MISSING_CHOICE"
        }
}

/** A select for a `one_hot` feature (its categories) or a `code` feature (its codes); null stands for missing. */
class ChoiceInput(field: String, feature: Feature, val choices: List<String>) : FormInput(field, feature) {
    /** [choices] followed by null (missing), in the order a select lists them. */
    val options: List<String?>
        get() = choices + listOf<String?>(null)

    /** What the select shows for [option]. */
    fun display(option: String?): String = option ?: MISSING_CHOICE
}

/** The form for [contract]: one input per case field, in the order the features first read them. */
fun formInputs(contract: Contract): List<FormInput> {
    val inputs = ArrayList<FormInput>()
    val seen = HashSet<String>()
    for (feature in contract.features) {
        if (!seen.add(feature.field)) continue
        inputs.add(
            when (feature.kind) {
                "number" -> NumberInput(feature.field, feature)
                "one_hot" -> ChoiceInput(feature.field, feature, feature.categories)
                else -> ChoiceInput(feature.field, feature, feature.codes.keys.toList())
            }
        )
    }
    return inputs
}

/** The form for [spec]'s model. */
fun formInputs(spec: ModelSpec): List<FormInput> = formInputs(spec.contract)
