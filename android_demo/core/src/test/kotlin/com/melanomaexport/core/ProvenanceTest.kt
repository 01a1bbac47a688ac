package com.melanomaexport.core

import com.google.gson.GsonBuilder
import com.google.gson.JsonArray
import com.google.gson.JsonObject
import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertNull
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test
import java.io.ByteArrayInputStream
import java.io.File
import java.io.InputStream
import java.security.KeyPair
import java.security.KeyPairGenerator
import java.security.PrivateKey
import java.security.Signature
import java.security.interfaces.ECPublicKey
import java.security.spec.ECGenParameterSpec
import java.util.Base64

/**
 * Signature verification (Provenance.kt, docs/signing.md): unit tests on bundles signed here with java.security,
 * then the cross-check: asset folders that `copy-assets.py` made from an export signed by model-signing (and
 * export folders), untouched and tampered, each refused with exactly the sentence Python's verifier
 * (export/sign.py) gives for the same tamper, or verified (tests/test_android_core.py writes them).
 */
class ProvenanceTest {
    // ---------------------------------------------------------------------------------------- bundles made here

    private fun ecKeys(curve: String = "secp256r1"): KeyPair {
        val generator = KeyPairGenerator.getInstance("EC")
        generator.initialize(ECGenParameterSpec(curve))
        return generator.generateKeyPair()
    }

    private fun pem(der: ByteArray): String {
        val body = Base64.getEncoder().encodeToString(der).chunked(64).joinToString("") { "$it\n" }
        return "-----BEGIN PUBLIC KEY-----\n$body-----END PUBLIC KEY-----\n"
    }

    private fun hex(bytes: ByteArray) = bytes.joinToString("") { String.format("%02x", it.toInt() and 0xff) }

    private fun sha256(bytes: ByteArray) = java.security.MessageDigest.getInstance("SHA-256").digest(bytes)

    /** An in-toto statement of model-signing's form for [files] (name -> content), root digest included. */
    private fun statement(files: Map<String, ByteArray>, ignore: List<String> = listOf("model.sig")): JsonObject {
        val resources = JsonArray()
        val digests = java.io.ByteArrayOutputStream()
        for ((name, content) in files) {
            val r = JsonObject()
            r.addProperty("name", name)
            r.addProperty("algorithm", "sha256")
            r.addProperty("digest", hex(sha256(content)))
            resources.add(r)
            digests.write(sha256(content))
        }
        val digest = JsonObject().apply { addProperty("sha256", hex(sha256(digests.toByteArray()))) }
        val subject = JsonObject().apply {
            addProperty("name", "dist")
            add("digest", digest)
        }
        val serialization = JsonObject().apply {
            addProperty("method", "files")
            addProperty("hash_type", "sha256")
            addProperty("allow_symlinks", false)
            add("ignore_paths", JsonArray().apply { ignore.forEach { add(it) } })
        }
        val predicate = JsonObject().apply {
            add("resources", resources)
            add("serialization", serialization)
        }
        return JsonObject().apply {
            addProperty("_type", "https://in-toto.io/Statement/v1")
            add("subject", JsonArray().apply { add(subject) })
            addProperty("predicateType", "https://model_signing/signature/v1.0")
            add("predicate", predicate)
        }
    }

    /** A bundle as model-signing writes it: [payload] signed by [private] (DER ECDSA over the DSSE PAE). */
    private fun bundle(
        payload: ByteArray,
        private: PrivateKey,
        hint: String?,
        edit: (JsonObject) -> Unit = {}
    ): ByteArray {
        val type = "application/vnd.in-toto+json"
        val signer = Signature.getInstance("SHA256withECDSA")
        signer.initSign(private)
        signer.update(pae(type, payload))
        val sig = JsonObject().apply {
            addProperty("sig", Base64.getEncoder().encodeToString(signer.sign()))
            addProperty("keyid", "")
        }
        val envelope = JsonObject().apply {
            addProperty("payload", Base64.getEncoder().encodeToString(payload))
            addProperty("payloadType", type)
            add("signatures", JsonArray().apply { add(sig) })
        }
        val publicKey = JsonObject().apply { if (hint != null) addProperty("hint", hint) }
        val material = JsonObject().apply {
            add("publicKey", publicKey)
            add("tlogEntries", JsonArray())
        }
        val root = JsonObject().apply {
            addProperty("mediaType", "application/vnd.dev.sigstore.bundle.v0.3+json")
            add("verificationMaterial", material)
            add("dsseEnvelope", envelope)
        }
        edit(root)
        return root.toString().toByteArray()
    }

