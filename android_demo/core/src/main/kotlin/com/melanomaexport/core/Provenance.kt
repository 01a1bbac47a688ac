package com.melanomaexport.core

import com.google.gson.JsonElement
import java.io.File
import java.io.InputStream
import java.math.BigInteger
import java.nio.ByteBuffer
import java.nio.charset.CharacterCodingException
import java.nio.charset.CodingErrorAction
import java.security.GeneralSecurityException
import java.security.KeyFactory
import java.security.MessageDigest
import java.security.Signature
import java.security.SignatureException
import java.security.interfaces.ECPublicKey
import java.security.spec.ECFieldFp
import java.security.spec.X509EncodedKeySpec

/*
 * Signed exports (docs/signing.md, export/sign.py): the Sigstore bundle `model.sig` that `python -m export.sign`
 * writes, verified with java.security only, in the order and with the sentences of the Python verifier
 * (export/sign.py, function for function): the trusted key ([readTrustedKey]), the bundle and its signature
 * ([verifyBundle]), then the files ([checkFiles]): [verifyFolder] for an export folder, [verifyAssets] for what
 * the app holds.
 */

/** The signature file's name in an export folder and in the app's assets. */
const val SIGNATURE_FILE = "model.sig"

private const val BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
private const val PAYLOAD_TYPE = "application/vnd.in-toto+json"
private const val STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
private const val PREDICATE_TYPE = "https://model_signing/signature/v1.0"

// P-256 (secp256r1): the field prime and the group order, enough to tell it from every other curve.
private val P256_PRIME = BigInteger("ffffffff00000001000000000000000000000000ffffffffffffffffffffffff", 16)
private val P256_ORDER = BigInteger("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551", 16)

private const val PEM_BEGIN = "-----BEGIN PUBLIC KEY-----"
private const val PEM_END = "-----END PUBLIC KEY-----"

/**
 * What a verified `model.sig` says (export/sign.py: SignedStatement).
 *
 * @property name the folder name the statement was made for (its subject).
 * @property resources resource name (a path relative to the folder, with `/`) -> its sha256 (lower-case hex),
 *     in the order the statement lists them.
 * @property ignored the paths the signer left out (and every verifier skips).
 * @property keyHint the trusted key's hint ([keyHint]): the key the signature verified with.
 */
class SignedStatement(
    val name: String,
    val resources: Map<String, String>,
    val ignored: List<String>,
    val keyHint: String
) {
    /** Whether [path] is one of [ignored] or lies under one. */
    fun isIgnored(path: String): Boolean = ignored.any { path == it || path.startsWith("$it/") }
}

/** How many hex characters of a key hint the sentences show (export/sign.py: HINT_CHARS). */
const val HINT_CHARS = 16

private fun badKey(path: String, detail: String) =
    ContractException("the trusted key $path is not a PEM EC public key ($detail)")

private fun malformed(detail: String) =
    ContractException("malformed signature: $SIGNATURE_FILE is not a signed model statement ($detail)")

/**
 * Reads the trusted public key (export/sign.py: read_trusted_key): PEM text of an EC SubjectPublicKeyInfo on
 * P-256, the one curve the phone verifiers take (Python also takes P-384 and P-521).
 *
 * @param path how the refusal names the key (a file path, or the asset name).
 * @throws ContractException the "bad key" sentence of docs/signing.md.
 */
fun readTrustedKey(pem: String, path: String): ECPublicKey {
    val begin = pem.indexOf(PEM_BEGIN)
    val end = pem.indexOf(PEM_END)
    if (begin < 0 || end < begin) {
        throw badKey(path, if ("PRIVATE KEY" in pem) "a private key: give its .pub" else "no PUBLIC KEY block")
    }
    val body = pem.substring(begin + PEM_BEGIN.length, end).filter { !it.isWhitespace() }
    val der = decodeBase64(body) ?: throw badKey(path, "bad base64")
    val key = try {
        KeyFactory.getInstance("EC").generatePublic(X509EncodedKeySpec(der))
    } catch (e: GeneralSecurityException) {
        throw badKey(path, "not an EC public key")
    }
    if (key !is ECPublicKey) throw badKey(path, "not an EC public key")
    val params = key.params
    val prime = (params.curve.field as? ECFieldFp)?.p
    if (prime != P256_PRIME || params.order != P256_ORDER) {
        throw badKey(path, "a ${params.curve.field.fieldSize}-bit curve; the app takes P-256")
    }
    return key
}

/**
 * The key hint a bundle names its signer by: sha256 (lower-case hex) of the key as PEM text (the base64 of its
 * DER SubjectPublicKeyInfo in lines of 64 characters, each line ending in a newline), as model-signing writes it.
 */
