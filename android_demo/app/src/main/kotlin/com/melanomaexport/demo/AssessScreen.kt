package com.melanomaexport.demo

import android.content.ActivityNotFoundException
import android.content.Context
import android.net.Uri
import androidx.activity.compose.rememberLauncherForActivityResult
import androidx.activity.result.PickVisualMediaRequest
import androidx.activity.result.contract.ActivityResultContracts
import androidx.compose.foundation.Image
import androidx.compose.foundation.background
import androidx.compose.foundation.layout.Arrangement
import androidx.compose.foundation.layout.Box
import androidx.compose.foundation.layout.Column
import androidx.compose.foundation.layout.Row
import androidx.compose.foundation.layout.fillMaxWidth
import androidx.compose.foundation.layout.heightIn
import androidx.compose.foundation.layout.padding
import androidx.compose.foundation.layout.statusBarsPadding
import androidx.compose.foundation.rememberScrollState
import androidx.compose.foundation.text.KeyboardOptions
import androidx.compose.foundation.verticalScroll
import androidx.compose.material3.Button
import androidx.compose.material3.Card
import androidx.compose.material3.DropdownMenu
import androidx.compose.material3.DropdownMenuItem
import androidx.compose.material3.ExperimentalMaterial3Api
import androidx.compose.material3.FilterChip
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.OutlinedButton
import androidx.compose.material3.OutlinedTextField
import androidx.compose.material3.Scaffold
import androidx.compose.material3.Text
import androidx.compose.runtime.Composable
import androidx.compose.runtime.getValue
import androidx.compose.runtime.key
import androidx.compose.runtime.mutableStateOf
import androidx.compose.runtime.remember
import androidx.compose.runtime.saveable.rememberSaveable
import androidx.compose.runtime.setValue
import androidx.compose.ui.Alignment
import androidx.compose.ui.Modifier
import androidx.compose.ui.graphics.Color
import androidx.compose.ui.graphics.asImageBitmap
import androidx.compose.ui.platform.LocalContext
import androidx.compose.ui.res.stringResource
import androidx.compose.ui.text.font.FontWeight
import androidx.compose.ui.text.input.KeyboardType
import androidx.compose.ui.unit.dp
import androidx.core.content.FileProvider
import com.melanomaexport.core.Assessment
import com.melanomaexport.core.ChoiceInput
import com.melanomaexport.core.Hardware
import com.melanomaexport.core.ModelSpec
import com.melanomaexport.core.NumberInput
import com.melanomaexport.core.formInputs
import com.melanomaexport.core.runLine
import java.io.File
import java.util.Locale

/**
 * The one screen: banner, model line, accelerator setting, photo, form, Assess, result. It renders
 * [AssessViewModel.state] and nothing else.
 */
@Composable
fun AssessScreen(viewModel: AssessViewModel) {
    val state = viewModel.state
    Scaffold(topBar = { Banner() }) { padding ->
        Column(
            modifier = Modifier
                .padding(padding)
                .padding(16.dp)
                .verticalScroll(rememberScrollState()),
            verticalArrangement = Arrangement.spacedBy(12.dp),
        ) {
            val spec = state.spec
            when {
                state.loading -> Text("Loading the model…")
                state.modelError != null -> ErrorText(state.modelError)
                spec != null -> {
                    ModelLine(spec, state.provenance)
                    AcceleratorSetting(state, viewModel::onAccelerator)
                    PhotoSection(state, viewModel::onPhoto)
                    Form(spec, state, viewModel)
                    Button(
                        onClick = viewModel::onAssess,
                        enabled = state.photo != null && !state.running,
                        modifier = Modifier.fillMaxWidth(),
                    ) { Text(if (state.running) "Working…" else "Assess") }
                    state.error?.let { ErrorText(it) }
                    state.result?.let { ResultCard(spec, it, state.resultRanOn ?: Hardware.CPU) }
                }
            }
        }
    }
}