    /** A bundle signed here over [files]' statement after [edit]. */
    private fun signed(edit: (JsonObject) -> Unit): ByteArray =
        bundle(statement(files).apply(edit).toString().toByteArray(), keys.private, null)

    private val files = linkedMapOf(
        "m.tflite" to "model".toByteArray(),
        "m.tflite.spec.json" to "{}".toByteArray(),
        "golden.json" to "[]".toByteArray(),
        "golden/a.png" to byteArrayOf(1),
        "golden/b.png" to byteArrayOf(2)
    )
    private val keys = ecKeys()
    private val key = readTrustedKey(pem(keys.public.encoded), "k.pub")
    private val payload = statement(files).toString().toByteArray()

    private fun held(map: Map<String, ByteArray>): Map<String, () -> InputStream> =
        map.mapValues { (_, bytes) -> { ByteArrayInputStream(bytes) as InputStream } }

    private fun refusal(block: () -> Unit): String = expectContract(block).message!!

    private val trusted16: String get() = keyHint(key).take(16)

    @Test
    fun aBundleSignedByTheTrustedKeyVerifies() {
        val statement = verifyBundle(bundle(payload, keys.private, keyHint(key)), key)
        assertEquals(files.keys.toList(), statement.resources.keys.toList())
        assertEquals(hex(sha256(byteArrayOf(2))), statement.resources["golden/b.png"])
        assertEquals(listOf("model.sig"), statement.ignored)
        assertEquals("dist", statement.name)
        assertEquals(keyHint(key), statement.keyHint)
        checkFiles(statement, held(files), required = listOf("m.tflite", "m.tflite.spec.json"))
        // Without a hint the signature check alone decides (as the reference verifier does).
        verifyBundle(bundle(payload, keys.private, null), key)
        verifyBundle(bundle(payload, keys.private, ""), key)
        // A hint that is not text is a malformed bundle (Python and JavaScript say the same).
        val numeric = bundle(payload, keys.private, null) { root ->
            root.getAsJsonObject("verificationMaterial").getAsJsonObject("publicKey").addProperty("hint", 0)
        }
        assertEquals(
            "malformed signature: model.sig is not a signed model statement (the key hint is not text)",
            refusal { verifyBundle(numeric, key) }
        )
    }

    @Test
    fun theKeyHintIsTheSha256OfTheCanonicalPem() {
        assertEquals(hex(sha256(pem(keys.public.encoded).toByteArray())), keyHint(key))
        // PEM with CRLF line ends, other line lengths and text around it names the same key.
        val body = Base64.getEncoder().encodeToString(keys.public.encoded).chunked(40).joinToString("\r\n")
        val loose = "a comment\r\n-----BEGIN PUBLIC KEY-----\r\n$body\r\n-----END PUBLIC KEY-----\r\n"
        assertEquals(keyHint(key), keyHint(readTrustedKey(loose, "k.pub")))
    }

    @Test
    fun noSignatureWhenTheBundleIsAbsent() {
        assertEquals(
            "no signature: model.sig is missing, and a trusted key requires a signed model",
            refusal { verifyBundle(null, key) }
        )
    }