fun keyHint(key: ECPublicKey): String {
    val body = base64(key.encoded).chunked(64).joinToString("") { "$it\n" }
    return sha256Hex("$PEM_BEGIN\n$body$PEM_END\n".toByteArray(Charsets.US_ASCII))
}

/** DSSE's pre-authentication encoding, what the ECDSA signature is over (export/sign.py: pae). */
fun pae(payloadType: String, payload: ByteArray): ByteArray {
    val type = payloadType.toByteArray(Charsets.UTF_8)
    return "DSSEv1 ${type.size} $payloadType ${payload.size} ".toByteArray(Charsets.UTF_8) + payload
}

/**
 * Checks 2 to 5 of docs/signing.md on the bytes of `model.sig` (export/sign.py: verify_bundle): it exists,
 * parses as a bundle of one DSSE signature over an in-toto statement of model-signing's types whose root
 * digest matches its resources, names [key] (when it names a key), and its ECDSA P-256 signature over the PAE
 * of the payload verifies with [key].
 *
 * @param bundle the file's bytes; null when there is none.
 * @return what the statement signs (the files are checked by [checkFiles]).
 * @throws ContractException the "no signature", "malformed", "another key" or "bad signature" sentence.
 */
fun verifyBundle(bundle: ByteArray?, key: ECPublicKey): SignedStatement {
    if (bundle == null) {
        throw ContractException("no signature: $SIGNATURE_FILE is missing, and a trusted key requires a signed model")
    }
    val data = parseJson(bundle) ?: throw malformed("not JSON")
    if (!data.isJsonObject || stringAt(data, "mediaType") != BUNDLE_MEDIA_TYPE) {
        throw malformed("mediaType is not $BUNDLE_MEDIA_TYPE")
    }
    val envelope = field(data, "dsseEnvelope", JsonKind.OBJECT, "").asJsonObject
    if (stringAt(envelope, "payloadType") != PAYLOAD_TYPE) throw malformed("payloadType is not $PAYLOAD_TYPE")
    val signatures = field(envelope, "signatures", JsonKind.LIST, "dsseEnvelope.").asJsonArray
    if (signatures.size() != 1) throw malformed("${signatures.size()} signatures instead of one")
    val signature = base64Field(field(signatures[0], "sig", JsonKind.STRING, "signatures[0]."), "the signature")
    val payload = base64Field(field(envelope, "payload", JsonKind.STRING, "dsseEnvelope."), "the payload")
    val statement = parseStatement(payload)
    val material = data.asJsonObject.get("verificationMaterial")
    val publicKey = if (material != null && material.isJsonObject) material.asJsonObject.get("publicKey") else null
    val hintValue = if (publicKey != null && publicKey.isJsonObject) publicKey.asJsonObject.get("hint") else null
    val hint = when {
        hintValue == null || hintValue.isJsonNull -> ""
        hintValue.isJsonPrimitive && hintValue.asJsonPrimitive.isString -> hintValue.asString
        else -> throw malformed("the key hint is not text")
    }
    val trusted = keyHint(key)
    if (hint != "" && hint != trusted) {
        throw ContractException(
            "signed by another key: $SIGNATURE_FILE names key ${hint.take(HINT_CHARS)}, " +
                "not the trusted key ${trusted.take(HINT_CHARS)}"
        )
    }
    val verifier = Signature.getInstance("SHA256withECDSA")
    verifier.initVerify(key)
    verifier.update(pae(PAYLOAD_TYPE, payload))
    val valid = try {
        verifier.verify(signature)
    } catch (e: SignatureException) {
        false // not a DER ECDSA signature at all: it does not verify either
    }
    if (!valid) {
        throw ContractException(
            "invalid signature: $SIGNATURE_FILE does not verify with the trusted key ${trusted.take(HINT_CHARS)}"
        )
    }
    return SignedStatement(statement.name, statement.resources, statement.ignored, trusted)
}