/** The permanent statement at the top of the screen. */
@Composable
private fun Banner() {
    Box(
        modifier = Modifier
            .fillMaxWidth()
            .background(Color(0xFFB71C1C))
            .statusBarsPadding()
            .padding(horizontal = 16.dp, vertical = 8.dp),
    ) {
        Text(stringResource(R.string.banner), color = Color.White, fontWeight = FontWeight.Bold)
    }
}

/** The model's name and shape, and below it how its origin was checked ("unsigned model" or the signing key). */
@Composable
private fun ModelLine(spec: ModelSpec, provenance: String) {
    val precision = if (spec.precision.isEmpty()) "fp32" else spec.precision
    Text(
        "Model ${spec.name} ($precision), ${spec.image.size} x ${spec.image.size} px, ${spec.image.layout}",
        style = MaterialTheme.typography.bodySmall,
    )
    Text(provenance, style = MaterialTheme.typography.labelSmall)
}

/**
 * "Run on: CPU GPU NPU" (the setting, stored across launches), and below it what the model runs on now: the
 * requested accelerator, or the sentence saying why CPU runs instead.
 */
@Composable
private fun AcceleratorSetting(state: UiState, onAccelerator: (Hardware) -> Unit) {
    Row(horizontalArrangement = Arrangement.spacedBy(8.dp), verticalAlignment = Alignment.CenterVertically) {
        Text("Run on", style = MaterialTheme.typography.labelLarge)
        for (hardware in Hardware.values()) {
            FilterChip(
                selected = state.requested == hardware,
                onClick = { onAccelerator(hardware) },
                enabled = !state.running,
                label = { Text(hardware.name) },
            )
        }
    }
    val choice = state.accelerator
    val fallback = choice?.fallback // a local: :core's property cannot be smart-cast across modules
    when {
        choice == null -> Text("Compiling the model for ${state.requested}…", style = MaterialTheme.typography.bodySmall)
        fallback != null -> Text(fallback, color = MaterialTheme.colorScheme.tertiary)
        else -> Text("The model runs on ${choice.ran}.", style = MaterialTheme.typography.bodySmall)
    }
}

@Composable
private fun PhotoSection(state: UiState, onPhoto: (Uri?) -> Unit) {
    val context = LocalContext.current
    val pick = rememberLauncherForActivityResult(ActivityResultContracts.PickVisualMedia(), onPhoto)
    // Saveable: the system may recreate the activity while the camera app is in front.
    var pendingCapture by rememberSaveable { mutableStateOf<Uri?>(null) }
    val capture = rememberLauncherForActivityResult(ActivityResultContracts.TakePicture()) { saved ->
        onPhoto(if (saved) pendingCapture else null)
    }
    var cameraMissing by remember { mutableStateOf(false) }
    Row(horizontalArrangement = Arrangement.spacedBy(8.dp)) {
        OutlinedButton(onClick = {
            pick.launch(PickVisualMediaRequest(ActivityResultContracts.PickVisualMedia.ImageOnly))
        }) { Text("Choose photo") }
        OutlinedButton(onClick = {
            val uri = captureUri(context)
            pendingCapture = uri
            try {
                capture.launch(uri)
            } catch (e: ActivityNotFoundException) {
                cameraMissing = true
            }
        }) { Text("Take photo") }
    }
    if (cameraMissing) ErrorText("No camera app is available: choose a photo instead.")
    state.preview?.let {
        Image(
            bitmap = it.asImageBitmap(),
            contentDescription = "the chosen photo",
            modifier = Modifier
                .fillMaxWidth()
                .heightIn(max = 320.dp),
        )
        state.photo?.let { photo ->
            Text("${photo.width} x ${photo.height} px", style = MaterialTheme.typography.bodySmall)
        }
    }
}

/** A fresh file in the app cache for the camera app to write into, shared through the FileProvider. */
private fun captureUri(context: Context): Uri {
    val folder = File(context.cacheDir, "photos").apply { mkdirs() }
    val file = File(folder, "capture.jpg")
    return FileProvider.getUriForFile(context, "${context.packageName}.photos", file)
}