    @Test
    fun anotherKeyIsNamedByItsHint() {
        val other = ecKeys()
        val otherHint = keyHint(other.public as ECPublicKey)
        assertEquals(
            "signed by another key: model.sig names key ${otherHint.take(16)}, not the trusted key $trusted16",
            refusal { verifyBundle(bundle(payload, other.private, otherHint), key) }
        )
        // Signed by another key but naming the trusted one (or none): the signature does not verify.
        val invalid = "invalid signature: model.sig does not verify with the trusted key $trusted16"
        assertEquals(invalid, refusal { verifyBundle(bundle(payload, other.private, keyHint(key)), key) })
        assertEquals(invalid, refusal { verifyBundle(bundle(payload, other.private, null), key) })
    }

    @Test
    fun aChangedPayloadOrSignatureDoesNotVerify() {
        val invalid = "invalid signature: model.sig does not verify with the trusted key $trusted16"
        val changed = statement(files + ("m.tflite" to "other model".toByteArray())).toString().toByteArray()
        val swapped = bundle(payload, keys.private, keyHint(key)) { root ->
            root.getAsJsonObject("dsseEnvelope").addProperty("payload", Base64.getEncoder().encodeToString(changed))
        }
        assertEquals(invalid, refusal { verifyBundle(swapped, key) })
        val notDer = bundle(payload, keys.private, null) { root ->
            val sig = root.getAsJsonObject("dsseEnvelope").getAsJsonArray("signatures")[0].asJsonObject
            sig.addProperty("sig", Base64.getEncoder().encodeToString(ByteArray(64) { 7 }))
        }
        assertEquals(invalid, refusal { verifyBundle(notDer, key) })
    }

    @Test
    fun aMalformedBundleIsRefusedBeforeTheSignature() {
        val prefix = "malformed signature: model.sig is not a signed model statement ("
        val good = bundle(payload, keys.private, keyHint(key))
        val broken: List<Pair<String, ByteArray>> = listOf(
            "truncated" to good.copyOf(good.size / 2),
            "not an object" to "[1]".toByteArray(),
            "empty" to ByteArray(0),
            "media type" to bundle(payload, keys.private, null) { it.addProperty("mediaType", "x") },
            "two signatures" to bundle(payload, keys.private, null) { root ->
                val list = root.getAsJsonObject("dsseEnvelope").getAsJsonArray("signatures")
                list.add(list[0])
            },
            "payload type" to bundle(payload, keys.private, null) {
                it.getAsJsonObject("dsseEnvelope").addProperty("payloadType", "application/json")
            },
            "payload not base64" to bundle(payload, keys.private, null) {
                it.getAsJsonObject("dsseEnvelope").addProperty("payload", "%%%")
            },
            "payload not JSON" to bundle("not json".toByteArray(), keys.private, null),
            "statement type" to signed { it.addProperty("_type", "x") },
            "root digest" to signed {
                val subject = it.getAsJsonArray("subject")[0].asJsonObject
                subject.getAsJsonObject("digest").addProperty("sha256", "0".repeat(64))
            },
            "digest not hex" to signed {
                val resource = it.getAsJsonObject("predicate").getAsJsonArray("resources")[0].asJsonObject
                resource.addProperty("digest", "g".repeat(64))
            },
            // Even signed by another key: the bundle is checked first.
            "media type, other key" to bundle(payload, ecKeys().private, "ab") { it.addProperty("mediaType", "x") }
        )
        for ((name, bytes) in broken) {
            val message = refusal { verifyBundle(bytes, key) }
            assertTrue("$name: $message", message.startsWith(prefix) && message.endsWith(")"))
        }
    }