/** The in-toto statement (export/sign.py: _statement), checked for shape and root digest; no key hint yet. */
private fun parseStatement(payload: ByteArray): SignedStatement {
    val statement = parseJson(payload) ?: throw malformed("the payload is not JSON")
    if (!statement.isJsonObject || stringAt(statement, "_type") != STATEMENT_TYPE) {
        throw malformed("the statement's _type is not $STATEMENT_TYPE")
    }
    if (stringAt(statement, "predicateType") != PREDICATE_TYPE) {
        throw malformed("the predicateType is not $PREDICATE_TYPE")
    }
    val subjects = field(statement, "subject", JsonKind.LIST, "statement.").asJsonArray
    if (subjects.size() != 1) throw malformed("${subjects.size()} subjects instead of one")
    val digest = field(subjects[0], "digest", JsonKind.OBJECT, "subject.")
    val root = field(digest, "sha256", JsonKind.STRING, "subject.digest.").asString
    val predicate = field(statement, "predicate", JsonKind.OBJECT, "statement.")
    val serialization = field(predicate, "serialization", JsonKind.OBJECT, "predicate.")
    if (stringAt(serialization, "method") != "files" || stringAt(serialization, "hash_type") != "sha256") {
        throw malformed("the serialization is not sha256 per file")
    }
    val ignored = ArrayList<String>()
    if (serialization.asJsonObject.has("ignore_paths")) {
        val list = serialization.asJsonObject.get("ignore_paths")
        val names = if (list.isJsonArray) list.asJsonArray.toList() else null
        if (names == null || names.any { !it.isJsonPrimitive || !it.asJsonPrimitive.isString }) {
            throw malformed("ignore_paths is not a list of names")
        }
        names.mapTo(ignored) { it.asString }
    }
    val resources = LinkedHashMap<String, String>()
    val concatenated = MessageDigest.getInstance("SHA-256")
    for (entry in field(predicate, "resources", JsonKind.LIST, "predicate.").asJsonArray) {
        val name = field(entry, "name", JsonKind.STRING, "resource.").asString
        val value = field(entry, "digest", JsonKind.STRING, "resource.").asString
        if (stringAt(entry, "algorithm") != "sha256" || value.length != 64) {
            throw malformed("the digest of $name is not a sha256")
        }
        if (!value.all { it in '0'..'9' || it in 'a'..'f' || it in 'A'..'F' }) {
            throw malformed("the digest of $name is not hexadecimal")
        }
        concatenated.update(hexBytes(value))
        resources[name] = lower(value)
    }
    if (hex(concatenated.digest()) != lower(root)) {
        throw malformed("the subject's digest does not match its resources")
    }
    val name = subjects[0].asJsonObject.get("name")
    val subjectName = if (name != null && name.isJsonPrimitive) name.asString else ""
    return SignedStatement(subjectName, resources, ignored, "")
}

/**
 * Check 6 of docs/signing.md (export/sign.py: check_files): the files a verifier holds, under the names the
 * statement signs them as, against it: "changed" (a held file whose sha256 is not the signed one), then
 * "removed" (a [required] name not held), then "added" (a held file the statement neither lists nor ignores);
 * each group in sorted order, the first one's sentence ending in " (and N more)" when N other files differ.
 * [verifyFolder] holds a whole folder and requires every signed name; [verifyAssets] what the app holds.
 *
 * @param held signed name -> a source of the file's bytes (opened at most once, and closed).
 * @throws ContractException the "changed", "removed" or "added" sentence.
 */
fun checkFiles(statement: SignedStatement, held: Map<String, () -> InputStream>, required: Collection<String>) {
    val changed = held.filter { (name, open) ->
        val signed = statement.resources[name]
        signed != null && open().use { sha256Hex(it) } != signed
    }.keys.sorted()
    val removed = required.toSet().filter { it !in held }.sorted()
    // No held name is let off by the ignored paths: the app holds only files it uses, and folderFiles leaves
    // out what the statement ignores.
    val added = held.keys.filter { it !in statement.resources }.sorted()
    val problems = changed.map { "$it was changed after signing: its sha256 is not the signed one" } +
        removed.map { "$it was removed after signing: the signature lists it" } +
        added.map { "$it was added after signing: the signature does not list it" }
    if (problems.isNotEmpty()) {
        val more = if (problems.size > 1) " (and ${problems.size - 1} more)" else ""
        throw ContractException(problems[0] + more)
    }
}

/**
 * Every file under [folder] the statement does not ignore, by its path relative to the folder with `/`
 * (export/sign.py: folder_files).
 *
 * @throws ContractException for a symbolic link (a signed export holds plain files only).
 */
fun folderFiles(folder: File, statement: SignedStatement): Map<String, () -> InputStream> {
    val held = LinkedHashMap<String, () -> InputStream>()
    // Depth first, each folder's entries by name: the order of Python's sorted(folder.rglob("*")); a symbolic
    // link is reported, never followed.
    fun visit(dir: File, prefix: String) {
        for (file in (dir.listFiles() ?: emptyArray()).sortedBy { it.name }) {
            val name = prefix + file.name
            // Links and special files are refused wherever they are, ignored paths included (as the reference does).
            if (isSymbolicLink(file)) {
                throw ContractException("$name is a symbolic link: a signed export holds plain files only")
            }
            when {
                file.isDirectory -> visit(file, "$name/")
                !file.isFile -> throw ContractException("$name is not a plain file: a signed export holds plain files only")
                !statement.isIgnored(name) -> held[name] = { file.inputStream() }
            }
        }
    }
    visit(folder, "")
    return held
}

