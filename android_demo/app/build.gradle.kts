import org.jetbrains.kotlin.gradle.dsl.JvmTarget

// :app: the Compose screen and the LiteRT runtime; everything about the model comes from :core reading the spec
// embedded in the .tflite asset that `make android-assets MODEL=...` copies in.
plugins {
    alias(libs.plugins.android.application)
    alias(libs.plugins.kotlin.android)
    alias(libs.plugins.kotlin.compose)
}

android {
    namespace = "com.melanomaexport.demo"
    compileSdk = 36

    defaultConfig {
        applicationId = "com.melanomaexport.demo"
        minSdk = 24
        targetSdk = 36
        versionCode = 1
        versionName = "0.1.0"
        testInstrumentationRunner = "androidx.test.runner.AndroidJUnitRunner"
    }

    buildTypes {
        release {
            isMinifyEnabled = false
        }
    }
    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
    buildFeatures {
        compose = true
    }
    // LiteRT maps the model straight from the APK: keep it uncompressed.
    androidResources {
        noCompress += "tflite"
    }
}

kotlin {
    compilerOptions { jvmTarget.set(JvmTarget.JVM_17) }
}

// A build without the model would install an app that can only say so: stop here with the command instead.
val modelAsset = layout.projectDirectory.file("src/main/assets/model.tflite")
val checkModelAsset by tasks.registering {
    doLast {
        if (!modelAsset.asFile.isFile) {
            throw GradleException(
                "app/src/main/assets/model.tflite is missing: run `make android-assets MODEL=<model>` in the " +
                    "repository root after `python -m export.all --model <model>`"
            )
        }
    }
}
tasks.named("preBuild") { dependsOn(checkModelAsset) }

dependencies {
    implementation(project(":core"))
    implementation(libs.litert)
    implementation(libs.kotlinx.coroutines.android)
    implementation(libs.androidx.core.ktx)
    implementation(libs.androidx.activity.compose)
    implementation(libs.androidx.lifecycle.viewmodel.compose)
    implementation(platform(libs.androidx.compose.bom))
    implementation(libs.androidx.compose.ui)
    implementation(libs.androidx.compose.foundation)
    implementation(libs.androidx.compose.material3)

    androidTestImplementation(libs.androidx.test.ext.junit)
    androidTestImplementation(libs.androidx.test.runner)
}
