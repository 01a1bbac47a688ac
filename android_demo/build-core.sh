#!/usr/bin/env bash
# Compiles the pure-Kotlin :core module with Debian's kotlinc (no Gradle, no network) into a jar that the
# `bin/preprocess` command runs; with --tests, also compiles its JUnit 4 tests.
#
#   android_demo/build-core.sh            -> build/melanoma-core.jar         (:core main + the preprocess CLI)
#   android_demo/build-core.sh --tests    -> also build/melanoma-core-tests.jar
#
# Environment: MELANOMA_CORE_BUILD (output folder, default android_demo/build), JAVA_LIBS (folder with
# gson.jar, junit4.jar, hamcrest-core.jar, kotlin-stdlib.jar; default /usr/share/java).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BUILD="${MELANOMA_CORE_BUILD:-$HERE/build}"
LIBS="${JAVA_LIBS:-/usr/share/java}"
INSTALL="sudo apt-get install -y kotlin junit4 libgoogle-gson-java"

tests=0
for arg in "$@"; do
  case "$arg" in
    --tests) tests=1 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "build-core.sh: unknown option '$arg': use --tests or nothing" >&2; exit 2 ;;
  esac
done

if ! command -v kotlinc >/dev/null 2>&1; then
  echo "build-core.sh: kotlinc is not installed: install the JVM toolchain with: $INSTALL" >&2
  exit 1
fi
needed=("$LIBS/gson.jar" "$LIBS/kotlin-stdlib.jar")
if [ "$tests" = 1 ]; then needed+=("$LIBS/junit4.jar" "$LIBS/hamcrest-core.jar"); fi
for jar in "${needed[@]}"; do
  if [ ! -f "$jar" ]; then
    echo "build-core.sh: $jar is missing: install the JVM toolchain with: $INSTALL" >&2
    exit 1
  fi
done

mkdir -p "$BUILD"
# kotlinc's own default is a 256 MB heap with the JIT's full tiers: with 1 GB, serial GC and the quick tier
# only, both jars built in 16 s instead of 26 s (AMD EPYC, 2 cores), the classes identical. JAVA_OPTS wins.
export JAVA_OPTS="${JAVA_OPTS:--Xmx1g -Xms256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC}"
# kotlinc 1.3 prints a JVM warning about -Xverify:none on JDK 13+ and nothing useful besides on success.
compile() {
  local out="$1"; shift
  # The temporary name ends in .jar (else kotlinc writes a folder), and replaces the jar in one rename.
  local tmp
  tmp="$(dirname "$out")/.tmp-$$-$(basename "$out")"
  if ! kotlinc -jvm-target 1.8 -nowarn "$@" -d "$tmp" 2> >(grep -v -e 'Xverify:none' -e '^$' >&2); then
    rm -rf "$tmp"
    echo "build-core.sh: compiling $(basename "$out") failed (see the errors above)" >&2
    exit 1
  fi
  rm -rf "$out"
  mv -f "$tmp" "$out"
}

compile "$BUILD/melanoma-core.jar" -cp "$LIBS/gson.jar" "$HERE/core/src/main/kotlin" "$HERE/core/src/cli/kotlin"
echo "built $BUILD/melanoma-core.jar"
if [ "$tests" = 1 ]; then
  # -Xfriend-paths: the tests see :core's internal functions, as Gradle's test source set does.
  compile "$BUILD/melanoma-core-tests.jar" -Xfriend-paths="$BUILD/melanoma-core.jar" \
    -cp "$BUILD/melanoma-core.jar:$LIBS/gson.jar:$LIBS/junit4.jar:$LIBS/hamcrest-core.jar" "$HERE/core/src/test/kotlin"
  echo "built $BUILD/melanoma-core-tests.jar"
fi