    @Test
    fun aKeyThatIsNotAPemP256PublicKeyIsRefused() {
        val prefix = "the trusted key keys/k.pub is not a PEM EC public key ("
        val rsa = KeyPairGenerator.getInstance("RSA").apply { initialize(1024) }.generateKeyPair()
        val p384 = ecKeys("secp384r1")
        assertEquals(
            "${prefix}a private key: give its .pub)",
            refusal { readTrustedKey(pem(keys.private.encoded).replace("PUBLIC", "PRIVATE"), "keys/k.pub") }
        )
        val cases = mapOf(
            "empty" to "",
            "not PEM" to "hello",
            "not base64" to "-----BEGIN PUBLIC KEY-----\n%%%%\n-----END PUBLIC KEY-----\n",
            "not a key" to pem(byteArrayOf(1, 2, 3, 4)),
            "RSA" to pem(rsa.public.encoded),
            "private key" to pem(keys.private.encoded).replace("PUBLIC", "PRIVATE")
        )
        for ((name, text) in cases) {
            val message = refusal { readTrustedKey(text, "keys/k.pub") }
            assertTrue("$name: $message", message.startsWith(prefix) && message.endsWith(")"))
        }
        assertEquals(
            "${prefix}a 384-bit curve; the app takes P-256)",
            refusal { readTrustedKey(pem(p384.public.encoded), "keys/k.pub") }
        )
    }

    @Test
    fun changedThenRemovedThenAddedEachSorted() {
        val statement = verifyBundle(bundle(payload, keys.private, null), key)
        // What a phone requires: the artifact, its spec and the signed golden PNGs.
        val required = listOf("m.tflite", "m.tflite.spec.json", "golden/a.png", "golden/b.png")
        fun check(map: Map<String, ByteArray>) = refusal { checkFiles(statement, held(map), required) }
        assertEquals(
            "m.tflite was changed after signing: its sha256 is not the signed one",
            check(files + ("m.tflite" to byteArrayOf(0)))
        )
        assertEquals(
            "golden/b.png was removed after signing: the signature lists it",
            check(files - "golden/b.png")
        )
        assertEquals(
            "m.tflite.spec.json was removed after signing: the signature lists it",
            check(files - "m.tflite.spec.json")
        )
        // A renamed PNG: removed, then added.
        assertEquals(
            "golden/a.png was removed after signing: the signature lists it (and 1 more)",
            check(files - "golden/a.png" + ("golden/c.png" to byteArrayOf(1)))
        )
        assertEquals(
            "golden/z.png was added after signing: the signature does not list it",
            check(files + ("golden/z.png" to byteArrayOf(9)))
        )
        // Sorted within a group, changed before removed before added; N counts every other file.
        val many = files - "golden/b.png" - "m.tflite.spec.json" + ("golden/x.png" to byteArrayOf()) +
            ("golden.json" to byteArrayOf(5)) + ("golden/a.png" to byteArrayOf(5)) + ("golden/0.png" to byteArrayOf())
        assertEquals(
            "golden.json was changed after signing: its sha256 is not the signed one (and 5 more)",
            check(many)
        )
        val unchanged = many + ("golden/a.png" to byteArrayOf(1)) + ("golden.json" to "[]".toByteArray())
        assertEquals("golden/b.png was removed after signing: the signature lists it (and 3 more)", check(unchanged))
        // Only a required name is removed: a phone that lacks golden.json is not refused for that.
        checkFiles(statement, held(files - "golden.json"), required)
        // A folder (Python's verify_folder) requires every signed name.
        assertEquals(
            "golden.json was removed after signing: the signature lists it",
            refusal { checkFiles(statement, held(files - "golden.json"), statement.resources.keys) }
        )
    }

    @Test
    fun ignoredPathsLetNoHeldFileOff() {
        val ignoring = statement(files, ignore = listOf("model.sig", "benchmark_figures", ".git"))
        val statement = verifyBundle(bundle(ignoring.toString().toByteArray(), keys.private, null), key)
        assertTrue(statement.isIgnored("benchmark_figures/a.png"))
        assertTrue(statement.isIgnored("model.sig"))
        assertTrue(!statement.isIgnored("benchmark_figures2/a.png") && !statement.isIgnored("model.sig2"))
        // A phone checks a file under the name an unsigned manifest gives it: a model passed off under an
        // ignored name is "added", never waved through.
        val evil = files + ("benchmark_figures/x.tflite" to byteArrayOf(1))
        assertEquals(
            "benchmark_figures/x.tflite was added after signing: the signature does not list it",
            refusal { checkFiles(statement, held(evil), listOf("benchmark_figures/x.tflite")) }
        )
    }