/** Whether [file] itself is a symbolic link (java.io only: java.nio.file needs Android API 26). */
private fun isSymbolicLink(file: File): Boolean {
    val parent = file.absoluteFile.parentFile ?: return false
    return File(parent.canonicalFile, file.name).canonicalPath != File(parent.canonicalFile, file.name).absolutePath
}

/**
 * Verifies folder/model.sig with the trusted key in the file [trust] and every file of [folder] against it
 * (export/sign.py: verify_folder; what the reference verifier checks).
 *
 * @throws ContractException the first refusal, as its one sentence.
 */
fun verifyFolder(folder: File, trust: File): SignedStatement {
    if (!trust.isFile) throw badKey(trust.path, "no such file")
    val key = readTrustedKey(trust.readText(Charsets.US_ASCII), trust.path)
    val signature = File(folder, SIGNATURE_FILE)
    val statement = verifyBundle(if (signature.isFile) signature.readBytes() else null, key)
    checkFiles(statement, folderFiles(folder, statement), statement.resources.keys)
    return statement
}

/** Files read by name: the app's assets, or a folder in the tests. */
interface FileSource {
    /** The file [name] (a path with `/`), or null when there is none. */
    fun open(name: String): InputStream?

    /** The names of the files directly inside [folder] (empty when there is no such folder). */
    fun list(folder: String): List<String>
}

/**
 * The app's asset names (ModelAssets.kt in the app; android_demo/copy-assets.py writes them). Only the model
 * and its spec sidecar differ from the names in the export (`<artifact>`, `<artifact>.spec.json`, where
 * `<artifact>` is the [manifest]'s `artifact`).
 */
class AssetNames(
    val model: String,
    val spec: String,
    val manifest: String,
    val golden: String,
    val goldenDir: String,
    val signature: String,
    val trustedKey: String
)

/** The folder of golden PNGs, in an export and in the app's assets. */
const val GOLDEN_FOLDER = "golden"

/**
 * What the app checks before it creates its classifier ("What a phone checks" in docs/signing.md): when
 * [assets] hold the trusted key [AssetNames.trustedKey], the key, the signature and the files the app holds:
 * the model and its spec against the artifact's signed names (`model.json`'s `artifact`), golden.json and every
 * golden PNG against their own; a signed golden PNG, the artifact or its spec that the assets lack is removed,
 * a golden PNG they hold unsigned is added.
 *
 * @return the verified statement; null when the assets hold no trusted key (an unsigned model, run as it is).
 * @throws ContractException the first refusal, as its one sentence.
 */
fun verifyAssets(assets: FileSource, names: AssetNames): SignedStatement? {
    val keyText = assets.open(names.trustedKey)?.use { it.readBytes() } ?: return null
    val key = readTrustedKey(String(keyText, Charsets.US_ASCII), names.trustedKey)
    val statement = verifyBundle(assets.open(names.signature)?.use { it.readBytes() }, key)
    val manifest = assets.open(names.manifest)?.use { it.readBytes() }?.let { parseJson(it) }
    val artifact = manifest?.let { stringAt(it, "artifact") }
    if (artifact == null || artifact == "") {
        throw ContractException(
            "the app's ${names.manifest} asset does not name the artifact ${names.model} is: run " +
                "`make android-assets MODEL=<model>` and build the app again"
        )
    }
    val asSigned = LinkedHashMap<String, String>() // signed name -> asset name
    asSigned[artifact] = names.model
    asSigned["$artifact.spec.json"] = names.spec
    asSigned[names.golden] = names.golden
    for (file in assets.list(names.goldenDir)) {
        if (file.endsWith(".png")) asSigned["$GOLDEN_FOLDER/$file"] = "${names.goldenDir}/$file"
    }
    val held = LinkedHashMap<String, () -> InputStream>()
    for ((signed, asset) in asSigned) {
        if (assets.open(asset)?.use { true } == true) {
            held[signed] = { assets.open(asset) ?: throw ContractException("the asset $asset cannot be read") }
        }
    }
    val goldenPngs = statement.resources.keys.filter { isGoldenPng(it) }
    checkFiles(statement, held, listOf(artifact, "$artifact.spec.json") + goldenPngs)
    return statement
}

