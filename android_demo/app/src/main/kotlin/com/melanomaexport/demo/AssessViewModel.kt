package com.melanomaexport.demo

import android.app.Application
import android.content.Context
import android.graphics.Bitmap
import android.net.Uri
import androidx.compose.runtime.getValue
import androidx.compose.runtime.mutableStateOf
import androidx.compose.runtime.setValue
import androidx.lifecycle.AndroidViewModel
import androidx.lifecycle.viewModelScope
import com.melanomaexport.core.AcceleratorChoice
import com.melanomaexport.core.ArgbImage
import com.melanomaexport.core.Assessment
import com.melanomaexport.core.ContractException
import com.melanomaexport.core.HINT_CHARS
import com.melanomaexport.core.Hardware
import com.melanomaexport.core.ModelSpec
import com.melanomaexport.core.assess
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.launch
import kotlinx.coroutines.withContext

/** Everything the screen shows; the form's inputs come from the spec's contract once it is loaded (:core's
 * formInputs). */
data class UiState(
    val loading: Boolean = true,
    /**
     * Set when the model cannot be used at all (missing asset, spec mismatch, a signature that does not verify):
     * the screen shows only this sentence.
     */
    val modelError: String? = null,
    val spec: ModelSpec? = null,
    /** How the model's origin was checked, shown small: "unsigned model", or the key its signature verified with. */
    val provenance: String = "",
    /** The accelerator setting (CPU / GPU / NPU), as stored in [SETTINGS]. */
    val requested: Hardware = Hardware.CPU,
    /**
     * What the loaded model runs on: the accelerator that ran and, when it is not [requested], the sentence
     * saying why CPU runs instead. Null while loading.
     */
    val accelerator: AcceleratorChoice? = null,
    val photo: ArgbImage? = null,
    val preview: Bitmap? = null,
    /**
     * The case the form has collected: case field -> the text typed (a number field) or the option chosen (a
     * select); a field absent or null is missing, as the contract's encoder reads it.
     */
    val values: Map<String, String?> = emptyMap(),
    val running: Boolean = false,
    val result: Assessment? = null,
    /** The accelerator [result] ran on (the card says which, and how long the call took). */
    val resultRanOn: Hardware? = null,
    /** A problem with this photo or form (one sentence); the model stays usable. */
    val error: String? = null,
)

/** The app's settings file (SharedPreferences) and the key of the accelerator setting in it. */
const val SETTINGS = "settings"
const val ACCELERATOR_SETTING = "accelerator"

/**
 * Owns the [LiteRtClassifier]. Model loading, photo decoding and the model call run on one background thread;
 * the UI thread only reads [state].
 */
class AssessViewModel(application: Application) : AndroidViewModel(application) {
    private val settings = application.getSharedPreferences(SETTINGS, Context.MODE_PRIVATE)

    var state by mutableStateOf(UiState(requested = Hardware.fromSetting(settings.getString(ACCELERATOR_SETTING, null))))
        private set

    // One thread for the model: CompiledModel is not meant for concurrent calls.
    private val worker = Dispatchers.Default.limitedParallelism(1)
    private var classifier: LiteRtClassifier? = null

    init {
        viewModelScope.launch {
            state = try {
                val requested = state.requested
                val (loaded, statement) = withContext(worker) {
                    val app = getApplication<Application>()
                    // The signature first: with a pinned key, nothing reads the model before it verifies.
                    val statement = verifyModelAssets(app)
                    LiteRtClassifier.fromAssets(app, requested) to statement
                }
                classifier = loaded
                val provenance = if (statement == null) {
                    "unsigned model"
                } else {
                    "signed model, verified with key ${statement.keyHint.take(HINT_CHARS)}"
                }
                state.copy(
                    loading = false,
                    spec = loaded.spec,
                    provenance = provenance,
                    accelerator = loaded.accelerator,
                )
            } catch (e: ContractException) {
                state.copy(loading = false, modelError = e.message)
            } catch (e: Exception) {
                state.copy(loading = false, modelError = "the model could not be loaded (${e.message})")
            }
        }
    }

    fun onPhoto(uri: Uri?) {
        if (uri == null) return
        state = state.copy(error = null, result = null, running = true)
        viewModelScope.launch {
            state = try {
                val (image, preview) = withContext(worker) {
                    val decoded = Photos.decode(getApplication<Application>().contentResolver, uri)
                    decoded to Photos.preview(decoded)
                }
                state.copy(photo = image, preview = preview, running = false)
            } catch (e: ContractException) {
                state.copy(error = e.message, running = false)
            } catch (e: OutOfMemoryError) {
                state.copy(error = "the photo is too large for this phone's memory: use a smaller one", running = false)
            } catch (e: Exception) {
                state.copy(error = "the photo could not be read (${e.message}): pick another one", running = false)
            }
        }
    }

    /** A form input changed: [value] is the text of a number field, or a select's option (null = missing). */
    fun onValue(field: String, value: String?) {
        state = state.copy(values = state.values + (field to value), result = null, error = null)
    }

    fun onAssess() {
        val model = classifier ?: return
        val photo = state.photo ?: return
        val form = state
        state = state.copy(running = true, error = null, result = null)
        viewModelScope.launch {
            state = try {
                // The form's text goes to :core as typed: the contract's encoder parses and checks it as Python does.
                val result = withContext(worker) { assess(model, photo, form.values) }
                state.copy(running = false, result = result, resultRanOn = model.accelerator.ran)
            } catch (e: ContractException) {
                state.copy(running = false, error = e.message)
            } catch (e: Exception) {
                state.copy(running = false, error = "the model call failed (${e.message})")
            }
        }
    }

    /**
     * The accelerator setting changed: stores it and compiles the model again for [hardware] (falling back to CPU
     * with a sentence when it is missing). The assets were verified when the model was first loaded; they are
     * part of the installed app and cannot have changed since.
     */
    fun onAccelerator(hardware: Hardware) {
        if (state.loading || state.spec == null || state.running || hardware == state.accelerator?.requested) return
        settings.edit().putString(ACCELERATOR_SETTING, hardware.setting).apply()
        val old = classifier
        classifier = null
        state = state.copy(requested = hardware, accelerator = null, running = true, result = null, error = null)
        viewModelScope.launch {
            state = try {
                // On the model's thread: a model call already queued there finishes before the old model closes.
                val loaded = withContext(worker) {
                    old?.close()
                    LiteRtClassifier.fromAssets(getApplication<Application>(), hardware)
                }
                classifier = loaded
                state.copy(running = false, accelerator = loaded.accelerator)
            } catch (e: ContractException) {
                state.copy(running = false, modelError = e.message)
            } catch (e: Exception) {
                state.copy(running = false, modelError = "the model could not be loaded (${e.message})")
            }
        }
    }

    override fun onCleared() {
        classifier?.close()
        classifier = null
    }
}
