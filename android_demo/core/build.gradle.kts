import org.jetbrains.kotlin.gradle.dsl.JvmTarget

// :core: the whole contract (spec, Pillow-exact preprocessing, metadata encoding, decision) as plain Kotlin/JVM,
// no android.* import, so that the same sources run in the app and in JVM tests against Python. Written within
// Kotlin 1.3 (what Debian's kotlinc compiles in build-core.sh).
plugins {
    `java-library`
    alias(libs.plugins.kotlin.jvm)
}

java {
    sourceCompatibility = JavaVersion.VERSION_17
    targetCompatibility = JavaVersion.VERSION_17
}

kotlin {
    compilerOptions { jvmTarget.set(JvmTarget.JVM_17) }
}

// The preprocess command line decodes files with javax.imageio, which Android lacks: it lives in its own source
// set (src/cli/kotlin), outside the jar the app depends on. The JUnit tests use it to read PNGs.
val cli: SourceSet by sourceSets.creating {
    compileClasspath += sourceSets.main.get().output + sourceSets.main.get().compileClasspath
    runtimeClasspath += sourceSets.main.get().output + sourceSets.main.get().runtimeClasspath
}

sourceSets.test {
    compileClasspath += cli.output
    runtimeClasspath += cli.output
}

dependencies {
    api(libs.gson) // ModelSpec.json is a gson JsonObject
    testImplementation(libs.junit)
}

// The cross-checks against Python read their inputs from these properties (tests/test_android_core.py passes
// them to the JUnit runner; here: ./gradlew :core:test -Pmelanoma.export=../dist/<model>). Without them those
// tests are skipped and the unit tests still run.
tasks.test {
    listOf("melanoma.cases", "melanoma.export", "melanoma.report").forEach { key ->
        providers.gradleProperty(key).orNull?.let { systemProperty(key, file(it).absolutePath) }
    }
}

tasks.register<JavaExec>("preprocess") {
    group = "application"
    description = "The preprocess command line: ./gradlew :core:preprocess --args='--spec M.tflite --image F.png'"
    classpath = cli.runtimeClasspath
    mainClass.set("com.melanomaexport.core.cli.MainKt")
}
