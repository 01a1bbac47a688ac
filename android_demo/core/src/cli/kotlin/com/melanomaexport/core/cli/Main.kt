package com.melanomaexport.core.cli

import com.melanomaexport.core.ContractException
import com.melanomaexport.core.ModelSpec
import com.melanomaexport.core.checkAgainstSidecar
import com.melanomaexport.core.imageShape
import com.melanomaexport.core.imageTensor
import com.melanomaexport.core.readSpec
import com.melanomaexport.core.specFromOnnx
import com.melanomaexport.core.specFromTflite
import java.io.File
import java.io.IOException
import java.nio.file.Files
import java.nio.file.StandardCopyOption
import kotlin.system.exitProcess

const val USAGE = """usage: preprocess --spec (SPEC.json|MODEL.tflite|MODEL.onnx) --image FILE
                  [--meta FIELD=VALUE ...] [--sidecar SPEC.json] [--out OUT.json]

Writes the `image` and `meta` inputs the Kotlin port (:core) builds for one case, so that they can be compared
with Python's core.images.preprocess and the contract's ContractEncoder.encode when an app disagrees with Python.

  --spec     the model spec: a .spec.json file, or a .tflite / .onnx export carrying one (read from the file)
  --image    the photo (PNG is decoded exactly as PIL does; JPEG decoders differ slightly)
  --meta     one case field and its raw value, as the model's contract names the field (the spec's
             metadata.fields), e.g. --meta age_approx=55 --meta sex=female
             --meta "anatom_site_general_challenge=anterior torso"; repeat it per field; a field left out = missing
  --sidecar  check the spec embedded in --spec against this file (default: <MODEL>.spec.json when it exists)
  --out      where to write the JSON (default: standard output)

Output: {"image": {"shape": [...], "layout": ..., "data": [...]}, "meta": [...], "meta_entries": [...]}"""

private val VALUE_FLAGS = setOf("--spec", "--image", "--meta", "--sidecar", "--out")

/** The options that may be given more than once (each time with its own value). */
private val REPEATABLE_FLAGS = setOf("--meta")

/** The command line, parsed: each single option's value, and every value of each repeatable one, in order. */
private class Options(val values: Map<String, String>, val repeated: Map<String, List<String>>) {
    operator fun get(flag: String): String? = values[flag]

    fun all(flag: String): List<String> = repeated[flag] ?: emptyList()
}

/** Entry point of `android_demo/bin/preprocess`: exit 0 on success, 2 on bad input (one sentence on stderr). */
fun main(args: Array<String>) {
    val code = try {
        run(args)
        0
    } catch (e: ContractException) {
        System.err.println("preprocess: error: ${e.message}")
        2
    } catch (e: OutOfMemoryError) {
        System.err.println(
            "preprocess: error: the image is too large for this JVM's memory: raise it with JAVA_OPTS=-Xmx4g"
        )
        2
    } catch (e: Exception) {
        val what = "${e.javaClass.simpleName}: ${e.message}"
        System.err.println("preprocess: internal error ($what): please report it with the command line")
        3
    }
    exitProcess(code)
}

private fun parseArgs(args: Array<String>): Options {
    val values = LinkedHashMap<String, String>()
    val repeated = LinkedHashMap<String, MutableList<String>>()
    var i = 0
    while (i < args.size) {
        val flag = args[i]
        if (flag == "-h" || flag == "--help") {
            println(USAGE)
            exitProcess(0)
        }
        val name = flag.substringBefore('=')
        if (name !in VALUE_FLAGS) {
            val known = VALUE_FLAGS.joinToString(", ")
            throw ContractException("unknown option \"$flag\": the options are $known (see --help)")
        }
        val value = if ('=' in flag) {
            flag.substringAfter('=')
        } else {
            if (i + 1 >= args.size) throw ContractException("option $flag needs a value (see --help)")
            i += 1
            args[i]
        }
        if (name in REPEATABLE_FLAGS) {
            repeated.getOrPut(name) { ArrayList() }.add(value)
        } else {
            if (name in values) throw ContractException("option $name is given twice: give it once")
            values[name] = value
        }
        i += 1
    }
    return Options(values, repeated)
}

/**
 * The case the --meta options give (field -> raw text): each FIELD=VALUE names a field the model's contract
 * reads, once; a field not given is missing, as in Python's encoder.
 */