/** `golden/<file>.png`: a golden PNG, which a phone holds. */
private fun isGoldenPng(name: String): Boolean =
    name.startsWith("$GOLDEN_FOLDER/") && name.endsWith(".png") && name.indexOf('/', GOLDEN_FOLDER.length + 1) < 0

// --------------------------------------------------------------------------------------------------- helpers

/** One JSON document (strict; the bytes must be UTF-8), or null when it is not one. */
private fun parseJson(bytes: ByteArray): JsonElement? {
    val text = try {
        Charsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
            .onUnmappableCharacter(CodingErrorAction.REPORT).decode(ByteBuffer.wrap(bytes)).toString()
    } catch (e: CharacterCodingException) {
        return null
    }
    return try {
        Json.parse(text, "the file")
    } catch (e: ContractException) {
        null
    }
}

private enum class JsonKind { OBJECT, LIST, STRING }

/** [obj]'s field [key] of [kind]; else the malformed refusal "no <where><key>" (export/sign.py: _field). */
private fun field(obj: JsonElement, key: String, kind: JsonKind, where: String): JsonElement {
    val value = if (obj.isJsonObject) obj.asJsonObject.get(key) else null
    val ok = value != null && when (kind) {
        JsonKind.OBJECT -> value.isJsonObject
        JsonKind.LIST -> value.isJsonArray
        JsonKind.STRING -> value.isJsonPrimitive && value.asJsonPrimitive.isString
    }
    if (!ok) throw malformed("no $where$key")
    return value!!
}

private fun base64Field(value: JsonElement, what: String): ByteArray =
    decodeBase64(value.asString) ?: throw malformed("$what is not base64")

private fun stringAt(obj: JsonElement, name: String): String? {
    val value = if (obj.isJsonObject) obj.asJsonObject.get(name) else null
    return if (value != null && value.isJsonPrimitive && value.asJsonPrimitive.isString) value.asString else null
}

private fun hexBytes(hex: String): ByteArray =
    ByteArray(hex.length / 2) { hex.substring(2 * it, 2 * it + 2).toInt(16).toByte() }

/** Python's `str.lower()` for the hex digests (no locale rules). */
private fun lower(text: String): String = String(CharArray(text.length) { Character.toLowerCase(text[it]) })

private fun hex(bytes: ByteArray): String = bytes.joinToString("") { String.format("%02x", it.toInt() and 0xff) }

internal fun sha256Hex(bytes: ByteArray): String = hex(MessageDigest.getInstance("SHA-256").digest(bytes))

internal fun sha256Hex(stream: InputStream): String {
    val digest = MessageDigest.getInstance("SHA-256")
    val buffer = ByteArray(1 shl 16)
    while (true) {
        val n = stream.read(buffer)
        if (n < 0) break
        digest.update(buffer, 0, n)
    }
    return hex(digest.digest())
}

// Base64 (RFC 4648, standard alphabet, padded) by hand: java.util.Base64 needs Android API 26 and the app
// supports 24.
private const val BASE64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

/**
 * The bytes of base64 [text] as Python's `base64.b64decode(text, validate=True)` reads it (export/sign.py):
 * the standard alphabet, then at most two `=`, as many as the last group needs (more after a whole group are
 * ignored); null when Python refuses it.
 */
internal fun decodeBase64(text: String): ByteArray? {
    val data = text.trimEnd('=')
    val pads = text.length - data.length
    val complete = when (data.length % 4) {
        0 -> pads <= 2 && (pads == 0 || data.isNotEmpty())
        2 -> pads == 2
        3 -> pads == 1
        else -> false
    }
    if (!complete) return null
    val out = java.io.ByteArrayOutputStream(data.length / 4 * 3 + 2)
    var group = 0
    var bits = 0
    for (c in data) {
        val value = BASE64_ALPHABET.indexOf(c)
        if (value < 0) return null
        group = (group shl 6) or value
        bits += 6
        if (bits >= 8) {
            bits -= 8
            out.write((group shr bits) and 0xff)
        }
        group = group and ((1 shl bits) - 1)
    }
    return out.toByteArray()
}

internal fun base64(bytes: ByteArray): String {
    val out = StringBuilder((bytes.size + 2) / 3 * 4)
    for (i in bytes.indices step 3) {
        val n = minOf(3, bytes.size - i)
        var group = 0
        for (k in 0 until 3) group = (group shl 8) or (if (k < n) bytes[i + k].toInt() and 0xff else 0)
        for (k in 0 until 4) out.append(if (k <= n) BASE64_ALPHABET[(group shr (18 - 6 * k)) and 0x3f] else '=')
    }
    return out.toString()
}
