#!/usr/bin/env bash
# The phone-side toolchains the tests use, from Debian's packages: kotlinc, junit4 and gson for the Android
# :core JUnit tests; chromium, Node.js and npm for the browser tests. `make test` (and so `.ci/run`) runs this
# first: it installs what is missing when it can (root, or sudo without a password, and apt-get), and
# otherwise prints the one command to run. Those tests then skip, saying so, or fail under CI=true.
set -uo pipefail
need=()
command -v kotlinc >/dev/null 2>&1 || need+=(kotlin)
[ -f /usr/share/java/junit4.jar ] || need+=(junit4)
[ -f /usr/share/java/gson.jar ] || need+=(libgoogle-gson-java)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
[ ${#need[@]} -eq 0 ] && exit 0

line="sudo apt-get install -y ${need[*]}"
fail() {
  echo "phone-tools: $1: the Kotlin and browser tests will skip; install them with: $line" >&2
  # CI must run every test: there a toolchain that cannot be installed is an error, not a skip.
  [ "${CI:-}" = "true" ] && exit 1
  exit 0
}
command -v apt-get >/dev/null 2>&1 || fail "missing ${need[*]} and no apt-get here"
if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  sudo=(sudo)
else
  fail "missing ${need[*]}, and installing them needs root"
fi
echo "phone-tools: installing ${need[*]} (apt-get) for the Kotlin and browser tests ..." >&2
"${sudo[@]}" apt-get update -qq || fail "apt-get update failed"
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${need[@]}" || fail "apt-get install failed"