private fun caseOf(spec: ModelSpec, meta: List<String>): Map<String, Any?> {
    val case = LinkedHashMap<String, Any?>()
    val fields = spec.metadata.fields
    for (item in meta) {
        if ('=' !in item) {
            val example = fields.firstOrNull() ?: "FIELD"
            throw ContractException("--meta \"$item\" is not FIELD=VALUE: write e.g. --meta $example=VALUE")
        }
        val field = item.substringBefore('=')
        if (field !in fields) {
            val known = if (fields.isEmpty()) "it reads none" else "its fields are ${fields.joinToString(", ")}"
            throw ContractException("--meta \"$item\": the model reads no field \"$field\" ($known)")
        }
        if (field in case) throw ContractException("--meta gives the field \"$field\" twice: give it once")
        case[field] = item.substringAfter('=')
    }
    return case
}

/** Reads the spec from a JSON file or from the model file that embeds it, checking the sidecar if any. */
fun loadSpec(path: File, sidecar: File?): ModelSpec {
    if (!path.isFile) throw ContractException("spec $path does not exist: give a .spec.json, .tflite or .onnx file")
    val bytes = try {
        path.readBytes()
    } catch (e: IOException) {
        throw ContractException("spec $path cannot be read (${e.message}): check its permissions")
    }
    val tfl3 = bytes.size >= 8 && String(bytes, 4, 4, Charsets.ISO_8859_1) == "TFL3"
    val isTflite = path.name.endsWith(".tflite") || tfl3
    val isOnnx = !isTflite && path.name.endsWith(".onnx")
    if (!isTflite && !isOnnx) {
        if (sidecar != null) throw ContractException("--sidecar only applies to a .tflite or .onnx --spec")
        return readSpec(String(bytes, Charsets.UTF_8), "spec $path")
    }
    val spec = if (isTflite) specFromTflite(bytes, path.toString()) else specFromOnnx(bytes, path.toString())
    val companion = sidecar ?: File(path.path + ".spec.json").takeIf { it.isFile }
    if (companion != null) {
        if (!companion.isFile) {
            throw ContractException("sidecar $companion does not exist: give the .spec.json written beside the model")
        }
        checkAgainstSidecar(spec, companion.readText(Charsets.UTF_8), companion.toString())
    }
    return spec
}

private fun run(args: Array<String>) {
    if (args.isEmpty()) {
        throw ContractException("no options given: preprocess --spec MODEL.tflite --image FILE.png (see --help)")
    }
    val opts = parseArgs(args)
    val specPath = opts["--spec"]
        ?: throw ContractException("--spec is required: give a .spec.json, .tflite or .onnx file")
    val imagePath = opts["--image"] ?: throw ContractException("--image is required: give the photo to preprocess")
    val spec = loadSpec(File(specPath), opts["--sidecar"]?.let { File(it) })
    // Metadata before pixels: a typo is reported at once, not after decoding a large photo.
    val meta = spec.encoder().encode(caseOf(spec, opts.all("--meta")))
    val image = decodeImageFile(File(imagePath))
    val tensor = imageTensor(spec, image.argb, image.width, image.height)
    val json = StringBuilder(tensor.size * 22 + 1024)
    json.append("{\"image\": {\"shape\": [").append(imageShape(spec.image).joinToString(", "))
    json.append("], \"layout\": \"").append(spec.image.layout).append("\", \"dtype\": \"float32\", \"data\": [")
    appendFloats(json, tensor)
    json.append("]}, \"meta\": [")
    appendFloats(json, meta)
    json.append("], \"meta_entries\": [")
    json.append(spec.metadata.entries.joinToString(", ") { jsonString(it) })
    json.append("], \"decoded\": {\"width\": ").append(image.width).append(", \"height\": ").append(image.height)
    json.append("}}\n")
    val out = opts["--out"]
    if (out == null || out == "-") {
        print(json)
        System.out.flush()
    } else {
        writeAtomically(File(out), json.toString())
    }
}

/** [text] as a JSON string literal (entry names come from the contract: any text, control characters included). */
private fun jsonString(text: String): String = com.google.gson.JsonPrimitive(text).toString()

/** Each float32 as the exact decimal of its double widening, so a reader gets back the same float32 bits. */
private fun appendFloats(sb: StringBuilder, values: FloatArray) {
    for (i in values.indices) {
        if (i > 0) sb.append(", ")
        sb.append(values[i].toDouble().toString())
    }
}

private fun writeAtomically(target: File, text: String) {
    val dir = target.absoluteFile.parentFile
    if (dir == null || !dir.isDirectory) throw ContractException("cannot write $target: its folder does not exist")
    val tmp = File(dir, ".${target.name}.tmp")
    try {
        tmp.writeText(text, Charsets.UTF_8)
        val options = arrayOf(StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE)
        Files.move(tmp.toPath(), target.absoluteFile.toPath(), *options)
    } catch (e: IOException) {
        tmp.delete()
        throw ContractException("cannot write $target (${e.message}): check the folder's permissions")
    }
}
