// The Android Studio project: :core (plain Kotlin/JVM, all of the contract) and :app (Compose + LiteRT).
// Not built on the project's CI machines (no Android SDK or Maven there); :core is compiled and tested there
// with Debian's kotlinc instead (build-core.sh, tests/test_android_core.py).
pluginManagement {
    repositories {
        google {
            content {
                includeGroupByRegex("com\\.android.*")
                includeGroupByRegex("com\\.google.*")
                includeGroupByRegex("androidx.*")
            }
        }
        mavenCentral()
        gradlePluginPortal()
    }
}

dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        google()
        mavenCentral()
    }
}

rootProject.name = "melanoma-android-demo"
include(":core", ":app")
