package com.melanomaexport.demo

import android.content.Context
import com.google.ai.edge.litert.Accelerator
import com.google.ai.edge.litert.BuiltinNpuAcceleratorProvider
import com.google.ai.edge.litert.CompiledModel
import com.google.ai.edge.litert.Environment
import com.google.ai.edge.litert.TensorBuffer
import com.melanomaexport.core.AcceleratorChoice
import com.melanomaexport.core.Classifier
import com.melanomaexport.core.ContractException
import com.melanomaexport.core.Hardware
import com.melanomaexport.core.ModelSpec
import com.melanomaexport.core.Prediction
import com.melanomaexport.core.checkAgainstSidecar
import com.melanomaexport.core.checkContract
import com.melanomaexport.core.chooseAccelerator
import com.melanomaexport.core.imageShape
import com.melanomaexport.core.modelSignature
import com.melanomaexport.core.specFromTflite

/**
 * The exported .tflite run by LiteRT's CompiledModel (com.google.ai.edge.litert 2.1.6), fed by signature input
 * name (`image`, `meta`) and read by output name, on the accelerator [accelerator] says ran. Loading and
 * [predict] block: call them off the main thread, one at a time (the app uses a single-threaded dispatcher;
 * [predict] is also synchronized).
 */
class LiteRtClassifier private constructor(
    override val spec: ModelSpec,
    private val env: Environment,
    private val compiled: Compiled,
    /** The accelerator asked for, the one that runs the model, and the fallback sentence when they differ. */
    val accelerator: AcceleratorChoice,
) : Classifier {
    @Synchronized
    override fun predict(image: FloatArray, meta: FloatArray): Prediction {
        compiled.imageInput.writeFloat(image)
        compiled.metaInput.writeFloat(meta)
        compiled.model.run(
            mapOf("image" to compiled.imageInput, "meta" to compiled.metaInput),
            compiled.outputs,
            compiled.signature,
        )
        val logit = compiled.outputs.getValue("logit").readFloat()
        val probability = compiled.outputs.getValue("probability").readFloat()
        return Prediction(logit[0], probability[0])
    }

    @Synchronized
    override fun close() {
        compiled.close()
        // The Environment was passed to CompiledModel.create, which then leaves closing it to its owner: here.
        env.close()
    }

    /** The model compiled for one accelerator, with its input and output buffers; closing it closes them all. */
    private class Compiled(
        val model: CompiledModel,
        val signature: String,
        val imageInput: TensorBuffer,
        val metaInput: TensorBuffer,
        val outputs: Map<String, TensorBuffer>,
    ) : AutoCloseable {
        override fun close() {
            imageInput.close()
            metaInput.close()
            outputs.values.forEach { it.close() }
            model.close()
        }

        companion object {
            /** [model]'s buffers for [signature]; on failure, closes what it made and [model], then throws. */
            fun of(model: CompiledModel, signature: String, outputNames: List<String>): Compiled {
                val made = ArrayList<TensorBuffer>()
                try {
                    val image = model.createInputBuffer("image", signature).also { made.add(it) }
                    val meta = model.createInputBuffer("meta", signature).also { made.add(it) }
                    val outputs = outputNames.associateWith { name ->
                        model.createOutputBuffer(name, signature).also { made.add(it) }
                    }
                    return Compiled(model, signature, image, meta, outputs)
                } catch (e: Exception) {
                    made.forEach { it.close() }
                    model.close()
                    throw e
                }
            }
        }
    }

    companion object {
        /**
         * Loads [MODEL_ASSET]: reads the spec embedded in the file, checks it against [SPEC_ASSET] and against
         * what :core implements, finds the signature with inputs `image` and `meta`, compiles the model for
         * [requested] and checks that its input shapes are the ones the spec describes.
         *
         * GPU or NPU falls back to CPU (:core's chooseAccelerator) when LiteRT's Environment does not list that
         * accelerator (getAvailableAccelerators: no GPU accelerator library could be loaded, no NPU runtime for
         * this phone) or when CompiledModel.create throws for it (a LiteRtException: e.g. the GPU cannot run
         * every operation, "Some ops are not accelerated"); [accelerator] then carries the sentence the screen
         * shows. GPU is asked for alone, so a model that compiles for it runs wholly on the GPU. For NPU,
         * CompiledModel.create adds CPU itself (for the operations the NPU does not take), and the NPU needs the
         * phone maker's runtime library, which this app does not bundle.
         *
         * @throws ContractException with one sentence when the model or its spec is refused (on any accelerator).
         */
        fun fromAssets(context: Context, requested: Hardware = Hardware.CPU): LiteRtClassifier {
            val bytes = readAsset(context, MODEL_ASSET)
            val spec = specFromTflite(bytes, MODEL_ASSET)
            checkAgainstSidecar(spec, readTextAsset(context, SPEC_ASSET), SPEC_ASSET)
            checkContract(spec.image)
            val signature = modelSignature(bytes, spec, MODEL_ASSET).key
            // BuiltinNpuAcceleratorProvider points LiteRT at the app's native library folder for an NPU runtime,
            // on the SoCs LiteRT lists as supported; it changes nothing for CPU or GPU.
            val env = if (requested == Hardware.NPU) {
                Environment.create(BuiltinNpuAcceleratorProvider(context))
            } else {
                Environment.create()
            }
            try {
                val available = try {
                    env.getAvailableAccelerators().mapNotNull { hardwareOf(it) }.toSet()
                } catch (e: Exception) {
                    null // unknown: each accelerator is tried
                }
                val chosen = chooseAccelerator(requested, available) { hardware ->
                    compile(context, env, spec, signature, hardware)
                }
                return LiteRtClassifier(spec, env, chosen.value, chosen.choice)
            } catch (e: Throwable) {
                env.close()
                throw e
            }
        }

        /** The model compiled for [hardware] alone, its shapes checked; throws what LiteRT throws. */
        private fun compile(
            context: Context,
            env: Environment,
            spec: ModelSpec,
            signature: String,
            hardware: Hardware,
        ): Compiled {
            val options = CompiledModel.Options(acceleratorOf(hardware))
            val model = CompiledModel.create(context.assets, MODEL_ASSET, options, env)
            try {
                checkShape(model, signature, "image", imageShape(spec.image))
                checkShape(model, signature, "meta", intArrayOf(1, spec.metaSize))
            } catch (e: Exception) {
                model.close()
                throw e
            }
            // Buffers are created for this accelerator: on GPU, creating them can fail too, and falls back.
            return Compiled.of(model, signature, spec.outputs.names)
        }

        private fun acceleratorOf(hardware: Hardware): Accelerator = when (hardware) {
            Hardware.CPU -> Accelerator.CPU
            Hardware.GPU -> Accelerator.GPU
            Hardware.NPU -> Accelerator.NPU
        }

        private fun hardwareOf(accelerator: Accelerator): Hardware? = when (accelerator) {
            Accelerator.CPU -> Hardware.CPU
            Accelerator.GPU -> Hardware.GPU
            Accelerator.NPU -> Hardware.NPU
            else -> null // NONE
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
