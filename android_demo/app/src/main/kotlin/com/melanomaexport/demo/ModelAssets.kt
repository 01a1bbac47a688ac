package com.melanomaexport.demo

import android.content.Context
import com.melanomaexport.core.ContractException
import java.io.FileNotFoundException

// The assets `make android-assets` (android_demo/copy-assets.py) writes; tests/test_android_core.py checks that
// both sides use the same names.
const val MODEL_ASSET = "model.tflite"
const val SPEC_ASSET = "model.tflite.spec.json"
const val MANIFEST_ASSET = "model.json"
const val GOLDEN_ASSET = "golden.json"
const val GOLDEN_DIR_ASSET = "golden"

/** Reads a whole asset; a missing one becomes the sentence that says how to add it. */
fun readAsset(context: Context, name: String): ByteArray =
    try {
        context.assets.open(name).use { it.readBytes() }
    } catch (e: FileNotFoundException) {
        throw ContractException(
            "the app has no $name asset: run `make android-assets MODEL=<model>` and build the app again",
        )
    }

/** A text asset (UTF-8). */
fun readTextAsset(context: Context, name: String): String = String(readAsset(context, name), Charsets.UTF_8)