    @Test
    fun verifyFolderHoldsEveryFileAndRefusesSymbolicLinks() {
        val folder = java.nio.file.Files.createTempDirectory("signed").toFile()
        try {
            for ((name, bytes) in files) File(folder, name).apply { parentFile.mkdirs() }.writeBytes(bytes)
            val trust = File(folder.parentFile, "${folder.name}.pub").apply { writeText(pem(keys.public.encoded)) }
            assertEquals(
                "no signature: model.sig is missing, and a trusted key requires a signed model",
                refusal { verifyFolder(folder, trust) }
            )
            File(folder, SIGNATURE_FILE).writeBytes(bundle(payload, keys.private, keyHint(key)))
            assertEquals(files.keys, verifyFolder(folder, trust).resources.keys)
            File(folder, "notes.txt").writeText("x")
            assertEquals(
                "notes.txt was added after signing: the signature does not list it",
                refusal { verifyFolder(folder, trust) }
            )
            File(folder, "notes.txt").delete()
            val link = File(folder, "golden/link.png").toPath()
            java.nio.file.Files.createSymbolicLink(link, File(folder, "golden/a.png").toPath())
            assertEquals(
                "golden/link.png is a symbolic link: a signed export holds plain files only",
                refusal { verifyFolder(folder, trust) }
            )
            val absent = File(folder, "absent.pub")
            assertEquals(
                "the trusted key $absent is not a PEM EC public key (no such file)",
                refusal { verifyFolder(folder, absent) }
            )
            trust.delete()
        } finally {
            folder.deleteRecursively()
        }
    }

    @Test
    fun base64MatchesTheJdk() {
        val random = java.util.Random(3)
        for (n in 0 until 70) {
            val bytes = ByteArray(n).also { random.nextBytes(it) }
            val text = Base64.getEncoder().encodeToString(bytes)
            assertEquals(text, base64(bytes))
            assertArrayEquals(bytes, decodeBase64(text))
        }
        // Python's b64decode(validate=True) (3.11): extra padding after a whole group is ignored, none is missing.
        assertArrayEquals("{\"}".toByteArray(), decodeBase64("eyJ9=="))
        assertArrayEquals("{\"".toByteArray(), decodeBase64("eyJ="))
        assertArrayEquals("y".toByteArray(), decodeBase64("eR=="))
        for (bad in listOf("abc", "ab", "eQ=", "eyJ==", "a===", "ab=c", "ab c", "ab\nc", "====", "=", "eyJ9==eyJ9")) {
            assertNull(bad, decodeBase64(bad))
        }
    }

    @Test
    fun assetsWithoutATrustedKeyAreUnsigned() {
        val empty = object : FileSource {
            override fun open(name: String): InputStream? = null
            override fun list(folder: String): List<String> = emptyList()
        }
        assertNull(verifyAssets(empty, ASSET_NAMES))
    }

    // ------------------------------------------------------------------------------ against Python's verifier

    /** A folder read as a [FileSource] (the app reads its assets the same way). */
    private class Folder(val root: File) : FileSource {
        override fun open(name: String): InputStream? = File(root, name).takeIf { it.isFile }?.inputStream()
        override fun list(folder: String): List<String> =
            File(root, folder).listFiles()?.filter { it.isFile }?.map { it.name }?.sorted() ?: emptyList()
    }

