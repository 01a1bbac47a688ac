package com.melanomaexport.demo

import android.content.Context
import com.google.ai.edge.litert.Accelerator
import com.google.ai.edge.litert.CompiledModel
import com.google.ai.edge.litert.TensorBuffer
import com.melanomaexport.core.Classifier
import com.melanomaexport.core.ContractException
import com.melanomaexport.core.ModelSpec
import com.melanomaexport.core.Prediction
import com.melanomaexport.core.checkAgainstSidecar
import com.melanomaexport.core.checkContract
import com.melanomaexport.core.imageShape
import com.melanomaexport.core.modelSignature
import com.melanomaexport.core.specFromTflite

/**
 * The exported .tflite run by LiteRT's CompiledModel, fed by signature input name (`image`, `meta`) and read by
 * output name. Loading and [predict] block: call them off the main thread, one at a time (the app uses a
 * single-threaded dispatcher; [predict] is also synchronized).
 */
class LiteRtClassifier private constructor(
    override val spec: ModelSpec,
    private val model: CompiledModel,
    private val signature: String,
) : Classifier {
    private val imageInput: TensorBuffer = model.createInputBuffer("image", signature)
    private val metaInput: TensorBuffer = model.createInputBuffer("meta", signature)
    private val outputs: Map<String, TensorBuffer> =
        spec.outputs.names.associateWith { model.createOutputBuffer(it, signature) }

    @Synchronized
    override fun predict(image: FloatArray, meta: FloatArray): Prediction {
        imageInput.writeFloat(image)
        metaInput.writeFloat(meta)
        model.run(mapOf("image" to imageInput, "meta" to metaInput), outputs, signature)
        val logit = outputs.getValue("logit").readFloat()
        val probability = outputs.getValue("probability").readFloat()
        return Prediction(logit[0], probability[0])
    }

    @Synchronized
    override fun close() {
        imageInput.close()
        metaInput.close()
        outputs.values.forEach { it.close() }
        model.close()
    }

    companion object {
        /**
         * Loads [MODEL_ASSET]: reads the spec embedded in the file, checks it against [SPEC_ASSET] and against
         * what :core implements, finds the signature with inputs `image` and `meta`, compiles the model for
         * [accelerator] and checks that its input shapes are the ones the spec describes.
         *
         * @throws ContractException with one sentence when any of that fails.
         */
        fun fromAssets(context: Context, accelerator: Accelerator = Accelerator.CPU): LiteRtClassifier {
            val bytes = readAsset(context, MODEL_ASSET)
            val spec = specFromTflite(bytes, MODEL_ASSET)
            checkAgainstSidecar(spec, readTextAsset(context, SPEC_ASSET), SPEC_ASSET)
            checkContract(spec.image)
            val signature = modelSignature(bytes, spec, MODEL_ASSET).key
            val model = CompiledModel.create(context.assets, MODEL_ASSET, CompiledModel.Options(accelerator))
            try {
                checkShape(model, signature, "image", imageShape(spec.image))
                checkShape(model, signature, "meta", intArrayOf(1, spec.metaSize))
                return LiteRtClassifier(spec, model, signature)
            } catch (e: Exception) {
                model.close()
                throw e
            }
        }

        private fun checkShape(model: CompiledModel, signature: String, input: String, expected: IntArray) {
            val dims = model.getInputTensorType(input, signature).layout?.dimensions ?: return
            if (dims != expected.toList()) {
                throw ContractException(
                    "$MODEL_ASSET takes $input of shape $dims but its spec describes ${expected.toList()}: " +
                        "export the model again",
                )
            }
        }
    }
}
