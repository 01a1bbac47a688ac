package com.melanomaexport.demo

import android.content.Context
import com.melanomaexport.core.AssetNames
import com.melanomaexport.core.ContractException
import com.melanomaexport.core.FileSource
import com.melanomaexport.core.SignedStatement
import com.melanomaexport.core.verifyAssets
import java.io.FileNotFoundException
import java.io.InputStream

// The assets `make android-assets` (android_demo/copy-assets.py) writes; tests/test_android_core.py checks that
// both sides use the same names.
const val MODEL_ASSET = "model.tflite"
const val SPEC_ASSET = "model.tflite.spec.json"
const val MANIFEST_ASSET = "model.json"
const val GOLDEN_ASSET = "golden.json"
const val GOLDEN_DIR_ASSET = "golden"
const val SIGNATURE_ASSET = "model.sig" // when the export is signed (python -m export.sign)
const val TRUSTED_KEY_ASSET = "signing_key.pub" // with copy-assets.py --trust KEY.pub: only signed models run

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

/** The assets as :core reads files (a missing one is null). */
private class Assets(private val context: Context) : FileSource {
    override fun open(name: String): InputStream? =
        try {
            context.assets.open(name)
        } catch (e: FileNotFoundException) {
            null
        }

    override fun list(folder: String): List<String> = context.assets.list(folder)?.toList() ?: emptyList()
}

private val ASSET_NAMES = AssetNames(
    model = MODEL_ASSET,
    spec = SPEC_ASSET,
    manifest = MANIFEST_ASSET,
    golden = GOLDEN_ASSET,
    goldenDir = GOLDEN_DIR_ASSET,
    signature = SIGNATURE_ASSET,
    trustedKey = TRUSTED_KEY_ASSET,
)

/**
 * When the assets hold [TRUSTED_KEY_ASSET]: verifies [SIGNATURE_ASSET] with it and the model, its spec,
 * golden.json and the golden PNGs against the signed sha256s (:core's verifyAssets, docs/signing.md). Call it
 * before anything reads the model.
 *
 * @return the verified statement; null when no key is pinned (an unsigned model, which the app runs).
 * @throws ContractException the refusal, one sentence.
 */
fun verifyModelAssets(context: Context): SignedStatement? = verifyAssets(Assets(context), ASSET_NAMES)