    /** Kotlin's verdict on one case: "verified", "unsigned" (assets without a trusted key) or the refusal. */
    private fun verdict(kind: String, folder: File, keyFile: File?, names: AssetNames): String =
        try {
            when (kind) {
                "assets" -> if (verifyAssets(Folder(folder), names) == null) "unsigned" else "verified"
                "folder" -> verifyFolder(folder, keyFile!!).let { "verified" }
                else -> throw AssertionError("unknown case kind $kind")
            }
        } catch (e: ContractException) {
            e.message ?: ""
        }

    private fun signingManifest(): JsonObject = readJson(File(signingDir(), "manifest.json")).asJsonObject

    private fun signingDir() = File(Inputs.casesDir(), "signing")

    /** One line per case where Kotlin and Python disagree; the verdicts go to the report for pytest's summary. */
    private class Verdicts(val report: String) {
        val rows = JsonArray()
        val failures = ArrayList<String>()

        fun add(case: String, kind: String, kotlin: String, python: String) {
            if (kotlin != python) failures.add("$kind $case: Kotlin says \"$kotlin\", Python \"$python\"")
            rows.add(JsonObject().apply {
                addProperty("case", case)
                addProperty("kind", kind)
                addProperty("kotlin", kotlin)
                addProperty("python", python)
            })
        }

        fun finish() {
            assertTrue("the manifest lists cases", rows.size() > 0)
            val text = GsonBuilder().setPrettyPrinting().create().toJson(rows)
            Inputs.report?.let { File(it, report).writeText(text) }
            if (failures.isNotEmpty()) fail(failures.joinToString("; "))
        }
    }

    @Test
    fun everyBundleEditIsJudgedAsPythonJudgesIt() {
        val dir = signingDir()
        val manifest = signingManifest()
        // The hint of each key as Python writes it (sha256 of the .pub file) is the one Kotlin derives.
        for (k in manifest.getAsJsonArray("keys")) {
            val pemFile = File(dir, k.asJsonObject.get("pem").asString)
            val derived = keyHint(readTrustedKey(pemFile.readText(), pemFile.name))
            assertEquals(pemFile.name, k.asJsonObject.get("hint").asString, derived)
        }
        val key = readTrustedKey(File(dir, "keys/ours.pub").readText(), "ours.pub")
        val verdicts = Verdicts("signing_bundles.json")
        for (element in manifest.getAsJsonArray("bundles")) {
            val case = element.asJsonObject
            val bytes = File(dir, case.get("file").asString).readBytes()
            val kotlin = try {
                verifyBundle(bytes, key).let { "verified" }
            } catch (e: ContractException) {
                e.message ?: ""
            }
            verdicts.add(case.get("name").asString, "bundle", kotlin, case.get("expected").asString)
        }
        verdicts.finish()
    }

    @Test
    fun everyTamperedFolderIsRefusedWithPythonsSentence() {
        val dir = signingDir()
        val manifest = signingManifest()
        val a = manifest.getAsJsonObject("assets")
        val names = AssetNames(
            model = a.get("model").asString,
            spec = a.get("spec").asString,
            manifest = a.get("manifest").asString,
            golden = a.get("golden").asString,
            goldenDir = a.get("golden_dir").asString,
            signature = a.get("signature").asString,
            trustedKey = a.get("trusted_key").asString
        )
        val verdicts = Verdicts("signing.json")
        for (element in manifest.getAsJsonArray("cases")) {
            val case = element.asJsonObject
            val kind = case.get("kind").asString
            val keyFile = case.get("key")?.takeIf { !it.isJsonNull }?.let { File(dir, it.asString) }
            val kotlin = verdict(kind, File(dir, case.get("folder").asString), keyFile, names)
            verdicts.add(case.get("name").asString, kind, kotlin, case.get("expected").asString)
        }
        verdicts.finish()
    }

    companion object {
        /** The app's asset names (ModelAssets.kt). */
        val ASSET_NAMES = AssetNames(
            model = "model.tflite", spec = "model.tflite.spec.json", manifest = "model.json", golden = "golden.json",
            goldenDir = "golden", signature = "model.sig", trustedKey = "signing_key.pub"
        )
    }
}