/** A select with at most this many options (its choices and "missing") shows as chips; a longer one as a menu. */
private const val CHIP_LIMIT = 3

/**
 * The metadata form, generated from the model's contract (:core's formInputs): a number field per `number`
 * feature, a select per `one_hot` / `code` feature (its categories or codes, plus "missing").
 */
@Composable
private fun Form(spec: ModelSpec, state: UiState, viewModel: AssessViewModel) {
    for (input in formInputs(spec)) {
        key(input.field) {
            when (input) {
                is NumberInput -> NumberField(input, state.values[input.field] ?: "", viewModel::onValue)
                is ChoiceInput -> ChoiceField(input, state.values[input.field], viewModel::onValue)
            }
        }
    }
}

@Composable
private fun NumberField(input: NumberInput, text: String, onValue: (String, String?) -> Unit) {
    // A decimal keyboard has no minus sign on some phones: offer it only where no value can be negative.
    val range = input.feature.range
    val keyboard = if (range != null && range[0] >= 0.0) KeyboardType.Decimal else KeyboardType.Text
    OutlinedTextField(
        value = text,
        onValueChange = { onValue(input.field, it) },
        label = { Text(input.label) },
        supportingText = { Text(input.hint) },
        keyboardOptions = KeyboardOptions(keyboardType = keyboard),
        singleLine = true,
        modifier = Modifier.fillMaxWidth(),
    )
}

@OptIn(ExperimentalMaterial3Api::class)
@Composable
private fun ChoiceField(input: ChoiceInput, selected: String?, onValue: (String, String?) -> Unit) {
    Text(input.label, style = MaterialTheme.typography.labelLarge)
    if (input.options.size <= CHIP_LIMIT) {
        Row(horizontalArrangement = Arrangement.spacedBy(8.dp)) {
            for (option in input.options) {
                FilterChip(
                    selected = selected == option,
                    onClick = { onValue(input.field, option) },
                    label = { Text(input.display(option)) },
                )
            }
        }
        return
    }
    var open by remember(input.field) { mutableStateOf(false) }
    Box {
        OutlinedButton(onClick = { open = true }, modifier = Modifier.fillMaxWidth()) { Text(input.display(selected)) }
        DropdownMenu(expanded = open, onDismissRequest = { open = false }) {
            for (option in input.options) {
                DropdownMenuItem(
                    text = { Text(input.display(option)) },
                    onClick = {
                        onValue(input.field, option)
                        open = false
                    },
                )
            }
        }
    }
}

@Composable
private fun ResultCard(spec: ModelSpec, result: Assessment, ranOn: Hardware) {
    Card(modifier = Modifier.fillMaxWidth()) {
        Column(modifier = Modifier.padding(16.dp), verticalArrangement = Arrangement.spacedBy(6.dp)) {
            Text(
                "Probability of ${spec.outputs.positiveLabel}: " +
                    decimals(result.prediction.probability.toDouble(), 4),
                style = MaterialTheme.typography.titleMedium,
            )
            val rule = spec.outputs.thresholdRule.ifEmpty { "from the model's spec" }
            Text("Threshold: ${decimals(result.threshold, 4)} ($rule)")
            Text(
                "Decision: ${result.decision.label}" +
                    if (result.decision.positive) " (at or above the threshold)" else " (below the threshold)",
                fontWeight = FontWeight.Bold,
            )
            // "ran on GPU in 12.3 ms": LiteRT's call alone, decoding and preprocessing not included.
            Text("Model call: ${runLine(ranOn, result.latencyMillis)} (LiteRT)")
            if (spec.intendedUse.isNotEmpty()) Text(spec.intendedUse, style = MaterialTheme.typography.bodySmall)
        }
    }
}

@Composable
private fun ErrorText(message: String) {
    Text(message, color = MaterialTheme.colorScheme.error)
}

private fun decimals(value: Double, digits: Int): String = String.format(Locale.ROOT, "%.${digits}f", value)
